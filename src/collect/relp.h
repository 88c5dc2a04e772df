// Server side of RELP, the Reliable Event Logging Protocol spoken by rsyslog's
// omrelp (librelp): an I/O-free frame codec and session state machine. The
// caller owns the socket; it feeds received bytes in, gets `syslog` messages
// out, and acknowledges each message later -- when it is durable on both hosts
// (replication protocol C) -- possibly many at once after a group commit. The
// session turns those acknowledgements into `rsp` frames, always in the order
// the transactions arrived. Wire format and rules: docs/formats/relp.md.
//
// Typical event loop (one session per accepted TCP connection):
//
//   RelpSession s{limits};
//   on readable (only while s.want_read()):  n = read(...);
//       Status st = s.Feed(bytes, &msgs);     // hand msgs to the store
//       if (!st.ok()) log st;                 // s.closed() is now true
//   on store durable (txnr):                   s.Ack(txnr);  // or Nack
//   after every Feed/Ack/Nack:                 write s.TakeOutput()
//   when s.closed() and everything written:    close the socket
//
// Thread safety: none; a session belongs to one event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace tandem::collect {

// RELP transaction number, 1..kRelpTxnrMax (0 is reserved for hints).
using RelpTxnr = uint32_t;
inline constexpr RelpTxnr kRelpTxnrMax = 999'999'999;  // then wraps to 1
// The number after `t` (1 after kRelpTxnrMax). REQUIRES: 1 <= t <= kRelpTxnrMax.
RelpTxnr RelpNextTxnr(RelpTxnr t);

// Fixed sizes from the frame grammar (relp.md): TXNR and DATALEN are 1..9
// digits, COMMAND 1..32 letters.
inline constexpr size_t kRelpNumberDigitsMax = 9;
inline constexpr size_t kRelpCommandBytesMax = 32;
// The longest header "TXNR SP COMMAND SP DATALEN SP".
inline constexpr size_t kRelpHeaderBytesMax =
    kRelpNumberDigitsMax + 1 + kRelpCommandBytesMax + 1 + kRelpNumberDigitsMax + 1;
// The longest human text we put after "500 " in a negative response.
inline constexpr size_t kRelpReasonBytesMax = 80;

struct RelpLimits {
  // Largest DATALEN accepted (the message or offer bytes of one frame); a
  // frame announcing more ends the session before any of its data is
  // buffered. librelp's default is the same 128 KiB.
  size_t data_bytes_max = 128 * 1024;
  // Most transactions whose rsp has not been sent yet (messages awaiting
  // Ack/Nack, plus later transactions held back to keep rsp order). A sender
  // with a larger window than this ends the session (rsyslog's default window
  // is 128); a `close` may take one slot more, as librelp sends it even with
  // a full window.
  size_t window_max = 1024;
};

// One `syslog` message, handed to the caller by Feed. `data` is the frame's
// DATA exactly as sent (no trailer), 0..data_bytes_max bytes.
struct RelpMessage {
  RelpTxnr txnr = 0;
  std::string data;
};

struct RelpCounters {
  uint64_t bytes_received = 0;   // bytes passed to Feed
  uint64_t frames = 0;           // complete frames received
  uint64_t messages = 0;         // syslog messages delivered
  uint64_t message_bytes = 0;    // their data bytes
  uint64_t acked = 0;            // Ack calls that took effect
  uint64_t nacked = 0;           // Nack calls that took effect
  uint64_t rsp_sent = 0;         // rsp frames appended to the output
  uint64_t duplicate_opens = 0;  // `open` inside an open session (tolerated)
};

class RelpSession {
 public:
  explicit RelpSession(RelpLimits limits);
  RelpSession(const RelpSession&) = delete;
  RelpSession& operator=(const RelpSession&) = delete;
  RelpSession(RelpSession&&) = default;  // e.g. into a map of connections

  // Consumes all of `in` (received bytes, any split) and appends the
  // complete `syslog` messages found to `*out` (not cleared), in txnr order.
  // Each delivered message is in flight until Ack or Nack names its txnr.
  // Partial frames are buffered inside, never more than
  // kRelpHeaderBytesMax + data_bytes_max + 1 bytes.
  // Returns OK, or an error naming what was wrong with the input (bad or
  // out-of-sequence txnr, bad command, unknown command, data before `open`,
  // bad offers, DATALEN over the limit, missing trailer, window exceeded,
  // frame after `close`). On error the session is closed: Output() ends
  // with a `serverclose` hint (preceded by a "500" rsp when the offending
  // transaction could be answered in order), rsps still held back are
  // dropped (the sender retransmits those messages on its next session), and
  // the caller must write the output and close the connection. Messages
  // appended before the error are valid and must be stored as usual; their
  // Acks become no-ops. Feed on a closed session returns an error and does
  // nothing.
  Status Feed(std::span<const uint8_t> in, std::vector<RelpMessage>* out);

