// Search over the stored segments, and the retention plan
// (docs/SEARCH.md; the segment format is docs/formats/segments.md).
//
// A search reads every segment of its kind under <store_dir>/events or
// <store_dir>/flows, whatever its writer or generation (after a failover the
// new active finds what the old one stored; after a split-brain merge both
// sides' segments are there), skips blocks by their time range, and decodes
// records lazily over the block buffer. Damage is counted, never fatal: torn
// tails, corrupt blocks and records, segments without a valid header.
// Memory is bounded by the query's limit, kTopDistinctMax /
// kTopDistinctBytesMax and one read run (8 MiB), never by the store's size.
//
// Thread-safety: the functions share no state; each call uses only its
// arguments (the FileSystem must be safe for the calls it makes).
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "os/fs.h"
#include "store/records.h"
#include "store/segment.h"
#include "util/status.h"

namespace tandem::store {

inline constexpr size_t kSearchLimitDefault = 100;
inline constexpr size_t kSearchLimitMax = 100'000;
inline constexpr size_t kTopNDefault = 10;
inline constexpr size_t kTopNMax = 1'000;
inline constexpr size_t kTopDistinctMax = 100'000;  // distinct values counted for top-N
inline constexpr size_t kTopDistinctBytesMax = 16 * 1024 * 1024;  // their total length

// Times: record time (EventTimeUs / FlowTimeUs) in [from_us, to_us):
// from inclusive, to exclusive; to_us == INT64_MAX means no upper bound.
struct EventQuery {
  int64_t from_us = std::numeric_limits<int64_t>::min();
  int64_t to_us = std::numeric_limits<int64_t>::max();
  std::optional<std::string> host;      // exact, case-sensitive
  std::optional<int> severity_max;      // 0..7: severity in [0, S] (at least as severe); drops -1
  std::optional<std::string> contains;  // substring of message, case-sensitive, bytes; non-empty
  size_t limit = kSearchLimitDefault;   // 1..kSearchLimitMax records returned
  bool newest_first =
      false;  // return the newest `limit` matches, newest first (else oldest, oldest first)
  bool count_only = false;      // return no records (total and top still computed)
  std::string top_field;        // "" (none) | "host" | "app" | "severity" | "sender"
  size_t top_n = kTopNDefault;  // 1..kTopNMax
};

struct FlowQuery {
  int64_t from_us = std::numeric_limits<int64_t>::min();
  int64_t to_us = std::numeric_limits<int64_t>::max();
  std::optional<std::string> src;  // exact text match of the address
  std::optional<std::string> dst;
  std::optional<uint16_t> port;  // src_port or dst_port
  std::optional<uint8_t> protocol;
  size_t limit = kSearchLimitDefault;
  bool newest_first = false;
  bool count_only = false;
  // "" | "src" | "dst" | "src_port" | "dst_port" | "protocol" | "exporter"
  std::string top_field;
  size_t top_n = kTopNDefault;
  bool top_by_bytes = false;  // rank top values by their flows' byte total (top talkers), not count
};

struct TopValue {
  std::string value;   // numbers in decimal
  uint64_t count = 0;  // matching records with this value
  uint64_t bytes = 0;  // flows: their byte total (saturating); events: 0
  bool operator==(const TopValue&) const = default;
};

// What a search did; damage counters are never fatal.
struct SearchStats {
  uint64_t segments = 0;          // segment files opened
  uint64_t segments_skipped = 0;  // sealed with a time range outside the query: no block read
  uint64_t bad_segments = 0;      // no valid header (e.g. zero-length, torn at creation)
  uint64_t blocks_read = 0;
  uint64_t blocks_skipped = 0;   // outside the time range (by the block index/headers)
  uint64_t corrupt_blocks = 0;   // payload checksum or record framing failed
  uint64_t corrupt_records = 0;  // record that did not decode in a block whose checksum matched
  uint64_t torn_bytes = 0;       // bytes after the last valid block of unsealed segments
  uint64_t records_scanned = 0;  // records whose time was looked at
  uint64_t bytes_read = 0;
  uint64_t elapsed_us = 0;
};

struct SearchResult {
  SegmentKind kind = SegmentKind::kEvents;
  uint64_t total = 0;  // all matching records
  // Kind events: min(total, limit) matches, the oldest ones in ascending
  // record time or (newest_first) the newest ones in descending time; equal
  // times keep the scan order (segment path, then file order), reversed for
  // newest_first. Empty for count_only.
  std::vector<EventRecord> events;
  std::vector<FlowRecord> flows;  // kind flows: likewise
  std::string top_field;          // as asked ("" none)
  bool top_by_bytes = false;      // as asked
  // Up to top_n values, by count (or bytes) descending, then value ascending.
  std::vector<TopValue> top;
  uint64_t top_other = 0;  // matches not counted by value (kTopDistinct*Max reached)
  SearchStats stats;
};

// Searches <store_dir>/events (resp. flows). Error: an invalid query (the
// message names the field) or an I/O error other than a segment vanishing
// during the search (retention may delete one; it is skipped).
Result<SearchResult> SearchEvents(os::FileSystem& fs, const std::string& store_dir,
                                  const EventQuery& q);
Result<SearchResult> SearchFlows(os::FileSystem& fs, const std::string& store_dir,
                                 const FlowQuery& q);

// The JSON form (docs/SEARCH.md): the `--json` output and the HTTP API
// body. Strings that are not valid UTF-8 have the bad bytes replaced by
// U+FFFD, so dump() never throws.
nlohmann::json ToJson(const SearchResult& r);
nlohmann::json ToJson(const EventRecord& e);
nlohmann::json ToJson(const FlowRecord& f);

// ---- Retention ----

struct SegmentInfo {
  std::string path;  // as the caller wants it back (e.g. relative "events/...seg")
  uint64_t bytes = 0;
  int64_t max_time_us = 0;  // newest record time (created_us without blocks)
  bool sealed = false;
  bool open = false;  // the collector's current segment: never deleted
};

// The segments to delete (docs/formats/segments.md, "Retention"): first,
// every non-open segment with max_time_us < now_us - max_age_us; then, while
// the total of all sizes exceeds max_bytes, the non-open segment with the
// oldest max_time_us (ties by path). nullopt limits are off. Pure; the
// result is in deletion order.
std::vector<std::string> RetentionPlan(const std::vector<SegmentInfo>& listing,
                                       std::optional<int64_t> max_age_us,
                                       std::optional<uint64_t> max_bytes, int64_t now_us);

// Lists the segments of `kind` under store_dir for RetentionPlan: paths
// relative to store_dir ("events/..."), sizes, and the max record time from
// the seal or a block-header scan. `open_paths` (relative) are marked open.
// A segment without a valid header gets max_time_us 0 (so age retention
// removes it unless it is open). Error on an I/O error.
Result<std::vector<SegmentInfo>> ListSegments(os::FileSystem& fs, const std::string& store_dir,
                                              SegmentKind kind,
                                              const std::vector<std::string>& open_paths);

}  // namespace tandem::store
