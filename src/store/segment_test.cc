// Segment format tests: codec round trips (property style), naming, the
// writer's block limits, reading sealed and unsealed segments, and the
// corruption suite in the spirit of leveldb's log_test (bad checksums, bad
// lengths, torn tails at every offset, damaged seals, power loss).
#include "store/segment.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>

#include "os/fault_fs.h"
#include "store/test_util.h"

namespace tandem::store {
namespace {

using testing::BuildSegment;
using testing::RandomEvent;
using testing::RandomFlow;
using testing::WriteFile;

constexpr char kDir[] = "/store";

SegmentName EventsName(std::string writer = "host-a", uint64_t gen = 0xabcdef0123456789ULL,
                       uint64_t seq = 7) {
  return SegmentName{SegmentKind::kEvents, std::move(writer), gen, seq};
}

SegmentWriter NewWriter(SegmentName n, SegmentWriter::Limits l = {}) {
  Result<SegmentWriter> w = SegmentWriter::Create(std::move(n), 1'000, l);
  TANDEM_CHECK(w.ok());
  return std::move(w).value();
}

std::vector<EventRecord> RandomEvents(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<EventRecord> v;
  for (size_t i = 0; i < n; ++i) v.push_back(RandomEvent(rng));
  return v;
}

EventRecord Event(int64_t t, std::string msg) {
  EventRecord e;
  e.receive_time_us = t;
  e.message = std::move(msg);
  e.host = "h";
  return e;
}

// ---- Codec ----

TEST(RecordCodec, EventRoundTripProperty) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 5000; ++i) {
    EventRecord e = RandomEvent(rng);
    std::vector<uint8_t> body;
    ASSERT_TRUE(EncodeEvent(e, &body).ok());
    EventView v;
    ASSERT_TRUE(DecodeEvent(body, &v));
    ASSERT_EQ(v.ToRecord(), e);
    int64_t t = 0;
    ASSERT_TRUE(PeekEventTime(body, &t));
    EXPECT_EQ(t, EventTimeUs(e));
    // Every strict prefix fails, never reads past the end (ASan checks).
    for (size_t cut : {size_t{0}, body.size() / 2, body.size() - 1}) {
      EXPECT_FALSE(DecodeEvent(std::span(body).first(cut), &v));
    }
    // Trailing bytes are an error.
    body.push_back(0);
    EXPECT_FALSE(DecodeEvent(body, &v));
  }
}

TEST(RecordCodec, FlowRoundTripProperty) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 5000; ++i) {
    FlowRecord f = RandomFlow(rng);
    std::vector<uint8_t> body;
    ASSERT_TRUE(EncodeFlow(f, &body).ok());
    FlowView v;
    ASSERT_TRUE(DecodeFlow(body, &v));
    ASSERT_EQ(v.ToRecord(), f);
    int64_t t = 0;
    ASSERT_TRUE(PeekFlowTime(body, &t));
    EXPECT_EQ(t, f.start_us);
    EXPECT_FALSE(DecodeFlow(std::span(body).first(body.size() - 1), &v));
  }
}

TEST(RecordCodec, StringLimits) {
  EventRecord e;
  e.message.assign(kStringBytesMax, 'x');
  std::vector<uint8_t> body;
  ASSERT_TRUE(EncodeEvent(e, &body).ok());
  EventView v;
  ASSERT_TRUE(DecodeEvent(body, &v));
  EXPECT_EQ(v.message.size(), kStringBytesMax);
  e.message.push_back('x');
  body.clear();
  Status s = EncodeEvent(e, &body);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("message"), std::string::npos);
  EXPECT_TRUE(body.empty());
  FlowRecord f;
  f.exporter.assign(kStringBytesMax + 1, 'e');
  EXPECT_FALSE(EncodeFlow(f, &body).ok());
}

TEST(RecordCodec, RejectsBadValues) {
  EventView v;
  // A string length past the end of the body.
  std::vector<uint8_t> body;
  ASSERT_TRUE(EncodeEvent(Event(5, "abc"), &body).ok());
  // The last field (sender, "") has length byte 0: make it 100.
  body.back() = 100;
  EXPECT_FALSE(DecodeEvent(body, &v));
  // A string length above kStringBytesMax even if the bytes were there.
  body.back() = 0x81;  // varint 0x81 0x80 0x04 = 65537
  body.push_back(0x80);
  body.push_back(0x04);
  body.resize(body.size() + 65537, 'x');
  EXPECT_FALSE(DecodeEvent(body, &v));
  // Unknown format and flag bits.
  body.clear();
  ASSERT_TRUE(EncodeEvent(Event(5, "abc"), &body).ok());
  std::vector<uint8_t> bad = body;
  bad[4] = 4;  // format (times 1 byte each, facility, severity 1 byte each)
  EXPECT_FALSE(DecodeEvent(bad, &v));
  bad = body;
  bad[5] = 2;  // flags
  EXPECT_FALSE(DecodeEvent(bad, &v));
  // Facility outside int16.
  bad = {0, 0, 0x80, 0x80, 0x04, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};  // zz 65536 = 32768 > INT16_MAX
  EXPECT_FALSE(DecodeEvent(bad, &v));
  // A varint longer than 10 bytes / overflowing 64 bits.
  std::vector<uint8_t> over(11, 0xff);
  int64_t t;
  EXPECT_FALSE(PeekEventTime(over, &t));
  std::vector<uint8_t> over64 = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  EXPECT_FALSE(PeekFlowTime(over64, &t));
  // Flow port above 65535.
  FlowView fv;
  std::vector<uint8_t> fb;
  ASSERT_TRUE(EncodeFlow(FlowRecord{}, &fb).ok());
  // start,end,recv (1 byte each), src "", dst "", src_port 0 -> 0x80 0x80 0x04 (65536)
  fb[5] = 0x80;
  fb.insert(fb.begin() + 6, {0x80, 0x04});
  EXPECT_FALSE(DecodeFlow(fb, &fv));
}

