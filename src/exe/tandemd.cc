// tandemd: the per-host HA daemon. Usage: tandemd --config FILE [--check]
#include <CLI/CLI.hpp>
#include <iostream>

#include "config/config.h"
#include "daemon/daemon.h"

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
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
