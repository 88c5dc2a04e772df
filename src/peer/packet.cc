// Heartbeat packet codec. The byte layout, the decode order and the replay
// rule are specified in docs/formats/heartbeat.md; keep the two in step.
#include "peer/packet.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <climits>
#include <optional>
#include <tuple>
#include <utility>

#include "util/bytes.h"

namespace tandem::peer {
namespace {

constexpr std::array<uint8_t, 4> kMagic = {'T', 'N', 'H', 'B'};
constexpr uint8_t kVersion = 1;
constexpr size_t kVersionOffset = kMagic.size();

// magic, version, type, path, incarnation, seq, echo_seq, peer_incarnation,
// sender_len.
constexpr size_t kHeaderBytes = kMagic.size() + 1 + 1 + 1 + 8 + 8 + 8 + 8 + 1;
// role, status, admin, epoch, flags, takeover_request, conn_check_request,
// conn_check_answer_id.
constexpr size_t kAdvertBytes = 1 + 1 + 1 + 8 + 1 + 4 + 4 + 4;
constexpr size_t kMacBytes = 32;  // HMAC-SHA256
constexpr size_t kPacketBytesMin = kHeaderBytes + kAdvertBytes + kMacBytes;
// Witness packets append subject_len u8, subject, heard_ms_ago u32.
constexpr size_t kWitnessTrailerBytesMax = 1 + kSenderBytesMax + 4;
constexpr size_t kEncodedBytesMax = kPacketBytesMin + kSenderBytesMax + kWitnessTrailerBytesMax;
constexpr uint8_t kPathCount = 2;  // 0 = management, 1 = crossover

// advert.flags bits; every other bit must be zero.
constexpr uint8_t kFlagActiveInEpoch = 1u << 0;
constexpr uint8_t kFlagHandover = 1u << 1;
constexpr uint8_t kFlagConnectivityOk = 1u << 2;
constexpr uint8_t kFlagConnCheckAnswerOk = 1u << 3;
constexpr uint8_t kFlagsKnown =
    kFlagActiveInEpoch | kFlagHandover | kFlagConnectivityOk | kFlagConnCheckAnswerOk;

// The documented sizes (docs/formats/heartbeat.md, "Sizes").
static_assert(kHeaderBytes == 40);
static_assert(kAdvertBytes == 24);
static_assert(kPacketBytesMin == 96);
static_assert(kEncodedBytesMax == 229);
static_assert(kEncodedBytesMax <= kPacketBytesMax, "a valid packet must fit the receive limit");
static_assert(kVersionOffset < kPacketBytesMin, "magic and version are read before the MAC");
static_assert(kSenderBytesMax <= UINT8_MAX, "sender_len is one byte");
static_assert(kMacBytes <= EVP_MAX_MD_SIZE);

using util::Reader;
using util::Writer;

// HMAC-SHA256 of `data` under `key`. False only if OpenSSL fails internally.
bool ComputeMac(std::span<const uint8_t> data, std::string_view key,
                std::array<uint8_t, kMacBytes>* mac) {
  TANDEM_CHECK(key.size() <= static_cast<size_t>(INT_MAX));
  static const uint8_t kEmpty = 0;  // HMAC() wants a non-null key pointer
  const void* key_ptr = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  unsigned int len = 0;
  const uint8_t* got = HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), data.data(),
                            data.size(), mac->data(), &len);
  return got != nullptr && len == kMacBytes;
}

void WriteAdvert(const ha::Advert& a, Writer* w) {
  w->U8(static_cast<uint8_t>(a.role));
  w->U8(static_cast<uint8_t>(a.status));
  w->U8(static_cast<uint8_t>(a.admin));
  w->Uint(a.epoch);
  uint8_t flags = 0;
  if (a.active_in_epoch) flags |= kFlagActiveInEpoch;
  if (a.handover) flags |= kFlagHandover;
  if (a.connectivity_ok) flags |= kFlagConnectivityOk;
  if (a.conn_check_answer_ok) flags |= kFlagConnCheckAnswerOk;
  w->U8(flags);
  w->Uint(a.takeover_request);
  w->Uint(a.conn_check_request);
  w->Uint(a.conn_check_answer_id);
}

std::optional<PacketType> TypeFromWire(uint8_t v) {
  if (v == static_cast<uint8_t>(PacketType::kHeartbeat)) return PacketType::kHeartbeat;
  if (v == static_cast<uint8_t>(PacketType::kAck)) return PacketType::kAck;
  if (v == static_cast<uint8_t>(PacketType::kWitnessQuery)) return PacketType::kWitnessQuery;
  if (v == static_cast<uint8_t>(PacketType::kWitnessReply)) return PacketType::kWitnessReply;
  return std::nullopt;
}

std::optional<ha::Role> RoleFromWire(uint8_t v) {
  if (v == static_cast<uint8_t>(ha::Role::kPrimary)) return ha::Role::kPrimary;
  if (v == static_cast<uint8_t>(ha::Role::kSecondary)) return ha::Role::kSecondary;
  return std::nullopt;
}

std::optional<ha::AdminMode> AdminFromWire(uint8_t v) {
  if (v == static_cast<uint8_t>(ha::AdminMode::kOnline)) return ha::AdminMode::kOnline;
  if (v == static_cast<uint8_t>(ha::AdminMode::kOffline)) return ha::AdminMode::kOffline;
  return std::nullopt;
}

