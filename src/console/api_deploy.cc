// Deploying the configuration (docs/CONSOLE.md, "Deploying"; R-DEP-1,
// R-CL-2, R-OP-4): POST /api/v1/deploy builds one configuration document per
// paired host (docs/formats/deployment.md) and sends it to the host's agent
// (PUT /api/v1/agent/config); the pending changes are cleared only when
// every host accepted it. GET /api/v1/deploy shows the revision, the pending
// changes and what each host last accepted.
#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "console/api.h"
#include "console/api_internal.h"
#include "console/password.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

constexpr size_t kDeployCallsAtOnce = 4;  // agents called in parallel, as the poller

// One deploy at a time (per process): revisions are handed out and the
// pending changes cleared in order.
std::mutex deploy_mu;

// A paired host the deploy targets.
struct Target {
  int64_t id = 0;
  std::string name, role, cluster;  // cluster: "" when none
  AgentEndpoint agent;
  json document;
  bool ok = false;
  std::string message;
};

// The highest revision the console knows of: its counter, what hosts last
// accepted, and what their agents report in their facts (so the counter
// never goes back, e.g. after a restore from an older backup). REQUIRES:
// db.mu() held.
Result<int64_t> HighestRevision(Db& db) {
  int64_t top = 0;
  auto s = db.Prepare("SELECT revision FROM deploy_state WHERE id = 1");
  if (!s.ok()) return s.status();
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (*row) top = s->Int(0);
  auto h = db.Prepare("SELECT deployed_revision, facts_json FROM hosts");
  if (!h.ok()) return h.status();
  for (;;) {
    auto r = h->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    if (!h->IsNull(0)) top = std::max(top, h->Int(0));
    const json facts = json::parse(h->Text(1), nullptr, /*allow_exceptions=*/false);
    if (facts.is_object() && facts.value("deployed_revision", json()).is_number_integer()) {
      top = std::max(top, facts["deployed_revision"].get<int64_t>());
    }
  }
  return top;
}

// The VIP's prefix length: that of the address of a member's interface
// in the VIP's subnet (the primary's old address, or its new one), from
// the members' facts; 24 when no fact tells.
int VipPrefix(const std::string& vip, const std::vector<std::string>& facts_texts) {
  in_addr v{};
  if (inet_pton(AF_INET, vip.c_str(), &v) != 1) return 24;
  const uint32_t vip_addr = ntohl(v.s_addr);
  for (const std::string& text : facts_texts) {
    const json facts = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!facts.is_object() || !facts.value("interfaces", json()).is_array()) continue;
    for (const json& i : facts["interfaces"]) {
      if (!i.is_object() || !i.value("addresses", json()).is_array()) continue;
      for (const json& a : i["addresses"]) {
        if (!a.is_string()) continue;
        const std::string cidr = a.get<std::string>();
        const size_t slash = cidr.find('/');
        in_addr ia{};
        if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &ia) != 1) continue;
        int len = 0;
        try {
          len = std::stoi(cidr.substr(slash + 1));
        } catch (const std::exception&) {
          continue;
        }
        if (len < 1 || len > 32) continue;
        const uint32_t mask = ~uint32_t{0} << (32 - len);
        if ((ntohl(ia.s_addr) & mask) == (vip_addr & mask)) return len;
      }
    }
  }
  return 24;
}

// The document's "cluster" object from the cluster as GET
// /api/v1/clusters/{name} answers it, with its key and VIP prefix.
json ClusterSection(const json& c, const std::string& key, int vip_prefix) {
  const json& o = c["options"];
  const json& license = c["license"];
  return json{{"name", c["name"]},
              {"key", key},
              {"vip", c["ips"]["vip"]},
              {"vip_prefix", vip_prefix},
              {"primary_ip", c["ips"]["primary"]},
              {"secondary_ip", c["ips"]["secondary"]},
              {"license_valid", license.is_object() && license.value("valid", false)},
              {"options",
               {{"heartbeat_interval_ms", o["heartbeat_interval_ms"]},
                {"heartbeat_timeout_ms", o["heartbeat_timeout_ms"]},
                {"connectivity_peers", c["connectivity_peers_effective"]},
                {"sync_rate_mb", o["sync_rate_mb"]},
                {"disable_replication", o["disable_replication"]},
                {"crossover_interface", o["crossover_interface"]},
                {"crossover_primary_ip", o["crossover_primary_ip"]},
                {"crossover_secondary_ip", o["crossover_secondary_ip"]}}}};
}

}  // namespace

