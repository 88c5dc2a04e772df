#include "repl/frame.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::repl {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr std::string_view kKey = "0123456789abcdef0123456789abcdef-lab";
constexpr std::string_view kOtherKey = "0123456789abcdef0123456789abcdef-lab!";
constexpr uint64_t kConn = 0x0f1e2d3c4b5a6978;
constexpr uint64_t kAccept = 0x1122334455667788;
// Most tests decode the accepting side's frames (accept_id in every frame).
constexpr Direction kFrom = Direction::kFromAccepting;

// The layout of docs/formats/replication.md, restated independently of
// frame.cc so that the tests check the code against the document.
constexpr size_t kVersionOffset = 4;
constexpr size_t kTypeOffset = 5;
constexpr size_t kFlagsOffset = 6;
constexpr size_t kLengthOffset = 8;
constexpr size_t kSeqOffset = 12;
constexpr size_t kConnOffset = 20;
constexpr size_t kAcceptOffset = 28;
constexpr size_t kPayloadOffset = 36;
constexpr size_t kMac = 16;

uint64_t ReadLe(const Bytes& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(b.at(at + i)) << (8 * i);
  return v;
}

void WriteLe(Bytes* b, size_t at, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; ++i) b->at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}

Bytes HmacSha256(std::string_view key, const Bytes& data) {
  Bytes mac(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
       mac.data(), &len);
  mac.resize(len);
  return mac;
}

// The tag of docs/formats/replication.md computed here with OpenSSL directly,
// not via frame.cc: HKDF-SHA256 of the frame key from the ids in the header,
// then AES-256-GCM with the header and payload as associated data and the
// seq as nonce.
Bytes Mac(const uint8_t* data, size_t n, std::string_view key, Direction from = kFrom) {
  Bytes frame(data, data + n);
  std::string_view salt = "tandem replication frame key";
  Bytes prk = HmacSha256(salt, Bytes(key.begin(), key.end()));
  Bytes info = {'T', 'N', 'R', 'P', 2, static_cast<uint8_t>(from)};
  info.insert(info.end(), frame.begin() + kConnOffset, frame.begin() + kAcceptOffset + 8);
  info.push_back(1);
  Bytes okm = HmacSha256(std::string_view(reinterpret_cast<const char*>(prk.data()), prk.size()),
                         info);
  uint8_t iv[12] = {};
  std::copy_n(frame.begin() + kSeqOffset, 8, iv);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  Bytes tag(kMac);
  uint8_t none[16];
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, okm.data(), iv), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx, nullptr, &len, frame.data(), static_cast<int>(n)), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx, none, &len), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data()), 1);
  EVP_CIPHER_CTX_free(ctx);
  return tag;
}

// Replaces the last kMac bytes with the MAC of everything before them.
void Resign(Bytes* b, Direction from = kFrom) {
  ASSERT_GE(b->size(), kPayloadOffset + kMac);
  const size_t body = b->size() - kMac;
  Bytes mac = Mac(b->data(), body, kKey, from);
  ASSERT_EQ(mac.size(), kMac);
  std::copy(mac.begin(), mac.end(), b->begin() + static_cast<std::ptrdiff_t>(body));
}

Bytes Pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
  return b;
}

Frame Make(FrameType type, FrameBody body, uint64_t seq = 1) {
  Frame f;
  f.type = type;
  f.seq = seq;
  f.conn_id = kConn;
  f.accept_id = kAccept;
  f.body = std::move(body);
  return f;
}

Hello FullHello() {
  Hello h;
  h.node = "node-b.example";
  h.role = NodeRole::kSecondary;
  h.protocol = Protocol::kB;
  h.gen_current = 0x0102030405060708;
  h.gen_bitmap = 0x1112131415161718;
  h.gen_history = {0x2122232425262728, 0x3132333435363738};
  h.volume_bytes = 0x4142434445464748;
  h.software = "0.1.0-test";
  return h;
}

Write FullWrite(WriteOp op) {
  Write w;
  w.op = op;
  w.write_id = 0x5152535455565758;
  w.path = "events/2024/seg-0001.dat";
  if (op == WriteOp::kRename) w.path2 = "events/2024/seg-0002.dat";
  if (op == WriteOp::kAppend || op == WriteOp::kWriteAt) {
    w.data = Pattern(777, 3);
    w.length = w.data.size();
    w.offset = 0x10000;
  }
  if (op == WriteOp::kTruncate) w.length = 12345;
  return w;
}

VerifyRequest FullVerifyRequest() {
  VerifyRequest v;
  v.path = "flows/f.bin";
  v.chunk_index = 17;
  for (uint8_t i = 0; i < 3; ++i) {
    std::array<uint8_t, kHashBytes> h;
    for (size_t j = 0; j < h.size(); ++j) h[j] = static_cast<uint8_t>(i * 31 + j);
    v.hashes.push_back(h);
  }
  return v;
}

