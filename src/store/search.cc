#include "store/search.h"

#include <string.h>  // memmem (glibc)

#include <algorithm>
#include <charconv>
#include <chrono>
#include <queue>
#include <string_view>
#include <unordered_map>

namespace tandem::store {
namespace {

using Clock = std::chrono::steady_clock;

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

// Counts values (and their byte totals) for top-N; at most kTopDistinctMax
// distinct values of kTopDistinctBytesMax bytes in all, the rest go to
// `other`.
class TopCounter {
 public:
  void Add(std::string_view v, uint64_t bytes) {
    auto it = counts_.find(v);
    if (it == counts_.end()) {
      if (counts_.size() >= kTopDistinctMax || key_bytes_ + v.size() > kTopDistinctBytesMax) {
        ++other_;
        return;
      }
      key_bytes_ += v.size();
      it = counts_.emplace(std::string(v), Tally{}).first;
    }
    ++it->second.count;
    it->second.bytes = SaturatingAdd(it->second.bytes, bytes);
  }
  void Finish(size_t n, bool by_bytes, std::vector<TopValue>* out, uint64_t* other) const {
    std::vector<TopValue> all;
    all.reserve(counts_.size());
    for (const auto& [v, t] : counts_) all.push_back({v, t.count, t.bytes});
    auto better = [by_bytes](const TopValue& a, const TopValue& b) {
      const uint64_t ka = by_bytes ? a.bytes : a.count, kb = by_bytes ? b.bytes : b.count;
      return ka != kb ? ka > kb : a.value < b.value;
    };
    size_t k = std::min(n, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(k), all.end(), better);
    all.resize(k);
    *out = std::move(all);
    *other = other_;
  }

