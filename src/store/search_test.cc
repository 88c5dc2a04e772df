// Search and retention tests. Segments are written by SegmentWriter into a
// temporary directory and read back through the real FileSystem. Results are
// checked against a brute-force model (filter + stable sort of every record
// in scan order) for random queries; damaged segments must be counted and
// skipped, never fatal.
#include "store/search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "store/test_util.h"
#include "util/temp_dir.h"

namespace tandem::store {
namespace {

using testing::BuildSegment;
using testing::WriteFile;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

os::FileSystem& Fs() { return os::RealFileSystem(); }

SegmentName Name(SegmentKind kind, std::string writer, uint64_t gen, uint64_t seq) {
  return SegmentName{kind, std::move(writer), gen, seq};
}

// Writes a segment under root and returns its bytes.
template <typename Record>
std::vector<uint8_t> WriteSegment(const std::string& root, const SegmentName& n,
                                  const std::vector<Record>& recs, size_t per_append, bool seal,
                                  SegmentWriter::Limits limits = {}) {
  Result<SegmentWriter> w = SegmentWriter::Create(n, 5, limits);
  TANDEM_CHECK(w.ok());
  std::vector<uint8_t> bytes = BuildSegment(*w, recs, per_append, seal);
  WriteFile(Fs(), root + "/" + SegmentPath(n), bytes);
  return bytes;
}

const char* const kHosts[] = {"fw1", "fw2", "db"};
const char* const kWords[] = {"login ok", "login failed", "port scan", "disk full", "alpha"};
const char* const kAddrs[] = {"10.0.0.1", "10.0.0.2", "192.168.1.9", "::1"};

std::vector<EventRecord> SomeEvents(std::mt19937_64& rng, size_t n) {
  std::vector<EventRecord> v;
  for (size_t i = 0; i < n; ++i) {
    EventRecord e;
    e.receive_time_us = 1'000 + static_cast<int64_t>(rng() % 100'000);
    if (rng() % 3 == 0) e.event_time_us = 1'000 + static_cast<int64_t>(rng() % 100'000);
    e.severity = static_cast<int16_t>(static_cast<int>(rng() % 9) - 1);
    e.host = kHosts[rng() % 3];
    e.app = rng() % 2 ? "sshd" : "kernel";
    e.message = std::string(kWords[rng() % 5]) + " #" + std::to_string(i);
    e.sender = kAddrs[rng() % 4];
    v.push_back(std::move(e));
  }
  return v;
}

std::vector<FlowRecord> SomeFlows(std::mt19937_64& rng, size_t n) {
  std::vector<FlowRecord> v;
  for (size_t i = 0; i < n; ++i) {
    FlowRecord f;
    f.start_us = 1'000 + static_cast<int64_t>(rng() % 100'000);
    f.end_us = f.start_us + 10;
    f.src = kAddrs[rng() % 4];
    f.dst = kAddrs[rng() % 4];
    const uint16_t ports[] = {22, 53, 443, 8080};
    f.src_port = ports[rng() % 4];
    f.dst_port = ports[rng() % 4];
    f.protocol = rng() % 2 ? 6 : 17;
    f.bytes = rng() % 10'000;
    f.packets = 1 + rng() % 10;
    v.push_back(std::move(f));
  }
  return v;
}

bool InQueryRange(int64_t t, int64_t from, int64_t to) {
  return t >= from && (t < to || to == kMax);
}

bool Matches(const EventQuery& q, const EventRecord& e) {
  if (!InQueryRange(EventTimeUs(e), q.from_us, q.to_us)) return false;
  if (q.host && e.host != *q.host) return false;
  if (q.severity_max && (e.severity < 0 || e.severity > *q.severity_max)) return false;
  return !q.contains || e.message.find(*q.contains) != std::string::npos;
}

