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
  TANDEM_CHECK(!thread_.joinable());
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = false;
  }
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
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
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
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  TANDEM_RETURN_IF_ERROR(t.Begin());
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
    auto cur = db_.Prepare("SELECT status FROM hosts WHERE id = ?1 AND agent_address = ?2");
    if (!cur.ok()) return cur.status();
    cur->Bind(1, p.id).Bind(2, p.agent_address);
    auto row = cur->Step();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    const std::string old_status = cur->Text(0);
    std::string status, reason;
    json facts = p.old_facts;
    const Result<json>& a = *p.answer;
    if (a.ok() && a->is_object()) {
      facts = *a;
      StatusFromFacts(facts, &status, &reason);
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
    }
    last_active_[cluster] = now_active;
  }
  auto trim = db_.Prepare("DELETE FROM host_history WHERE id <= (SELECT MAX(id) FROM host_history) - ?1");
  if (!trim.ok()) return trim.status();
  TANDEM_RETURN_IF_ERROR(trim->Bind(1, kHostHistoryRowsMax).Run());
  TANDEM_RETURN_IF_ERROR(t.Commit());
  for (const std::string& line : lines) Log(1, line);
  return Status::Ok();
}

}  // namespace tandem::console
