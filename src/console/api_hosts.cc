// /api/v1/hosts, /api/v1/status, /api/v1/history (docs/CONSOLE.md, "Hosts",
// "Status", "History"): pairing hosts through their agents, the deployment's
// status with the guide's table 4 advice, and the history of status changes.
#include "console/api.h"

#include "console/api_internal.h"
#include "console/poller.h"
#include "ha/guidance.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

constexpr int64_t kHistoryPageDefault = 100;
constexpr int64_t kHistoryPageMax = 1000;
constexpr size_t kHostPartLenMax = 253;

// "host:port": host 1..253 characters from A-Z a-z 0-9 . - (a DNS name or
// a dotted quad), port 1..65535.
bool IsAgentAddress(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon > kHostPartLenMax) return false;
  for (size_t i = 0; i < colon; ++i) {
    const char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-')) {
      return false;
    }
  }
  const std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  int p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  return p >= 1 && p <= 65535;
}

json FactsSummary(const json& facts) {
  if (!facts.is_object()) return nullptr;
  json out = json::object();
  for (const char* key : {"name", "version", "address", "packages", "management_interface"}) {
    if (facts.contains(key)) out[key] = facts[key];
  }
  return out;
}

std::string ClusterRoleOf(const json& facts) {
  if (!facts.is_object() || !facts.contains("cluster") || !facts["cluster"].is_object()) return "";
  const json& r = facts["cluster"].value("role", json());
  return r.is_string() ? r.get<std::string>() : "";
}

// The columns HostJson reads, in this order (FROM hosts h LEFT JOIN clusters
// c ON c.id = h.cluster_id). The last: the host's role in its cluster as
// the clusters table records it.
constexpr const char* kHostColumns =
    "h.name, h.role, h.address, h.added_at_ms, c.name, h.agent_address, h.agent_cert_pem, "
    "h.facts_json, h.facts_at_ms, h.status, h.status_reason, "
    "CASE h.id WHEN c.primary_host_id THEN 'primary' WHEN c.secondary_host_id THEN 'secondary' END";
constexpr int kHostColumnCount = 12;

// A host as answered: never the agent key.
json HostJson(const Stmt& s, bool full_facts) {
  const json facts = s.IsNull(7) ? json(nullptr)
                                 : json::parse(s.Text(7), nullptr, /*allow_exceptions=*/false);
  json h{{"name", s.Text(0)},
         {"role", s.Text(1)},
         {"address", s.Text(2)},
         {"added_at", Rfc3339Ms(s.Int(3))},
         {"cluster", s.IsNull(4) ? json(nullptr) : json(s.Text(4))},
         {"paired", !s.IsNull(5)},
         {"agent_address", s.IsNull(5) ? json(nullptr) : json(s.Text(5))},
         {"agent_cert_sha256", nullptr},
         {"status", s.Text(9)},
         {"status_reason", s.IsNull(10) ? json(nullptr) : json(s.Text(10))},
         {"cluster_role", nullptr},
         {"facts_at", s.IsNull(8) ? json(nullptr) : json(Rfc3339Ms(s.Int(8)))},
         {"facts", full_facts ? (facts.is_object() ? facts : json(nullptr)) : FactsSummary(facts)}};
  if (!s.IsNull(6)) {
    auto sha = CertDerSha256Hex(s.Text(6));
    if (sha.ok()) h["agent_cert_sha256"] = *sha;
  }
  // A member of a cluster of the console: its role there (the clusters
  // table); a host in none: what its facts report (a cluster the console
  // did not create).
  if (!s.IsNull(4)) {
    if (!s.IsNull(11)) h["cluster_role"] = s.Text(11);
  } else if (const std::string role = ClusterRoleOf(facts); !role.empty()) {
    h["cluster_role"] = role;
  }
  return h;
}

ApiResponse NoAgents() { return Fail(503, "this console has no agent client"); }

ApiResponse Refused(const std::string& message) {
  return ApiError(409, "pairing_refused", message, "pairing_token");
}


