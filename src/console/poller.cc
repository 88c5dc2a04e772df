#include "console/poller.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

namespace tandem::console {

using nlohmann::json;

namespace {

const json* Member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string StringMember(const json& j, const char* key) {
  const json* v = Member(j, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

// The cluster a host belongs to: the console's record (cluster_id), else
// what its facts report.
std::string ClusterOf(const std::string& recorded, const json& facts) {
  if (!recorded.empty()) return recorded;
  const json* c = Member(facts, "cluster");
  return c != nullptr ? StringMember(*c, "name") : std::string();
}

// The console's side of R-FO-3 step 5 (docs/CONSOLE.md, "Deploying"): the
// configuration last deployed to a cluster's new active host (the document
// its agent accepted, same revision) is sent to it again right after the
// failover is seen. Outside the round's transaction.
void PushDeployedConfig(Db& db, AgentClient& agents, const std::vector<std::string>& hosts,
                        const std::function<void(int, const std::string&)>& log) {
  for (const std::string& name : hosts) {
    AgentEndpoint agent;
    int64_t revision = 0;
    json document;
    {
      std::lock_guard<std::mutex> l(db.mu());
      auto s = db.Prepare(
          "SELECT agent_address, agent_cert_pem, agent_key, deployed_revision, deployed_document "
          "FROM hosts WHERE name = ?1 AND agent_address IS NOT NULL AND deployed_document IS NOT NULL");
      if (!s.ok()) continue;
      s->Bind(1, name);
      auto row = s->Step();
      if (!row.ok() || !*row) continue;  // never deployed to: nothing to send
      agent = AgentEndpoint{s->Text(0), s->Text(1), s->Text(2)};
      revision = s->Int(3);
      document = json::parse(s->Text(4), nullptr, /*allow_exceptions=*/false);
    }
    if (!document.is_object()) continue;
    auto a = agents.Invoke(agent, "PUT", "/api/v1/agent/config",
                           json{{"revision", revision}, {"document", document}}, kAgentCallTimeoutMs);
    if (log) {
      log(a.ok() ? 1 : 2, "console: host " + name + " became active: configuration revision " +
                              std::to_string(revision) + " sent again: " +
                              (a.ok() ? std::string("accepted") : a.status().message()));
    }
  }
}

struct Polled {
  int64_t id = 0;
  std::string name, agent_address, old_status, cluster_recorded;
  json old_facts;
  AgentEndpoint endpoint;
  std::optional<Result<json>> answer;
};

}  // namespace

void StatusFromFacts(const json& facts, std::string* status, std::string* reason) {
  const json* ha = Member(facts, "ha");
  const json* local = ha != nullptr ? Member(*ha, "local") : nullptr;
  if (local == nullptr || !local->is_object()) {
    *status = kStatusUnclustered;
    *reason = "the agent answers; the host runs no HA role";
    return;
  }
  const std::string name = StringMember(*local, "status");
  *status = kStatusUnknown;
  for (uint8_t v = 0; v <= ha::kHostStatusMax; ++v) {
    auto s = ha::StatusFromWire(v);
    if (s && ha::StatusName(*s) == name) *status = std::string(ha::StatusDisplay(*s));
  }
  *reason = StringMember(*local, "reason");
  if (*status == kStatusUnknown) {
    *reason = "the host reports an HA status this console does not know";
  } else if (reason->empty()) {
    *reason = "reported by the host";
  }
}

ha::HostStatus ParseStoredStatus(const std::string& status) {
  for (uint8_t v = 0; v <= ha::kHostStatusMax; ++v) {
    auto s = ha::StatusFromWire(v);
    if (s && (ha::StatusDisplay(*s) == status || ha::StatusName(*s) == status)) return *s;
  }
  return ha::HostStatus::kUnknown;
}

Poller::Poller(Db& db, AgentClient& agents, PollerOptions options)
    : db_(db), agents_(agents), options_(std::move(options)) {
  TANDEM_CHECK(options_.interval_ms > 0 && options_.clock != nullptr);
}

Poller::~Poller() { Stop(); }

void Poller::Start() {
  TANDEM_CHECK(!thread_.joinable() && !push_thread_.joinable());
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = false;
    pushing_in_thread_ = true;
  }
  stopping_ = false;
  push_thread_ = std::thread([this] { PushThread(); });
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      l.unlock();
      Status st = PollOnce();
      if (!st.ok()) Log(2, "console: poller: " + st.message());
      l.lock();
      cv_.wait_for(l, std::chrono::milliseconds(options_.interval_ms), [this] { return stop_; });
    }
  });
}

