// libFuzzer target for the RELP server session (docs/formats/relp.md).
// Not part of the CMake build; from the repository root, build and run:
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     test/fuzz/relp_fuzz.cc src/collect/relp.cc -o relp_fuzz
//   ./relp_fuzz -max_total_time=60 -max_len=4096
//
// Three runs per input, none of which may crash or trip a CHECK:
//  1. The input as a raw byte stream, fed at once and fed in two pieces
//     (split at data[0]); both must deliver the same messages, end with the
//     same error and write the same bytes (acks come after all input).
//  2. The same, after a valid `open`, so the fuzzer reaches `syslog` quickly.
//  3. A structured script: valid `syslog` frames interleaved with Acks and
//     Nacks of random in-flight messages and occasional garbage bytes.
// In every run the output must be well-formed: rsp frames with strictly
// consecutive txnrs, each "200 OK"/"500 ..." matching what the caller
// decided, at most one `serverclose` and nothing after it; and the session
// must never hold more than window_max + 1 unanswered transactions.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "collect/relp.h"

namespace {

namespace collect = tandem::collect;

constexpr collect::RelpLimits kLimits{.data_bytes_max = 512, .window_max = 8};
constexpr std::string_view kOpen = "1 open 46 relp_version=0\nrelp_software=x\ncommands=syslog\n";

void Check(bool ok) {
  if (!ok) std::abort();
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// What the caller decided for each message: true = Ack, false = Nack.
using Decisions = std::map<collect::RelpTxnr, bool>;

// Parses everything the session wrote and checks it is well-formed.
void CheckOutput(std::string_view out, const Decisions& decided) {
  collect::RelpTxnr last = 0;
  bool closed = false;
  while (!out.empty()) {
    Check(!closed);  // nothing after serverclose
    size_t sp1 = out.find(' ');
    Check(sp1 != std::string_view::npos && sp1 >= 1 && sp1 <= 9);
    collect::RelpTxnr txnr =
        static_cast<collect::RelpTxnr>(std::stoul(std::string(out.substr(0, sp1))));
    size_t sp2 = out.find(' ', sp1 + 1);
    Check(sp2 != std::string_view::npos);
    std::string_view cmd = out.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t end_len = out.find_first_of(" \n", sp2 + 1);
    Check(end_len != std::string_view::npos);
    size_t len = std::stoul(std::string(out.substr(sp2 + 1, end_len - sp2 - 1)));
    size_t data_at = out[end_len] == ' ' ? end_len + 1 : end_len;
    Check((len == 0) == (out[end_len] == '\n'));
    Check(data_at + len < out.size() && out[data_at + len] == '\n');
    std::string_view data = out.substr(data_at, len);
    if (cmd == "serverclose") {
      Check(txnr == 0 && len == 0);
      closed = true;
    } else {
      Check(cmd == "rsp");
      Check(last == 0 || txnr == collect::RelpNextTxnr(last));
      Check(data.starts_with("200 ") || data.starts_with("500 "));
      Check(data.size() <= 4 + collect::kRelpReasonBytesMax + 64);
      auto it = decided.find(txnr);
      if (it != decided.end()) Check(data.starts_with(it->second ? "200 OK" : "500 "));
      last = txnr;
    }
    out.remove_prefix(data_at + len + 1);
  }
}

struct Outcome {
  std::vector<collect::RelpMessage> messages;
  std::string error;
  std::string output;
};

// Feeds `bytes` (after `prefix`) split at `split`, then acks everything.
Outcome Run(std::string_view prefix, std::span<const uint8_t> bytes, size_t split) {
  collect::RelpSession s{kLimits};
  Outcome o;
  (void)s.Feed(Bytes(prefix), &o.messages);
  for (std::span<const uint8_t> piece : {bytes.first(split), bytes.subspan(split)}) {
    (void)s.Feed(piece, &o.messages);
    Check(s.pending() <= kLimits.window_max + 1);
    Check(s.in_flight() <= s.pending());
  }
  Decisions decided;
  for (auto it = o.messages.rbegin(); it != o.messages.rend(); ++it) {
    s.Ack(it->txnr);
    decided[it->txnr] = true;
  }
  Check(s.in_flight() == 0);
  o.error = s.error().ToString();
  o.output = s.TakeOutput();
  CheckOutput(o.output, decided);
  for (const collect::RelpMessage& m : o.messages) Check(m.data.size() <= kLimits.data_bytes_max);
  return o;
}

void CheckStream(std::string_view prefix, std::span<const uint8_t> bytes, size_t split) {
  Outcome whole = Run(prefix, bytes, bytes.size());
  Outcome pieces = Run(prefix, bytes, std::min(split, bytes.size()));
  Check(whole.error == pieces.error && whole.output == pieces.output);
  Check(whole.messages.size() == pieces.messages.size());
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    Check(whole.messages[i].txnr == pieces.messages[i].txnr);
    Check(whole.messages[i].data == pieces.messages[i].data);
  }
}

// Script ops, one byte each plus operands: send a syslog frame, Ack or Nack
// an in-flight message, feed a raw byte, or send `close`.
void RunScript(std::span<const uint8_t> in) {
  collect::RelpSession s{kLimits};
  std::vector<collect::RelpMessage> msgs;
  std::string out;
  (void)s.Feed(Bytes(kOpen), &msgs);
  Check(s.opened());
  collect::RelpTxnr next = 2;
  std::vector<collect::RelpTxnr> in_flight;
  Decisions decided;
  size_t i = 0;
  auto operand = [&]() -> uint8_t { return i < in.size() ? in[i++] : 0; };
  while (i < in.size() && !s.closed()) {
    uint8_t op = in[i++];
    switch (op % 5) {
      case 0: {  // a valid syslog frame with up to 255 payload bytes
        size_t len = std::min<size_t>(operand(), in.size() - i);
        std::string payload(reinterpret_cast<const char*>(in.data() + i), len);
        i += len;
        std::string f = std::to_string(next) + " syslog " + std::to_string(len) +
                        (len ? " " + payload : "") + "\n";
        next = collect::RelpNextTxnr(next);
        size_t before = msgs.size();
        (void)s.Feed(Bytes(f), &msgs);
        if (msgs.size() > before) {
          Check(msgs.back().data == payload);
          in_flight.push_back(msgs.back().txnr);
        }
        break;
      }
      case 1:
      case 2: {  // Ack (1) or Nack (2) a random in-flight message
        if (in_flight.empty()) break;
        size_t k = operand() % in_flight.size();
        collect::RelpTxnr t = in_flight[k];
        in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(k));
        if (op % 5 == 1) {
          s.Ack(t);
        } else {
          s.Nack(t, "no\nspace");
        }
        decided[t] = op % 5 == 1;
        break;
      }
      case 3: {  // one raw byte (usually breaks the framing)
        uint8_t b = operand();
        (void)s.Feed(std::span<const uint8_t>(&b, 1), &msgs);
        break;
      }
      case 4:  // close
        (void)s.Feed(Bytes(std::to_string(next) + " close 0\n"), &msgs);
        next = collect::RelpNextTxnr(next);
        break;
    }
    Check(s.pending() <= kLimits.window_max + 1);
    if (!s.closed()) Check(s.in_flight() == in_flight.size());
    out += s.TakeOutput();
  }
  for (collect::RelpTxnr t : in_flight) {
    s.Ack(t);
    decided[t] = true;
  }
  out += s.TakeOutput();
  CheckOutput(out, decided);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::span<const uint8_t> bytes(data, size);
  const size_t split = size == 0 ? 0 : data[0];
  CheckStream("", bytes, split);
  CheckStream(kOpen, bytes, split);
  RunScript(bytes);
  return 0;
}