// One frame of every type (every write op), every field non-default where the
// rules allow, numbered 1, 2, 3, ... on connection kConn.
std::vector<Frame> AllFrames() {
  std::vector<Frame> v;
  v.push_back(Make(FrameType::kHello, FullHello()));
  Hello ack = FullHello();
  ack.node = "node-a";
  ack.role = NodeRole::kPrimary;
  v.push_back(Make(FrameType::kHelloAck, ack));
  for (uint8_t op = 1; op <= 7; ++op) {
    v.push_back(Make(FrameType::kWrite, FullWrite(static_cast<WriteOp>(op))));
  }
  v.push_back(Make(FrameType::kAck, Ack{0x6162636465666768, AckLevel::kReceived}));
  v.push_back(Make(FrameType::kSyncRequest, SyncRequest{"a/b", 5, 9}));
  v.push_back(Make(FrameType::kSyncData, SyncData{"a/b", 2, 2 * kChunkBytes + 10, Pattern(10, 9)}));
  v.push_back(Make(FrameType::kSyncDone, SyncDone{0x7172737475767778, 42}));
  v.push_back(Make(FrameType::kVerifyRequest, FullVerifyRequest()));
  VerifyReply reply{"flows/f.bin", 17, {true, false, true, true, false, false, false, true, true}};
  v.push_back(Make(FrameType::kVerifyReply, reply));
  v.push_back(Make(FrameType::kPing, Ping{0x8182838485868788}));
  v.push_back(Make(FrameType::kPong, Ping{0x8182838485868788}));
  v.push_back(Make(FrameType::kError, Error{0x1234, "split brain detected"}));
  for (size_t i = 0; i < v.size(); ++i) v[i].seq = i + 1;
  return v;
}