void Poller::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  stopping_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (push_thread_.joinable()) push_thread_.join();
  std::lock_guard<std::mutex> l(mu_);
  pushing_in_thread_ = false;
  stopping_ = false;
}

Status Poller::PollOnce() {
  std::vector<Polled> hosts;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto s = db_.Prepare(
        "SELECT h.id, h.name, h.agent_address, h.agent_cert_pem, h.agent_key, h.status, "
        "c.name, h.facts_json FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id "
        "WHERE h.agent_address IS NOT NULL ORDER BY h.id");
    if (!s.ok()) return s.status();
    for (;;) {
      auto row = s->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      Polled p;
      p.id = s->Int(0);
      p.name = s->Text(1);
      p.agent_address = s->Text(2);
      p.endpoint = AgentEndpoint{p.agent_address, s->Text(3), s->Text(4)};
      p.old_status = s->Text(5);
      p.cluster_recorded = s->Text(6);
      p.old_facts = json::parse(s->Text(7), nullptr, /*allow_exceptions=*/false);
      hosts.push_back(std::move(p));
    }
  }
  if (!loaded_) {
    for (const Polled& p : hosts) {
      const std::string cluster = ClusterOf(p.cluster_recorded, p.old_facts);
      if (!cluster.empty() && p.old_status == "Active") last_active_[cluster] = p.name;
    }
    loaded_ = true;
  }

  // Facts stored after this by someone else (an upgrade, api_upgrade.cc)
  // are newer than this round's: such a host is left alone this round.
  const int64_t round_start = options_.clock->WallMs();
  uint64_t push_seq_at_start = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    push_seq_at_start = push_seq_;
  }
  // The agent calls, a few at a time, outside the database lock.
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < hosts.size(); i = next++) {
      hosts[i].answer = agents_.Facts(hosts[i].endpoint);
    }
  };
  std::vector<std::thread> workers;
  const size_t n = std::min(kPollParallel, hosts.size());
  for (size_t i = 1; i < n; ++i) workers.emplace_back(work);
  work();
  for (std::thread& t : workers) t.join();

  const int64_t now = options_.clock->WallMs();
  std::vector<std::string> lines;
  std::vector<UpgradePair> auto_push;  // after the round (R-UP-2)
  std::vector<std::string> new_actives;  // after a failover (R-FO-3 step 5)
  std::unique_lock<std::mutex> l(db_.mu());
  Transaction t(db_);
  TANDEM_RETURN_IF_ERROR(t.Begin());
  // Secondaries behind their primary (R-UP-1), from this round's facts.
  std::map<int64_t, json> fresh;
  for (const Polled& p : hosts) {
    if (p.answer->ok() && (*p.answer)->is_object()) fresh[p.id] = **p.answer;
  }
  auto pairs = FindUpgradePairs(db_, fresh);
  if (!pairs.ok()) return pairs.status();
  std::map<int64_t, std::pair<UpgradeNeed, const UpgradePair*>> behind;  // by secondary id
  for (const UpgradePair& pair : *pairs) {
    UpgradeNeed need = CompareFacts(pair.primary.facts, pair.secondary.facts);
    if (need.needed()) behind[pair.secondary.id] = {std::move(need), &pair};
  }
  int64_t auto_push_on = 1;
  {
    auto s = db_.Prepare("SELECT value FROM settings WHERE key = 'auto_push_packages'");
    if (!s.ok()) return s.status();
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (*row && s->Text(0) == "0") auto_push_on = 0;
  }
  auto history = [&](const char* kind, const std::string& host, const std::string& cluster,
                     const std::string& from, const std::string& to,
                     const std::string& reason) -> Status {
    auto ins = db_.Prepare(
        "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!ins.ok()) return ins.status();
    ins->Bind(1, now).Bind(2, std::string_view(kind)).Bind(3, host).Bind(5, from).Bind(6, to).Bind(7, reason);
    if (cluster.empty()) ins->BindNull(4); else ins->Bind(4, cluster);
    return ins->Run();
  };
  std::map<std::string, std::vector<std::string>> active;  // cluster -> Active hosts
  std::map<std::string, std::string> old_status_of;
  for (Polled& p : hosts) {
    // The host may have been deleted or re-paired meanwhile: its row now.
    auto cur = db_.Prepare(
        "SELECT status, status_reason, (SELECT MAX(at_ms) FROM host_history WHERE host = hosts.name "
        "AND kind = 'status' AND new_status = 'Upgrading'), facts_at_ms FROM hosts "
        "WHERE id = ?1 AND agent_address = ?2");
    if (!cur.ok()) return cur.status();
    cur->Bind(1, p.id).Bind(2, p.agent_address);
    auto row = cur->Step();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    if (!cur->IsNull(3) && cur->Int(3) > round_start) continue;
    {
      // An automatic push to this host finished during the round (the
      // clock may not have moved: compare push sequence numbers).
      std::lock_guard<std::mutex> pl(mu_);  // after db_.mu(), as everywhere
      auto pushed = pushed_at_seq_.find(p.id);
      if (pushing_hosts_.count(p.id) != 0) continue;
      if (pushed != pushed_at_seq_.end() && pushed->second > push_seq_at_start) continue;
    }
    const std::string old_status = cur->Text(0);
    std::string status, reason;
    json facts = p.old_facts;
    const Result<json>& a = *p.answer;
    if (a.ok() && a->is_object()) {
      facts = *a;
      StatusFromFacts(facts, &status, &reason);
      auto b = behind.find(p.id);
      if (old_status == kStatusUpgrading && !cur->IsNull(2) && now - cur->Int(2) < kUpgradingStaleMs) {
        // The console is pushing packages to it (api_upgrade.cc) and says when it is done.
        status = kStatusUpgrading;
        reason = cur->Text(1);
      } else if (b != behind.end() && status == "Standby") {
        status = kStatusNeedsUpgrade;
        reason = "behind primary " + b->second.second->primary.name + ": " + b->second.first.Reason();
        if (!b->second.first.software && auto_push_on != 0) auto_push.push_back(*b->second.second);
      }
      auto up = db_.Prepare(
          "UPDATE hosts SET facts_json = ?1, facts_at_ms = ?2, status = ?3, status_reason = ?4 "
          "WHERE id = ?5");
      if (!up.ok()) return up.status();
      TANDEM_RETURN_IF_ERROR(
          up->Bind(1, facts.dump(-1, ' ', false, json::error_handler_t::replace))
              .Bind(2, now).Bind(3, status).Bind(4, reason).Bind(5, p.id).Run());
    } else {
      status = kStatusUnknown;
      reason = a.ok() ? "the agent's facts are not a JSON object" : a.status().message();
      auto up = db_.Prepare("UPDATE hosts SET status = ?1, status_reason = ?2 WHERE id = ?3");
      if (!up.ok()) return up.status();
      TANDEM_RETURN_IF_ERROR(up->Bind(1, status).Bind(2, reason).Bind(3, p.id).Run());
    }
    const std::string cluster = ClusterOf(p.cluster_recorded, facts);
    if (status != old_status) {
      TANDEM_RETURN_IF_ERROR(history("status", p.name, cluster, old_status, status, reason));
      lines.push_back("console: host " + p.name + " status " + old_status + " -> " + status + " (" +
                      reason + ")");
    }
    old_status_of[p.name] = old_status;
    if (!cluster.empty() && status == "Active") active[cluster].push_back(p.name);
  }
  for (const auto& [cluster, names] : active) {
    if (names.size() != 1) continue;  // none, or both (split brain: shown by the statuses)
    const std::string& now_active = names[0];
    auto it = last_active_.find(cluster);
    if (it != last_active_.end() && it->second != now_active) {
      const std::string reason = "failover: " + now_active + " active, was " + it->second;
      TANDEM_RETURN_IF_ERROR(
          history("failover", now_active, cluster, old_status_of[now_active], "Active", reason));
      lines.push_back("console: cluster " + cluster + " " + reason);
      new_actives.push_back(now_active);
    }
    last_active_[cluster] = now_active;
  }
  auto trim = db_.Prepare("DELETE FROM host_history WHERE id <= (SELECT MAX(id) FROM host_history) - ?1");
  if (!trim.ok()) return trim.status();
  TANDEM_RETURN_IF_ERROR(trim->Bind(1, kHostHistoryRowsMax).Run());
  TANDEM_RETURN_IF_ERROR(t.Commit());
  l.unlock();
  for (const std::string& line : lines) Log(1, line);
  AutoPush(auto_push);
  PushDeployedConfig(db_, agents_, new_actives, options_.log);
  return Status::Ok();
}

