// FlowDecoder tests: byte-exact datagrams from a small encoder below (v5, v9,
// IPFIX), template handling, every malformed case, a random round trip, and
// truncation/mutation robustness. Format notes: docs/formats/netflow.md.
#include "collect/netflow.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace tandem::collect {
namespace {

using store::FlowRecord;
using Bytes = std::vector<uint8_t>;

constexpr int64_t kRecv = 1700000100000000;  // receive time used throughout
constexpr char kExp[] = "192.0.2.1:2055";

// ---------------------------------------------------------------------------
// Encoder

class Be {
 public:
  void U8(uint64_t v) { b.push_back(static_cast<uint8_t>(v)); }
  void U16(uint64_t v) { N(v, 2); }
  void U32(uint64_t v) { N(v, 4); }
  void U64(uint64_t v) { N(v, 8); }
  void N(uint64_t v, size_t n) {
    for (size_t i = n; i-- > 0;) U8(v >> (8 * i));
  }
  void Raw(const Bytes& x) { b.insert(b.end(), x.begin(), x.end()); }
  void Put16(size_t off, uint64_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
  }
  Bytes b;
};

Bytes Addr4(const std::string& s) {
  Bytes a(4);
  EXPECT_EQ(inet_pton(AF_INET, s.c_str(), a.data()), 1) << s;
  return a;
}
Bytes Addr6(const std::string& s) {
  Bytes a(16);
  EXPECT_EQ(inet_pton(AF_INET6, s.c_str(), a.data()), 1) << s;
  return a;
}

struct V5Header {
  uint32_t uptime_ms = 100000;
  uint32_t secs = 1700000000;
  uint32_t nsecs = 500000000;
};

// The 48-byte v5 record; `first`/`last` are sysUptime ms.
void V5Record(Be* e, const FlowRecord& f, uint32_t first, uint32_t last) {
  e->Raw(Addr4(f.src));
  e->Raw(Addr4(f.dst));
  e->U32(0x0a000001);  // nexthop
  e->U16(1);           // input
  e->U16(2);           // output
  e->U32(f.packets);
  e->U32(f.bytes);
  e->U32(first);
  e->U32(last);
  e->U16(f.src_port);
  e->U16(f.dst_port);
  e->U8(0);     // pad1
  e->U8(0x1b);  // tcp_flags
  e->U8(f.protocol);
  e->U8(0);  // tos
  e->U32(0);  // src_as, dst_as
  e->U32(0);  // masks, pad2
}

// v5 datagram whose records' times are given as ages (ms before export).
Bytes V5(const V5Header& h, const std::vector<FlowRecord>& flows, int64_t* export_us = nullptr) {
  Be e;
  e.U16(5);
  e.U16(flows.size());
  e.U32(h.uptime_ms);
  e.U32(h.secs);
  e.U32(h.nsecs);
  e.U32(7);  // flow_sequence
  e.U8(0);
  e.U8(0);
  e.U16(0);
  int64_t exp = int64_t{h.secs} * 1000000 + h.nsecs / 1000;
  if (export_us) *export_us = exp;
  for (const FlowRecord& f : flows) {
    auto age = [&](int64_t t_us) { return static_cast<uint32_t>((exp - t_us) / 1000); };
    V5Record(&e, f, h.uptime_ms - age(f.start_us), h.uptime_ms - age(f.end_us));
  }
  return e.b;
}

struct Spec {
  uint16_t id;
  uint16_t len;  // 65535: variable (IPFIX)
  uint32_t pen = 0;
};

// A v9 or IPFIX message: sets appended in order, count/length patched last.
class Msg {
 public:
  Msg(uint16_t version, uint32_t domain, uint32_t export_secs, uint32_t uptime_ms = 0)
      : version_(version) {
    e_.U16(version);
    e_.U16(0);  // v9 count / IPFIX length, patched
    if (version == 9) e_.U32(uptime_ms);
    e_.U32(export_secs);
    e_.U32(seq_++);
    e_.U32(domain);
  }
  bool ipfix() const { return version_ == 10; }

  Msg& Template(uint16_t id, const std::vector<Spec>& specs, size_t pad = 0) {
    Be s;
    TemplateRecord(&s, id, specs);
    return Set(ipfix() ? 2 : 0, s.b, pad, 1);
  }
  static void TemplateRecord(Be* s, uint16_t id, const std::vector<Spec>& specs) {
    s->U16(id);
    s->U16(specs.size());
    Specs(s, specs);
  }
  static void Specs(Be* s, const std::vector<Spec>& specs) {
    for (const Spec& sp : specs) {
      s->U16(sp.pen ? (sp.id | 0x8000) : sp.id);
      s->U16(sp.len);
      if (sp.pen) s->U32(sp.pen);
    }
  }
  Msg& OptionsTemplate(uint16_t id, const std::vector<Spec>& scope, const std::vector<Spec>& opts) {
    Be s;
    s.U16(id);
    if (ipfix()) {
      s.U16(scope.size() + opts.size());
      s.U16(scope.size());
    } else {
      s.U16(scope.size() * 4);
      s.U16(opts.size() * 4);
    }
    Specs(&s, scope);
    Specs(&s, opts);
    return Set(ipfix() ? 3 : 1, s.b, (4 - s.b.size() % 4) % 4, 1);
  }
  Msg& Withdraw(uint16_t set_id, uint16_t id) {
    Be s;
    s.U16(id);
    s.U16(0);
    return Set(set_id, s.b, 0, 1);
  }
  // A set with `body` then `pad` zero bytes; `records` for the v9 count.
  Msg& Set(uint16_t id, const Bytes& body, size_t pad = 0, size_t records = 0) {
    e_.U16(id);
    e_.U16(4 + body.size() + pad);
    e_.Raw(body);
    for (size_t i = 0; i < pad; ++i) e_.U8(0);
    count_ += records;
    return *this;
  }
  Bytes Finish() {
    Be out = e_;
    out.Put16(2, ipfix() ? out.b.size() : count_);
    return out.b;
  }

