// Upgrades and content packages on a lab of real processes (docs/CONSOLE.md,
// "Upgrades and content packages"; R-UP-1, R-UP-2): `tandem lab up
// --console`, both HA hosts paired over real HTTPS. A newer content package
// on the primary makes the console show the secondary Needs Upgrade; POST
// /api/v1/clusters/lab/upgrade copies it through both agents (Upgrading in
// the history, then Standby) and the secondary's packages directory holds
// the same package. Then, with auto_push_packages on, another package put on
// the primary reaches the secondary by itself.
#include <gtest/gtest.h>

#include "api/httplib.h"

#include <filesystem>
#include <map>
#include <random>

#include "config/config.h"
#include "lab/lab.h"
#include "os/files.h"
#include "console_fixture.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

// An upgrade copies packages through two agents: long API calls.
class ConsoleUpgradeTest : public ConsoleLabFixture {
 protected:
  ConsoleUpgradeTest() : ConsoleLabFixture("tandem-console-upgrade", 120) {}

  std::string PackagesDir(const json& host) {
    auto cfg = config::Load(host["config"].get<std::string>(), /*read_key=*/false);
    EXPECT_TRUE(cfg.ok()) << cfg.status().message();
    return cfg.ok() ? cfg->agent.packages_dir : std::string();
  }

  std::string Status(const std::string& host) {
    json h = Call("GET", "/api/v1/hosts/" + host).body;
    return h.contains("host") ? h["host"].value("status", "") : "";
  }

  std::vector<std::string> History(const std::string& host) {
    json h = Call("GET", "/api/v1/history?host=" + host).body;
    std::vector<std::string> out;
    for (const json& e : h["entries"]) {
      out.insert(out.begin(), e["old_status"].get<std::string>() + " -> " + e["new_status"].get<std::string>());
    }
    return out;
  }

};

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen() & 0xFF);
  return out;
}

std::string FileText(const std::string& path) {
  auto r = os::ReadFile(path, 8 << 20);
  return r.ok() ? *r : std::string("<unreadable: " + r.status().message() + ">");
}

void InstallPackage(const std::string& dir, const std::string& name, const std::string& version,
                    const std::string& payload) {
  ASSERT_TRUE(os::MakeDirs(dir, 0755).ok());
  // The payload first, then the manifest (what the agent reads).
  ASSERT_TRUE(os::WriteFileAtomic(dir + "/" + name + ".pkg", payload, 0644).ok());
  const json manifest{{"name", name}, {"version", version}, {"kind", "protocol"}};
  ASSERT_TRUE(os::WriteFileAtomic(dir + "/" + name + ".json", manifest.dump() + "\n", 0644).ok());
}

TEST_F(ConsoleUpgradeTest, NeedsUpgradeThenUpgradeThenAutomaticPush) {
  ASSERT_TRUE(UpLab(ConsoleLabOptions()));
  ASSERT_TRUE(LoginAdmin());

  // Pair both HA hosts (the primary's agent under another name than the
  // console's own row: see console_lab_test.cc).
  const json& primary = lab_["hosts"][0];
  const json& secondary = lab_["hosts"][1];
  ASSERT_EQ(Pair(primary).status, 409);
  ASSERT_TRUE(FreshPairingString(primary));
  Answer pp = Pair(primary, "lab-primary-agent");
  ASSERT_EQ(pp.status, 201) << pp.body.dump();
  Answer ps = Pair(secondary);
  ASSERT_EQ(ps.status, 201) << ps.body.dump();
  const std::string sec = ps.body["host"]["name"];
  ASSERT_TRUE(WaitFor(120000, [&] { return Status("lab-primary-agent") == "Active" && Status(sec) == "Standby"; }))
      << Call("GET", "/api/v1/status").body.dump();

  // ---- R-UP-1: a newer package on the primary; the upgrade asked for ----
  ASSERT_EQ(Call("PUT", "/api/v1/settings/auto_push_packages", json{{"value", 0}}).status, 200);
  const std::string pdir = PackagesDir(primary), sdir = PackagesDir(secondary);
  ASSERT_FALSE(pdir.empty());
  ASSERT_FALSE(sdir.empty());
  ASSERT_NE(pdir, sdir);
  const std::string payload = RandomBytes(200 * 1024, 7);
  ASSERT_NO_FATAL_FAILURE(InstallPackage(pdir, "http", "2.1", payload));
  ASSERT_TRUE(WaitFor(120000, [&] { return Status(sec) == "Needs Upgrade"; }))
      << Call("GET", "/api/v1/hosts/" + sec).body.dump();
  json h = Call("GET", "/api/v1/hosts/" + sec).body["host"];
  EXPECT_NE(h["status_reason"].get<std::string>().find("package http 2.1 missing"), std::string::npos)
      << h.dump();
  EXPECT_EQ(Status("lab-primary-agent"), "Active");
  // The cluster is the lab's (known from the facts): upgraded by its name.
  Answer a = Call("POST", "/api/v1/clusters/lab/upgrade", json::object());
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body["pushed"], json::array({"http"}));
  EXPECT_EQ(a.body["status"], "Standby");
  EXPECT_EQ(FileText(sdir + "/http.pkg"), payload);
  EXPECT_EQ(json::parse(FileText(sdir + "/http.json"), nullptr, false),
            json::parse(FileText(pdir + "/http.json"), nullptr, false));
  const std::vector<std::string> hist = History(sec);
  auto has = [&](const std::string& row) { return std::find(hist.begin(), hist.end(), row) != hist.end(); };
  EXPECT_TRUE(has("Standby -> Needs Upgrade")) << json(hist).dump();
  EXPECT_TRUE(has("Needs Upgrade -> Upgrading")) << json(hist).dump();
  EXPECT_TRUE(has("Upgrading -> Standby")) << json(hist).dump();
  Answer again = Call("POST", "/api/v1/clusters/lab/upgrade", json::object());
  EXPECT_EQ(again.status, 409) << again.body.dump();
  EXPECT_EQ(again.body["error"]["code"], "nothing_to_upgrade") << again.body.dump();
  // The poller agrees: Standby stays.
  const json before = Call("GET", "/api/v1/hosts/" + sec).body["host"]["facts_at"];
  ASSERT_TRUE(WaitFor(60000, [&] { return Call("GET", "/api/v1/hosts/" + sec).body["host"]["facts_at"] != before; }));
  EXPECT_EQ(Status(sec), "Standby");

  // ---- R-UP-2: with auto push on, an update on the primary reaches the secondary ----
  ASSERT_EQ(Call("PUT", "/api/v1/settings/auto_push_packages", json{{"value", 1}}).status, 200);
  const std::string dns = RandomBytes(50 * 1024, 11);
  ASSERT_NO_FATAL_FAILURE(InstallPackage(pdir, "dns", "1.0.4", dns));
  EXPECT_TRUE(WaitFor(120000, [&] {
    return std::filesystem::exists(sdir + "/dns.json") && FileText(sdir + "/dns.pkg") == dns;
  })) << Call("GET", "/api/v1/hosts/" + sec).body.dump();
  EXPECT_EQ(json::parse(FileText(sdir + "/dns.json"), nullptr, false)["version"], "1.0.4");
  EXPECT_TRUE(WaitFor(60000, [&] { return Status(sec) == "Standby"; }));
  const std::vector<std::string> later = History(sec);
  EXPECT_GE(std::count(later.begin(), later.end(), "Needs Upgrade -> Upgrading"), 2) << json(later).dump();
}

}  // namespace
}  // namespace tandem::itest
