#include "store/segment.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace tandem::store {
namespace {

constexpr size_t kSegmentHeaderBytesMax = kSegmentHeaderFixedBytes + kWriterNameBytesMax;
constexpr size_t kReadRunBytesMax = 8 * 1024 * 1024;  // one read covers adjacent blocks up to this
constexpr uint8_t kEventFlagTruncated = 0x01;
static_assert(kReadRunBytesMax >= kBlockHeaderBytes + kBlockPayloadBytesMax);

// ---- Little-endian fixed-width ----

void PutU16(std::vector<uint8_t>* o, uint16_t v) {
  for (int i = 0; i < 2; ++i) o->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU32(std::vector<uint8_t>* o, uint32_t v) {
  for (int i = 0; i < 4; ++i) o->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>* o, uint64_t v) {
  for (int i = 0; i < 8; ++i) o->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutI64(std::vector<uint8_t>* o, int64_t v) { PutU64(o, static_cast<uint64_t>(v)); }
void SetU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void SetU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t GetU64(const uint8_t* p) {
  return static_cast<uint64_t>(GetU32(p)) | (static_cast<uint64_t>(GetU32(p + 4)) << 32);
}
int64_t GetI64(const uint8_t* p) { return static_cast<int64_t>(GetU64(p)); }

uint32_t Hash32(const uint8_t* p, size_t n, uint32_t seed = 0) { return XXH32(p, n, seed); }
uint64_t Hash64(const uint8_t* p, size_t n, uint64_t seed = 0) { return XXH64(p, n, seed); }
uint32_t Seed32(uint64_t seed) { return static_cast<uint32_t>(seed ^ (seed >> 32)); }

// ---- Varints ----

void PutVarint(std::vector<uint8_t>* o, uint64_t v) {
  while (v >= 0x80) {
    o->push_back(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  o->push_back(static_cast<uint8_t>(v));
}
size_t VarintBytes(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)); }

// Decodes from [p, end); never reads past end.
struct Dec {
  const uint8_t* p;
  const uint8_t* end;

  bool Varint(uint64_t* v) {
    if (p < end && *p < 0x80) {  // fast path: one byte
      *v = *p++;
      return true;
    }
    uint64_t r = 0;
    for (int shift = 0; shift <= 63 && p < end; shift += 7) {
      uint64_t b = *p++;
      if (shift == 63 && b > 1) return false;
      r |= (b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *v = r;
        return true;
      }
    }
    return false;
  }
  bool ZVarint(int64_t* v) {
    uint64_t u = 0;
    if (!Varint(&u)) return false;
    *v = UnZigZag(u);
    return true;
  }
  bool I16(int16_t* v) {
    int64_t x = 0;
    if (!ZVarint(&x) || x < INT16_MIN || x > INT16_MAX) return false;
    *v = static_cast<int16_t>(x);
    return true;
  }
  bool U16(uint16_t* v) {
    uint64_t x = 0;
    if (!Varint(&x) || x > UINT16_MAX) return false;
    *v = static_cast<uint16_t>(x);
    return true;
  }
  bool U8(uint8_t* v) {
    if (p >= end) return false;
    *v = *p++;
    return true;
  }
  bool Str(std::string_view* s) {
    uint64_t n = 0;
    if (!Varint(&n) || n > kStringBytesMax || n > static_cast<uint64_t>(end - p)) return false;
    *s = std::string_view(reinterpret_cast<const char*>(p), n);
    p += n;
    return true;
  }
};

void PutStr(std::vector<uint8_t>* o, std::string_view s) {
  PutVarint(o, s.size());
  o->insert(o->end(), s.begin(), s.end());
}

Status CheckStrings(std::initializer_list<std::pair<const char*, const std::string*>> fields) {
  for (const auto& [name, s] : fields) {
    if (s->size() > kStringBytesMax) {
      return Status::Error(std::string("record field ") + name + " is " +
                           std::to_string(s->size()) + " bytes, more than " +
                           std::to_string(kStringBytesMax));
    }
  }
  return Status::Ok();
}

Status FinishBody(std::vector<uint8_t>* out, size_t start) {
  if (out->size() - start > kRecordBytesMax) {
    size_t n = out->size() - start;
    out->resize(start);
    return Status::Error("record is " + std::to_string(n) + " bytes, more than " +
                         std::to_string(kRecordBytesMax));
  }
  return Status::Ok();
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Hex16(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(kGenerationHexDigits, '0');
  for (size_t i = 0; i < kGenerationHexDigits; ++i)
    s[kGenerationHexDigits - 1 - i] = kDigits[(v >> (4 * i)) & 0xf];
  return s;
}
std::optional<uint64_t> ParseHex16(std::string_view s) {
  if (s.size() != kGenerationHexDigits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!IsHex(c)) return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return v;
}

bool InTimeRange(int64_t min_us, int64_t max_us, int64_t from_us, int64_t to_us) {
  return max_us >= from_us && (min_us < to_us || to_us == std::numeric_limits<int64_t>::max());
}

}  // namespace

// ---- Sources ----

// Where a reader's bytes come from: a file (read into a buffer) or memory.
class SegmentReader::Source {
 public:
  virtual ~Source() = default;
  virtual Result<uint64_t> Size() = 0;
  // Exactly `len` bytes at `offset`, as a span into *buf or into memory;
  // an error if fewer are there.
  virtual Result<std::span<const uint8_t>> Fetch(uint64_t offset, size_t len,
                                                 std::vector<uint8_t>* buf) = 0;
  uint64_t bytes_read = 0;
};

namespace {

class FileSource final : public SegmentReader::Source {
 public:
  FileSource(std::unique_ptr<os::File> f, std::string path)
      : f_(std::move(f)), path_(std::move(path)) {}
  Result<uint64_t> Size() override { return f_->Size(); }
  Result<std::span<const uint8_t>> Fetch(uint64_t offset, size_t len,
                                         std::vector<uint8_t>* buf) override {
    if (buf->size() < len) buf->resize(len);
    Result<size_t> n = f_->ReadAt(offset, std::span<uint8_t>(buf->data(), len));
    if (!n.ok()) return n.status();
    bytes_read += *n;
    if (*n != len)
      return Status::Error(path_ + ": unexpected end of file at " + std::to_string(offset + *n));
    return std::span<const uint8_t>(buf->data(), len);
  }

 private:
  std::unique_ptr<os::File> f_;
  std::string path_;
};

class MemorySource final : public SegmentReader::Source {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  explicit MemorySource(std::vector<uint8_t> owned) : owned_(std::move(owned)), bytes_(owned_) {}
  Result<uint64_t> Size() override { return static_cast<uint64_t>(bytes_.size()); }
  Result<std::span<const uint8_t>> Fetch(uint64_t offset, size_t len,
                                         std::vector<uint8_t>*) override {
    if (offset > bytes_.size() || len > bytes_.size() - offset) {
      return Status::Error("buffer: unexpected end at " + std::to_string(offset));
    }
    bytes_read += len;
    return bytes_.subspan(offset, len);
  }

 private:
  std::vector<uint8_t> owned_;
  std::span<const uint8_t> bytes_;
};

using Source = SegmentReader::Source;

std::optional<SegmentHeader> ReadHeader(Source& src, uint64_t size, std::vector<uint8_t>* buf,
                                        Status* io) {
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, kSegmentHeaderBytesMax));
  Result<std::span<const uint8_t>> b = src.Fetch(0, n, buf);
  if (!b.ok()) {
    *io = b.status();
    return std::nullopt;
  }
  return ParseSegmentHeader(*b);
}

// The block list of a valid seal (docs/formats/segments.md), and the index
// offset; nullopt if there is no valid seal.
std::optional<std::pair<std::vector<BlockInfo>, uint64_t>> ReadSeal(Source& src, uint64_t size,
                                                                    uint32_t header_bytes,
                                                                    std::vector<uint8_t>* buf,
                                                                    Status* io) {
  if (size < header_bytes + kIndexHeaderBytes + kTrailerBytes) return std::nullopt;
  Result<std::span<const uint8_t>> tb = src.Fetch(size - kTrailerBytes, kTrailerBytes, buf);
  if (!tb.ok()) {
    *io = tb.status();
    return std::nullopt;
  }
  const uint8_t* t = tb->data();
  if (GetU32(t) != kTrailerMagic || GetU32(t + 52) != kTrailerMagic ||
      GetU32(t + 48) != Hash32(t, 48)) {
    return std::nullopt;
  }
  const uint32_t n = GetU32(t + 4);
  const uint64_t index_offset = GetU64(t + 8);
  const uint64_t records = GetU64(t + 16);
  const int64_t tmin = GetI64(t + 24), tmax = GetI64(t + 32);
  const uint64_t index_hash = GetU64(t + 40);
  if (n > kSegmentBlocksMax) return std::nullopt;
  const uint64_t index_bytes = kIndexHeaderBytes + uint64_t{n} * kIndexEntryBytes;
  if (index_offset < header_bytes || index_offset > size ||
      size - index_offset != index_bytes + kTrailerBytes) {
    return std::nullopt;
  }
  Result<std::span<const uint8_t>> ib = src.Fetch(index_offset, index_bytes, buf);
  if (!ib.ok()) {
    *io = ib.status();
    return std::nullopt;
  }
  const uint8_t* x = ib->data();
  if (GetU32(x) != kIndexMagic || GetU32(x + 4) != n || Hash64(x, index_bytes) != index_hash) {
    return std::nullopt;
  }
  std::vector<BlockInfo> blocks;
  blocks.reserve(n);
  uint64_t next = header_bytes, sum = 0;
  int64_t min = 0, max = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint8_t* e = x + kIndexHeaderBytes + size_t{i} * kIndexEntryBytes;
    BlockInfo b{GetU64(e), GetU32(e + 8), GetU32(e + 12), GetI64(e + 16), GetI64(e + 24)};
    if (b.offset != next || b.bytes <= kBlockHeaderBytes ||
        b.bytes > kBlockHeaderBytes + kBlockPayloadBytesMax || b.records == 0 ||
        b.records > kBlockRecordsMax || b.min_time_us > b.max_time_us ||
        b.bytes > index_offset - b.offset) {
      return std::nullopt;
    }
    next += b.bytes;
    sum += b.records;
    min = i == 0 ? b.min_time_us : std::min(min, b.min_time_us);
    max = i == 0 ? b.max_time_us : std::max(max, b.max_time_us);
    blocks.push_back(b);
  }
  if (next != index_offset || sum != records || min != tmin || max != tmax) return std::nullopt;
  return std::make_pair(std::move(blocks), index_offset);
}

template <typename View>
bool DecodeAs(std::span<const uint8_t> body, View* v);
template <>
bool DecodeAs<EventView>(std::span<const uint8_t> body, EventView* v) {
  return DecodeEvent(body, v);
}
template <>
bool DecodeAs<FlowView>(std::span<const uint8_t> body, FlowView* v) {
  return DecodeFlow(body, v);
}

// Recovery over any source.
Result<Recovery> Recover(Source& src) {
  Recovery r;
  Result<uint64_t> size = src.Size();
  if (!size.ok()) return size.status();
  r.file_size = *size;
  std::vector<uint8_t> buf;
  Status io;
  r.header = ReadHeader(src, r.file_size, &buf, &io);
  if (!io.ok()) return io;
  if (!r.header) {
    r.torn_bytes = r.file_size;
    return r;
  }
  uint64_t off = r.header->header_bytes;
  while (r.file_size - off >= kBlockHeaderBytes && r.blocks.size() < kSegmentBlocksMax) {
    Result<std::span<const uint8_t>> hb = src.Fetch(off, kBlockHeaderBytes, &buf);
    if (!hb.ok()) return hb.status();
    const uint64_t seed = BlockSeed(r.header->checksum, off);
    std::optional<BlockHeader> h = ParseBlockHeader(*hb, seed);
    if (!h || h->payload_bytes > r.file_size - off - kBlockHeaderBytes) break;
    Result<std::span<const uint8_t>> pb =
        src.Fetch(off + kBlockHeaderBytes, h->payload_bytes, &buf);
    if (!pb.ok()) return pb.status();
    if (ValidateBlockPayload(r.header->name.kind, *h, *pb, seed) != BlockCheck::kOk) break;
    const uint32_t bytes = static_cast<uint32_t>(kBlockHeaderBytes + h->payload_bytes);
    r.blocks.push_back({off, bytes, h->record_count, h->min_time_us, h->max_time_us});
    r.records += h->record_count;
    off += bytes;
  }
  r.valid_length = off;
  auto seal = ReadSeal(src, r.file_size, r.header->header_bytes, &buf, &io);
  if (!io.ok()) return io;
  if (seal && seal->second == off && seal->first == r.blocks) {
    r.sealed = true;
    r.valid_length = r.file_size;
  }
  r.torn_bytes = r.file_size - r.valid_length;
  return r;
}

}  // namespace

