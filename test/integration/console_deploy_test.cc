// Deploying the configuration on a lab of real processes (docs/CONSOLE.md,
// "Deploying"): `tandem lab up --console --managed 2 --replication`. The
// console pairs the two managed hosts, makes a cluster of them and deploys:
// each agent stores its document (deployed.json, 0600) and the pending
// changes are cleared; an edited option is deployed as the next revision.
// The lab's own HA secondary is paired by the test itself (acting as a
// console) to check, over real HTTPS, PUT/GET /api/v1/agent/config on a
// clustered daemon: the disk synchronization rate changes live, and after
// the primary is killed the secondary's take-over logs the deployed
// revision (R-FO-3 step 5).
#include <gtest/gtest.h>
#include <signal.h>

#include "api/httplib.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lab/lab.h"
#include "os/files.h"
#include "console_fixture.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

using Answer = HttpsAnswer;

// A small text file (deployed.json), without its trailing line end.
std::string ReadText(const std::string& file) {
  auto s = os::ReadFile(file, 4096);
  EXPECT_TRUE(s.ok()) << file;
  std::string out = s.ok() ? *s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// The agent's state directory of the lab host behind `config` (the default
// <host.state_dir>/agent, host.state_dir = "state").
std::string AgentStateDir(const std::string& config) {
  return std::filesystem::path(config).parent_path().string() + "/state/agent";
}

// The value of `key` anywhere in `j` (null when absent).
json FindKey(const json& j, const std::string& key) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (k == key) return v;
      json f = FindKey(v, key);
      if (!f.is_null()) return f;
    }
  }
  return nullptr;
}

class ConsoleDeployTest : public ConsoleLabFixture {
 protected:
  ConsoleDeployTest() : ConsoleLabFixture("tandem-console-deploy") {}
};

