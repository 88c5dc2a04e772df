// Syslog framing: splits a TCP byte stream into syslog messages (RFC 6587),
// and takes one message from a UDP datagram (RFC 5426). The messages then go
// to ParseSyslog (collect/syslog.h). Format and counters:
// docs/formats/syslog.md.
//
// Pure: no I/O, no clock. Safe on any input bytes. Not thread-safe: one
// framer per connection, used from that connection's event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::collect {

// Default largest message kept; longer ones are cut and flagged truncated.
inline constexpr size_t kSyslogMessageBytesMaxDefault = 64 * 1024;
// Smallest accepted limit (room for a header; keeps the digit buffer below it).
inline constexpr size_t kSyslogMessageBytesMin = 16;
// MSG-LEN digits accepted: counts up to 999,999,999. More is a framing error.
inline constexpr size_t kOctetCountDigitsMax = 9;
static_assert(kOctetCountDigitsMax < kSyslogMessageBytesMin);

struct FramerCounters {
  uint64_t messages = 0;        // messages delivered, truncated ones included
  uint64_t truncated = 0;       // of those, cut at message_bytes_max
  uint64_t framing_errors = 0;  // bad octet counts; octet-counted frames cut off by Finish()
  uint64_t bytes = 0;           // bytes fed

  bool operator==(const FramerCounters&) const = default;
};

// A delivered message, owned (the output-vector form of Feed).
struct SyslogFrame {
  std::string message;
  bool truncated = false;

  bool operator==(const SyslogFrame&) const = default;
};

// Splits one TCP connection's byte stream into syslog messages. Each message
// is framed independently (RFC 6587 §3.4): if its first byte is a digit it
// must be octet-counted, "MSG-LEN SP SYSLOG-MSG" (MSG-LEN 1..999999999
// without leading zeros); otherwise it is non-transparent: the bytes up to
// an LF or NUL trailer (not included). Empty lines between messages are
// skipped. The results do not depend on how the stream is cut into chunks.
//
// Limits: a message longer than message_bytes_max is delivered cut to
// message_bytes_max bytes with truncated = true, as soon as the limit is
// reached; the rest of its frame is discarded. Memory held is at most
// message_bytes_max + kOctetCountDigitsMax bytes (buffered_bytes()).
//
// Bad octet count (a digit first, but a leading zero, more than
// kOctetCountDigitsMax digits, or a non-digit other than SP after the digits):
// framing_errors is counted and the framer resynchronises at the next LF/NUL:
// the bytes up to it (digits included) are delivered as one non-transparent
// message, so that a sender without octet counting whose lines start with a
// digit (e.g. PRI-less "2024-01-05T10:00:00Z host ...") loses nothing.
class SyslogStreamFramer {
 public:
  // Receives each message; `message` is valid only during the call.
  using Sink = std::function<void(std::string_view message, bool truncated)>;

  // REQUIRES: message_bytes_max >= kSyslogMessageBytesMin. A framer built
  // without a sink can only be fed through the output-vector overloads.
  explicit SyslogStreamFramer(size_t message_bytes_max = kSyslogMessageBytesMaxDefault,
                              Sink sink = nullptr);

  // Consumes `bytes` (any length, including 0), delivering every message
  // completed by them to the sink, in stream order. REQUIRES: a sink.
  void Feed(std::span<const uint8_t> bytes);
  // As Feed, appending the messages to *out instead. REQUIRES: out != nullptr.
  void Feed(std::span<const uint8_t> bytes, std::vector<SyslogFrame>* out);

  // End of stream (connection closed): delivers a pending non-transparent
  // message that had no trailer, and a pending octet-counted frame cut short
  // (truncated = true, counted as a framing error). The framer is then ready
  // for a new stream; counters are kept.
  void Finish();
  void Finish(std::vector<SyslogFrame>* out);

  const FramerCounters& counters() const { return counters_; }
  size_t message_bytes_max() const { return max_; }
  // Bytes of buffer memory held (capacity), for the bounded-memory check.
  size_t buffered_bytes() const { return buffer_.capacity(); }

 private:
  enum class State : uint8_t { kFrameStart, kCount, kOctets, kLine, kSkipLine };
  using Emit = std::function<void(std::string_view, bool)>;

  void Process(std::span<const uint8_t> in, const Emit& emit);
  void FinishWith(const Emit& emit);
  size_t OnFrameStart(std::span<const uint8_t> in, size_t i);
  size_t OnCount(std::span<const uint8_t> in, size_t i);
  size_t OnOctets(std::span<const uint8_t> in, size_t i, const Emit& emit);
  size_t OnLine(std::span<const uint8_t> in, size_t i, const Emit& emit);
  size_t OnSkipLine(std::span<const uint8_t> in, size_t i);
  void Append(std::span<const uint8_t> bytes);
  void Deliver(std::string_view message, bool truncated, const Emit& emit);
  void DeliverLine(std::string_view line, bool truncated, const Emit& emit);
  std::string_view Buffered() const { return {buffer_.data(), buffer_.size()}; }

  size_t max_;
  Sink sink_;
  FramerCounters counters_;
  State state_ = State::kFrameStart;
  uint64_t count_ = 0;       // kCount: MSG-LEN so far; kOctets: the frame's MSG-LEN
  size_t digits_ = 0;        // kCount: digits read
  uint64_t remaining_ = 0;   // kOctets: frame bytes not yet consumed
  bool delivered_ = false;   // kOctets: the (truncated) message was delivered
  std::vector<char> buffer_;  // a message split across chunks; <= max_ + digits
};

// One UDP datagram = one message: trailing LF and NUL bytes are stripped and
// the rest is cut to message_bytes_max (truncated = true). `message` points
// into `datagram`.
struct DatagramMessage {
  std::string_view message;
  bool truncated = false;
};
DatagramMessage FrameDatagram(std::span<const uint8_t> datagram,
                              size_t message_bytes_max = kSyslogMessageBytesMaxDefault);

}  // namespace tandem::collect