Bytes EncodeAll(const std::vector<Frame>& frames) {
  Bytes out;
  for (const Frame& f : frames) {
    Bytes b = EncodeFrame(f, kKey, kFrom);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

struct Decoded {
  std::vector<Frame> frames;
  FrameDecoder::Result last = FrameDecoder::kNeedMore;
  std::string error;
};

// Drains `d` until it needs more or fails.
void Drain(FrameDecoder* d, Decoded* out) {
  Frame f;
  while ((out->last = d->Next(&f)) == FrameDecoder::kFrame) out->frames.push_back(f);
  out->error = d->error();
}

// Feeds `b` in pieces of the given sizes (the rest in one piece), draining
// after every piece.
Decoded DecodeSplit(const Bytes& b, const std::vector<size_t>& pieces = {}) {
  FrameDecoder d{std::string(kKey), kFrom};
  Decoded out;
  size_t at = 0;
  for (size_t n : pieces) {
    n = std::min(n, b.size() - at);
    d.Feed(std::span<const uint8_t>(b.data() + at, n));
    at += n;
    Drain(&d, &out);
  }
  d.Feed(std::span<const uint8_t>(b.data() + at, b.size() - at));
  Drain(&d, &out);
  return out;
}

// Decodes one frame's bytes on a fresh decoder; expects the error `want`.
void ExpectError(const Bytes& b, std::string_view want) {
  Decoded d = DecodeSplit(b);
  EXPECT_TRUE(d.frames.empty());
  EXPECT_EQ(d.last, FrameDecoder::kError);
  EXPECT_EQ(d.error, want);
}

// An authentic frame built without validation: must be rejected as malformed.
void ExpectMalformed(const Frame& f, std::string_view field) {
  EXPECT_FALSE(Validate(f).ok());
  ExpectError(internal::EncodeFrameUnchecked(f, kKey, kFrom), "malformed: " + std::string(field));
}

// ---------------------------------------------------------------------------
// Round trip and layout.

TEST(FrameTest, RoundTripEveryTypeOnItsOwn) {
  for (Frame f : AllFrames()) {
    SCOPED_TRACE(FrameTypeName(f.type));
    f.seq = 1;
    ASSERT_TRUE(Validate(f).ok()) << Validate(f).ToString();
    Decoded d = DecodeSplit(EncodeFrame(f, kKey, kFrom));
    ASSERT_EQ(d.frames.size(), 1u) << d.error;
    EXPECT_EQ(d.frames[0], f);
    EXPECT_EQ(d.last, FrameDecoder::kNeedMore);
  }
}

TEST(FrameTest, RoundTripWholeStream) {
  std::vector<Frame> frames = AllFrames();
  Decoded d = DecodeSplit(EncodeAll(frames));
  EXPECT_EQ(d.last, FrameDecoder::kNeedMore) << d.error;
  EXPECT_EQ(d.frames, frames);
}

TEST(FrameTest, HeaderLayoutAsDocumented) {
  Frame f = Make(FrameType::kAck, Ack{7, AckLevel::kDurable}, 0x0102030405060708);
  Bytes b = EncodeFrame(f, kKey, kFrom);
  ASSERT_EQ(b.size(), kPayloadOffset + 9 + kMac);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "TNRP");
  EXPECT_EQ(b[kVersionOffset], 2);
  EXPECT_EQ(b[kTypeOffset], 4);
  EXPECT_EQ(ReadLe(b, kFlagsOffset, 2), 0u);
  EXPECT_EQ(ReadLe(b, kLengthOffset, 4), 9u);
  EXPECT_EQ(ReadLe(b, kSeqOffset, 8), 0x0102030405060708u);
  EXPECT_EQ(ReadLe(b, kConnOffset, 8), kConn);
  EXPECT_EQ(ReadLe(b, kAcceptOffset, 8), kAccept);
  EXPECT_EQ(ReadLe(b, kPayloadOffset, 8), 7u);  // write_id
  EXPECT_EQ(b[kPayloadOffset + 8], 2);          // level durable
  Bytes mac = Mac(b.data(), b.size() - kMac, kKey);
  EXPECT_TRUE(std::equal(mac.begin(), mac.end(), b.end() - kMac));
}

TEST(FrameTest, PayloadLayoutOfWriteAsDocumented) {
  Write w = FullWrite(WriteOp::kWriteAt);
  Bytes b = EncodeFrame(Make(FrameType::kWrite, w), kKey, kFrom);
  size_t at = kPayloadOffset;
  EXPECT_EQ(b[at], 3);
  EXPECT_EQ(ReadLe(b, at + 1, 8), w.write_id);
  EXPECT_EQ(ReadLe(b, at + 9, 2), w.path.size());
  at += 11 + w.path.size();
  EXPECT_EQ(ReadLe(b, at, 2), 0u);  // path2 empty
  EXPECT_EQ(ReadLe(b, at + 2, 8), w.offset);
  EXPECT_EQ(ReadLe(b, at + 10, 8), w.length);
  EXPECT_EQ(ReadLe(b, at + 18, 4), w.data.size());
  EXPECT_EQ(b.size(), at + 22 + w.data.size() + kMac);
}

TEST(FrameTest, LargestFramesFitAndRoundTrip) {
  Write w = FullWrite(WriteOp::kWriteAt);
  w.path = std::string(kPathBytesMax, 'p');
  w.data = Pattern(kDataBytesMax, 1);
  w.length = w.data.size();
  VerifyRequest v = FullVerifyRequest();
  v.path = w.path;
  v.hashes.resize(kVerifyChunksMax);
  std::vector<Frame> frames = {Make(FrameType::kWrite, w, 1),
                               Make(FrameType::kVerifyRequest, v, 2)};
  Bytes b = EncodeAll(frames);
  EXPECT_LE(b.size(), 2 * kFrameBytesMax);
  Decoded d = DecodeSplit(b, {1000, 70000});
  EXPECT_EQ(d.frames, frames) << d.error;
}

TEST(FrameTest, VerifyReplyBitOrderLsbFirst) {
  VerifyReply r{"x", 0, {true, false, false, false, false, false, false, false, false, true}};
  Bytes b = EncodeFrame(Make(FrameType::kVerifyReply, r), kKey, kFrom);
  const size_t bits = kPayloadOffset + 2 + 1 + 8 + 4;
  EXPECT_EQ(ReadLe(b, bits - 4, 4), 10u);
  EXPECT_EQ(b[bits], 0x01);
  EXPECT_EQ(b[bits + 1], 0x02);
  EXPECT_EQ(b.size(), bits + 2 + kMac);
}

// ---------------------------------------------------------------------------
// Streaming.

TEST(FrameDecoderTest, ByteByByteGivesTheSameFrames) {
  std::vector<Frame> frames = AllFrames();
  Bytes b = EncodeAll(frames);
  Decoded d = DecodeSplit(b, std::vector<size_t>(b.size(), 1));
  EXPECT_EQ(d.frames, frames) << d.error;
  EXPECT_EQ(d.last, FrameDecoder::kNeedMore);
}

TEST(FrameDecoderTest, RandomSplitsGiveTheSameFrames) {
  std::vector<Frame> frames = AllFrames();
  Bytes b = EncodeAll(frames);
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<size_t> pieces;
    for (size_t total = 0; total < b.size();) {
      pieces.push_back(std::uniform_int_distribution<size_t>(0, 200)(rng));
      total += pieces.back();
    }
    Decoded d = DecodeSplit(b, pieces);
    ASSERT_EQ(d.frames, frames) << "seed " << seed << " trial " << trial << " " << d.error;
  }
}

TEST(FrameDecoderTest, TruncatedFrameNeedsMoreForever) {
  Bytes b = EncodeFrame(Make(FrameType::kWrite, FullWrite(WriteOp::kAppend)), kKey, kFrom);
  for (size_t n = 0; n < b.size(); ++n) {
    FrameDecoder d{std::string(kKey), kFrom};
    d.Feed(std::span<const uint8_t>(b.data(), n));
    Frame f;
    for (int i = 0; i < 3; ++i) ASSERT_EQ(d.Next(&f), FrameDecoder::kNeedMore) << n;
    EXPECT_EQ(d.buffered(), n);
    d.Feed(std::span<const uint8_t>(b.data() + n, b.size() - n));  // and the rest completes it
    ASSERT_EQ(d.Next(&f), FrameDecoder::kFrame) << n;
  }
}

