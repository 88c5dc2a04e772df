// Upgrades and content packages (docs/CONSOLE.md, "Upgrades and content
// packages"; R-UP-1, R-UP-2): comparing a cluster's secondary with its
// primary (software version and content packages), pushing the primary's
// packages to the secondary through both agents, and
// POST /api/v1/clusters/{name}/upgrade. The poller (console/poller.cc)
// shows Needs Upgrade from the same comparison and pushes packages by
// itself when the setting auto_push_packages is on.
#include <algorithm>
#include <mutex>
#include <set>

#include "console/api.h"
#include "console/api_internal.h"
#include "console/poller.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

// One upgrade at a time in the process (the API's and the poller's).
std::mutex& UpgradeMutex() {
  static std::mutex mu;
  return mu;
}

std::string StringAt(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// name -> version of a facts document's packages.
std::map<std::string, std::string> PackagesOf(const json& facts) {
  std::map<std::string, std::string> out;
  if (!facts.is_object() || !facts.contains("packages") || !facts["packages"].is_array()) return out;
  for (const json& p : facts["packages"]) {
    const std::string name = StringAt(p, "name");
    if (!name.empty()) out[name] = StringAt(p, "version");
  }
  return out;
}

Status InsertHistory(Db& db, int64_t now, const std::string& host, const std::string& cluster,
                     const std::string& from, const std::string& to, const std::string& reason) {
  auto ins = db.Prepare(
      "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (?1, 'status', ?2, ?3, ?4, ?5, ?6)");
  if (!ins.ok()) return ins.status();
  ins->Bind(1, now).Bind(2, host).Bind(4, from).Bind(5, to).Bind(6, reason);
  if (cluster.empty()) ins->BindNull(3); else ins->Bind(3, cluster);
  return ins->Run();
}

// Sets host `id`'s status (and, when `facts` is an object, its facts) with
// a history row when the status changes. *found: false when the host is
// gone. REQUIRES: db.mu() held, in a transaction.
Status SetStatus(Db& db, int64_t id, const std::string& cluster, const std::string& status,
                 const std::string& reason, const json& facts, int64_t now, bool* found) {
  auto cur = db.Prepare("SELECT name, status FROM hosts WHERE id = ?1");
  if (!cur.ok()) return cur.status();
  cur->Bind(1, id);
  auto row = cur->Step();
  if (!row.ok()) return row.status();
  *found = *row;
  if (!*row) return Status::Ok();
  const std::string name = cur->Text(0), old = cur->Text(1);
  auto up = facts.is_object()
                ? db.Prepare("UPDATE hosts SET status = ?1, status_reason = ?2, facts_json = ?4, "
                             "facts_at_ms = ?5 WHERE id = ?3")
                : db.Prepare("UPDATE hosts SET status = ?1, status_reason = ?2 WHERE id = ?3");
  if (!up.ok()) return up.status();
  up->Bind(1, status).Bind(2, reason).Bind(3, id);
  if (facts.is_object()) {
    up->Bind(4, facts.dump(-1, ' ', false, json::error_handler_t::replace)).Bind(5, now);
  }
  TANDEM_RETURN_IF_ERROR(up->Run());
  if (old == status) return Status::Ok();
  return InsertHistory(db, now, name, cluster, old, status, reason);
}

}  // namespace

int CompareVersions(const std::string& a, const std::string& b) {
  auto parts = [](const std::string& v) {
    std::vector<uint64_t> out;
    uint64_t n = 0;
    bool number = true;
    for (size_t i = 0; i <= v.size(); ++i) {
      if (i == v.size() || v[i] == '.') {
        out.push_back(number ? n : 0);
        n = 0;
        number = true;
      } else if (v[i] >= '0' && v[i] <= '9' && n < (uint64_t{1} << 59)) {
        n = n * 10 + static_cast<uint64_t>(v[i] - '0');
      } else {
        number = false;
      }
    }
    return out;
  };
  std::vector<uint64_t> x = parts(a), y = parts(b);
  const size_t len = std::max(x.size(), y.size());
  x.resize(len, 0);
  y.resize(len, 0);
  return x < y ? -1 : (x == y ? 0 : 1);
}

std::string UpgradeNeed::Reason() const {
  std::string out;
  for (size_t i = 0; i < items.size() && i < kUpgradeReasonItemsMax; ++i) {
    out += (i == 0 ? "" : "; ") + items[i];
  }
  if (items.size() > kUpgradeReasonItemsMax) {
    out += "; and " + std::to_string(items.size() - kUpgradeReasonItemsMax) + " more";
  }
  return out;
}

UpgradeNeed CompareFacts(const json& primary, const json& secondary) {
  UpgradeNeed n;
  n.primary_version = StringAt(primary, "version");
  n.secondary_version = StringAt(secondary, "version");
  if (!n.primary_version.empty() && !n.secondary_version.empty() &&
      CompareVersions(n.secondary_version, n.primary_version) < 0) {
    n.software = true;
    n.items.push_back("software " + n.secondary_version + " < " + n.primary_version);
  }
  const auto mine = PackagesOf(secondary);
  for (const auto& [name, version] : PackagesOf(primary)) {
    auto it = mine.find(name);
    if (it == mine.end()) {
      n.packages.push_back(name);
      n.items.push_back("package " + name + " " + version + " missing");
    } else if (CompareVersions(it->second, version) < 0) {
      n.packages.push_back(name);
      n.items.push_back("package " + name + " " + it->second + " < " + version);
    }
  }
  return n;
}