 private:
  uint16_t version_;
  uint32_t seq_ = 1;
  size_t count_ = 0;
  Be e_;
};

// Writes `v` as a field of length `len` (variable: 1- or 3-byte length prefix).
void Field(Be* e, uint16_t len, const Bytes& v) {
  if (len == 65535) {
    if (v.size() < 255) {
      e->U8(v.size());
    } else {
      e->U8(255);
      e->U16(v.size());
    }
    e->Raw(v);
  } else {
    EXPECT_EQ(v.size(), len);
    e->Raw(v);
  }
}
Bytes Num(uint64_t v, size_t n) {
  Be e;
  e.N(v, n);
  return e.b;
}
uint64_t NtpFromUs(int64_t us) {
  int64_t secs = us / 1000000 + 2208988800;
  int64_t frac_us = us % 1000000;
  uint64_t frac = ((static_cast<uint64_t>(frac_us) << 32) + 999999) / 1000000;
  return (static_cast<uint64_t>(secs) << 32) | frac;
}

// Time context of a v9/IPFIX message, for the uptime-relative fields.
struct Clock {
  int64_t export_us = 0;   // v9: whole seconds
  uint32_t uptime_ms = 0;  // v9 header
  int64_t init_ms = 0;     // IPFIX systemInitTimeMilliseconds
};

// Encodes `f` as one data record of `specs`; unknown ids get filler bytes.
void Record(Be* e, const std::vector<Spec>& specs, const FlowRecord& f, const Clock& c,
            bool ipfix) {
  for (const Spec& s : specs) {
    size_t w = s.len == 65535 ? 0 : s.len;
    auto up = [&](int64_t t_us) {
      return ipfix ? static_cast<uint64_t>(t_us / 1000 - c.init_ms)
                   : static_cast<uint32_t>(c.uptime_ms - (c.export_us - t_us) / 1000);
    };
    if (s.pen) {
      Field(e, s.len, Bytes(w ? w : 3, 0xee));
      continue;
    }
    switch (s.id) {
      case 8: Field(e, s.len, Addr4(f.src)); break;
      case 12: Field(e, s.len, Addr4(f.dst)); break;
      case 27: Field(e, s.len, Addr6(f.src)); break;
      case 28: Field(e, s.len, Addr6(f.dst)); break;
      case 7: Field(e, s.len, Num(f.src_port, w)); break;
      case 11: Field(e, s.len, Num(f.dst_port, w)); break;
      case 4: Field(e, s.len, Num(f.protocol, w)); break;
      case 1: case 85: Field(e, s.len, Num(f.bytes, w)); break;
      case 2: case 86: Field(e, s.len, Num(f.packets, w)); break;
      case 22: Field(e, s.len, Num(up(f.start_us), w)); break;
      case 21: Field(e, s.len, Num(up(f.end_us), w)); break;
      case 150: Field(e, s.len, Num(f.start_us / 1000000, w)); break;
      case 151: Field(e, s.len, Num(f.end_us / 1000000, w)); break;
      case 152: Field(e, s.len, Num(f.start_us / 1000, w)); break;
      case 153: Field(e, s.len, Num(f.end_us / 1000, w)); break;
      case 154: Field(e, s.len, Num(NtpFromUs(f.start_us), w)); break;
      case 155: Field(e, s.len, Num(NtpFromUs(f.end_us), w)); break;
      case 160: Field(e, s.len, Num(c.init_ms, w)); break;
      default: Field(e, s.len, Bytes(w ? w : 5, 0x5a)); break;  // unmapped filler
    }
  }
}

Bytes Records(const std::vector<Spec>& specs, const std::vector<FlowRecord>& flows,
              const Clock& c, bool ipfix) {
  Be e;
  for (const FlowRecord& f : flows) Record(&e, specs, f, c, ipfix);
  return e.b;
}

FlowRecord Flow(std::string src, std::string dst, uint16_t sp, uint16_t dp, uint8_t proto,
                uint64_t bytes, uint64_t packets, int64_t start_us, int64_t end_us,
                uint16_t version, std::string exporter = kExp) {
  FlowRecord f;
  f.src = std::move(src);
  f.dst = std::move(dst);
  f.src_port = sp;
  f.dst_port = dp;
  f.protocol = proto;
  f.bytes = bytes;
  f.packets = packets;
  f.start_us = start_us;
  f.end_us = end_us;
  f.receive_time_us = kRecv;
  f.exporter = std::move(exporter);
  f.version = version;
  return f;
}

const std::vector<Spec> kV4Specs = {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1},
                                    {1, 4}, {2, 4}, {22, 4}, {21, 4}};

// ---------------------------------------------------------------------------
// v5

TEST(NetflowV5, DecodesHeaderAndRecordsByteExact) {
  int64_t exp = 0;
  FlowRecord a = Flow("198.18.0.1", "198.18.1.2", 1000, 53, 17, 2560, 20, 0, 0, 5);
  FlowRecord b = Flow("10.255.0.200", "203.0.113.9", 44321, 443, 6, 123456, 99, 0, 0, 5);
  V5Header h;
  int64_t export_us = int64_t{h.secs} * 1000000 + 500000;
  a.start_us = export_us - 19000000;  // 19 s before export
  a.end_us = export_us - 1000;
  b.start_us = export_us - 99999000;  // sysUptime 100000: First = 1
  b.end_us = export_us;
  Bytes d = V5(h, {a, b}, &exp);
  ASSERT_EQ(d.size(), 24u + 2 * 48u);
  // Spot-check the encoding itself: version, count, first record's addresses.
  EXPECT_EQ(Bytes(d.begin(), d.begin() + 4), (Bytes{0, 5, 0, 2}));
  EXPECT_EQ(Bytes(d.begin() + 24, d.begin() + 32), (Bytes{198, 18, 0, 1, 198, 18, 1, 2}));
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(d, kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{a, b}));
  EXPECT_EQ(dec.counters().flows, 2u);
}

TEST(NetflowV5, UptimeWrapAndRecordStampedAfterHeader) {
  V5Header h;
  h.uptime_ms = 1000;  // the exporter's uptime wrapped 1 s ago
  int64_t export_us = int64_t{h.secs} * 1000000 + 500000;
  FlowRecord f = Flow("1.2.3.4", "5.6.7.8", 1, 2, 6, 3, 4, export_us - 5000000, export_us + 2000, 5);
  Bytes d = V5(h, {f});
  // First = 1000 - 5000 wraps to 0xFFFFF060; Last = 1002 (after the header).
  EXPECT_EQ(Bytes(d.begin() + 24 + 24, d.begin() + 24 + 32),
            (Bytes{0xff, 0xff, 0xf0, 0x60, 0, 0, 0x03, 0xea}));
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(d, kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], f);
}

// ---------------------------------------------------------------------------
// v9

