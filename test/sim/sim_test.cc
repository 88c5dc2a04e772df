// Runs the two-host simulation over many seeds (ENGINEERING.md #4).
//   TANDEM_SIM_SEEDS=N      number of seeds (default 500)
//   TANDEM_SIM_SEED=S       replay one seed, with a trace of transitions
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "sim/sim.h"

namespace tandem::sim {
namespace {

uint64_t EnvU64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : def;
}

TEST(Simulation, ManySeedsKeepInvariants) {
  uint64_t one = EnvU64("TANDEM_SIM_SEED", 0);
  uint64_t first = one ? one : 1;
  uint64_t count = one ? 1 : EnvU64("TANDEM_SIM_SEEDS", 500);
  int transitions = 0, takeovers = 0, failed_peer = 0, disk_changes = 0, disk_failures = 0;
  int held = 0, forced = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.trace = one != 0;
    SimResult r = RunSimulation(o);
    for (const auto& line : r.trace) std::cout << line << "\n";
    ASSERT_TRUE(r.ok) << "seed=" << seed << " (replay: TANDEM_SIM_SEED=" << seed
                      << " build/bin/sim_test)\n"
                      << r.violation;
    transitions += r.transitions;
    takeovers += r.takeovers;
    failed_peer += r.failed_peer_takeovers;
    disk_changes += r.disk_changes;
    disk_failures += r.disk_failures;
    held += r.promotions_held;
    forced += r.forced_promotions;
  }
  std::cout << count << " seeds, " << transitions << " transitions, " << takeovers
            << " unplanned failovers met their deadline (" << failed_peer
            << " from a FAILED active), " << disk_changes << " replica state changes, "
            << disk_failures << " disk failures, " << held
            << " promotions held back (replica not UpToDate), " << forced
            << " forced promotions\n";
  // The simulation must actually exercise failovers, or it proves nothing.
  if (count >= 50) {
    EXPECT_GT(takeovers, static_cast<int>(count / 10));
    EXPECT_GT(transitions, static_cast<int>(count * 5));
    EXPECT_GT(failed_peer, 0);
    EXPECT_GT(held, static_cast<int>(count / 10));
    EXPECT_GT(forced, 0);
  }
}

// Without faults the cluster forms once and stays put.
TEST(Simulation, QuietClusterFormsOnce) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.faults = false;
    o.trace = true;
    SimResult r = RunSimulation(o);
    ASSERT_TRUE(r.ok) << "seed=" << seed << "\n" << r.violation;
    std::string trace;
    for (const auto& line : r.trace) trace += line + "\n";
    EXPECT_EQ(r.transitions, 2) << "seed=" << seed << ": one Active and one Standby expected\n"
                                << trace;
  }
}

}  // namespace
}  // namespace tandem::sim
