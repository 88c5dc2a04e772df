// libFuzzer target for the heartbeat codec (docs/formats/heartbeat.md).
// Not part of the CMake build; build and run with:
//   clang++-14 -std=c++20 -fsanitize=fuzzer,address -Isrc \
//     test/fuzz/heartbeat_fuzz.cc src/peer/packet.cc src/ha/types.cc -lcrypto -o /tmp/hbfuzz
//   /tmp/hbfuzz -max_total_time=30
//
// Each input is decoded twice: as received (must never crash and, without
// the key, never be accepted), and with its last 32 bytes replaced by the
// right HMAC, so that the strict parser behind the MAC check is fuzzed too.
// Any accepted packet must re-encode to exactly its own bytes (canonical).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "peer/packet.h"

namespace {

constexpr std::string_view kFuzzKey = "tandem-fuzz-cluster-key";
constexpr size_t kMacBytes = 32;

void Check(const std::vector<uint8_t>& bytes) {
  tandem::peer::Packet p;
  tandem::peer::DropReason why = tandem::peer::DropReason::kCount;
  if (tandem::peer::Decode(bytes, kFuzzKey, &p, &why)) {
    if (tandem::peer::Encode(p, kFuzzKey) != bytes) std::abort();  // not canonical
  } else if (why >= tandem::peer::DropReason::kReplay) {
    std::abort();  // Decode never reports kReplay (or kCount)
  }
}

void Resign(std::vector<uint8_t>* b) {
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  size_t body = b->size() - kMacBytes;
  HMAC(EVP_sha256(), kFuzzKey.data(), static_cast<int>(kFuzzKey.size()), b->data(), body, mac,
       &len);
  if (len != kMacBytes) std::abort();
  std::copy(mac, mac + kMacBytes, b->begin() + static_cast<std::ptrdiff_t>(body));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  Check(bytes);
  if (size >= kMacBytes) {
    Resign(&bytes);
    Check(bytes);
  }
  return 0;
}