ApiResponse Api::Deploy(const ApiRequest& r, Audit* audit) {
  audit->target = "deployment";
  bool full = false;
  if (!r.body.empty()) {
    json body;
    if (Error e = ParseBody(r, {"full"}, &body)) return *e;
    if (body.contains("full")) {
      if (!body["full"].is_boolean()) {
        return Fail(400, "must be true or false, got " + TypeName(body["full"]), "full");
      }
      full = body["full"].get<bool>();
    }
  }
  if (options_.agents == nullptr) return Fail(503, "this console has no agent client");
  std::lock_guard<std::mutex> one(deploy_mu);

  // 1. What is pending (only these rows are cleared later: a change made
  //    while the deploy runs stays pending), the hosts, the new revision.
  int64_t pending_max = 0, pending_count = 0, revision = 0;
  std::vector<Target> targets;
  std::vector<std::string> clusters;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto p = db_.Prepare("SELECT COUNT(*), IFNULL(MAX(id), 0) FROM pending_changes");
    if (!p.ok()) return Internal(p.status());
    auto row = p->Step();
    if (!row.ok()) return Internal(row.status());
    pending_count = p->Int(0);
    pending_max = p->Int(1);
    if (pending_count == 0 && !full) {
      return ApiError(409, "nothing_to_deploy",
                      "there are no pending changes; deploy the full configuration with "
                      "{\"full\": true} to send it again");
    }
    auto top = HighestRevision(db_);
    if (!top.ok()) return Internal(top.status());
    revision = *top + 1;
    auto h = db_.Prepare(
        "SELECT h.id, h.name, h.role, c.name, h.agent_address, h.agent_cert_pem, h.agent_key "
        "FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id "
        "WHERE h.agent_address IS NOT NULL AND h.agent_key IS NOT NULL ORDER BY h.name");
    if (!h.ok()) return Internal(h.status());
    for (;;) {
      auto hr = h->Step();
      if (!hr.ok()) return Internal(hr.status());
      if (!*hr) break;
      Target t;
      t.id = h->Int(0);
      t.name = h->Text(1);
      t.role = h->Text(2);
      t.cluster = h->Text(3);
      t.agent = AgentEndpoint{h->Text(4), h->Text(5), h->Text(6)};
      if (!t.cluster.empty() && std::find(clusters.begin(), clusters.end(), t.cluster) == clusters.end()) {
        clusters.push_back(t.cluster);
      }
      targets.push_back(std::move(t));
    }
    // The revision is used up whatever happens next: revisions never repeat.
    Transaction tx(db_);
    Status st = tx.Begin();
    if (!st.ok()) return Internal(st);
    auto up = db_.Prepare(
        "INSERT INTO deploy_state (id, revision, deployed_at_ms) VALUES (1, ?1, ?2) "
        "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, "
        "deployed_at_ms = excluded.deployed_at_ms");
    if (!up.ok()) return Internal(up.status());
    if (st = up->Bind(1, revision).Bind(2, NowMs()).Run(); !st.ok()) return Internal(st);
    if (st = tx.Commit(); !st.ok()) return Internal(st);
  }

  // 2. The clusters as the API shows them (options, effective peers, IPs,
  //    license), read after the pending changes were counted.
  std::map<std::string, json> cluster_json, sections;
  for (const std::string& name : clusters) {
    ApiResponse c = GetCluster(name);
    if (c.status == 404) continue;  // removed meanwhile: its hosts get no cluster
    if (c.status != 200) return c;
    // The cluster's key: made at its first deploy, kept from then on.
    std::string key;
    std::vector<std::string> facts;
    {
      std::lock_guard<std::mutex> l(db_.mu());
      auto k = db_.Prepare("SELECT id, cluster_key FROM clusters WHERE name = ?1");
      if (!k.ok()) return Internal(k.status());
      k->Bind(1, name);
      auto row = k->Step();
      if (!row.ok()) return Internal(row.status());
      if (!*row) continue;
      const int64_t id = k->Int(0);
      key = k->IsNull(1) ? "" : k->Text(1);
      if (key.empty()) {
        auto made = RandomHex(32);
        if (!made.ok()) return Internal(made.status());
        key = *made;
        auto up = db_.Prepare("UPDATE clusters SET cluster_key = ?1 WHERE id = ?2 AND cluster_key IS NULL");
        if (!up.ok()) return Internal(up.status());
        if (Status st = up->Bind(1, key).Bind(2, id).Run(); !st.ok()) return Internal(st);
      }
      auto f = db_.Prepare("SELECT facts_json FROM hosts WHERE cluster_id = ?1 AND facts_json IS NOT NULL");
      if (!f.ok()) return Internal(f.status());
      f->Bind(1, id);
      for (;;) {
        auto fr = f->Step();
        if (!fr.ok()) return Internal(fr.status());
        if (!*fr) break;
        facts.push_back(f->Text(0));
      }
    }
    const json& cluster = c.body["cluster"];
    sections[name] = ClusterSection(cluster, key, VipPrefix(cluster["ips"]["vip"].get<std::string>(), facts));
    cluster_json[name] = cluster;
  }
  for (Target& t : targets) {
    std::string role = t.role == "console" ? "console" : "managed";
    json cluster = nullptr;
    if (auto it = cluster_json.find(t.cluster); it != cluster_json.end()) {
      for (const json& m : it->second["members"]) {
        if (m.value("name", "") == t.name) role = m["role"].get<std::string>();
      }
      cluster = sections[t.cluster];
    }
    t.document = json{{"revision", revision},
                      {"console", {{"name", options_.console_name}}},
                      {"host", {{"name", t.name}, {"role", role}}},
                      {"cluster", cluster}};
  }

  // 3. The calls, at most kDeployCallsAtOnce at once, outside the database lock.
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < targets.size(); i = next++) {
      Target& t = targets[i];
      auto answer = options_.agents->Invoke(t.agent, "PUT", "/api/v1/agent/config",
                                            json{{"revision", revision}, {"document", t.document}},
                                            kAgentCallTimeoutMs);
      if (!answer.ok()) {
        t.message = answer.status().message();
      } else if (!answer->is_object() || answer->value("revision", json()) != json(revision)) {
        t.message = "agent " + t.agent.address + " answered without revision " + std::to_string(revision);
      } else {
        t.ok = true;
        t.message = "revision " + std::to_string(revision) + " accepted";
      }
    }
  };
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < std::min(kDeployCallsAtOnce, targets.size()); ++i) threads.emplace_back(worker);
    for (std::thread& th : threads) th.join();
  }

  // 4. What each host accepted; the pending changes go when all did.
  json hosts = json::array();
  std::vector<std::string> failed;
  for (const Target& t : targets) {
    hosts.push_back({{"name", t.name}, {"ok", t.ok}, {"message", t.message}});
    if (!t.ok) failed.push_back(t.name + " (" + t.message + ")");
    Log(t.ok ? 1 : 2, "console: deploy revision " + std::to_string(revision) + " to host " + t.name +
                          ": " + t.message);
  }
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction tx(db_);
  Status st = tx.Begin();
  if (!st.ok()) return Internal(st);
  for (const Target& t : targets) {
    if (!t.ok) continue;
    auto up = db_.Prepare(
        "UPDATE hosts SET deployed_revision = ?1, deployed_at_ms = ?2, deployed_document = ?3 WHERE id = ?4");
    if (!up.ok()) return Internal(up.status());
    if (st = up->Bind(1, revision).Bind(2, now).Bind(3, t.document.dump()).Bind(4, t.id).Run(); !st.ok()) {
      return Internal(st);
    }
  }
  if (!failed.empty()) {
    if (st = tx.Commit(); !st.ok()) return Internal(st);
    std::string list;
    for (size_t i = 0; i < failed.size(); ++i) list += (i ? "; " : "") + failed[i];
    ApiResponse resp = ApiError(502, "deploy_incomplete",
                                "revision " + std::to_string(revision) + ": " + std::to_string(failed.size()) +
                                    " of " + std::to_string(targets.size()) +
                                    " hosts did not accept the configuration, the pending changes stay: " + list);
    resp.body["revision"] = revision;
    resp.body["hosts"] = hosts;
    resp.body["cleared"] = 0;
    return resp;
  }
  auto del = db_.Prepare("DELETE FROM pending_changes WHERE id <= ?1");
  if (!del.ok()) return Internal(del.status());
  if (st = del->Bind(1, pending_max).Run(); !st.ok()) return Internal(st);
  audit->result = "ok (revision " + std::to_string(revision) + (full ? ", full" : "") + ", " +
                  std::to_string(targets.size()) + " hosts, " + std::to_string(pending_count) +
                  " pending changes cleared)";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = tx.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"revision", revision}, {"hosts", hosts}, {"cleared", pending_count}}};
}