// ---- Naming ----

std::string_view KindDir(SegmentKind kind) {
  return kind == SegmentKind::kEvents ? "events" : "flows";
}

Status ValidateWriterName(std::string_view w) {
  if (w.empty() || w.size() > kWriterNameBytesMax) {
    return Status::Error("writer name must be 1.." + std::to_string(kWriterNameBytesMax) +
                         " bytes");
  }
  for (char c : w) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '.' ||
              c == '_' || c == '-';
    if (!ok)
      return Status::Error("writer name \"" + std::string(w) +
                           "\" has a character outside [A-Za-z0-9._-]");
  }
  return Status::Ok();
}

std::string SegmentPath(const SegmentName& n) {
  TANDEM_CHECK(ValidateWriterName(n.writer).ok());
  TANDEM_CHECK(n.seq <= kSeqMax);
  std::string seq = std::to_string(n.seq);
  return std::string(KindDir(n.kind)) + "/" + n.writer + "-" + Hex16(n.generation) + "-" +
         std::string(kSeqDigits - seq.size(), '0') + seq + ".seg";
}

std::optional<SegmentName> ParseSegmentFileName(SegmentKind kind, std::string_view f) {
  constexpr std::string_view kExt = ".seg";
  // <writer> '-' <16 hex> '-' <10 digits> ".seg"
  constexpr size_t kTail = 1 + kGenerationHexDigits + 1 + kSeqDigits + 4;
  if (f.size() < kTail + 1 || f.substr(f.size() - kExt.size()) != kExt) return std::nullopt;
  std::string_view writer = f.substr(0, f.size() - kTail);
  std::string_view rest = f.substr(f.size() - kTail);
  if (rest[0] != '-' || rest[1 + kGenerationHexDigits] != '-') return std::nullopt;
  std::optional<uint64_t> gen = ParseHex16(rest.substr(1, kGenerationHexDigits));
  std::string_view seq = rest.substr(2 + kGenerationHexDigits, kSeqDigits);
  if (!gen || !ValidateWriterName(writer).ok()) return std::nullopt;
  uint64_t s = 0;
  for (char c : seq) {
    if (!IsDigit(c)) return std::nullopt;
    s = s * 10 + static_cast<uint64_t>(c - '0');
  }
  return SegmentName{kind, std::string(writer), *gen, s};
}