// ---------------------------------------------------------------------------
// Corruption.

TEST(FrameDecoderTest, EverySingleByteFlipIsRejected) {
  const Bytes good = EncodeFrame(Make(FrameType::kWrite, FullWrite(WriteOp::kRename)), kKey, kFrom);
  for (size_t at = 0; at < good.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = good;
      b[at] ^= static_cast<uint8_t>(1u << bit);
      // A grown length leaves the frame incomplete: supply the bytes it claims.
      const uint64_t claimed = kPayloadOffset + ReadLe(b, kLengthOffset, 4) + kMac;
      if (claimed > b.size() && claimed <= kFrameBytesMax) b.resize(claimed, 0);
      Decoded d = DecodeSplit(b);
      ASSERT_TRUE(d.frames.empty()) << "byte " << at << " bit " << bit;
      ASSERT_EQ(d.last, FrameDecoder::kError) << "byte " << at << " bit " << bit;
      if (at > kVersionOffset) {  // magic and version bytes: bad_magic / bad_version
        ASSERT_TRUE(d.error == "bad_mac" || d.error == "too_long") << at << " " << d.error;
      }
    }
  }
}

TEST(FrameDecoderTest, WrongKeyIsBadMac) {
  Bytes b = EncodeFrame(Make(FrameType::kPing, Ping{1}), kOtherKey, kFrom);
  ExpectError(b, "bad_mac");
}

TEST(FrameDecoderTest, OversizedLengthRejectedFromHeaderAlone) {
  Bytes b = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
  WriteLe(&b, kLengthOffset, 4, kFramePayloadBytesMax + 1);
  FrameDecoder d{std::string(kKey), kFrom};
  d.Feed(std::span<const uint8_t>(b.data(), kPayloadOffset));  // the header only
  EXPECT_EQ(d.error(), "too_long");                            // already in Feed
  EXPECT_EQ(d.buffered(), 0u);                                 // and the buffer freed
  Frame f;
  EXPECT_EQ(d.Next(&f), FrameDecoder::kError);
}

TEST(FrameDecoderTest, LargestLengthIsWaitedFor) {
  Bytes b = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
  WriteLe(&b, kLengthOffset, 4, kFramePayloadBytesMax);
  FrameDecoder d{std::string(kKey), kFrom};
  d.Feed(std::span<const uint8_t>(b.data(), kPayloadOffset));
  Frame f;
  EXPECT_EQ(d.Next(&f), FrameDecoder::kNeedMore);
}

TEST(FrameDecoderTest, BadMagicAndVersionFromHeaderAlone) {
  for (size_t at : {size_t{0}, size_t{3}, kVersionOffset}) {
    Bytes b = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
    b[at] ^= 0x20;
    FrameDecoder d{std::string(kKey), kFrom};
    d.Feed(std::span<const uint8_t>(b.data(), kPayloadOffset));
    EXPECT_EQ(d.error(), at == kVersionOffset ? "bad_version" : "bad_magic");
  }
}

TEST(FrameDecoderTest, ErrorIsFinal) {
  Bytes bad = EncodeFrame(Make(FrameType::kPing, Ping{1}), kOtherKey, kFrom);
  Bytes good = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
  FrameDecoder d{std::string(kKey), kFrom};
  d.Feed(bad);
  Frame f;
  ASSERT_EQ(d.Next(&f), FrameDecoder::kError);
  d.Feed(good);
  EXPECT_EQ(d.Next(&f), FrameDecoder::kError);
  EXPECT_EQ(d.error(), "bad_mac");
  EXPECT_EQ(d.buffered(), 0u);
}

// ---------------------------------------------------------------------------
// Sequence and connection.

Decoded DecodeSeqs(const std::vector<uint64_t>& seqs, uint64_t conn = kConn) {
  std::vector<Frame> frames;
  for (uint64_t s : seqs) {
    frames.push_back(Make(FrameType::kPing, Ping{s}, s));
    frames.back().conn_id = conn;
  }
  return DecodeSplit(EncodeAll(frames));
}

TEST(FrameDecoderTest, SequenceMustStartAtOneAndStepByOne) {
  EXPECT_EQ(DecodeSeqs({1, 2, 3}).frames.size(), 3u);
  struct Case {
    std::vector<uint64_t> seqs;
    size_t accepted;
  };
  for (const Case& c : {Case{{2}, 0}, Case{{0}, 0}, Case{{1, 3}, 1}, Case{{1, 2, 2}, 2},
                        Case{{1, 2, 1}, 2}, Case{{1, 2, 4, 3}, 2}}) {
    Decoded d = DecodeSeqs(c.seqs);
    EXPECT_EQ(d.frames.size(), c.accepted);
    EXPECT_EQ(d.error, "bad_sequence");
  }
}