TEST(NetflowV9, TemplateThenDataWithPaddingAndOptions) {
  Clock c{1700000000LL * 1000000, 50000, 0};
  FlowRecord a = Flow("198.18.0.1", "198.18.0.2", 1234, 80, 6, 1500, 3, c.export_us - 10000000,
                      c.export_us - 2000000, 9);
  FlowRecord b = Flow("198.18.0.3", "198.18.0.4", 5353, 5353, 17, 300, 1, c.export_us - 1000,
                      c.export_us - 1000, 9);
  Msg m(9, 42, 1700000000, c.uptime_ms);
  Be opt;  // one options record: scope "system" (type 1), sampling interval/algorithm
  opt.U32(0);
  opt.U32(100);
  opt.U32(1);
  opt.b.resize(opt.b.size() + 3);  // 3 bytes of padding: shorter than a record
  m.Template(300, kV4Specs, 0)
      .OptionsTemplate(301, {{1, 4}}, {{34, 4}, {35, 4}})
      .Set(301, opt.b, 0, 1);
  Bytes recs = Records(kV4Specs, {a, b}, c, false);  // 2 x 29 bytes
  m.Set(300, recs, 2, 2);                             // padded to 4
  Bytes d = m.Finish();
  EXPECT_EQ(d[0], 0);
  EXPECT_EQ(d[1], 9);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(d, kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{a, b}));
  EXPECT_EQ(dec.counters().templates_added, 2u);
  EXPECT_EQ(dec.counters().options_templates, 1u);
  EXPECT_EQ(dec.counters().sets_skipped, 0u);
  EXPECT_EQ(dec.counters().options_records, 1u);
  EXPECT_EQ(dec.counters().v9_count_mismatch, 0u);
  EXPECT_EQ(dec.template_count(), 2u);
}

TEST(NetflowV9, OptionsDataRecordsAreReadAndNotEmitted) {
  Msg m(9, 1, 1700000000, 1000);
  m.OptionsTemplate(260, {{1, 4}}, {{34, 4}, {35, 1}});
  Be opt;
  opt.U32(1);
  opt.U32(100);
  opt.U8(1);
  opt.U32(1);
  opt.U32(200);
  opt.U8(2);
  m.Set(260, opt.b, 2, 2);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(dec.counters().options_records, 2u);
  EXPECT_EQ(dec.counters().v9_count_mismatch, 0u);
}

TEST(NetflowV9, EightByteCountersAndIpv6AndAbsoluteMilliseconds) {
  std::vector<Spec> specs = {{27, 16}, {28, 16}, {7, 2}, {11, 2}, {4, 1},
                             {1, 8},   {2, 8},   {152, 8}, {153, 8}};
  FlowRecord f = Flow("2001:db8::1", "2001:db8:0:1::ff", 443, 50000, 6, 1ULL << 40,
                      (1ULL << 33) + 5, 1700000000123000, 1700000001456000, 9);
  Msg m(9, 7, 1700000002, 0);
  m.Template(256, specs).Set(256, Records(specs, {f}, {}, false), 0, 1);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], f);
}

TEST(NetflowV9, ReducedSizeCountersAndPorts) {
  std::vector<Spec> specs = {{8, 4}, {12, 4}, {7, 1}, {11, 1}, {4, 1}, {1, 1}, {2, 2}};
  FlowRecord f = Flow("1.1.1.1", "2.2.2.2", 200, 53, 17, 250, 300, 0, 0, 9);
  f.start_us = f.end_us = 1700000000LL * 1000000;  // no times: export time
  Msg m(9, 7, 1700000000, 0);
  m.Template(256, specs).Set(256, Records(specs, {f}, {}, false), 0, 1);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], f);
  EXPECT_EQ(dec.counters().times_unknown, 1u);
}

TEST(NetflowV9, RecordCountMismatchIsCountedNotFatal) {
  Clock c{1700000000LL * 1000000, 50000, 0};
  FlowRecord a = Flow("1.1.1.1", "2.2.2.2", 1, 2, 6, 3, 4, c.export_us, c.export_us, 9);
  Msg m(9, 1, 1700000000, c.uptime_ms);
  m.Template(256, kV4Specs).Set(256, Records(kV4Specs, {a}, c, false), 0, 5);  // says 6
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(dec.counters().v9_count_mismatch, 1u);
}

// ---------------------------------------------------------------------------
// IPFIX

TEST(NetflowIpfix, Ipv6VariableLengthEnterpriseAndLongEscape) {
  std::vector<Spec> specs = {{27, 16}, {28, 16}, {7, 2},        {11, 2},
                             {4, 1},   {82, 65535},             // interfaceName: variable
                             {1, 8},   {2, 8},  {100, 65535, 9}, // enterprise, variable
                             {150, 4}, {151, 4}, {5, 1}};
  FlowRecord f = Flow("2001:2::10", "2001:2::20", 5000, 5001, 17, 99999, 77,
                      1700000000000000, 1700000009000000, 10);
  Be rec;
  for (const Spec& s : specs) {
    switch (s.id) {
      case 82: Field(&rec, s.len, Bytes(300, 'x')); break;  // 255 escape + u16
      case 100: Field(&rec, s.len, Bytes(3, 1)); break;
      default: Record(&rec, {s}, f, {}, true);
    }
  }
  ASSERT_EQ(rec.b[16 + 16 + 2 + 2 + 1], 255);  // the escape byte
  Msg m(10, 99, 1700000010);
  m.Template(1000, specs).Set(1000, rec.b, 3);
  Bytes d = m.Finish();
  EXPECT_EQ(d[2] << 8 | d[3], static_cast<int>(d.size()));
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(d, kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], f);
}

TEST(NetflowIpfix, AllTimeEncodings) {
  int64_t s = 1700000000123456, e = 1700000007654321;
  FlowDecoder dec;
  struct Case {
    std::vector<Spec> time;
    int64_t start, end;
    Clock c;
  } cases[] = {
      {{{150, 4}, {151, 4}}, s / 1000000 * 1000000, e / 1000000 * 1000000, {}},
      {{{152, 8}, {153, 8}}, s / 1000 * 1000, e / 1000 * 1000, {}},
      {{{154, 8}, {155, 8}}, s, e, {}},
      {{{22, 4}, {21, 4}, {160, 8}}, s / 1000 * 1000, e / 1000 * 1000, {0, 0, 1699990000000}},
      {{{153, 8}}, e / 1000 * 1000, e / 1000 * 1000, {}},  // end only: start = end
  };
  uint16_t id = 256;
  for (const Case& k : cases) {
    std::vector<Spec> specs = {{8, 4}, {12, 4}, {4, 1}};
    specs.insert(specs.end(), k.time.begin(), k.time.end());
    FlowRecord f = Flow("9.9.9.9", "8.8.8.8", 0, 0, 1, 0, 0, s, e, 10);
    std::vector<FlowRecord> out;
    Msg m(10, 1, 1700000010);
    m.Template(id, specs).Set(id, Records(specs, {f}, k.c, true));
    ++id;
    ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].start_us, k.start) << "case " << id - 256;
    EXPECT_EQ(out[0].end_us, k.end) << "case " << id - 256;
  }
}