// The host named `name` (kHostColumns), stepped to its row; nullopt if there
// is none.
Result<std::optional<Stmt>> HostNamed(Db& db, const std::string& name) {
  auto s = db.Prepare(std::string("SELECT ") + kHostColumns +
                      " FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id WHERE h.name = ?1");
  if (!s.ok()) return s.status();
  s->Bind(1, name);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<Stmt>();
  return std::optional<Stmt>(std::move(*s));
}
}  // namespace

ApiResponse Api::ListHosts() {
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare(std::string("SELECT ") + kHostColumns +
                       " FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id ORDER BY h.id");
  if (!s.ok()) return Internal(s.status());
  json hosts = json::array();
  Error e = ListRows(*s, [](const Stmt& q) { return HostJson(q, /*full_facts=*/false); }, &hosts);
  if (e) return *e;
  return ApiResponse{200, json{{"hosts", hosts}}};
}

ApiResponse Api::GetHost(const std::string& name) {
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = HostNamed(db_, name);
  if (!s.ok()) return Internal(s.status());
  if (!*s) return Fail(404, "no host named " + Quote(name));
  return ApiResponse{200, json{{"host", HostJson(**s, /*full_facts=*/true)}}};
}

ApiResponse Api::AddHost(const ApiRequest& r, Audit* audit) {
  json body;
  if (Error e = ParseBody(r, {"address", "pairing_token", "name"}, &body)) return *e;
  std::string address, pairing, name;
  if (Error e = GetString(body, "address", &address)) return *e;
  if (!IsAgentAddress(address)) {
    return Fail(400, "must be the agent's host:port (host from A-Z a-z 0-9 . -, port 1..65535), got " +
                         Quote(address),
                "address");
  }
  audit->target = "host " + Printable(address, 80);
  if (body.contains("name")) {
    if (Error e = GetString(body, "name", &name)) return *e;
    if (!IsValidUserName(name)) {
      return Fail(400, "must be 1 to 64 characters from A-Z a-z 0-9 _ . -, got " + Quote(name), "name");
    }
    audit->target = "host " + name + " (" + address + ")";
  }
  // The pairing string holds a secret: its errors describe its shape only.
  auto it = body.find("pairing_token");
  if (it == body.end()) return Fail(400, "required field is missing", "pairing_token");
  if (!it->is_string()) return Fail(400, "must be a string, got " + TypeName(*it), "pairing_token");
  auto ps = ParsePairingString(it->get<std::string>());
  if (!ps.ok()) return Fail(400, ps.status().message(), "pairing_token");
  if (options_.agents == nullptr) return NoAgents();

  // Refuse what cannot be stored before the one-time token is used up.
  auto conflict = [&](const std::string& n) -> std::optional<ApiResponse> {
    auto s = db_.Prepare(
        "SELECT (SELECT COUNT(*) FROM hosts WHERE name = ?1 AND ?1 != ''), "
        "(SELECT name FROM hosts WHERE agent_address = ?2)");
    if (!s.ok()) return Internal(s.status());
    s->Bind(1, n).Bind(2, address);
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (s->Int(0) > 0) return Fail(409, "a host named " + Quote(n) + " already exists", "name");
    if (!s->IsNull(1)) {
      return Fail(409, "the agent " + Quote(address) + " is already paired as host " + Quote(s->Text(1)),
                  "address");
    }
    return std::nullopt;
  };
  {
    std::lock_guard<std::mutex> l(db_.mu());
    if (auto e = conflict(name)) return *e;
  }

  // The agent calls run outside the database lock (they may take seconds).
  AgentClient& agents = *options_.agents;
  auto pem = agents.FetchCertificate(address);
  if (!pem.ok()) return Fail(502, "cannot get the agent's certificate: " + pem.status().message());
  auto sha = CertDerSha256Hex(*pem);
  if (!sha.ok()) return Fail(502, "the agent's certificate is unusable: " + sha.status().message());
  if (*sha != ps->cert_sha256) {
    return Refused("the agent at " + address + " presents a certificate with SHA-256 " + *sha +
                   ", not the " + ps->cert_sha256 +
                   " of the pairing string: not paired (a different host, or someone in between)");
  }
  auto paired = agents.Pair(address, *pem, ps->token, options_.console_name);
  if (!paired.ok()) {
    if (AgentUnreachable(paired.status())) {
      return Fail(502, "pairing with the agent failed: " + paired.status().message());
    }
    return Refused("the agent refused the pairing: " + paired.status().message());
  }
  const std::string key = (*paired)["key"].get<std::string>();
  const json facts = (*paired)["facts"];
  if (name.empty()) {
    name = facts.is_object() && facts.contains("name") && facts["name"].is_string()
               ? facts["name"].get<std::string>()
               : "";
    if (!IsValidUserName(name)) {
      return Fail(409, "the host reports the name " + Quote(name) +
                           ", which is not usable (1 to 64 characters from A-Z a-z 0-9 _ . -); "
                           "the agent is paired now: run `tandemd unpair` on it and pair again "
                           "with a \"name\"",
                  "name");
    }
    audit->target = "host " + name + " (" + address + ")";
  }
  std::string host_address = facts.is_object() ? facts.value("address", json()).is_string()
                                                     ? facts["address"].get<std::string>()
                                                     : ""
                                               : "";
  if (host_address.empty()) host_address = address.substr(0, address.rfind(':'));
  std::string status, reason;
  StatusFromFacts(facts, &status, &reason);
  const int64_t now = NowMs();

  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  if (auto e = conflict(name)) {
    // Paired, but another call took the name or address meanwhile.
    ApiResponse resp = *e;
    resp.body["error"]["message"] = resp.body["error"]["message"].get<std::string>() +
                                    "; the agent is paired now: run `tandemd unpair` on it and "
                                    "pair again with another \"name\"";
    return resp;
  }
  auto ins = db_.Prepare(
      "INSERT INTO hosts (name, role, address, added_at_ms, agent_address, agent_cert_pem, "
      "agent_key, facts_json, facts_at_ms, status, status_reason) "
      "VALUES (?1, 'managed', ?2, ?3, ?4, ?5, ?6, ?7, ?3, ?8, ?9)");
  if (!ins.ok()) return Internal(ins.status());
  if (st = ins->Bind(1, name)
               .Bind(2, host_address)
               .Bind(3, now)
               .Bind(4, address)
               .Bind(5, *pem)
               .Bind(6, key)
               .Bind(7, facts.dump(-1, ' ', false, json::error_handler_t::replace))
               .Bind(8, status)
               .Bind(9, reason)
               .Run();
      !st.ok()) {
    return Internal(st);
  }
  auto hist = db_.Prepare(
      "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (?1, 'status', ?2, NULL, ?3, ?4, ?5)");
  if (!hist.ok()) return Internal(hist.status());
  if (st = hist->Bind(1, now)
               .Bind(2, name)
               .Bind(3, std::string_view(kStatusUnknown))
               .Bind(4, status)
               .Bind(5, "paired: " + reason)
               .Run();
      !st.ok()) {
    return Internal(st);
  }
  audit->result = "ok";
  audit->status = 201;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  auto s = HostNamed(db_, name);
  if (!s.ok()) return Internal(s.status());
  if (!*s) return Fail(500, "the new host vanished");
  json host = HostJson(**s, /*full_facts=*/false);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  Log(1, "console: paired host " + name + " (agent " + address + ", status " + status + ")");
  return ApiResponse{201, json{{"host", host}}};
}