std::optional<SegmentName> ParseSegmentPath(std::string_view p) {
  for (SegmentKind k : {SegmentKind::kEvents, SegmentKind::kFlows}) {
    std::string dir = std::string(KindDir(k)) + "/";
    if (p.substr(0, dir.size()) == dir) return ParseSegmentFileName(k, p.substr(dir.size()));
  }
  return std::nullopt;
}

// ---- Record codec ----

Status EncodeEvent(const EventRecord& e, std::vector<uint8_t>* out) {
  TANDEM_RETURN_IF_ERROR(CheckStrings({{"host", &e.host},
                                       {"app", &e.app},
                                       {"procid", &e.procid},
                                       {"msgid", &e.msgid},
                                       {"structured_data", &e.structured_data},
                                       {"message", &e.message},
                                       {"sender", &e.sender}}));
  auto fmt = static_cast<uint8_t>(e.format);
  if (fmt < 1 || fmt > 3)
    return Status::Error("event format " + std::to_string(fmt) + " is unknown");
  size_t start = out->size();
  PutVarint(out, ZigZag(e.event_time_us));
  PutVarint(out, ZigZag(e.receive_time_us));
  PutVarint(out, ZigZag(e.facility));
  PutVarint(out, ZigZag(e.severity));
  out->push_back(fmt);
  out->push_back(e.truncated ? kEventFlagTruncated : 0);
  for (const std::string* s :
       {&e.host, &e.app, &e.procid, &e.msgid, &e.structured_data, &e.message, &e.sender}) {
    PutStr(out, *s);
  }
  return FinishBody(out, start);
}