TEST_F(ConsoleDeployTest, DeployReachesEveryAgentAndTheSyncRateChangesLive) {
  lab::LabOptions o = ConsoleLabOptions();
  o.managed = 2;
  o.replication = true;
  ASSERT_TRUE(UpLab(o));
  ASSERT_EQ(lab_["managed_hosts"].size(), 2u);
  ASSERT_TRUE(LoginAdmin());

  // ---- the console: two managed hosts, a cluster of them, deployed ----
  const json& m1 = lab_["managed_hosts"][0];
  const json& m2 = lab_["managed_hosts"][1];
  for (const json* h : {&m1, &m2}) {
    Answer a = Pair(*h);
    ASSERT_EQ(a.status, 201) << a.body.dump();
  }
  Answer none = Call("POST", "/api/v1/deploy", json::object());
  EXPECT_EQ(none.status, 409) << none.body.dump();
  EXPECT_EQ(none.body["error"]["code"], "nothing_to_deploy");
  const std::string addr = m1["address"];
  const std::string new_ip = addr.substr(0, addr.rfind('.')) + ".30";
  Answer made = Call("POST", "/api/v1/clusters",
                    json{{"primary", m1["name"]}, {"secondary", m2["name"]}, {"primary_new_ip", new_ip}});
  ASSERT_EQ(made.status, 201) << made.body.dump();
  Answer status = Call("GET", "/api/v1/deploy");
  ASSERT_EQ(status.status, 200) << status.body.dump();
  EXPECT_EQ(status.body["pending"].size(), 3u) << status.body.dump();

  Answer d1 = Call("POST", "/api/v1/deploy", json::object());
  ASSERT_EQ(d1.status, 200) << d1.body.dump();
  const int64_t r1 = d1.body["revision"];
  EXPECT_EQ(d1.body["cleared"], 3);
  ASSERT_EQ(d1.body["hosts"].size(), 2u) << d1.body.dump();
  for (const json& h : d1.body["hosts"]) EXPECT_TRUE(h["ok"].get<bool>()) << h.dump();
  EXPECT_EQ(Call("GET", "/api/v1/deploy").body["pending"], json::array());
  const std::string cluster = m1["name"];
  for (const auto& [host, role] : {std::pair{&m1, "primary"}, std::pair{&m2, "secondary"}}) {
    const std::string file = AgentStateDir((*host)["config"]) + "/deployed.json";
    EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    json stored = json::parse(ReadText(file), nullptr, false);
    ASSERT_TRUE(stored.is_object()) << file;
    EXPECT_EQ(stored["revision"], r1);
    EXPECT_EQ(stored["document"]["host"]["role"], role) << stored.dump();
    EXPECT_EQ(stored["document"]["host"]["name"], cluster + "-" + role);
    EXPECT_EQ(stored["document"]["cluster"]["vip"], addr);
    EXPECT_EQ(stored["document"]["cluster"]["primary_ip"], new_ip);
    EXPECT_EQ(stored["document"]["cluster"]["options"]["sync_rate_mb"], 100);
  }
  // The agents report the revision in their facts (read by the poller).
  EXPECT_TRUE(WaitFor(60000, [&] {
    json h = Call("GET", "/api/v1/hosts/" + cluster + "-secondary").body["host"];
    return h.is_object() && h["facts"].is_object() && h["facts"]["deployed_revision"] == r1;
  }));

  // An edit is pending until deployed as the next revision.
  Answer patched = Call("PATCH", "/api/v1/clusters/" + cluster, json{{"options", {{"sync_rate_mb", 37}}}});
  ASSERT_EQ(patched.status, 200) << patched.body.dump();
  EXPECT_EQ(Call("GET", "/api/v1/deploy").body["pending"].size(), 1u);
  Answer d2 = Call("POST", "/api/v1/deploy", json{{"full", false}});
  ASSERT_EQ(d2.status, 200) << d2.body.dump();
  EXPECT_EQ(d2.body["revision"], r1 + 1);
  EXPECT_EQ(d2.body["cleared"], 1);
  json stored = json::parse(ReadText(AgentStateDir(m2["config"]) + "/deployed.json"), nullptr, false);
  EXPECT_EQ(stored["revision"], r1 + 1);
  EXPECT_EQ(stored["document"]["cluster"]["options"]["sync_rate_mb"], 37);
  Answer st = Call("GET", "/api/v1/deploy");
  for (const json& h : st.body["hosts"]) EXPECT_EQ(h["deployed_revision"], r1 + 1) << h.dump();

  // ---- a clustered daemon: the lab's secondary, paired by the test ----
  const json& secondary = lab_["hosts"][1];
  const std::string agent = secondary["agent"]["address"];
  const std::string agent_ca = dir_ + "/secondary-agent.pem";
  {
    std::ifstream in(AgentStateDir(secondary["config"]) + "/tls/cert.pem");
    std::stringstream pem;
    pem << in.rdbuf();
    ASSERT_FALSE(pem.str().empty());
    ASSERT_TRUE(os::WriteFileAtomic(agent_ca, pem.str(), 0600).ok());
  }
  const std::string token = ReadFirstLine(secondary["pairing_file"]).substr(4, 64);
  Answer paired = HttpsCall(agent, agent_ca, "POST", "/api/v1/agent/pair", "",
                            json{{"token", token}, {"console", "itest"}});
  ASSERT_EQ(paired.status, 201) << paired.body.dump();
  const std::string key = paired.body["key"];
  EXPECT_EQ(HttpsCall(agent, agent_ca, "GET", "/api/v1/agent/config", key).status, 404);
  json doc = stored["document"];
  doc["revision"] = 500;
  doc["host"] = {{"name", secondary["name"]}, {"role", "secondary"}};
  doc["cluster"]["options"]["sync_rate_mb"] = 23;
  EXPECT_EQ(HttpsCall(agent, agent_ca, "PUT", "/api/v1/agent/config", "", json{{"revision", 500}, {"document", doc}})
                .status,
            401);
  Answer bad = HttpsCall(agent, agent_ca, "PUT", "/api/v1/agent/config", key,
                         json{{"revision", 501}, {"document", doc}});
  EXPECT_EQ(bad.status, 400) << bad.body.dump();
  EXPECT_EQ(bad.body["error"]["field"], "document.revision");
  Answer put = HttpsCall(agent, agent_ca, "PUT", "/api/v1/agent/config", key,
                         json{{"revision", 500}, {"document", doc}});
  ASSERT_EQ(put.status, 200) << put.body.dump();
  Answer got = HttpsCall(agent, agent_ca, "GET", "/api/v1/agent/config", key);
  ASSERT_EQ(got.status, 200) << got.body.dump();
  EXPECT_EQ(got.body["revision"], 500);
  json shown = doc;
  shown["cluster"]["key"] = "(hidden)";  // the cluster key is stored, never answered
  EXPECT_EQ(got.body["document"], shown);
  // Applied live on the running daemon.
  EXPECT_TRUE(WaitFor(30000, [&] {
    return FindKey(HostStatus(secondary["config"]), "sync_rate_bytes_per_s") == json(23000000);
  })) << HostStatus(secondary["config"]).dump();

  // R-FO-3 step 5: the take-over logs the revision deployed to the host.
  ASSERT_TRUE(WaitFor(30000, [&] { return LocalOf(HostStatus(lab_["hosts"][0]["config"])).value("status", "") == "ACTIVE"; }));
  auto described = lab::Describe(dir_ + "/lab");
  ASSERT_TRUE(described.ok()) << described.status().message();
  const int primary_pid = (*described)["hosts"][0]["pid"];
  ASSERT_GT(primary_pid, 0);
  ASSERT_EQ(::kill(primary_pid, SIGKILL), 0);
  const std::string log = std::filesystem::path(secondary["config"].get<std::string>()).parent_path().string() +
                          "/tandemd.log";
  EXPECT_TRUE(WaitFor(60000, [&] {
    auto text = os::ReadFile(log, 64 << 20);
    return text.ok() && text->find("fetch-config: configuration revision 500 (deployed at ") != std::string::npos;
  })) << LabLogTails(dir_);
}

}  // namespace
}  // namespace tandem::itest