TEST(RecordCursor, BadLengthsAreErrorsNeverOverreads) {
  std::vector<uint8_t> body;
  ASSERT_TRUE(EncodeEvent(Event(1, "hello"), &body).ok());
  std::vector<uint8_t> payload;
  payload.push_back(static_cast<uint8_t>(body.size()));
  uint32_t sum = XXH32(body.data(), body.size(), 0);
  for (int i = 0; i < 4; ++i) payload.push_back(static_cast<uint8_t>(sum >> (8 * i)));
  payload.insert(payload.end(), body.begin(), body.end());
  std::span<const uint8_t> b;
  {
    RecordCursor c(payload);
    ASSERT_TRUE(c.Next(&b));
    EXPECT_FALSE(c.Next(&b));
    EXPECT_FALSE(c.error());
  }
  for (uint8_t len : {uint8_t{0}, static_cast<uint8_t>(body.size() + 1), uint8_t{0x7f}}) {
    std::vector<uint8_t> p = payload;
    p[0] = len;
    RecordCursor c(p);
    EXPECT_FALSE(c.Next(&b)) << int(len);
    EXPECT_TRUE(c.error());
  }
  {  // A length above kRecordBytesMax.
    std::vector<uint8_t> p = {0x81, 0x80, 0x40, 0, 0, 0, 0};
    RecordCursor c(p);
    EXPECT_FALSE(c.Next(&b));
    EXPECT_TRUE(c.error());
  }
  {  // Bad checksum: an error when verifying, lazily detectable otherwise.
    std::vector<uint8_t> p = payload;
    p.back() ^= 1;
    RecordCursor c(p);
    EXPECT_FALSE(c.Next(&b));
    EXPECT_TRUE(c.error());
    RecordCursor lazy(p, /*verify=*/false);
    ASSERT_TRUE(lazy.Next(&b));
    EXPECT_FALSE(lazy.LastChecksumOk());
  }
}

// ---- Naming and header ----

TEST(SegmentNaming, PathRoundTrip) {
  SegmentName n{SegmentKind::kFlows, "fw-a.example_1", 0x00c0ffee12345678ULL, 42};
  EXPECT_EQ(SegmentPath(n), "flows/fw-a.example_1-00c0ffee12345678-0000000042.seg");
  EXPECT_EQ(ParseSegmentPath(SegmentPath(n)), n);
  SegmentName m{SegmentKind::kEvents, "x", ~0ULL, kSeqMax};
  EXPECT_EQ(SegmentPath(m), "events/x-ffffffffffffffff-9999999999.seg");
  EXPECT_EQ(ParseSegmentPath(SegmentPath(m)), m);
}

TEST(SegmentNaming, RejectsOtherNames) {
  for (const char* p :
       {"events/x-00c0ffee12345678-0000000042.seg.tmp",
        "events/x-00C0FFEE12345678-0000000042.seg",  // uppercase hex
        "events/x-00c0ffee1234567-0000000042.seg",   // 15 hex digits
        "events/x-00c0ffee12345678-000000042.seg",   // 9 digits
        "events/-00c0ffee12345678-0000000042.seg",   // empty writer
        "events/a b-00c0ffee12345678-0000000042.seg", "events/x-00c0ffee12345678_0000000042.seg",
        "logs/x-00c0ffee12345678-0000000042.seg", "events/", ""}) {
    EXPECT_FALSE(ParseSegmentPath(p)) << p;
  }
  EXPECT_FALSE(ValidateWriterName("").ok());
  EXPECT_FALSE(ValidateWriterName(std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateWriterName(std::string(63, 'a')).ok());
  EXPECT_FALSE(ValidateWriterName("a/b").ok());
  EXPECT_FALSE(SegmentWriter::Create(EventsName("a/b"), 0).ok());
  EXPECT_FALSE(SegmentWriter::Create(EventsName("a", 1, kSeqMax + 1), 0).ok());
}

TEST(SegmentHeader, RoundTripAndChecks) {
  SegmentName n = EventsName("node-1", 0x1234, 99);
  std::vector<uint8_t> h = EncodeSegmentHeader(n, -5);
  EXPECT_EQ(h.size(), kSegmentHeaderFixedBytes + 6);
  auto p = ParseSegmentHeader(h);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, n);
  EXPECT_EQ(p->created_us, -5);
  EXPECT_EQ(p->header_bytes, h.size());
  for (size_t i = 0; i < h.size(); ++i) {  // every single-bit flip is caught
    std::vector<uint8_t> bad = h;
    bad[i] ^= 0x10;
    EXPECT_FALSE(ParseSegmentHeader(bad)) << i;
  }
  for (size_t cut = 0; cut < h.size(); ++cut) {
    EXPECT_FALSE(ParseSegmentHeader(std::span(h).first(cut))) << cut;
  }
}

