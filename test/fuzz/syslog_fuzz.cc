// libFuzzer target for the syslog layer: framing (collect/framing.h) and the
// parser (collect/syslog.h); formats in docs/formats/syslog.md. Not part of
// the CMake build; from the repository root, build and run with:
//   clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
//     test/fuzz/syslog_fuzz.cc src/collect/framing.cc src/collect/syslog.cc \
//     -o /tmp/syslog_fuzz
//   /tmp/syslog_fuzz -max_total_time=60
//
// Input layout: byte 0 picks message_bytes_max (small, so truncation is hit),
// byte 1 a chunk size, bytes 2..9 the receive time; the rest is the TCP
// stream. The stream is framed whole and in chunks (results must be equal:
// framing does not depend on how TCP cuts the stream), memory must stay
// bounded, and every message (and the whole rest as one UDP datagram) is
// parsed, checking the record's invariants. Any violation aborts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "collect/framing.h"
#include "collect/syslog.h"

namespace {

using tandem::collect::FramerCounters;
using tandem::collect::SyslogFrame;
using tandem::collect::SyslogStreamFramer;

constexpr size_t kHeaderBytes = 10;
constexpr size_t kMaxSpread = 512;  // message_bytes_max in [min, min + spread)

void Require(bool ok) {
  if (!ok) std::abort();
}

std::string_view StripTrailer(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return s;
}

void CheckRecord(std::string_view msg, int64_t receive_time_us) {
  const tandem::store::EventRecord r =
      tandem::collect::ParseSyslog(msg, receive_time_us, "127.0.0.1:514");
  Require(r.receive_time_us == receive_time_us && r.sender == "127.0.0.1:514");
  Require((r.facility == -1) == (r.severity == -1));
  Require(r.facility >= -1 && r.facility <= 23 && r.severity >= -1 && r.severity <= 7);
  Require(r.message.size() <= msg.size() && !r.truncated);
  Require(r.host.size() <= tandem::collect::kSyslogHostBytesMax);
  if (r.format == tandem::store::EventFormat::kRaw) {
    Require(r.message == StripTrailer(msg) && r.facility == -1 && r.host.empty());
  }
  if (r.format == tandem::store::EventFormat::kRfc5424) {
    Require(r.app.size() <= tandem::collect::kSyslogAppBytesMax);
    Require(r.msgid.size() <= tandem::collect::kSyslogMsgidBytesMax);
  }
  tandem::store::EventRecord again;
  again.host = "stale";
  tandem::collect::ParseSyslogInto(msg, receive_time_us, "127.0.0.1:514", &again);
  Require(again == r);
}

struct Framed {
  std::vector<SyslogFrame> frames;
  FramerCounters counters;
};

Framed Frame(std::span<const uint8_t> stream, size_t max, size_t chunk) {
  SyslogStreamFramer framer(max);
  Framed f;
  for (size_t at = 0; at < stream.size(); at += chunk) {
    framer.Feed(stream.subspan(at, std::min(chunk, stream.size() - at)), &f.frames);
    Require(framer.buffered_bytes() <= max + tandem::collect::kOctetCountDigitsMax);
  }
  framer.Finish(&f.frames);
  f.counters = framer.counters();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderBytes) return 0;
  const size_t max = tandem::collect::kSyslogMessageBytesMin + data[0] * kMaxSpread / 256;
  const size_t chunk = 1 + data[1] % 64;
  int64_t receive_time_us = 0;
  std::memcpy(&receive_time_us, data + 2, sizeof(receive_time_us));
  const std::span<const uint8_t> stream(data + kHeaderBytes, size - kHeaderBytes);

  const Framed whole = Frame(stream, max, stream.empty() ? 1 : stream.size());
  const Framed cut = Frame(stream, max, chunk);
  Require(whole.frames == cut.frames && whole.counters == cut.counters);
  Require(whole.counters.bytes == stream.size());
  Require(whole.counters.messages == whole.frames.size());
  uint64_t truncated = 0;
  for (const SyslogFrame& f : whole.frames) {
    Require(!f.message.empty() && f.message.size() <= max);
    truncated += f.truncated ? 1 : 0;
    CheckRecord(f.message, receive_time_us);
  }
  Require(truncated == whole.counters.truncated);

  const tandem::collect::DatagramMessage d = tandem::collect::FrameDatagram(stream, max);
  Require(d.message.size() <= max);
  CheckRecord(d.message, receive_time_us);
  return 0;
}