TEST(NetflowIpfix, SystemInitTimeFromOptionsData) {  // how softflowd exports
  std::vector<Spec> specs = {{8, 4}, {12, 4}, {22, 4}, {21, 4}, {1, 4}, {2, 4}};
  Clock c{0, 0, 1700000000000};
  FlowRecord f = Flow("198.18.0.1", "198.18.1.2", 0, 0, 0, 10, 1, 1700000001000000,
                      1700000002000000, 10);
  Msg m(10, 5, 1700000010);
  Be opt;
  opt.U32(1);
  opt.U64(c.init_ms);
  m.Template(1024, specs)
      .OptionsTemplate(256, {{143, 4}}, {{160, 8}})
      .Set(256, opt.b)
      .Set(1024, Records(specs, {f}, c, true));
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], f);
  EXPECT_EQ(dec.counters().options_records, 1u);
  // Without the options data (another domain): the export time is used.
  Msg m2(10, 6, 1700000010);
  m2.Template(1024, specs).Set(1024, Records(specs, {f}, c, true));
  out.clear();
  ASSERT_TRUE(dec.Decode(m2.Finish(), kExp, kRecv, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].start_us, 1700000010000000);
  EXPECT_EQ(dec.counters().times_unknown, 1u);
}

// Regression: softflowd stamps flows seen before it started (reading a pcap)
// as negative flowStartSysUpTime values (wrapped to 32 bits), and a real
// exporter up for more than 49.7 days wraps the field too; both must resolve
// near the export time, not 2^32 ms later.
TEST(NetflowIpfix, SysUpTimeBeforeInitAndWrapped) {
  std::vector<Spec> specs = {{8, 4}, {12, 4}, {22, 4}, {21, 4}, {160, 8}};
  const int64_t export_secs = 1700000010;
  const int64_t wrap_ms = int64_t{1} << 32;
  struct Case {
    int64_t init_ms;
    int64_t start_ms, end_ms;  // absolute
  } cases[] = {
      {export_secs * 1000 - 5000, export_secs * 1000 - 20000, export_secs * 1000 - 15000},
      {export_secs * 1000 - 60LL * 86400 * 1000, export_secs * 1000 - 7000,
       export_secs * 1000 - 1000},  // up 60 days: the fields wrapped once
      {export_secs * 1000 - wrap_ms - 3000, export_secs * 1000 - 4000,
       export_secs * 1000 - 2000},  // start before the wrap, end after it
  };
  for (const Case& k : cases) {
    Be rec;
    rec.Raw(Addr4("10.0.0.1"));
    rec.Raw(Addr4("10.0.0.2"));
    rec.U32(static_cast<uint32_t>(k.start_ms - k.init_ms));
    rec.U32(static_cast<uint32_t>(k.end_ms - k.init_ms));
    rec.U64(static_cast<uint64_t>(k.init_ms));
    Msg m(10, 1, export_secs);
    m.Template(256, specs).Set(256, rec.b);
    FlowDecoder dec;
    std::vector<FlowRecord> out;
    ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].start_us, k.start_ms * 1000) << "init " << k.init_ms;
    EXPECT_EQ(out[0].end_us, k.end_ms * 1000) << "init " << k.init_ms;
  }
}

// ---------------------------------------------------------------------------
// Templates

const std::vector<Spec> kSpecsA = {{8, 4}, {12, 4}, {4, 1}, {1, 4}, {2, 4}};
const std::vector<Spec> kSpecsB = {{12, 4}, {8, 4}, {2, 8}, {1, 8}, {4, 1}, {7, 2}};

FlowRecord Simple(int i, uint16_t version = 10, std::string exporter = kExp) {
  FlowRecord f = Flow("10.0.0." + std::to_string(i), "10.0.1." + std::to_string(i), 0, 0, 6,
                      1000 + i, 10 + i, 1700000010000000, 1700000010000000, version,
                      std::move(exporter));
  return f;
}

Bytes IpfixData(uint32_t domain, uint16_t id, const std::vector<Spec>& specs,
                const std::vector<FlowRecord>& flows) {
  Msg m(10, domain, 1700000010);
  m.Set(id, Records(specs, flows, {}, true));
  return m.Finish();
}
Bytes IpfixTemplate(uint32_t domain, uint16_t id, const std::vector<Spec>& specs) {
  Msg m(10, domain, 1700000010);
  m.Template(id, specs);
  return m.Finish();
}

TEST(NetflowTemplates, RefreshAndRedefinition) {
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.counters().templates_added, 1u);
  EXPECT_EQ(dec.counters().templates_refreshed, 1u);
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(1)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsB), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.counters().templates_replaced, 1u);
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsB, {Simple(2)}), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(1), Simple(2)}));
  EXPECT_EQ(dec.template_count(), 1u);
}

TEST(NetflowTemplates, TwoExportersAndTwoDomainsWithTheSameId) {
  const std::string other = "192.0.2.2:2055";
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsB), other, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(2, 256, kSpecsB), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 3u);
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(1)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(
      dec.Decode(IpfixData(1, 256, kSpecsB, {Simple(2, 10, other)}), other, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(2, 256, kSpecsB, {Simple(3)}), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(1), Simple(2, 10, other), Simple(3)}));
}

TEST(NetflowTemplates, MissingTemplateThenArriving) {
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(1), Simple(2)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(3)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(1, 257, kSpecsA, {Simple(9)}), kExp, kRecv, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(dec.counters().sets_unknown_template, 3u);
  EXPECT_EQ(dec.pending_sets(), 3u);
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(1), Simple(2), Simple(3)}));
  EXPECT_EQ(dec.counters().pending_sets_decoded, 2u);
  EXPECT_EQ(dec.pending_sets(), 1u);  // 257 still waiting
  // Data before its template in the same datagram.
  Msg m(10, 4, 1700000010);
  m.Set(300, Records(kSpecsA, {Simple(4)}, {}, true)).Template(300, kSpecsA);
  out.clear();
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(4)}));
}

