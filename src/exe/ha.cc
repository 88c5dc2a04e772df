// ha: the operator CLI (docs/CLI.md). Talks to the local tandemd over its
// control socket; every command takes --config FILE. The console commands
// (create, hosts, clusters, console-status, action, deploy, upgrade, replace) talk to
// the console's API instead (--api FILE, or --api-url/--api-user/
// --api-password-file/--api-ca-cert; docs/CLI.md, "Console commands").
// Exit codes: 0 done, 1 refused or failed, 2 bad usage, 3 daemon (or
// console) unreachable.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>
#include <thread>

#include "api/control.h"
#include "api/format.h"
#include "config/config.h"
#include "console/api_client.h"

namespace {

using nlohmann::json;
using tandem::Result;

constexpr int64_t kCallTimeoutMs = 10000;
constexpr int64_t kPollMs = 20;

struct Ctx {
  std::string config = "/etc/tandem/tandemd.toml";
  std::string socket;
};

int Fail(const std::string& msg, int code) {
  std::cerr << "ha: " << msg << "\n";
  return code;
}

Result<json> Call(const Ctx& ctx, const std::string& cmd) {
  return tandem::api::Call(ctx.socket, json{{"cmd", cmd}}, kCallTimeoutMs);
}

int Show(const Ctx& ctx, const std::string& what, bool as_json) {
  auto r = Call(ctx, what == "cstate" ? "status" : what);
  if (!r.ok()) return Fail(r.status().message(), 3);
  if (!r->value("ok", false)) return Fail(r->value("error", "failed"), 1);
  if (as_json) {
    std::cout << r->dump(2) << "\n";
  } else if (what == "cstate") {
    std::cout << tandem::api::CStateLine(*r) << "\n";
  } else if (what == "status") {
    std::cout << tandem::api::StatusTable(*r);
  } else if (what == "metrics") {
    std::cout << r->value("text", "");
  } else {  // ips
    std::cout << "VIP:       " << r->value("vip", "") << "\nPrimary:   " << r->value("primary", "")
              << "\nSecondary: " << r->value("secondary", "") << "\n";
    if (r->contains("crossover")) {
      std::cout << "Crossover: primary " << (*r)["crossover"].value("primary", "")
                << ", secondary " << (*r)["crossover"].value("secondary", "") << "\n";
    }
  }
  return 0;
}

// Polls until `done(status)` or the deadline; prints the cstate line.
int WaitFor(const Ctx& ctx, int64_t timeout_ms, const std::function<bool(const json&)>& done,
            const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = Call(ctx, "status");
    if (r.ok() && done(*r)) {
      std::cout << tandem::api::CStateLine(*r) << "\n";
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
  return Fail("timed out after " + std::to_string(timeout_ms) + " ms waiting for " + what, 1);
}

std::string LocalStatus(const json& s) { return s["local"].value("status", ""); }
std::string RemoteStatus(const json& s) { return s["remote"].value("status", ""); }

int Admin(const Ctx& ctx, const std::string& cmd, bool force, bool wait, int64_t timeout_ms) {
  json req{{"cmd", cmd}};
  if (force) req["force"] = true;  // takeover --force
  auto r = tandem::api::Call(ctx.socket, req, kCallTimeoutMs);
  if (!r.ok()) return Fail(r.status().message(), 3);
  if (!r->value("ok", false)) return Fail(cmd + " refused: " + r->value("error", "?"), 1);
  std::cout << cmd << ": " << r->value("message", "accepted") << "\n";
  if (!wait) return 0;
  if (cmd == "takeover") {
    return WaitFor(ctx, timeout_ms, [](const json& s) { return LocalStatus(s) == "ACTIVE"; },
                   "this host to become ACTIVE");
  }
  if (cmd == "giveback") {
    return WaitFor(ctx, timeout_ms, [](const json& s) { return RemoteStatus(s) == "ACTIVE"; },
                   "the peer to become ACTIVE");
  }
  if (cmd == "offline") {
    return WaitFor(ctx, timeout_ms, [](const json& s) { return LocalStatus(s) == "OFFLINE"; },
                   "this host to become OFFLINE");
  }
  auto settled = [](const json& s) {
    std::string st = LocalStatus(s);
    return st == "ACTIVE" || st == "STANDBY" || st == "FAILED";
  };
  return WaitFor(ctx, timeout_ms, settled, "this host to settle");
}

// ---- console commands (docs/CLI.md, "Console commands") ----

struct ApiArgs {
  std::string file, url, user, password_file, ca_cert;
};

// What a console command asked for (the parsed options).
struct ConsoleArgs {
  std::string primary, secondary, primary_new_ip, license, crossover_interface, crossover_primary_ip,
      crossover_secondary_ip;
  int64_t heartbeat_interval_ms = 0, heartbeat_timeout_ms = 0, sync_rate_mb = 0;
  std::vector<std::string> connectivity_peers;
  std::string host, action, cluster, role;
  bool full = false;
};

constexpr const char* kConsoleCommands[] = {"create", "hosts",  "clusters", "console-status",
                                            "action", "deploy", "upgrade", "replace"};

bool IsConsoleCommand(const std::string& cmd) {
  for (const char* c : kConsoleCommands) {
    if (cmd == c) return true;
  }
  return false;
}

std::string Str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "-";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

// Columns padded to their widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

void PrintHosts(const json& hosts) {
  std::vector<std::vector<std::string>> rows{{"NAME", "ROLE", "CLUSTER", "CLUSTER-ROLE", "STATUS", "REASON"}};
  for (const json& h : hosts) {
    rows.push_back({Str(h, "name"), Str(h, "role"), Str(h, "cluster"), Str(h, "cluster_role"),
                    Str(h, "status"), Str(h, "status_reason")});
  }
  PrintTable(rows);
}

void PrintCluster(const json& c) {
  std::cout << "cluster " << Str(c, "name") << ": " << Str(c, "status");
  if (c.value("status_reason", json()).is_string()) std::cout << " (" << Str(c, "status_reason") << ")";
  std::cout << "\n";
  const json ips = c.value("ips", json::object());
  std::cout << "  VIP " << Str(ips, "vip") << ", primary " << Str(ips, "primary") << ", secondary "
            << Str(ips, "secondary") << "\n";
  for (const json& m : c.value("members", json::array())) {
    std::cout << "  " << Str(m, "role") << ": " << Str(m, "name") << " (" << Str(m, "address") << ") "
              << Str(m, "status") << "\n";
  }
}

int ApiFail(const std::string& what, const tandem::console::ApiAnswer& a) {
  return Fail(what + " refused (HTTP " + std::to_string(a.status) + "): " + a.ErrorText(), 1);
}

int RunConsole(const std::string& cmd, const ApiArgs& api, const ConsoleArgs& in, bool as_json) {
  using tandem::console::ApiClientOptions;
  ApiClientOptions o;
  if (!api.file.empty()) {
    if (!api.url.empty() || !api.user.empty() || !api.password_file.empty() || !api.ca_cert.empty()) {
      return Fail("give either --api FILE or the --api-url/--api-user/--api-password-file/--api-ca-cert "
                  "options, not both",
                  2);
    }
    auto r = tandem::console::ReadApiClientOptions(api.file);
    if (!r.ok()) return Fail(r.status().message(), 2);
    o = *r;
  } else {
    if (api.url.empty() || api.user.empty() || api.password_file.empty() || api.ca_cert.empty()) {
      return Fail(cmd + " talks to the console: give --api FILE, or all of --api-url, --api-user, "
                        "--api-password-file and --api-ca-cert",
                  2);
    }
    o.url = api.url;
    o.user = api.user;
    o.password_file = api.password_file;
    o.tls_cert = api.ca_cert;
  }
  for (const std::string* f : {&o.password_file, &o.tls_cert}) {
    if (::access(f->c_str(), R_OK) != 0) return Fail("cannot read " + *f, 2);
  }
  for (const std::string* name : {&in.host, &in.cluster}) {
    for (char c : *name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
        return Fail("\"" + *name + "\" is not a name (A-Z a-z 0-9 _ . -)", 2);
      }
    }
  }
  tandem::console::ApiClient client(o);
  std::string method = "GET", path;
  json body = nullptr;
  if (cmd == "create") {
    method = "POST";
    path = "/api/v1/clusters";
    body = json{{"primary", in.primary}, {"secondary", in.secondary}, {"primary_new_ip", in.primary_new_ip}};
    if (!in.license.empty()) body["license"] = in.license;
    json options = json::object();
    if (in.heartbeat_interval_ms > 0) options["heartbeat_interval_ms"] = in.heartbeat_interval_ms;
    if (in.heartbeat_timeout_ms > 0) options["heartbeat_timeout_ms"] = in.heartbeat_timeout_ms;
    if (in.sync_rate_mb > 0) options["sync_rate_mb"] = in.sync_rate_mb;
    if (!in.connectivity_peers.empty()) options["connectivity_peers"] = in.connectivity_peers;
    const int crossover = !in.crossover_interface.empty() + !in.crossover_primary_ip.empty() +
                          !in.crossover_secondary_ip.empty();
    if (crossover != 0 && crossover != 3) {
      return Fail("--crossover-interface, --crossover-primary-ip and --crossover-secondary-ip go together", 2);
    }
    if (crossover == 3) {
      options["crossover_interface"] = in.crossover_interface;
      options["crossover_primary_ip"] = in.crossover_primary_ip;
      options["crossover_secondary_ip"] = in.crossover_secondary_ip;
    }
    if (!options.empty()) body["options"] = options;
  } else if (cmd == "hosts") {
    path = "/api/v1/hosts";
  } else if (cmd == "clusters") {
    path = "/api/v1/clusters";
  } else if (cmd == "console-status") {
    path = "/api/v1/status";
  } else if (cmd == "action") {
    method = "POST";
    path = "/api/v1/hosts/" + in.host + "/actions";
    body = json{{"action", in.action}};
  } else if (cmd == "deploy") {
    method = "POST";
    path = "/api/v1/deploy";
    body = json{{"full", in.full}};
  } else if (cmd == "replace") {
    method = "POST";
    path = "/api/v1/clusters/" + in.cluster + "/replace";
    body = json{{"role", in.role}, {"host", in.host}};
  } else {  // upgrade
    method = "POST";
    path = "/api/v1/clusters/" + in.cluster + "/upgrade";
    body = json::object();
  }
  auto a = client.Call(method, path, body);
  if (!a.ok()) return Fail(a.status().message(), tandem::console::IsUnreachable(a.status()) ? 3 : 1);
  if (as_json) std::cout << a->body.dump(2) << "\n";
  if (!a->ok()) {
    // deploy_incomplete still says which hosts took the configuration.
    if (!as_json && cmd == "deploy" && a->body.contains("hosts")) {
      for (const json& h : a->body["hosts"]) {
        std::cout << "  " << Str(h, "name") << ": " << (h.value("ok", false) ? "ok" : "FAILED") << " "
                  << Str(h, "message") << "\n";
      }
    }
    return ApiFail(cmd, *a);
  }
  if (as_json) return 0;
  const json& b = a->body;
  if (cmd == "create") {
    PrintCluster(b.value("cluster", json::object()));
    const json link = b.value("link", json());
    if (link.is_object()) {
      std::cout << "link: rtt " << Str(link, "rtt_ms") << " ms, " << Str(link, "mbps") << " Mbit/s\n";
    }
    for (const json& w : b.value("warnings", json::array())) {
      std::cout << "warning: " << Str(w, "code") << ": " << Str(w, "message") << "\n";
    }
  } else if (cmd == "hosts") {
    PrintHosts(b.value("hosts", json::array()));
  } else if (cmd == "clusters") {
    for (const json& c : b.value("clusters", json::array())) PrintCluster(c);
  } else if (cmd == "console-status") {
    for (const json& c : b.value("clusters", json::array())) {
      const json p = c.value("primary", json::object()), q = c.value("secondary", json::object());
      std::cout << "cluster " << Str(c, "name") << " (VIP " << Str(c, "vip") << "): primary " << Str(p, "host")
                << " " << Str(p, "status") << ", secondary " << Str(q, "host") << " " << Str(q, "status")
                << "\n  possible action: " << Str(c, "possible_action") << "\n";
    }
    PrintHosts(b.value("hosts", json::array()));
  } else if (cmd == "action") {
    std::cout << in.host << ": " << in.action << ": " << Str(b.value("reply", json::object()), "message") << "\n";
  } else if (cmd == "deploy") {
    std::cout << "deployed revision " << Str(b, "revision") << "\n";
    for (const json& h : b.value("hosts", json::array())) {
      std::cout << "  " << Str(h, "name") << ": " << (h.value("ok", false) ? "ok" : "FAILED") << " "
                << Str(h, "message") << "\n";
    }
  } else if (cmd == "replace") {
    PrintCluster(b.value("cluster", json::object()));
  } else {  // upgrade
    std::cout << "cluster " << Str(b, "cluster") << ": pushed " << Str(b, "pushed") << "; status "
              << Str(b, "status") << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ha: operate a Tandem high-availability cluster (see docs/CLI.md)"};
  app.require_subcommand(1);
  Ctx ctx;
  bool as_json = false, no_wait = false, force = false;
  int64_t timeout_ms = 60000;
  app.add_option("-c,--config", ctx.config, "tandemd configuration of this host")
      ->capture_default_str();
  for (const char* show : {"cstate", "status", "ips", "metrics"}) {
    auto* sub = app.add_subcommand(show, std::string("show ") + show);
    sub->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
    if (std::string(show) != "metrics") sub->add_flag("--json", as_json, "print JSON");
  }
  const std::vector<std::pair<const char*, const char*>> admin = {
      {"offline", "set this host offline (on the active host: a manual failover)"},
      {"online", "set this host online"},
      {"takeover", "make this (standby) host active; the peer releases first"},
      {"giveback", "make the peer active; run on the active host"},
      {"restore", "bring a FAILED host back (it rejoins as standby)"}};
  for (const auto& [name, help] : admin) {
    auto* sub = app.add_subcommand(name, help);
    sub->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
    sub->add_flag("--no-wait", no_wait, "return once accepted, do not wait for the result");
    sub->add_option("--timeout-ms", timeout_ms, "how long to wait for the result")
        ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
    if (std::string(name) == "takeover") {
      sub->add_flag("--force", force,
                    "promote this host although its replica of /store is not UpToDate (data "
                    "written since it was last in sync may be lost)");
    }
  }
  // /store replication (docs/REPLICATION.md).
  std::string survivor;
  int64_t rate_mb = 0;
  auto* verify = app.add_subcommand("verify", "online verify: compare both replicas of /store by checksum and resync differences");
  verify->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
  auto* sb = app.add_subcommand("split-brain", "resolve a split brain: the survivor's data wins, the other host's changes go to quarantine");
  sb->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
  sb->add_option("--survivor", survivor, "the host whose data is kept")->required();
  auto* rate = app.add_subcommand("sync-rate", "set the disk synchronization rate (MB/s, 1..4096), live");
  rate->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
  rate->add_option("mb_per_s", rate_mb, "MB/s")->required()->check(CLI::Range(int64_t{1}, int64_t{4096}));
  auto* conn = app.add_subcommand("connect", "retry the replication connection after a refusal (StandAlone)");
  conn->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
  auto* inval = app.add_subcommand("invalidate", "discard this (standby) host's replica of /store and replace it by a full sync from the peer");
  inval->add_option("-c,--config", ctx.config, "tandemd configuration of this host");
  // Console commands (docs/CLI.md, "Console commands").
  ApiArgs api;
  ConsoleArgs cargs;
  auto api_options = [&api](CLI::App* a) {
    a->add_option("--api", api.file, "JSON file {\"url\", \"user\", \"password_file\", \"tls_cert\"} of the console API");
    a->add_option("--api-url", api.url, "the console's URL (https://HOST:PORT)");
    a->add_option("--api-user", api.user, "the console user to log in as");
    a->add_option("--api-password-file", api.password_file, "file whose first line is that user's password");
    a->add_option("--api-ca-cert", api.ca_cert, "the console's TLS certificate (PEM): the only one trusted");
  };
  api_options(&app);
  auto* create = app.add_subcommand("create", "console: create an HA cluster of two paired hosts");
  create->add_option("--primary", cargs.primary, "the primary host")->required();
  create->add_option("--secondary", cargs.secondary, "the secondary host")->required();
  create->add_option("--primary-new-ip", cargs.primary_new_ip, "the primary's new address (its old one becomes the VIP)")
      ->required();
  create->add_option("--license", cargs.license, "the HA license's id");
  create->add_option("--heartbeat-interval-ms", cargs.heartbeat_interval_ms, "heartbeat interval");
  create->add_option("--heartbeat-timeout-ms", cargs.heartbeat_timeout_ms, "heartbeat timeout");
  create->add_option("--sync-rate-mb", cargs.sync_rate_mb, "disk synchronization rate, MB/s");
  create->add_option("--connectivity-peer", cargs.connectivity_peers, "a connectivity peer (repeatable)");
  create->add_option("--crossover-interface", cargs.crossover_interface, "the crossover interface");
  create->add_option("--crossover-primary-ip", cargs.crossover_primary_ip, "the primary's crossover address");
  create->add_option("--crossover-secondary-ip", cargs.crossover_secondary_ip, "the secondary's crossover address");
  auto* hosts = app.add_subcommand("hosts", "console: list the managed hosts");
  auto* clusters = app.add_subcommand("clusters", "console: list the HA clusters");
  auto* cstatus = app.add_subcommand("console-status", "console: the deployment's status and possible actions");
  auto* action = app.add_subcommand("action", "console: run an HA action on a host through its agent");
  action->add_option("host", cargs.host, "the host")->required();
  action->add_option("action", cargs.action, "takeover, giveback, offline, online, restore, verify or factory_reset")
      ->required()
      ->check(CLI::IsMember({"takeover", "giveback", "offline", "online", "restore", "verify", "factory_reset"}));
  auto* deploy = app.add_subcommand("deploy", "console: deploy the pending configuration changes");
  deploy->add_flag("--full", cargs.full, "deploy every host's whole configuration, changed or not");
  auto* upgrade = app.add_subcommand("upgrade", "console: bring a cluster's content packages in line");
  upgrade->add_option("cluster", cargs.cluster, "the cluster")->required();
  auto* replace = app.add_subcommand("replace", "console: put a paired host in the place of a dead cluster member");
  replace->add_option("cluster", cargs.cluster, "the cluster")->required();
  replace->add_option("--role", cargs.role, "the member replaced: primary or secondary")
      ->required()
      ->check(CLI::IsMember({"primary", "secondary"}));
  replace->add_option("--host", cargs.host, "the paired, unclustered host that takes its place")->required();
  for (CLI::App* a : {create, hosts, clusters, cstatus, action, deploy, upgrade, replace}) {
    api_options(a);
    a->add_flag("--json", as_json, "print the API's JSON answer");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (const std::string sub = app.get_subcommands().front()->get_name(); IsConsoleCommand(sub)) {
    return RunConsole(sub, api, cargs, as_json);
  }
  auto cfg = tandem::config::Load(ctx.config, /*read_key=*/false);
  if (!cfg.ok()) return Fail(cfg.status().message(), 2);
  ctx.socket = cfg->control_socket;
  std::string cmd = app.get_subcommands().front()->get_name();
  for (const auto& [name, help] : admin) {
    if (cmd == name) return Admin(ctx, cmd, force, !no_wait, timeout_ms);
  }
  if (cmd == "verify" || cmd == "split-brain" || cmd == "sync-rate" || cmd == "connect" ||
      cmd == "invalidate") {
    json req{{"cmd", cmd}};
    if (cmd == "split-brain") req["survivor"] = survivor;
    if (cmd == "sync-rate") req["mb_per_s"] = rate_mb;
    auto r = tandem::api::Call(ctx.socket, req, kCallTimeoutMs);
    if (!r.ok()) return Fail(r.status().message(), 3);
    if (!r->value("ok", false)) return Fail(cmd + " refused: " + r->value("error", "?"), 1);
    std::cout << cmd << ": " << r->value("message", "accepted") << "\n";
    return 0;
  }
  return Show(ctx, cmd, as_json);
}
