// NetFlow v5 / v9 / IPFIX decoder. Format notes: docs/formats/netflow.md.
#include "collect/netflow.h"

#include <arpa/inet.h>  // inet_ntop: pure formatting, no I/O
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace tandem::collect {
namespace {

constexpr size_t kDatagramBytesMax = 65535;  // the most a UDP datagram can carry
constexpr size_t kV5HeaderBytes = 24;
constexpr size_t kV5RecordBytes = 48;
constexpr size_t kV5RecordsMax = 30;  // Cisco's limit: 24 + 30 * 48 = 1464 bytes
constexpr size_t kV9HeaderBytes = 20;
constexpr size_t kIpfixHeaderBytes = 16;
constexpr size_t kSetHeaderBytes = 4;
constexpr uint16_t kV9TemplateSet = 0;
constexpr uint16_t kV9OptionsTemplateSet = 1;
constexpr uint16_t kIpfixTemplateSet = 2;
constexpr uint16_t kIpfixOptionsTemplateSet = 3;
constexpr uint16_t kFirstDataSet = 256;
constexpr uint16_t kVariableLength = 65535;  // IPFIX: length carried in the record
constexpr uint16_t kEnterpriseBit = 0x8000;  // IPFIX: an enterprise number follows
constexpr int64_t kNtpEpochOffsetSeconds = 2208988800;  // 1900-01-01 to 1970-01-01
// Times past 9999-12-31 are treated as absent (and keep the arithmetic far
// from int64 overflow).
constexpr uint64_t kTimeMsMax = 253402300799999;
constexpr int64_t kUsPerMs = 1000;
constexpr int64_t kUsPerSecond = 1000000;
static_assert(kV5HeaderBytes + kV5RecordsMax * kV5RecordBytes <= kDatagramBytesMax);
static_assert(kTimeMsMax < static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / kUsPerMs));

// Big-endian counterpart of util::Reader: every read that finds fewer bytes
// than it needs returns false and consumes nothing.
class BeReader {
 public:
  explicit BeReader(std::span<const uint8_t> in) : in_(in) {}
  size_t remaining() const { return in_.size(); }
  // An unsigned integer of `n` bytes (0..8), most significant first.
  bool Uint(size_t n, uint64_t* v) {
    if (n > 8 || in_.size() < n) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) x = (x << 8) | in_[i];
    in_ = in_.subspan(n);
    *v = x;
    return true;
  }
  bool U8(uint8_t* v) { return Narrow(1, v); }
  bool U16(uint16_t* v) { return Narrow(2, v); }
  bool U32(uint32_t* v) { return Narrow(4, v); }
  bool Bytes(size_t n, std::span<const uint8_t>* out) {
    if (in_.size() < n) return false;
    *out = in_.first(n);
    in_ = in_.subspan(n);
    return true;
  }

 private:
  template <typename T>
  bool Narrow(size_t n, T* v) {
    uint64_t x = 0;
    if (!Uint(n, &x)) return false;
    *v = static_cast<T>(x);
    return true;
  }
  std::span<const uint8_t> in_;
};

uint64_t BeValue(std::span<const uint8_t> b) {
  uint64_t x = 0;
  for (uint8_t c : b) x = (x << 8) | c;
  return x;
}

std::string Ipv4Text(std::span<const uint8_t> a) {
  char buf[16];
  char* o = buf;
  for (size_t i = 0; i < 4; ++i) {
    if (i > 0) *o++ = '.';
    unsigned v = a[i];
    if (v >= 100) *o++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *o++ = static_cast<char>('0' + v / 10 % 10);
    *o++ = static_cast<char>('0' + v % 10);
  }
  return std::string(buf, o);
}

std::string Ipv6Text(std::span<const uint8_t> a) {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, a.data(), buf, sizeof buf) == nullptr) return "";
  return buf;
}

// What a field of a template means to us. kIgnore: carried but not mapped.
enum class Slot : uint8_t {
  kIgnore, kSrc4, kDst4, kSrc6, kDst6, kSrcPort, kDstPort, kProtocol,
  kOctets, kOctetsTotal, kPackets, kPacketsTotal, kFirstUptime, kLastUptime,
  kStartSec, kEndSec, kStartMs, kEndMs, kStartUs, kEndUs, kStartNs, kEndNs, kInitMs,
  kCount
};

struct SlotSpec {
  Slot slot;
  uint16_t min_bytes;  // the sizes the RFCs allow (reduced-size encoding for integers)
  uint16_t max_bytes;
};