// ---- Writer ----

TEST(SegmentWriter, BlockLimits) {
  SegmentWriter w = NewWriter(EventsName(), {.block_target_bytes = 1000, .block_records_max = 3});
  EXPECT_EQ(w.size_bytes(), w.Header().size());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(w.Add(Event(i, "m")).ok());
  EXPECT_TRUE(w.BlockReady());
  EXPECT_EQ(w.blocks(), 2u);  // 3 + 3 closed, 1 pending
  std::vector<uint8_t> b = w.TakeBlock();
  EXPECT_EQ(w.blocks(), 3u);
  EXPECT_EQ(w.pending_records(), 0u);
  EXPECT_FALSE(w.BlockReady());
  EXPECT_TRUE(w.TakeBlock().empty());
  // A record larger than the target gets a block of its own.
  ASSERT_TRUE(w.Add(Event(10, "a")).ok());
  ASSERT_TRUE(w.Add(Event(11, std::string(5000, 'b'))).ok());
  ASSERT_TRUE(w.Add(Event(12, "c")).ok());
  EXPECT_EQ(w.blocks(), 5u);
  std::vector<uint8_t> seal = w.Seal();
  EXPECT_TRUE(w.sealed());
  EXPECT_EQ(w.records(), 10u);
  EXPECT_EQ(w.min_time_us(), 0);
  EXPECT_EQ(w.max_time_us(), 12);
  std::vector<uint8_t> file = w.Header();
  file.insert(file.end(), b.begin(), b.end());
  file.insert(file.end(), seal.begin(), seal.end());
  EXPECT_EQ(file.size(), w.size_bytes());
  auto r = SegmentReader::OpenBuffer(file);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->sealed());
  ASSERT_EQ(r->blocks().size(), 6u);
  EXPECT_EQ(r->blocks()[4].records, 1u);
  EXPECT_EQ(r->blocks()[4].min_time_us, 11);
  auto all = r->ReadAllEvents();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 10u);
  EXPECT_EQ((*all)[8].message.size(), 5000u);
}

TEST(SegmentWriter, RefusesBadLimitsAndOversizedRecords) {
  EXPECT_FALSE(SegmentWriter::Create(EventsName(), 0, {.block_target_bytes = 0}).ok());
  EXPECT_FALSE(
      SegmentWriter::Create(EventsName(), 0, {.block_records_max = kBlockRecordsMax + 1}).ok());
  SegmentWriter w = NewWriter(EventsName());
  EventRecord e;
  e.host.assign(kStringBytesMax + 1, 'h');
  EXPECT_FALSE(w.Add(e).ok());
  EXPECT_EQ(w.records(), 0u);
  EXPECT_TRUE(w.TakeBlock().empty());
  // The largest event (every string at its limit) still fits one record,
  // so only an oversized string can make Add fail (see the static_assert).
  EventRecord big;
  for (std::string* f : {&big.host, &big.app, &big.procid, &big.msgid, &big.structured_data,
                         &big.message, &big.sender}) {
    f->assign(kStringBytesMax, 'x');
  }
  std::vector<uint8_t> body;
  EXPECT_TRUE(EncodeEvent(big, &body).ok());
  EXPECT_LE(body.size(), kRecordBytesMax);
  EXPECT_TRUE(w.Add(big).ok());
  EXPECT_EQ(w.records(), 1u);
  EXPECT_FALSE(SegmentWriter::Create(EventsName("w", 0, kSeqMax + 1), 0).ok());
  EXPECT_FALSE(SegmentWriter::Create(EventsName("bad/name"), 0).ok());
  EXPECT_FALSE(
      SegmentWriter::Create(EventsName(std::string(kWriterNameBytesMax + 1, 'a')), 0).ok());
  EXPECT_TRUE(SegmentWriter::Create(EventsName(std::string(kWriterNameBytesMax, 'a')), 0).ok());
}

TEST(SegmentWriter, RefusesMoreThankSegmentBlocksMax) {
  SegmentWriter w = NewWriter(EventsName(), {.block_records_max = 1});
  EventRecord e;
  e.receive_time_us = 1;
  for (uint32_t i = 0; i < kSegmentBlocksMax; ++i) {
    ASSERT_TRUE(w.Add(e).ok()) << i;
    (void)w.TakeBlock();
  }
  EXPECT_EQ(w.blocks(), kSegmentBlocksMax);
  Status st = w.Add(e);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(w.records(), kSegmentBlocksMax);
  // It can still be sealed, and the seal describes every block.
  std::vector<uint8_t> seal = w.Seal();
  EXPECT_EQ(seal.size(),
            kIndexHeaderBytes + size_t{kSegmentBlocksMax} * kIndexEntryBytes + kTrailerBytes);
}

TEST(SegmentWriter, EmptySealedSegment) {
  SegmentWriter w = NewWriter(EventsName());
  std::vector<uint8_t> file = w.Header();
  std::vector<uint8_t> seal = w.Seal();
  file.insert(file.end(), seal.begin(), seal.end());
  auto r = SegmentReader::OpenBuffer(file);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->sealed());
  EXPECT_TRUE(r->blocks().empty());
  Recovery rec = RecoverSegmentBuffer(file);
  EXPECT_TRUE(rec.sealed);
  EXPECT_EQ(rec.valid_length, file.size());
}