TEST(NetflowTemplates, PendingBufferIsBounded) {
  FlowDecoderLimits lim;
  lim.pending_sets_max = 2;
  FlowDecoder dec(lim);
  std::vector<FlowRecord> out;
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(i)}), kExp, kRecv, &out).ok());
  }
  EXPECT_EQ(dec.pending_sets(), 2u);
  EXPECT_EQ(dec.counters().pending_sets_dropped, 2u);
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(3), Simple(4)}));  // newest kept

  lim.pending_sets_max = 0;  // buffering off
  FlowDecoder off(lim);
  ASSERT_TRUE(off.Decode(IpfixData(1, 256, kSpecsA, {Simple(1)}), kExp, kRecv, &out).ok());
  EXPECT_EQ(off.pending_sets(), 0u);
  EXPECT_EQ(off.counters().pending_sets_dropped, 1u);

  // The byte bound: each set body here is 2 records of 17 bytes = 34 bytes.
  lim.pending_sets_max = 100;
  lim.pending_bytes_max = 80;
  FlowDecoder bytes(lim);
  out.clear();
  for (int i = 1; i <= 3; ++i) {
    Bytes d = IpfixData(1, 256, kSpecsA, {Simple(2 * i), Simple(2 * i + 1)});
    ASSERT_TRUE(bytes.Decode(d, kExp, kRecv, &out).ok());
  }
  EXPECT_EQ(bytes.pending_sets(), 2u);  // 3 x 34 > 80: the oldest went
  EXPECT_EQ(bytes.counters().pending_sets_dropped, 1u);
  std::vector<FlowRecord> big;
  for (int i = 0; i < 5; ++i) big.push_back(Simple(i));  // 85 bytes: never buffered
  ASSERT_TRUE(bytes.Decode(IpfixData(1, 256, kSpecsA, big), kExp, kRecv, &out).ok());
  EXPECT_EQ(bytes.pending_sets(), 2u);
  EXPECT_EQ(bytes.counters().pending_sets_dropped, 2u);
  ASSERT_TRUE(bytes.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(4), Simple(5), Simple(6), Simple(7)}));
  EXPECT_EQ(bytes.pending_sets(), 0u);
}

// Options data before its options template is buffered like any data set,
// and the systemInitTime it carries then dates the flows that follow.
TEST(NetflowTemplates, PendingOptionsDataThenTemplate) {
  std::vector<Spec> specs = {{8, 4}, {12, 4}, {22, 4}, {21, 4}};
  Clock c{0, 0, 1700000000000};
  FlowRecord f = Flow("198.18.0.1", "198.18.1.2", 0, 0, 0, 0, 0, 1700000001000000,
                      1700000002000000, 10);
  Be opt;
  opt.U32(5);
  opt.U64(c.init_ms);
  Msg first(10, 5, 1700000010);
  first.Set(257, opt.b);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(first.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.pending_sets(), 1u);
  Msg second(10, 5, 1700000010);
  second.OptionsTemplate(257, {{149, 4}}, {{160, 8}})
      .Template(256, specs)
      .Set(256, Records(specs, {f}, c, true));
  ASSERT_TRUE(dec.Decode(second.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{f}));
  EXPECT_EQ(dec.counters().pending_sets_decoded, 1u);
  EXPECT_EQ(dec.counters().options_records, 1u);
  EXPECT_EQ(dec.counters().times_unknown, 0u);
}

TEST(NetflowTemplates, OldestEvictedAtTheLimit) {
  FlowDecoderLimits lim;
  lim.templates_max = 2;
  FlowDecoder dec(lim);
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 257, kSpecsA), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());  // refresh
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 258, kSpecsA), kExp, kRecv, &out).ok());  // evicts 257
  EXPECT_EQ(dec.template_count(), 2u);
  EXPECT_EQ(dec.counters().templates_evicted, 1u);
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(1)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(1, 257, kSpecsA, {Simple(2)}), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(1, 258, kSpecsA, {Simple(3)}), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(1), Simple(3)}));
  EXPECT_EQ(dec.counters().sets_unknown_template, 1u);
}

TEST(NetflowTemplates, IpfixWithdrawalOfOneAndOfAll) {
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  Msg m(10, 1, 1700000010);
  m.Template(256, kSpecsA).Template(257, kSpecsA).Template(258, kSpecsA);
  m.OptionsTemplate(259, {{143, 4}}, {{160, 8}});
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 4u);
  Msg w1(10, 1, 1700000010);
  w1.Withdraw(2, 256);
  ASSERT_TRUE(dec.Decode(w1.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 3u);
  Msg wall(10, 1, 1700000010);
  wall.Withdraw(2, 2);  // all data templates of the domain; options kept
  ASSERT_TRUE(dec.Decode(wall.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 1u);
  EXPECT_EQ(dec.counters().templates_withdrawn, 3u);
  ASSERT_TRUE(dec.Decode(IpfixData(1, 257, kSpecsA, {Simple(1)}), kExp, kRecv, &out).ok());
  EXPECT_TRUE(out.empty());
  Msg wopt(10, 1, 1700000010);
  wopt.Withdraw(3, 3);
  ASSERT_TRUE(dec.Decode(wopt.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 0u);
}

TEST(NetflowTemplates, V9AndIpfixTemplatesAreSeparate) {
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  Msg m9(9, 1, 1700000010, 0);
  m9.Template(256, kSpecsB);
  ASSERT_TRUE(dec.Decode(m9.Finish(), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixTemplate(1, 256, kSpecsA), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 2u);
  Msg d9(9, 1, 1700000010, 0);
  d9.Set(256, Records(kSpecsB, {Simple(1, 9)}, {}, false));
  ASSERT_TRUE(dec.Decode(d9.Finish(), kExp, kRecv, &out).ok());
  ASSERT_TRUE(dec.Decode(IpfixData(1, 256, kSpecsA, {Simple(2)}), kExp, kRecv, &out).ok());
  EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(1, 9), Simple(2)}));
}

// ---------------------------------------------------------------------------
// Malformed datagrams: rejected whole (error, nothing emitted, templates
// unchanged) ...

Bytes Cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Rejected {
  const char* name;
  Bytes datagram;
  const char* error;  // substring of the message
};