// Information element ids (IANA IPFIX registry; v9 shares 1..127 and
// exporters use the IPFIX numbers above that in v9 too).
SlotSpec MapField(uint16_t id) {
  switch (id) {
    case 8: return {Slot::kSrc4, 4, 4};            // sourceIPv4Address
    case 12: return {Slot::kDst4, 4, 4};           // destinationIPv4Address
    case 27: return {Slot::kSrc6, 16, 16};         // sourceIPv6Address
    case 28: return {Slot::kDst6, 16, 16};         // destinationIPv6Address
    case 7: return {Slot::kSrcPort, 1, 2};         // sourceTransportPort
    case 11: return {Slot::kDstPort, 1, 2};        // destinationTransportPort
    case 4: return {Slot::kProtocol, 1, 1};        // protocolIdentifier
    case 1: return {Slot::kOctets, 1, 8};          // octetDeltaCount
    case 85: return {Slot::kOctetsTotal, 1, 8};    // octetTotalCount
    case 2: return {Slot::kPackets, 1, 8};         // packetDeltaCount
    case 86: return {Slot::kPacketsTotal, 1, 8};   // packetTotalCount
    case 22: return {Slot::kFirstUptime, 1, 4};    // FIRST_SWITCHED / flowStartSysUpTime
    case 21: return {Slot::kLastUptime, 1, 4};     // LAST_SWITCHED / flowEndSysUpTime
    case 150: return {Slot::kStartSec, 4, 4};      // flowStartSeconds
    case 151: return {Slot::kEndSec, 4, 4};        // flowEndSeconds
    case 152: return {Slot::kStartMs, 8, 8};       // flowStartMilliseconds
    case 153: return {Slot::kEndMs, 8, 8};         // flowEndMilliseconds
    case 154: return {Slot::kStartUs, 8, 8};       // flowStartMicroseconds (NTP format)
    case 155: return {Slot::kEndUs, 8, 8};         // flowEndMicroseconds
    case 156: return {Slot::kStartNs, 8, 8};       // flowStartNanoseconds (NTP format)
    case 157: return {Slot::kEndNs, 8, 8};         // flowEndNanoseconds
    case 160: return {Slot::kInitMs, 8, 8};        // systemInitTimeMilliseconds
    default: return {Slot::kIgnore, 0, kVariableLength};
  }
}

// ---------------------------------------------------------------------------
// Templates

struct Field {
  uint16_t length = 0;  // kVariableLength (IPFIX only): in the record
  Slot slot = Slot::kIgnore;
  bool operator==(const Field&) const = default;
};

struct Template {
  std::vector<Field> fields;
  size_t min_record_bytes = 0;  // fixed lengths + 1 per variable-length field
  bool options = false;         // options template: records are never flows
  bool flow = false;            // has an address field: records become FlowRecords
  bool operator==(const Template&) const = default;
};

struct TemplateKey {
  std::string exporter;
  uint16_t version = 0;  // 9 or 10: the two never share templates
  uint32_t domain = 0;   // v9 source id / IPFIX observation domain id
  uint16_t id = 0;
  auto operator<=>(const TemplateKey&) const = default;
};

// Reads `count` field specifiers into `t`. Checks each mapped field's size
// against what its type allows and the record size against a datagram. In
// options templates only systemInitTimeMilliseconds is mapped, never in the
// first `scope_fields` (v9 scope types are another numbering).
Status ParseFields(BeReader* r, size_t count, bool ipfix, size_t scope_fields, Template* t) {
  for (size_t i = 0; i < count; ++i) {
    uint16_t id = 0, length = 0;
    if (!r->U16(&id) || !r->U16(&length)) {
      return Status::Error("field " + std::to_string(i) + " of " + std::to_string(count) +
                           " overruns the set");
    }
    bool enterprise = ipfix && (id & kEnterpriseBit) != 0;
    if (enterprise) {
      uint32_t pen = 0;
      if (!r->U32(&pen)) return Status::Error("enterprise number overruns the set");
    }
    bool variable = ipfix && length == kVariableLength;
    SlotSpec spec = MapField(id);
    if (enterprise || (t->options && (i < scope_fields || spec.slot != Slot::kInitMs))) {
      spec = SlotSpec{Slot::kIgnore, 0, kVariableLength};
    }
    if (spec.slot != Slot::kIgnore && (variable || length < spec.min_bytes || length > spec.max_bytes)) {
      return Status::Error("field type " + std::to_string(id) + " has impossible length " +
                           std::to_string(length));
    }
    t->fields.push_back({length, spec.slot});
    t->min_record_bytes += variable ? 1 : length;
    if (spec.slot >= Slot::kSrc4 && spec.slot <= Slot::kDst6) t->flow = !t->options;
  }
  if (t->min_record_bytes == 0) return Status::Error("template records would be empty");
  if (t->min_record_bytes > kDatagramBytesMax) {
    return Status::Error("template records of at least " + std::to_string(t->min_record_bytes) +
                         " bytes cannot fit a datagram");
  }
  return Status::Ok();
}

