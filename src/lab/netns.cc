#include "lab/netns.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <random>

#include "os/process.h"

namespace tandem::lab {

namespace {

const char* kRoles[] = {"p", "s", "c", "m1", "m2", "sw"};

// Runs `ip ARGS...` and waits; error names the command.
Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  os::SpawnOptions so;
  so.die_with_parent = false;
  so.new_process_group = false;
  auto pid = os::Spawn(argv, so);
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  if (!pid.ok()) return Status::Error(cmd + ": " + pid.status().message());
  int ws = 0;
  waitpid(*pid, &ws, 0);
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return Status::Error("failed: " + cmd);
  return Status::Ok();
}

// One host: eth0 in its namespace, its peer on the bridge.
Status AttachHost(const NetnsPlan& p, const std::string& role, const std::string& addr) {
  std::string ns = p.Ns(role), sw = p.Ns("sw"), port = "to-" + role;
  TANDEM_RETURN_IF_ERROR(Ip({"link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer",
                             "name", port, "netns", sw}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", sw, "link", "set", port, "master", "br0", "up"}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", ns, "link", "set", "lo", "up"}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"}));
  return Ip({"-n", ns, "link", "set", "eth0", "up"});
}

Status Build(const NetnsPlan& p) {
  for (const char* r : kRoles) TANDEM_RETURN_IF_ERROR(Ip({"netns", "add", p.Ns(r)}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", p.Ns("sw"), "link", "add", "br0", "type", "bridge"}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", p.Ns("sw"), "link", "set", "br0", "up"}));
  TANDEM_RETURN_IF_ERROR(AttachHost(p, "p", kNetnsPrimary));
  TANDEM_RETURN_IF_ERROR(AttachHost(p, "s", kNetnsSecondary));
  TANDEM_RETURN_IF_ERROR(AttachHost(p, "c", kNetnsClient));
  TANDEM_RETURN_IF_ERROR(AttachHost(p, "m1", kNetnsManaged[0]));
  TANDEM_RETURN_IF_ERROR(AttachHost(p, "m2", kNetnsManaged[1]));
  if (!p.crossover) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(Ip({"link", "add", "name", "xo0", "netns", p.Ns("p"), "type", "veth",
                             "peer", "name", "xo0", "netns", p.Ns("s")}));
  TANDEM_RETURN_IF_ERROR(
      Ip({"-n", p.Ns("p"), "addr", "add", std::string(kNetnsCrossoverPrimary) + "/30", "dev", "xo0"}));
  TANDEM_RETURN_IF_ERROR(Ip(
      {"-n", p.Ns("s"), "addr", "add", std::string(kNetnsCrossoverSecondary) + "/30", "dev", "xo0"}));
  TANDEM_RETURN_IF_ERROR(Ip({"-n", p.Ns("p"), "link", "set", "xo0", "up"}));
  return Ip({"-n", p.Ns("s"), "link", "set", "xo0", "up"});
}

}  // namespace

Status CreateNetns(const NetnsPlan& plan) {
  Status st = Build(plan);
  if (!st.ok()) DestroyNetns(plan);
  return st;
}

void DestroyNetns(const NetnsPlan& plan) {
  for (const char* r : kRoles) {
    struct stat sb {};
    if (stat(("/run/netns/" + plan.Ns(r)).c_str(), &sb) == 0) (void)Ip({"netns", "del", plan.Ns(r)});
  }
}

std::string NewNetnsId() {
  std::random_device rd;
  for (;;) {
    char id[8];
    std::snprintf(id, sizeof id, "%04x", static_cast<unsigned>(rd() & 0xffff));
    struct stat sb {};
    if (stat(("/run/netns/tdm" + std::string(id) + "-p").c_str(), &sb) != 0) return id;
  }
}

std::vector<std::string> InNetns(const std::string& ns) { return {"ip", "netns", "exec", ns}; }

}  // namespace tandem::lab