Status EncodeFlow(const FlowRecord& f, std::vector<uint8_t>* out) {
  TANDEM_RETURN_IF_ERROR(
      CheckStrings({{"src", &f.src}, {"dst", &f.dst}, {"exporter", &f.exporter}}));
  size_t start = out->size();
  PutVarint(out, ZigZag(f.start_us));
  PutVarint(out, ZigZag(f.end_us));
  PutVarint(out, ZigZag(f.receive_time_us));
  PutStr(out, f.src);
  PutStr(out, f.dst);
  PutVarint(out, f.src_port);
  PutVarint(out, f.dst_port);
  out->push_back(f.protocol);
  PutVarint(out, f.bytes);
  PutVarint(out, f.packets);
  PutStr(out, f.exporter);
  PutVarint(out, f.version);
  return FinishBody(out, start);
}

bool PeekEventTime(std::span<const uint8_t> body, int64_t* t) {
  Dec d{body.data(), body.data() + body.size()};
  int64_t et = 0, rt = 0;
  if (!d.ZVarint(&et) || !d.ZVarint(&rt)) return false;
  *t = et != 0 ? et : rt;
  return true;
}

bool PeekFlowTime(std::span<const uint8_t> body, int64_t* t) {
  Dec d{body.data(), body.data() + body.size()};
  return d.ZVarint(t);
}

bool DecodeEvent(std::span<const uint8_t> body, EventView* v) {
  Dec d{body.data(), body.data() + body.size()};
  uint8_t fmt = 0, flags = 0;
  if (!d.ZVarint(&v->event_time_us) || !d.ZVarint(&v->receive_time_us) || !d.I16(&v->facility) ||
      !d.I16(&v->severity) || !d.U8(&fmt) || !d.U8(&flags)) {
    return false;
  }
  if (fmt < 1 || fmt > 3 || (flags & ~kEventFlagTruncated) != 0) return false;
  v->format = static_cast<EventFormat>(fmt);
  v->truncated = (flags & kEventFlagTruncated) != 0;
  return d.Str(&v->host) && d.Str(&v->app) && d.Str(&v->procid) && d.Str(&v->msgid) &&
         d.Str(&v->structured_data) && d.Str(&v->message) && d.Str(&v->sender) && d.p == d.end;
}

bool DecodeFlow(std::span<const uint8_t> body, FlowView* v) {
  Dec d{body.data(), body.data() + body.size()};
  return d.ZVarint(&v->start_us) && d.ZVarint(&v->end_us) && d.ZVarint(&v->receive_time_us) &&
         d.Str(&v->src) && d.Str(&v->dst) && d.U16(&v->src_port) && d.U16(&v->dst_port) &&
         d.U8(&v->protocol) && d.Varint(&v->bytes) && d.Varint(&v->packets) &&
         d.Str(&v->exporter) && d.U16(&v->version) && d.p == d.end;
}

EventRecord EventView::ToRecord() const {
  EventRecord e;
  e.event_time_us = event_time_us;
  e.receive_time_us = receive_time_us;
  e.facility = facility;
  e.severity = severity;
  e.format = format;
  e.truncated = truncated;
  e.host = host;
  e.app = app;
  e.procid = procid;
  e.msgid = msgid;
  e.structured_data = structured_data;
  e.message = message;
  e.sender = sender;
  return e;
}

FlowRecord FlowView::ToRecord() const {
  FlowRecord f;
  f.start_us = start_us;
  f.end_us = end_us;
  f.receive_time_us = receive_time_us;
  f.src = src;
  f.dst = dst;
  f.src_port = src_port;
  f.dst_port = dst_port;
  f.protocol = protocol;
  f.bytes = bytes;
  f.packets = packets;
  f.exporter = exporter;
  f.version = version;
  return f;
}