// The templates of all exporters, least recently defined first.
class TemplateTable {
 public:
  enum class Put { kAdded, kRefreshed, kReplaced };

  const Template* Find(const TemplateKey& k) const {
    auto it = map_.find(k);
    return it == map_.end() ? nullptr : &it->second.t;
  }
  // Adds or redefines; evicts the oldest while full. Returns what happened.
  Put Insert(const TemplateKey& k, Template t, size_t max, uint64_t* evicted) {
    auto it = map_.find(k);
    if (it != map_.end()) {
      order_.splice(order_.end(), order_, it->second.age);  // now the youngest
      if (it->second.t == t) return Put::kRefreshed;
      it->second.t = std::move(t);
      return Put::kReplaced;
    }
    while (!map_.empty() && map_.size() >= max) {
      map_.erase(order_.front());
      order_.pop_front();
      ++*evicted;
    }
    order_.push_back(k);
    map_.emplace(k, Entry{std::move(t), std::prev(order_.end())});
    return Put::kAdded;
  }
  // Removes one template; returns how many were removed (0 or 1).
  size_t Erase(const TemplateKey& k) {
    auto it = map_.find(k);
    if (it == map_.end()) return 0;
    order_.erase(it->second.age);
    map_.erase(it);
    return 1;
  }
  // Removes every data (or options) template of one exporter's domain.
  size_t EraseAll(const TemplateKey& domain_key, bool options) {
    TemplateKey lo = domain_key;
    lo.id = 0;
    size_t n = 0;
    for (auto it = map_.lower_bound(lo); it != map_.end() && it->first.exporter == lo.exporter &&
                                         it->first.version == lo.version &&
                                         it->first.domain == lo.domain;) {
      if (it->second.t.options != options) {
        ++it;
        continue;
      }
      order_.erase(it->second.age);
      it = map_.erase(it);
      ++n;
    }
    return n;
  }
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    Template t;
    std::list<TemplateKey>::iterator age;
  };
  std::map<TemplateKey, Entry> map_;
  std::list<TemplateKey> order_;  // oldest first
};

// Per-datagram context.
struct Header {
  std::string_view exporter;
  uint16_t version = 0;
  uint32_t domain = 0;
  int64_t export_us = 0;   // header export time
  uint32_t uptime_ms = 0;  // v5/v9 header sysUptime
  int64_t receive_us = 0;
};

// A flow's time given as sysUptime milliseconds, relative to the header's
// (export time, sysUptime) pair. The signed 32-bit difference handles the
// 49.7-day wrap and a record stamped slightly after the header.
int64_t FromUptime(const Header& h, uint32_t t_ms) {
  return h.export_us - static_cast<int64_t>(static_cast<int32_t>(h.uptime_ms - t_ms)) * kUsPerMs;
}

std::optional<int64_t> FromMs(uint64_t ms) {
  if (ms > kTimeMsMax) return std::nullopt;
  return static_cast<int64_t>(ms) * kUsPerMs;
}

std::optional<int64_t> FromNtp(uint64_t ntp) {
  int64_t seconds = static_cast<int64_t>(ntp >> 32) - kNtpEpochOffsetSeconds;
  uint64_t frac_us = ((ntp & 0xffffffffu) * static_cast<uint64_t>(kUsPerSecond)) >> 32;
  return seconds * kUsPerSecond + static_cast<int64_t>(frac_us);
}

// The values of one data record, by slot.
struct Values {
  std::array<std::span<const uint8_t>, static_cast<size_t>(Slot::kCount)> raw{};
  bool Has(Slot s) const { return raw[static_cast<size_t>(s)].data() != nullptr; }
  std::span<const uint8_t> Raw(Slot s) const { return raw[static_cast<size_t>(s)]; }
  uint64_t Num(Slot s) const { return BeValue(Raw(s)); }
};

// Reads one record of `t`; false if it overruns.
bool ReadRecord(const Template& t, BeReader* r, Values* v) {
  for (const Field& f : t.fields) {
    size_t n = f.length;
    if (f.length == kVariableLength) {
      uint8_t short_len = 0;
      if (!r->U8(&short_len)) return false;
      n = short_len;
      if (short_len == 255) {
        uint16_t long_len = 0;
        if (!r->U16(&long_len)) return false;
        n = long_len;
      }
    }
    std::span<const uint8_t> b;
    if (!r->Bytes(n, &b)) return false;
    if (f.slot != Slot::kIgnore) v->raw[static_cast<size_t>(f.slot)] = b;
  }
  return true;
}

// A data set waiting for its template (a copy of the set body).
struct PendingSet {
  TemplateKey key;
  int64_t export_us = 0;
  uint32_t uptime_ms = 0;
  int64_t receive_us = 0;
  std::vector<uint8_t> body;
};

}  // namespace