// ---- Round trips through a FileSystem ----

class SegmentFileTest : public ::testing::Test {
 protected:
  os::FaultFileSystem fs_;
  std::string path_ = std::string(kDir) + "/" + SegmentPath(EventsName());
};

TEST_F(SegmentFileTest, RoundTripProperty) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<EventRecord> recs = RandomEvents(seed, rng() % 300);
    const bool seal = seed % 2 == 0;
    SegmentWriter w =
        NewWriter(EventsName(), {.block_target_bytes = 1 + rng() % 20000,
                                 .block_records_max = static_cast<uint32_t>(1 + rng() % 50)});
    std::vector<uint8_t> file = BuildSegment(w, recs, 1 + rng() % 40, seal);
    WriteFile(fs_, path_, file);
    auto r = SegmentReader::Open(fs_, path_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->sealed(), seal);
    EXPECT_EQ(r->torn_bytes(), 0u);
    EXPECT_EQ(r->header().name, EventsName());
    EXPECT_EQ(r->header().created_us, 1000);
    uint64_t bad = 99;
    auto all = r->ReadAllEvents(&bad);
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(bad, 0u);
    ASSERT_EQ(*all, recs) << "seed=" << seed;
    auto rec = RecoverSegment(fs_, path_);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->valid_length, file.size());
    EXPECT_EQ(rec->sealed, seal);
    EXPECT_EQ(rec->records, recs.size());
    EXPECT_EQ(rec->blocks, r->blocks());
    EXPECT_FALSE(r->ReadAllFlows().ok());  // wrong kind
  }
}

TEST_F(SegmentFileTest, FlowsRoundTrip) {
  std::mt19937_64 rng(9);
  std::vector<FlowRecord> recs;
  for (int i = 0; i < 1000; ++i) recs.push_back(RandomFlow(rng));
  SegmentName n{SegmentKind::kFlows, "fl", 3, 0};
  SegmentWriter w = NewWriter(n, {.block_target_bytes = 4096});
  std::string p = std::string(kDir) + "/" + SegmentPath(n);
  WriteFile(fs_, p, BuildSegment(w, recs, 100, true));
  auto r = SegmentReader::Open(fs_, p);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->sealed());
  auto all = r->ReadAllFlows();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, recs);
}

TEST_F(SegmentFileTest, BlocksOverlappingARange) {
  SegmentWriter w = NewWriter(EventsName(), {.block_records_max = 10});
  std::vector<EventRecord> recs;
  for (int i = 0; i < 100; ++i) recs.push_back(Event(i * 10, "m"));  // block k: [100k, 100k+90]
  WriteFile(fs_, path_, BuildSegment(w, recs, 1000, true));
  auto r = SegmentReader::Open(fs_, path_);
  ASSERT_TRUE(r.ok());
  std::vector<uint64_t> seen;
  ASSERT_TRUE(r->ForEachBlock(195, 300, [&](const SegmentReader::Block& b) {
                 EXPECT_TRUE(b.valid);
                 seen.push_back(b.info->offset);
                 return true;
               }).ok());
  // [195, 300): blocks 1 (100..190)? no: 190 < 195. Blocks 2 (200..290). Block 3 starts at 300:
  // excluded.
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], r->blocks()[2].offset);
  seen.clear();
  ASSERT_TRUE(r->ForEachBlock(190, 301, [&](const SegmentReader::Block& b) {
                 seen.push_back(b.info->offset);
                 return true;
               }).ok());
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(SegmentFileTest, NameMustMatchHeader) {
  SegmentWriter w = NewWriter(EventsName("other"));
  WriteFile(fs_, path_, BuildSegment(w, RandomEvents(1, 5), 5, true));
  bool bad_format = false;
  auto r = SegmentReader::Open(fs_, path_, &bad_format);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(bad_format);
  bad_format = true;
  EXPECT_FALSE(SegmentReader::Open(fs_, "/store/events/missing.seg", &bad_format).ok());
  EXPECT_FALSE(bad_format);
}

// ---- Corruption suite ----

// A segment with 4 blocks of 5 events each; `seal` decides the seal.
struct Fixture {
  std::vector<EventRecord> recs;
  std::vector<uint8_t> file;
  std::vector<BlockInfo> blocks;
  uint32_t header_bytes = 0;
  uint64_t blocks_end = 0;
};

Fixture MakeFixture(bool seal) {
  Fixture f;
  for (int i = 0; i < 20; ++i)
    f.recs.push_back(Event(1000 + i, "message number " + std::to_string(i)));
  SegmentWriter w = NewWriter(EventsName());
  f.file = BuildSegment(w, f.recs, 5, seal);
  auto r = SegmentReader::OpenBuffer(f.file);
  TANDEM_CHECK(r.ok());
  f.blocks = r->blocks();
  f.header_bytes = r->header().header_bytes;
  f.blocks_end = r->blocks_end();
  TANDEM_CHECK(f.blocks.size() == 4);
  return f;
}

std::vector<EventRecord> Slice(const std::vector<EventRecord>& v, size_t from, size_t to) {
  return std::vector<EventRecord>(v.begin() + static_cast<ptrdiff_t>(from),
                                  v.begin() + static_cast<ptrdiff_t>(to));
}