std::vector<Rejected> RejectedCases() {
  V5Header h;
  Bytes v5 = V5(h, {Simple(1, 5), Simple(2, 5)});
  Bytes v5_one = v5;
  v5_one.resize(24 + 48);
  Bytes v5_count0 = v5;
  v5_count0[3] = 0;
  Bytes v5_count31 = v5;
  v5_count31[3] = 31;
  Bytes v5_nsecs = v5;
  v5_nsecs[12] = 0xff;

  Msg good9(9, 1, 1700000010, 0);
  good9.Template(256, kSpecsA).Set(256, Records(kSpecsA, {Simple(1, 9)}, {}, false));
  Bytes g9 = good9.Finish();
  Bytes zero_set = Cat(g9, Bytes{1, 0, 0, 0});           // set length 0
  Bytes short_set = Cat(g9, Bytes{1, 0, 0, 2});          // set length 2
  Bytes overrun = Cat(g9, Bytes{1, 0, 0, 40, 1, 2, 3});  // 40 > 7 left
  Bytes trailing = Cat(g9, Bytes{0, 0});

  Msg good10(10, 1, 1700000010);
  good10.Template(256, kSpecsA).Set(256, Records(kSpecsA, {Simple(1)}, {}, true));
  Bytes g10 = good10.Finish();
  Bytes ipfix_long = Cat(g10, Bytes{0, 0, 0, 0});  // length field not updated
  Bytes ipfix_short = g10;
  ipfix_short.resize(g10.size() - 1);
  Bytes ipfix_len_small = g10;
  ipfix_len_small[2] = 0;
  ipfix_len_small[3] = 8;
  Bytes ipfix_zero_set = Cat(g10, Bytes{1, 0, 0, 0});
  ipfix_zero_set[3] = static_cast<uint8_t>(ipfix_zero_set.size());
  ipfix_zero_set[2] = static_cast<uint8_t>(ipfix_zero_set.size() >> 8);

  return {
      {"empty", {}, "has no version"},
      {"one byte", {0}, "has no version"},
      {"version 7", {0, 7, 0, 0}, "unsupported version 7"},
      {"v5 short header", Bytes(v5.begin(), v5.begin() + 23), "shorter than the 24-byte header"},
      {"v5 count 0", v5_count0, "record count 0"},
      {"v5 count 31", v5_count31, "record count 31"},
      {"v5 record count mismatch", v5_one, "does not match record count 2"},
      {"v5 truncated record", Bytes(v5.begin(), v5.end() - 1), "does not match record count"},
      {"v5 extra byte", Cat(v5, {0}), "does not match record count"},
      {"v5 nsecs", v5_nsecs, "unix_nsecs"},
      {"v9 short header", Bytes(g9.begin(), g9.begin() + 19), "shorter than the 20-byte header"},
      {"v9 zero-length set", zero_set, "has length 0 (< 4)"},
      {"v9 set length 2", short_set, "has length 2 (< 4)"},
      {"v9 set overruns", overrun, "has length 40 but only 7 bytes are left"},
      {"v9 trailing bytes", trailing, "2 trailing bytes"},
      {"v9 truncated datagram", Bytes(g9.begin(), g9.end() - 1), "bytes are left"},
      {"ipfix short header", Bytes(g10.begin(), g10.begin() + 15), "shorter than the 16-byte"},
      {"ipfix length > datagram", ipfix_short, "!= datagram length"},
      {"ipfix length < datagram", ipfix_long, "!= datagram length"},
      {"ipfix length 8", ipfix_len_small, "message length 8"},
      {"ipfix zero-length set", ipfix_zero_set, "has length 0 (< 4)"},
      {"too long", Bytes(70000, 0), "too long"},
  };
}

TEST(NetflowMalformed, RejectedWholeWithAClearErrorAndNoStateChange) {
  for (const Rejected& c : RejectedCases()) {
    SCOPED_TRACE(c.name);
    FlowDecoder dec;
    std::vector<FlowRecord> out = {Simple(99)};
    Status st = dec.Decode(c.datagram, kExp, kRecv, &out);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find(c.error), std::string::npos) << st.message();
    EXPECT_EQ(out, (std::vector<FlowRecord>{Simple(99)}));  // untouched
    EXPECT_EQ(dec.template_count(), 0u);                     // templates came with it
    EXPECT_EQ(dec.pending_sets(), 0u);
    EXPECT_EQ(dec.counters().datagrams_rejected, 1u);
    EXPECT_EQ(dec.counters().flows, 0u);
  }
}

// ... or one set skipped (OK, counted), the rest of the datagram still used.
struct SkippedSet {
  const char* name;
  uint16_t version;
  uint16_t set_id;
  Bytes body;
  const char* reason;
};

Bytes TemplateBody(uint16_t id, const std::vector<Spec>& specs) {
  Be s;
  Msg::TemplateRecord(&s, id, specs);
  return s.b;
}

std::vector<SkippedSet> SkippedCases() {
  std::vector<Spec> many(513, Spec{210, 1});  // paddingOctets
  std::vector<Spec> huge = {{8, 4}, {210, 40000}, {211, 40000}};
  Be trunc;
  Msg::TemplateRecord(&trunc, 256, kSpecsA);
  trunc.b.resize(trunc.b.size() - 2);
  Be zero_fields;
  zero_fields.U16(256);
  zero_fields.U16(0);
  Be v9_opt_bad;  // scope length 3
  v9_opt_bad.U16(256);
  v9_opt_bad.U16(3);
  v9_opt_bad.U16(4);
  v9_opt_bad.U32(0);
  Be ipfix_opt_scope0;
  ipfix_opt_scope0.U16(256);
  ipfix_opt_scope0.U16(1);
  ipfix_opt_scope0.U16(0);
  ipfix_opt_scope0.U16(160);
  ipfix_opt_scope0.U16(8);
  Be ent_trunc;  // enterprise bit but the number is missing
  ent_trunc.U16(256);
  ent_trunc.U16(1);
  ent_trunc.U16(0x8001);
  ent_trunc.U16(4);
  return {
      {"513 fields", 10, 2, TemplateBody(256, many), "has 513 fields (max 512)"},
      {"template id 255", 10, 2, TemplateBody(255, kSpecsA), "template id 255 < 256"},
      {"v9 template id 0", 9, 0, TemplateBody(0, kSpecsA), "template id 0 < 256"},
      {"v9 no fields", 9, 0, zero_fields.b, "has no fields"},
      {"ipv4 length 3", 10, 2, TemplateBody(256, {{8, 3}}), "field type 8 has impossible length 3"},
      {"ipv6 length 4", 9, 0, TemplateBody(256, {{27, 4}}), "field type 27 has impossible length"},
      {"counter length 9", 10, 2, TemplateBody(256, {{8, 4}, {1, 9}}), "field type 1 has impossible"},
      {"counter length 0", 10, 2, TemplateBody(256, {{8, 4}, {2, 0}}), "field type 2 has impossible"},
      {"protocol variable", 10, 2, TemplateBody(256, {{8, 4}, {4, 65535}}), "field type 4 has"},
      {"ms time length 4", 10, 2, TemplateBody(256, {{8, 4}, {152, 4}}), "field type 152 has"},
      {"records cannot fit", 9, 0, TemplateBody(256, huge), "cannot fit a datagram"},
      {"empty records", 10, 2, TemplateBody(256, {{210, 0}}), "would be empty"},
      {"template truncated", 10, 2, trunc.b, "overruns the set"},
      {"enterprise number missing", 10, 2, ent_trunc.b, "enterprise number overruns"},
      {"v9 options lengths", 9, 1, v9_opt_bad.b, "not multiples of 4"},
      {"ipfix options scope 0", 10, 3, ipfix_opt_scope0.b, "scope field count 0"},
      {"withdraw id 7", 10, 2, Bytes{0, 7, 0, 0}, "withdrawal of template id 7"},
      {"reserved set id", 10, 5, Bytes{1, 2, 3, 4}, "set id 5 is reserved"},
      {"v9 reserved set id", 9, 2, Bytes{1, 2, 3, 4}, "set id 2 is reserved"},
  };
}