class FlowDecoder::Impl {
 public:
  explicit Impl(FlowDecoderLimits limits) : limits_(limits) {}

  Status Decode(std::span<const uint8_t> d, std::string_view exporter, int64_t receive_us,
                std::vector<store::FlowRecord>* out) {
    ++counters_.datagrams;
    Status st = DecodeDatagram(d, exporter, receive_us, out);
    if (!st.ok()) ++counters_.datagrams_rejected;
    return st;
  }

  FlowDecoderCounters counters_;
  std::string last_skip_reason_;
  TemplateTable templates_;
  std::deque<PendingSet> pending_;

 private:
  Status DecodeDatagram(std::span<const uint8_t> d, std::string_view exporter, int64_t receive_us,
                        std::vector<store::FlowRecord>* out);
  Status DecodeV5(std::span<const uint8_t> d, Header h, std::vector<store::FlowRecord>* out);
  Status DecodeV9(std::span<const uint8_t> d, Header h, std::vector<store::FlowRecord>* out);
  Status DecodeIpfix(std::span<const uint8_t> d, Header h, std::vector<store::FlowRecord>* out);
  Status CheckFraming(std::span<const uint8_t> sets, size_t offset) const;
  void ApplySets(std::span<const uint8_t> sets, const Header& h,
                 std::vector<store::FlowRecord>* out, uint64_t* records, bool* countable);
  bool ApplyTemplateSet(uint16_t set_id, std::span<const uint8_t> body, const Header& h,
                        std::vector<store::FlowRecord>* out, uint64_t* records);
  Status ParseTemplateRecord(BeReader* r, bool ipfix, bool options, uint16_t* id,
                             std::optional<Template>* t) const;
  bool ApplyDataSet(uint16_t set_id, const Template& t, std::span<const uint8_t> body,
                    const Header& h, std::vector<store::FlowRecord>* out, uint64_t* records);
  store::FlowRecord MakeFlow(const Values& v, const Header& h);
  void SetTimes(const Values& v, const Header& h, store::FlowRecord* f);
  std::optional<int64_t> InitTimeMs(const Values& v, const Header& h) const;
  void Buffer(uint16_t set_id, std::span<const uint8_t> body, const Header& h);
  void DecodePending(const TemplateKey& key, const Template& t,
                     std::vector<store::FlowRecord>* out);
  void Skip(std::string reason) {
    ++counters_.sets_skipped;
    last_skip_reason_ = std::move(reason);
  }

  FlowDecoderLimits limits_;
  size_t pending_bytes_ = 0;
  // systemInitTimeMilliseconds from IPFIX options data, per (exporter,
  // domain); at most templates_max entries (cleared when full).
  std::map<std::pair<std::string, uint32_t>, uint64_t> init_time_ms_;
};

Status FlowDecoder::Impl::DecodeDatagram(std::span<const uint8_t> d, std::string_view exporter,
                                         int64_t receive_us, std::vector<store::FlowRecord>* out) {
  if (d.size() < 2) {
    return Status::Error("netflow: datagram of " + std::to_string(d.size()) +
                         " bytes has no version");
  }
  if (d.size() > kDatagramBytesMax) {
    return Status::Error("netflow: datagram of " + std::to_string(d.size()) + " bytes is too long");
  }
  Header h;
  h.exporter = exporter;
  h.receive_us = receive_us;
  h.version = static_cast<uint16_t>(d[0] << 8 | d[1]);
  switch (h.version) {
    case 5: return DecodeV5(d, h, out);
    case 9: return DecodeV9(d, h, out);
    case 10: return DecodeIpfix(d, h, out);
    default: return Status::Error("netflow: unsupported version " + std::to_string(h.version));
  }
}

