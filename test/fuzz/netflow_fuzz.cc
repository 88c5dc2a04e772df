// libFuzzer target for collect::FlowDecoder (NetFlow v5/v9, IPFIX;
// docs/formats/netflow.md). Not part of the CMake build; from the repository
// root:
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     test/fuzz/netflow_fuzz.cc src/collect/netflow.cc -o /tmp/netflowfuzz
//   /tmp/netflowfuzz -max_total_time=60 -max_len=4096
//
// The input is a sequence of datagrams ([u16 big-endian length][bytes],
// the last one taking what is left), decoded in order by one decoder with
// small limits, so template eviction and the pending-set bounds are reached.
// If the first byte is odd, valid v9 and IPFIX templates (ids 256..258,
// domains 0 and 1, with a variable-length field and an options template)
// are decoded first, so mutated data sets reach record decoding at once.
// Each datagram comes from one of four exporters (chosen by its length).
//
// Checked after every Decode call: nothing crashes or trips a CHECK; a
// rejected datagram appends nothing and changes no template, pending set or
// template counter; the limits hold; every flow appended carries the
// exporter, receive time and a version of the call; counters().flows equals
// the flows appended.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "collect/netflow.h"

namespace {

using tandem::collect::FlowDecoder;
using tandem::collect::FlowDecoderCounters;
using tandem::collect::FlowDecoderLimits;
using tandem::store::FlowRecord;
using Bytes = std::vector<uint8_t>;

constexpr size_t kTemplatesMax = 6;
constexpr size_t kPendingSetsMax = 3;
constexpr size_t kPendingBytesMax = 2048;
constexpr size_t kDatagramsMax = 64;  // per input
constexpr int64_t kRecvUs = 1700000000000000;
const char* const kExporters[] = {"192.0.2.1:2055", "192.0.2.1:2056", "[2001:db8::1]:4739",
                                  "198.51.100.7:9995"};

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "netflow_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

class Be {
 public:
  void U16(uint64_t v) { N(v, 2); }
  void U32(uint64_t v) { N(v, 4); }
  void N(uint64_t v, size_t n) {
    for (size_t i = n; i-- > 0;) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes b;
};

// A message with one template set (and, for IPFIX, an options template set).
Bytes TemplateMessage(uint16_t version, uint32_t domain) {
  Be m;
  m.U16(version);
  m.U16(0);  // v9 count / IPFIX length, patched below
  if (version == 9) m.U32(100000);
  m.U32(1700000000);
  m.U32(1);
  m.U32(domain);
  const std::vector<std::pair<uint16_t, uint16_t>> fields[] = {
      {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 4}, {2, 4}, {22, 4}, {21, 4}},
      {{27, 16}, {28, 16}, {1, 8}, {2, 8}, {152, 8}, {153, 8}},
      {{8, 4}, {12, 4}, {82, version == 10 ? 65535 : 8}, {150, 4}, {151, 4}, {160, 8}},
  };
  Be set;
  uint16_t id = 256;
  for (const auto& specs : fields) {
    set.U16(id++);
    set.U16(specs.size());
    for (const auto& [type, len] : specs) {
      set.U16(type);
      set.U16(len);
    }
  }
  m.U16(version == 10 ? 2 : 0);
  m.U16(4 + set.b.size());
  m.b.insert(m.b.end(), set.b.begin(), set.b.end());
  if (version == 10) {  // options template 259: scope observationDomainId, systemInitTime
    m.U16(3);
    m.U16(4 + 14);
    m.U16(259);
    m.U16(2);
    m.U16(1);
    m.U16(149);
    m.U16(4);
    m.U16(160);
    m.U16(8);
  }
  uint64_t head = version == 10 ? m.b.size() : 3;
  m.b[2] = static_cast<uint8_t>(head >> 8);
  m.b[3] = static_cast<uint8_t>(head);
  return m.b;
}

struct Snapshot {
  size_t out = 0, templates = 0, pending = 0;
  FlowDecoderCounters c;
};

Snapshot Take(const FlowDecoder& dec, const std::vector<FlowRecord>& out) {
  return {out.size(), dec.template_count(), dec.pending_sets(), dec.counters()};
}

void DecodeChecked(FlowDecoder* dec, std::span<const uint8_t> d, const char* exporter,
                   std::vector<FlowRecord>* out) {
  Snapshot before = Take(*dec, *out);
  tandem::Status st = dec->Decode(d, exporter, kRecvUs, out);
  Snapshot after = Take(*dec, *out);
  Check(after.c.datagrams == before.c.datagrams + 1, "datagrams counted");
  if (!st.ok()) {
    Check(!st.message().empty(), "error has a message");
    Check(after.out == before.out, "rejected datagram appended flows");
    Check(after.templates == before.templates, "rejected datagram changed templates");
    Check(after.pending == before.pending, "rejected datagram changed pending sets");
    Check(after.c.templates_added == before.c.templates_added &&
              after.c.templates_withdrawn == before.c.templates_withdrawn &&
              after.c.templates_replaced == before.c.templates_replaced &&
              after.c.sets_skipped == before.c.sets_skipped,
          "rejected datagram changed template counters");
    Check(after.c.datagrams_rejected == before.c.datagrams_rejected + 1, "rejection counted");
  }
  Check(after.templates <= kTemplatesMax, "templates_max");
  Check(after.pending <= kPendingSetsMax, "pending_sets_max");
  Check(after.c.flows - before.c.flows == after.out - before.out, "flows counted");
  for (size_t i = before.out; i < after.out; ++i) {
    const FlowRecord& f = (*out)[i];
    Check(f.exporter == exporter, "exporter copied");
    Check(f.receive_time_us == kRecvUs, "receive time copied");
    Check(f.version == 5 || f.version == 9 || f.version == 10, "version");
    Check(!f.src.empty() || !f.dst.empty(), "a flow has an address");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FlowDecoderLimits limits;
  limits.templates_max = kTemplatesMax;
  limits.pending_sets_max = kPendingSetsMax;
  limits.pending_bytes_max = kPendingBytesMax;
  FlowDecoder dec(limits);
  std::vector<FlowRecord> out;
  std::span<const uint8_t> in(data, size);
  if (!in.empty() && (in[0] & 1) != 0) {
    for (uint32_t domain = 0; domain < 2; ++domain) {
      DecodeChecked(&dec, TemplateMessage(9, domain), kExporters[0], &out);
      DecodeChecked(&dec, TemplateMessage(10, domain), kExporters[0], &out);
    }
    in = in.subspan(1);
  }
  for (size_t n = 0; !in.empty() && n < kDatagramsMax; ++n) {
    size_t len = in.size();
    if (in.size() >= 2) {
      len = static_cast<size_t>(in[0] << 8 | in[1]);
      in = in.subspan(2);
      if (len > in.size()) len = in.size();
    }
    DecodeChecked(&dec, in.first(len), kExporters[len % 4], &out);
    in = in.subspan(len);
  }
  // The whole input once more as a single datagram, to the same decoder.
  DecodeChecked(&dec, std::span<const uint8_t>(data, size), kExporters[2], &out);
  return 0;
}