Result<std::vector<UpgradePair>> FindUpgradePairs(Db& db, const std::map<int64_t, json>& fresh) {
  struct Row {
    UpgradeMember m;
    bool recorded = false;  // in a cluster of the clusters table
  };
  std::map<int64_t, Row> hosts;
  auto s = db.Prepare(
      "SELECT id, name, status, agent_address, agent_cert_pem, agent_key, facts_json, cluster_id "
      "FROM hosts WHERE agent_address IS NOT NULL ORDER BY id");
  if (!s.ok()) return s.status();
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Row r;
    r.m.id = s->Int(0);
    r.m.name = s->Text(1);
    r.m.status = s->Text(2);
    r.m.endpoint = AgentEndpoint{s->Text(3), s->Text(4), s->Text(5)};
    auto f = fresh.find(r.m.id);
    r.m.facts = f != fresh.end() ? f->second
                                 : json::parse(s->Text(6), nullptr, /*allow_exceptions=*/false);
    if (!r.m.facts.is_object()) r.m.facts = nullptr;
    r.recorded = !s->IsNull(7);
    hosts[r.m.id] = std::move(r);
  }
  std::vector<UpgradePair> out;
  std::set<std::string> names;
  auto c = db.Prepare(
      "SELECT name, primary_host_id, secondary_host_id FROM clusters "
      "WHERE primary_host_id IS NOT NULL AND secondary_host_id IS NOT NULL ORDER BY id");
  if (!c.ok()) return c.status();
  for (;;) {
    auto row = c->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    names.insert(c->Text(0));
    auto p = hosts.find(c->Int(1)), q = hosts.find(c->Int(2));
    if (p == hosts.end() || q == hosts.end()) continue;
    if (!p->second.m.facts.is_object() || !q->second.m.facts.is_object()) continue;
    out.push_back(UpgradePair{c->Text(0), p->second.m, q->second.m});
  }
  // Clusters known from the hosts' facts only (the lab's own, say).
  auto cluster_of = [](const json& facts) {
    return facts.is_object() && facts.contains("cluster") && facts["cluster"].is_object()
               ? facts["cluster"]
               : json::object();
  };
  for (const auto& [sid, sec] : hosts) {
    const json sc = cluster_of(sec.m.facts);
    const std::string name = StringAt(sc, "name");
    if (sec.recorded || name.empty() || StringAt(sc, "role") != "secondary" || names.count(name)) {
      continue;
    }
    std::vector<const Row*> candidates, by_peer;
    for (const auto& [pid, pri] : hosts) {
      const json pc = cluster_of(pri.m.facts);
      if (pid == sid || pri.recorded || StringAt(pc, "name") != name ||
          StringAt(pc, "role") != "primary") {
        continue;
      }
      candidates.push_back(&pri);
      const std::string peer = StringAt(sc, "peer");
      if (!peer.empty() && StringAt(pri.m.facts, "address") == peer) by_peer.push_back(&pri);
    }
    const Row* primary = candidates.size() == 1 ? candidates[0]
                         : by_peer.size() == 1  ? by_peer[0]
                                                : nullptr;
    if (primary != nullptr) out.push_back(UpgradePair{name, primary->m, sec.m});
  }
  return out;
}

