// Benchmarks run on a lab cluster (bench/README.md, docs/PERFORMANCE.md).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::lab {

struct BenchOptions {
  std::string dir;  // lab directory (created)
  std::string bin_dir;
  int trials = 10;
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 3000;
};

// Unplanned (SIGKILL) and planned (takeover) outage statistics as JSON.
Result<nlohmann::json> BenchFailover(const BenchOptions& o);

}  // namespace tandem::lab
