// libFuzzer target for the segment format (docs/formats/segments.md): the
// reader, recovery and the record codec. Not part of the CMake build; from
// the repository root:
//   clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address -Isrc \
//     test/fuzz/segment_fuzz.cc src/store/segment.cc -lxxhash -o /tmp/segfuzz
//   /tmp/segfuzz -max_total_time=60
//
// The first input byte picks a mode:
//  0: the rest is a whole segment file, as found on disk;
//  1: the rest drives a SegmentWriter (kind, limits, records), then edits of
//     the valid bytes it produced (byte changes, optionally with the block
//     checksums fixed up afterwards so the record parsers behind them are
//     reached, and a cut), so the reader sees nearly valid segments;
//  2: the rest is one record body, decoded as an event and as a flow.
// Invariants (CHECKed, so a violation aborts): recovery's answer is
// consistent (blocks tile the header..valid_length, torn = size - valid),
// recovering the valid prefix again finds the same and nothing torn, the
// reader over that prefix reads back exactly the recovered records, a
// resumed writer can seal it, and a decoded record re-encodes to a body that
// decodes to the same record.
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "store/records.h"
#include "store/segment.h"

namespace {

namespace store = tandem::store;

// Consumes the input front to back; zeros once it is exhausted.
class Input {
 public:
  explicit Input(std::span<const uint8_t> d) : d_(d) {}
  uint8_t U8() { return pos_ < d_.size() ? d_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(U8()) << (8 * i);
    return v;
  }
  std::string Str() {
    size_t n = std::min<size_t>(U8() % 40, d_.size() - pos_);
    std::string s(reinterpret_cast<const char*>(d_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  bool empty() const { return pos_ >= d_.size(); }

 private:
  std::span<const uint8_t> d_;
  size_t pos_ = 0;
};

store::EventRecord MakeEvent(Input& in) {
  store::EventRecord e;
  e.event_time_us = static_cast<int64_t>(in.U8() % 4 == 0 ? 0 : in.U64());
  e.receive_time_us = static_cast<int64_t>(in.U64());
  e.facility = static_cast<int16_t>(in.U16());
  e.severity = static_cast<int16_t>(static_cast<int>(in.U8() % 9) - 1);
  e.format = static_cast<store::EventFormat>(1 + in.U8() % 3);
  e.truncated = in.U8() & 1;
  e.host = in.Str();
  e.message = in.Str();
  e.sender = in.Str();
  return e;
}

store::FlowRecord MakeFlow(Input& in) {
  store::FlowRecord f;
  f.start_us = static_cast<int64_t>(in.U64());
  f.end_us = static_cast<int64_t>(in.U64());
  f.src = in.Str();
  f.dst = in.Str();
  f.src_port = in.U16();
  f.dst_port = in.U16();
  f.protocol = in.U8();
  f.bytes = in.U64();
  f.packets = in.U8();
  f.version = in.U16();
  return f;
}

// Reads every record of a reader; returns the count, *bad the bad blocks.
uint64_t ReadAll(store::SegmentReader& r, uint64_t* bad) {
  if (r.header().name.kind == store::SegmentKind::kEvents) {
    auto all = r.ReadAllEvents(bad);
    TANDEM_CHECK(all.ok());
    return all->size();
  }
  auto all = r.ReadAllFlows(bad);
  TANDEM_CHECK(all.ok());
  return all->size();
}

void CheckRecoveryShape(const store::Recovery& rec, size_t size) {
  TANDEM_CHECK(rec.file_size == size);
  TANDEM_CHECK(rec.valid_length <= size && rec.torn_bytes == size - rec.valid_length);
  if (!rec.header) {
    TANDEM_CHECK(rec.valid_length == 0 && rec.blocks.empty() && !rec.sealed);
    return;
  }
  uint64_t next = rec.header->header_bytes, records = 0;
  for (const store::BlockInfo& b : rec.blocks) {
    TANDEM_CHECK(b.offset == next && b.bytes > store::kBlockHeaderBytes);
    TANDEM_CHECK(b.min_time_us <= b.max_time_us && b.records > 0);
    next += b.bytes;
    records += b.records;
  }
  TANDEM_CHECK(records == rec.records);
  TANDEM_CHECK(rec.sealed ? rec.valid_length == size : rec.valid_length == next);
}

// The reader over the recovered prefix reads back exactly what recovery
// found, and an unsealed prefix can be resumed and sealed.
void CheckPrefix(std::span<const uint8_t> bytes, const store::Recovery& rec) {
  std::vector<uint8_t> prefix(bytes.begin(),
                              bytes.begin() + static_cast<ptrdiff_t>(rec.valid_length));
  store::Recovery again = store::RecoverSegmentBuffer(prefix);
  TANDEM_CHECK(again.blocks == rec.blocks && again.torn_bytes == 0 && again.sealed == rec.sealed);
  auto r = store::SegmentReader::OpenBuffer(prefix);
  TANDEM_CHECK(r.ok());
  if (r->blocks() == rec.blocks) {
    uint64_t bad = 0;
    TANDEM_CHECK(ReadAll(*r, &bad) == rec.records && bad == 0);
  }
  if (rec.sealed) return;
  auto w = store::SegmentWriter::Resume(*rec.header, rec.blocks, rec.valid_length);
  TANDEM_CHECK(w.ok());
  std::vector<uint8_t> seal = w->Seal();
  prefix.insert(prefix.end(), seal.begin(), seal.end());
  store::Recovery sealed = store::RecoverSegmentBuffer(prefix);
  TANDEM_CHECK(sealed.sealed && sealed.blocks == rec.blocks && sealed.torn_bytes == 0);
}

void CheckSegment(std::span<const uint8_t> bytes) {
  store::Recovery rec = store::RecoverSegmentBuffer(bytes);
  CheckRecoveryShape(rec, bytes.size());
  auto r = store::SegmentReader::OpenBuffer(std::vector<uint8_t>(bytes.begin(), bytes.end()));
  TANDEM_CHECK(r.ok() == rec.header.has_value());
  if (!r.ok()) return;
  TANDEM_CHECK(r->blocks_end() <= r->file_size() && r->file_size() == bytes.size());
  for (const store::BlockInfo& b : r->blocks()) {
    TANDEM_CHECK(b.offset + b.bytes <= bytes.size());
  }
  uint64_t bad = 0;
  const uint64_t n = ReadAll(*r, &bad);
  TANDEM_CHECK(bad <= r->blocks().size());
  if (r->blocks() == rec.blocks) TANDEM_CHECK(n == rec.records && bad == 0);
  CheckPrefix(bytes, rec);
}

// Sets block b's payload and header hashes to match its (edited) bytes, as
// the writer of a segment whose header checksum is `header_checksum` would.
void Rehash(std::vector<uint8_t>* file, const store::BlockInfo& b, uint32_t header_checksum) {
  if (b.offset + b.bytes > file->size()) return;
  const uint64_t seed = store::BlockSeed(header_checksum, b.offset);
  uint8_t* h = file->data() + b.offset;
  const uint64_t ph = XXH64(h + store::kBlockHeaderBytes, b.bytes - store::kBlockHeaderBytes, seed);
  for (int i = 0; i < 8; ++i) h[32 + i] = static_cast<uint8_t>(ph >> (8 * i));
  const uint32_t hh = XXH32(h, 40, static_cast<uint32_t>(seed ^ (seed >> 32)));
  for (int i = 0; i < 4; ++i) h[40 + i] = static_cast<uint8_t>(hh >> (8 * i));
}

void FuzzWriter(Input& in) {
  const bool events = in.U8() & 1;
  store::SegmentName name{events ? store::SegmentKind::kEvents : store::SegmentKind::kFlows,
                          "fuzz-a", in.U64(), in.U8()};
  store::SegmentWriter::Limits limits{.block_target_bytes = size_t{64} + in.U16() % 2048u,
                                      .block_records_max = 1u + in.U8() % 16u};
  auto w = store::SegmentWriter::Create(name, 1, limits);
  TANDEM_CHECK(w.ok());
  std::vector<uint8_t> file = w->Header();
  const size_t count = in.U8() % 64;
  for (size_t i = 0; i < count; ++i) {
    TANDEM_CHECK(events ? w->Add(MakeEvent(in)).ok() : w->Add(MakeFlow(in)).ok());
    if (in.U8() % 8 == 0) {
      std::vector<uint8_t> b = w->TakeBlock();
      file.insert(file.end(), b.begin(), b.end());
    }
  }
  std::vector<uint8_t> tail = in.U8() & 1 ? w->Seal() : w->TakeBlock();
  file.insert(file.end(), tail.begin(), tail.end());
  store::Recovery clean = store::RecoverSegmentBuffer(file);
  TANDEM_CHECK(clean.torn_bytes == 0 && clean.records == count);
  // Edits: (offset, xor) pairs, then maybe fix the block hashes, then a cut.
  const size_t edits = in.U8() % 8;
  for (size_t i = 0; i < edits && !file.empty(); ++i) {
    file[in.U16() % file.size()] ^= static_cast<uint8_t>(in.U8() | 1);
  }
  if (in.U8() & 1) {
    for (const store::BlockInfo& b : clean.blocks) Rehash(&file, b, clean.header->checksum);
  }
  if (in.U8() % 4 == 0) file.resize(in.U16() % (file.size() + 1));
  CheckSegment(file);
}

template <typename View, typename Record>
void CheckBody(std::span<const uint8_t> body, bool (*decode)(std::span<const uint8_t>, View*),
               tandem::Status (*encode)(const Record&, std::vector<uint8_t>*)) {
  View v;
  if (!decode(body, &v)) return;
  const Record rec = v.ToRecord();
  std::vector<uint8_t> again;
  TANDEM_CHECK(encode(rec, &again).ok());
  View v2;
  TANDEM_CHECK(decode(again, &v2));
  TANDEM_CHECK(v2.ToRecord() == rec);
  TANDEM_CHECK(again.size() <= body.size());  // our encoding is minimal
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckSegment(rest);
      break;
    case 1: {
      Input in(rest);
      FuzzWriter(in);
      break;
    }
    default: {
      CheckBody<store::EventView, store::EventRecord>(rest, store::DecodeEvent, store::EncodeEvent);
      CheckBody<store::FlowView, store::FlowRecord>(rest, store::DecodeFlow, store::EncodeFlow);
      int64_t t = 0;
      (void)store::PeekEventTime(rest, &t);
      (void)store::PeekFlowTime(rest, &t);
      store::RecordCursor c(rest);
      std::span<const uint8_t> body;
      while (c.Next(&body)) TANDEM_CHECK(body.size() <= rest.size());
      break;
    }
  }
  return 0;
}