ApiResponse Api::DeleteHost(const std::string& name, Audit* audit) {
  audit->target = "host " + Printable(name, 80);
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto s = db_.Prepare(
      "SELECT h.id, h.role, c.name FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id "
      "WHERE h.name = ?1");
  if (!s.ok()) return Internal(s.status());
  s->Bind(1, name);
  auto row = s->Step();
  if (!row.ok()) return Internal(row.status());
  if (!*row) return Fail(404, "no host named " + Quote(name));
  const int64_t id = s->Int(0);
  if (s->Text(1) == "console") return Fail(409, "host " + Quote(name) + " is this console");
  if (!s->IsNull(2)) {
    return Fail(409, "host " + Quote(name) + " is in cluster " + Quote(s->Text(2)) +
                         "; remove it from the cluster first");
  }
  auto del = db_.Prepare("DELETE FROM hosts WHERE id = ?1");
  if (!del.ok()) return Internal(del.status());
  if (st = del->Bind(1, id).Run(); !st.ok()) return Internal(st);
  audit->result = "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"deleted", name}}};
}

ApiResponse Api::DeploymentStatus() {
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare(std::string("SELECT ") + kHostColumns +
                       ", h.id FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id ORDER BY h.id");
  if (!s.ok()) return Internal(s.status());
  json hosts = json::array();
  struct Member {
    std::string name, status;
  };
  std::map<int64_t, Member> by_id;
  auto host = [&by_id](const Stmt& q) {
    json h = HostJson(q, /*full_facts=*/false);
    by_id[q.Int(kHostColumnCount)] = Member{h["name"].get<std::string>(), h["status"].get<std::string>()};
    return json{{"name", h["name"]},
                {"role", h["role"]},
                {"cluster", h["cluster"]},
                {"cluster_role", h["cluster_role"]},
                {"status", h["status"]},
                {"status_reason", h["status_reason"]},
                {"facts_at", h["facts_at"]}};
  };
  if (Error e = ListRows(*s, host, &hosts)) return *e;
  // A cluster's members are the clusters table's (as GET /api/v1/clusters
  // shows them); their statuses are the polled ones.
  auto cs = db_.Prepare("SELECT name, vip, primary_host_id, secondary_host_id FROM clusters ORDER BY id");
  if (!cs.ok()) return Internal(cs.status());
  json clusters = json::array();
  auto cluster = [&by_id](const Stmt& c) {
    auto side = [&](int column) -> json {
      auto it = c.IsNull(column) ? by_id.end() : by_id.find(c.Int(column));
      if (it == by_id.end()) return json{{"host", nullptr}, {"status", kStatusUnknown}};
      return json{{"host", it->second.name}, {"status", it->second.status}};
    };
    const json primary = side(2), secondary = side(3);
    const ha::HostStatus p = ParseStoredStatus(primary["status"].get<std::string>());
    const ha::HostStatus q = ParseStoredStatus(secondary["status"].get<std::string>());
    return json{{"name", c.Text(0)},
                {"vip", c.Text(1)},
                {"primary", primary},
                {"secondary", secondary},
                {"possible_action", ha::PossibleAction(p, q)}};
  };
  if (Error e = ListRows(*cs, cluster, &clusters)) return *e;
  return ApiResponse{200, json{{"hosts", hosts}, {"clusters", clusters}}};
}