bool RecordCursor::Next(std::span<const uint8_t>* body) {
  if (error_ || pos_ == in_.size()) return false;
  Dec d{in_.data() + pos_, in_.data() + in_.size()};
  uint64_t len = 0;
  if (!d.Varint(&len) || len == 0 || len > kRecordBytesMax ||
      static_cast<uint64_t>(d.end - d.p) < 4 || len > static_cast<uint64_t>(d.end - d.p) - 4) {
    error_ = true;
    return false;
  }
  const uint32_t sum = GetU32(d.p);
  const uint8_t* b = d.p + 4;
  if (verify_ && Hash32(b, len) != sum) {
    error_ = true;
    return false;
  }
  *body = std::span<const uint8_t>(b, len);
  last_ = *body;
  last_checksum_ = sum;
  pos_ = static_cast<size_t>(b + len - in_.data());
  return true;
}

bool RecordCursor::LastChecksumOk() const {
  return Hash32(last_.data(), last_.size()) == last_checksum_;
}

// ---- Blocks ----

uint64_t BlockSeed(uint32_t header_checksum, uint64_t offset) {
  return (static_cast<uint64_t>(header_checksum) << 32) ^ offset;
}

std::optional<BlockHeader> ParseBlockHeader(std::span<const uint8_t> b, uint64_t seed) {
  TANDEM_CHECK(b.size() >= kBlockHeaderBytes);
  const uint8_t* p = b.data();
  if (GetU32(p) != kBlockMagic || GetU32(p + 40) != Hash32(p, 40, Seed32(seed)))
    return std::nullopt;
  BlockHeader h{GetU32(p + 4), GetU32(p + 8), GetI64(p + 16), GetI64(p + 24), GetU64(p + 32)};
  if (h.payload_bytes == 0 || h.payload_bytes > kBlockPayloadBytesMax || h.record_count == 0 ||
      h.record_count > kBlockRecordsMax || GetU32(p + 12) != 0 || h.min_time_us > h.max_time_us) {
    return std::nullopt;
  }
  return h;
}

namespace {
template <typename View>
BlockCheck ValidateRecords(const BlockHeader& h, std::span<const uint8_t> payload) {
  RecordCursor c(payload);
  std::span<const uint8_t> body;
  uint32_t n = 0;
  View v;
  while (c.Next(&body)) {
    if (++n > h.record_count || !DecodeAs<View>(body, &v) || v.time_us() < h.min_time_us ||
        v.time_us() > h.max_time_us) {
      return BlockCheck::kBadRecords;
    }
  }
  return c.error() || n != h.record_count ? BlockCheck::kBadRecords : BlockCheck::kOk;
}
}  // namespace

BlockCheck ValidateBlockPayload(SegmentKind kind, const BlockHeader& h,
                                std::span<const uint8_t> payload, uint64_t seed) {
  if (payload.size() != h.payload_bytes ||
      Hash64(payload.data(), payload.size(), seed) != h.payload_hash) {
    return BlockCheck::kBadPayloadHash;
  }
  return kind == SegmentKind::kEvents ? ValidateRecords<EventView>(h, payload)
                                      : ValidateRecords<FlowView>(h, payload);
}

// ---- Segment header ----

std::vector<uint8_t> EncodeSegmentHeader(const SegmentName& name, int64_t created_us) {
  TANDEM_CHECK(ValidateWriterName(name.writer).ok());
  TANDEM_CHECK(name.seq <= kSeqMax);
  std::vector<uint8_t> o;
  const size_t h = kSegmentHeaderFixedBytes + name.writer.size();
  PutU32(&o, kSegmentMagic);
  o.push_back(kSegmentVersion);
  o.push_back(static_cast<uint8_t>(name.kind));
  PutU16(&o, static_cast<uint16_t>(h));
  PutU64(&o, name.seq);
  PutI64(&o, created_us);
  std::string gen = Hex16(name.generation);
  o.insert(o.end(), gen.begin(), gen.end());
  o.push_back(static_cast<uint8_t>(name.writer.size()));
  o.insert(o.end(), name.writer.begin(), name.writer.end());
  PutU32(&o, Hash32(o.data(), o.size()));
  TANDEM_CHECK(o.size() == h);
  return o;
}

std::optional<SegmentHeader> ParseSegmentHeader(std::span<const uint8_t> b) {
  if (b.size() < kSegmentHeaderFixedBytes) return std::nullopt;
  const uint8_t* p = b.data();
  if (GetU32(p) != kSegmentMagic || p[4] != kSegmentVersion || (p[5] != 1 && p[5] != 2)) {
    return std::nullopt;
  }
  const size_t h = GetU16(p + 6);
  const size_t w = p[40];
  if (w == 0 || w > kWriterNameBytesMax || h != kSegmentHeaderFixedBytes + w || b.size() < h ||
      GetU32(p + h - 4) != Hash32(p, h - 4)) {
    return std::nullopt;
  }
  SegmentHeader out;
  out.name.kind = static_cast<SegmentKind>(p[5]);
  out.name.seq = GetU64(p + 8);
  out.created_us = GetI64(p + 16);
  std::optional<uint64_t> gen =
      ParseHex16(std::string_view(reinterpret_cast<const char*>(p + 24), kGenerationHexDigits));
  out.name.writer.assign(reinterpret_cast<const char*>(p + 41), w);
  if (!gen || out.name.seq > kSeqMax || !ValidateWriterName(out.name.writer).ok())
    return std::nullopt;
  out.name.generation = *gen;
  out.header_bytes = static_cast<uint32_t>(h);
  out.checksum = GetU32(p + h - 4);
  return out;
}