// v5: fixed header and 48-byte records; the datagram is exactly both.
Status FlowDecoder::Impl::DecodeV5(std::span<const uint8_t> d, Header h,
                                   std::vector<store::FlowRecord>* out) {
  if (d.size() < kV5HeaderBytes) {
    return Status::Error("netflow v5: datagram of " + std::to_string(d.size()) +
                         " bytes is shorter than the 24-byte header");
  }
  BeReader r(d.subspan(2));
  uint16_t count = 0;
  uint32_t secs = 0, nsecs = 0;
  (void)(r.U16(&count) && r.U32(&h.uptime_ms) && r.U32(&secs) && r.U32(&nsecs));
  if (count == 0 || count > kV5RecordsMax) {
    return Status::Error("netflow v5: record count " + std::to_string(count) + " not in 1..30");
  }
  if (d.size() != kV5HeaderBytes + count * kV5RecordBytes) {
    return Status::Error("netflow v5: datagram of " + std::to_string(d.size()) +
                         " bytes does not match record count " + std::to_string(count) + " (" +
                         std::to_string(kV5HeaderBytes + count * kV5RecordBytes) + " expected)");
  }
  if (nsecs >= 1000000000u) {
    return Status::Error("netflow v5: unix_nsecs " + std::to_string(nsecs) + " >= 10^9");
  }
  h.export_us = int64_t{secs} * kUsPerSecond + nsecs / 1000;
  for (size_t i = 0; i < count; ++i) {
    std::span<const uint8_t> rec = d.subspan(kV5HeaderBytes + i * kV5RecordBytes, kV5RecordBytes);
    store::FlowRecord f;
    f.src = Ipv4Text(rec.subspan(0, 4));
    f.dst = Ipv4Text(rec.subspan(4, 4));
    f.packets = BeValue(rec.subspan(16, 4));
    f.bytes = BeValue(rec.subspan(20, 4));
    f.start_us = FromUptime(h, static_cast<uint32_t>(BeValue(rec.subspan(24, 4))));
    f.end_us = FromUptime(h, static_cast<uint32_t>(BeValue(rec.subspan(28, 4))));
    f.src_port = static_cast<uint16_t>(BeValue(rec.subspan(32, 2)));
    f.dst_port = static_cast<uint16_t>(BeValue(rec.subspan(34, 2)));
    f.protocol = rec[38];
    f.receive_time_us = h.receive_us;
    f.exporter = std::string(h.exporter);
    f.version = 5;
    out->push_back(std::move(f));
  }
  counters_.flows += count;
  return Status::Ok();
}

Status FlowDecoder::Impl::DecodeV9(std::span<const uint8_t> d, Header h,
                                   std::vector<store::FlowRecord>* out) {
  if (d.size() < kV9HeaderBytes) {
    return Status::Error("netflow v9: datagram of " + std::to_string(d.size()) +
                         " bytes is shorter than the 20-byte header");
  }
  BeReader r(d.subspan(2));
  uint16_t count = 0;
  uint32_t secs = 0, sequence = 0;
  (void)(r.U16(&count) && r.U32(&h.uptime_ms) && r.U32(&secs) && r.U32(&sequence) &&
         r.U32(&h.domain));
  h.export_us = int64_t{secs} * kUsPerSecond;
  std::span<const uint8_t> sets = d.subspan(kV9HeaderBytes);
  TANDEM_RETURN_IF_ERROR(CheckFraming(sets, kV9HeaderBytes).Prefix("netflow v9: "));
  uint64_t records = 0;
  bool countable = true;
  ApplySets(sets, h, out, &records, &countable);
  // Exporters disagree on what `count` counts (softflowd counts data records
  // only), and records of unknown templates cannot be counted: never fatal.
  if (countable && records != count) ++counters_.v9_count_mismatch;
  return Status::Ok();
}

Status FlowDecoder::Impl::DecodeIpfix(std::span<const uint8_t> d, Header h,
                                      std::vector<store::FlowRecord>* out) {
  if (d.size() < kIpfixHeaderBytes) {
    return Status::Error("ipfix: datagram of " + std::to_string(d.size()) +
                         " bytes is shorter than the 16-byte header");
  }
  BeReader r(d.subspan(2));
  uint16_t length = 0;
  uint32_t secs = 0, sequence = 0;
  (void)(r.U16(&length) && r.U32(&secs) && r.U32(&sequence) && r.U32(&h.domain));
  if (length != d.size()) {
    return Status::Error("ipfix: message length " + std::to_string(length) +
                         " != datagram length " + std::to_string(d.size()));
  }
  h.export_us = int64_t{secs} * kUsPerSecond;
  std::span<const uint8_t> sets = d.subspan(kIpfixHeaderBytes);
  TANDEM_RETURN_IF_ERROR(CheckFraming(sets, kIpfixHeaderBytes).Prefix("ipfix: "));
  uint64_t records = 0;
  bool countable = true;
  ApplySets(sets, h, out, &records, &countable);
  return Status::Ok();
}

// Every set header fits, every set length is >= 4 and within the datagram,
// and the sets end exactly at its end.
Status FlowDecoder::Impl::CheckFraming(std::span<const uint8_t> sets, size_t offset) const {
  size_t off = 0;
  while (off < sets.size()) {
    size_t left = sets.size() - off;
    if (left < kSetHeaderBytes) {
      return Status::Error(std::to_string(left) + " trailing bytes at offset " +
                           std::to_string(offset + off) + " after the last set");
    }
    size_t len = BeValue(sets.subspan(off + 2, 2));
    if (len < kSetHeaderBytes) {
      return Status::Error("set at offset " + std::to_string(offset + off) + " has length " +
                           std::to_string(len) + " (< 4)");
    }
    if (len > left) {
      return Status::Error("set at offset " + std::to_string(offset + off) + " has length " +
                           std::to_string(len) + " but only " + std::to_string(left) +
                           " bytes are left");
    }
    off += len;
  }
  return Status::Ok();
}

