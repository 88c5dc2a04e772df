// ha: the operator CLI (docs/CLI.md). Talks to the local tandemd over its
// control socket; every command takes --config FILE.
// Exit codes: 0 done, 1 refused or failed, 2 bad usage, 3 daemon unreachable.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <thread>

#include "api/control.h"
#include "api/format.h"
#include "config/config.h"

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
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