// ---- Writer ----

SegmentWriter::SegmentWriter(SegmentName name, std::vector<uint8_t> header, Limits limits)
    : name_(std::move(name)),
      header_(std::move(header)),
      header_checksum_(GetU32(header_.data() + header_.size() - 4)),
      limits_(limits),
      offset_(header_.size()) {}

Result<SegmentWriter> SegmentWriter::Create(SegmentName name, int64_t created_us, Limits limits) {
  TANDEM_RETURN_IF_ERROR(ValidateWriterName(name.writer));
  if (name.seq > kSeqMax)
    return Status::Error("segment seq " + std::to_string(name.seq) + " is too large");
  if (name.kind != SegmentKind::kEvents && name.kind != SegmentKind::kFlows) {
    return Status::Error("unknown segment kind");
  }
  if (limits.block_target_bytes == 0 || limits.block_target_bytes > kBlockTargetBytes ||
      limits.block_records_max == 0 || limits.block_records_max > kBlockRecordsMax) {
    return Status::Error("segment block limits out of range");
  }
  std::vector<uint8_t> header = EncodeSegmentHeader(name, created_us);
  return SegmentWriter(std::move(name), std::move(header), limits);
}

Result<SegmentWriter> SegmentWriter::Resume(const SegmentHeader& header,
                                            const std::vector<BlockInfo>& blocks,
                                            uint64_t valid_length, Limits limits) {
  Result<SegmentWriter> w = Create(header.name, header.created_us, limits);
  if (!w.ok()) return w.status();
  if (w->header_.size() != header.header_bytes) return Status::Error("resume: header size differs");
  uint64_t next = header.header_bytes;
  for (const BlockInfo& b : blocks) {
    if (b.offset != next || b.records == 0)
      return Status::Error("resume: blocks do not tile the segment");
    next += b.bytes;
    w->records_ += b.records;
    w->min_time_us_ = w->index_.empty() ? b.min_time_us : std::min(w->min_time_us_, b.min_time_us);
    w->max_time_us_ = w->index_.empty() ? b.max_time_us : std::max(w->max_time_us_, b.max_time_us);
    w->index_.push_back(b);
  }
  if (next != valid_length)
    return Status::Error("resume: blocks end at " + std::to_string(next) +
                         ", not at the valid length " + std::to_string(valid_length));
  w->offset_ = valid_length;
  return w;
}

Status SegmentWriter::Add(const EventRecord& e) {
  TANDEM_CHECK(name_.kind == SegmentKind::kEvents && !sealed_);
  scratch_.clear();
  TANDEM_RETURN_IF_ERROR(EncodeEvent(e, &scratch_));
  return AddBody(scratch_, EventTimeUs(e));
}

Status SegmentWriter::Add(const FlowRecord& f) {
  TANDEM_CHECK(name_.kind == SegmentKind::kFlows && !sealed_);
  scratch_.clear();
  TANDEM_RETURN_IF_ERROR(EncodeFlow(f, &scratch_));
  return AddBody(scratch_, FlowTimeUs(f));
}

Status SegmentWriter::AddBody(std::span<const uint8_t> body, int64_t t) {
  const size_t framed = VarintBytes(body.size()) + 4 + body.size();
  if (pending_records_ > 0 && (payload_.size() + framed > limits_.block_target_bytes ||
                               pending_records_ >= limits_.block_records_max)) {
    CloseBlock();
  }
  if (pending_records_ == 0 && index_.size() >= kSegmentBlocksMax) {
    return Status::Error("segment has " + std::to_string(kSegmentBlocksMax) + " blocks: seal it");
  }
  PutVarint(&payload_, body.size());
  PutU32(&payload_, Hash32(body.data(), body.size()));
  payload_.insert(payload_.end(), body.begin(), body.end());
  pending_min_ = pending_records_ == 0 ? t : std::min(pending_min_, t);
  pending_max_ = pending_records_ == 0 ? t : std::max(pending_max_, t);
  min_time_us_ = records_ == 0 ? t : std::min(min_time_us_, t);
  max_time_us_ = records_ == 0 ? t : std::max(max_time_us_, t);
  ++pending_records_;
  ++records_;
  return Status::Ok();
}

