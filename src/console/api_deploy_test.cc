// Deploying the configuration (console/api_deploy.cc; docs/CONSOLE.md,
// "Deploying"): the document each host's agent gets, the revision, the
// pending changes cleared only when every host accepted, the refusals, the
// audit.
#include <gtest/gtest.h>

#include <map>

#include "console/api.h"
#include "console/api_test_support.h"
#include "console/fake_agent_client.h"
#include "console/poller.h"
#include "os/files.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr const char* kAlphaAgent = "198.18.0.1:7790";
constexpr const char* kBetaAgent = "198.18.0.2:7790";
constexpr const char* kGammaAgent = "198.18.0.3:7790";

// Facts that pass the cluster checks (as in api_clusters_test.cc).
json HostFacts(const std::string& name, const std::string& address) {
  return test_support::ClusterReadyFacts(name, address, address + "/25", json::array());
}

class DeployTest : public test_support::ApiFixture {
 protected:
  DeployTest() : ApiFixture("console-deploy") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("198.18.0.100"));
    ApiOptions o = Options();
    o.agents = &agents_;
    o.console_name = "console-1";
    ASSERT_NO_FATAL_FAILURE(StartApi(o, "viewer password 1"));
    AddHost("alpha", kAlphaAgent, HostFacts("alpha", "198.18.0.1"));
    AddHost("beta", kBetaAgent, HostFacts("beta", "198.18.0.2"));
    AddHost("gamma", kGammaAgent, HostFacts("gamma", "198.18.0.3"));
    // The agents store what they are sent (by address) and answer its revision.
    agents_.handlers["PUT /api/v1/agent/config"] = [this](FakeAgentClient::Host& h,
                                                           const json& body) -> Result<json> {
      received_[h.key] = body;
      ++puts_[h.key];
      return json{{"revision", body["revision"]}};
    };
  }

  // The fake agent of host `initial` reports HA status `status`.
  void SetHaStatus(const std::string& agent, const std::string& status) {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[agent].facts["ha"] = {{"local", {{"status", status}, {"reason", "test"}}}};
  }
  int Puts(char initial) {
    std::lock_guard<std::mutex> l(agents_.mu);
    return puts_[std::string(64, initial)];
  }

  void AddHost(const std::string& name, const std::string& agent, const json& facts) {
    AddPairedHost(agents_, name, agent, facts);
  }

  int64_t Rows(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    EXPECT_TRUE(s.ok());
    auto r = s->Step();
    EXPECT_TRUE(r.ok() && *r);
    return s->Int(0);
  }

  json LastAudit() {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("SELECT user, action, target, result, status FROM audit ORDER BY id DESC LIMIT 1");
    EXPECT_TRUE(s.ok());
    EXPECT_TRUE(*s->Step());
    return json{{"user", s->Text(0)},
                {"action", s->Text(1)},
                {"target", s->Text(2)},
                {"result", s->Text(3)},
                {"status", s->Int(4)}};
  }

  ApiResponse Deploy(const std::string& body = "", const std::string& token = "") {
    return Call("POST", "/api/v1/deploy", token.empty() ? admin_ : token, body);
  }

  // The cluster alpha (alpha + beta, gamma left alone) with `options`.
  void CreateAlpha(const json& options = json::object()) {
    ApiResponse r = Call("POST", "/api/v1/clusters", admin_,
                         json{{"primary", "alpha"},
                              {"secondary", "beta"},
                              {"primary_new_ip", "198.18.0.10"},
                              {"options", options}}
                             .dump());
    ASSERT_EQ(r.status, 201) << r.body.dump();
  }

  // What the agent of host `initial` (its key's letter) was last sent.
  json Sent(char initial) {
    std::lock_guard<std::mutex> l(agents_.mu);
    auto it = received_.find(std::string(64, initial));
    return it == received_.end() ? json() : it->second;
  }

  FakeAgentClient agents_;
  std::map<std::string, json> received_;  // by agent key; guarded by agents_.mu
  std::map<std::string, int> puts_;       // PUT config calls by agent key; guarded by agents_.mu
};