  // The message `txnr` is durable: its "200 OK" rsp may be sent, as soon as
  // every earlier transaction's rsp has been. Any order of Acks is fine.
  // No-op once closed(). REQUIRES (CHECKed): otherwise `txnr` was delivered
  // by this session and not yet Acked or Nacked.
  void Ack(RelpTxnr txnr);
  // The message `txnr` could not be stored (e.g. the store is full): it gets
  // a "500 <why>" rsp, in order, and the session stays open. librelp
  // reports "peer sent error response", fails the sender's next
  // relpCltSendSyslog with RELP_RET_RSP_STATE_ERR and does not resend the
  // nacked message itself (relp_librelp_test.cc). `why` is cut to
  // kRelpReasonBytesMax and non-printable bytes become '?'.
  // Same REQUIRES and no-op rule as Ack.
  void Nack(RelpTxnr txnr, std::string_view why);

  // Server-initiated end (shutdown, losing the active role): appends a
  // `serverclose` hint and closes the session. Messages still in flight are
  // not answered; the sender resends them. No-op once closed().
  void ServerClose();

  // Returns the bytes to write to the socket now and forgets them. The
  // session never needs them again: the caller owns partial writes.
  std::string TakeOutput();
  size_t output_bytes() const { return output_.size(); }

  // True once the session has ended (rsp to `close` emitted, error, or
  // ServerClose). Write what TakeOutput() returns, then close the socket.
  bool closed() const { return closed_; }
  // True after a valid `open` was answered (and until closed()).
  bool opened() const { return state_ == State::kOpen && !closed_; }
  // Whether the caller should read more from the socket: false once closed,
  // once `close` has been received, and while window_max transactions await
  // their rsp (back-pressure: resume after Acks).
  bool want_read() const;
  // Messages delivered and not yet Acked or Nacked.
  size_t in_flight() const { return in_flight_; }
  // Transactions whose rsp has not been emitted yet (in_flight() plus those
  // held back for order); never more than window_max + 1.
  size_t pending() const { return pending_.size(); }
  const RelpCounters& counters() const { return counters_; }
  // The error that closed the session; OK if none (yet).
  const Status& error() const { return error_; }

  // Tests only: the txnr the next frame must carry (to test wrap-around
  // without a billion frames). REQUIRES: 1 <= t <= kRelpTxnrMax, nothing
  // pending.
  void TEST_SetExpectedTxnr(RelpTxnr t);

 private:
  enum class State { kAwaitOpen, kOpen, kClosing };
  enum class ParseState { kTxnr, kCommand, kDatalen, kData, kTrailer };
  enum class TxnKind { kMessage, kReply, kClose };
  struct Txn {
    RelpTxnr txnr;
    TxnKind kind;
    bool ready;       // rsp may go out once all earlier ones have
    std::string rsp;  // rsp DATA when ready ("200 OK", "500 ...", offers)
  };

  bool ParseHeaderByte(uint8_t c);
  void ParseTxnrByte(uint8_t c);
  void ParseCommandByte(uint8_t c);
  bool ParseDatalenByte(uint8_t c);
  std::string TxnPrefix() const;
  size_t ParseData(std::span<const uint8_t> in);
  void BeginData();
  void FinishFrame(std::vector<RelpMessage>* out);
  void HandleOpen();
  void HandleSyslog(std::vector<RelpMessage>* out);
  void HandleClose();
  // Appends a transaction for the current frame; false (after Fail) if the
  // window is exceeded.
  bool Push(TxnKind kind, bool ready, std::string rsp);
  Txn* Find(RelpTxnr txnr);
  void Flush();
  // Closes the session with `why`; a "500" rsp for the current frame goes
  // out first when `answer` and nothing earlier is pending.
  void Fail(std::string why, bool answer = false);
  void AppendFrame(RelpTxnr txnr, std::string_view command, std::string_view data);

  const RelpLimits limits_;
  State state_ = State::kAwaitOpen;
  bool closed_ = false;
  Status error_;
  RelpTxnr expected_txnr_ = 1;

  // Frame being parsed.
  ParseState parse_ = ParseState::kTxnr;
  size_t digits_ = 0;  // digits seen in the current number field
  uint32_t txnr_ = 0;
  uint32_t datalen_ = 0;
  std::string command_;
  std::string data_;

  std::deque<Txn> pending_;  // consecutive txnrs, oldest first
  size_t in_flight_ = 0;
  std::string output_;
  RelpCounters counters_;
};

}  // namespace tandem::collect