void SegmentWriter::CloseBlock() {
  if (pending_records_ == 0) return;
  TANDEM_CHECK(payload_.size() <= kBlockPayloadBytesMax);
  const uint64_t off = offset_ + ready_.size();
  const size_t h = ready_.size();
  PutU32(&ready_, kBlockMagic);
  PutU32(&ready_, static_cast<uint32_t>(payload_.size()));
  PutU32(&ready_, pending_records_);
  PutU32(&ready_, 0);
  PutI64(&ready_, pending_min_);
  PutI64(&ready_, pending_max_);
  const uint64_t seed = BlockSeed(header_checksum_, off);
  PutU64(&ready_, Hash64(payload_.data(), payload_.size(), seed));
  PutU32(&ready_, Hash32(ready_.data() + h, 40, Seed32(seed)));
  ready_.insert(ready_.end(), payload_.begin(), payload_.end());
  index_.push_back({off, static_cast<uint32_t>(kBlockHeaderBytes + payload_.size()),
                    pending_records_, pending_min_, pending_max_});
  ready_records_ += pending_records_;
  payload_.clear();
  pending_records_ = 0;
}

bool SegmentWriter::BlockReady() const {
  return !ready_.empty() || pending_records_ >= limits_.block_records_max ||
         payload_.size() >= limits_.block_target_bytes;
}

size_t SegmentWriter::pending_bytes() const {
  return ready_.size() + (pending_records_ > 0 ? kBlockHeaderBytes + payload_.size() : 0);
}

std::vector<uint8_t> SegmentWriter::TakeBlock() {
  TANDEM_CHECK(!sealed_);
  CloseBlock();
  std::vector<uint8_t> out;
  out.swap(ready_);
  offset_ += out.size();
  ready_records_ = 0;
  return out;
}

std::vector<uint8_t> SegmentWriter::Seal() {
  std::vector<uint8_t> out = TakeBlock();
  const uint64_t index_offset = offset_;
  const size_t ix = out.size();
  PutU32(&out, kIndexMagic);
  PutU32(&out, static_cast<uint32_t>(index_.size()));
  for (const BlockInfo& b : index_) {
    PutU64(&out, b.offset);
    PutU32(&out, b.bytes);
    PutU32(&out, b.records);
    PutI64(&out, b.min_time_us);
    PutI64(&out, b.max_time_us);
  }
  const uint64_t index_hash = Hash64(out.data() + ix, out.size() - ix);
  const size_t t = out.size();
  out.resize(t + kTrailerBytes);
  uint8_t* p = out.data() + t;
  SetU32(p, kTrailerMagic);
  SetU32(p + 4, static_cast<uint32_t>(index_.size()));
  SetU64(p + 8, index_offset);
  SetU64(p + 16, records_);
  SetU64(p + 24, static_cast<uint64_t>(index_.empty() ? 0 : min_time_us_));
  SetU64(p + 32, static_cast<uint64_t>(index_.empty() ? 0 : max_time_us_));
  SetU64(p + 40, index_hash);
  SetU32(p + 48, Hash32(p, 48));
  SetU32(p + 52, kTrailerMagic);
  offset_ += out.size() - ix;
  sealed_ = true;
  return out;
}

// ---- Reader ----

Result<SegmentReader> SegmentReader::Open(os::FileSystem& fs, const std::string& path,
                                          bool* bad_format) {
  bool bad = false;
  if (bad_format == nullptr) bad_format = &bad;
  *bad_format = false;
  Result<std::unique_ptr<os::File>> f = fs.Open(path, /*create=*/false);
  if (!f.ok()) return f.status();
  SegmentReader r;
  r.source_ = std::make_shared<FileSource>(std::move(*f), path);
  TANDEM_RETURN_IF_ERROR(r.Init(path, bad_format));
  return r;
}

Result<SegmentReader> SegmentReader::OpenBuffer(std::vector<uint8_t> bytes) {
  SegmentReader r;
  r.source_ = std::make_shared<MemorySource>(std::move(bytes));
  bool bad = false;
  TANDEM_RETURN_IF_ERROR(r.Init("", &bad));
  return r;
}

uint64_t SegmentReader::bytes_read() const { return source_->bytes_read; }

Status SegmentReader::Init(const std::string& path, bool* bad_format) {
  Result<uint64_t> size = source_->Size();
  if (!size.ok()) return size.status();
  size_ = *size;
  Status io;
  std::optional<SegmentHeader> h = ReadHeader(*source_, size_, &buf_, &io);
  if (!io.ok()) return io;
  const std::string where = path.empty() ? "segment" : path;
  if (!h) {
    *bad_format = true;
    return Status::Error(where + ": no valid segment header");
  }
  header_ = std::move(*h);
  // A path that follows the naming rule must agree with the header.
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    size_t dir = path.rfind('/', slash == 0 ? 0 : slash - 1);
    std::string_view rel = std::string_view(path).substr(dir == std::string::npos ? 0 : dir + 1);
    std::optional<SegmentName> n = ParseSegmentPath(rel);
    if (n && !(*n == header_.name)) {
      *bad_format = true;
      return Status::Error(where + ": header does not match the file name");
    }
  }
  auto seal = ReadSeal(*source_, size_, header_.header_bytes, &buf_, &io);
  if (!io.ok()) return io;
  if (seal) {
    sealed_ = true;
    blocks_ = std::move(seal->first);
    blocks_end_ = seal->second;
    return Status::Ok();
  }
  return ScanBlocks();
}

