#include "peer/packet.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace tandem::peer {

// Lets gtest print a reason as "bad_mac" rather than as a raw byte.
void PrintTo(DropReason r, std::ostream* os) { *os << DropReasonName(r); }

namespace {

using Bytes = std::vector<uint8_t>;

constexpr std::string_view kKey = "0123456789abcdef0123456789abcdef-lab";
constexpr std::string_view kOtherKey = "0123456789abcdef0123456789abcdef-lab!";

// The layout of docs/formats/heartbeat.md, restated here independently of
// packet.cc so that the tests check the code against the document.
constexpr size_t kMagicOffset = 0;
constexpr size_t kVersionOffset = 4;
constexpr size_t kTypeOffset = 5;
constexpr size_t kPathOffset = 6;
constexpr size_t kIncarnationOffset = 7;
constexpr size_t kSeqOffset = 15;
constexpr size_t kEchoSeqOffset = 23;
constexpr size_t kPeerIncarnationOffset = 31;
constexpr size_t kSenderLenOffset = 39;
constexpr size_t kSenderOffset = 40;
// Advert fields, relative to the end of the sender bytes.
constexpr size_t kRoleRel = 0;
constexpr size_t kStatusRel = 1;
constexpr size_t kAdminRel = 2;
constexpr size_t kEpochRel = 3;
constexpr size_t kFlagsRel = 11;
constexpr size_t kTakeoverRel = 12;
constexpr size_t kConnCheckRequestRel = 16;
constexpr size_t kConnCheckAnswerIdRel = 20;
constexpr size_t kAdvertBytes = 24;
constexpr size_t kMacBytes = 32;
constexpr size_t kMinBytes = kSenderOffset + kAdvertBytes + kMacBytes;  // 96
constexpr uint8_t kUnknownFlags[] = {0x10, 0x20, 0x40, 0x80};

// Offset of an advert field in an encoded packet.
size_t AdvertAt(const Bytes& b, size_t rel) { return kSenderOffset + b[kSenderLenOffset] + rel; }

uint64_t ReadLe(const Bytes& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(b.at(at + i)) << (8 * i);
  return v;
}

// HMAC-SHA256 computed here with OpenSSL directly, not via packet.cc.
Bytes Mac(const uint8_t* data, size_t n, std::string_view key) {
  Bytes mac(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, n, mac.data(), &len);
  mac.resize(len);
  return mac;
}

// Replaces the last kMacBytes of `b` with the MAC of everything before them,
// so that a patched packet gets past the MAC check and reaches the parser.
void Resign(Bytes* b, std::string_view key = kKey) {
  ASSERT_GE(b->size(), kMacBytes);
  size_t body = b->size() - kMacBytes;
  Bytes mac = Mac(b->data(), body, key);
  ASSERT_EQ(mac.size(), kMacBytes);
  std::copy(mac.begin(), mac.end(), b->begin() + static_cast<std::ptrdiff_t>(body));
}

// A packet in which every field differs from its default.
Packet FullPacket(PacketType type = PacketType::kAck, uint8_t path = 1) {
  Packet p;
  p.type = type;
  p.path = path;
  p.incarnation = 0x0102030405060708;
  p.seq = 0x1112131415161718;
  p.echo_seq = 0x2122232425262728;
  p.peer_incarnation = 0x7172737475767778;
  p.sender = "node-b.example";
  p.advert.role = ha::Role::kSecondary;
  p.advert.status = ha::HostStatus::kSettingOffline;
  p.advert.admin = ha::AdminMode::kOffline;
  p.advert.epoch = 0x3132333435363738;
  p.advert.active_in_epoch = true;
  p.advert.handover = true;
  p.advert.connectivity_ok = false;
  p.advert.takeover_request = 0x41424344;
  p.advert.conn_check_request = 0x51525354;
  p.advert.conn_check_answer_id = 0x61626364;
  p.advert.conn_check_answer_ok = true;
  return p;
}

struct Outcome {
  bool ok = false;
  DropReason why = DropReason::kCount;
  Packet packet;
};

Outcome Dec(const Bytes& b, std::string_view key = kKey) {
  Outcome o;
  o.ok = Decode(b, key, &o.packet, &o.why);
  return o;
}

// Decodes `b` and expects it to be dropped for `want`.
void ExpectDrop(const Bytes& b, DropReason want, std::string_view key = kKey) {
  Outcome o = Dec(b, key);
  EXPECT_FALSE(o.ok);
  if (!o.ok) {
    EXPECT_EQ(o.why, want);
  }
}

// Encodes FullPacket(), sets the byte at `offset` to `value`, re-signs.
Bytes PatchedAndResigned(size_t offset, uint8_t value) {
  Bytes b = Encode(FullPacket(), kKey);
  b.at(offset) = value;
  Resign(&b);
  return b;
}

// ---------------------------------------------------------------------------
// Round trip and layout.

class RoundTripTest : public ::testing::TestWithParam<std::tuple<PacketType, uint8_t>> {};

TEST_P(RoundTripTest, EveryFieldNonDefault) {
  auto [type, path] = GetParam();
  Packet p = FullPacket(type, path);
  ASSERT_NE(p.advert, ha::Advert{});
  Bytes b = Encode(p, kKey);
  EXPECT_EQ(b.size(), kMinBytes + p.sender.size());
  Outcome o = Dec(b);
  ASSERT_TRUE(o.ok) << DropReasonName(o.why);
  EXPECT_EQ(o.packet, p);
}

INSTANTIATE_TEST_SUITE_P(BothTypesBothPaths, RoundTripTest,
                         ::testing::Combine(::testing::Values(PacketType::kHeartbeat,
                                                              PacketType::kAck),
                                            ::testing::Values(uint8_t{0}, uint8_t{1})));

TEST(PacketTest, RoundTripDefaultPacket) {
  Packet p;
  Outcome o = Dec(Encode(p, kKey));
  ASSERT_TRUE(o.ok) << DropReasonName(o.why);
  EXPECT_EQ(o.packet, p);
}

TEST(PacketTest, RoundTripSenderLengths) {
  for (size_t n = 0; n <= kSenderBytesMax; ++n) {
    SCOPED_TRACE(n);
    Packet p = FullPacket();
    p.sender.clear();
    for (size_t i = 0; i < n; ++i) p.sender.push_back(static_cast<char>(i * 37));  // incl. NUL
    Bytes b = Encode(p, kKey);
    EXPECT_EQ(b.size(), kMinBytes + n);
    Outcome o = Dec(b);
    ASSERT_TRUE(o.ok) << DropReasonName(o.why);
    EXPECT_EQ(o.packet, p);
  }
}

TEST(PacketTest, RoundTripExtremeIntegers) {
  Packet p = FullPacket();
  p.incarnation = p.seq = p.echo_seq = p.peer_incarnation = p.advert.epoch =
      std::numeric_limits<uint64_t>::max();
  p.advert.takeover_request = p.advert.conn_check_request = p.advert.conn_check_answer_id =
      std::numeric_limits<uint32_t>::max();
  Outcome o = Dec(Encode(p, kKey));
  ASSERT_TRUE(o.ok) << DropReasonName(o.why);
  EXPECT_EQ(o.packet, p);
}

TEST(PacketTest, RoundTripEveryFlagCombination) {
  for (int bits = 0; bits < 16; ++bits) {
    SCOPED_TRACE(bits);
    Packet p = FullPacket();
    p.advert.active_in_epoch = (bits & 1) != 0;
    p.advert.handover = (bits & 2) != 0;
    p.advert.connectivity_ok = (bits & 4) != 0;
    p.advert.conn_check_answer_ok = (bits & 8) != 0;
    Bytes b = Encode(p, kKey);
    EXPECT_EQ(b[AdvertAt(b, kFlagsRel)], bits);  // bit layout as documented
    Outcome o = Dec(b);
    ASSERT_TRUE(o.ok) << DropReasonName(o.why);
    EXPECT_EQ(o.packet, p);
  }
}

TEST(PacketTest, LayoutMatchesDocument) {
  Packet p = FullPacket(PacketType::kAck, 1);
  Bytes b = Encode(p, kKey);
  ASSERT_EQ(b.size(), kMinBytes + p.sender.size());
  EXPECT_EQ(std::string(b.begin() + kMagicOffset, b.begin() + kVersionOffset), "TNHB");
  EXPECT_EQ(b[kVersionOffset], 1);
  EXPECT_EQ(b[kTypeOffset], 2);
  EXPECT_EQ(b[kPathOffset], 1);
  // Little-endian: least significant byte first.
  EXPECT_EQ(b[kIncarnationOffset], 0x08);
  EXPECT_EQ(b[kIncarnationOffset + 7], 0x01);
  EXPECT_EQ(ReadLe(b, kIncarnationOffset, 8), p.incarnation);
  EXPECT_EQ(ReadLe(b, kSeqOffset, 8), p.seq);
  EXPECT_EQ(ReadLe(b, kEchoSeqOffset, 8), p.echo_seq);
  EXPECT_EQ(ReadLe(b, kPeerIncarnationOffset, 8), p.peer_incarnation);
  EXPECT_EQ(b[kSenderLenOffset], p.sender.size());
  EXPECT_EQ(std::string(b.begin() + kSenderOffset, b.begin() + kSenderOffset + 14), p.sender);
  EXPECT_EQ(b[AdvertAt(b, kRoleRel)], 2);
  EXPECT_EQ(b[AdvertAt(b, kStatusRel)], 6);
  EXPECT_EQ(b[AdvertAt(b, kAdminRel)], 2);
  EXPECT_EQ(ReadLe(b, AdvertAt(b, kEpochRel), 8), p.advert.epoch);
  EXPECT_EQ(b[AdvertAt(b, kFlagsRel)], 0x01 | 0x02 | 0x08);
  EXPECT_EQ(ReadLe(b, AdvertAt(b, kTakeoverRel), 4), p.advert.takeover_request);
  EXPECT_EQ(ReadLe(b, AdvertAt(b, kConnCheckRequestRel), 4), p.advert.conn_check_request);
  EXPECT_EQ(ReadLe(b, AdvertAt(b, kConnCheckAnswerIdRel), 4), p.advert.conn_check_answer_id);
  size_t body = AdvertAt(b, kAdvertBytes);
  EXPECT_EQ(body + kMacBytes, b.size());
  EXPECT_EQ(Bytes(b.begin() + static_cast<std::ptrdiff_t>(body), b.end()),
            Mac(b.data(), body, kKey));
}

TEST(PacketTest, EncodeIsDeterministicAndKeyed) {
  Packet p = FullPacket();
  EXPECT_EQ(Encode(p, kKey), Encode(p, kKey));
  EXPECT_NE(Encode(p, kKey), Encode(p, kOtherKey));
}

TEST(PacketDeathTest, EncodeRejectsOverlongSender) {
  Packet p = FullPacket();
  p.sender.assign(kSenderBytesMax + 1, 'x');
  EXPECT_DEATH(Encode(p, kKey), "CHECK failed");
}

// ---------------------------------------------------------------------------
// Authentication and corruption.

TEST(PacketTest, WrongKeyIsBadMac) {
  Bytes b = Encode(FullPacket(), kKey);
  ExpectDrop(b, DropReason::kBadMac, kOtherKey);
  ExpectDrop(b, DropReason::kBadMac, "");
  ExpectDrop(b, DropReason::kBadMac, kKey.substr(0, kKey.size() - 1));
}

TEST(PacketTest, EmptyKeyRoundTrips) {
  Bytes b = Encode(FullPacket(), "");
  EXPECT_TRUE(Dec(b, "").ok);
  ExpectDrop(b, DropReason::kBadMac, kKey);
}

// Every possible corruption of every single byte is rejected, for the
// documented reason: magic bytes -> bad_magic, version -> bad_version,
// anything else (header, sender, advert, MAC) -> bad_mac.
TEST(PacketTest, EverySingleByteCorruptionIsRejected) {
  const Bytes good = Encode(FullPacket(), kKey);
  for (size_t i = 0; i < good.size(); ++i) {
    DropReason want = i < kVersionOffset    ? DropReason::kBadMagic
                      : i == kVersionOffset ? DropReason::kBadVersion
                                            : DropReason::kBadMac;
    for (int x = 1; x < 256; ++x) {
      Bytes b = good;
      b[i] ^= static_cast<uint8_t>(x);
      Outcome o = Dec(b);
      ASSERT_FALSE(o.ok) << "offset " << i << " xor " << x;
      ASSERT_EQ(o.why, want) << "offset " << i << " xor " << x;
    }
  }
}

TEST(PacketTest, EveryTruncationIsRejected) {
  for (const Packet& p : {FullPacket(), Packet{}}) {
    const Bytes good = Encode(p, kKey);
    for (size_t n = 0; n < good.size(); ++n) {
      SCOPED_TRACE(n);
      Bytes b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      ExpectDrop(b, n < kMinBytes ? DropReason::kTooShort : DropReason::kBadMac);
    }
  }
}

TEST(PacketTest, EveryExtensionIsRejected) {
  const Bytes good = Encode(FullPacket(), kKey);
  for (size_t n = good.size() + 1; n <= kPacketBytesMax + 1; ++n) {
    SCOPED_TRACE(n);
    Bytes b = good;
    b.resize(n, 0);
    ExpectDrop(b, n > kPacketBytesMax ? DropReason::kTooLong : DropReason::kBadMac);
  }
}

// Oversized packets are dropped unread: even a validly signed one.
TEST(PacketTest, OversizeIsTooLongEvenWithValidMac) {
  Bytes b = Encode(FullPacket(), kKey);
  b.resize(kPacketBytesMax + 1, 0);
  Resign(&b);
  ExpectDrop(b, DropReason::kTooLong);
  b.resize(64 * 1024, 0);
  Resign(&b);
  ExpectDrop(b, DropReason::kTooLong);
  // At exactly the limit it is read, MAC-checked and parsed (trailing bytes).
  b.resize(kPacketBytesMax);
  Resign(&b);
  ExpectDrop(b, DropReason::kMalformed);
}

TEST(PacketTest, ChecksRunInDocumentedOrder) {
  // Short garbage is too_short, not bad_magic.
  ExpectDrop(Bytes(kMinBytes - 1, 0xAA), DropReason::kTooShort);
  // Long garbage is too_long, not bad_magic.
  ExpectDrop(Bytes(kPacketBytesMax + 1, 0xAA), DropReason::kTooLong);
  // Bad magic wins over bad version and bad MAC.
  Bytes b = Encode(FullPacket(), kKey);
  b[0] = 'X';
  b[kVersionOffset] = 9;
  ExpectDrop(b, DropReason::kBadMagic);
  // Bad version wins over bad MAC.
  b[0] = 'T';
  ExpectDrop(b, DropReason::kBadVersion);
  // Bad MAC wins over a malformed body.
  b = Encode(FullPacket(), kKey);
  b[AdvertAt(b, kRoleRel)] = 0;
  ExpectDrop(b, DropReason::kBadMac);
}

// ---------------------------------------------------------------------------
// Correctly signed but invalid packets (built by patching and re-signing).

TEST(PacketTest, ResignHelperWorks) {
  // Guards the tests below: a valid patch that is re-signed is accepted.
  Bytes b = Encode(FullPacket(), kKey);
  Resign(&b);
  EXPECT_EQ(b, Encode(FullPacket(), kKey));
  b[AdvertAt(b, kEpochRel)] = 0x99;
  ExpectDrop(b, DropReason::kBadMac);
  Resign(&b);
  Outcome o = Dec(b);
  ASSERT_TRUE(o.ok) << DropReasonName(o.why);
  EXPECT_EQ(o.packet.advert.epoch, 0x3132333435363799u);
}

TEST(PacketTest, BadMagicWithValidMac) {
  for (size_t i = kMagicOffset; i < kVersionOffset; ++i) {
    SCOPED_TRACE(i);
    ExpectDrop(PatchedAndResigned(i, 'x'), DropReason::kBadMagic);
  }
}

TEST(PacketTest, BadVersionWithValidMac) {
  for (int v : {0, 2, 3, 255}) {
    SCOPED_TRACE(v);
    ExpectDrop(PatchedAndResigned(kVersionOffset, static_cast<uint8_t>(v)),
               DropReason::kBadVersion);
  }
}

TEST(PacketTest, OutOfRangeEnumsAreMalformed) {
  const Bytes b = Encode(FullPacket(), kKey);
  struct Case {
    const char* field;
    size_t offset;
    std::vector<int> bad;
  };
  const Case cases[] = {
      {"type", kTypeOffset, {0, 3, 255}},
      {"path", kPathOffset, {2, 3, 255}},
      {"role", AdvertAt(b, kRoleRel), {0, 3, 255}},
      {"status", AdvertAt(b, kStatusRel), {ha::kHostStatusMax + 1, 128, 255}},
      {"admin", AdvertAt(b, kAdminRel), {0, 3, 255}},
  };
  for (const Case& c : cases) {
    for (int v : c.bad) {
      SCOPED_TRACE(std::string(c.field) + "=" + std::to_string(v));
      ExpectDrop(PatchedAndResigned(c.offset, static_cast<uint8_t>(v)), DropReason::kMalformed);
    }
  }
}

TEST(PacketTest, EveryValidStatusIsAccepted) {
  const Bytes b = Encode(FullPacket(), kKey);
  for (int v = 0; v <= ha::kHostStatusMax; ++v) {
    SCOPED_TRACE(v);
    Outcome o = Dec(PatchedAndResigned(AdvertAt(b, kStatusRel), static_cast<uint8_t>(v)));
    ASSERT_TRUE(o.ok) << DropReasonName(o.why);
    EXPECT_EQ(static_cast<int>(o.packet.advert.status), v);
  }
}

TEST(PacketTest, UnknownFlagBitsAreMalformed) {
  const Bytes good = Encode(FullPacket(), kKey);
  const size_t at = AdvertAt(good, kFlagsRel);
  for (uint8_t bit : kUnknownFlags) {
    SCOPED_TRACE(static_cast<int>(bit));
    ExpectDrop(PatchedAndResigned(at, static_cast<uint8_t>(good[at] | bit)),
               DropReason::kMalformed);
  }
  ExpectDrop(PatchedAndResigned(at, 0xFF), DropReason::kMalformed);
}

TEST(PacketTest, SenderLengthOverMaxIsMalformed) {
  // A full-length sender whose length byte says 65, with the packet grown by
  // one byte so that the claimed sender does fit in the buffer.
  Packet p = FullPacket();
  p.sender.assign(kSenderBytesMax, 's');
  Bytes b = Encode(p, kKey);
  b[kSenderLenOffset] = kSenderBytesMax + 1;
  b.insert(b.begin() + kSenderOffset, 's');
  Resign(&b);
  ExpectDrop(b, DropReason::kMalformed);
  ExpectDrop(PatchedAndResigned(kSenderLenOffset, 255), DropReason::kMalformed);
}

TEST(PacketTest, SenderLengthBeyondBufferIsMalformed) {
  const Bytes good = Encode(FullPacket(), kKey);
  const size_t n = good[kSenderLenOffset];
  for (size_t len = n + 1; len <= kSenderBytesMax; ++len) {
    SCOPED_TRACE(len);
    ExpectDrop(PatchedAndResigned(kSenderLenOffset, static_cast<uint8_t>(len)),
               DropReason::kMalformed);
  }
}

TEST(PacketTest, SenderLengthShortOfBufferIsMalformed) {
  // The advert is read too early and bytes are left over.
  const Packet p = FullPacket();
  for (size_t len = 0; len < p.sender.size(); ++len) {
    SCOPED_TRACE(len);
    ExpectDrop(PatchedAndResigned(kSenderLenOffset, static_cast<uint8_t>(len)),
               DropReason::kMalformed);
  }
}

TEST(PacketTest, WitnessPacketsRoundTripWithTheirTrailer) {
  for (PacketType t : {PacketType::kWitnessQuery, PacketType::kWitnessReply}) {
    Packet p = FullPacket(t, 0);
    p.subject = "tandem-primary";
    p.heard_ms_ago = 0xFFFFFFFEu;
    Bytes b = Encode(p, kKey);
    EXPECT_EQ(b.size(), Encode(FullPacket(), kKey).size() + 1 + p.subject.size() + 4);
    Outcome o = Dec(b);
    ASSERT_TRUE(o.ok) << DropReasonName(o.why);
    EXPECT_EQ(o.packet, p);
    // A subject length beyond the maximum is malformed even with a valid MAC.
    b.at(b.size() - kMacBytes - 4 - p.subject.size() - 1) = kSenderBytesMax + 1;
    Resign(&b);
    ExpectDrop(b, DropReason::kMalformed);
  }
  // Heartbeats carry no trailer: the subject is not encoded for them.
  Packet hb = FullPacket(PacketType::kHeartbeat, 0);
  hb.subject = "ignored";
  EXPECT_EQ(Encode(hb, kKey), Encode(FullPacket(PacketType::kHeartbeat, 0), kKey));
}

TEST(PacketTest, TrailingBytesBeforeMacAreMalformed) {
  for (size_t extra = 1; extra <= 8; ++extra) {
    SCOPED_TRACE(extra);
    Bytes b = Encode(FullPacket(), kKey);
    b.insert(b.end() - kMacBytes, extra, 0);
    Resign(&b);
    ExpectDrop(b, DropReason::kMalformed);
  }
}

// ---------------------------------------------------------------------------
// Random input.

// Seed from TANDEM_TEST_SEED if set (to reproduce a failure), else fixed.
uint64_t TestSeed() {
  const char* env = std::getenv("TANDEM_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 301;
}

TEST(PacketTest, RandomBytesAreNeverAccepted) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with TANDEM_TEST_SEED)");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> length(0, kPacketBytesMax + 16);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 100000; ++i) {
    Bytes b(length(rng));
    for (uint8_t& c : b) c = static_cast<uint8_t>(byte(rng));
    // Half of them get a valid magic and version so they reach the MAC check.
    if (i % 2 == 0 && b.size() > kVersionOffset) {
      std::copy_n("TNHB\x01", 5, b.begin());
    }
    Outcome o = Dec(b);
    ASSERT_FALSE(o.ok) << "iteration " << i << " size " << b.size();
    ASSERT_LT(o.why, DropReason::kReplay) << "iteration " << i;
  }
}