// Fixes block i's payload hash and header hash after its payload was edited.
void Rehash(std::vector<uint8_t>* file, const BlockInfo& b) {
  const uint64_t seed = BlockSeed(ParseSegmentHeader(*file)->checksum, b.offset);
  uint8_t* h = file->data() + b.offset;
  uint64_t ph = XXH64(h + kBlockHeaderBytes, b.bytes - kBlockHeaderBytes, seed);
  for (int i = 0; i < 8; ++i) h[32 + i] = static_cast<uint8_t>(ph >> (8 * i));
  uint32_t hh = XXH32(h, 40, static_cast<uint32_t>(seed ^ (seed >> 32)));
  for (int i = 0; i < 4; ++i) h[40 + i] = static_cast<uint8_t>(hh >> (8 * i));
}

// The offset of record k's body start within block b (records of equal framing).
size_t RecordBodyOffset(const std::vector<uint8_t>& file, const BlockInfo& b, int k) {
  size_t p = b.offset + kBlockHeaderBytes;
  for (int i = 0; i <= k; ++i) {
    size_t len = file[p];  // bodies here are < 128 bytes: 1-byte varint
    if (i == k) return p + 5;
    p += 5 + len;
  }
  return 0;
}

TEST(SegmentCorruption, BadRecordChecksum) {
  for (bool seal : {false, true}) {
    Fixture f = MakeFixture(seal);
    // Record 2 of block 1: flip a message byte; the block checksum is made
    // to match, so only the record's own checksum sees it.
    size_t body = RecordBodyOffset(f.file, f.blocks[1], 2);
    f.file[body + 16] ^= 0x01;  // a message byte
    Rehash(&f.file, f.blocks[1]);
    Recovery rec = RecoverSegmentBuffer(f.file);
    EXPECT_EQ(rec.valid_length, f.blocks[1].offset);  // the first bad block ends it
    EXPECT_EQ(rec.records, 5u);
    EXPECT_FALSE(rec.sealed);
    auto r = SegmentReader::OpenBuffer(f.file);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->sealed(), seal);
    uint64_t bad = 0;
    auto all = r->ReadAllEvents(&bad);
    ASSERT_TRUE(all.ok());
    // ReadAll verifies every record: the block is dropped whole.
    EXPECT_EQ(bad, 1u);
    EXPECT_EQ(all->size(), 15u);
  }
}

TEST(SegmentCorruption, BadBlockChecksum) {
  for (bool seal : {false, true}) {
    Fixture f = MakeFixture(seal);
    f.file[f.blocks[2].offset + kBlockHeaderBytes + 30] ^= 0x40;  // payload byte
    Recovery rec = RecoverSegmentBuffer(f.file);
    EXPECT_EQ(rec.valid_length, f.blocks[2].offset);
    EXPECT_EQ(rec.records, 10u);
    EXPECT_EQ(rec.torn_bytes, f.file.size() - f.blocks[2].offset);
    auto r = SegmentReader::OpenBuffer(f.file);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->blocks().size(), 4u);  // the header is fine: the scan goes on
    int invalid = 0;
    ASSERT_TRUE(r->ForEachBlock(INT64_MIN, INT64_MAX, [&](const SegmentReader::Block& b) {
                   invalid += !b.valid;
                   return true;
                 }).ok());
    EXPECT_EQ(invalid, 1);
    uint64_t bad = 0;
    auto all = r->ReadAllEvents(&bad);
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(bad, 1u);
    std::vector<EventRecord> want = Slice(f.recs, 0, 10);
    for (size_t i = 15; i < 20; ++i) want.push_back(f.recs[i]);
    EXPECT_EQ(*all, want);
  }
}

TEST(SegmentCorruption, BadBlockHeader) {
  Fixture f = MakeFixture(false);
  f.file[f.blocks[1].offset + 9] ^= 0x01;  // record_count, caught by header_hash
  auto r = SegmentReader::OpenBuffer(f.file);
  ASSERT_TRUE(r.ok());
  // Unsealed: the scan cannot find the blocks after it.
  EXPECT_EQ(r->blocks().size(), 1u);
  EXPECT_EQ(r->torn_bytes(), f.file.size() - f.blocks[1].offset);
  Recovery rec = RecoverSegmentBuffer(f.file);
  EXPECT_EQ(rec.valid_length, f.blocks[1].offset);
  // Sealed: the index still knows where blocks 2 and 3 are.
  Fixture s = MakeFixture(true);
  s.file[s.blocks[1].offset + 9] ^= 0x01;
  auto rs = SegmentReader::OpenBuffer(s.file);
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(rs->sealed());
  uint64_t bad = 0;
  auto all = rs->ReadAllEvents(&bad);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(all->size(), 15u);
}

TEST(SegmentCorruption, BadRecordLength) {
  Fixture f = MakeFixture(false);
  size_t body = RecordBodyOffset(f.file, f.blocks[3], 1);
  f.file[body - 5] = 0x7f;  // length past the record (and possibly the payload)
  Rehash(&f.file, f.blocks[3]);
  Recovery rec = RecoverSegmentBuffer(f.file);
  EXPECT_EQ(rec.valid_length, f.blocks[3].offset);
  EXPECT_EQ(rec.records, 15u);
  f.file[body - 5] = 0xff;  // a varint running to the payload's end
  Rehash(&f.file, f.blocks[3]);
  EXPECT_EQ(RecoverSegmentBuffer(f.file).valid_length, f.blocks[3].offset);
}