bool Matches(const FlowQuery& q, const FlowRecord& f) {
  if (!InQueryRange(FlowTimeUs(f), q.from_us, q.to_us)) return false;
  if (q.src && f.src != *q.src) return false;
  if (q.dst && f.dst != *q.dst) return false;
  if (q.port && f.src_port != *q.port && f.dst_port != *q.port) return false;
  return !q.protocol || f.protocol == *q.protocol;
}

int64_t TimeOf(const EventRecord& e) { return EventTimeUs(e); }
int64_t TimeOf(const FlowRecord& f) { return FlowTimeUs(f); }

std::string TopKey(const EventQuery& q, const EventRecord& e) {
  if (q.top_field == "host") return e.host;
  if (q.top_field == "app") return e.app;
  if (q.top_field == "severity") return std::to_string(e.severity);
  return e.sender;
}
std::string TopKey(const FlowQuery& q, const FlowRecord& f) {
  if (q.top_field == "src") return f.src;
  if (q.top_field == "dst") return f.dst;
  if (q.top_field == "src_port") return std::to_string(f.src_port);
  if (q.top_field == "dst_port") return std::to_string(f.dst_port);
  if (q.top_field == "protocol") return std::to_string(f.protocol);
  return f.exporter;
}
uint64_t BytesOf(const EventRecord&) { return 0; }
uint64_t BytesOf(const FlowRecord& f) { return f.bytes; }
bool ByBytes(const EventQuery&) { return false; }
bool ByBytes(const FlowQuery& q) { return q.top_by_bytes; }

struct Expected {
  uint64_t total = 0;
  std::vector<EventRecord> events;
  std::vector<FlowRecord> flows;
  std::vector<TopValue> top;
};

std::vector<EventRecord>& Out(Expected& x, const EventQuery&) { return x.events; }
std::vector<FlowRecord>& Out(Expected& x, const FlowQuery&) { return x.flows; }

// The model: every record in scan order (segments by file name, then file
// order), filtered, stably sorted by time, cut to the limit.
template <typename Query, typename Record>
Expected Model(const Query& q, const std::vector<Record>& scan_order) {
  Expected x;
  std::vector<Record> hits;
  std::map<std::string, TopValue> top;
  for (const Record& r : scan_order) {
    if (!Matches(q, r)) continue;
    hits.push_back(r);
    TopValue& t = top[TopKey(q, r)];
    ++t.count;
    t.bytes += BytesOf(r);
  }
  x.total = hits.size();
  std::stable_sort(hits.begin(), hits.end(),
                   [](const Record& a, const Record& b) { return TimeOf(a) < TimeOf(b); });
  if (q.newest_first) std::reverse(hits.begin(), hits.end());
  if (!q.count_only) hits.resize(std::min(hits.size(), q.limit));
  if (q.count_only) hits.clear();
  Out(x, q) = std::move(hits);
  if (!q.top_field.empty()) {
    for (auto& [k, v] : top) {
      v.value = k;
      x.top.push_back(v);
    }
    const bool by_bytes = ByBytes(q);
    std::stable_sort(x.top.begin(), x.top.end(), [by_bytes](const TopValue& a, const TopValue& b) {
      return by_bytes ? a.bytes > b.bytes : a.count > b.count;
    });
    x.top.resize(std::min(x.top.size(), q.top_n));
  }
  return x;
}

