// The control channel's commands and the status the daemon reports
// (R-ST-1, R-OP-1, R-OP-5, R-OP-7, R-NF-3).
#include <sstream>

#include "daemon/daemon.h"
#include "ha/guidance.h"

namespace tandem::daemon {

using nlohmann::json;

namespace {

json Error(const std::string& why) { return json{{"ok", false}, {"error", why}}; }

std::optional<ha::AdminOp> AdminOpFor(const std::string& cmd) {
  if (cmd == "offline") return ha::AdminOp::kSetOffline;
  if (cmd == "online") return ha::AdminOp::kSetOnline;
  if (cmd == "takeover") return ha::AdminOp::kTakeover;
  if (cmd == "giveback") return ha::AdminOp::kGiveback;
  if (cmd == "restore") return ha::AdminOp::kRestore;
  return std::nullopt;
}

ha::Role OtherRole(ha::Role r) {
  return r == ha::Role::kPrimary ? ha::Role::kSecondary : ha::Role::kPrimary;
}

}  // namespace

json Daemon::HandleControl(const json& req) {
  const std::string cmd = req.at("cmd").get<std::string>();
  if (cmd == "status") return StatusJson();
  if (cmd == "ips") return IpsJson();
  if (cmd == "metrics") return json{{"ok", true}, {"text", MetricsText()}};
  if (cmd == "verify" || cmd == "split-brain" || cmd == "sync-rate" || cmd == "connect" ||
      cmd == "invalidate") {
    return HandleReplication(cmd, req);
  }
  if (auto op = AdminOpFor(cmd)) {
    // "force": `ha takeover --force` (only takeover honours it).
    auto force = req.find("force");
    if (force != req.end() && !force->is_boolean()) {
      return Error("malformed request: \"force\" must be true or false");
    }
    ha::Output out = Feed(ha::AdminCommand{*op, force != req.end() && force->get<bool>()});
    if (!out.admin_accepted || !*out.admin_accepted) {
      return Error(out.admin_message.empty() ? "refused" : out.admin_message);
    }
    return json{{"ok", true}, {"message", out.admin_message}};
  }
  return Error("unknown command '" + cmd +
               "' (known: status, ips, metrics, offline, online, takeover, giveback, restore, "
               "verify, split-brain, sync-rate, connect, invalidate, search)");
}

// /store replication commands (docs/CLI.md): verify, split-brain, sync-rate, connect,
// invalidate.
json Daemon::HandleReplication(const std::string& cmd, const json& req) {
  if (!repl_) return Error("/store is not replicated on this host (no [replication] in " + cfg_.path + ")");
  Status st;
  std::string message;
  if (cmd == "verify") {
    st = repl_->Verify();
    message = "online verify started; watch `ha status`";
  } else if (cmd == "split-brain") {
    auto s = req.find("survivor");
    if (s == req.end() || !s->is_string() || s->get<std::string>().empty()) {
      return Error("malformed request: \"survivor\" must be a host name");
    }
    std::string survivor = s->get<std::string>();
    std::string peer = link_->peer_name();
    if (survivor != cfg_.host_name && survivor != peer) {
      return Error("unknown host '" + survivor + "': the survivor is " + cfg_.host_name +
                   (peer.empty() ? std::string() : " or " + peer));
    }
    bool discard = survivor != cfg_.host_name;
    st = repl_->ResolveSplitBrain(discard);
    message = discard ? "this host's changes since the split will be replaced by " + survivor +
                            "'s (a copy is kept in quarantine) at the next connect"
                      : "this host is the survivor: the peer's changes will be replaced (and "
                        "quarantined there) at the next connect";
  } else if (cmd == "sync-rate") {
    auto r = req.find("mb_per_s");
    if (r == req.end() || !r->is_number_integer() || r->get<int64_t>() < 1 || r->get<int64_t>() > 4096) {
      return Error("malformed request: \"mb_per_s\" must be an integer 1..4096");
    }
    st = repl_->SetSyncRate(static_cast<uint64_t>(r->get<int64_t>()) * 1000 * 1000);
    message = "disk synchronization rate set to " + std::to_string(r->get<int64_t>()) + " MB/s";
  } else if (cmd == "invalidate") {
    st = repl_->Invalidate();
    message = "this host's replica of /store is Inconsistent; a full sync from the peer replaces "
              "it (watch `ha status`)";
  } else {
    st = repl_->Reconnect();
    message = "reconnecting";
  }
  if (!st.ok()) {
    counters_.admin_refused++;
    log_->info("admin: refused: {}: {}", cmd, st.message());
    return Error(st.message());
  }
  counters_.admin_accepted++;
  log_->warn("admin: accepted: {}: {}", cmd, message);
  return json{{"ok", true}, {"message", message}};
}

json Daemon::StatusJson() const {
  json local = LocalJson();
  json remote = RemoteJson();
  bool primary = cfg_.role == ha::Role::kPrimary;
  auto st = [](const json& j) {
    for (uint8_t v = 0; v <= ha::kHostStatusMax; ++v) {
      if (ha::StatusName(static_cast<ha::HostStatus>(v)) == j["status"].get<std::string>()) {
        return static_cast<ha::HostStatus>(v);
      }
    }
    return ha::HostStatus::kUnknown;
  };
  ha::HostStatus p = primary ? st(local) : st(remote);
  ha::HostStatus s = primary ? st(remote) : st(local);
  const auto& c = link_->counters();
  json dropped = json::object();
  for (size_t i = 0; i < c.dropped.size(); ++i) {
    dropped[std::string(peer::DropReasonName(static_cast<peer::DropReason>(i)))] = c.dropped[i];
  }
  dropped["unknown_sender"] = c.unknown_sender;
  dropped["unconfirmed"] = c.unconfirmed;
  json counters{{"heartbeats_dropped", dropped},
                {"heartbeats_late", c.late},
                {"transitions", counters_.transitions},
                {"takeovers", counters_.takeovers},
                {"releases", counters_.releases},
                {"admin_accepted", counters_.admin_accepted},
                {"admin_refused", counters_.admin_refused},
                {"notify_runs", counters_.notify_runs},
                {"notify_failures", counters_.notify_failures},
                {"connectivity_tests", counters_.connectivity_tests},
                {"connectivity_failures", counters_.connectivity_failures}};
  return json{{"ok", true},
              {"counters", counters},
              {"cluster", {{"name", cfg_.cluster_name}, {"vip", cfg_.vip}, {"vip_mode", cfg_.vip_mode}}},
              {"local", local},
              {"remote", remote},
              {"most_recent_active", MostRecentActive()},
              {"replication", repl_ ? repl_->StatusJson() : json(nullptr)},
              {"collector", collector_ ? collector_->StatusJson() : json(nullptr)},
              {"possible_action", ha::PossibleAction(p, s)},
              {"last_sequence", [&] {
                 json steps = json::array();
                 for (const auto& r : last_sequence_) {
                   steps.push_back({{"step", r.step}, {"wall_ms", r.wall_ms}, {"took_ms", r.took_ms},
                                    {"result", r.result}});
                 }
                 return json{{"kind", last_sequence_kind_}, {"steps", steps}};
               }()}};
}

json Daemon::LocalJson() const {
  ha::Advert a = ha::MakeAdvert(state_);
  json services = json::array();
  for (const auto& s : services_->Status()) {
    services.push_back({{"name", s.name}, {"state", s.state}, {"pid", s.pid},
                        {"restarts", s.restarts}, {"last_exit", s.last_exit}});
  }
  json paths = json::array();
  for (const auto& p : link_->paths()) {
    int64_t ago = p.last_heard_ms < 0 ? -1 : loop_.clock().NowMs() - p.last_heard_ms;
    bool up = p.last_heard_ms >= 0 && ago <= cfg_.heartbeat_timeout_ms;
    paths.push_back({{"name", p.name}, {"listen", p.listen.ToString()}, {"peer", p.peer.ToString()},
                     {"up", up}, {"last_heard_ms_ago", ago}, {"rtt_ms", up ? p.rtt_ms : -1},
                     {"sent", p.sent}, {"received", p.received}, {"send_error", p.send_error}});
  }
  return json{
      {"name", cfg_.host_name},
      {"role", ha::RoleName(cfg_.role)},
      {"status", ha::StatusName(state_.status)},
      {"admin", ha::AdminName(a.admin)},
      {"reason", state_.reason},
      {"since_wall_ms", status_since_wall_ms_},
      {"seconds_in_status", (loop_.clock().NowMs() - state_.status_since_ms) / 1000},
      {"epoch", state_.disk.epoch},
      {"last_active_epoch", state_.disk.last_active_epoch},
      {"last_active_wall_ms", file_.last_active_wall_ms},
      {"incarnation", file_.incarnation},
      {"handover", state_.handover},
      {"vip", {{"address", cfg_.vip}, {"held", vip_->held()}, {"mode", cfg_.vip_mode}}},
      {"services", services},
      {"heartbeat", {{"interval_ms", cfg_.heartbeat_interval_ms},
                     {"timeout_ms", cfg_.heartbeat_timeout_ms},
                     {"up", ha::PeerAlive(state_)},
                     {"paths_up", ha::PathsUp(state_)},
                     {"paths", paths},
                     {"rtt_ms", ha::PeerAlive(state_) ? link_->rtt_ms() : -1}}},
      {"connectivity", {{"peers", cfg_.connectivity_peers.size()},
                        {"ok", a.connectivity_ok},
                        {"last", last_connectivity_},
                        {"last_wall_ms", last_connectivity_wall_ms_}}},
  };
}

json Daemon::RemoteJson() const {
  bool alive = ha::PeerAlive(state_);
  const auto& peer = state_.peer;
  std::string last = peer ? std::string(ha::StatusName(peer->status)) : file_.peer_status;
  json j{
      {"name", link_->peer_name()},
      {"role", ha::RoleName(OtherRole(cfg_.role))},
      // A silent peer's status cannot be read (R-ST-1: Unknown).
      {"status", alive && peer ? std::string(ha::StatusName(peer->status)) : "UNKNOWN"},
      {"admin", alive && peer ? std::string(ha::AdminName(peer->admin)) : "UNKNOWN"},
      {"last_known_status", last.empty() ? "UNKNOWN" : last},
      {"epoch", peer ? peer->epoch : file_.peer_epoch},
      {"incarnation", link_->peer_incarnation()},
      {"heartbeat_up", alive},
      {"rtt_ms", alive ? link_->rtt_ms() : -1},
      {"connectivity_ok", peer ? peer->connectivity_ok : false},
      {"address", cfg_.peer.host},
  };
  if (j["name"].get<std::string>().empty()) j["name"] = "";
  return j;
}

// R-OP-7: from this host's own records only.
std::string Daemon::MostRecentActive() const {
  if (state_.status == ha::HostStatus::kActive) return "local";
  if (ha::PeerAlive(state_) && state_.peer && state_.peer->status == ha::HostStatus::kActive) {
    return "remote";
  }
  if (state_.disk.epoch == 0) return "unknown";
  // We were active in the newest generation we know of: we were last.
  return state_.disk.last_active_epoch == state_.disk.epoch ? "local" : "remote";
}

json Daemon::IpsJson() const {
  bool primary = cfg_.role == ha::Role::kPrimary;
  json j{{"ok", true},
         {"vip", cfg_.vip},
         {"primary", primary ? cfg_.listen.host : cfg_.peer.host},
         {"secondary", primary ? cfg_.peer.host : cfg_.listen.host}};
  if (!cfg_.crossover_listen.empty()) {
    j["crossover"] = {{"primary", primary ? cfg_.crossover_listen.host : cfg_.crossover_peer.host},
                      {"secondary", primary ? cfg_.crossover_peer.host : cfg_.crossover_listen.host}};
  }
  return j;
}

// Prometheus text exposition (R-NF-3).
std::string Daemon::MetricsText() const {
  std::ostringstream os;
  auto metric = [&](const std::string& name, uint64_t v, const std::string& labels = "") {
    os << "tandem_" << name << (labels.empty() ? "" : "{" + labels + "}") << " " << v << "\n";
  };
  metric("status", 1, "status=\"" + std::string(ha::StatusName(state_.status)) + "\"");
  metric("epoch", state_.disk.epoch);
  metric("peer_up", ha::PeerAlive(state_) ? 1 : 0);
  metric("transitions_total", counters_.transitions);
  metric("takeovers_total", counters_.takeovers);
  metric("releases_total", counters_.releases);
  metric("admin_commands_total", counters_.admin_accepted, "result=\"accepted\"");
  metric("admin_commands_total", counters_.admin_refused, "result=\"refused\"");
  metric("notify_runs_total", counters_.notify_runs);
  metric("notify_failures_total", counters_.notify_failures);
  metric("connectivity_tests_total", counters_.connectivity_tests);
  metric("connectivity_failures_total", counters_.connectivity_failures);
  for (const auto& p : link_->paths()) {
    metric("heartbeats_sent_total", p.sent, "path=\"" + p.name + "\"");
    metric("heartbeats_received_total", p.received, "path=\"" + p.name + "\"");
  }
  const auto& c = link_->counters();
  for (size_t i = 0; i < c.dropped.size(); ++i) {
    metric("heartbeats_dropped_total", c.dropped[i],
           "reason=\"" + std::string(peer::DropReasonName(static_cast<peer::DropReason>(i))) + "\"");
  }
  metric("heartbeats_dropped_total", c.unknown_sender, "reason=\"unknown_sender\"");
  metric("heartbeats_dropped_total", c.unconfirmed, "reason=\"unconfirmed\"");
  for (const auto& s : services_->Status()) {
    metric("service_restarts_total", static_cast<uint64_t>(s.restarts), "service=\"" + s.name + "\"");
    metric("service_running", s.state == "running" ? 1 : 0, "service=\"" + s.name + "\"");
  }
  if (agent_) os << agent_->MetricsText();
  if (console_) os << console_->MetricsText();
  return os.str();
}

}  // namespace tandem::daemon
