// NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) decoding: one UDP
// datagram in, normalized store::FlowRecords out. Format notes, the fields
// mapped, template handling, limits and counters: docs/formats/netflow.md.
//
// I/O-free and clock-free: the caller passes the exporter's "addr:port" and
// the receive time. Safe on any input bytes: never reads outside the span,
// never aborts on input, and every limit below is checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/records.h"
#include "util/status.h"

namespace tandem::collect {

// Upper bounds (ENGINEERING.md #7). All are counts unless named _bytes.
struct FlowDecoderLimits {
  // Templates kept in total, over all exporters, domains and versions
  // (options templates included). When full the least recently defined or
  // refreshed one is evicted (counted in templates_evicted).
  size_t templates_max = 4096;
  // Field specifiers per template (scope fields included). A template with
  // more is rejected (its set is skipped, counted).
  size_t template_fields_max = 512;
  // Data sets whose template is not known yet are kept (a copy of the set)
  // until the template arrives, then decoded. Oldest dropped beyond either
  // bound (counted in pending_sets_dropped). 0 disables buffering.
  size_t pending_sets_max = 256;
  size_t pending_bytes_max = 1 << 20;
};

// Monotonic counters, for metrics and tests. "Set" means a v9 flowset or an
// IPFIX set; v5 datagrams have no sets.
struct FlowDecoderCounters {
  uint64_t datagrams = 0;           // Decode calls
  uint64_t datagrams_rejected = 0;  // ... that returned an error (nothing emitted)
  uint64_t flows = 0;               // FlowRecords appended to `out`
  uint64_t sets_skipped = 0;        // malformed sets ignored whole (see Decode)
  uint64_t templates_added = 0;     // new (exporter, version, domain, id)
  uint64_t templates_refreshed = 0; // same definition sent again
  uint64_t templates_replaced = 0;  // same key, different definition
  uint64_t templates_withdrawn = 0; // IPFIX withdrawals (each template removed)
  uint64_t templates_evicted = 0;   // removed because templates_max was reached
  uint64_t options_templates = 0;   // options templates accepted (added or refreshed)
  uint64_t options_records = 0;     // options data records read (not emitted)
  uint64_t records_not_flow = 0;    // data records with no address field (not emitted)
  uint64_t sets_unknown_template = 0;  // data sets that arrived before their template
  uint64_t pending_sets_decoded = 0;   // ... decoded later when it arrived
  uint64_t pending_sets_dropped = 0;   // ... dropped from the bounded buffer
  uint64_t times_unknown = 0;       // flows whose times fell back to the export time
  uint64_t v9_count_mismatch = 0;   // v9 header count != records found (not an error)
};

// Decodes datagrams from any number of exporters and keeps their templates.
// Not thread-safe: one instance per event loop (or per receiving socket).
class FlowDecoder {
 public:
  explicit FlowDecoder(FlowDecoderLimits limits = {});
  ~FlowDecoder();
  FlowDecoder(const FlowDecoder&) = delete;
  FlowDecoder& operator=(const FlowDecoder&) = delete;

  // Decodes one datagram received from `exporter` ("addr:port"; it keys the
  // templates and is copied into each record) at `receive_time_us`
  // (microseconds since the epoch). Appends the flows to `*out` (never
  // cleared); `out` is not owned and must be non-null.
  //
  // Atomicity: the datagram's header and set framing (every set's length) is
  // checked before anything is used. If that fails, returns an error naming
  // the fault; nothing is appended and no template state changes. Otherwise
  // returns OK and each set is applied whole or not at all: a set with a bad
  // template, a record overrunning the set, or an impossible field size is
  // skipped (sets_skipped, last_skip_reason()) and the other sets still count.
  // v5 datagrams are all-or-nothing. Data sets for unknown templates are
  // buffered (bounded, see FlowDecoderLimits) and their flows appended by the
  // Decode call that brings the template.
  Status Decode(std::span<const uint8_t> datagram, std::string_view exporter,
                int64_t receive_time_us, std::vector<store::FlowRecord>* out);

  const FlowDecoderCounters& counters() const;
  // Why the most recent set was skipped ("" if none yet).
  const std::string& last_skip_reason() const;
  size_t template_count() const;
  size_t pending_sets() const;  // data sets buffered, waiting for a template

 private:
  class Impl;  // netflow.cc
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::collect