TEST(SegmentCorruption, RecordCountMismatch) {
  Fixture f = MakeFixture(false);
  uint8_t* h = f.file.data() + f.blocks[0].offset;
  h[8] = 6;  // claims 6 records, has 5
  Rehash(&f.file, f.blocks[0]);
  Recovery rec = RecoverSegmentBuffer(f.file);
  EXPECT_EQ(rec.valid_length, f.header_bytes);
  EXPECT_EQ(rec.records, 0u);
}

TEST(SegmentCorruption, TornTailAtEveryOffsetOfTheLastBlock) {
  Fixture f = MakeFixture(false);
  const BlockInfo& last = f.blocks.back();
  ASSERT_EQ(last.offset + last.bytes, f.file.size());
  for (uint64_t cut = last.offset; cut < f.file.size(); ++cut) {
    std::vector<uint8_t> torn(f.file.begin(), f.file.begin() + static_cast<ptrdiff_t>(cut));
    Recovery rec = RecoverSegmentBuffer(torn);
    ASSERT_EQ(rec.valid_length, last.offset) << "cut=" << cut;
    EXPECT_EQ(rec.torn_bytes, cut - last.offset);
    EXPECT_EQ(rec.records, 15u);
    EXPECT_FALSE(rec.sealed);
    auto r = SegmentReader::OpenBuffer(torn);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->blocks().size(), 3u);
    auto all = r->ReadAllEvents();
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(*all, Slice(f.recs, 0, 15));
  }
}

TEST(SegmentCorruption, TornSealAtEveryOffset) {
  Fixture f = MakeFixture(true);
  for (uint64_t cut = f.blocks_end; cut < f.file.size(); ++cut) {
    std::vector<uint8_t> torn(f.file.begin(), f.file.begin() + static_cast<ptrdiff_t>(cut));
    Recovery rec = RecoverSegmentBuffer(torn);
    ASSERT_EQ(rec.valid_length, f.blocks_end) << "cut=" << cut;
    EXPECT_FALSE(rec.sealed);
    EXPECT_EQ(rec.records, 20u);
    auto r = SegmentReader::OpenBuffer(torn);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->sealed());  // truncated index/trailer: scan fallback
    EXPECT_EQ(r->blocks(), f.blocks);
    EXPECT_EQ(r->torn_bytes(), cut - f.blocks_end);
  }
}

TEST(SegmentCorruption, CorruptSealFallsBackToScan) {
  Fixture f = MakeFixture(true);
  // Every byte of the index and trailer, one at a time.
  for (uint64_t at = f.blocks_end; at < f.file.size(); ++at) {
    std::vector<uint8_t> bad = f.file;
    bad[at] ^= 0x08;
    auto r = SegmentReader::OpenBuffer(bad);
    ASSERT_TRUE(r.ok());
    ASSERT_FALSE(r->sealed()) << "at=" << at;
    EXPECT_EQ(r->blocks(), f.blocks);
    auto all = r->ReadAllEvents();
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(*all, f.recs);
    Recovery rec = RecoverSegmentBuffer(bad);
    EXPECT_FALSE(rec.sealed);
    EXPECT_EQ(rec.valid_length, f.blocks_end);
  }
}

TEST(SegmentCorruption, IndexDisagreeingWithBlocksIsNotASeal) {
  // A valid-looking seal whose index does not tile the blocks (e.g. written
  // by a buggy writer) is ignored by recovery.
  Fixture f = MakeFixture(true);
  Fixture u = MakeFixture(false);
  // Take the seal of a 4-block segment and append it after 3 blocks.
  std::vector<uint8_t> bad(u.file.begin(),
                           u.file.begin() + static_cast<ptrdiff_t>(u.blocks[3].offset));
  bad.insert(bad.end(), f.file.begin() + static_cast<ptrdiff_t>(f.blocks_end), f.file.end());
  Recovery rec = RecoverSegmentBuffer(bad);
  EXPECT_FALSE(rec.sealed);
  EXPECT_EQ(rec.valid_length, u.blocks[3].offset);
  auto r = SegmentReader::OpenBuffer(bad);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->sealed());
}

TEST(SegmentCorruption, ZeroLengthAndTornHeader) {
  Fixture f = MakeFixture(false);
  for (uint64_t cut = 0; cut < f.header_bytes; ++cut) {
    std::vector<uint8_t> torn(f.file.begin(), f.file.begin() + static_cast<ptrdiff_t>(cut));
    Recovery rec = RecoverSegmentBuffer(torn);
    EXPECT_FALSE(rec.header);
    EXPECT_EQ(rec.valid_length, 0u);
    EXPECT_EQ(rec.torn_bytes, cut);
    EXPECT_FALSE(SegmentReader::OpenBuffer(torn).ok());
  }
  os::FaultFileSystem fs;
  std::string p = std::string(kDir) + "/" + SegmentPath(EventsName());
  WriteFile(fs, p, {});
  bool bad_format = false;
  EXPECT_FALSE(SegmentReader::Open(fs, p, &bad_format).ok());
  EXPECT_TRUE(bad_format);
  auto rec = RecoverSegment(fs, p);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->valid_length, 0u);
}

