// POST /api/v1/hosts/{name}/actions (docs/CONSOLE.md, "Host actions"): an
// HA administrative command (Set System Offline/Online, Restore System,
// takeover, giveback, an online verify) run on one paired host through its
// agent (POST /api/v1/agent/ha), which hands it to that host's tandemd: the
// same handler as `ha` on the host's control socket, so the same refusals.
// Every call is audited; every call that reached the agent adds a history
// row of kind 'action' ("action offline requested by USER: result").
// factory_reset is the exception: it runs POST /api/v1/agent/factory-reset
// on an unclustered managed host and, when the host answered 200, deletes
// its row as DELETE /api/v1/hosts/{name} does (then adds the history row);
// a refusal or an unreachable agent changes nothing but the audit.
#include "console/api.h"

#include <algorithm>

#include "console/api_internal.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

constexpr std::string_view kActions[] = {"takeover", "giveback", "offline", "online",
                                         "restore",  "verify",   "factory_reset"};
constexpr size_t kReplyMessageMax = 200;

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
                "must be one of takeover, giveback, offline, online, restore, verify, factory_reset; "
                "got " +
                    Quote(action),
                "action");
  }
  audit->target = "host " + Printable(name, 80) + " (" + action + ")";
  AgentEndpoint agent;
  std::string cluster, status, agent_name;
  const bool reset = action == "factory_reset";
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto s = db_.Prepare(
        "SELECT h.role, h.agent_address, h.agent_cert_pem, h.agent_key, c.name, h.status, "
        "h.facts_json FROM hosts h LEFT JOIN clusters c ON c.id = h.cluster_id WHERE h.name = ?1");
    if (!s.ok()) return Internal(s.status());
    s->Bind(1, name);
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (!*row) return Fail(404, "no host named " + Quote(name));
    if (reset && s->Text(0) == "console") {
      return ApiError(409, "console_host",
                      "host " + Quote(name) + " is this console's own host: only a managed host is "
                      "factory reset; nothing was changed");
    }
    if (reset && !s->IsNull(4)) {
      return ApiError(409, "cluster_member",
                      "host " + Quote(name) + " is a member of cluster " + Quote(s->Text(4)) +
                          ": remove it from the cluster (or disconnect it) first; nothing was changed");
    }
    if (s->IsNull(1) || s->IsNull(3)) {
      return ApiError(409, "not_paired",
                      "host " + Quote(name) + " has no paired agent: the console cannot reach it");
    }
    agent = AgentEndpoint{s->Text(1), s->Text(2), s->Text(3)};
    cluster = s->IsNull(4) ? "" : s->Text(4);
    status = s->Text(5);
    // The name the agent knows itself by (its facts), which the reset
    // must confirm; the row's name when the facts do not say.
    const json facts = s->IsNull(6) ? json() : json::parse(s->Text(6), nullptr, false);
    agent_name = facts.is_object() && facts.value("name", json()).is_string()
                     ? facts["name"].get<std::string>()
                     : name;
  }
  if (options_.agents == nullptr) return Fail(503, "this console has no agent client");

  if (reset) {
    // docs/CONSOLE.md, "Host actions": the host's own state first, then
    // the row; nothing changes here unless the host answered 200.
    auto reply = options_.agents->Invoke(agent, "POST", "/api/v1/agent/factory-reset",
                                         json{{"confirm", agent_name}}, kAgentCallTimeoutMs);
    if (!reply.ok()) {
      const std::string error = reply.status().message();
      const std::string& message = reply.error_message;
      ApiResponse refused;
      if (reply.http_status == 0) {
        refused = ApiError(502, "unreachable", "host " + name + ": " + error + "; nothing was changed");
      } else if (reply.http_status == 409 && reply.error_code == "clustered") {
        refused = ApiError(409, "clustered", "host " + name + " refused the factory reset: " + message);
      } else if (reply.http_status == 400 && reply.error_code == "wrong_host") {
        refused = ApiError(409, "wrong_host",
                           "the agent of host " + name + " refused the factory reset: " + message);
      } else {
        refused = ApiError(502, "agent_error", "host " + name + ": " + error + "; nothing was changed");
      }
      Log(2, "console: action factory_reset on host " + name + " by " + user + ": " +
                 refused.body["error"]["message"].get<std::string>());
      return refused;
    }
    const json removed = reply->is_object() ? reply->value("removed", json::array()) : json::array();
    // The row goes as DELETE /api/v1/hosts/{name} removes it (audited there).
    ApiResponse deleted = DeleteHost(name, audit);
    std::string result = "reset (" + std::to_string(removed.is_array() ? removed.size() : 0) +
                         " paths removed on the host); ";
    ApiResponse answer;
    if (deleted.status == 200) {
      result += "host removed from the console";
      answer = ApiResponse{200, json{{"host", name}, {"action", action}, {"reply", *reply}, {"deleted", name}}};
    } else {
      // Changed in between (joined a cluster, say): the host is reset, the
      // row stays for the administrator to delete.
      const std::string why = deleted.body["error"].value("message", "");
      result += "the console's row stays: " + why;
      answer = ApiError(deleted.status, "reset_row_kept",
                        "host " + name + " was factory reset, but its row could not be deleted: " + why);
    }
    Log(answer.status == 200 ? 1 : 2, "console: action factory_reset on host " + name + " by " + user +
                                          ": " + result);
    std::lock_guard<std::mutex> l(db_.mu());
    auto hist = db_.Prepare(
        "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
        "VALUES (?1, 'action', ?2, NULL, ?3, ?3, ?4)");
    if (!hist.ok()) return Internal(hist.status());
    hist->Bind(1, NowMs()).Bind(2, name).Bind(3, status).Bind(
        4, "action factory_reset requested by " + user + ": " + result);
    if (Status st = hist->Run(); !st.ok()) return Internal(st);
    return answer;
  }

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
    // Decided on the agent's HTTP status and error code (daemon/agent.cc,
    // HaCommand), never on its message's text.
    const std::string error = reply.status().message();
    const std::string& message = reply.error_message;
    if (reply.http_status == 0) {
      answer = ApiError(502, "unreachable", "host " + name + ": " + error);
      result = "unreachable";
    } else if (reply.http_status == 409 && reply.error_code == "not_clustered") {
      answer = ApiError(409, "not_clustered", "host " + name + " is not in an HA cluster: " +
                                                  action + " does not apply");
      result = "not clustered";
    } else if (reply.http_status == 409 && reply.error_code == "refused") {
      answer = ApiError(409, "action_refused", "host " + name + " refused " + action + ": " + message);
      result = "refused: " + Printable(message, kReplyMessageMax);
    } else {
      answer = ApiError(502, "agent_error", "host " + name + ": " + error);
      result = "agent error " + std::to_string(reply.http_status);
    }
  }
  Log(answer.status == 200 ? 1 : 2,
      "console: action " + action + " on host " + name + " by " + user + ": " + result);

  // The history row (and, when it succeeded, the audit row) in one
  // transaction; a refusal's audit row is written by Handle. The row is of
  // kind 'action': no status change (old and new are the host's status as
  // last polled; the change, if any, is the next poll's 'status' row).
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto hist = db_.Prepare(
      "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (?1, 'action', ?2, ?3, ?4, ?4, ?5)");
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
