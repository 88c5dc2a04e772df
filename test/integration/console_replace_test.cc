// Recovering a replaced host (docs/CONSOLE.md, "Replacing a member") on a
// lab of real processes: `tandem lab up --console --managed 3
// --replication`. The console forms a cluster of managed hosts 1 and 2
// (as ConsoleFormTest does); host 2 dies (its tandemd killed: the hardware
// is gone); `ha replace` puts managed host 3 in its place and a deploy makes
// it the new secondary: its empty store is synchronized in full from the
// primary, which kept serving, and it becomes Standby.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "console_fixture.h"
#include "lab/lab.h"
#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string RandomBlob(unsigned seed, size_t bytes) {
  std::mt19937 rng(seed);
  std::string blob(bytes, '\0');
  for (char& c : blob) c = static_cast<char>(rng());
  return blob;
}

class ConsoleReplaceTest : public ConsoleLabFixture {
 protected:
  ConsoleReplaceTest() : ConsoleLabFixture("tandem-console-replace", 120) {}

};

TEST_F(ConsoleReplaceTest, ANewHostReplacesADeadSecondaryAndIsSynchronizedInFull) {
  lab::LabOptions o = ConsoleLabOptions();
  o.managed = 3;
  o.replication = true;
  ASSERT_TRUE(UpLab(o));
  ASSERT_TRUE(LoginAdmin());
  const json m1 = lab_["managed_hosts"][0];
  const json m2 = lab_["managed_hosts"][1];
  const json m3 = lab_["managed_hosts"][2];
  for (const json* h : {&m1, &m2, &m3}) {
    Answer a = Pair(*h);
    ASSERT_EQ(a.status, 201) << a.body.dump();
  }
  ASSERT_TRUE(AddLicense("ha-replace-001"));
  ASSERT_TRUE(WaitStatuses(
      {{m1["name"], "Unclustered"}, {m2["name"], "Unclustered"}, {m3["name"], "Unclustered"}}, 60000));

  const std::string store1 = m1["store_dir"], store2 = m2["store_dir"], store3 = m3["store_dir"];
  ASSERT_TRUE(os::MakeDirs(store1 + "/events", 0755).ok());
  ASSERT_TRUE(os::WriteFileAtomic(store1 + "/events/seed.bin", RandomBlob(7, 1 << 20), 0644).ok());

  // The cluster of managed hosts 1 and 2, deployed: Active / Standby.
  const std::string addr = m1["address"];
  const std::string new_ip = addr.substr(0, addr.rfind('.')) + ".30";
  const std::string cluster = m1["name"];
  const std::string primary = cluster + "-primary", secondary = cluster + "-secondary";
  Answer made = Call("POST", "/api/v1/clusters",
                     json{{"primary", m1["name"]},
                          {"secondary", m2["name"]},
                          {"primary_new_ip", new_ip},
                          {"options", {{"heartbeat_interval_ms", 300}, {"heartbeat_timeout_ms", 3000}}}});
  ASSERT_EQ(made.status, 201) << made.body.dump();
  Answer d1 = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d1.status, 200) << d1.body.dump();
  ASSERT_TRUE(WaitStatuses({{primary, "Active"}, {secondary, "Standby"}}, 180000));
  EXPECT_TRUE(WaitFor(120000, [&] { return ReadTree(store2) == ReadTree(store1); }))
      << "the first secondary's store did not become identical to the primary's";

  // Managed host 2's hardware dies: its tandemd is killed and never comes
  // back. The console sees the secondary go; the primary keeps serving.
  auto described = lab::Describe(dir_ + "/lab");
  ASSERT_TRUE(described.ok()) << described.status().message();
  const int pid2 = (*described)["managed_hosts"][1]["pid"].get<int>();
  ASSERT_GT(pid2, 0);
  ASSERT_EQ(::kill(pid2, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(120000, [&] {
    const std::string s = StatusOf(secondary);
    return !s.empty() && s != "Standby";
  })) << HostOf(secondary).dump();
  EXPECT_EQ(StatusOf(primary), "Active");
  // Written while the primary runs alone: the new secondary gets it too.
  ASSERT_TRUE(os::WriteFileAtomic(store1 + "/events/alone.bin", RandomBlob(8, 256 << 10), 0644).ok());

  // `ha replace`: managed host 3 replaces the secondary.
  const std::string api_file = dir_ + "/api.json";
  ASSERT_TRUE(os::WriteFileAtomic(api_file, lab_["api"].dump(), 0600).ok());
  auto r = RunCommand({BinDir() + "/ha", "--api", api_file, "replace", cluster, "--role", "secondary", "--host",
                       m3["name"].get<std::string>(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json replaced = json::parse(r.output, nullptr, false);
  ASSERT_TRUE(replaced.is_object()) << r.output;
  const json& members = replaced["cluster"]["members"];
  ASSERT_EQ(members.size(), 2u) << replaced.dump();
  EXPECT_EQ(members[1]["name"], secondary);
  EXPECT_EQ(members[1]["original_name"], m3["name"]);
  EXPECT_EQ(members[1]["address"], m3["address"]);
  EXPECT_EQ(replaced["cluster"]["ips"]["secondary"], m3["address"]);
  // The dead host is gone from the console; the host named like it is host 3.
  EXPECT_EQ(Call("GET", "/api/v1/hosts/" + m3["name"].get<std::string>()).status, 404);
  EXPECT_EQ(HostOf(secondary).value("agent_address", json()), m3["agent"]["address"]);

  // Deploy: the dead host is no longer a target, so every target accepts.
  Answer d2 = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d2.status, 200) << d2.body.dump();
  for (const json& h : d2.body["hosts"]) EXPECT_TRUE(h.value("ok", false)) << h.dump();
  // Host 3's empty store shares no generation with the primary's: a full
  // synchronization, then Standby, its store byte for byte the primary's.
  ASSERT_TRUE(WaitStatuses({{primary, "Active"}, {secondary, "Standby"}}, 240000));
  json sf = HostOf(secondary)["facts"];
  EXPECT_EQ(sf["cluster"], (json{{"name", cluster}, {"role", "secondary"}, {"peer", new_ip}})) << sf.dump();
  EXPECT_TRUE(WaitFor(180000, [&] { return ReadTree(store3) == ReadTree(store1); }))
      << "the new secondary's store did not become identical to the primary's";
  const auto tree3 = ReadTree(store3);
  EXPECT_EQ(tree3.count("events/seed.bin"), 1u);
  EXPECT_EQ(tree3.count("events/alone.bin"), 1u);
}

}  // namespace
}  // namespace tandem::itest