TEST_F(DeployTest, DeployPushesEachHostItsDocumentAndClearsThePendingChanges) {
  ASSERT_NO_FATAL_FAILURE(CreateAlpha({{"sync_rate_mb", 250}, {"heartbeat_interval_ms", 2000},
                                       {"heartbeat_timeout_ms", 7000}}));
  ASSERT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 3);
  ApiResponse r = Deploy();
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 1);
  EXPECT_EQ(r.body["cleared"], 3);
  ASSERT_EQ(r.body["hosts"].size(), 3u) << r.body.dump();
  for (const json& h : r.body["hosts"]) EXPECT_TRUE(h["ok"].get<bool>()) << h.dump();
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 0);

  const json primary = Sent('a');
  ASSERT_TRUE(primary.is_object()) << "alpha's agent got nothing";
  EXPECT_EQ(primary["revision"], 1);
  const json& d = primary["document"];
  EXPECT_EQ(d["revision"], 1);
  EXPECT_EQ(d["console"]["name"], "console-1");
  EXPECT_EQ(d["host"], (json{{"name", "alpha-primary"}, {"role", "primary"}}));
  const json& c = d["cluster"];
  EXPECT_EQ(c["name"], "alpha");
  EXPECT_EQ(c["vip"], "198.18.0.1");
  EXPECT_EQ(c["primary_ip"], "198.18.0.10");
  EXPECT_EQ(c["secondary_ip"], "198.18.0.2");
  EXPECT_EQ(c["license_valid"], false);  // none was assigned
  // The cluster's key: 64 hex digits made at the first deploy, kept, not
  // shown by the API; the VIP's prefix from the members' interfaces.
  ASSERT_TRUE(c["key"].is_string());
  EXPECT_EQ(c["key"].get<std::string>().size(), 64u);
  EXPECT_EQ(c["key"].get<std::string>().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(c["vip_prefix"], 25);  // the facts say /25 (the default would be 24)
  EXPECT_EQ(Call("GET", "/api/v1/clusters/alpha", viewer_).body.dump().find(c["key"].get<std::string>()),
            std::string::npos);
  EXPECT_EQ(c["options"]["sync_rate_mb"], 250);
  EXPECT_EQ(c["options"]["heartbeat_interval_ms"], 2000);
  EXPECT_EQ(c["options"]["heartbeat_timeout_ms"], 7000);
  EXPECT_EQ(c["options"]["disable_replication"], false);
  EXPECT_TRUE(c["options"]["crossover_interface"].is_null());
  // The default peers: every other managed host (gamma), not the members.
  EXPECT_EQ(c["options"]["connectivity_peers"], json::array({"198.18.0.3"}));

  const json secondary = Sent('b');
  ASSERT_TRUE(secondary.is_object());
  EXPECT_EQ(secondary["document"]["host"], (json{{"name", "alpha-secondary"}, {"role", "secondary"}}));
  EXPECT_EQ(secondary["document"]["cluster"], c);
  const json managed = Sent('g');
  ASSERT_TRUE(managed.is_object());
  EXPECT_EQ(managed["document"]["host"], (json{{"name", "gamma"}, {"role", "managed"}}));
  EXPECT_TRUE(managed["document"]["cluster"].is_null());

  json last = LastAudit();
  EXPECT_EQ(last["action"], "POST /api/v1/deploy");
  EXPECT_EQ(last["target"], "deployment");
  EXPECT_EQ(last["status"], 200);
  EXPECT_NE(last["result"].get<std::string>().find("revision 1"), std::string::npos) << last.dump();

  // The state, for any role.
  ApiResponse s = Call("GET", "/api/v1/deploy", viewer_);
  ASSERT_EQ(s.status, 200) << s.body.dump();
  EXPECT_EQ(s.body["revision"], 1);
  EXPECT_EQ(s.body["pending"], json::array());
  ASSERT_EQ(s.body["hosts"].size(), 3u);
  for (const json& h : s.body["hosts"]) EXPECT_EQ(h["deployed_revision"], 1) << h.dump();

  // An edit, deployed: revision 2 with the new option.
  ApiResponse e = Call("PATCH", "/api/v1/clusters/alpha", admin_,
                       json{{"options", {{"sync_rate_mb", 40}, {"connectivity_peers", {"198.18.0.77:22"}}}}}.dump());
  ASSERT_EQ(e.status, 200) << e.body.dump();
  ApiResponse s2 = Call("GET", "/api/v1/deploy", viewer_);
  ASSERT_EQ(s2.body["pending"].size(), 1u) << s2.body.dump();
  r = Deploy(json{{"full", false}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 2);
  EXPECT_EQ(r.body["cleared"], 1);
  EXPECT_EQ(Sent('b')["document"]["cluster"]["options"]["sync_rate_mb"], 40);
  EXPECT_EQ(Sent('b')["document"]["cluster"]["options"]["connectivity_peers"], json::array({"198.18.0.77:22"}));
  EXPECT_EQ(Sent('b')["document"]["cluster"]["key"], c["key"]);  // the same key on every deploy
  EXPECT_EQ(Sent('g')["revision"], 2);
}

TEST_F(DeployTest, AFailingHostKeepsThePendingChangesAndIsNamed) {
  ASSERT_NO_FATAL_FAILURE(CreateAlpha());
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kGammaAgent].reachable = false;
  }
  ApiResponse r = Deploy();
  EXPECT_EQ(r.status, 502) << r.body.dump();
  ASSERT_TRUE(r.body.contains("error"));
  EXPECT_EQ(r.body["error"]["code"], "deploy_incomplete");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("gamma"), std::string::npos);
  EXPECT_EQ(r.body["revision"], 1);
  EXPECT_EQ(r.body["cleared"], 0);
  ASSERT_EQ(r.body["hosts"].size(), 3u);
  std::map<std::string, bool> ok;
  for (const json& h : r.body["hosts"]) ok[h["name"].get<std::string>()] = h["ok"].get<bool>();
  EXPECT_EQ(ok, (std::map<std::string, bool>{{"alpha-primary", true}, {"alpha-secondary", true}, {"gamma", false}}));
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 3);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE deployed_revision = 1"), 2);
  json last = LastAudit();
  EXPECT_EQ(last["status"], 502);
  EXPECT_EQ(last["result"].get<std::string>().rfind("deploy_incomplete:", 0), 0u) << last.dump();

  // An agent that refuses (a wrong revision back counts as not accepted too).
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kGammaAgent].reachable = true;
  }
  agents_.handlers["PUT /api/v1/agent/config"] = [](FakeAgentClient::Host& h, const json& body) -> Result<json> {
    if (h.key[0] == 'b') return Status::Error("agent 198.18.0.2:7790 answered 400: bad document");
    return json{{"revision", body["revision"]}};
  };
  r = Deploy();
  EXPECT_EQ(r.status, 502) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 2);  // revisions are never reused
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 3);

  // All accept: cleared.
  agents_.handlers["PUT /api/v1/agent/config"] = [](FakeAgentClient::Host&, const json& body) -> Result<json> {
    return json{{"revision", body["revision"]}};
  };
  r = Deploy();
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 3);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 0);
}

