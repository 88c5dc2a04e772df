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
  out += fmt::format("Reason: {}\n", Str(l, "reason"));
  out += fmt::format("Most recently active: {}\n", Str(st, "most_recent_active"));
  out += fmt::format("Possible action: {}\n", Str(st, "possible_action"));
  return out;
}

}  // namespace tandem::api