TEST(NetflowMalformed, BadSetIsSkippedWholeAndCounted) {
  for (const SkippedSet& c : SkippedCases()) {
    SCOPED_TRACE(c.name);
    FlowRecord f = Simple(1, c.version);
    Msg m(c.version, 1, 1700000010, 0);
    m.Template(256, kSpecsA)
        .Set(c.set_id, c.body)
        .Set(256, Records(kSpecsA, {f}, {}, c.version == 10));
    FlowDecoder dec;
    std::vector<FlowRecord> out;
    ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
    EXPECT_EQ(dec.counters().sets_skipped, 1u);
    EXPECT_NE(dec.last_skip_reason().find(c.reason), std::string::npos) << dec.last_skip_reason();
    EXPECT_EQ(out, (std::vector<FlowRecord>{f}));  // the good sets still count
    EXPECT_EQ(dec.template_count(), 1u);           // the bad set changed nothing
  }
}

TEST(NetflowMalformed, TemplateSetIsAtomic) {
  Be body;
  Msg::TemplateRecord(&body, 256, kSpecsA);
  Msg::TemplateRecord(&body, 257, {{8, 3}});  // bad: the whole set is skipped
  Msg m(10, 1, 1700000010);
  m.Set(2, body.b);
  FlowDecoder dec;
  std::vector<FlowRecord> out;
  ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
  EXPECT_EQ(dec.template_count(), 0u);
  EXPECT_EQ(dec.counters().sets_skipped, 1u);
}

TEST(NetflowMalformed, DataRecordOverrunningTheSetSkipsTheSet) {
  std::vector<Spec> specs = {{8, 4}, {12, 4}, {82, 65535}};
  Be body;
  Record(&body, specs, Simple(1), {}, true);  // a good record, then a bad one
  body.Raw(Addr4("1.1.1.1"));
  body.Raw(Addr4("2.2.2.2"));
  body.U8(255);
  body.U16(300);  // 300 bytes claimed, 2 there
  body.U16(0);
  Bytes short_escape = Records(specs, {Simple(1)}, {}, true);
  short_escape.insert(short_escape.end(), {1, 1, 1, 1, 2, 2, 2, 2, 255, 1});  // u16 cut
  for (const Bytes& b : {body.b, short_escape}) {
    Msg m(10, 1, 1700000010);
    m.Template(256, specs).Set(256, b).Set(256, Records(specs, {Simple(2)}, {}, true));
    FlowDecoder dec;
    std::vector<FlowRecord> out;
    ASSERT_TRUE(dec.Decode(m.Finish(), kExp, kRecv, &out).ok());
    EXPECT_NE(dec.last_skip_reason().find("data set 256: record 1 overruns the set"),
              std::string::npos)
        << dec.last_skip_reason();
    FlowRecord want = Simple(2);
    want.bytes = want.packets = 0;
    want.protocol = 0;
    EXPECT_EQ(out, (std::vector<FlowRecord>{want}));  // nothing of the bad set
  }
}

// Every prefix and many byte mutations of valid datagrams: no crash, errors
// leave `out` untouched, and successes emit at most what the template allows.
TEST(NetflowMalformed, TruncationsAndMutationsNeverCrash) {
  std::vector<Spec> specs = {{27, 16}, {28, 16}, {82, 65535}, {1, 8}, {2, 8}, {152, 8}, {153, 8}};
  FlowRecord f6 = Flow("2001:db8::1", "2001:db8::2", 0, 0, 0, 5, 6, 1700000000000000,
                       1700000000000000, 10);
  Msg m10(10, 1, 1700000010);
  m10.Template(256, specs).OptionsTemplate(257, {{143, 4}}, {{160, 8}});
  m10.Set(256, Records(specs, {f6, f6, f6}, {}, true), 1);
  Msg m9(9, 1, 1700000010, 5000);
  m9.Template(256, kV4Specs).Set(256, Records(kV4Specs, {Simple(1, 9)}, {5000000, 5000, 0}, false));
  std::vector<Bytes> seeds = {m10.Finish(), m9.Finish(), V5({}, {Simple(1, 5), Simple(2, 5)})};
  std::mt19937_64 rng(1234);
  uint64_t ok = 0, bad = 0;
  for (const Bytes& seed : seeds) {
    for (size_t n = 0; n <= seed.size(); ++n) {
      FlowDecoder dec;
      std::vector<FlowRecord> out;
      Bytes d(seed.begin(), seed.begin() + n);
      Status st = dec.Decode(d, kExp, kRecv, &out);
      (st.ok() ? ok : bad)++;
      if (!st.ok()) {
        EXPECT_TRUE(out.empty());
      }
    }
    for (int i = 0; i < 20000; ++i) {
      FlowDecoder dec;
      Bytes d = seed;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) d[rng() % d.size()] = static_cast<uint8_t>(rng());
      std::vector<FlowRecord> out;
      Status st = dec.Decode(d, kExp, kRecv, &out);
      (st.ok() ? ok : bad)++;
      if (!st.ok()) {
        EXPECT_TRUE(out.empty());
      }
      EXPECT_LE(out.size(), d.size());
      // Feed it twice more: now with its own templates known.
      (void)dec.Decode(d, kExp, kRecv, &out);
      (void)dec.Decode(seed, kExp, kRecv, &out);
    }
  }
  std::printf("truncations/mutations: %llu accepted, %llu rejected\n",
              static_cast<unsigned long long>(ok), static_cast<unsigned long long>(bad));
}

// ---------------------------------------------------------------------------
// Property: random flows -> encode (v5, v9, IPFIX) -> decode -> equal.

struct Gen {
  std::mt19937_64 rng;
  uint64_t U(uint64_t lo, uint64_t hi) { return lo + rng() % (hi - lo + 1); }
  std::string V4() {
    return std::to_string(U(0, 255)) + "." + std::to_string(U(0, 255)) + "." +
           std::to_string(U(0, 255)) + "." + std::to_string(U(0, 255));
  }
  std::string V6() {
    uint8_t a[16];
    for (uint8_t& b : a) b = static_cast<uint8_t>(U(0, 3) == 0 ? 0 : rng());
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a, buf, sizeof buf);
    return buf;
  }
};