void FlowDecoder::Impl::ApplySets(std::span<const uint8_t> sets, const Header& h,
                                  std::vector<store::FlowRecord>* out, uint64_t* records,
                                  bool* countable) {
  bool ipfix = h.version == 10;
  uint16_t template_set = ipfix ? kIpfixTemplateSet : kV9TemplateSet;
  uint16_t options_set = ipfix ? kIpfixOptionsTemplateSet : kV9OptionsTemplateSet;
  size_t off = 0;
  while (off < sets.size()) {  // framing checked: every header and length fits
    uint16_t id = static_cast<uint16_t>(BeValue(sets.subspan(off, 2)));
    size_t len = BeValue(sets.subspan(off + 2, 2));
    std::span<const uint8_t> body = sets.subspan(off + kSetHeaderBytes, len - kSetHeaderBytes);
    off += len;
    bool ok = true;
    if (id == template_set || id == options_set) {
      ok = ApplyTemplateSet(id, body, h, out, records);
    } else if (id >= kFirstDataSet) {
      TemplateKey key{std::string(h.exporter), h.version, h.domain, id};
      if (const Template* t = templates_.Find(key)) {
        ok = ApplyDataSet(id, *t, body, h, out, records);
      } else {
        ++counters_.sets_unknown_template;
        Buffer(id, body, h);
        *countable = false;
      }
    } else {
      Skip("set id " + std::to_string(id) + " is reserved");
      ok = false;
    }
    if (!ok) *countable = false;
  }
}

// Parses one template (or options template) record. A withdrawal (IPFIX,
// field count 0) leaves *t empty.
Status FlowDecoder::Impl::ParseTemplateRecord(BeReader* r, bool ipfix, bool options, uint16_t* id,
                                              std::optional<Template>* t) const {
  uint16_t a = 0, b = 0;
  if (!r->U16(id) || !r->U16(&a)) return Status::Error("template header overruns the set");
  size_t fields = a;
  size_t scope_fields = 0;
  if (ipfix && a == 0) return Status::Ok();  // withdrawal
  if (options && !ipfix) {  // v9: scope length, option length, both in bytes
    if (!r->U16(&b)) return Status::Error("options template header overruns the set");
    if (a % 4 != 0 || b % 4 != 0) {
      return Status::Error("options template scope/option lengths " + std::to_string(a) + "/" +
                           std::to_string(b) + " are not multiples of 4");
    }
    scope_fields = a / 4;
    fields = (size_t{a} + b) / 4;
  } else if (options) {  // IPFIX: field count, scope field count
    if (!r->U16(&b)) return Status::Error("options template header overruns the set");
    scope_fields = b;
    if (scope_fields == 0 || scope_fields > fields) {
      return Status::Error("options template scope field count " + std::to_string(b) +
                           " not in 1.." + std::to_string(fields));
    }
  }
  if (*id < kFirstDataSet) return Status::Error("template id " + std::to_string(*id) + " < 256");
  if (fields == 0) return Status::Error("template " + std::to_string(*id) + " has no fields");
  if (fields > limits_.template_fields_max) {
    return Status::Error("template " + std::to_string(*id) + " has " + std::to_string(fields) +
                         " fields (max " + std::to_string(limits_.template_fields_max) + ")");
  }
  t->emplace();
  (*t)->options = options;
  return ParseFields(r, fields, ipfix, scope_fields, &**t).Prefix("template " + std::to_string(*id) + ": ");
}

