// Syslog message parser: one syslog message (already framed, see
// collect/framing.h) -> one store::EventRecord. Accepted formats and how
// fields map: docs/formats/syslog.md.
//
// Pure functions: no I/O, no clock, no globals; thread-safe. Safe on any input
// bytes: never reads outside `msg`, never throws, never aborts. Every message
// yields a record; one that parses as neither RFC 5424 nor RFC 3164 becomes
// EventFormat::kRaw with message = the whole line (never dropped).
#pragma once

#include <cstdint>
#include <string_view>

#include "store/records.h"
#include "util/status.h"

namespace tandem::collect {

// RFC 5424 field maxima (§6: HOSTNAME, APP-NAME, PROCID, MSGID, SD-NAME). A
// longer field makes the header not RFC 5424.
inline constexpr size_t kSyslogHostBytesMax = 255;
inline constexpr size_t kSyslogAppBytesMax = 48;
inline constexpr size_t kSyslogProcidBytesMax = 128;
inline constexpr size_t kSyslogMsgidBytesMax = 32;
inline constexpr size_t kSyslogSdNameBytesMax = 32;
// RFC 3164 TAG: the RFC says 32; real senders (systemd units, Java apps) use
// more. A longer first word is not taken as a TAG.
inline constexpr size_t kSyslogTagBytesMax = 48;
// An RFC 3164 timestamp more than this far after the receive time is taken to
// be from the previous year (the format carries no year).
inline constexpr int64_t kSyslogFutureSkewUs = 30LL * 24 * 3600 * 1000 * 1000;

// Parses one syslog message. `receive_time_us` (microseconds since the epoch,
// UTC) is copied into the record and gives the year of RFC 3164 timestamps;
// `sender` ("address:port") is copied into the record. Trailing '\n', '\r'
// and NUL bytes are stripped first. Never fails: see the file comment.
// The record's `truncated` is false: the framer knows whether the message was
// cut, so the caller copies SyslogFrame::truncated / DatagramMessage::truncated
// into it. Other bytes (NUL, invalid UTF-8) are kept as they came.
store::EventRecord ParseSyslog(std::string_view msg, int64_t receive_time_us,
                               std::string_view sender);

// As ParseSyslog, but overwrites every field of `*out`, reusing the capacity
// of its strings (the collector's hot path keeps one record per connection).
// REQUIRES: out != nullptr.
void ParseSyslogInto(std::string_view msg, int64_t receive_time_us, std::string_view sender,
                     store::EventRecord* out);

// Parses a severity for searches: a digit 0..7 or a name, case-insensitive:
// emerg|emergency|panic (0), alert (1), crit|critical (2), err|error (3),
// warning|warn (4), notice (5), info|informational (6), debug (7).
// Returns the severity 0..7, or an error naming the accepted forms.
Result<int> ParseSeverity(std::string_view text);

// "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug";
// "-" for anything outside 0..7 (no PRI).
std::string_view SeverityName(int severity);

}  // namespace tandem::collect
