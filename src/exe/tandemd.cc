// tandemd: the per-host HA daemon.
// Usage: tandemd --config FILE [--check]
//        tandemd pair-token --config FILE   (prints the agent's pairing string)
//        tandemd unpair --config FILE       (forgets the console it is paired with)
#include <CLI/CLI.hpp>
#include <iostream>

#include "config/config.h"
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
  tandem::daemon::Daemon d(std::move(*cfg));
  tandem::Status st = d.Start();
  if (!st.ok()) {
    std::cerr << "tandemd: cannot start: " << st.message() << "\n";
    return 1;
  }
  return d.Run();
}
