// Upgrades and content packages (console/api_upgrade.cc, the poller's part
// in console/poller.cc; R-UP-1, R-UP-2) with scripted agents
// (FakeAgentClient) that keep their packages in memory: Needs Upgrade from
// the facts, POST /api/v1/clusters/{name}/upgrade pushing exactly the
// missing and older packages, its refusals, the history rows, and the
// poller's automatic push.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "console/api.h"
#include "console/api_test_support.h"
#include "console/fake_agent_client.h"
#include "console/password.h"
#include "console/poller.h"
#include "console/tls.h"
#include "os/files.h"

namespace tandem::console {
namespace {

using nlohmann::json;

const std::string kTokenP(64, 'a');
const std::string kTokenS(64, 'b');
const std::string kKeyP(64, '1');
const std::string kKeyS(64, '2');
constexpr const char* kPrimaryAgent = "127.0.0.2:7790";
constexpr const char* kSecondaryAgent = "127.0.0.3:7790";

std::string CertPem(const TempDir& dir, const std::string& name, std::string* sha) {
  const std::string cert = dir / (name + ".cert.pem"), key = dir / (name + ".key.pem");
  TANDEM_CHECK(GenerateSelfSigned(cert, key, name, {"127.0.0.1"}, {"localhost"}).ok());
  auto pem = os::ReadFile(cert, 1 << 20);
  auto s = CertSha256Hex(cert);
  TANDEM_CHECK(pem.ok() && s.ok());
  *sha = *s;
  return *pem;
}

json Facts(const std::string& name, const std::string& role, const std::string& ha_status,
           const std::string& version, const std::map<std::string, std::string>& packages) {
  json p = json::array();
  for (const auto& [n, v] : packages) p.push_back({{"name", n}, {"version", v}, {"kind", "parser"}});
  return json{{"name", name},
              {"version", version},
              {"packages", p},
              {"address", name == "edge-a" ? "198.18.0.1" : "198.18.0.2"},
              {"cluster", {{"name", "edge"}, {"role", role}, {"peer", name == "edge-a" ? "198.18.0.2" : "198.18.0.1"}}},
              {"ha", {{"local", {{"name", name}, {"status", ha_status}}}}}};
}

// An AgentClient in front of the fake whose package PUTs wait at a gate
// (outside the fake's lock, so other calls go on) until the test opens it:
// a push that takes long.
class GatedAgents : public AgentClient {
 public:
  explicit GatedAgents(FakeAgentClient& inner) : inner_(inner) {}
  Result<std::string> FetchCertificate(const std::string& address) override {
    return inner_.FetchCertificate(address);
  }
  Result<json> Pair(const std::string& address, const std::string& cert_pem, const std::string& token,
                    const std::string& console) override {
    return inner_.Pair(address, cert_pem, token, console);
  }
  Result<json> Facts(const AgentEndpoint& agent) override { return inner_.Facts(agent); }
  Result<json> MeasureListen(const AgentEndpoint& agent, int64_t bytes) override {
    return inner_.MeasureListen(agent, bytes);
  }
  Result<json> MeasureRun(const AgentEndpoint& agent, const std::string& address, int64_t port,
                          const std::string& nonce, int64_t bytes) override {
    return inner_.MeasureRun(agent, address, port, nonce, bytes);
  }
  AgentReply Invoke(const AgentEndpoint& agent, const std::string& method, const std::string& path,
                    const json& body, int64_t timeout_ms) override {
    if (method == "PUT" && path.starts_with("/api/v1/agent/packages/")) {
      std::unique_lock<std::mutex> l(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait_for(l, std::chrono::seconds(120), [this] { return open_; });
      --waiting_;
    }
    return inner_.Invoke(agent, method, path, body, timeout_ms);
  }

  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // True once a PUT waits at the gate (within `timeout`).
  bool WaitForAPut(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [this] { return waiting_ > 0; });
  }

