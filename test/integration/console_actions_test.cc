// Host actions through the console (docs/CONSOLE.md, "Host actions") on a
// lab deployment of real processes: `tandem lab up --console` runs the HA
// pair (the console on its primary, an agent on each host); both hosts are
// paired with their pairing files; then over real HTTPS: offline on the
// active host fails over (checked on each host's control socket), online
// brings it back as standby, giveback on the new active returns the roles;
// a takeover on the active host is refused (409 action_refused) and changes
// nothing. Then the `ha` console commands against the same console: hosts,
// console-status, a refused create naming the API's field, action, and the
// exit codes of usage errors and an unreachable console. A factory reset
// of an agent-only managed host (`--managed 1`): the console deletes its
// row, the host pairs again with a fresh pairing string.
#include <gtest/gtest.h>

#include "api/httplib.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "lab/lab.h"
#include "os/files.h"
#include "console_fixture.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

constexpr int64_t kRoleWaitMs = 60000;

class ConsoleActionsTest : public ConsoleLabFixture {
 protected:
  ConsoleActionsTest() : ConsoleLabFixture("tandem-console-actions", 30) {}

  // The local status of each lab host ("ACTIVE", "STANDBY", ...), from its
  // own control socket.
  std::string StatusOf(const json& host) {
    return LocalOf(HostStatus(host["config"].get<std::string>())).value("status", "");
  }
  bool WaitRoles(const std::string& primary, const std::string& secondary) {
    return WaitFor(kRoleWaitMs, [&] {
      return StatusOf(lab_["hosts"][0]) == primary && StatusOf(lab_["hosts"][1]) == secondary;
    });
  }
  std::string Roles() { return StatusOf(lab_["hosts"][0]) + "/" + StatusOf(lab_["hosts"][1]); }

  Answer Act(const std::string& host, const std::string& action) {
    return Call("POST", "/api/v1/hosts/" + host + "/actions", json{{"action", action}});
  }

  CommandResult Ha(std::vector<std::string> args) {
    args.insert(args.begin(), BinDir() + "/ha");
    return RunCommand(args);
  }
};

