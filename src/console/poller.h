// The console's poller (docs/CONSOLE.md, "Poller"): a thread that, every
// interval, reads the facts of every paired host through its agent, stores
// them with the host's HA status, and records each status change (and each
// change of which host of a cluster is Active: a failover) in host_history.
//
// Thread-safety: PollOnce, Start and Stop from one owner thread; the
// database is used under db.mu(), never while an agent call is running.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "console/agent_client.h"
#include "console/db.h"
#include "ha/types.h"
#include "os/clock.h"

namespace tandem::console {

inline constexpr int64_t kPollIntervalMsDefault = 5000;
inline constexpr size_t kPollParallel = 4;            // agent calls at once
inline constexpr int64_t kHostHistoryRowsMax = 100000;  // older rows are dropped

// The status names the console stores: the HA statuses as displayed
// ("Active", "Setting Offline", ...), "Unknown" (the agent cannot be read)
// and "Unclustered" (the agent answers; the host runs no HA role).
inline constexpr const char* kStatusUnknown = "Unknown";
inline constexpr const char* kStatusUnclustered = "Unclustered";

// A host's status and its reason from its facts: facts.ha.local.status
// ("ACTIVE" -> "Active"; reason facts.ha.local.reason), else Unclustered.
void StatusFromFacts(const nlohmann::json& facts, std::string* status, std::string* reason);
// A stored status name as an HA status (Unknown and Unclustered, and any
// name this build does not know, are ha::HostStatus::kUnknown).
ha::HostStatus ParseStoredStatus(const std::string& status);

struct PollerOptions {
  int64_t interval_ms = kPollIntervalMsDefault;
  const os::Clock* clock = &os::RealClock::Get();  // WallMs: facts and history times
  std::function<void(int level, const std::string& message)> log;  // 1 info, 2 warn
};

class Poller {
 public:
  Poller(Db& db, AgentClient& agents, PollerOptions options);
  ~Poller();  // Stop()
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Polls every interval_ms in a thread of its own (the first round at once).
  void Start();
  // Wakes the thread, lets a running round finish (agent calls time out
  // after kAgentCallTimeoutMs), joins. Idempotent.
  void Stop();
  // One round, in the caller's thread. Error: a database failure.
  Status PollOnce();

 private:
  void Log(int level, const std::string& m) const {
    if (options_.log) options_.log(level, m);
  }

  Db& db_;
  AgentClient& agents_;
  PollerOptions options_;
  // The last host seen Active per cluster: a failover is a different host
  // becoming Active (even after a round with none). Loaded from the
  // database at the first round.
  std::map<std::string, std::string> last_active_;
  bool loaded_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace tandem::console