// Three event segments: two writers, two generations, sealed and not.
class SearchTest : public ::testing::Test {
 protected:
  void WriteEventStore(uint64_t seed) {
    std::mt19937_64 rng(seed);
    const SegmentName names[] = {Name(SegmentKind::kEvents, "node-b", 2, 0),
                                 Name(SegmentKind::kEvents, "node-a", 1, 0),
                                 Name(SegmentKind::kEvents, "node-a", 1, 1)};
    std::map<std::string, std::vector<EventRecord>> by_path;
    for (size_t i = 0; i < 3; ++i) {
      std::vector<EventRecord> recs = SomeEvents(rng, 150 + i * 40);
      WriteSegment(dir_.path(), names[i], recs, 7 + i, /*seal=*/i != 2,
                   {.block_target_bytes = 900});
      by_path[SegmentPath(names[i])] = std::move(recs);
    }
    for (auto& [p, recs] : by_path) events_.insert(events_.end(), recs.begin(), recs.end());
  }
  void WriteFlowStore(uint64_t seed) {
    std::mt19937_64 rng(seed);
    const SegmentName names[] = {Name(SegmentKind::kFlows, "node-a", 1, 0),
                                 Name(SegmentKind::kFlows, "node-b", 1, 0)};
    for (size_t i = 0; i < 2; ++i) {
      std::vector<FlowRecord> recs = SomeFlows(rng, 200);
      WriteSegment(dir_.path(), names[i], recs, 11, /*seal=*/i == 0, {.block_target_bytes = 700});
      flows_.insert(flows_.end(), recs.begin(), recs.end());
    }
  }

  TempDir dir_{"tandem-search"};
  std::vector<EventRecord> events_;  // in scan order
  std::vector<FlowRecord> flows_;
};

TEST_F(SearchTest, EventsMatchTheModel) {
  WriteEventStore(1);
  std::mt19937_64 rng(2);
  const char* const tops[] = {"", "host", "app", "severity", "sender"};
  for (int i = 0; i < 300; ++i) {
    EventQuery q;
    if (rng() % 4) q.from_us = static_cast<int64_t>(rng() % 110'000);
    if (rng() % 4)
      q.to_us = q.from_us == kMin ? 50'000 : q.from_us + 1 + static_cast<int64_t>(rng() % 60'000);
    if (rng() % 3 == 0) q.host = kHosts[rng() % 3];
    if (rng() % 3 == 0) q.severity_max = static_cast<int>(rng() % 8);
    if (rng() % 3 == 0) q.contains = rng() % 2 ? "login" : "scan";
    q.limit = 1 + rng() % 60;
    q.newest_first = rng() % 2;
    q.count_only = rng() % 8 == 0;
    q.top_field = tops[rng() % 5];
    q.top_n = 1 + rng() % 4;
    Result<SearchResult> r = SearchEvents(Fs(), dir_.path(), q);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Expected x = Model(q, events_);
    ASSERT_EQ(r->total, x.total) << "query " << i;
    ASSERT_EQ(r->events, x.events) << "query " << i;
    ASSERT_EQ(r->top, x.top) << "query " << i;
    EXPECT_EQ(r->stats.segments, 3u);
    EXPECT_EQ(r->stats.corrupt_blocks + r->stats.corrupt_records + r->stats.bad_segments, 0u);
  }
}

TEST_F(SearchTest, FlowsMatchTheModel) {
  WriteFlowStore(3);
  std::mt19937_64 rng(4);
  const char* const tops[] = {"", "src", "dst", "src_port", "dst_port", "protocol"};
  for (int i = 0; i < 300; ++i) {
    FlowQuery q;
    if (rng() % 4) q.from_us = static_cast<int64_t>(rng() % 110'000);
    if (rng() % 4)
      q.to_us = q.from_us == kMin ? 50'000 : q.from_us + 1 + static_cast<int64_t>(rng() % 60'000);
    if (rng() % 3 == 0) q.src = kAddrs[rng() % 4];
    if (rng() % 3 == 0) q.dst = kAddrs[rng() % 4];
    if (rng() % 3 == 0) q.port = rng() % 2 ? 22 : 443;
    if (rng() % 4 == 0) q.protocol = 6;
    q.limit = 1 + rng() % 60;
    q.newest_first = rng() % 2;
    q.count_only = rng() % 8 == 0;
    q.top_field = tops[rng() % 6];
    q.top_n = 1 + rng() % 4;
    q.top_by_bytes = rng() % 2;
    Result<SearchResult> r = SearchFlows(Fs(), dir_.path(), q);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Expected x = Model(q, flows_);
    ASSERT_EQ(r->total, x.total) << "query " << i;
    ASSERT_EQ(r->flows, x.flows) << "query " << i;
    ASSERT_EQ(r->top, x.top) << "query " << i;
  }
}