TEST_F(ConsoleActionsTest, OfflineOnlineGivebackThroughTheConsoleAndTheHaCommands) {
  ASSERT_TRUE(UpLab(ConsoleLabOptions()));
  ASSERT_TRUE(LoginAdmin());
  const json primary = lab_["hosts"][0];
  const json secondary = lab_["hosts"][1];
  ASSERT_TRUE(FreshPairingString(primary));
  Answer pp = Pair(primary, "lab-primary-agent");
  ASSERT_EQ(pp.status, 201) << pp.body.dump();
  Answer ps = Pair(secondary);
  ASSERT_EQ(ps.status, 201) << ps.body.dump();
  const std::string p_name = "lab-primary-agent", s_name = secondary["name"];
  ASSERT_TRUE(WaitRoles("ACTIVE", "STANDBY")) << Roles();

  // ---- refused: takeover on the active host; nothing changes ----
  Answer refused = Act(p_name, "takeover");
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_EQ(refused.body["error"]["code"], "action_refused") << refused.body.dump();
  EXPECT_EQ(Roles(), "ACTIVE/STANDBY");

  // ---- offline on the active host: the secondary takes over ----
  Answer off = Act(p_name, "offline");
  ASSERT_EQ(off.status, 200) << off.body.dump();
  EXPECT_EQ(off.body["host"], p_name);
  EXPECT_EQ(off.body["action"], "offline");
  EXPECT_EQ(off.body["reply"]["ok"], true) << off.body.dump();
  ASSERT_TRUE(WaitRoles("OFFLINE", "ACTIVE")) << Roles();

  // ---- online: the primary comes back as standby ----
  Answer on = Act(p_name, "online");
  ASSERT_EQ(on.status, 200) << on.body.dump();
  ASSERT_TRUE(WaitRoles("STANDBY", "ACTIVE")) << Roles();

  // ---- giveback on the new active host: the roles return ----
  Answer gb = Act(s_name, "giveback");
  ASSERT_EQ(gb.status, 200) << gb.body.dump();
  ASSERT_TRUE(WaitRoles("ACTIVE", "STANDBY")) << Roles();

  // The history and the audit have each request.
  {
    Answer h = Call("GET", "/api/v1/history?limit=100");
    ASSERT_EQ(h.status, 200);
    std::string reasons;
    for (const json& e : h.body["entries"]) reasons += e["reason"].get<std::string>() + "\n";
    for (const char* want :
         {"action takeover requested by admin: refused: ", "action offline requested by admin: accepted",
          "action online requested by admin: accepted", "action giveback requested by admin: accepted"}) {
      EXPECT_NE(reasons.find(want), std::string::npos) << want << "\n" << reasons;
    }
    Answer audit = Call("GET", "/api/v1/audit");
    ASSERT_EQ(audit.status, 200) << audit.body.dump();
    int actions = 0;
    for (const json& e : audit.body["entries"]) {
      actions += e.dump().find("/actions") != std::string::npos;
    }
    EXPECT_EQ(actions, 4) << audit.body.dump();
  }

  // ---- the ha console commands ----
  const std::string api_file = dir_ + "/api.json";
  ASSERT_TRUE(os::WriteFileAtomic(api_file, lab_["api"].dump(), 0600).ok());
  {
    auto r = Ha({"--api", api_file, "hosts", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    json j = json::parse(r.output, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.output;
    std::map<std::string, std::string> roles;
    for (const json& h : j["hosts"]) roles[h["name"]] = h["role"];
    EXPECT_EQ(roles[p_name], "managed") << r.output;
    EXPECT_EQ(roles[s_name], "managed") << r.output;
    EXPECT_EQ(roles.size(), 3u) << r.output;  // and the console's own row
    // The password is never printed.
    const std::string password = *os::ReadFile(lab_["api"]["password_file"].get<std::string>(), 1024);
    EXPECT_EQ(r.output.find(password.substr(0, password.find('\n'))), std::string::npos);
  }
  {
    // The same with the options one by one; the table-4 advice and the hosts.
    auto r = Ha({"console-status", "--api-url", url_, "--api-user", "admin", "--api-password-file",
                 lab_["api"]["password_file"], "--api-ca-cert", cert_});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(s_name), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("STATUS"), std::string::npos) << r.output;
  }
  {
    auto r = Ha({"--api", api_file, "create", "--primary", s_name, "--secondary", p_name,
                 "--primary-new-ip", "300.1.2.3"});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("primary_new_ip"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("HTTP 400"), std::string::npos) << r.output;
  }
  {
    auto r = Ha({"--api", api_file, "action", p_name, "takeover"});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("action_refused"), std::string::npos) << r.output;
    r = Ha({"--api", api_file, "action", s_name, "offline"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(s_name + ": offline: "), std::string::npos) << r.output;
    ASSERT_TRUE(WaitRoles("ACTIVE", "OFFLINE")) << Roles();
    r = Ha({"--api", api_file, "action", s_name, "online", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    json j = json::parse(r.output, nullptr, false);
    EXPECT_EQ(j.value("action", ""), "online") << r.output;
    ASSERT_TRUE(WaitRoles("ACTIVE", "STANDBY")) << Roles();
  }
  {
    // Usage errors (2): no console given; a bad action. Unreachable (3).
    auto r = Ha({"hosts"});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = Ha({"--api", api_file, "action", p_name, "reboot"});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    json api = lab_["api"];
    api["url"] = "https://127.0.0.1:1";
    ASSERT_TRUE(os::WriteFileAtomic(dir_ + "/down.json", api.dump(), 0600).ok());
    r = Ha({"--api", dir_ + "/down.json", "clusters"});
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("unreachable"), std::string::npos) << r.output;
  }
}

TEST_F(ConsoleActionsTest, FactoryResetOfAManagedHostRemovesItAndItPairsAgain) {
  lab::LabOptions o = ConsoleLabOptions();
  o.managed = 1;
  ASSERT_TRUE(UpLab(o));
  ASSERT_EQ(lab_["managed_hosts"].size(), 1u);
  ASSERT_TRUE(LoginAdmin());
  const json m = lab_["managed_hosts"][0];
  const std::string config = m["config"].get<std::string>();
  Answer paired = Pair(m);
  ASSERT_EQ(paired.status, 201) << paired.body.dump();
  const std::string name = paired.body["host"]["name"];
  auto listed = [&](const std::string& host) {
    Answer hosts = Call("GET", "/api/v1/hosts");
    EXPECT_EQ(hosts.status, 200) << hosts.body.dump();
    for (const json& h : hosts.body["hosts"]) {
      if (h["name"] == host) return true;
    }
    return false;
  };
  ASSERT_TRUE(listed(name));
  // Paired: no pairing string on the host.
  EXPECT_NE(RunCommand({BinDir() + "/tandemd", "pair-token", "--config", config}).exit_code, 0);

  // Refused on the console's own row (the lab primary's name); nothing changes.
  Answer own = Act(lab_["hosts"][0]["name"], "factory_reset");
  EXPECT_EQ(own.status, 409) << own.body.dump();
  EXPECT_EQ(own.body["error"]["code"], "console_host") << own.body.dump();

  Answer reset = Act(name, "factory_reset");
  ASSERT_EQ(reset.status, 200) << reset.body.dump();
  EXPECT_EQ(reset.body["deleted"], name);
  EXPECT_EQ(reset.body["reply"]["reset"], true) << reset.body.dump();
  bool unpaired = false;
  for (const json& p : reset.body["reply"]["removed"]) {
    unpaired = unpaired || p.get<std::string>().ends_with("/paired.json");
  }
  EXPECT_TRUE(unpaired) << reset.body.dump();
  EXPECT_FALSE(listed(name));
  EXPECT_EQ(Call("GET", "/api/v1/hosts/" + name).status, 404);
  {
    Answer h = Call("GET", "/api/v1/history?limit=100");
    ASSERT_EQ(h.status, 200);
    EXPECT_NE(h.body.dump().find("action factory_reset requested by admin: reset"), std::string::npos)
        << h.body.dump();
  }

  // The host's new pairing string pairs it anew.
  auto t = RunCommand({BinDir() + "/tandemd", "pair-token", "--config", config});
  ASSERT_EQ(t.exit_code, 0) << t.output;
  ASSERT_TRUE(os::WriteFileAtomic(m["pairing_file"].get<std::string>(), t.output, 0600).ok());
  Answer again = Pair(m);
  ASSERT_EQ(again.status, 201) << again.body.dump();
  EXPECT_EQ(again.body["host"]["name"], name);
  EXPECT_TRUE(listed(name));
}

}  // namespace
}  // namespace tandem::itest
