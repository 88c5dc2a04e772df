// Seeded deterministic simulation of two tandemd hosts (FoundationDB / VOPR
// style): one 64-bit seed drives message loss and delay, partitions, crashes
// and restarts, OS hangs (pauses), clock drift, connectivity-test failures,
// failing take-over steps, admin commands (some takeovers forced), replica
// state changes (resyncs, Outdated) and store disk failures. The real ha::Step runs inside;
// everything around it (network, executor, clocks, disks) is simulated.
// Invariants are checked after every step; a violation reports the seed.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "ha/state_machine.h"

namespace tandem::sim {

struct SimOptions {
  uint64_t seed = 1;
  int64_t duration_ms = 60000;
  bool faults = true;        // inject crashes, pauses, partitions, ...
  bool admin_ops = true;     // random takeover/giveback/offline/online/restore
  bool trace = false;        // print every transition
};

struct SimResult {
  bool ok = true;
  std::string violation;  // first violated invariant, with sim time
  int transitions = 0;
  int takeovers = 0;      // unplanned failovers checked against the deadline
  int failovers_checked = 0;
  int failed_peer_takeovers = 0;  // of `takeovers`: the active's disk failed (R-FO-1)
  int disk_changes = 0;           // DiskState changes of the replicas (R-DS-*)
  int disk_failures = 0;          // LocalFailure "disk failed: ..." injected
  int promotions_held = 0;        // promotions refused: replica not UpToDate (notes)
  int forced_promotions = 0;      // became ACTIVE through `ha takeover --force`
  std::vector<std::string> trace;
};

SimResult RunSimulation(const SimOptions& opts);

}  // namespace tandem::sim