TEST_F(SearchTest, TopTalkersByBytes) {
  std::vector<FlowRecord> recs;
  auto flow = [](int64_t t, std::string src, uint64_t bytes) {
    FlowRecord f;
    f.start_us = t;
    f.src = std::move(src);
    f.bytes = bytes;
    return f;
  };
  for (int i = 0; i < 5; ++i) recs.push_back(flow(10 + i, "chatty", 1));  // most flows
  recs.push_back(flow(20, "big", 1'000'000));
  recs.push_back(flow(21, "mid", 5'000));
  recs.push_back(flow(22, "mid", 5'000));
  WriteSegment(dir_.path(), Name(SegmentKind::kFlows, "n", 0, 0), recs, 3, true);
  FlowQuery q;
  q.top_field = "src";
  q.top_by_bytes = true;
  Result<SearchResult> r = SearchFlows(Fs(), dir_.path(), q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->top.size(), 3u);
  EXPECT_EQ(r->top[0], (TopValue{"big", 1, 1'000'000}));
  EXPECT_EQ(r->top[1], (TopValue{"mid", 2, 10'000}));
  EXPECT_EQ(r->top[2], (TopValue{"chatty", 5, 5}));
  q.top_by_bytes = false;
  r = SearchFlows(Fs(), dir_.path(), q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->top[0].value, "chatty");
  nlohmann::json j = ToJson(*r);
  EXPECT_EQ(j["top"]["by"], "count");
  EXPECT_EQ(j["top"]["values"][0]["bytes"], 5);
}

// ---- Block skipping and streaming ----

// A FileSystem that records the largest single read (memory bound).
class CountingFs final : public os::FileSystem {
 public:
  class CountingFile final : public os::File {
   public:
    CountingFile(std::unique_ptr<os::File> f, size_t* max_read)
        : f_(std::move(f)), max_(max_read) {}
    Status WriteAt(uint64_t o, std::span<const uint8_t> d) override { return f_->WriteAt(o, d); }
    Result<size_t> ReadAt(uint64_t o, std::span<uint8_t> out) override {
      *max_ = std::max(*max_, out.size());
      return f_->ReadAt(o, out);
    }
    Result<uint64_t> Size() override { return f_->Size(); }
    Status Truncate(uint64_t s) override { return f_->Truncate(s); }
    Status Sync() override { return f_->Sync(); }

   private:
    std::unique_ptr<os::File> f_;
    size_t* max_;
  };
  Result<std::unique_ptr<os::File>> Open(const std::string& p, bool create) override {
    if (!vanish.empty() && p.ends_with(vanish))
      return Status::Error(p + ": open: No such file or directory");
    if (!fail.empty() && p.ends_with(fail)) return Status::Error(p + ": open: Input/output error");
    auto f = Fs().Open(p, create);
    if (!f.ok()) return f.status();
    return std::unique_ptr<os::File>(std::make_unique<CountingFile>(std::move(*f), &max_read));
  }
  Status Rename(const std::string& a, const std::string& b) override { return Fs().Rename(a, b); }
  Status Remove(const std::string& p) override { return Fs().Remove(p); }
  Status MakeDirs(const std::string& p) override { return Fs().MakeDirs(p); }
  Status SyncDir(const std::string& p) override { return Fs().SyncDir(p); }
  Result<std::optional<uint64_t>> FileSize(const std::string& p) override {
    return Fs().FileSize(p);
  }
  Result<std::vector<std::string>> ListFiles(const std::string& d) override {
    return Fs().ListFiles(d);
  }
  void PruneEmptyDirs(const std::string& d) override { Fs().PruneEmptyDirs(d); }

  size_t max_read = 0;
  std::string vanish;  // Open of a path ending in it: "No such file" (deleted meanwhile)
  std::string fail;    // Open of a path ending in it: an I/O error
};

TEST_F(SearchTest, VanishedSegmentIsSkippedOtherErrorsAreErrors) {
  std::mt19937_64 rng(6);
  std::vector<EventRecord> a = SomeEvents(rng, 30), b = SomeEvents(rng, 40);
  WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "a", 0, 0), a, 10, true);
  WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "a", 0, 1), b, 10, true);
  CountingFs fs;
  fs.vanish = SegmentPath(Name(SegmentKind::kEvents, "a", 0, 0));
  Result<SearchResult> r = SearchEvents(fs, dir_.path(), EventQuery{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->total, 40u);
  EXPECT_EQ(r->stats.segments, 1u);
  fs.vanish.clear();
  fs.fail = SegmentPath(Name(SegmentKind::kEvents, "a", 0, 1));
  r = SearchEvents(fs, dir_.path(), EventQuery{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("Input/output error"), std::string::npos);
}

TEST_F(SearchTest, SkipsBlocksAndSegmentsByTime) {
  // Segment 0: times 0..999, segment 1: 1000..1999; one block per 10 records.
  for (int s = 0; s < 2; ++s) {
    std::vector<EventRecord> recs;
    for (int i = 0; i < 1000; ++i) {
      EventRecord e;
      e.receive_time_us = s * 1000 + i;
      e.message = std::string(100, 'x');
      recs.push_back(e);
    }
    WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "w", 0, static_cast<uint64_t>(s)), recs,
                 10,
                 /*seal=*/s == 0);
  }
  EventQuery q;
  q.from_us = 1500;
  q.to_us = 1520;
  Result<SearchResult> r = SearchEvents(Fs(), dir_.path(), q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->total, 20u);
  EXPECT_EQ(r->events.front().receive_time_us, 1500);
  EXPECT_EQ(r->events.back().receive_time_us, 1519);
  EXPECT_EQ(r->stats.segments_skipped, 1u);  // the sealed one: its index says no
  EXPECT_EQ(r->stats.blocks_read, 2u);
  EXPECT_EQ(r->stats.blocks_skipped, 198u);
  EXPECT_EQ(r->stats.records_scanned, 20u);
  EXPECT_LT(r->stats.bytes_read, 40'000u);  // of ~230 KB: headers/index + 2 blocks
}

TEST_F(SearchTest, ReadsAreBoundedWhateverTheSegmentSize) {
  // ~24 MiB in one segment of 8 KiB records: no read may exceed one run.
  std::vector<EventRecord> recs;
  for (int i = 0; i < 3000; ++i) {
    EventRecord e;
    e.receive_time_us = i;
    e.message = std::string(8 * 1024, static_cast<char>('a' + i % 26));
    recs.push_back(e);
  }
  WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "w", 0, 0), recs, 100, true);
  CountingFs fs;
  EventQuery q;
  q.contains = "zzz";
  q.top_field = "host";
  Result<SearchResult> r = SearchEvents(fs, dir_.path(), q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->total, 115u);  // i % 26 == 25
  EXPECT_EQ(r->events.size(), 100u);
  EXPECT_GT(r->stats.bytes_read, 3000u * 8192u);
  EXPECT_LE(fs.max_read, 8u << 20);
}

// ---- Damage ----

TEST_F(SearchTest, DamagedSegmentsAreCountedAndSkipped) {
  std::mt19937_64 rng(9);
  const std::string root = dir_.path();
  std::vector<EventRecord> good = SomeEvents(rng, 100);
  WriteSegment(root, Name(SegmentKind::kEvents, "a", 0, 0), good, 10, true);
  // Torn tail: an unsealed segment cut in its last block.
  std::vector<EventRecord> torn_recs = SomeEvents(rng, 100);
  std::vector<uint8_t> torn =
      WriteSegment(root, Name(SegmentKind::kEvents, "a", 0, 1), torn_recs, 10, false);
  Result<SegmentReader> tr = SegmentReader::OpenBuffer(torn);
  ASSERT_TRUE(tr.ok());
  const uint64_t torn_last_block = tr->blocks().back().bytes;
  torn.resize(torn.size() - 30);
  WriteFile(Fs(), root + "/" + SegmentPath(Name(SegmentKind::kEvents, "a", 0, 1)), torn);
  // A zero-filled tail (a preallocated or torn append) after valid blocks.
  std::vector<EventRecord> zero_recs = SomeEvents(rng, 50);
  std::vector<uint8_t> zeroed =
      WriteSegment(root, Name(SegmentKind::kEvents, "a", 0, 2), zero_recs, 10, false);
  zeroed.resize(zeroed.size() + 4096, 0);
  WriteFile(Fs(), root + "/" + SegmentPath(Name(SegmentKind::kEvents, "a", 0, 2)), zeroed);
  // A corrupt byte in a record of a sealed segment's first block.
  std::vector<EventRecord> flip_recs = SomeEvents(rng, 50);
  std::vector<uint8_t> flipped =
      WriteSegment(root, Name(SegmentKind::kEvents, "a", 0, 3), flip_recs, 10, true);
  Result<SegmentReader> fr = SegmentReader::OpenBuffer(flipped);
  ASSERT_TRUE(fr.ok());
  flipped[fr->blocks()[0].offset + fr->blocks()[0].bytes - 2] ^=
      0x40;  // in the block's last record
  WriteFile(Fs(), root + "/" + SegmentPath(Name(SegmentKind::kEvents, "a", 0, 3)), flipped);
  // Zero-length, garbage, and a file that is not a segment.
  WriteFile(Fs(), root + "/" + SegmentPath(Name(SegmentKind::kEvents, "a", 0, 4)), {});
  WriteFile(Fs(), root + "/" + SegmentPath(Name(SegmentKind::kEvents, "a", 0, 5)),
            std::vector<uint8_t>(500, 0x5a));
  WriteFile(Fs(), root + "/events/a-0000000000000000-0000000006.seg.tmp",
            std::vector<uint8_t>(10, 1));

  EventQuery q;
  q.limit = kSearchLimitMax;
  Result<SearchResult> r = SearchEvents(Fs(), root, q);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stats.segments, 4u);
  EXPECT_EQ(r->stats.bad_segments, 2u);
  EXPECT_EQ(r->stats.corrupt_blocks, 1u);
  EXPECT_EQ(r->stats.torn_bytes, torn_last_block - 30 + 4096);
  // good 100 + torn 90 (last block of 10 cut) + zeroed 50 + flipped 49 (the bad record only).
  EXPECT_EQ(r->total, 100u + 90u + 50u + 49u);
  for (const EventRecord& e : r->events) {
    EXPECT_FALSE(e == flip_recs[9]);  // the damaged record is never returned
  }
  // The JSON form serializes whatever is there.
  nlohmann::json j = ToJson(*r);
  EXPECT_EQ(j["total"], r->total);
  EXPECT_EQ(j["stats"]["bad_segments"], 2);
  EXPECT_FALSE(j.dump().empty());
}

TEST_F(SearchTest, EmptyOrMissingStore) {
  Result<SearchResult> r = SearchEvents(Fs(), dir_.path() + "/nothing", EventQuery{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->total, 0u);
  EXPECT_EQ(r->stats.segments, 0u);
}

TEST_F(SearchTest, RejectsBadQueries) {
  auto bad_event = [&](auto edit) {
    EventQuery q;
    edit(q);
    return !SearchEvents(Fs(), dir_.path(), q).ok();
  };
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.from_us = 10, q.to_us = 10; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.limit = 0; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.limit = kSearchLimitMax + 1; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.severity_max = 8; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.severity_max = -1; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.contains = ""; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.top_field = "message"; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.top_field = "host", q.top_n = 0; }));
  EXPECT_TRUE(bad_event([](EventQuery& q) { q.top_field = "host", q.top_n = kTopNMax + 1; }));
  EXPECT_FALSE(bad_event([](EventQuery& q) { q.limit = kSearchLimitMax; }));
  FlowQuery fq;
  fq.top_field = "bytes";
  EXPECT_FALSE(SearchFlows(Fs(), dir_.path(), fq).ok());
}