ApiResponse Api::ListHistory(const ApiRequest& r) {
  std::map<std::string, std::string> params;
  if (Error e = CheckParams(r, {"limit", "before", "host"}, &params)) return *e;
  int64_t limit = 0, before = 0;
  if (Error e = PageParams(params, kHistoryPageDefault, kHistoryPageMax, &limit, &before)) {
    return *e;
  }
  auto host = params.find("host");
  if (host != params.end() && !IsValidUserName(host->second)) {
    return Fail(400, "must be a host name (1 to 64 characters from A-Z a-z 0-9 _ . -), got " +
                         Quote(host->second),
                "host");
  }
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare(
      "SELECT id, at_ms, kind, host, cluster, old_status, new_status, reason FROM host_history "
      "WHERE id < ?1 AND (?3 IS NULL OR host = ?3) ORDER BY id DESC LIMIT ?2");
  if (!s.ok()) return Internal(s.status());
  s->Bind(1, before).Bind(2, limit);
  if (host != params.end()) s->Bind(3, host->second); else s->BindNull(3);
  json entries = json::array();
  Error e = ListRows(
      *s,
      [](const Stmt& q) {
        return json{{"id", q.Int(0)},
                    {"at", Rfc3339Ms(q.Int(1))},
                    {"kind", q.Text(2)},
                    {"host", q.Text(3)},
                    {"cluster", q.IsNull(4) ? json(nullptr) : json(q.Text(4))},
                    {"old_status", q.Text(5)},
                    {"new_status", q.Text(6)},
                    {"reason", q.Text(7)}};
      },
      &entries);
  if (e) return *e;
  return ApiResponse{200, json{{"entries", entries}}};
}

}  // namespace tandem::console