// Randomly corrupted but validly signed packets exercise the parser: it
// either rejects them as malformed or accepts exactly the canonical encoding.
TEST(PacketTest, RandomSignedCorruptionIsMalformedOrCanonical) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with TANDEM_TEST_SEED)");
  std::mt19937_64 rng(seed);
  const Bytes good = Encode(FullPacket(), kKey);
  std::uniform_int_distribution<size_t> pos(kVersionOffset + 1, good.size() - kMacBytes - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = good;
    for (int k = 1 + i % 3; k > 0; --k) b[pos(rng)] = static_cast<uint8_t>(byte(rng));
    Resign(&b);
    Outcome o = Dec(b);
    if (o.ok) {
      ++accepted;
      ASSERT_EQ(Encode(o.packet, kKey), b) << "iteration " << i;
    } else {
      ++rejected;
      ASSERT_EQ(o.why, DropReason::kMalformed) << "iteration " << i;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

// ---------------------------------------------------------------------------
// Drop reasons and the replay filter.

TEST(DropReasonTest, EveryReasonHasItsName) {
  const std::vector<std::pair<DropReason, std::string_view>> cases = {
      {DropReason::kTooShort, "too_short"},   {DropReason::kTooLong, "too_long"},
      {DropReason::kBadMagic, "bad_magic"},   {DropReason::kBadVersion, "bad_version"},
      {DropReason::kBadMac, "bad_mac"},       {DropReason::kMalformed, "malformed"},
      {DropReason::kReplay, "replay"},
  };
  ASSERT_EQ(cases.size(), static_cast<size_t>(DropReason::kCount));
  std::set<std::string_view> seen;
  for (const auto& [reason, name] : cases) {
    EXPECT_EQ(DropReasonName(reason), name);
    seen.insert(DropReasonName(reason));
  }
  EXPECT_EQ(seen.size(), cases.size());
}

TEST(ReplayFilterTest, StartsAtZeroAndRejectsZeroPair) {
  ReplayFilter f;
  EXPECT_EQ(f.incarnation(), 0u);
  EXPECT_EQ(f.seq(), 0u);
  EXPECT_FALSE(f.Accept(0, 0));
  EXPECT_TRUE(f.Accept(0, 1));
}

TEST(ReplayFilterTest, AcceptsIncreasingSeq) {
  ReplayFilter f;
  for (uint64_t s = 1; s <= 1000; ++s) {
    ASSERT_TRUE(f.Accept(7, s)) << s;
    EXPECT_EQ(f.incarnation(), 7u);
    EXPECT_EQ(f.seq(), s);
  }
  EXPECT_TRUE(f.Accept(7, 5000));  // gaps (lost packets) are fine
}

TEST(ReplayFilterTest, RejectsEqualAndOlderSeq) {
  ReplayFilter f;
  ASSERT_TRUE(f.Accept(7, 10));
  EXPECT_FALSE(f.Accept(7, 10));  // exact repeat
  EXPECT_FALSE(f.Accept(7, 9));   // older (replayed or reordered)
  EXPECT_FALSE(f.Accept(7, 0));
  EXPECT_EQ(f.seq(), 10u);  // rejections leave the state alone
  EXPECT_TRUE(f.Accept(7, 12));
  EXPECT_FALSE(f.Accept(7, 11));  // reordered behind a newer one
}

TEST(ReplayFilterTest, HigherIncarnationRestartsSeq) {
  ReplayFilter f;
  ASSERT_TRUE(f.Accept(7, 1000));
  EXPECT_TRUE(f.Accept(8, 1));
  EXPECT_EQ(f.incarnation(), 8u);
  EXPECT_EQ(f.seq(), 1u);
  EXPECT_TRUE(f.Accept(8, 2));
  EXPECT_TRUE(f.Accept(10, 1));  // skipped incarnations are fine
}

TEST(ReplayFilterTest, RejectsEverythingFromLowerIncarnation) {
  ReplayFilter f;
  ASSERT_TRUE(f.Accept(7, 1000));
  ASSERT_TRUE(f.Accept(8, 1));
  EXPECT_FALSE(f.Accept(7, 1001));
  EXPECT_FALSE(f.Accept(7, std::numeric_limits<uint64_t>::max()));
  EXPECT_FALSE(f.Accept(0, std::numeric_limits<uint64_t>::max()));
  EXPECT_FALSE(f.Accept(8, 1));
  EXPECT_EQ(f.incarnation(), 8u);
  EXPECT_EQ(f.seq(), 1u);
}

TEST(ReplayFilterTest, SeqAtMaximumThenNextIncarnation) {
  ReplayFilter f;
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  ASSERT_TRUE(f.Accept(3, max));
  EXPECT_FALSE(f.Accept(3, max));
  EXPECT_TRUE(f.Accept(4, 1));
}

}  // namespace
}  // namespace tandem::peer