 private:
  FakeAgentClient& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

class UpgradeTest : public test_support::ApiFixture {
 protected:
  UpgradeTest() : ApiFixture("console-upgrade") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("127.0.0.1"));
    ApiOptions options = Options();
    options.agents = &agents_;
    options.console_name = "console-1";
    ASSERT_NO_FATAL_FAILURE(StartApi(std::move(options)));
    FakeAgentClient::Host h;
    std::string sha_p, sha_s;
    h.cert_pem = CertPem(dir_, "p", &sha_p);
    h.token = kTokenP;
    h.key = kKeyP;
    h.facts = Facts("edge-a", "primary", "ACTIVE", "1.4.0", {});
    agents_.hosts[kPrimaryAgent] = h;
    h.cert_pem = CertPem(dir_, "s", &sha_s);
    h.token = kTokenS;
    h.key = kKeyS;
    h.facts = Facts("edge-b", "secondary", "STANDBY", "1.4.0", {});
    agents_.hosts[kSecondaryAgent] = h;
    for (const auto& [address, token, sha] :
         {std::tuple{kPrimaryAgent, kTokenP, sha_p}, std::tuple{kSecondaryAgent, kTokenS, sha_s}}) {
      ApiResponse a = Call("POST", "/api/v1/hosts", admin_,
                           json{{"address", address}, {"pairing_token", "tp1." + token + "." + sha}}.dump());
      ASSERT_EQ(a.status, 201) << a.body.dump();
    }
    // The agents' package endpoints, over an in-memory store per agent key.
    for (const std::string name : {"http", "dns", "syslog", "smtp"}) {
      const std::string path = "/api/v1/agent/packages/" + name;
      agents_.handlers["GET " + path] = [this, name](FakeAgentClient::Host& host,
                                                     const json&) -> Result<json> {
        auto it = store_[host.key].find(name);
        if (it == store_[host.key].end()) return Status::Error("agent x answered 404: no package");
        return it->second;
      };
      agents_.handlers["PUT " + path] = [this, name](FakeAgentClient::Host& host,
                                                     const json& body) -> Result<json> {
        store_[host.key][name] = body;
        json& list = host.facts["packages"];
        json kept = json::array();
        for (const json& p : list) {
          if (p["name"] != name) kept.push_back(p);
        }
        kept.push_back(body["manifest"]);
        list = kept;
        return json{{"package", body["manifest"]}};
      };
    }
  }

  // Installs a package on the agent (its facts and its store).
  void Install(const char* address, const std::string& name, const std::string& version,
               const std::string& payload) {
    std::lock_guard<std::mutex> l(agents_.mu);
    FakeAgentClient::Host& h = agents_.hosts[address];
    const json manifest{{"name", name}, {"version", version}, {"kind", "parser"}};
    json kept = json::array();
    for (const json& p : h.facts["packages"]) {
      if (p["name"] != name) kept.push_back(p);
    }
    kept.push_back(manifest);
    h.facts["packages"] = kept;
    store_[h.key][name] = json{{"manifest", manifest}, {"payload_base64", payload}, {"sha256", Sha256Hex(payload)}};
  }

  std::unique_ptr<Poller> MakePoller() {
    PollerOptions o;
    o.clock = &clock_;
    o.log = [this](int, const std::string& m) { Logged(m); };
    return std::make_unique<Poller>(*db_, agents_, std::move(o));
  }

  void AutoPush(bool on) {
    ApiResponse a = Call("PUT", "/api/v1/settings/auto_push_packages", admin_,
                         json{{"value", on ? 1 : 0}}.dump());
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }

  json HostNamed(const std::string& name) {
    return Call("GET", "/api/v1/hosts/" + name, admin_).body["host"];
  }

  // "old -> new" of the host's history rows, oldest first.
  std::vector<std::string> History(const std::string& host) {
    ApiResponse h = Call("GET", "/api/v1/history", admin_, "", "", {{"host", host}});
    std::vector<std::string> out;
    for (const json& e : h.body["entries"]) {
      out.insert(out.begin(), e["old_status"].get<std::string>() + " -> " + e["new_status"].get<std::string>());
    }
    return out;
  }

  int64_t Calls(const std::string& prefix) {
    std::lock_guard<std::mutex> l(agents_.mu);
    int64_t n = 0;
    for (const auto& c : agents_.calls) n += c.rfind(prefix, 0) == 0;
    return n;
  }