TEST(NetflowProperty, RandomFlowsRoundTripAllVersions) {
  uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  Gen g{std::mt19937_64(seed)};
  FlowDecoder dec;
  std::vector<FlowRecord> want, got;
  const std::vector<std::vector<Spec>> v9_layouts = {
      kV4Specs,
      {{27, 16}, {28, 16}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}, {22, 4}, {21, 4}},
      {{4, 1}, {12, 4}, {8, 4}, {85, 8}, {86, 8}, {11, 2}, {7, 2}, {152, 8}, {153, 8}, {10, 2}},
  };
  const std::vector<std::vector<Spec>> ipfix_layouts = {
      {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}, {152, 8}, {153, 8}},
      {{27, 16}, {28, 16}, {82, 65535}, {7, 2}, {11, 2}, {4, 1}, {1, 4}, {2, 4}, {150, 4}, {151, 4}},
      {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}, {22, 4}, {21, 4}, {160, 8}},
      {{27, 16}, {28, 16}, {5, 65535, 29305}, {7, 2}, {11, 2}, {4, 1}, {85, 8}, {86, 8},
       {154, 8}, {155, 8}},
  };
  for (int round = 0; round < 300; ++round) {
    uint16_t version = std::array<uint16_t, 3>{5, 9, 10}[g.U(0, 2)];
    std::string exporter = "192.0.2." + std::to_string(g.U(1, 3)) + ":2055";
    uint32_t secs = static_cast<uint32_t>(g.U(1500000000, 1900000000));
    uint32_t uptime = static_cast<uint32_t>(g.rng());
    size_t layout = version == 9 ? g.U(0, v9_layouts.size() - 1) : g.U(0, ipfix_layouts.size() - 1);
    const std::vector<Spec>& specs = version == 9 ? v9_layouts[layout] : ipfix_layouts[layout];
    bool v6 = version != 5 && specs[0].id == 27;
    bool uptime_times = version == 5 || specs.back().id == 21 || specs[specs.size() - 2].id == 21;
    // v5 has no template: its times are always sysUptime-relative.
    bool ms_times = version != 5 && std::any_of(specs.begin(), specs.end(),
                                                [](const Spec& s) { return s.id == 152; });
    bool sec_times = version != 5 && std::any_of(specs.begin(), specs.end(),
                                                 [](const Spec& s) { return s.id == 150; });
    bool narrow = version == 5 || std::any_of(specs.begin(), specs.end(),
                                              [](const Spec& s) { return s.id == 1 && s.len == 4; });
    Clock c;
    c.uptime_ms = uptime;
    c.export_us = int64_t{secs} * 1000000;
    c.init_ms = int64_t{secs} * 1000 - g.U(0, 1000000000);
    V5Header h5{uptime, secs, version == 5 ? static_cast<uint32_t>(g.U(0, 999999)) * 1000 : 0};
    if (version == 5) c.export_us += h5.nsecs / 1000;
    size_t n = g.U(1, 30);
    std::vector<FlowRecord> flows;
    for (size_t i = 0; i < n; ++i) {
      FlowRecord f = Flow(v6 ? g.V6() : g.V4(), v6 ? g.V6() : g.V4(), g.U(0, 65535), g.U(0, 65535),
                          g.U(0, 255), narrow ? g.U(0, 0xffffffff) : g.rng(),
                          narrow ? g.U(0, 0xffffffff) : g.rng(), 0, 0, version, exporter);
      int64_t end_age_ms = g.U(0, 3600000), dur_ms = g.U(0, 3600000);
      int64_t end = c.export_us - end_age_ms * 1000 - (version == 10 ? g.U(0, 999) : 0);
      if (ms_times || (version == 10 && uptime_times)) end = end / 1000 * 1000;
      if (sec_times) end = end / 1000000 * 1000000;
      f.end_us = end;
      f.start_us = end - dur_ms * 1000 * (sec_times ? 1000 : 1);
      if (version == 10 && uptime_times) {
        int64_t lo = (c.init_ms) * 1000;
        if (f.start_us < lo) f.start_us = lo;
        if (f.end_us < lo) f.end_us = lo;
      }
      flows.push_back(f);
    }
    Bytes d;
    if (version == 5) {
      d = V5(h5, flows);
    } else {
      uint32_t domain = static_cast<uint32_t>(g.U(0, 2));
      uint16_t id = static_cast<uint16_t>(256 + layout);
      Msg m(version, domain, secs, uptime);
      m.Template(id, specs);
      m.Set(id, Records(specs, flows, c, version == 10), g.U(0, 3), flows.size());
      d = m.Finish();
    }
    for (FlowRecord& f : flows) want.push_back(f);
    Status st = dec.Decode(d, exporter, kRecv, &got);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "round " << round;
  }
  EXPECT_EQ(dec.counters().sets_skipped, 0u);
  EXPECT_EQ(dec.counters().v9_count_mismatch, 0u);
}

// ---------------------------------------------------------------------------
// Decode rate, printed (never asserted).

TEST(NetflowRate, PrintsFlowsPerSecond) {
  FlowDecoder dec;
  std::vector<FlowRecord> flows;
  for (int i = 0; i < 30; ++i) flows.push_back(Simple(i, 5));
  std::vector<std::pair<const char*, std::vector<Bytes>>> kinds;
  kinds.push_back({"v5", {V5({}, flows)}});
  std::vector<Spec> specs9 = kV4Specs;
  Msg t9(9, 1, 1700000010, 1000);
  t9.Template(256, specs9);
  Msg d9(9, 1, 1700000010, 1000);
  d9.Set(256, Records(specs9, flows, {1700000010000000, 1000, 0}, false));
  kinds.push_back({"v9", {t9.Finish(), d9.Finish()}});
  std::vector<Spec> specs10 = {{27, 16}, {28, 16}, {7, 2}, {11, 2}, {4, 1},
                               {1, 8},   {2, 8},   {152, 8}, {153, 8}};
  std::vector<FlowRecord> flows6;
  for (int i = 0; i < 20; ++i) {
    flows6.push_back(Flow("2001:db8::" + std::to_string(i + 1), "2001:db8::ff", 1, 2, 6, 3, 4,
                          1700000000000000, 1700000000000000, 10));
  }
  Msg t10(10, 1, 1700000010);
  t10.Template(256, specs10);
  Msg d10(10, 1, 1700000010);
  d10.Set(256, Records(specs10, flows6, {}, true));
  kinds.push_back({"ipfix-v6", {t10.Finish(), d10.Finish()}});
  for (auto& [name, dgs] : kinds) {
    std::vector<FlowRecord> out;
    for (size_t i = 0; i + 1 < dgs.size(); ++i) ASSERT_TRUE(dec.Decode(dgs[i], kExp, kRecv, &out).ok());
    const Bytes& data = dgs.back();
    uint64_t total = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20000; ++i) {
      out.clear();
      ASSERT_TRUE(dec.Decode(data, kExp, kRecv, &out).ok());
      total += out.size();
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("decode rate %-8s: %.0f flows/s (%llu flows in %.3f s)\n", name, total / s,
                static_cast<unsigned long long>(total), s);
  }
}

}  // namespace
}  // namespace tandem::collect