// R-UP-2: a secondary that lacks only content packages gets them from its
// primary without being asked (setting auto_push_packages); outside the
// database lock, after the round: handed to the push thread once Start()ed
// (a push can take minutes; the polling goes on meanwhile), else run here.
void Poller::AutoPush(const std::vector<UpgradePair>& pairs) {
  std::vector<std::string> here;
  {
    std::lock_guard<std::mutex> l(mu_);
    const int64_t now = options_.clock->NowMs();
    for (const UpgradePair& pair : pairs) {
      auto failed = auto_push_failed_ms_.find(pair.secondary.name);
      if (failed != auto_push_failed_ms_.end() && now - failed->second < kAutoPushRetryMs) continue;
      if (!push_clusters_.insert(pair.cluster).second) continue;  // queued or running already
      if (pushing_in_thread_) {
        push_queue_.push_back(pair.cluster);
      } else {
        here.push_back(pair.cluster);
      }
    }
  }
  cv_.notify_all();
  for (const std::string& cluster : here) {
    RunAutoPush(cluster);
    std::lock_guard<std::mutex> l(mu_);
    push_clusters_.erase(cluster);
  }
}

void Poller::PushThread() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [this] { return stop_ || !push_queue_.empty(); });
    if (stop_) break;
    const std::string cluster = std::move(push_queue_.front());
    push_queue_.pop_front();
    l.unlock();
    RunAutoPush(cluster);
    l.lock();
    push_clusters_.erase(cluster);
  }
  push_queue_.clear();
  push_clusters_.clear();
}