  json LastAudit() {
    ApiResponse a = Call("GET", "/api/v1/audit", admin_, "", "", {{"limit", "1"}});
    return a.body["entries"][0];
  }

  ApiResponse Upgrade(const std::string& cluster, const std::string& token) {
    return Call("POST", "/api/v1/clusters/" + cluster + "/upgrade", token, "{}");
  }

  FakeAgentClient agents_;
  std::map<std::string, std::map<std::string, json>> store_;  // agent key -> name -> GET answer
};

TEST(UpgradeCompare, VersionsAndDifferences) {
  EXPECT_EQ(CompareVersions("1.10", "1.9"), 1);
  EXPECT_EQ(CompareVersions("1.9", "1.10"), -1);
  EXPECT_EQ(CompareVersions("1.0", "1"), 0);
  EXPECT_EQ(CompareVersions("2", "1.99.99"), 1);
  json p{{"version", "1.4.0"},
         {"packages", json::array({{{"name", "a"}, {"version", "2"}}, {{"name", "b"}, {"version", "1.1"}},
                                   {{"name", "c"}, {"version", "1"}}})}};
  json s{{"version", "1.4"},
         {"packages", json::array({{{"name", "a"}, {"version", "2.0"}}, {{"name", "b"}, {"version", "1.0.9"}},
                                   {{"name", "z"}, {"version", "9"}}})}};
  UpgradeNeed n = CompareFacts(p, s);
  EXPECT_FALSE(n.software);
  EXPECT_EQ(n.packages, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(n.Reason(), "package b 1.0.9 < 1.1; package c 1 missing");
  s["version"] = "1.3.9";
  n = CompareFacts(p, s);
  EXPECT_TRUE(n.software);
  EXPECT_EQ(n.items.front(), "software 1.3.9 < 1.4.0");
  // A newer secondary needs nothing.
  EXPECT_FALSE(CompareFacts(s, p).software);
  // At most five differences in the reason.
  json many = json::array();
  for (int i = 0; i < 8; ++i) many.push_back({{"name", "p" + std::to_string(i)}, {"version", "1"}});
  n = CompareFacts(json{{"packages", many}}, json{{"packages", json::array()}});
  EXPECT_EQ(n.packages.size(), 8u);
  EXPECT_NE(n.Reason().find("p4 1 missing; and 3 more"), std::string::npos) << n.Reason();
  EXPECT_EQ(n.Reason().find("p5"), std::string::npos) << n.Reason();
}

TEST_F(UpgradeTest, NeedsUpgradeThenUpgradePushesExactlyTheMissingAndOlderPackages) {
  AutoPush(false);
  Install(kPrimaryAgent, "syslog", "1.3", "c3lzbG9nIDEuMw==");
  Install(kPrimaryAgent, "http", "2.0", "aHR0cA==");
  Install(kPrimaryAgent, "dns", "1.0", "ZG5z");
  Install(kSecondaryAgent, "syslog", "1.2", "b2xk");
  Install(kSecondaryAgent, "dns", "1.0", "ZG5z");
  Install(kSecondaryAgent, "smtp", "5", "");  // only on the secondary: no matter
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  json b = HostNamed("edge-b");
  EXPECT_EQ(b["status"], kStatusNeedsUpgrade) << b.dump();
  const std::string reason = b["status_reason"];
  EXPECT_NE(reason.find("behind primary edge-a"), std::string::npos) << reason;
  EXPECT_NE(reason.find("package http 2.0 missing"), std::string::npos) << reason;
  EXPECT_NE(reason.find("package syslog 1.2 < 1.3"), std::string::npos) << reason;
  EXPECT_EQ(reason.find("dns"), std::string::npos) << reason;
  // The primary stays as it is; /status and /hosts show the same.
  EXPECT_EQ(HostNamed("edge-a")["status"], "Active");
  json status = Call("GET", "/api/v1/status", viewer_).body;
  int seen = 0;
  for (const json& h : status["hosts"]) {
    if (h["name"] != "edge-b") continue;
    EXPECT_EQ(h["status"], kStatusNeedsUpgrade);
    ++seen;
  }
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(History("edge-b").back(), "Standby -> Needs Upgrade");
  // Nothing was pushed by the poller (auto push off).
  EXPECT_EQ(Calls("PUT "), 0);
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(Calls("PUT "), 0);

  // A viewer may not upgrade.
  ApiResponse v = Upgrade("edge", viewer_);
  EXPECT_EQ(v.status, 403) << v.body.dump();
  EXPECT_EQ(Calls("PUT "), 0);

  ApiResponse a = Upgrade("edge", admin_);
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body["cluster"], "edge");
  EXPECT_EQ(a.body["pushed"], json::array({"http", "syslog"}));
  EXPECT_EQ(a.body["status"], "Standby");
  EXPECT_EQ(Calls("PUT /api/v1/agent/packages/http " + std::string(kSecondaryAgent)), 1);
  EXPECT_EQ(Calls("PUT /api/v1/agent/packages/syslog " + std::string(kSecondaryAgent)), 1);
  EXPECT_EQ(Calls("PUT "), 2);
  EXPECT_EQ(Calls("GET /api/v1/agent/packages/http " + std::string(kPrimaryAgent)), 1);
  // What the secondary got is what the primary has, payload and all.
  EXPECT_EQ(store_[kKeyS]["http"], store_[kKeyP]["http"]);
  EXPECT_EQ(store_[kKeyS]["syslog"], store_[kKeyP]["syslog"]);
  EXPECT_EQ(store_[kKeyS]["dns"]["payload_base64"], "ZG5z");
  b = HostNamed("edge-b");
  EXPECT_EQ(b["status"], "Standby") << b.dump();
  EXPECT_NE(b["status_reason"].get<std::string>().find("pushed 2 content package(s) from edge-a"),
            std::string::npos)
      << b.dump();
  EXPECT_EQ(History("edge-b"), (std::vector<std::string>{"Unknown -> Standby", "Standby -> Needs Upgrade",
                                                         "Needs Upgrade -> Upgrading", "Upgrading -> Standby"}));
  json audit = LastAudit();
  EXPECT_EQ(audit["action"], "POST /api/v1/clusters/edge/upgrade");
  EXPECT_EQ(audit["target"], "cluster edge");
  EXPECT_EQ(audit["result"], "ok");
  // The next round agrees; a second upgrade has nothing to do.
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(HostNamed("edge-b")["status"], "Standby");
  ApiResponse again = Upgrade("edge", admin_);
  EXPECT_EQ(again.status, 409) << again.body.dump();
  EXPECT_EQ(again.body["error"]["code"], "nothing_to_upgrade");
  EXPECT_EQ(Calls("PUT "), 2);
  ApiResponse unknown = Upgrade("nope", admin_);
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
}

TEST_F(UpgradeTest, OlderSoftwareCannotBeFixedByPackages) {
  Install(kPrimaryAgent, "http", "2.0", "aHR0cA==");
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kSecondaryAgent].facts["version"] = "1.3.2";
  }
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());  // auto push on (the default), but software is behind
  json b = HostNamed("edge-b");
  EXPECT_EQ(b["status"], kStatusNeedsUpgrade);
  EXPECT_NE(b["status_reason"].get<std::string>().find("software 1.3.2 < 1.4.0"), std::string::npos) << b.dump();
  ApiResponse a = Upgrade("edge", admin_);
  EXPECT_EQ(a.status, 409) << a.body.dump();
  EXPECT_EQ(a.body["error"]["code"], "software_upgrade_required");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("install tandem 1.4.0 on edge-b"), std::string::npos)
      << a.body.dump();
  EXPECT_EQ(Calls("PUT "), 0);
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusNeedsUpgrade);
  EXPECT_EQ(LastAudit()["result"].get<std::string>().rfind("software_upgrade_required", 0), 0u);
}