TEST(SearchJson, InvalidUtf8IsReplacedNeverThrows) {
  EventRecord e;
  e.receive_time_us = 7;
  e.message = std::string("ok \xff\xfe bad \xc3\xa9");
  e.host = "h\x80";
  nlohmann::json j = ToJson(e);
  EXPECT_EQ(j["message"], "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xc3\xa9");
  EXPECT_EQ(j["host"], "h\xEF\xBF\xBD");
  EXPECT_EQ(j["time_us"], 7);
  EXPECT_EQ(j["format"], "raw");
  EXPECT_NO_THROW((void)j.dump());
}

// ---- Retention ----

TEST(Retention, ByAgeThenBySizeNeverTheOpenOne) {
  std::vector<SegmentInfo> l = {
      {"events/a", 100, 10, true, false},  {"events/b", 100, 20, true, false},
      {"events/c", 100, 30, false, false}, {"events/d", 100, 5, false, true},  // open
      {"events/e", 100, 40, true, false},
  };
  EXPECT_EQ(RetentionPlan(l, std::nullopt, std::nullopt, 1000), std::vector<std::string>{});
  EXPECT_EQ(RetentionPlan(l, 980, std::nullopt, 1000), (std::vector<std::string>{"events/a"}));
  EXPECT_EQ(RetentionPlan(l, 975, std::nullopt, 1000),
            (std::vector<std::string>{"events/a", "events/b"}));
  EXPECT_EQ(RetentionPlan(l, std::nullopt, 250, 1000),
            (std::vector<std::string>{"events/a", "events/b", "events/c"}));
  EXPECT_EQ(RetentionPlan(l, 975, 350, 1000), (std::vector<std::string>{"events/a", "events/b"}));
  // Even with a limit of 0, the open segment stays.
  EXPECT_EQ(RetentionPlan(l, 0, 0, 1000).size(), 4u);
  // No overflow at the extremes.
  EXPECT_TRUE(RetentionPlan(l, kMax, std::nullopt, kMin).empty());
}

