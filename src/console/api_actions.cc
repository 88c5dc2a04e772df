// POST /api/v1/hosts/{name}/actions (docs/CONSOLE.md, "Host actions"): an
// HA administrative command (Set System Offline/Online, Restore System,
// takeover, giveback, an online verify) run on one paired host through its
// agent (POST /api/v1/agent/ha), which hands it to that host's tandemd: the
// same handler as `ha` on the host's control socket, so the same refusals.
// Every call is audited; every call that reached the agent adds a history
// row ("action offline requested by USER: result").
#include "console/api.h"

#include <algorithm>
#include <cstdlib>

#include "console/api_internal.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

constexpr std::string_view kActions[] = {"takeover", "giveback", "offline",
                                         "online",   "restore",  "verify"};
// What the agent says of a host that is not in an HA cluster
// (daemon/agent.cc, HaCommand).
constexpr std::string_view kNotClusteredMarker = " is not in an HA cluster";
constexpr size_t kReplyMessageMax = 200;

// "agent ADDR answered 409: message" -> 409 and "message"; 0 when the error
// is not an answer of the agent.
int AnsweredStatus(const std::string& error, std::string* message) {
  const std::string_view key = " answered ";
  const size_t at = error.find(key);
  if (at == std::string::npos) return 0;
  const size_t p = at + key.size();
  if (p + 3 > error.size()) return 0;
  int status = 0;
  for (size_t i = p; i < p + 3; ++i) {
    if (error[i] < '0' || error[i] > '9') return 0;
    status = status * 10 + (error[i] - '0');
  }
  *message = error.size() > p + 5 && error.compare(p + 3, 2, ": ") == 0 ? error.substr(p + 5)
                                                                      : error.substr(p + 3);
  return status;
}

}  // namespace

ApiResponse Api::HostAction(const std::string& name, const ApiRequest& r, const std::string& user,
                            Audit* audit) {
  audit->target = "host " + Printable(name, 80);
  json body;
  if (Error e = ParseBody(r, {"action"}, &body)) return *e;
  std::string action;
  if (Error e = GetString(body, "action", &action)) return *e;
  if (std::find(std::begin(kActions), std::end(kActions), action) == std::end(kActions)) {
    return Fail(400,
                "must be one of takeover, giveback, offline, online, restore, verify; got " +
                    Quote(action),
                "action");
  }
  audit->target = "host " + Printable(name, 80) + " (" + action + ")";
  AgentEndpoint agent;
  std::string cluster, status;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto s = db_.Prepare(
        "SELECT h.role, h.agent_address, h.agent_cert_pem, h.agent_key, c.name, h.status "
        "FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id WHERE h.name = ?1");
    if (!s.ok()) return Internal(s.status());
    s->Bind(1, name);
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (!*row) return Fail(404, "no host named " + Quote(name));
    if (s->IsNull(1) || s->IsNull(3)) {
      return ApiError(409, "not_paired",
                      "host " + Quote(name) + " has no paired agent: the console cannot reach it");
    }
    agent = AgentEndpoint{s->Text(1), s->Text(2), s->Text(3)};
    cluster = s->IsNull(4) ? "" : s->Text(4);
    status = s->Text(5);
  }
  if (options_.agents == nullptr) return Fail(503, "this console has no agent client");

  // The call, slow, outside the lock.
  auto reply = options_.agents->Invoke(agent, "POST", "/api/v1/agent/ha", json{{"cmd", action}},
                                       kAgentCallTimeoutMs);
  ApiResponse answer;
  std::string result;
  if (reply.ok()) {
    const json message = reply->is_object() ? reply->value("message", json()) : json();
    result = "accepted" + (message.is_string()
                               ? ": " + Printable(message.get<std::string>(), kReplyMessageMax)
                               : std::string());
    answer = ApiResponse{200, json{{"host", name}, {"action", action}, {"reply", *reply}}};
  } else {
    const std::string error = reply.status().message();
    std::string message;
    const int answered = AnsweredStatus(error, &message);
    if (AgentUnreachable(reply.status()) || answered == 0) {
      answer = ApiError(502, "unreachable", "host " + name + ": " + error);
      result = "unreachable";
    } else if (answered == 409 && message.find(kNotClusteredMarker) != std::string::npos) {
      answer = ApiError(409, "not_clustered", "host " + name + " is not in an HA cluster: " +
                                                  action + " does not apply");
      result = "not clustered";
    } else if (answered == 409) {
      answer = ApiError(409, "action_refused", "host " + name + " refused " + action + ": " + message);
      result = "refused: " + Printable(message, kReplyMessageMax);
    } else {
      answer = ApiError(502, "agent_error", "host " + name + ": " + error);
      result = "agent error " + std::to_string(answered);
    }
  }
  Log(answer.status == 200 ? 1 : 2,
      "console: action " + action + " on host " + name + " by " + user + ": " + result);

  // The history row (and, when it succeeded, the audit row) in one
  // transaction; a refusal's audit row is written by Handle.
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto hist = db_.Prepare(
      "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (?1, 'status', ?2, ?3, ?4, ?4, ?5)");
  if (!hist.ok()) return Internal(hist.status());
  hist->Bind(1, NowMs()).Bind(2, name).Bind(4, status).Bind(
      5, "action " + action + " requested by " + user + ": " + result);
  if (cluster.empty()) hist->BindNull(3); else hist->Bind(3, cluster);
  if (st = hist->Run(); !st.ok()) return Internal(st);
  if (answer.status == 200) {
    audit->result = "ok: " + result;
    audit->status = 200;
    if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  }
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return answer;
}

}  // namespace tandem::console