TEST_F(UpgradeTest, AnAgentFailureIs502NamingTheHostAndLeavesNeedsUpgrade) {
  AutoPush(false);
  Install(kPrimaryAgent, "http", "2.0", "aHR0cA==");
  Install(kPrimaryAgent, "dns", "1.1", "ZG5z");
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  ASSERT_EQ(HostNamed("edge-b")["status"], kStatusNeedsUpgrade);
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kSecondaryAgent].reachable = false;
  }
  ApiResponse a = Upgrade("edge", admin_);
  EXPECT_EQ(a.status, 502) << a.body.dump();
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("at host edge-b"), std::string::npos)
      << a.body.dump();
  json b = HostNamed("edge-b");
  EXPECT_EQ(b["status"], kStatusNeedsUpgrade);
  EXPECT_NE(b["status_reason"].get<std::string>().find("failed"), std::string::npos) << b.dump();
  EXPECT_EQ(History("edge-b"), (std::vector<std::string>{"Unknown -> Standby", "Standby -> Needs Upgrade",
                                                         "Needs Upgrade -> Upgrading",
                                                         "Upgrading -> Needs Upgrade"}));
  // The primary unreachable: named likewise, nothing installed.
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kSecondaryAgent].reachable = true;
    agents_.hosts[kPrimaryAgent].reachable = false;
  }
  a = Upgrade("edge", admin_);
  EXPECT_EQ(a.status, 502) << a.body.dump();
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("at host edge-a"), std::string::npos)
      << a.body.dump();
  EXPECT_TRUE(store_[kKeyS].empty());
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusNeedsUpgrade);
}