TEST_F(SearchTest, ListSegmentsFeedsRetention) {
  std::mt19937_64 rng(5);
  std::vector<EventRecord> r1 = SomeEvents(rng, 20), r2 = SomeEvents(rng, 20);
  for (EventRecord& e : r2) e.event_time_us = 500'000;
  WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "a", 0, 0), r1, 5, true);
  WriteSegment(dir_.path(), Name(SegmentKind::kEvents, "a", 0, 1), r2, 5, false);
  WriteFile(Fs(), dir_ / "events/a-0000000000000000-0000000002.seg", {});
  const std::string open = SegmentPath(Name(SegmentKind::kEvents, "a", 0, 1));
  Result<std::vector<SegmentInfo>> l =
      ListSegments(Fs(), dir_.path(), SegmentKind::kEvents, {open});
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 3u);
  int64_t max1 = 0;
  for (const EventRecord& e : r1) max1 = std::max(max1, EventTimeUs(e));
  EXPECT_EQ((*l)[0].max_time_us, max1);
  EXPECT_TRUE((*l)[0].sealed);
  EXPECT_EQ((*l)[1].max_time_us, 500'000);
  EXPECT_TRUE((*l)[1].open);
  EXPECT_EQ((*l)[2].bytes, 0u);
  EXPECT_EQ(RetentionPlan(*l, 1, std::nullopt, 1'000'000),
            (std::vector<std::string>{"events/a-0000000000000000-0000000002.seg",
                                      SegmentPath(Name(SegmentKind::kEvents, "a", 0, 0))}));
}

}  // namespace
}  // namespace tandem::store
