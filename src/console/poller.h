// The console's poller (docs/CONSOLE.md, "Poller"): a thread that, every
// interval, reads the facts of every paired host through its agent, stores
// them with the host's HA status, and records each status change (and each
// change of which host of a cluster is Active: a failover) in host_history.
//
// Thread-safety: PollOnce, Start and Stop from one owner thread; the
// database is used under db.mu(), never while an agent call is running.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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

// ---- Upgrades and content packages (docs/CONSOLE.md, "Upgrades and
// content packages"; R-UP-1, R-UP-2; console/api_upgrade.cc) ----

// The console's own statuses of a cluster's secondary: older software or
// content packages than its primary's; and while the console pushes
// packages to it. A host stays Upgrading at most kUpgradingStaleMs (a
// console stopped mid-upgrade): then the poller recomputes its status.
inline constexpr const char* kStatusNeedsUpgrade = "Needs Upgrade";
inline constexpr const char* kStatusUpgrading = "Upgrading";
inline constexpr int64_t kUpgradingStaleMs = 10 * 60000;
inline constexpr size_t kUpgradeReasonItemsMax = 5;
inline constexpr int64_t kPackageCallTimeoutMs = 30000;  // one package's GET or PUT
inline constexpr int64_t kAutoPushRetryMs = 60000;       // after a failed automatic push

// -1, 0 or 1 as dotted-integer version `a` is older than, equal to or newer
// than `b` ("1.10" > "1.9"; missing parts are 0: "1.0" == "1"). A part that
// is not a number compares as 0.
int CompareVersions(const std::string& a, const std::string& b);

// What a secondary lacks against its primary, from both hosts' facts.
struct UpgradeNeed {
  bool software = false;  // facts.version older than the primary's
  std::string primary_version, secondary_version;
  std::vector<std::string> packages;  // the primary's packages the secondary lacks or has older
  std::vector<std::string> items;     // "package http 1.2 < 1.3", ..., one per difference
  bool needed() const { return software || !packages.empty(); }
  // The status_reason: the first kUpgradeReasonItemsMax items ("; " between)
  // and "and N more".
  std::string Reason() const;
};
UpgradeNeed CompareFacts(const nlohmann::json& primary, const nlohmann::json& secondary);

// A cluster's member as the console has it.
struct UpgradeMember {
  int64_t id = 0;
  std::string name, status;
  nlohmann::json facts;  // null when never read
  AgentEndpoint endpoint;  // address "" : not paired
};
struct UpgradePair {
  std::string cluster;
  UpgradeMember primary, secondary;
};
// The clusters whose two members are paired hosts with facts: those of the
// clusters table (primary_host_id, secondary_host_id), then the clusters
// the hosts' facts report ({"name", "role", "peer"}) among hosts in no
// recorded cluster: one host reporting role primary and one role secondary
// with the same cluster name (more than one candidate: the one whose facts
// address is the other's "peer"). `fresh`: facts newer than the stored
// ones, by host id. REQUIRES: db.mu() held.
Result<std::vector<UpgradePair>> FindUpgradePairs(Db& db,
                                                  const std::map<int64_t, nlohmann::json>& fresh);

// Pushes the content packages `need` lists from the pair's primary agent to
// its secondary's (GET, then PUT /api/v1/agent/packages/{name}): the
// secondary is Upgrading meanwhile (history rows), its facts are read
// again, and its status is then its HA status when nothing differs any
// more, else Needs Upgrade. `by`: who asked, for the history reasons.
// Answer: the packages pushed. Error: an agent failure naming the host (the
// secondary is Needs Upgrade then), or a database failure. One upgrade at
// a time in the process: Error "busy" when `wait` is false and another runs.
// `stop` (may be null): checked before each package; once true the push
// ends there as a failure (the console is stopping).
struct UpgradeOutcome {
  std::vector<std::string> pushed;
  std::string status, reason;
  std::string failed_host;  // set on an agent failure
  std::string error;        // "" : done
};
UpgradeOutcome PushPackages(Db& db, AgentClient& agents, const UpgradePair& pair,
                            const UpgradeNeed& need, const os::Clock& clock, const std::string& by,
                            bool wait, const std::atomic<bool>* stop = nullptr);

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

  // Polls every interval_ms in a thread of its own (the first round at once),
  // and runs the automatic package pushes (R-UP-2) in a second thread, so
  // that a push (minutes, for big packages) never delays the polling: at
  // most one push per cluster is queued or running at a time.
  void Start();
  // Wakes the threads, lets a running round finish (agent calls time out
  // after kAgentCallTimeoutMs) and a running push end after its current
  // package (kPackageCallTimeoutMs per call), drops the queued pushes,
  // joins. Idempotent.
  void Stop();
  // One round, in the caller's thread. Error: a database failure. Without
  // Start, its automatic pushes run in the caller's thread too, before it
  // returns.
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
  // Automatic package pushes (R-UP-2): AutoPush hands the round's pairs
  // to the push thread (or, without Start, runs them at once); RunAutoPush
  // runs one.
  void AutoPush(const std::vector<UpgradePair>& pairs);
  void RunAutoPush(const std::string& cluster);
  void PushThread();

  std::mutex mu_;
  std::condition_variable cv_;  // stop_, push_queue_
  bool stop_ = false;           // GUARDED_BY(mu_)
  bool pushing_in_thread_ = false;  // GUARDED_BY(mu_): Start()ed
  std::deque<std::string> push_queue_;  // GUARDED_BY(mu_): clusters to push to
  std::set<std::string> push_clusters_;  // GUARDED_BY(mu_): queued or running
  // Pushes finished (a sequence number) and, per secondary host id, the
  // number of its last one: a round that began before a push to a host
  // finished leaves that host's row alone (its answer may predate the push).
  // A host being pushed to is left alone too (the push writes its status).
  uint64_t push_seq_ = 0;                              // GUARDED_BY(mu_)
  std::map<int64_t, uint64_t> pushed_at_seq_;          // GUARDED_BY(mu_)
  std::set<int64_t> pushing_hosts_;                    // GUARDED_BY(mu_)
  // When an automatic package push to a secondary failed last (steady ms
  // by host name): retried after kAutoPushRetryMs. GUARDED_BY(mu_).
  std::map<std::string, int64_t> auto_push_failed_ms_;
  std::atomic<bool> stopping_{false};  // a running push ends after its package
  std::thread thread_, push_thread_;
};

}  // namespace tandem::console