TEST_F(UpgradeTest, ThePollerPushesNewerPackagesByItself) {
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(HostNamed("edge-b")["status"], "Standby");
  // A package update on the primary reaches the secondary (R-UP-2).
  Install(kPrimaryAgent, "http", "2.1", "bmV3");
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(Calls("PUT /api/v1/agent/packages/http " + std::string(kSecondaryAgent)), 1);
  EXPECT_EQ(store_[kKeyS]["http"], store_[kKeyP]["http"]);
  EXPECT_EQ(HostNamed("edge-b")["status"], "Standby");
  EXPECT_EQ(History("edge-b"), (std::vector<std::string>{"Unknown -> Standby", "Standby -> Needs Upgrade",
                                                         "Needs Upgrade -> Upgrading", "Upgrading -> Standby"}));
  EXPECT_NE(Log().find("pushed 1 content package(s) to edge-b automatically"), std::string::npos) << Log();
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(Calls("PUT "), 1);  // nothing more to push
  // A failing push is not retried every round.
  Install(kPrimaryAgent, "dns", "3", "ZG5z");
  agents_.handlers.erase("PUT /api/v1/agent/packages/dns");
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusNeedsUpgrade);
  EXPECT_NE(Log().find("automatic package push to edge-b failed"), std::string::npos) << Log();
  const int64_t puts = Calls("PUT ");
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(Calls("PUT "), puts);
  clock_.now_ms += kAutoPushRetryMs;
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(Calls("PUT "), puts + 1);
}

// A running poller pushes on a thread of its own: while a push waits on
// the secondary's agent the rounds go on (the primary's facts are read
// again and again), and no second push to the same cluster starts.
TEST_F(UpgradeTest, AnAutomaticPushDoesNotHoldUpThePolling) {
  GatedAgents gated(agents_);
  PollerOptions o;
  o.interval_ms = 20;
  o.clock = &clock_;
  o.log = [this](int, const std::string& m) { Logged(m); };
  Poller poller(*db_, gated, std::move(o));
  Install(kPrimaryAgent, "http", "2.1", "bmV3");
  poller.Start();
  struct Release {  // also when an assertion fails: the push ends, the threads are joined
    GatedAgents& gate;
    Poller& poller;
    ~Release() {
      gate.Open();
      poller.Stop();
    }
  } release{gated, poller};
  ASSERT_TRUE(gated.WaitForAPut(std::chrono::seconds(60))) << Log();
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusUpgrading);
  const std::string primary_facts = std::string("facts ") + kPrimaryAgent;
  const int64_t before = Calls(primary_facts);
  bool polled = false;
  for (int i = 0; i < 3000 && !polled; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    polled = Calls(primary_facts) >= before + 3;
  }
  EXPECT_TRUE(polled) << "no poll round while the push waited: " << Calls(primary_facts) - before;
  EXPECT_EQ(Calls("GET /api/v1/agent/packages/http"), 1);
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusUpgrading);

  gated.Open();
  std::string status;
  for (int i = 0; i < 3000 && status != "Standby"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    status = HostNamed("edge-b")["status"].get<std::string>();
  }
  EXPECT_EQ(status, "Standby");
  poller.Stop();
  EXPECT_EQ(Calls("PUT /api/v1/agent/packages/http " + std::string(kSecondaryAgent)), 1) << Log();
  EXPECT_EQ(Calls("GET /api/v1/agent/packages/http"), 1);
  EXPECT_NE(Log().find("pushed 1 content package(s) to edge-b automatically"), std::string::npos) << Log();
  std::lock_guard<std::mutex> l(agents_.mu);
  EXPECT_EQ(store_[kKeyS]["http"], store_[kKeyP]["http"]);
}

