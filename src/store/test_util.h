// Helpers shared by the store tests (header-only; not part of the library's
// API). Random records for property-style tests and writing whole segments
// to a FileSystem.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "os/fs.h"
#include "store/records.h"
#include "store/segment.h"
#include "util/status.h"

namespace tandem::store::testing {

inline std::string RandomString(std::mt19937_64& rng, size_t max_len, bool binary) {
  std::uniform_int_distribution<size_t> len(0, max_len);
  std::string s(len(rng), ' ');
  for (char& c : s) {
    c = binary ? static_cast<char>(rng() & 0xff) : static_cast<char>('a' + rng() % 26);
  }
  return s;
}

inline int64_t RandomTime(std::mt19937_64& rng) {
  switch (rng() % 8) {
    case 0:
      return 0;
    case 1:
      return std::numeric_limits<int64_t>::min();
    case 2:
      return std::numeric_limits<int64_t>::max();
    case 3:
      return -static_cast<int64_t>(rng() % 1000000);
    default:
      return static_cast<int64_t>(1'700'000'000'000'000 + rng() % 1'000'000'000'000);
  }
}

inline EventRecord RandomEvent(std::mt19937_64& rng) {
  EventRecord e;
  e.event_time_us = RandomTime(rng);
  e.receive_time_us = RandomTime(rng);
  e.facility = static_cast<int16_t>(static_cast<int>(rng() % 25) - 1);
  e.severity = static_cast<int16_t>(static_cast<int>(rng() % 9) - 1);
  if (rng() % 16 == 0) e.facility = static_cast<int16_t>(rng());  // any int16
  e.format = static_cast<EventFormat>(1 + rng() % 3);
  e.truncated = rng() % 2 == 0;
  bool bin = rng() % 4 == 0;
  e.host = RandomString(rng, 20, bin);
  e.app = RandomString(rng, 12, bin);
  e.procid = RandomString(rng, 6, bin);
  e.msgid = RandomString(rng, 8, bin);
  e.structured_data = RandomString(rng, 40, bin);
  e.message = RandomString(rng, rng() % 32 == 0 ? 5000 : 200, bin);
  e.sender = RandomString(rng, 21, bin);
  return e;
}

inline FlowRecord RandomFlow(std::mt19937_64& rng) {
  FlowRecord f;
  f.start_us = RandomTime(rng);
  f.end_us = RandomTime(rng);
  f.receive_time_us = RandomTime(rng);
  f.src = RandomString(rng, 39, rng() % 4 == 0);
  f.dst = RandomString(rng, 39, false);
  f.src_port = static_cast<uint16_t>(rng());
  f.dst_port = static_cast<uint16_t>(rng());
  f.protocol = static_cast<uint8_t>(rng());
  f.bytes = rng() % 2 ? rng() : rng() % 1000;
  f.packets = rng() % 2 ? rng() : rng() % 10;
  f.exporter = RandomString(rng, 21, false);
  f.version = static_cast<uint16_t>(rng());
  return f;
}

// Writes `bytes` as the whole file at `path` (creating directories).
inline void WriteFile(os::FileSystem& fs, const std::string& path,
                      const std::vector<uint8_t>& bytes) {
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0)
    TANDEM_CHECK(fs.MakeDirs(path.substr(0, slash)).ok());
  auto f = fs.Open(path, true);
  TANDEM_CHECK(f.ok());
  TANDEM_CHECK((*f)->Truncate(0).ok());
  TANDEM_CHECK((*f)->WriteAt(0, bytes).ok());
}

// A whole segment's bytes for `records` (events or flows), one TakeBlock per
// `per_append` records; sealed if asked.
template <typename Record>
std::vector<uint8_t> BuildSegment(SegmentWriter& w, const std::vector<Record>& records,
                                  size_t per_append, bool seal) {
  std::vector<uint8_t> out = w.Header();
  size_t n = 0;
  for (const Record& r : records) {
    TANDEM_CHECK(w.Add(r).ok());
    if (++n % per_append == 0) {
      std::vector<uint8_t> b = w.TakeBlock();
      out.insert(out.end(), b.begin(), b.end());
    }
  }
  std::vector<uint8_t> tail = seal ? w.Seal() : w.TakeBlock();
  out.insert(out.end(), tail.begin(), tail.end());
  TANDEM_CHECK(out.size() == w.size_bytes());
  return out;
}

}  // namespace tandem::store::testing
