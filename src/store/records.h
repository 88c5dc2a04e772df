// The normalized records the collector produces and the store keeps: one
// EventRecord per syslog message, one FlowRecord per NetFlow/IPFIX flow.
// Plain values; the segment format (docs/formats/segments.md) encodes them.
#pragma once

#include <cstdint>
#include <string>

namespace tandem::store {

// How an event's text was understood.
enum class EventFormat : uint8_t {
  kRfc5424 = 1,
  kRfc3164 = 2,
  kRaw = 3,  // parsed as neither: kept as it came (message = the whole line)
};

struct EventRecord {
  // When the event happened (from the message), microseconds since the Unix
  // epoch, UTC; 0 when the message carries no usable time (then searches use
  // receive_time_us).
  int64_t event_time_us = 0;
  // When the collector received it (its own clock), microseconds, UTC.
  int64_t receive_time_us = 0;
  int16_t facility = -1;  // 0..23, -1 when the message had no PRI
  int16_t severity = -1;  // 0..7,  -1 when the message had no PRI
  EventFormat format = EventFormat::kRaw;
  bool truncated = false;     // the line was longer than the limit and was cut
  std::string host;           // HOSTNAME field ("" for "-" or absent)
  std::string app;            // APP-NAME / TAG
  std::string procid;         // PROCID / [pid]
  std::string msgid;          // MSGID (RFC 5424 only)
  std::string structured_data;  // STRUCTURED-DATA as sent ("" for "-")
  std::string message;        // MSG (for kRaw: the whole line)
  std::string sender;         // "address:port" the message came from

  bool operator==(const EventRecord&) const = default;
};

struct FlowRecord {
  int64_t start_us = 0;  // flow start / end, microseconds since the epoch, UTC
  int64_t end_us = 0;
  int64_t receive_time_us = 0;
  std::string src;  // source address, text form (IPv4 dotted or IPv6)
  std::string dst;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t protocol = 0;  // IP protocol number (6 = TCP, 17 = UDP, ...)
  uint64_t bytes = 0;
  uint64_t packets = 0;
  std::string exporter;  // "address:port" of the exporter
  uint16_t version = 0;  // 5, 9 or 10 (IPFIX)

  bool operator==(const FlowRecord&) const = default;
};

}  // namespace tandem::store