// A push with a stop flag (what Poller::Stop sets) ends after its current
// package: the secondary is left Needs Upgrade (not Upgrading), the rest is
// not pushed.
TEST_F(UpgradeTest, APushEndsAfterItsPackageOnceStopped) {
  AutoPush(false);
  Install(kPrimaryAgent, "dns", "1.0", "ZG5z");
  Install(kPrimaryAgent, "http", "2.1", "bmV3");
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  UpgradePair pair;
  {
    std::lock_guard<std::mutex> l(db_->mu());
    auto pairs = FindUpgradePairs(*db_, {});
    ASSERT_TRUE(pairs.ok());
    ASSERT_EQ(pairs->size(), 1u);
    pair = pairs->front();
  }
  const UpgradeNeed need = CompareFacts(pair.primary.facts, pair.secondary.facts);
  ASSERT_EQ(need.packages, (std::vector<std::string>{"dns", "http"}));
  GatedAgents gated(agents_);
  std::atomic<bool> stop{false};
  UpgradeOutcome o;
  std::thread push([&] { o = PushPackages(*db_, gated, pair, need, clock_, "test", true, &stop); });
  const bool waiting = gated.WaitForAPut(std::chrono::seconds(60));
  stop = true;
  gated.Open();
  push.join();
  ASSERT_TRUE(waiting);
  EXPECT_EQ(o.pushed, (std::vector<std::string>{"dns"}));
  EXPECT_EQ(o.failed_host, "edge-b");
  EXPECT_NE(o.error.find("the console is stopping"), std::string::npos) << o.error;
  EXPECT_EQ(Calls("PUT /api/v1/agent/packages/"), 1);
  json b = HostNamed("edge-b");
  EXPECT_EQ(b["status"], kStatusNeedsUpgrade) << b.dump();
  EXPECT_NE(b["status_reason"].get<std::string>().find("the console is stopping"), std::string::npos) << b.dump();
}

TEST_F(UpgradeTest, ARecordedClusterIsFoundThroughTheClustersTable) {
  AutoPush(false);
  {
    std::lock_guard<std::mutex> l(db_->mu());
    // Recorded as cluster "web" (the facts say "edge"): the table wins.
    ASSERT_TRUE(db_->Exec("INSERT INTO clusters (name, vip, created_at_ms, primary_host_id, secondary_host_id) "
                          "VALUES ('web', '198.18.0.100', 0, (SELECT id FROM hosts WHERE name = 'edge-a'), "
                          "(SELECT id FROM hosts WHERE name = 'edge-b'))")
                    .ok());
    ASSERT_TRUE(db_->Exec("UPDATE hosts SET cluster_id = (SELECT id FROM clusters WHERE name = 'web') "
                          "WHERE name IN ('edge-a', 'edge-b')")
                    .ok());
  }
  Install(kPrimaryAgent, "http", "2.0", "aHR0cA==");
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  EXPECT_EQ(HostNamed("edge-b")["status"], kStatusNeedsUpgrade);
  EXPECT_EQ(Upgrade("edge", admin_).status, 404);
  ApiResponse a = Upgrade("web", admin_);
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body["pushed"], json::array({"http"}));
  json c = Call("GET", "/api/v1/status", admin_).body["clusters"];
  ASSERT_EQ(c.size(), 1u) << c.dump();
  EXPECT_EQ(c[0]["secondary"]["status"], "Standby") << c.dump();
}

}  // namespace
}  // namespace tandem::console
