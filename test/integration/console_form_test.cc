// Clusters formed by a deploy (docs/CONSOLE.md, "Clusters formed by a
// deploy") on a lab of real processes: `tandem lab up --console --managed 2
// --replication`. The console makes a cluster of the two agent-only managed
// hosts and deploys it: each tandemd restarts as a member of the pair
// (heartbeats, VIP, /store replicated from the primary's existing data), the
// pair fails over and back through the console's host actions, and a
// disconnect deployed turns both back into unclustered managed hosts. A
// deployed cluster that cannot start on a host (its heartbeat port taken)
// leaves that host reachable and unclustered, saying why, until the next
// deploy.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

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

// A UDP socket bound to addr:port (-1 if it cannot be).
int BindUdp(const std::string& addr, int port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The [agent] heartbeat_port of a managed host's file (the lab writes it).
int HeartbeatPort(const std::string& config) {
  std::ifstream in(config);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("heartbeat_port = ", 0) == 0) return std::stoi(line.substr(17));
  }
  return 0;
}

class ConsoleFormTest : public ConsoleLabFixture {
 protected:
  ConsoleFormTest() : ConsoleLabFixture("tandem-console-form", 120) {}

  Answer Action(const std::string& host, const std::string& action) {
    return Call("POST", "/api/v1/hosts/" + host + "/actions", json{{"action", action}});
  }
};

