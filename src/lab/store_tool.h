// `tandem store fill`: writes test data through the volume socket of a
// running host (docs/REPLICATION.md, "Writing to the store"), so every byte
// takes the real path: group commit, replication, acknowledgement.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::lab {

struct FillOptions {
  std::string config;          // the host's tandemd.toml
  int files = 1;               // --files K
  uint64_t bytes = 1 << 20;    // --bytes N: per file
  uint64_t write_bytes = 64 * 1024;  // size of each append
  int window = 64;             // requests in flight
  std::string prefix = "fill/";
  uint64_t seed = 1;           // content is a function of (seed, file, offset)
  // Called for every acknowledged append: file index and the end of the
  // acknowledged data (crash tests: every acknowledged byte must survive).
  std::function<void(int file, uint64_t end)> on_ack;
};

// Returns {"files","bytes","writes","seconds","mb_per_s","latency_ms":{p50,p99,max},
// "paths":[...]}; an error if any write is refused.
Result<nlohmann::json> StoreFill(const FillOptions& o);

// Writes one whole file (`path` relative to the store, e.g. a segment's
// "events/...seg") through the volume socket of the running host whose
// tandemd.toml is `config`: a create, then appends of at most
// kPutChunkBytes, each waited for (acknowledged as the replication protocol
// defines). Error: no [replication], the socket, or a refused write (the
// daemon's reason; e.g. the file exists or the host is not active).
inline constexpr size_t kPutChunkBytes = 1 << 20;
Status StorePut(const std::string& config, const std::string& path, const std::string& data);

// The byte at `offset` of file `index` for `seed` (tests recompute it).
uint8_t FillByte(uint64_t seed, int index, uint64_t offset);

}  // namespace tandem::lab