TEST(FrameDecoderTest, FirstConnectionIdIsAdopted) {
  Bytes a = EncodeFrame(Make(FrameType::kPing, Ping{1}, 1), kKey, kFrom);
  Frame other = Make(FrameType::kPing, Ping{2}, 2);
  other.conn_id = kConn + 1;
  Bytes b = EncodeFrame(other, kKey, kFrom);  // authentic, in sequence, other connection
  a.insert(a.end(), b.begin(), b.end());
  Decoded d = DecodeSplit(a);
  EXPECT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.error, "wrong_connection");
}

// The next connection's decoder reuses the buffer's memory (no realloc
// while it stays within the capacity), and what it decodes is unaffected.
TEST(FrameDecoderTest, StorageIsReusedByTheNextDecoder) {
  std::vector<uint8_t> storage;
  storage.reserve(1 << 20);
  storage.push_back(0xEE);  // stale contents are dropped
  const uint8_t* memory = storage.data();
  FrameDecoder first{std::string(kKey), kFrom};
  first.AdoptStorage(std::move(storage));
  Bytes a = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
  first.Feed(std::span<const uint8_t>(a.data(), a.size() - 3));  // a partial frame stays buffered
  Frame f;
  EXPECT_EQ(first.Next(&f), FrameDecoder::kNeedMore);
  storage = first.ReleaseStorage();
  EXPECT_EQ(storage.data(), memory);
  EXPECT_TRUE(storage.empty());
  EXPECT_EQ(first.buffered(), 0u);
  FrameDecoder second{std::string(kKey), kFrom};
  second.AdoptStorage(std::move(storage));
  second.Feed(a);
  ASSERT_EQ(second.Next(&f), FrameDecoder::kFrame);
  EXPECT_EQ(std::get<Ping>(f.body).timestamp, 1u);
  EXPECT_EQ(second.Next(&f), FrameDecoder::kNeedMore);
  EXPECT_EQ(second.ReleaseStorage().data(), memory);
}

TEST(FrameDecoderTest, PinnedConnectionId) {
  FrameDecoder d{std::string(kKey), kFrom};
  d.ExpectConnection(kConn + 1);
  d.Feed(EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom));
  Frame f;
  EXPECT_EQ(d.Next(&f), FrameDecoder::kError);
  EXPECT_EQ(d.error(), "wrong_connection");
  FrameDecoder ok{std::string(kKey), kFrom};
  ok.ExpectConnection(kConn);
  ok.Feed(EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom));
  EXPECT_EQ(ok.Next(&f), FrameDecoder::kFrame);
  EXPECT_EQ(ok.conn_id(), kConn);
}

TEST(FrameDecoderTest, ConnectionIdZeroIsNeverValid) {
  Frame f = Make(FrameType::kPing, Ping{1});
  f.conn_id = 0;
  EXPECT_FALSE(Validate(f).ok());
  ExpectError(internal::EncodeFrameUnchecked(f, kKey, kFrom), "wrong_connection");
}