TEST_F(ConsoleFormTest, ADeployFormsARunningPairThatFailsOverAndADisconnectUndoesIt) {
  lab::LabOptions o = ConsoleLabOptions();
  o.managed = 2;
  o.replication = true;
  ASSERT_TRUE(UpLab(o));
  ASSERT_TRUE(LoginAdmin());
  const json m1 = lab_["managed_hosts"][0];
  const json m2 = lab_["managed_hosts"][1];
  for (const json* h : {&m1, &m2}) {
    Answer a = Pair(*h);
    ASSERT_EQ(a.status, 201) << a.body.dump();
  }
  ASSERT_TRUE(AddLicense("ha-form-001"));
  ASSERT_TRUE(WaitStatuses({{m1["name"], "Unclustered"}, {m2["name"], "Unclustered"}}, 60000));

  // Data on the future primary before the pair exists: the initial
  // synchronization copies it.
  const std::string store1 = m1["store_dir"], store2 = m2["store_dir"];
  {
    std::mt19937 rng(7);
    std::string blob(1 << 20, '\0');
    for (char& c : blob) c = static_cast<char>(rng());
    ASSERT_TRUE(os::MakeDirs(store1 + "/events", 0755).ok());
    ASSERT_TRUE(os::WriteFileAtomic(store1 + "/events/seed.bin", blob, 0644).ok());
    ASSERT_TRUE(os::WriteFileAtomic(store1 + "/settings.txt", "threshold = 5\n", 0644).ok());
  }

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

  // 1. The secondary's heartbeat port is taken: its deployed cluster cannot
  //    start; it stays reachable, unclustered, and says why.
  const int hb_port = HeartbeatPort(m2["config"]);
  ASSERT_GT(hb_port, 0);
  const std::string secondary_ip = m2["address"];
  int blocker = BindUdp(secondary_ip, hb_port);
  ASSERT_GE(blocker, 0) << "cannot bind " << secondary_ip << ":" << hb_port;
  Answer d1 = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d1.status, 200) << d1.body.dump();
  EXPECT_TRUE(WaitFor(60000, [&] {
    json h = HostOf(secondary);
    return h.is_object() && h["facts"].is_object() && h["facts"].value("deploy_error", json()).is_string();
  })) << HostOf(secondary).dump();
  const json blocked = HostOf(secondary);
  EXPECT_EQ(blocked.value("status", ""), "Unclustered") << blocked.dump();
  EXPECT_NE(blocked["facts"].value("deploy_error", json("")).dump().find("cannot start"), std::string::npos)
      << blocked.dump();
  ::close(blocker);

  // 2. Deployed again: both run the pair; the primary is Active, the
  //    secondary synchronizes the primary's data and is Standby.
  Answer d2 = Call("POST", "/api/v1/deploy", json{{"full", true}});
  ASSERT_EQ(d2.status, 200) << d2.body.dump();
  ASSERT_TRUE(WaitStatuses({{primary, "Active"}, {secondary, "Standby"}}, 180000));
  json pf = HostOf(primary)["facts"];
  EXPECT_EQ(pf["cluster"], (json{{"name", cluster}, {"role", "primary"}, {"peer", secondary_ip}})) << pf.dump();
  EXPECT_TRUE(pf["deploy_error"].is_null()) << pf.dump();
  EXPECT_TRUE(HostOf(secondary)["facts"]["deploy_error"].is_null());
  // The control socket of the formed host answers `ha status` as any member's.
  json st = HostStatus(m1["config"]);
  EXPECT_EQ(LocalOf(st).value("status", ""), "ACTIVE") << st.dump();
  EXPECT_TRUE(WaitFor(120000, [&] { return ReadTree(store2) == ReadTree(store1); }))
      << "the secondary's store did not become identical to the primary's";
  EXPECT_EQ(ReadTree(store2).count("events/seed.bin"), 1u);
  // Writes through the formed primary's volume (`tandem store fill` with
  // the host's own agent-only file) reach the secondary.
  auto fill = RunCommand({BinDir() + "/tandem", "store", "fill", "--config", m1["config"].get<std::string>(),
                          "--files", "3", "--bytes", "200000"});
  ASSERT_EQ(fill.exit_code, 0) << fill.output;
  EXPECT_TRUE(WaitFor(60000, [&] { return ReadTree(store2) == ReadTree(store1); }))
      << "the filled files did not reach the secondary";
  EXPECT_GT(ReadTree(store1).size(), 2u);

  // 3. Set System Offline on the active: the secondary takes over; Online:
  //    the old primary is Standby; Giveback: the roles are as created.
  Answer off = Action(primary, "offline");
  ASSERT_EQ(off.status, 200) << off.body.dump();
  ASSERT_TRUE(WaitStatuses({{primary, "Offline"}, {secondary, "Active"}}, 120000));
  Answer on = Action(primary, "online");
  ASSERT_EQ(on.status, 200) << on.body.dump();
  ASSERT_TRUE(WaitStatuses({{primary, "Standby"}, {secondary, "Active"}}, 180000));
  Answer back = Action(secondary, "giveback");
  ASSERT_EQ(back.status, 200) << back.body.dump();
  ASSERT_TRUE(WaitStatuses({{primary, "Active"}, {secondary, "Standby"}}, 120000));

  // 4. Edited options reach the running pair live: no restart (same
  //    incarnation), no failover, new heartbeat timings and peers.
  const json before_p = HostStatus(m1["config"]), before_s = HostStatus(m2["config"]);
  const std::string console_tcp = url_.substr(std::string("https://").size());
  Answer edit = Call("PATCH", "/api/v1/clusters/" + cluster,
                     json{{"options",
                           {{"heartbeat_interval_ms", 400},
                            {"heartbeat_timeout_ms", 4000},
                            {"connectivity_peers", {console_tcp}}}}});
  ASSERT_EQ(edit.status, 200) << edit.body.dump();
  Answer d_edit = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d_edit.status, 200) << d_edit.body.dump();
  for (const std::string& config : {m1["config"].get<std::string>(), m2["config"].get<std::string>()}) {
    EXPECT_TRUE(WaitFor(30000, [&] {
      json l = LocalOf(HostStatus(config));
      return l.contains("heartbeat") && l["heartbeat"]["interval_ms"] == 400 &&
             l["heartbeat"]["timeout_ms"] == 4000 && l["connectivity"]["peers"] == 1;
    })) << HostStatus(config).dump();
  }
  EXPECT_EQ(LocalOf(HostStatus(m1["config"]))["incarnation"], LocalOf(before_p)["incarnation"]);
  EXPECT_EQ(LocalOf(HostStatus(m2["config"]))["incarnation"], LocalOf(before_s)["incarnation"]);
  EXPECT_EQ(LocalOf(HostStatus(m1["config"])).value("status", ""), "ACTIVE");
  EXPECT_EQ(StatusOf(secondary), "Standby");

  // 5. Disconnect the secondary and deploy: both hosts leave the pair and
  //    run as unclustered managed hosts again.
  Answer dis = Call("DELETE", "/api/v1/clusters/" + cluster + "/secondary");
  ASSERT_EQ(dis.status, 200) << dis.body.dump();
  Answer d3 = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d3.status, 200) << d3.body.dump();
  const std::string secondary_name = m2["name"];  // its original name, back
  ASSERT_TRUE(WaitStatuses({{primary, "Unclustered"}, {secondary_name, "Unclustered"}}, 120000));
  EXPECT_TRUE(HostOf(secondary_name)["facts"]["cluster"].is_null());
  EXPECT_TRUE(HostOf(primary)["facts"]["cluster"].is_null());
}

}  // namespace
}  // namespace tandem::itest