TEST_F(DeployTest, NothingToDeployUnlessFull) {
  ApiResponse r = Deploy();
  EXPECT_EQ(r.status, 409) << r.body.dump();
  EXPECT_EQ(r.body["error"]["code"], "nothing_to_deploy");
  EXPECT_EQ(LastAudit()["status"], 409);
  EXPECT_TRUE(Sent('g').is_null());
  // Full: re-sent with no pending change.
  r = Deploy(json{{"full", true}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 1);
  EXPECT_EQ(r.body["cleared"], 0);
  EXPECT_EQ(Sent('g')["revision"], 1);
  r = Deploy(json{{"full", true}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(Sent('g')["revision"], 2);
  EXPECT_EQ(Sent('a')["document"]["host"]["role"], "managed");
}

TEST_F(DeployTest, ViewerAndBadBodiesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(CreateAlpha());
  ApiResponse r = Deploy("", viewer_);
  EXPECT_EQ(r.status, 403) << r.body.dump();
  json last = LastAudit();
  EXPECT_EQ(last["user"], "vera");
  EXPECT_EQ(last["status"], 403);
  r = Deploy(json{{"full", "yes"}}.dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"]["field"], "full");
  r = Deploy(json{{"fast", true}}.dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"]["field"], "fast");
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 3);
  EXPECT_TRUE(Sent('a').is_null());
  EXPECT_EQ(Call("DELETE", "/api/v1/deploy", admin_).status, 405);
  EXPECT_EQ(Call("GET", "/api/v1/deploy").status, 401);
}

TEST_F(DeployTest, TheRevisionNeverGoesBelowWhatTheHostsReport) {
  // A host whose facts say it runs revision 41 (a console restored from an
  // older backup): the next revision is 42.
  json facts = HostFacts("gamma", "198.18.0.3");
  facts["deployed_revision"] = 41;
  {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("UPDATE hosts SET facts_json = ?1 WHERE name = 'gamma'");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->Bind(1, facts.dump()).Run().ok());
  }
  ApiResponse r = Deploy(json{{"full", true}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["revision"], 42);
}

TEST_F(DeployTest, TheNewActiveHostGetsItsConfigurationAgainAfterAFailover) {
  ASSERT_NO_FATAL_FAILURE(CreateAlpha({{"sync_rate_mb", 300}}));
  ASSERT_EQ(Deploy().status, 200);
  ASSERT_EQ(Puts('b'), 1);
  PollerOptions po;
  po.clock = &clock_;
  po.log = [this](int, const std::string& m) { Logged(m); };
  Poller poller(*db_, agents_, po);
  SetHaStatus(kAlphaAgent, "ACTIVE");
  SetHaStatus(kBetaAgent, "STANDBY");
  ASSERT_TRUE(poller.PollOnce().ok());
  EXPECT_EQ(Puts('a'), 1);  // no failover yet: nothing sent
  EXPECT_EQ(Puts('b'), 1);
  // The secondary takes over: it gets the document it was deployed again.
  SetHaStatus(kAlphaAgent, "FAILED");
  SetHaStatus(kBetaAgent, "ACTIVE");
  clock_.now_ms += 5000;
  ASSERT_TRUE(poller.PollOnce().ok());
  EXPECT_EQ(Puts('b'), 2);
  EXPECT_EQ(Puts('a'), 1);
  EXPECT_EQ(Sent('b')["revision"], 1);
  EXPECT_EQ(Sent('b')["document"]["host"]["role"], "secondary");
  EXPECT_EQ(Sent('b')["document"]["cluster"]["options"]["sync_rate_mb"], 300);
  EXPECT_NE(Log().find("host alpha-secondary became active: configuration revision 1 sent again: accepted"),
            std::string::npos)
      << Log();
  // The same active again: nothing more.
  clock_.now_ms += 5000;
  ASSERT_TRUE(poller.PollOnce().ok());
  EXPECT_EQ(Puts('b'), 2);
}

}  // namespace
}  // namespace tandem::console
