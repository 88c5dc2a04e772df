#include "api/format.h"

#include <fmt/format.h>

namespace tandem::api {

using nlohmann::json;

namespace {

std::string Str(const json& j, const char* key, const char* def = "-") {
  if (!j.is_object() || !j.contains(key)) return def;
  const json& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) {
    int64_t n = v.get<int64_t>();
    return n < 0 ? def : std::to_string(n);
  }
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  return def;
}

std::string Paths(const json& local, const char* sep = ":") {
  const json& hb = local.value("heartbeat", json::object());
  size_t total = hb.contains("paths") ? hb["paths"].size() : 0;
  return Str(hb, "paths_up", "0") + sep + std::to_string(total);
}

}  // namespace

std::string CStateLine(const json& st) {
  const json& l = st.value("local", json::object());
  const json& r = st.value("remote", json::object());
  const json& hb = l.value("heartbeat", json::object());
  std::string hbt = hb.value("up", false) ? "UP" : "DOWN";
  std::string rtt = Str(hb, "rtt_ms");
  std::string cs = "NONE";  // /store replication state: NONE until replication is configured
  return fmt::format(
      "Local: R:{} S:{}/{} CS:{} P:{} HBT:{} RTT:{} E:{} LA:{} I:{} SI:{} "
      "Remote: R:{} S:{}/{} CS:{} P:{} HBT:{} RTT:{} E:{} LA:- I:{} SI:-",
      Str(l, "role"), Str(l, "status"), Str(l, "admin"), cs, Paths(l), hbt, rtt, Str(l, "epoch"),
      Str(l, "last_active_epoch"), Str(l, "incarnation"), Str(l, "seconds_in_status"),
      Str(r, "role"), Str(r, "status"), Str(r, "admin"), cs, Paths(l), hbt, rtt, Str(r, "epoch"),
      Str(r, "incarnation"));
}

// "Collector: running, 1234 records stored, capacity ok (19.9% used)", or
// why it is not collecting. Empty without a [collector].
std::string CollectorLine(const json& c) {
  if (!c.is_object()) return "";
  if (!c.value("running", false)) {
    std::string err = c.value("last_error", "");
    return "Collector: not running" + (err.empty() ? std::string(" (standby)") : ": " + err) + "\n";
  }
  const json& store = c.value("store", json::object());
  const json& cap = c.value("capacity", json::object());
  std::string out = fmt::format(
      "Collector: running, {} records stored, queue {} KiB, capacity {} ({:.1f}% used)\n",
      store.value("records_written", uint64_t{0}), c.value("queue", json::object()).value("bytes", uint64_t{0}) / 1024,
      Str(cap, "state"), cap.value("used_percent", 0.0));
  std::string why = cap.value("reason", "");
  if (!why.empty()) out += "  " + why + "\n";
  return out;
}

// In the spirit of `drbdadm status`: "store role:Primary disk:UpToDate",
// then the peer's connection and replication state, progress while syncing.
std::string ReplicationLines(const json& r) {
  if (!r.is_object()) return "";
  const json& peer = r.value("peer", json::object());
  std::string out = fmt::format("Store {} role:{} disk:{} protocol:{}{}\n", Str(r, "store_dir"),
                                Str(r, "role"), Str(r, "disk"), Str(r, "protocol"),
                                r.value("protected", false) ? "" : "  (UNPROTECTED: not in sync with the peer)");
  out += fmt::format("  peer {} connection:{} replication:{} peer-role:{}\n",
                     Str(peer, "node", "?"), peer.value("connected", false) ? "Connected" : "Disconnected",
                     Str(r, "replication"), Str(peer, "role", "?"));
  out += fmt::format("  out-of-sync:{} KiB pending:{} unacked:{} sync-rate:{} MB/s\n",
                     r.value("out_of_sync_bytes", uint64_t{0}) / 1024, Str(r, "pending_writes"),
                     Str(r, "unacked_writes"), r.value("sync_rate_bytes_per_s", uint64_t{0}) / 1000000);
  if (r.contains("sync")) {
    const json& s = r["sync"];
    out += fmt::format("  sync: {:.1f}% of {} MB, {:.1f} MB/s, ETA {:.0f} s\n", s.value("percent", 0.0),
                       s.value("total_bytes", uint64_t{0}) / 1000000,
                       static_cast<double>(s.value("rate_bytes_per_s", uint64_t{0})) / 1e6,
                       s.value("eta_s", -1.0));
  }
  if (r.contains("verify")) {
    const json& v = r["verify"];
    out += fmt::format("  verify: {:.1f}%, {} differing chunks so far\n", v.value("percent", 0.0),
                       Str(v, "differing_chunks"));
  }
  for (const char* k : {"last_sync", "last_verify", "split_brain", "standalone_reason", "failed_reason"}) {
    if (r.contains(k)) out += fmt::format("  {}: {}\n", k, Str(r, k));
  }
  return out;
}

std::string StatusTable(const json& st) {
  const json& l = st.value("local", json::object());
  const json& r = st.value("remote", json::object());
  const json& c = st.value("cluster", json::object());
  const json& hb = l.value("heartbeat", json::object());
  std::string out = fmt::format("Cluster {}   VIP {} ({})\n", Str(c, "name"), Str(c, "vip"),
                                Str(c, "vip_mode"));
  out += fmt::format("{:<8} {:<24} {:<10} {:<16} {:<8} {:<6}\n", "", "HOST", "ROLE", "STATUS",
                     "ADMIN", "EPOCH");
  out += fmt::format("{:<8} {:<24} {:<10} {:<16} {:<8} {:<6}\n", "local", Str(l, "name"),
                     Str(l, "role"), Str(l, "status"), Str(l, "admin"), Str(l, "epoch"));
  std::string rname = Str(r, "name", "");
  out += fmt::format("{:<8} {:<24} {:<10} {:<16} {:<8} {:<6}\n", "remote",
                     rname.empty() ? "(" + Str(r, "address") + ")" : rname, Str(r, "role"),
                     Str(r, "status"), Str(r, "admin"), Str(r, "epoch"));
  out += fmt::format("Heartbeat: {}, {} path(s) up, RTT {} ms, interval {} ms, timeout {} ms\n",
                     hb.value("up", false) ? "UP" : "DOWN", Paths(l, " of "), Str(hb, "rtt_ms"),
                     Str(hb, "interval_ms"), Str(hb, "timeout_ms"));
  const json& vip = l.value("vip", json::object());
  out += fmt::format("VIP held here: {}\n", vip.value("held", false) ? "yes" : "no");
  for (const json& s : l.value("services", json::array())) {
    out += fmt::format("Service {}: {} (pid {}, restarts {}{})\n", Str(s, "name"), Str(s, "state"),
                       Str(s, "pid"), Str(s, "restarts", "0"),
                       Str(s, "last_exit", "").empty() ? "" : ", last exit: " + Str(s, "last_exit"));
  }
  const json& conn = l.value("connectivity", json::object());
  if (conn.value("peers", 0) > 0) {
    out += fmt::format("Connectivity: {} ({})\n", conn.value("ok", false) ? "OK" : "FAILED",
                       Str(conn, "last"));
  }
  out += ReplicationLines(st.value("replication", json()));
  out += CollectorLine(st.value("collector", json()));
  out += fmt::format("Reason: {}\n", Str(l, "reason"));
  out += fmt::format("Most recently active: {}\n", Str(st, "most_recent_active"));
  out += fmt::format("Possible action: {}\n", Str(st, "possible_action"));
  return out;
}

}  // namespace tandem::api
