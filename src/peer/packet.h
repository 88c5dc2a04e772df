// Heartbeat packet codec: format in docs/formats/heartbeat.md.
// Authenticated with HMAC-SHA256 over the whole packet and the cluster key
// (R-HB-3). Pure functions, no I/O; safe on any input bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ha/types.h"
#include "util/status.h"

namespace tandem::peer {

// kWitnessQuery / kWitnessReply: the indirect heartbeat (R-NC-4) between a
// cluster host and a witness (`tandem witness`, on managed hosts).
enum class PacketType : uint8_t { kHeartbeat = 1, kAck = 2, kWitnessQuery = 3, kWitnessReply = 4 };

struct Packet {
  PacketType type = PacketType::kHeartbeat;
  uint8_t path = 0;          // 0 = management, 1 = crossover
  uint64_t incarnation = 0;  // sender's persisted start counter, +1 per daemon start
  uint64_t seq = 0;          // per-incarnation sequence, starts at 1, +1 per packet
  uint64_t echo_seq = 0;     // kAck: the heartbeat seq being answered; 0 otherwise
  // The receiver's incarnation as last seen by the sender (highest authentic
  // one received from it), 0 if none yet. Lets the receiver ignore packets
  // recorded before its own restart (docs/formats/heartbeat.md, "Replay").
  uint64_t peer_incarnation = 0;
  std::string sender;        // sender host name, <= 64 bytes
  ha::Advert advert;         // sender's state (kWitnessReply: the subject's last advert)
  // Witness packets only (absent from kHeartbeat/kAck on the wire):
  std::string subject;       // the host asked about, <= kSenderBytesMax
  uint32_t heard_ms_ago = 0; // kWitnessReply: since the witness last heard the subject

  bool operator==(const Packet&) const = default;
};

constexpr size_t kPacketBytesMax = 512;  // anything larger is dropped unread
constexpr size_t kSenderBytesMax = 64;   // longest Packet::sender on the wire

// Serialises and signs. Never fails for a Packet whose sender fits.
// REQUIRES: p.sender.size() <= kSenderBytesMax (TANDEM_CHECK).
std::vector<uint8_t> Encode(const Packet& p, std::string_view key);

// Why a packet was rejected; each reason has its own counter.
enum class DropReason : uint8_t {
  kTooShort, kTooLong, kBadMagic, kBadVersion, kBadMac, kMalformed, kReplay, kCount
};
std::string_view DropReasonName(DropReason r);  // "too_short", "bad_mac", ...

// Verifies the MAC first (constant time), then parses. On failure returns
// false and sets *why; `out` is then unspecified.
bool Decode(std::span<const uint8_t> bytes, std::string_view key, Packet* out, DropReason* why);

// Replay filter for one peer: accepts a (incarnation, seq) pair only if it is
// newer than every pair accepted before. Incarnation strictly increases with
// every daemon start (persisted), so packets from an earlier run, and repeats
// within a run, are rejected. Accepts reordered-older packets never.
class ReplayFilter {
 public:
  // True (and remembers the pair) if newer than anything accepted so far.
  bool Accept(uint64_t incarnation, uint64_t seq);
  uint64_t incarnation() const { return incarnation_; }
  uint64_t seq() const { return seq_; }

 private:
  uint64_t incarnation_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace tandem::peer