// Parses every record of a template set first; applies them only if all are
// good (per-set atomicity). Returns false if the set was skipped.
bool FlowDecoder::Impl::ApplyTemplateSet(uint16_t set_id, std::span<const uint8_t> body,
                                         const Header& h, std::vector<store::FlowRecord>* out,
                                         uint64_t* records) {
  bool ipfix = h.version == 10;
  bool options = set_id == (ipfix ? kIpfixOptionsTemplateSet : kV9OptionsTemplateSet);
  size_t header_bytes = options ? 6 : 4;  // shorter remainders are padding
  std::vector<std::pair<uint16_t, std::optional<Template>>> parsed;
  BeReader r(body);
  while (r.remaining() >= header_bytes || (ipfix && r.remaining() >= 4)) {
    uint16_t id = 0;
    std::optional<Template> t;
    Status st = ParseTemplateRecord(&r, ipfix, options, &id, &t);
    if (st.ok() && !t && id != set_id && id < kFirstDataSet) {
      st = Status::Error("withdrawal of template id " + std::to_string(id));
    }
    if (!st.ok()) {
      Skip((ipfix ? "ipfix: " : "netflow v9: ") + std::string(options ? "options " : "") +
           "template set: " + st.message());
      return false;
    }
    parsed.emplace_back(id, std::move(t));
  }
  for (auto& [id, t] : parsed) {
    ++*records;
    TemplateKey key{std::string(h.exporter), h.version, h.domain, id};
    if (!t) {  // IPFIX withdrawal: of one template, or all of the set's kind
      counters_.templates_withdrawn +=
          id == set_id ? templates_.EraseAll(key, options) : templates_.Erase(key);
      continue;
    }
    if (options) ++counters_.options_templates;
    switch (templates_.Insert(key, *t, limits_.templates_max, &counters_.templates_evicted)) {
      case TemplateTable::Put::kAdded: ++counters_.templates_added; break;
      case TemplateTable::Put::kRefreshed: ++counters_.templates_refreshed; break;
      case TemplateTable::Put::kReplaced: ++counters_.templates_replaced; break;
    }
    DecodePending(key, *t, out);
  }
  return true;
}

// Decodes every record of a data set; appends the flows only if all records
// fit (per-set atomicity). Remainders shorter than a record are padding.
bool FlowDecoder::Impl::ApplyDataSet(uint16_t set_id, const Template& t,
                                     std::span<const uint8_t> body, const Header& h,
                                     std::vector<store::FlowRecord>* out, uint64_t* records) {
  std::vector<store::FlowRecord> flows;
  std::optional<uint64_t> init_ms;
  uint64_t options = 0, not_flow = 0, n = 0;
  BeReader r(body);
  while (r.remaining() >= t.min_record_bytes) {
    Values v;
    if (!ReadRecord(t, &r, &v)) {
      Skip((h.version == 10 ? "ipfix: " : "netflow v9: ") + std::string("data set ") +
           std::to_string(set_id) + ": record " + std::to_string(n) + " overruns the set");
      return false;
    }
    ++n;
    if (t.options) {
      ++options;
      if (v.Has(Slot::kInitMs)) init_ms = v.Num(Slot::kInitMs);
    } else if (!t.flow) {
      ++not_flow;
    } else {
      flows.push_back(MakeFlow(v, h));
    }
  }
  if (init_ms && h.version == 10) {
    auto key = std::make_pair(std::string(h.exporter), h.domain);
    if (init_time_ms_.size() >= limits_.templates_max && !init_time_ms_.contains(key)) {
      init_time_ms_.clear();
    }
    init_time_ms_[key] = *init_ms;
  }
  *records += n;
  counters_.options_records += options;
  counters_.records_not_flow += not_flow;
  counters_.flows += flows.size();
  out->insert(out->end(), std::make_move_iterator(flows.begin()),
              std::make_move_iterator(flows.end()));
  return true;
}

store::FlowRecord FlowDecoder::Impl::MakeFlow(const Values& v, const Header& h) {
  store::FlowRecord f;
  if (v.Has(Slot::kSrc4)) {
    f.src = Ipv4Text(v.Raw(Slot::kSrc4));
  } else if (v.Has(Slot::kSrc6)) {
    f.src = Ipv6Text(v.Raw(Slot::kSrc6));
  }
  if (v.Has(Slot::kDst4)) {
    f.dst = Ipv4Text(v.Raw(Slot::kDst4));
  } else if (v.Has(Slot::kDst6)) {
    f.dst = Ipv6Text(v.Raw(Slot::kDst6));
  }
  f.src_port = static_cast<uint16_t>(v.Num(Slot::kSrcPort));
  f.dst_port = static_cast<uint16_t>(v.Num(Slot::kDstPort));
  f.protocol = static_cast<uint8_t>(v.Num(Slot::kProtocol));
  f.bytes = v.Has(Slot::kOctets) ? v.Num(Slot::kOctets) : v.Num(Slot::kOctetsTotal);
  f.packets = v.Has(Slot::kPackets) ? v.Num(Slot::kPackets) : v.Num(Slot::kPacketsTotal);
  SetTimes(v, h, &f);
  f.receive_time_us = h.receive_us;
  f.exporter = std::string(h.exporter);
  f.version = h.version;
  return f;
}

std::optional<int64_t> FlowDecoder::Impl::InitTimeMs(const Values& v, const Header& h) const {
  uint64_t ms = 0;
  if (v.Has(Slot::kInitMs)) {
    ms = v.Num(Slot::kInitMs);
  } else {
    auto it = init_time_ms_.find(std::make_pair(std::string(h.exporter), h.domain));
    if (it == init_time_ms_.end()) return std::nullopt;
    ms = it->second;
  }
  if (ms > kTimeMsMax) return std::nullopt;
  return static_cast<int64_t>(ms);
}

