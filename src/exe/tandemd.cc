// tandemd: the per-host HA daemon.
// Usage: tandemd --config FILE [--check]
//        tandemd pair-token --config FILE   (prints the agent's pairing string)
//        tandemd unpair --config FILE       (forgets the console it is paired with)
#include <CLI/CLI.hpp>
#include <iostream>

#include "config/config.h"
#include "config/deployment.h"
#include "daemon/agent.h"
#include "daemon/daemon.h"

namespace {

// The agent's configuration, for the subcommands. Exit code 2 (and a
// message) when there is none.
int LoadAgent(const std::string& config, const char* what, tandem::config::Config* out) {
  auto cfg = tandem::config::Load(config, /*read_key=*/false);
  if (!cfg.ok()) {
    std::cerr << "tandemd: " << what << ": " << cfg.status().message() << "\n";
    return 2;
  }
  if (!cfg->agent.enabled) {
    std::cerr << "tandemd: " << what << ": " << config
              << ": no [agent] section: this host runs no agent (docs/CONFIG.md)\n";
    return 2;
  }
  *out = std::move(*cfg);
  return 0;
}

int PairToken(const std::string& config) {
  tandem::config::Config cfg;
  if (int rc = LoadAgent(config, "pair-token", &cfg)) return rc;
  auto s = tandem::daemon::PairingString(cfg.agent.state_dir, cfg.host_name,
                                         cfg.agent.listen.host);
  if (!s.ok()) {
    std::cerr << "tandemd: pair-token: " << s.status().message() << "\n";
    return 1;
  }
  std::cout << *s << "\n";
  return 0;
}

int Unpair(const std::string& config) {
  tandem::config::Config cfg;
  if (int rc = LoadAgent(config, "unpair", &cfg)) return rc;
  auto r = tandem::daemon::Unpair(cfg.agent.state_dir);
  if (!r.ok()) {
    std::cerr << "tandemd: unpair: " << r.status().message() << "\n";
    return 1;
  }
  std::cout << (r->empty() ? std::string("not paired; nothing to do")
                           : "unpaired from console " + *r +
                                 " (tandemd pair-token prints a new pairing string)")
            << "\n";
  return 0;
}

// What tandemd runs: the file, and on an agent-only host the cluster a
// console deployed to it (docs/CONSOLE.md, "Clusters formed by a deploy").
// A deployment that cannot be run leaves the host unclustered, with the
// reason in deployment_error (logged, and in the agent's facts).
tandem::config::Config Effective(tandem::config::Config local) {
  if (!local.agent_only || !local.agent.enabled) return local;
  auto stored = tandem::daemon::ReadDeployedConfig(local.agent.state_dir);
  if (!stored.ok()) {
    local.deployment_error = stored.status().message();
    return local;
  }
  if (!stored->has_value()) return local;
  const nlohmann::json& document = (**stored)["document"];
  if (tandem::config::DeploymentIdentity(document).empty()) return local;
  auto cfg = tandem::config::WithDeployment(local, document);
  if (!cfg.ok()) {
    local.deployment_error = "configuration revision " + std::to_string((**stored)["revision"].get<int64_t>()) +
                             ": " + cfg.status().message() + "; this host stays unclustered";
    return local;
  }
  return std::move(*cfg);
}

// Runs one daemon until it stops; *restart: it stopped to start again.
int RunDaemon(tandem::config::Config cfg, bool* restart, std::string* start_error) {
  *restart = false;
  tandem::daemon::Daemon d(std::move(cfg));
  tandem::Status st = d.Start();
  if (!st.ok()) {
    *start_error = st.message();
    return 1;
  }
  const int rc = d.Run();
  *restart = d.restart_requested();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandemd: Tandem high-availability daemon (one per host)"};
  std::string config = "/etc/tandem/tandemd.toml";
  bool check = false;
  app.add_option("-c,--config", config, "configuration file (docs/CONFIG.md)")
      ->capture_default_str();
  app.add_flag("--check", check, "validate the configuration and exit");
  app.add_flag_callback("--version", [] {
    std::cout << "tandemd " << TANDEM_VERSION << "\n";
    std::exit(0);
  });
  CLI::App* pair = app.add_subcommand(
      "pair-token", "print this host's pairing string for the console (docs/CONSOLE.md)");
  pair->add_option("-c,--config", config, "configuration file")->capture_default_str();
  CLI::App* unpair =
      app.add_subcommand("unpair", "forget the console this host's agent is paired with");
  unpair->add_option("-c,--config", config, "configuration file")->capture_default_str();
  app.require_subcommand(0, 1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (pair->parsed()) return PairToken(config);
  if (unpair->parsed()) return Unpair(config);
  auto cfg = tandem::config::Load(config);
  if (!cfg.ok()) {
    std::cerr << "tandemd: refusing to start: " << cfg.status().message() << "\n";
    return 2;
  }
  if (check) {
    std::cout << config << ": OK\n";
    return 0;
  }
  // A deploy that changes what this host is (agent-only <-> a member of a
  // pair) stops the daemon and it starts again here, from the file and the
  // new document.
  for (;;) {
    tandem::config::Config run = Effective(*cfg);
    bool restart = false;
    std::string error;
    int rc = RunDaemon(run, &restart, &error);
    if (!error.empty() && !run.deployment_identity.empty()) {
      // The deployed cluster cannot start here (an address not on this
      // host, a port in use, ...): the host stays reachable as an
      // unclustered managed host and says why.
      std::cerr << "tandemd: cannot start the deployed cluster: " << error << "\n";
      tandem::config::Config local = *cfg;
      local.deployment_error = "configuration revision " + std::to_string(run.deployment_revision) +
                               ": the deployed cluster cannot start: " + error + "; this host stays unclustered";
      error.clear();
      rc = RunDaemon(std::move(local), &restart, &error);
    }
    if (!error.empty()) {
      std::cerr << "tandemd: cannot start: " << error << "\n";
      return 1;
    }
    if (!restart) return rc;
    auto again = tandem::config::Load(config);
    if (!again.ok()) {
      std::cerr << "tandemd: refusing to start again: " << again.status().message() << "\n";
      return 2;
    }
    cfg = std::move(again);
  }
}