// One automatic push to `cluster`'s secondary, from the pair as the
// database has it now (a queued push may run a while after its round): only
// while the secondary is still Needs Upgrade and lacks only packages.
void Poller::RunAutoPush(const std::string& cluster) {
  UpgradePair pair;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto pairs = FindUpgradePairs(db_, {});
    if (!pairs.ok()) {
      Log(2, "console: cluster " + cluster + ": automatic package push: database: " +
                 pairs.status().message());
      return;
    }
    auto it = std::find_if(pairs->begin(), pairs->end(),
                           [&](const UpgradePair& p) { return p.cluster == cluster; });
    if (it == pairs->end()) return;  // gone meanwhile
    pair = std::move(*it);
  }
  if (pair.secondary.status != kStatusNeedsUpgrade) return;
  const UpgradeNeed need = CompareFacts(pair.primary.facts, pair.secondary.facts);
  if (!need.needed() || need.software) return;
  const int64_t now = options_.clock->NowMs();
  {
    std::lock_guard<std::mutex> l(mu_);
    pushing_hosts_.insert(pair.secondary.id);
  }
  UpgradeOutcome o = PushPackages(db_, agents_, pair, need, *options_.clock,
                                  "automatic: setting auto_push_packages", /*wait=*/false, &stopping_);
  {
    std::lock_guard<std::mutex> l(mu_);
    pushing_hosts_.erase(pair.secondary.id);
    pushed_at_seq_[pair.secondary.id] = ++push_seq_;
  }
  if (o.error == "busy") return;  // an upgrade the API asked for runs
  if (!o.error.empty()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto_push_failed_ms_[pair.secondary.name] = now;
    }
    Log(2, "console: cluster " + pair.cluster + ": automatic package push to " + pair.secondary.name +
               " failed (retried in " + std::to_string(kAutoPushRetryMs / 1000) + " s): " + o.error);
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    auto_push_failed_ms_.erase(pair.secondary.name);
  }
  Log(1, "console: cluster " + pair.cluster + ": pushed " + std::to_string(o.pushed.size()) +
             " content package(s) to " + pair.secondary.name + " automatically; it is " + o.status);
}

}  // namespace tandem::console