 private:
  struct Tally {
    uint64_t count = 0;
    uint64_t bytes = 0;
  };
  std::unordered_map<std::string, Tally, SvHash, std::equal_to<>> counts_;
  size_t key_bytes_ = 0;
  uint64_t other_ = 0;
};

std::string_view Decimal(int64_t v, char (&buf)[24]) {
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string_view(buf, static_cast<size_t>(r.ptr - buf));
}

bool InRange(int64_t t, int64_t from, int64_t to) {
  return t >= from && (t < to || to == std::numeric_limits<int64_t>::max());
}

bool Contains(std::string_view hay, std::string_view needle) {
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

// ---- Per-kind traits ----

struct EventTraits {
  using View = EventView;
  using Record = EventRecord;
  static constexpr SegmentKind kKind = SegmentKind::kEvents;
  enum class Top { kNone, kHost, kApp, kSeverity, kSender };

  const EventQuery& q;
  Top top = Top::kNone;

  static bool Peek(std::span<const uint8_t> b, int64_t* t) { return PeekEventTime(b, t); }
  static bool Decode(std::span<const uint8_t> b, View* v) { return DecodeEvent(b, v); }
  static std::vector<Record>& Out(SearchResult& r) { return r.events; }

  Status Validate() {
    if (q.severity_max && (*q.severity_max < 0 || *q.severity_max > 7)) {
      return Status::Error("severity_max must be 0..7");
    }
    if (q.contains && q.contains->empty()) return Status::Error("contains must not be empty");
    if (q.top_field.empty())
      top = Top::kNone;
    else if (q.top_field == "host")
      top = Top::kHost;
    else if (q.top_field == "app")
      top = Top::kApp;
    else if (q.top_field == "severity")
      top = Top::kSeverity;
    else if (q.top_field == "sender")
      top = Top::kSender;
    else
      return Status::Error("top_field must be one of host, app, severity, sender");
    return Status::Ok();
  }
  bool Match(const View& v) const {
    if (q.host && v.host != *q.host) return false;
    if (q.severity_max && (v.severity < 0 || v.severity > *q.severity_max)) return false;
    if (q.contains && !Contains(v.message, *q.contains)) return false;
    return true;
  }
  bool has_top() const { return top != Top::kNone; }
  static uint64_t BytesOf(const View&) { return 0; }
  bool top_by_bytes() const { return false; }
  std::string_view TopValueOf(const View& v, char (&buf)[24]) const {
    switch (top) {
      case Top::kHost:
        return v.host;
      case Top::kApp:
        return v.app;
      case Top::kSeverity:
        return Decimal(v.severity, buf);
      case Top::kSender:
        return v.sender;
      case Top::kNone:
        break;
    }
    return {};
  }
};

struct FlowTraits {
  using View = FlowView;
  using Record = FlowRecord;
  static constexpr SegmentKind kKind = SegmentKind::kFlows;
  enum class Top { kNone, kSrc, kDst, kSrcPort, kDstPort, kProtocol, kExporter };

  const FlowQuery& q;
  Top top = Top::kNone;

  static bool Peek(std::span<const uint8_t> b, int64_t* t) { return PeekFlowTime(b, t); }
  static bool Decode(std::span<const uint8_t> b, View* v) { return DecodeFlow(b, v); }
  static std::vector<Record>& Out(SearchResult& r) { return r.flows; }

  Status Validate() {
    if (q.top_field.empty())
      top = Top::kNone;
    else if (q.top_field == "src")
      top = Top::kSrc;
    else if (q.top_field == "dst")
      top = Top::kDst;
    else if (q.top_field == "src_port")
      top = Top::kSrcPort;
    else if (q.top_field == "dst_port")
      top = Top::kDstPort;
    else if (q.top_field == "protocol")
      top = Top::kProtocol;
    else if (q.top_field == "exporter")
      top = Top::kExporter;
    else
      return Status::Error(
          "top_field must be one of src, dst, src_port, dst_port, protocol, exporter");
    return Status::Ok();
  }
  bool Match(const View& v) const {
    if (q.src && v.src != *q.src) return false;
    if (q.dst && v.dst != *q.dst) return false;
    if (q.port && v.src_port != *q.port && v.dst_port != *q.port) return false;
    if (q.protocol && v.protocol != *q.protocol) return false;
    return true;
  }
  bool has_top() const { return top != Top::kNone; }
  static uint64_t BytesOf(const View& v) { return v.bytes; }
  bool top_by_bytes() const { return q.top_by_bytes; }
  std::string_view TopValueOf(const View& v, char (&buf)[24]) const {
    switch (top) {
      case Top::kSrc:
        return v.src;
      case Top::kDst:
        return v.dst;
      case Top::kSrcPort:
        return Decimal(v.src_port, buf);
      case Top::kDstPort:
        return Decimal(v.dst_port, buf);
      case Top::kProtocol:
        return Decimal(v.protocol, buf);
      case Top::kExporter:
        return v.exporter;
      case Top::kNone:
        break;
    }
    return {};
  }
};

template <typename Record>
struct Hit {
  int64_t time_us;
  uint64_t ordinal;  // scan order: ties broken deterministically
  Record record;
};
// "a comes before b in the result": the heap's top is the kept hit that
// comes last, the first to drop.
template <typename Record>
struct HitBefore {
  bool newest_first = false;
  bool Before(int64_t ta, uint64_t oa, int64_t tb, uint64_t ob) const {
    const bool older = ta != tb ? ta < tb : oa < ob;
    return newest_first ? !older : older;
  }
  bool operator()(const Hit<Record>& a, const Hit<Record>& b) const {
    return Before(a.time_us, a.ordinal, b.time_us, b.ordinal);
  }
};

// One search: the state across segments.
template <typename Traits>
class Scan {
 public:
  using View = typename Traits::View;
  using Record = typename Traits::Record;

  Scan(Traits& t, int64_t from, int64_t to, size_t limit, bool count_only, bool newest_first)
      : t_(t),
        from_(from),
        to_(to),
        limit_(count_only ? 0 : limit),
        before_{newest_first},
        heap_(before_) {}

  // Records of one block; `trusted`: its payload checksum matched.
  void Block(std::span<const uint8_t> payload, bool trusted, SearchStats* st) {
    // A trusted block's records are checksummed lazily: only the matches
    // (every counted or returned record passes both checksums). An untrusted
    // block is salvaged record by record up to the first bad one.
    RecordCursor c(payload, /*verify=*/!trusted);
    std::span<const uint8_t> body;
    View v;
    while (c.Next(&body)) {
      int64_t time = 0;
      if (!Traits::Peek(body, &time)) {
        ++st->corrupt_records;
        continue;
      }
      ++st->records_scanned;
      const uint64_t ordinal = ordinal_++;
      if (!InRange(time, from_, to_)) continue;
      if (!Traits::Decode(body, &v)) {
        ++st->corrupt_records;
        continue;
      }
      if (!t_.Match(v)) continue;
      if (trusted && !c.LastChecksumOk()) {
        ++st->corrupt_records;
        continue;
      }
      ++total_;
      if (t_.has_top()) {
        char buf[24];
        top_.Add(t_.TopValueOf(v, buf), Traits::BytesOf(v));
      }
      Keep(time, ordinal, v);
    }
    if (c.error() && trusted) ++st->corrupt_blocks;
  }

  void Finish(SearchResult* r, size_t top_n) {
    r->total = total_;
    std::vector<Hit<Record>> hits;
    hits.reserve(heap_.size());
    while (!heap_.empty()) {
      hits.push_back(std::move(const_cast<Hit<Record>&>(heap_.top())));
      heap_.pop();
    }
    std::reverse(hits.begin(), hits.end());
    auto& out = Traits::Out(*r);
    out.reserve(hits.size());
    for (Hit<Record>& h : hits) out.push_back(std::move(h.record));
    if (t_.has_top()) top_.Finish(top_n, t_.top_by_bytes(), &r->top, &r->top_other);
  }

 private:
  void Keep(int64_t time, uint64_t ordinal, const View& v) {
    if (limit_ == 0) return;
    if (heap_.size() == limit_) {
      // Compare before building the record: most hits of a big scan lose.
      const Hit<Record>& last = heap_.top();
      if (!before_.Before(time, ordinal, last.time_us, last.ordinal)) return;
      heap_.pop();
    }
    heap_.push(Hit<Record>{time, ordinal, v.ToRecord()});
  }

  Traits& t_;
  int64_t from_, to_;
  size_t limit_;
  uint64_t total_ = 0;
  uint64_t ordinal_ = 0;
  HitBefore<Record> before_;
  std::priority_queue<Hit<Record>, std::vector<Hit<Record>>, HitBefore<Record>> heap_;
  TopCounter top_;
};

bool IsVanished(const Status& s) { return s.message().find("No such file") != std::string::npos; }

Status ValidateCommon(int64_t from, int64_t to, size_t limit, const std::string& top_field,
                      size_t top_n) {
  if (from >= to) return Status::Error("from_us must be before to_us");
  if (limit == 0 || limit > kSearchLimitMax) {
    return Status::Error("limit must be 1.." + std::to_string(kSearchLimitMax));
  }
  if (!top_field.empty() && (top_n == 0 || top_n > kTopNMax)) {
    return Status::Error("top_n must be 1.." + std::to_string(kTopNMax));
  }
  return Status::Ok();
}

// Searches one segment file into `scan`. Damage is counted in *st; only an
// I/O error (other than the file having vanished) is returned.
template <typename Traits>
Status SearchSegment(os::FileSystem& fs, const std::string& path, int64_t from_us, int64_t to_us,
                     Scan<Traits>* scan, SearchStats* st) {
  bool bad_format = false;
  Result<SegmentReader> seg = SegmentReader::Open(fs, path, &bad_format);
  if (!seg.ok()) {
    if (bad_format) {
      ++st->bad_segments;
      return Status::Ok();
    }
    return IsVanished(seg.status()) ? Status::Ok() : seg.status();
  }
  ++st->segments;
  st->torn_bytes += seg->torn_bytes();
  uint64_t wanted = 0;
  for (const BlockInfo& b : seg->blocks()) {
    if (b.max_time_us >= from_us && (b.min_time_us < to_us || to_us == INT64_MAX)) ++wanted;
  }
  st->blocks_skipped += seg->blocks().size() - wanted;
  if (wanted == 0 && seg->sealed()) ++st->segments_skipped;
  Status s = seg->ForEachBlock(from_us, to_us, [&](const SegmentReader::Block& b) {
    ++st->blocks_read;
    if (!b.valid) ++st->corrupt_blocks;
    scan->Block(b.payload, b.valid, st);
    return true;
  });
  st->bytes_read += seg->bytes_read();
  return s;
}

template <typename Traits, typename Query>
Result<SearchResult> Search(os::FileSystem& fs, const std::string& store_dir, const Query& q) {
  const Clock::time_point start = Clock::now();
  Traits t{q};
  TANDEM_RETURN_IF_ERROR(ValidateCommon(q.from_us, q.to_us, q.limit, q.top_field, q.top_n));
  TANDEM_RETURN_IF_ERROR(t.Validate());
  const std::string dir = store_dir + "/" + std::string(KindDir(Traits::kKind));
  Result<std::vector<std::string>> files = fs.ListFiles(dir);
  if (!files.ok()) return files.status();

  SearchResult r;
  r.kind = Traits::kKind;
  r.top_field = q.top_field;
  r.top_by_bytes = t.top_by_bytes();
  Scan<Traits> scan(t, q.from_us, q.to_us, q.limit, q.count_only, q.newest_first);
  for (const std::string& f : *files) {
    if (!ParseSegmentFileName(Traits::kKind, f)) continue;  // not a segment (e.g. a temporary file)
    TANDEM_RETURN_IF_ERROR(SearchSegment(fs, dir + "/" + f, q.from_us, q.to_us, &scan, &r.stats));
  }
  scan.Finish(&r, q.top_n);
  r.stats.elapsed_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  return r;
}

// ---- JSON ----

// `s` with every byte that is not part of a valid UTF-8 sequence replaced
// by U+FFFD.
std::string Utf8(std::string_view s) {
  std::string out;
  size_t i = 0;
  auto cont = [&](size_t k) {
    return i + k < s.size() && (static_cast<uint8_t>(s[i + k]) & 0xC0) == 0x80;
  };
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t n = 0;
    if (c < 0x80)
      n = 1;
    else if (c >= 0xC2 && c <= 0xDF && cont(1))
      n = 2;
    else if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
      const auto c1 = static_cast<uint8_t>(s[i + 1]);
      if (!(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0)) n = 3;
    } else if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
      const auto c1 = static_cast<uint8_t>(s[i + 1]);
      if (!(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90)) n = 4;
    }
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string_view FormatName(EventFormat f) {
  switch (f) {
    case EventFormat::kRfc5424:
      return "rfc5424";
    case EventFormat::kRfc3164:
      return "rfc3164";
    case EventFormat::kRaw:
      return "raw";
  }
  return "unknown";
}

}  // namespace

Result<SearchResult> SearchEvents(os::FileSystem& fs, const std::string& store_dir,
                                  const EventQuery& q) {
  return Search<EventTraits>(fs, store_dir, q);
}

Result<SearchResult> SearchFlows(os::FileSystem& fs, const std::string& store_dir,
                                 const FlowQuery& q) {
  return Search<FlowTraits>(fs, store_dir, q);
}

nlohmann::json ToJson(const EventRecord& e) {
  return {
      {"time_us", EventTimeUs(e)},
      {"event_time_us", e.event_time_us},
      {"receive_time_us", e.receive_time_us},
      {"facility", e.facility},
      {"severity", e.severity},
      {"format", FormatName(e.format)},
      {"truncated", e.truncated},
      {"host", Utf8(e.host)},
      {"app", Utf8(e.app)},
      {"procid", Utf8(e.procid)},
      {"msgid", Utf8(e.msgid)},
      {"structured_data", Utf8(e.structured_data)},
      {"message", Utf8(e.message)},
      {"sender", Utf8(e.sender)},
  };
}

nlohmann::json ToJson(const FlowRecord& f) {
  return {
      {"time_us", FlowTimeUs(f)}, {"start_us", f.start_us},
      {"end_us", f.end_us},       {"receive_time_us", f.receive_time_us},
      {"src", Utf8(f.src)},       {"dst", Utf8(f.dst)},
      {"src_port", f.src_port},   {"dst_port", f.dst_port},
      {"protocol", f.protocol},   {"bytes", f.bytes},
      {"packets", f.packets},     {"exporter", Utf8(f.exporter)},
      {"version", f.version},
  };
}

nlohmann::json ToJson(const SearchResult& r) {
  nlohmann::json records = nlohmann::json::array();
  if (r.kind == SegmentKind::kEvents) {
    for (const EventRecord& e : r.events) records.push_back(ToJson(e));
  } else {
    for (const FlowRecord& f : r.flows) records.push_back(ToJson(f));
  }
  const size_t returned = records.size();
  nlohmann::json top = nullptr;
  if (!r.top_field.empty()) {
    nlohmann::json values = nlohmann::json::array();
    for (const TopValue& v : r.top) {
      nlohmann::json j = {{"value", Utf8(v.value)}, {"count", v.count}};
      if (r.kind == SegmentKind::kFlows) j["bytes"] = v.bytes;
      values.push_back(std::move(j));
    }
    top = {{"field", r.top_field},
           {"by", r.top_by_bytes ? "bytes" : "count"},
           {"values", values},
           {"other", r.top_other}};
  }
  const SearchStats& s = r.stats;
  return {
      {"kind", KindDir(r.kind)},
      {"total", r.total},
      {"returned", returned},
      {"more", r.total > returned},
      {"records", std::move(records)},
      {"top", std::move(top)},
      {"stats",
       {{"segments", s.segments},
        {"segments_skipped", s.segments_skipped},
        {"bad_segments", s.bad_segments},
        {"blocks_read", s.blocks_read},
        {"blocks_skipped", s.blocks_skipped},
        {"corrupt_blocks", s.corrupt_blocks},
        {"corrupt_records", s.corrupt_records},
        {"torn_bytes", s.torn_bytes},
        {"records_scanned", s.records_scanned},
        {"bytes_read", s.bytes_read},
        {"elapsed_us", s.elapsed_us}}},
  };
}

// ---- Retention ----

std::vector<std::string> RetentionPlan(const std::vector<SegmentInfo>& listing,
                                       std::optional<int64_t> max_age_us,
                                       std::optional<uint64_t> max_bytes, int64_t now_us) {
  std::vector<const SegmentInfo*> candidates;
  uint64_t total = 0;
  for (const SegmentInfo& s : listing) {
    total += s.bytes;
    if (!s.open) candidates.push_back(&s);
  }
  std::sort(candidates.begin(), candidates.end(), [](const SegmentInfo* a, const SegmentInfo* b) {
    return a->max_time_us != b->max_time_us ? a->max_time_us < b->max_time_us : a->path < b->path;
  });
  std::vector<std::string> out;
  size_t i = 0;
  if (max_age_us) {
    // now - max_age without overflow.
    const int64_t cutoff =
        *max_age_us < 0 || now_us < std::numeric_limits<int64_t>::min() + *max_age_us
            ? std::numeric_limits<int64_t>::min()
            : now_us - *max_age_us;
    for (; i < candidates.size() && candidates[i]->max_time_us < cutoff; ++i) {
      out.push_back(candidates[i]->path);
      total -= candidates[i]->bytes;
    }
  }
  if (max_bytes) {
    for (; i < candidates.size() && total > *max_bytes; ++i) {
      out.push_back(candidates[i]->path);
      total -= candidates[i]->bytes;
    }
  }
  return out;
}

Result<std::vector<SegmentInfo>> ListSegments(os::FileSystem& fs, const std::string& store_dir,
                                              SegmentKind kind,
                                              const std::vector<std::string>& open_paths) {
  const std::string rel_dir = std::string(KindDir(kind));
  Result<std::vector<std::string>> files = fs.ListFiles(store_dir + "/" + rel_dir);
  if (!files.ok()) return files.status();
  std::vector<SegmentInfo> out;
  for (const std::string& f : *files) {
    if (!ParseSegmentFileName(kind, f)) continue;
    SegmentInfo info;
    info.path = rel_dir + "/" + f;
    const std::string full = store_dir + "/" + info.path;
    info.open = std::find(open_paths.begin(), open_paths.end(), info.path) != open_paths.end();
    Result<std::optional<uint64_t>> size = fs.FileSize(full);
    if (!size.ok()) return size.status();
    if (!*size) continue;  // vanished
    info.bytes = **size;
    bool bad_format = false;
    Result<SegmentReader> seg = SegmentReader::Open(fs, full, &bad_format);
    if (seg.ok()) {
      info.sealed = seg->sealed();
      info.max_time_us = seg->header().created_us;
      for (size_t i = 0; i < seg->blocks().size(); ++i) {
        const int64_t m = seg->blocks()[i].max_time_us;
        info.max_time_us = i == 0 ? m : std::max(info.max_time_us, m);
      }
    } else if (!bad_format) {
      if (IsVanished(seg.status())) continue;
      return seg.status();
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace tandem::store