UpgradeOutcome PushPackages(Db& db, AgentClient& agents, const UpgradePair& pair,
                            const UpgradeNeed& need, const os::Clock& clock, const std::string& by,
                            bool wait, const std::atomic<bool>* stop) {
  UpgradeOutcome o;
  std::unique_lock<std::mutex> one(UpgradeMutex(), std::defer_lock);
  if (wait) {
    one.lock();
  } else if (!one.try_lock()) {
    o.error = "busy";
    return o;
  }
  const UpgradeMember& pri = pair.primary;
  const UpgradeMember& sec = pair.secondary;
  std::string list;
  for (const std::string& n : need.packages) list += (list.empty() ? "" : ", ") + n;
  {
    std::lock_guard<std::mutex> l(db.mu());
    Transaction t(db);
    Status st = t.Begin();
    bool found = false;
    if (st.ok()) {
      st = SetStatus(db, sec.id, pair.cluster, kStatusUpgrading,
                     "pushing " + std::to_string(need.packages.size()) + " content package(s) from " +
                         pri.name + " (" + by + "): " + list,
                     nullptr, clock.WallMs(), &found);
    }
    if (st.ok() && !found) st = Status::Error("host " + sec.name + " is no longer in the console");
    if (st.ok()) st = t.Commit();
    if (!st.ok()) {
      o.error = "database: " + st.message();
      return o;
    }
  }

  // The agent calls, outside the database lock.
  auto fail = [&o](const std::string& host, const std::string& what, const Status& st) {
    o.failed_host = host;
    o.error = "host " + host + ": " + what + ": " + st.message();
  };
  for (const std::string& name : need.packages) {
    if (stop != nullptr && stop->load()) {
      fail(sec.name, "package " + name + " not pushed", Status::Error("the console is stopping"));
      break;
    }
    const std::string path = "/api/v1/agent/packages/" + name;
    auto got = agents.Invoke(pri.endpoint, "GET", path, json::object(), kPackageCallTimeoutMs);
    if (!got.ok()) {
      fail(pri.name, "cannot read package " + name, got.status());
      break;
    }
    if (!got->contains("manifest") || !got->contains("payload_base64") || !got->contains("sha256")) {
      fail(pri.name, "cannot read package " + name,
           Status::Error("the agent answered without manifest, payload_base64 and sha256"));
      break;
    }
    const json body{{"manifest", (*got)["manifest"]},
                    {"payload_base64", (*got)["payload_base64"]},
                    {"sha256", (*got)["sha256"]}};
    auto put = agents.Invoke(sec.endpoint, "PUT", path, body, kPackageCallTimeoutMs);
    if (!put.ok()) {
      fail(sec.name, "cannot install package " + name, put.status());
      break;
    }
    o.pushed.push_back(name);
  }
  json facts = nullptr;
  if (o.error.empty()) {
    auto f = agents.Facts(sec.endpoint);
    if (f.ok() && f->is_object()) {
      facts = *f;
    } else {
      fail(sec.name, "cannot read its facts after the push",
           f.ok() ? Status::Error("not a JSON object") : f.status());
    }
  }

  if (!o.error.empty()) {
    o.status = kStatusNeedsUpgrade;
    o.reason = "the push from " + pri.name + " failed: " + o.error + "; behind: " + need.Reason();
  } else {
    const UpgradeNeed left = CompareFacts(pri.facts, facts);
    if (left.needed()) {
      o.status = kStatusNeedsUpgrade;
      o.reason = "behind primary " + pri.name + " after the push: " + left.Reason();
    } else {
      StatusFromFacts(facts, &o.status, &o.reason);
      o.reason = "pushed " + std::to_string(o.pushed.size()) + " content package(s) from " +
                 pri.name + " (" + by + "): " + list + "; " + o.reason;
    }
  }
  std::lock_guard<std::mutex> l(db.mu());
  Transaction t(db);
  Status st = t.Begin();
  bool found = false;
  if (st.ok()) st = SetStatus(db, sec.id, pair.cluster, o.status, o.reason, facts, clock.WallMs(), &found);
  if (st.ok()) st = t.Commit();
  if (!st.ok() && o.error.empty()) o.error = "database: " + st.message();
  return o;
}

ApiResponse Api::UpgradeCluster(const std::string& name, Audit* audit) {
  audit->target = "cluster " + Printable(name, 80);
  if (options_.agents == nullptr) return Fail(503, "this console has no agent client");
  UpgradePair pair;
  UpgradeNeed need;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto pairs = FindUpgradePairs(db_, {});
    if (!pairs.ok()) return Internal(pairs.status());
    auto it = std::find_if(pairs->begin(), pairs->end(),
                           [&](const UpgradePair& p) { return p.cluster == name; });
    if (it == pairs->end()) {
      return Fail(404, "no cluster named " + Quote(name) +
                           " whose primary and secondary are paired hosts with facts");
    }
    pair = *it;
  }
  need = CompareFacts(pair.primary.facts, pair.secondary.facts);
  if (!need.needed()) {
    return ApiError(409, "nothing_to_upgrade",
                    "the secondary " + pair.secondary.name + " has the software version and every "
                        "content package of the primary " + pair.primary.name);
  }
  if (need.software) {
    return ApiError(409, "software_upgrade_required",
                    "the secondary " + pair.secondary.name + " runs tandem " +
                        need.secondary_version + ", older than the primary's " + need.primary_version +
                        ": install tandem " + need.primary_version + " on " + pair.secondary.name +
                        " (content packages cannot fix that)");
  }
  if (pair.secondary.status == kStatusUpgrading) {
    return ApiError(409, "upgrade_in_progress",
                    "the secondary " + pair.secondary.name + " is being upgraded already");
  }
  UpgradeOutcome o =
      PushPackages(db_, *options_.agents, pair, need, *options_.clock, "asked by the API", true);
  if (!o.failed_host.empty()) {
    return ApiError(502, "unreachable",
                    "the upgrade of cluster " + name + " failed at host " + o.failed_host + ": " +
                        o.error + " (the secondary is " + o.status + ")");
  }
  if (!o.error.empty()) return Fail(500, o.error);
  Log(1, "console: cluster " + name + ": pushed " + std::to_string(o.pushed.size()) +
             " content package(s) to " + pair.secondary.name + "; it is " + o.status);
  return ApiResponse{200, json{{"cluster", name}, {"pushed", o.pushed}, {"status", o.status}}};
}

}  // namespace tandem::console