TEST(SegmentCorruption, HeaderOnly) {
  Fixture f = MakeFixture(false);
  std::vector<uint8_t> h(f.file.begin(), f.file.begin() + f.header_bytes);
  auto r = SegmentReader::OpenBuffer(h);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->sealed());
  EXPECT_TRUE(r->blocks().empty());
  EXPECT_EQ(r->torn_bytes(), 0u);
  Recovery rec = RecoverSegmentBuffer(h);
  ASSERT_TRUE(rec.header);
  EXPECT_EQ(rec.valid_length, h.size());
  EXPECT_EQ(rec.records, 0u);
}

TEST(SegmentCorruption, GarbageAfterBlocks) {
  Fixture f = MakeFixture(false);
  f.file.insert(f.file.end(), 1000, 0xAB);
  Recovery rec = RecoverSegmentBuffer(f.file);
  EXPECT_EQ(rec.valid_length, f.file.size() - 1000);
  EXPECT_EQ(rec.records, 20u);
}

TEST(SegmentCorruption, ZeroFilledTail) {
  // A file extended but its data never written (e.g. size made durable
  // before the data): zeros after the blocks, or in place of the last one.
  Fixture f = MakeFixture(false);
  std::vector<uint8_t> grown = f.file;
  grown.insert(grown.end(), 8192, 0);
  Recovery rec = RecoverSegmentBuffer(grown);
  EXPECT_EQ(rec.valid_length, f.file.size());
  EXPECT_EQ(rec.torn_bytes, 8192u);
  EXPECT_EQ(rec.records, 20u);
  std::vector<uint8_t> zeroed = f.file;
  std::fill(zeroed.begin() + static_cast<ptrdiff_t>(f.blocks[3].offset), zeroed.end(), 0);
  rec = RecoverSegmentBuffer(zeroed);
  EXPECT_EQ(rec.valid_length, f.blocks[3].offset);
  EXPECT_EQ(rec.records, 15u);
  auto r = SegmentReader::OpenBuffer(zeroed);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks().size(), 3u);
  EXPECT_EQ(r->torn_bytes(), f.blocks[3].bytes);
  // Zeros in the middle: the scan stops there; recovery keeps the prefix.
  std::vector<uint8_t> hole = f.file;
  std::fill_n(hole.begin() + static_cast<ptrdiff_t>(f.blocks[1].offset), 10, 0);
  EXPECT_EQ(RecoverSegmentBuffer(hole).valid_length, f.blocks[1].offset);
}

// An append retried at a new offset, a block copied into another segment,
// or one swapped with its neighbour: every block's checksums are seeded with
// its segment and offset (BlockSeed), so a well-formed block in the wrong
// place fails like a corrupt one and no record is read twice.
TEST(SegmentCorruption, DuplicatedOrMisplacedBlocks) {
  Fixture f = MakeFixture(false);
  const BlockInfo& last = f.blocks.back();
  std::vector<uint8_t> dup = f.file;
  dup.insert(dup.end(), f.file.begin() + static_cast<ptrdiff_t>(last.offset), f.file.end());
  Recovery rec = RecoverSegmentBuffer(dup);
  EXPECT_EQ(rec.valid_length, f.file.size());
  EXPECT_EQ(rec.records, 20u);
  auto r = SegmentReader::OpenBuffer(dup);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks().size(), 4u);
  auto all = r->ReadAllEvents();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, f.recs);
  // Blocks 2 and 3 have the same size here: swap them.
  ASSERT_EQ(f.blocks[2].bytes, f.blocks[3].bytes);
  std::vector<uint8_t> swapped = f.file;
  std::swap_ranges(swapped.begin() + static_cast<ptrdiff_t>(f.blocks[2].offset),
                   swapped.begin() + static_cast<ptrdiff_t>(f.blocks[3].offset),
                   swapped.begin() + static_cast<ptrdiff_t>(f.blocks[3].offset));
  EXPECT_EQ(RecoverSegmentBuffer(swapped).valid_length, f.blocks[2].offset);
  // A block of another segment (other seq, same header size) at the same offset.
  SegmentWriter other = NewWriter(EventsName("host-a", 0xabcdef0123456789ULL, 8));
  std::vector<uint8_t> foreign = BuildSegment(other, f.recs, 5, false);
  ASSERT_EQ(foreign.size(), f.file.size());
  std::vector<uint8_t> mixed = f.file;
  std::copy(foreign.begin() + static_cast<ptrdiff_t>(f.blocks[2].offset),
            foreign.begin() + static_cast<ptrdiff_t>(f.blocks[3].offset),
            mixed.begin() + static_cast<ptrdiff_t>(f.blocks[2].offset));
  EXPECT_EQ(RecoverSegmentBuffer(mixed).valid_length, f.blocks[2].offset);
}