// Start and end, from the most precise absolute fields present, else from
// sysUptime-relative ones; one missing copies the other; none: export time.
void FlowDecoder::Impl::SetTimes(const Values& v, const Header& h, store::FlowRecord* f) {
  auto pick = [&](Slot ns, Slot us, Slot ms, Slot sec, Slot up) -> std::optional<int64_t> {
    if (v.Has(ns)) return FromNtp(v.Num(ns));
    if (v.Has(us)) return FromNtp(v.Num(us));
    if (v.Has(ms)) return FromMs(v.Num(ms));
    if (v.Has(sec)) return static_cast<int64_t>(v.Num(sec)) * kUsPerSecond;
    if (!v.Has(up)) return std::nullopt;
    uint32_t t_ms = static_cast<uint32_t>(v.Num(up));
    if (h.version == 9) return FromUptime(h, t_ms);
    // IPFIX has no sysUptime in the header: derive it from the exporter's
    // systemInitTimeMilliseconds, then resolve the 32-bit field as for v9
    // (an exporter up for more than 49.7 days wraps it; softflowd stamps
    // flows seen before it started as small negative numbers).
    std::optional<int64_t> init = InitTimeMs(v, h);
    if (!init) return std::nullopt;
    Header with_uptime = h;  // export_us is whole seconds: exact in ms
    with_uptime.uptime_ms = static_cast<uint32_t>(h.export_us / kUsPerMs - *init);
    return FromUptime(with_uptime, t_ms);
  };
  std::optional<int64_t> start =
      pick(Slot::kStartNs, Slot::kStartUs, Slot::kStartMs, Slot::kStartSec, Slot::kFirstUptime);
  std::optional<int64_t> end =
      pick(Slot::kEndNs, Slot::kEndUs, Slot::kEndMs, Slot::kEndSec, Slot::kLastUptime);
  if (!start && !end) {
    ++counters_.times_unknown;
    start = end = h.export_us;
  }
  f->start_us = start ? *start : *end;
  f->end_us = end ? *end : *start;
}

void FlowDecoder::Impl::Buffer(uint16_t set_id, std::span<const uint8_t> body, const Header& h) {
  if (limits_.pending_sets_max == 0 || body.size() > limits_.pending_bytes_max) {
    ++counters_.pending_sets_dropped;
    return;
  }
  PendingSet p;
  p.key = TemplateKey{std::string(h.exporter), h.version, h.domain, set_id};
  p.export_us = h.export_us;
  p.uptime_ms = h.uptime_ms;
  p.receive_us = h.receive_us;
  p.body.assign(body.begin(), body.end());
  pending_bytes_ += p.body.size();
  pending_.push_back(std::move(p));
  while (pending_.size() > limits_.pending_sets_max || pending_bytes_ > limits_.pending_bytes_max) {
    pending_bytes_ -= pending_.front().body.size();
    pending_.pop_front();
    ++counters_.pending_sets_dropped;
  }
}

void FlowDecoder::Impl::DecodePending(const TemplateKey& key, const Template& t,
                                      std::vector<store::FlowRecord>* out) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->key != key) {
      ++it;
      continue;
    }
    Header h;
    h.exporter = it->key.exporter;
    h.version = it->key.version;
    h.domain = it->key.domain;
    h.export_us = it->export_us;
    h.uptime_ms = it->uptime_ms;
    h.receive_us = it->receive_us;
    uint64_t records = 0;
    if (ApplyDataSet(key.id, t, it->body, h, out, &records)) ++counters_.pending_sets_decoded;
    pending_bytes_ -= it->body.size();
    it = pending_.erase(it);
  }
}

// ---------------------------------------------------------------------------

FlowDecoder::FlowDecoder(FlowDecoderLimits limits) : impl_(std::make_unique<Impl>(limits)) {
  TANDEM_CHECK(limits.templates_max > 0);
  TANDEM_CHECK(limits.template_fields_max > 0);
}

FlowDecoder::~FlowDecoder() = default;

Status FlowDecoder::Decode(std::span<const uint8_t> datagram, std::string_view exporter,
                           int64_t receive_time_us, std::vector<store::FlowRecord>* out) {
  TANDEM_CHECK(out != nullptr);
  return impl_->Decode(datagram, exporter, receive_time_us, out);
}

const FlowDecoderCounters& FlowDecoder::counters() const { return impl_->counters_; }
const std::string& FlowDecoder::last_skip_reason() const { return impl_->last_skip_reason_; }
size_t FlowDecoder::template_count() const { return impl_->templates_.size(); }
size_t FlowDecoder::pending_sets() const { return impl_->pending_.size(); }

}  // namespace tandem::collect