ApiResponse Api::DeployStatus() {
  std::lock_guard<std::mutex> l(db_.mu());
  json out{{"revision", 0}, {"deployed_at", nullptr}};
  auto s = db_.Prepare("SELECT revision, deployed_at_ms FROM deploy_state WHERE id = 1");
  if (!s.ok()) return Internal(s.status());
  auto row = s->Step();
  if (!row.ok()) return Internal(row.status());
  if (*row) {
    out["revision"] = s->Int(0);
    out["deployed_at"] = Rfc3339Ms(s->Int(1));
  }
  auto p = db_.Prepare("SELECT id, at_ms, what FROM pending_changes ORDER BY id");
  if (!p.ok()) return Internal(p.status());
  json pending = json::array();
  Error e = ListRows(
      *p, [](const Stmt& q) { return json{{"id", q.Int(0)}, {"at", Rfc3339Ms(q.Int(1))}, {"what", q.Text(2)}}; },
      &pending);
  if (e) return *e;
  auto h = db_.Prepare(
      "SELECT name, deployed_revision, deployed_at_ms FROM hosts "
      "WHERE agent_address IS NOT NULL AND agent_key IS NOT NULL ORDER BY name");
  if (!h.ok()) return Internal(h.status());
  json hosts = json::array();
  e = ListRows(
      *h,
      [](const Stmt& q) {
        return json{{"name", q.Text(0)},
                    {"deployed_revision", q.IsNull(1) ? json(nullptr) : json(q.Int(1))},
                    {"deployed_at", q.IsNull(2) ? json(nullptr) : json(Rfc3339Ms(q.Int(2)))}};
      },
      &hosts);
  if (e) return *e;
  out["pending"] = std::move(pending);
  out["hosts"] = std::move(hosts);
  return ApiResponse{200, out};
}

}  // namespace tandem::console