Status SegmentReader::ScanBlocks() {
  uint64_t off = header_.header_bytes;
  while (size_ - off >= kBlockHeaderBytes && blocks_.size() < kSegmentBlocksMax) {
    Result<std::span<const uint8_t>> hb = source_->Fetch(off, kBlockHeaderBytes, &buf_);
    if (!hb.ok()) return hb.status();
    std::optional<BlockHeader> h = ParseBlockHeader(*hb, BlockSeed(header_.checksum, off));
    if (!h || h->payload_bytes > size_ - off - kBlockHeaderBytes) break;
    const uint32_t bytes = static_cast<uint32_t>(kBlockHeaderBytes + h->payload_bytes);
    blocks_.push_back({off, bytes, h->record_count, h->min_time_us, h->max_time_us});
    off += bytes;
  }
  blocks_end_ = off;
  torn_bytes_ = size_ - off;
  return Status::Ok();
}

Status SegmentReader::ForEachBlock(int64_t from_us, int64_t to_us,
                                   const std::function<bool(const Block&)>& fn) {
  size_t i = 0;
  while (i < blocks_.size()) {
    if (!InTimeRange(blocks_[i].min_time_us, blocks_[i].max_time_us, from_us, to_us)) {
      ++i;
      continue;
    }
    // A run of adjacent wanted blocks, read at once.
    size_t j = i + 1;
    uint64_t run = blocks_[i].bytes;
    while (j < blocks_.size() &&
           InTimeRange(blocks_[j].min_time_us, blocks_[j].max_time_us, from_us, to_us) &&
           run + blocks_[j].bytes <= kReadRunBytesMax) {
      run += blocks_[j].bytes;
      ++j;
    }
    Result<std::span<const uint8_t>> data = source_->Fetch(blocks_[i].offset, run, &buf_);
    if (!data.ok()) return data.status();
    size_t pos = 0;
    for (size_t k = i; k < j; ++k) {
      const BlockInfo& info = blocks_[k];
      std::span<const uint8_t> b = data->subspan(pos, info.bytes);
      pos += info.bytes;
      if (!fn(CheckBlock(info, b))) return Status::Ok();
    }
    i = j;
  }
  return Status::Ok();
}

Result<SegmentReader::Block> SegmentReader::ReadBlock(size_t i, std::vector<uint8_t>* buf) {
  TANDEM_CHECK(i < blocks_.size());
  const BlockInfo& info = blocks_[i];
  Result<std::span<const uint8_t>> b = source_->Fetch(info.offset, info.bytes, buf);
  if (!b.ok()) return b.status();
  return CheckBlock(info, *b);
}

SegmentReader::Block SegmentReader::CheckBlock(const BlockInfo& info,
                                               std::span<const uint8_t> bytes) const {
  const uint64_t seed = BlockSeed(header_.checksum, info.offset);
  std::optional<BlockHeader> h = ParseBlockHeader(bytes, seed);
  std::span<const uint8_t> payload = bytes.subspan(kBlockHeaderBytes);
  bool valid = h && h->payload_bytes == payload.size() && h->record_count == info.records &&
               h->min_time_us == info.min_time_us && h->max_time_us == info.max_time_us &&
               Hash64(payload.data(), payload.size(), seed) == h->payload_hash;
  return Block{&info, payload, valid};
}

namespace {
template <typename View, typename Record>
Result<std::vector<Record>> ReadAll(SegmentReader& r, SegmentKind kind, uint64_t* bad_blocks) {
  std::vector<Record> out;
  uint64_t bad = 0;
  if (r.header().name.kind != kind) return Status::Error("segment holds the other kind of record");
  Status st =
      r.ForEachBlock(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                     [&](const SegmentReader::Block& b) {
                       std::vector<Record> recs;
                       RecordCursor c(b.payload);
                       std::span<const uint8_t> body;
                       View v;
                       bool ok = b.valid;
                       while (ok && c.Next(&body)) {
                         ok = DecodeAs<View>(body, &v);
                         if (ok) recs.push_back(v.ToRecord());
                       }
                       if (!ok || c.error() || recs.size() != b.info->records) {
                         ++bad;
                       } else {
                         for (Record& x : recs) out.push_back(std::move(x));
                       }
                       return true;
                     });
  if (!st.ok()) return st;
  if (bad_blocks) *bad_blocks = bad;
  return out;
}
}  // namespace

Result<std::vector<EventRecord>> SegmentReader::ReadAllEvents(uint64_t* bad_blocks) {
  return ReadAll<EventView, EventRecord>(*this, SegmentKind::kEvents, bad_blocks);
}
Result<std::vector<FlowRecord>> SegmentReader::ReadAllFlows(uint64_t* bad_blocks) {
  return ReadAll<FlowView, FlowRecord>(*this, SegmentKind::kFlows, bad_blocks);
}

// ---- Recovery ----

Result<Recovery> RecoverSegment(os::FileSystem& fs, const std::string& path) {
  Result<std::unique_ptr<os::File>> f = fs.Open(path, /*create=*/false);
  if (!f.ok()) return f.status();
  FileSource src(std::move(*f), path);
  return Recover(src);
}

Recovery RecoverSegmentBuffer(std::span<const uint8_t> bytes) {
  MemorySource src(bytes);
  Result<Recovery> r = Recover(src);
  TANDEM_CHECK(r.ok());  // memory never fails
  return std::move(r).value();
}

}  // namespace tandem::store