TEST(SegmentCorruption, GarbledBlockBetweenGoodOnes) {
  std::mt19937_64 rng(11);
  for (bool seal : {false, true}) {
    Fixture f = MakeFixture(seal);
    // Random bytes over block 1 (header and payload).
    for (uint64_t i = 0; i < f.blocks[1].bytes; ++i)
      f.file[f.blocks[1].offset + i] = static_cast<uint8_t>(rng());
    Recovery rec = RecoverSegmentBuffer(f.file);
    EXPECT_EQ(rec.valid_length, f.blocks[1].offset);
    EXPECT_EQ(rec.records, 5u);
    EXPECT_FALSE(rec.sealed);
    auto r = SegmentReader::OpenBuffer(f.file);
    ASSERT_TRUE(r.ok());
    uint64_t bad = 0;
    auto all = r->ReadAllEvents(&bad);
    ASSERT_TRUE(all.ok());
    // Sealed: the index still finds blocks 2 and 3; unsealed: the scan stops.
    std::vector<EventRecord> want = Slice(f.recs, 0, 5);
    if (seal) {
      EXPECT_EQ(bad, 1u);
      for (size_t i = 10; i < 20; ++i) want.push_back(f.recs[i]);
    }
    EXPECT_EQ(*all, want);
  }
}

// ---- Power loss (FaultFileSystem) and resume ----

// Appends header and blocks like the collector would (each append one
// WriteAt), syncing after the first `synced` blocks only.
TEST(SegmentPowerLoss, TearUnsyncedKeepsAValidPrefix) {
  const std::vector<EventRecord> recs = RandomEvents(77, 120);
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    os::FaultFileSystem fs;
    ASSERT_TRUE(fs.MakeDirs("/store/events").ok());
    ASSERT_TRUE(fs.SyncDir("/").ok());
    ASSERT_TRUE(fs.SyncDir("/store").ok());
    ASSERT_TRUE(fs.SyncDir("/store/events").ok());
    const std::string p = "/store/" + SegmentPath(EventsName());
    auto f = fs.Open(p, true);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(fs.SyncDir("/store/events").ok());
    SegmentWriter w = NewWriter(EventsName(), {.block_target_bytes = 2000});
    uint64_t off = 0;
    auto append = [&](const std::vector<uint8_t>& b) {
      ASSERT_TRUE((*f)->WriteAt(off, b).ok());
      off += b.size();
    };
    append(w.Header());
    const int synced_blocks = static_cast<int>(seed % 6);
    uint64_t durable = 0, durable_records = 0;
    if (seed % 7 != 0) {  // else even the header is unsynced
      ASSERT_TRUE((*f)->Sync().ok());
      durable = off;
    }
    for (int i = 0; i < 12; ++i) {
      for (int k = 0; k < 10; ++k) ASSERT_TRUE(w.Add(recs[static_cast<size_t>(i * 10 + k)]).ok());
      append(w.TakeBlock());
      if (i < synced_blocks && durable > 0) {
        ASSERT_TRUE((*f)->Sync().ok());
        durable = off;
        durable_records = w.records();
      }
    }
    if (seed % 3 == 0) append(w.Seal());
    fs.PowerLoss(seed, seed % 2 ? os::FaultFileSystem::Mode::kTearUnsynced
                                : os::FaultFileSystem::Mode::kDropUnsynced);
    auto rec = RecoverSegment(fs, p);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    ASSERT_GE(rec->valid_length, durable) << "seed=" << seed;
    ASSERT_GE(rec->records, durable_records) << "seed=" << seed;
    // Whatever survived is a prefix of what was written, record by record.
    auto r = SegmentReader::Open(fs, p);
    if (!rec->header) {
      ASSERT_FALSE(r.ok());
      continue;
    }
    ASSERT_TRUE(r.ok());
    auto all = r->ReadAllEvents();
    ASSERT_TRUE(all.ok());
    ASSERT_LE(all->size(), recs.size());
    ASSERT_EQ(*all, Slice(recs, 0, all->size())) << "seed=" << seed;
    ASSERT_EQ(all->size(), rec->records);
    // Cut, resume, append more and seal: everything reads back.
    if (rec->sealed) continue;
    auto f2 = fs.Open(p, false);
    ASSERT_TRUE(f2.ok());
    ASSERT_TRUE((*f2)->Truncate(rec->valid_length).ok());
    auto w2 = SegmentWriter::Resume(*rec->header, rec->blocks, rec->valid_length);
    ASSERT_TRUE(w2.ok()) << w2.status().ToString();
    for (size_t i = 0; i < 5; ++i) ASSERT_TRUE(w2->Add(recs[i]).ok());
    std::vector<uint8_t> tail = w2->Seal();
    ASSERT_TRUE((*f2)->WriteAt(rec->valid_length, tail).ok());
    auto r2 = SegmentReader::Open(fs, p);
    ASSERT_TRUE(r2.ok());
    EXPECT_TRUE(r2->sealed());
    auto all2 = r2->ReadAllEvents();
    ASSERT_TRUE(all2.ok());
    ASSERT_EQ(all2->size(), all->size() + 5);
    EXPECT_EQ(w2->size_bytes(), rec->valid_length + tail.size());
  }
}

TEST(SegmentWriter, ResumeRejectsInconsistentBlocks) {
  Fixture f = MakeFixture(false);
  Recovery rec = RecoverSegmentBuffer(f.file);
  ASSERT_TRUE(rec.header);
  EXPECT_TRUE(SegmentWriter::Resume(*rec.header, rec.blocks, rec.valid_length).ok());
  EXPECT_FALSE(SegmentWriter::Resume(*rec.header, rec.blocks, rec.valid_length + 1).ok());
  std::vector<BlockInfo> gap = rec.blocks;
  gap.erase(gap.begin() + 1);
  EXPECT_FALSE(SegmentWriter::Resume(*rec.header, gap, rec.valid_length).ok());
}

}  // namespace
}  // namespace tandem::store