// The connecting side's stream: accept_id 0 in its first frame (the kHello,
// sent before the accepting side's id is known), that id in every later one.
Bytes FromConnecting(const std::vector<uint64_t>& accept_ids) {
  Bytes out;
  for (size_t i = 0; i < accept_ids.size(); ++i) {
    Frame f = Make(FrameType::kPing, Ping{i}, i + 1);
    f.accept_id = accept_ids[i];
    Bytes b = internal::EncodeFrameUnchecked(f, kKey, Direction::kFromConnecting);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

Decoded DecodeFromConnecting(const Bytes& b, uint64_t pinned_accept_id) {
  FrameDecoder d{std::string(kKey), Direction::kFromConnecting};
  if (pinned_accept_id != 0) d.ExpectAcceptId(pinned_accept_id);
  d.Feed(b);
  Decoded out;
  Drain(&d, &out);
  return out;
}

TEST(FrameDecoderTest, AcceptIdIsZeroOnlyInTheConnectingSidesFirstFrame) {
  Decoded ok = DecodeFromConnecting(FromConnecting({0, kAccept, kAccept}), kAccept);
  EXPECT_EQ(ok.frames.size(), 3u) << ok.error;
  EXPECT_EQ(ok.last, FrameDecoder::kNeedMore);
  struct Case {
    std::vector<uint64_t> ids;
    uint64_t pinned;
    size_t accepted;
  };
  for (const Case& c : {Case{{kAccept}, kAccept, 0}, Case{{0, 0}, kAccept, 1},
                        Case{{0, kAccept + 1}, kAccept, 1}, Case{{0, kAccept, 0}, 0, 2},
                        Case{{0, kAccept, kAccept + 1}, 0, 2}}) {
    Decoded d = DecodeFromConnecting(FromConnecting(c.ids), c.pinned);
    EXPECT_EQ(d.frames.size(), c.accepted);
    EXPECT_EQ(d.error, "wrong_connection");
  }
  // The accepting side's frames always carry its id.
  Frame f = Make(FrameType::kPing, Ping{1});
  f.accept_id = 0;
  EXPECT_FALSE(ValidateIds(f, Direction::kFromAccepting).ok());
  EXPECT_TRUE(ValidateIds(f, Direction::kFromConnecting).ok());
  ExpectError(internal::EncodeFrameUnchecked(f, kKey, kFrom), "wrong_connection");
  f.seq = 2;
  EXPECT_FALSE(ValidateIds(f, Direction::kFromConnecting).ok());
}

TEST(FrameDecoderTest, AcceptIdIsAdoptedOrPinned) {
  Frame a = Make(FrameType::kPing, Ping{1}, 1);
  Frame b = Make(FrameType::kPing, Ping{2}, 2);
  b.accept_id = kAccept + 1;  // authentic, in sequence, another accepting side
  Bytes stream = EncodeFrame(a, kKey, kFrom);
  Bytes more = EncodeFrame(b, kKey, kFrom);
  stream.insert(stream.end(), more.begin(), more.end());
  Decoded d = DecodeSplit(stream);
  EXPECT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.error, "wrong_connection");
  FrameDecoder pinned{std::string(kKey), kFrom};
  pinned.ExpectAcceptId(kAccept + 1);
  pinned.Feed(EncodeFrame(a, kKey, kFrom));
  Frame f;
  EXPECT_EQ(pinned.Next(&f), FrameDecoder::kError);
  EXPECT_EQ(pinned.error(), "wrong_connection");
  FrameDecoder ok{std::string(kKey), kFrom};
  ok.Feed(EncodeFrame(a, kKey, kFrom));
  EXPECT_EQ(ok.Next(&f), FrameDecoder::kFrame);
  EXPECT_EQ(ok.accept_id(), kAccept);
}

TEST(FrameDecoderTest, FrameOfTheOtherDirectionIsBadMac) {
  // A frame reflected back to its sender, or replayed into the other
  // direction: the direction is part of the key.
  Frame hello = Make(FrameType::kPing, Ping{1});
  hello.accept_id = 0;  // fits both directions' first frame but for the key
  ExpectError(EncodeFrame(hello, kKey, Direction::kFromConnecting), "bad_mac");
  Frame f = Make(FrameType::kPing, Ping{1});
  FrameDecoder d{std::string(kKey), Direction::kFromConnecting};
  d.Feed(EncodeFrame(f, kKey, Direction::kFromAccepting));
  Frame out;
  EXPECT_EQ(d.Next(&out), FrameDecoder::kError);
  EXPECT_EQ(d.error(), "bad_mac");
}

TEST(FrameDecoderTest, FrameKeyDependsOnBothIds) {
  // Another id in the header selects another key: an authentic frame with
  // its conn_id, accept_id or seq rewritten fails as bad_mac, however the
  // rest fits.
  const Bytes good = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
  for (size_t at : {kConnOffset, kConnOffset + 7, kAcceptOffset, kAcceptOffset + 7, kSeqOffset}) {
    Bytes b = good;
    b[at] ^= 0x01;
    FrameDecoder d{std::string(kKey), kFrom};
    d.Feed(b);
    Frame f;
    EXPECT_EQ(d.Next(&f), FrameDecoder::kError) << at;
    EXPECT_EQ(d.error(), "bad_mac") << at;
  }
  // The same frame under another connection's ids has another tag.
  Frame other = Make(FrameType::kPing, Ping{1});
  other.accept_id = kAccept + 1;
  Bytes b = EncodeFrame(other, kKey, kFrom);
  EXPECT_FALSE(std::equal(b.end() - kMac, b.end(), good.end() - kMac));
}

TEST(FrameTest, EncoderKeepsItsKeyAndMatchesEncodeFrame) {
  FrameEncoder enc{std::string(kKey), kFrom};
  std::vector<Frame> frames = AllFrames();
  Bytes stream;
  for (const Frame& f : frames) {
    Bytes b = enc.Encode(f);
    EXPECT_EQ(b, EncodeFrame(f, kKey, kFrom));
    stream.insert(stream.end(), b.begin(), b.end());
  }
  EXPECT_EQ(DecodeSplit(stream).frames, frames);
  Frame again = frames[0];
  again.conn_id = kConn + 1;  // a new connection: a new key
  EXPECT_EQ(enc.Encode(again), EncodeFrame(again, kKey, kFrom));
}

// ---------------------------------------------------------------------------
// Strict parsing behind a valid MAC.

TEST(FrameDeathTest, EncodingAnInvalidFrameIsABug) {
  Frame f = Make(FrameType::kWrite, FullWrite(WriteOp::kCreate));
  f.body = Write{};  // empty path
  EXPECT_DEATH(EncodeFrame(f, kKey, kFrom), "CHECK failed");
}

TEST(FrameTest, IsValidPath) {
  for (std::string_view p : {"a", "a/b", "a.b/.c/d..", "...", "x/y/z.dat"}) {
    EXPECT_TRUE(IsValidPath(p)) << p;
  }
  const std::string nul("a\0b", 3);
  for (std::string_view p : {std::string_view("/abs"), std::string_view("a/../b"),
                             std::string_view(""), std::string_view(nul), std::string_view(".."),
                             std::string_view("."), std::string_view("a/./b"),
                             std::string_view("a//b"), std::string_view("a/"),
                             std::string_view("/")}) {
    EXPECT_FALSE(IsValidPath(p)) << p;
  }
  EXPECT_TRUE(IsValidPath(std::string(kPathBytesMax, 'x')));
  EXPECT_FALSE(IsValidPath(std::string(kPathBytesMax + 1, 'x')));
}

TEST(FrameDecoderTest, BadPathsRejectedEvenWithValidMac) {
  const std::string nul("a\0b", 3);
  for (const std::string& p : {std::string("/abs"), std::string("a/../b"), std::string(""), nul,
                               std::string(kPathBytesMax + 1, 'x'), std::string("a//b")}) {
    SCOPED_TRACE(p.size());
    Write w = FullWrite(WriteOp::kCreate);
    w.path = p;
    ExpectMalformed(Make(FrameType::kWrite, w), "path");
    Write r = FullWrite(WriteOp::kRename);
    r.path2 = p;
    ExpectMalformed(Make(FrameType::kWrite, r), "path2");
    ExpectMalformed(Make(FrameType::kSyncRequest, SyncRequest{p, 0, 1}), "path");
    ExpectMalformed(Make(FrameType::kSyncData, SyncData{p, 0, 0, {}}), "path");
    VerifyRequest v = FullVerifyRequest();
    v.path = p;
    ExpectMalformed(Make(FrameType::kVerifyRequest, v), "path");
    ExpectMalformed(Make(FrameType::kVerifyReply, VerifyReply{p, 0, {true}}), "path");
  }
}

TEST(FrameDecoderTest, InvalidWriteCombinationsRejected) {
  struct Case {
    WriteOp op;
    void (*patch)(Write*);
    std::string_view field;
  };
  const Case cases[] = {
      {static_cast<WriteOp>(0), [](Write*) {}, "op"},
      {static_cast<WriteOp>(8), [](Write*) {}, "op"},
      {WriteOp::kCreate, [](Write* w) { w->data = {1}; }, "data"},
      {WriteOp::kCreate, [](Write* w) { w->offset = 1; }, "offset"},
      {WriteOp::kDelete, [](Write* w) { w->length = 1; }, "length"},
      {WriteOp::kDelete, [](Write* w) { w->path2 = "b"; }, "path2"},
      {WriteOp::kTruncate, [](Write* w) { w->data = {1}; }, "data"},
      {WriteOp::kRename, [](Write* w) { w->path2.clear(); }, "path2"},
      {WriteOp::kAppend, [](Write* w) { w->data.clear(), w->length = 0; }, "data"},
      {WriteOp::kAppend, [](Write* w) { w->length += 1; }, "length"},
      {WriteOp::kWriteAt, [](Write* w) { w->length = 0; }, "length"},
      {WriteOp::kWriteAt, [](Write* w) { w->offset = UINT64_MAX; }, "offset"},
      {WriteOp::kWriteAt, [](Write* w) { w->path2 = "b"; }, "path2"},
      {WriteOp::kWriteAt,
       [](Write* w) { w->data.resize(kDataBytesMax + 1), w->length = w->data.size(); }, "data"},
      {WriteOp::kCreate, [](Write* w) { w->path.clear(); }, "path"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    Write w = FullWrite(c.op == static_cast<WriteOp>(0) || c.op == static_cast<WriteOp>(8)
                            ? WriteOp::kCreate
                            : c.op);
    w.op = c.op;
    c.patch(&w);
    ExpectMalformed(Make(FrameType::kWrite, w), c.field);
  }
  Write sync = FullWrite(WriteOp::kSync);
  sync.path.clear();  // the whole volume: valid
  EXPECT_EQ(DecodeSplit(EncodeFrame(Make(FrameType::kWrite, sync), kKey, kFrom)).frames.size(), 1u);
}

TEST(FrameDecoderTest, InvalidFieldValuesRejected) {
  Hello h = FullHello();
  h.protocol = static_cast<Protocol>('D');
  ExpectMalformed(Make(FrameType::kHello, h), "protocol");
  h = FullHello();
  h.role = static_cast<NodeRole>(3);
  ExpectMalformed(Make(FrameType::kHelloAck, h), "role");
  h = FullHello();
  h.node.clear();
  ExpectMalformed(Make(FrameType::kHello, h), "node");
  h = FullHello();
  h.software = std::string(kSoftwareVersionBytesMax + 1, 'v');
  ExpectMalformed(Make(FrameType::kHello, h), "software");
  ExpectMalformed(Make(FrameType::kAck, Ack{1, static_cast<AckLevel>(3)}), "level");
  ExpectMalformed(Make(FrameType::kSyncRequest, SyncRequest{"a", 0, 0}), "chunk_count");
  ExpectMalformed(Make(FrameType::kSyncRequest, SyncRequest{"a", kChunkIndexMax, 2}),
                  "chunk_count");
  ExpectMalformed(Make(FrameType::kSyncData, SyncData{"a", kChunkIndexMax + 1, 0, {}}),
                  "chunk_index");
  ExpectMalformed(Make(FrameType::kError, Error{0, "x"}), "code");
  ExpectMalformed(Make(FrameType::kError, Error{1, std::string(kErrorMessageBytesMax + 1, 'm')}),
                  "message");
  VerifyRequest v = FullVerifyRequest();
  v.algorithm = static_cast<HashAlgorithm>(2);
  ExpectMalformed(Make(FrameType::kVerifyRequest, v), "algorithm");
  v = FullVerifyRequest();
  v.hashes.clear();
  ExpectMalformed(Make(FrameType::kVerifyRequest, v), "chunk_count");
  v.hashes.resize(kVerifyChunksMax + 1);
  ExpectMalformed(Make(FrameType::kVerifyRequest, v), "chunk_count");
  ExpectMalformed(Make(FrameType::kVerifyReply, VerifyReply{"a", 0, {}}), "chunk_count");
}

TEST(FrameDecoderTest, SyncDataLengthFollowsChunkAndFileSize) {
  EXPECT_EQ(ChunkLength(0, 0), 0u);
  EXPECT_EQ(ChunkLength(0, 10), 10u);
  EXPECT_EQ(ChunkLength(1, kChunkBytes), 0u);
  EXPECT_EQ(ChunkLength(1, 3 * kChunkBytes), kChunkBytes);
  EXPECT_EQ(ChunkLength(kChunkIndexMax, UINT64_MAX), kChunkBytes - 1);  // last byte of u64 space
  EXPECT_TRUE(Validate(Make(FrameType::kSyncData, SyncData{"a", 0, 0, {}})).ok());
  EXPECT_TRUE(Validate(Make(FrameType::kSyncData, SyncData{"a", 9, 5, {}})).ok());  // truncate
  ExpectMalformed(Make(FrameType::kSyncData, SyncData{"a", 0, 5, Pattern(4, 0)}), "data");
  ExpectMalformed(Make(FrameType::kSyncData, SyncData{"a", 0, 5, Pattern(6, 0)}), "data");
  ExpectMalformed(Make(FrameType::kSyncData, SyncData{"a", 1, 5, Pattern(1, 0)}), "data");
}

TEST(FrameDecoderTest, MismatchedBodyTypeAndFlagsRejected) {
  // A body that does not belong to the type cannot be encoded by EncodeFrame;
  // on the wire it is just a payload that does not parse as the type's.
  Frame mismatch = Make(FrameType::kAck, Ping{1});
  EXPECT_EQ(Validate(mismatch).ToString(), "malformed: body");
  ExpectError(internal::EncodeFrameUnchecked(mismatch, kKey, kFrom), "malformed: level");
  Frame f = Make(FrameType::kPing, Ping{1});
  for (int bit = 0; bit < 16; ++bit) {
    f.flags = static_cast<uint16_t>(1u << bit);
    ExpectMalformed(f, "flags");
  }
  for (uint8_t t : {uint8_t{0}, uint8_t{13}, uint8_t{255}}) {
    Bytes b = EncodeFrame(Make(FrameType::kPing, Ping{1}), kKey, kFrom);
    b[kTypeOffset] = t;
    Resign(&b);
    ExpectError(b, "malformed: type");
  }
}

TEST(FrameDecoderTest, TruncatedOrPaddedPayloadRejected) {
  Bytes good = EncodeFrame(Make(FrameType::kSyncDone, SyncDone{1, 2}), kKey, kFrom);
  Bytes longer = good;
  longer.insert(longer.end() - kMac, uint8_t{0});
  WriteLe(&longer, kLengthOffset, 4, 17);
  Resign(&longer);
  ExpectError(longer, "malformed: trailing");
  Bytes shorter = good;
  shorter.erase(shorter.end() - kMac - 1);
  WriteLe(&shorter, kLengthOffset, 4, 15);
  Resign(&shorter);
  ExpectError(shorter, "malformed: totals");
}

TEST(FrameDecoderTest, VerifyReplyPaddingBitsMustBeZero) {
  Bytes b = EncodeFrame(Make(FrameType::kVerifyReply, VerifyReply{"x", 0, {true, true, true}}),
                        kKey, kFrom);
  b[b.size() - kMac - 1] |= 0x08;  // chunk 3 of a 3-chunk reply
  Resign(&b);
  ExpectError(b, "malformed: differs");
}

TEST(FrameDecoderTest, RandomBytesNeverYieldAFrame) {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 100000; ++i) {
    Bytes b(std::uniform_int_distribution<size_t>(0, 160)(rng));
    for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
    if (i % 2 == 0 && b.size() >= 5) std::copy_n("TNRP\x02", 5, b.begin());  // get past step 2
    Decoded d = DecodeSplit(b);
    ASSERT_TRUE(d.frames.empty()) << "seed " << seed << " iteration " << i;
  }
}

}  // namespace
}  // namespace tandem::repl