// Parses type .. sender (the reader starts after the version byte).
bool ParseHeader(Reader* r, Packet* p) {
  uint8_t type = 0;
  uint8_t sender_len = 0;
  if (!r->Uint(&type) || !r->Uint(&p->path) || !r->Uint(&p->incarnation) || !r->Uint(&p->seq) ||
      !r->Uint(&p->echo_seq) || !r->Uint(&p->peer_incarnation) || !r->Uint(&sender_len)) {
    return false;
  }
  std::optional<PacketType> t = TypeFromWire(type);
  if (!t || p->path >= kPathCount || sender_len > kSenderBytesMax) return false;
  p->type = *t;
  return r->Str(sender_len, &p->sender);
}

bool ParseAdvert(Reader* r, ha::Advert* a) {
  uint8_t role = 0, status = 0, admin = 0, flags = 0;
  if (!r->Uint(&role) || !r->Uint(&status) || !r->Uint(&admin) || !r->Uint(&a->epoch) ||
      !r->Uint(&flags) || !r->Uint(&a->takeover_request) || !r->Uint(&a->conn_check_request) ||
      !r->Uint(&a->conn_check_answer_id)) {
    return false;
  }
  std::optional<ha::Role> ro = RoleFromWire(role);
  std::optional<ha::HostStatus> st = ha::StatusFromWire(status);
  std::optional<ha::AdminMode> ad = AdminFromWire(admin);
  if (!ro || !st || !ad || (flags & ~kFlagsKnown) != 0) return false;
  a->role = *ro;
  a->status = *st;
  a->admin = *ad;
  a->active_in_epoch = (flags & kFlagActiveInEpoch) != 0;
  a->handover = (flags & kFlagHandover) != 0;
  a->connectivity_ok = (flags & kFlagConnectivityOk) != 0;
  a->conn_check_answer_ok = (flags & kFlagConnCheckAnswerOk) != 0;
  return true;
}

bool IsWitness(PacketType t) {
  return t == PacketType::kWitnessQuery || t == PacketType::kWitnessReply;
}

bool ParseWitnessTrailer(Reader* r, Packet* p) {
  uint8_t len = 0;
  if (!r->Uint(&len) || len > kSenderBytesMax) return false;
  return r->Str(len, &p->subject) && r->Uint(&p->heard_ms_ago);
}

// Strict parse of the MAC-covered bytes: every field valid, nothing left over.
bool ParseBody(std::span<const uint8_t> body, Packet* out) {
  Reader r(body.subspan(kVersionOffset + 1));
  Packet p;
  if (!ParseHeader(&r, &p) || !ParseAdvert(&r, &p.advert)) return false;
  if (IsWitness(p.type) && !ParseWitnessTrailer(&r, &p)) return false;
  if (r.remaining() != 0) return false;
  *out = std::move(p);
  return true;
}

bool Drop(DropReason reason, DropReason* why) {
  if (why != nullptr) *why = reason;
  return false;
}

}  // namespace

std::vector<uint8_t> Encode(const Packet& p, std::string_view key) {
  TANDEM_CHECK(p.sender.size() <= kSenderBytesMax);
  TANDEM_CHECK(p.subject.size() <= kSenderBytesMax);
  std::vector<uint8_t> out;
  out.reserve(kPacketBytesMin + p.sender.size());
  Writer w(&out);
  w.Raw(kMagic);
  w.U8(kVersion);
  w.U8(static_cast<uint8_t>(p.type));
  w.U8(p.path);
  w.Uint(p.incarnation);
  w.Uint(p.seq);
  w.Uint(p.echo_seq);
  w.Uint(p.peer_incarnation);
  w.U8(static_cast<uint8_t>(p.sender.size()));
  w.Raw(p.sender);
  TANDEM_CHECK(out.size() == kHeaderBytes + p.sender.size());
  WriteAdvert(p.advert, &w);
  TANDEM_CHECK(out.size() + kMacBytes == kPacketBytesMin + p.sender.size());
  if (IsWitness(p.type)) {
    w.U8(static_cast<uint8_t>(p.subject.size()));
    w.Raw(p.subject);
    w.Uint(p.heard_ms_ago);
  }
  std::array<uint8_t, kMacBytes> mac;
  TANDEM_CHECK(ComputeMac(out, key, &mac));
  w.Raw(mac);
  return out;
}

bool Decode(std::span<const uint8_t> bytes, std::string_view key, Packet* out, DropReason* why) {
  if (bytes.size() < kPacketBytesMin) return Drop(DropReason::kTooShort, why);
  if (bytes.size() > kPacketBytesMax) return Drop(DropReason::kTooLong, why);
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) {
    return Drop(DropReason::kBadMagic, why);
  }
  if (bytes[kVersionOffset] != kVersion) return Drop(DropReason::kBadVersion, why);
  std::span<const uint8_t> body = bytes.first(bytes.size() - kMacBytes);
  std::span<const uint8_t> mac = bytes.last(kMacBytes);
  std::array<uint8_t, kMacBytes> want;
  if (!ComputeMac(body, key, &want) || CRYPTO_memcmp(want.data(), mac.data(), kMacBytes) != 0) {
    return Drop(DropReason::kBadMac, why);
  }
  if (!ParseBody(body, out)) return Drop(DropReason::kMalformed, why);
  return true;
}

std::string_view DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kTooShort: return "too_short";
    case DropReason::kTooLong: return "too_long";
    case DropReason::kBadMagic: return "bad_magic";
    case DropReason::kBadVersion: return "bad_version";
    case DropReason::kBadMac: return "bad_mac";
    case DropReason::kMalformed: return "malformed";
    case DropReason::kReplay: return "replay";
    case DropReason::kCount: break;
  }
  return "unknown";
}

bool ReplayFilter::Accept(uint64_t incarnation, uint64_t seq) {
  if (std::tie(incarnation, seq) <= std::tie(incarnation_, seq_)) return false;
  incarnation_ = incarnation;
  seq_ = seq;
  return true;
}

}  // namespace tandem::peer
