// libFuzzer target for the replication frame codec
// (docs/formats/replication.md). Not part of the CMake build; build and run:
//   clang++-14 -std=c++20 -fsanitize=fuzzer,address -Isrc \
//     test/fuzz/replication_fuzz.cc src/repl/frame.cc -lcrypto -o /tmp/replfuzz
//   /tmp/replfuzz -max_total_time=30
//
// Each input is decoded as a stream twice, as sent from the side that the
// input's second byte names: fed at once and fed in two pieces (split at a
// point taken from the input); both must give the same frames and the same
// error, and must never crash. Then a re-signed variant: the header's magic,
// version, length, seq and accept_id are made to fit and the last 16 bytes
// replaced by the right tag (frame.h's internal::Resign), so that the strict
// payload parser behind the MAC check is fuzzed too. Every accepted frame
// must be valid and re-encode to exactly the bytes it was decoded from
// (canonical).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "repl/frame.h"

namespace {

namespace repl = tandem::repl;

constexpr std::string_view kFuzzKey = "tandem-fuzz-cluster-key";
constexpr size_t kLengthOffset = 8;
constexpr size_t kSeqOffset = 12;
constexpr size_t kAcceptOffset = 28;

struct Outcome {
  std::vector<repl::Frame> frames;
  std::string error;
};

// Feeds `bytes` split at `split`, drains, and checks every frame produced.
Outcome Decode(std::span<const uint8_t> bytes, size_t split, repl::Direction from) {
  repl::FrameDecoder d{std::string(kFuzzKey), from};
  Outcome out;
  size_t consumed = 0;
  for (std::span<const uint8_t> piece : {bytes.first(split), bytes.subspan(split)}) {
    d.Feed(piece);
    repl::Frame f;
    while (d.Next(&f) == repl::FrameDecoder::kFrame) {
      if (!repl::Validate(f).ok() || !repl::ValidateIds(f, from).ok()) std::abort();
      std::vector<uint8_t> again = repl::EncodeFrame(f, kFuzzKey, from);
      if (again.size() > bytes.size() - consumed ||
          !std::equal(again.begin(), again.end(), bytes.begin() + consumed)) {
        std::abort();  // not canonical
      }
      consumed += again.size();
      out.frames.push_back(std::move(f));
    }
  }
  out.error = d.error();
  return out;
}

void CheckStream(std::span<const uint8_t> bytes, size_t split, repl::Direction from) {
  Outcome whole = Decode(bytes, bytes.size(), from);
  Outcome pieces = Decode(bytes, std::min(split, bytes.size()), from);
  if (whole.frames != pieces.frames || whole.error != pieces.error) std::abort();
}

void PutLe(std::vector<uint8_t>* b, size_t at, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; ++i) (*b)[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Makes `b` one frame with a fitting header and a valid tag: the first frame
// of a connection as sent from `from`.
void Resign(std::vector<uint8_t>* b, repl::Direction from) {
  const size_t body = b->size() - repl::kMacBytes;
  std::copy_n("TNRP\x02", 5, b->begin());
  PutLe(b, kLengthOffset, 4, body - repl::kHeaderBytes);
  PutLe(b, kSeqOffset, 8, 1);
  if (from == repl::Direction::kFromConnecting) {
    PutLe(b, kAcceptOffset, 8, 0);
  } else if (std::all_of(b->begin() + kAcceptOffset, b->begin() + kAcceptOffset + 8,
                         [](uint8_t x) { return x == 0; })) {
    PutLe(b, kAcceptOffset, 8, 1);
  }
  repl::internal::Resign(b, kFuzzKey, from);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > repl::kFrameBytesMax) return 0;
  std::vector<uint8_t> bytes(data, data + size);
  const size_t split = size == 0 ? 0 : data[0];
  const repl::Direction from = size > 1 && (data[1] & 1) != 0 ? repl::Direction::kFromConnecting
                                                             : repl::Direction::kFromAccepting;
  CheckStream(bytes, split, from);
  if (size >= repl::kHeaderBytes + repl::kMacBytes) {
    Resign(&bytes, from);
    CheckStream(bytes, split, from);
  }
  return 0;
}
