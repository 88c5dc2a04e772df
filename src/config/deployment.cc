#include "config/deployment.h"

#include <toml++/toml.h>

#include <sstream>

#include "os/files.h"

namespace tandem::config {

using nlohmann::json;

namespace {

constexpr size_t kLocalFileBytesMax = 1 << 20;

bool IsMember(const json& d) {
  const std::string role = d["host"].value("role", "");
  return role == "primary" || role == "secondary";
}

bool InLoopback(const std::string& ip) {
  const std::optional<uint32_t> a = ParseIPv4(ip);
  return a && (*a >> 24) == 127;
}

}  // namespace

std::string NoClusterReason(const json& d) {
  if (!d.is_object() || !d.contains("host") || !d["host"].is_object()) return "the document has no host";
  if (!IsMember(d) || !d.contains("cluster") || !d["cluster"].is_object()) {
    return "the console has this host in no cluster (role " + d["host"].value("role", "?") + ")";
  }
  const json& c = d["cluster"];
  if (!c.contains("secondary_ip") || !c["secondary_ip"].is_string()) {
    return "cluster " + c.value("name", "?") + " has no secondary (it was disconnected)";
  }
  if (!c.value("license_valid", false)) {
    return "cluster " + c.value("name", "?") + " has no valid HA license (Needs License): no HA role runs";
  }
  if (!c.contains("key") || !c["key"].is_string() || !c.contains("vip_prefix") ||
      !c["vip_prefix"].is_number_integer()) {
    return "cluster " + c.value("name", "?") + ": the document lacks the cluster key or VIP prefix "
           "(deployed by an older console)";
  }
  return "";
}

std::string DeploymentIdentity(const json& d) {
  if (!NoClusterReason(d).empty()) return "";
  const json& c = d["cluster"];
  const json& o = c["options"];
  return json{{"cluster", c["name"]},
              {"key", c["key"]},
              {"vip", c["vip"]},
              {"vip_prefix", c["vip_prefix"]},
              {"host", d["host"]["name"]},
              {"role", d["host"]["role"]},
              {"primary_ip", c["primary_ip"]},
              {"secondary_ip", c["secondary_ip"]},
              {"crossover", {o["crossover_interface"], o["crossover_primary_ip"], o["crossover_secondary_ip"]}},
              {"replication", !o["disable_replication"].get<bool>()}}
      .dump();
}

Result<std::string> DeploymentToml(const Config& local, const json& d, const std::string& key_file) {
  if (!local.agent_only) {
    return Status::Error(local.path + ": has its own [cluster]: a deployed cluster applies to an agent-only host");
  }
  if (std::string why = NoClusterReason(d); !why.empty()) return Status::Error(why);
  auto text = os::ReadFile(local.path, kLocalFileBytesMax);
  if (!text.ok()) return text.status();
  toml::table root;
  try {
    root = toml::parse(*text, local.path);
  } catch (const toml::parse_error& e) {
    return Status::Error(local.path + ": " + std::string(e.description()));
  }
  const json& c = d["cluster"];
  const json& o = c["options"];
  const bool primary = d["host"]["role"] == "primary";
  const std::string self = c[primary ? "primary_ip" : "secondary_ip"].get<std::string>();
  const std::string peer = c[primary ? "secondary_ip" : "primary_ip"].get<std::string>();
  const std::string hb = std::to_string(local.agent.heartbeat_port);
  const std::string rp = std::to_string(local.agent.replication_port);
  const std::string vip = c["vip"].get<std::string>();

  toml::table cluster{{"name", c["name"].get<std::string>()},
                      {"key_file", key_file},
                      {"vip", vip},
                      {"vip_mode", InLoopback(vip) ? "loopback" : "interface"},
                      {"vip_prefix", c["vip_prefix"].get<int64_t>()}};
  root.insert_or_assign("cluster", std::move(cluster));
  toml::table* host = root["host"].as_table();
  if (host == nullptr) return Status::Error(local.path + ": [host] is missing");
  host->insert_or_assign("name", d["host"]["name"].get<std::string>());
  host->insert_or_assign("role", d["host"]["role"].get<std::string>());

  toml::table heartbeat{{"interval_ms", o["heartbeat_interval_ms"].get<int64_t>()},
                        {"timeout_ms", o["heartbeat_timeout_ms"].get<int64_t>()},
                        {"listen", self + ":" + hb},
                        {"peer", peer + ":" + hb}};
  std::string xo_self, xo_peer;
  if (o["crossover_interface"].is_string()) {
    xo_self = o[primary ? "crossover_primary_ip" : "crossover_secondary_ip"].get<std::string>();
    xo_peer = o[primary ? "crossover_secondary_ip" : "crossover_primary_ip"].get<std::string>();
    heartbeat.insert_or_assign("crossover_listen", xo_self + ":" + hb);
    heartbeat.insert_or_assign("crossover_peer", xo_peer + ":" + hb);
  }
  root.insert_or_assign("heartbeat", std::move(heartbeat));

  // The effective connectivity peers: "a.b.c.d:port" TCP, "a.b.c.d" ICMP;
  // tested as often as heartbeats are sent (at most every 10 s).
  toml::array tcp, icmp;
  for (const json& p : o["connectivity_peers"]) {
    const std::string s = p.get<std::string>();
    (s.find(':') == std::string::npos ? icmp : tcp).push_back(s);
  }
  if (!tcp.empty() || !icmp.empty()) {
    const int64_t interval = std::clamp<int64_t>(o["heartbeat_interval_ms"].get<int64_t>(), 200, 10000);
    toml::table conn{{"interval_ms", interval}, {"timeout_ms", std::min<int64_t>(2000, interval)}};
    if (!tcp.empty()) conn.insert_or_assign("peers", std::move(tcp));
    if (!icmp.empty()) conn.insert_or_assign("icmp_peers", std::move(icmp));
    root.insert_or_assign("connectivity", std::move(conn));
  }

  // /store: replicated unless the cluster disables it or the host has none;
  // over the crossover link when there is one (R-DS-6).
  if (!o["disable_replication"].get<bool>() && !local.agent.store_dir.empty()) {
    toml::table repl{{"store_dir", local.agent.store_dir},
                     {"listen", (xo_self.empty() ? self : xo_self) + ":" + rp},
                     {"peer", (xo_peer.empty() ? peer : xo_peer) + ":" + rp},
                     {"sync_rate_mb", o["sync_rate_mb"].get<int64_t>()}};
    root.insert_or_assign("replication", std::move(repl));
  }
  std::ostringstream out;
  out << "# " << local.path << " with the cluster deployed by console "
      << d["console"]["name"].get<std::string>() << ", revision " << d["revision"].get<int64_t>() << "\n"
      << root << "\n";
  return out.str();
}

Result<Config> WithDeployment(const Config& local, const json& d) {
  const std::string key_file = local.agent.state_dir + "/cluster.key";
  auto text = DeploymentToml(local, d, key_file);
  if (!text.ok()) return text.status();
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(local.agent.state_dir, 0700));
  TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(key_file, d["cluster"]["key"].get<std::string>() + "\n", 0600));
  auto cfg = Parse(*text, local.path);
  if (!cfg.ok()) {
    return Status::Error("the deployed cluster does not make a valid configuration: " + cfg.status().message());
  }
  cfg->deployment_identity = DeploymentIdentity(d);
  cfg->deployment_revision = d["revision"].get<int64_t>();
  return cfg;
}

}  // namespace tandem::config
