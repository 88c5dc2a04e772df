// Hosts, pairing, the poller, status and history of the console
// (console/api_hosts.cc, console/poller.*, console/agent_client.*), with a
// scripted agent (FakeAgentClient) and, for the TLS pinning, a real
// cpp-httplib SSLServer.
#include <gtest/gtest.h>

#include "api/httplib.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "console/agent_client.h"
#include "console/api.h"
#include "console/api_test_support.h"
#include "console/console.h"
#include "console/fake_agent_client.h"
#include "console/poller.h"
#include "console/tls.h"
#include "ha/guidance.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

using test_support::kFast;
const std::string kToken1(64, 'a');
const std::string kToken2(64, 'b');
const std::string kKey1 = "1111111111111111111111111111111111111111111111111111111111111111";
const std::string kKey2 = "2222222222222222222222222222222222222222222222222222222222222222";

// A self-signed certificate (PEM) for 127.0.0.1, and its key file.
struct Cert {
  std::string pem, cert_file, key_file, sha;
};
Cert MakeCert(const TempDir& dir, const std::string& name) {
  Cert c;
  c.cert_file = dir / (name + ".cert.pem");
  c.key_file = dir / (name + ".key.pem");
  Status st = GenerateSelfSigned(c.cert_file, c.key_file, name, {"127.0.0.1"}, {"localhost"});
  TANDEM_CHECK(st.ok());
  auto pem = os::ReadFile(c.cert_file, 1 << 20);
  TANDEM_CHECK(pem.ok());
  c.pem = *pem;
  auto sha = CertSha256Hex(c.cert_file);
  TANDEM_CHECK(sha.ok());
  c.sha = *sha;
  return c;
}

json HaFacts(const std::string& name, const std::string& cluster, const std::string& role,
             const std::string& status) {
  return json{{"name", name},
              {"version", "0.1.0"},
              {"packages", json::array({{{"name", "syslog"}, {"version", "1.2"}, {"kind", "parser"}}})},
              {"address", "198.18.0.1"},
              {"cluster", {{"name", cluster}, {"role", role}, {"peer", "x"}}},
              {"ha", {{"local", {{"name", name}, {"status", status}, {"reason", "test says " + status}}}}}};
}

class HostsTest : public test_support::ApiFixture {
 protected:
  HostsTest() : ApiFixture("console-hosts") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("127.0.0.1"));
    ApiOptions options = Options();
    options.agents = &agents_;
    options.console_name = "console-1";
    ASSERT_NO_FATAL_FAILURE(StartApi(std::move(options)));
    cert_a_ = MakeCert(dir_, "a");
    cert_b_ = MakeCert(dir_, "b");
    FakeAgentClient::Host h;
    h.cert_pem = cert_a_.pem;
    h.token = kToken1;
    h.key = kKey1;
    h.facts = json{{"name", "web-1"}, {"version", "0.1.0"}, {"packages", json::array()},
                   {"address", "198.18.0.5"}, {"cluster", nullptr}, {"ha", nullptr}};
    agents_.hosts["127.0.0.2:7790"] = h;
    h.cert_pem = cert_b_.pem;
    h.token = kToken2;
    h.key = kKey2;
    h.facts["name"] = "web-2";
    agents_.hosts["127.0.0.3:7790"] = h;
  }

  ApiResponse Pair(const std::string& address, const std::string& token, const std::string& sha,
                   const std::string& name = "", const std::string& as = "") {
    json body{{"address", address}, {"pairing_token", "tp1." + token + "." + sha}};
    if (!name.empty()) body["name"] = name;
    return Call("POST", "/api/v1/hosts", as.empty() ? admin_ : as, body.dump());
  }

  // The hosts and history rows, and whether any agent was paired: what a
  // refused call must leave alone.
  std::string Snapshot() {
    std::string out;
    std::lock_guard<std::mutex> l(db_->mu());
    for (const char* sql :
         {"SELECT name || '|' || role || '|' || address || '|' || IFNULL(agent_address, '') || '|' || "
          "IFNULL(agent_key, '') || '|' || status FROM hosts ORDER BY id",
          "SELECT host || '|' || new_status FROM host_history ORDER BY id"}) {
      auto s = db_->Prepare(sql);
      EXPECT_TRUE(s.ok());
      while (*s->Step()) out += s->Text(0) + "\n";
      out += "--\n";
    }
    std::lock_guard<std::mutex> l2(agents_.mu);
    for (const auto& [a, h] : agents_.hosts) out += a + (h.paired ? " paired\n" : "\n");
    return out;
  }

  std::string AllAuditText() {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("SELECT user || action || target || result FROM audit ORDER BY id");
    std::string out;
    while (*s->Step()) out += s->Text(0) + "\n";
    return out;
  }

  int64_t CountCalls(const std::string& prefix) {
    std::lock_guard<std::mutex> l(agents_.mu);
    int64_t n = 0;
    for (const auto& c : agents_.calls) n += c.rfind(prefix, 0) == 0;
    return n;
  }

  // Records `host` as the `role` ("primary" or "secondary") of `cluster`
  // (created if need be), as POST /api/v1/clusters does.
  void SetClusterId(const std::string& host, const std::string& cluster, const std::string& role) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto c = db_->Prepare("INSERT OR IGNORE INTO clusters (name, vip, created_at_ms) VALUES (?1, '198.18.0.100', 0)");
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Bind(1, cluster).Run().ok());
    auto u = db_->Prepare("UPDATE hosts SET cluster_id = (SELECT id FROM clusters WHERE name = ?1) WHERE name = ?2");
    ASSERT_TRUE(u.ok());
    ASSERT_TRUE(u->Bind(1, cluster).Bind(2, host).Run().ok());
    auto m = db_->Prepare(role == "primary"
                              ? "UPDATE clusters SET primary_host_id = (SELECT id FROM hosts WHERE name = ?2) "
                                "WHERE name = ?1"
                              : "UPDATE clusters SET secondary_host_id = (SELECT id FROM hosts WHERE name = ?2) "
                                "WHERE name = ?1");
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(m->Bind(1, cluster).Bind(2, host).Run().ok());
  }

  std::unique_ptr<Poller> MakePoller() {
    PollerOptions o;
    o.interval_ms = 1000;
    o.clock = &clock_;
    o.log = [this](int, const std::string& m) { Logged(m); };
    return std::make_unique<Poller>(*db_, agents_, std::move(o));
  }

  void SetHa(const std::string& address, const json& facts) {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[address].facts = facts;
  }

  FakeAgentClient agents_;
  Cert cert_a_, cert_b_;
};

TEST_F(HostsTest, PairingStoresTheHostWithoutEverShowingTheTokenOrKey) {
  ApiResponse r = Pair("127.0.0.2:7790", kToken1, cert_a_.sha);
  ASSERT_EQ(r.status, 201) << r.body.dump();
  const json& h = r.body["host"];
  EXPECT_EQ(h["name"], "web-1");  // from the facts
  EXPECT_EQ(h["role"], "managed");
  EXPECT_EQ(h["address"], "198.18.0.5");
  EXPECT_EQ(h["agent_address"], "127.0.0.2:7790");
  EXPECT_EQ(h["agent_cert_sha256"], cert_a_.sha);
  EXPECT_EQ(h["status"], "Unclustered");
  EXPECT_EQ(h["facts"]["version"], "0.1.0");
  EXPECT_TRUE(h["paired"].get<bool>());
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    EXPECT_TRUE(agents_.hosts["127.0.0.2:7790"].paired);
    EXPECT_NE(std::find(agents_.calls.begin(), agents_.calls.end(), "pair 127.0.0.2:7790 console-1"),
              agents_.calls.end());
  }
  // Stored: the key and the pinned certificate; answered: neither key nor token.
  {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("SELECT agent_key, agent_cert_pem FROM hosts WHERE name = 'web-1'");
    ASSERT_TRUE(*s->Step());
    EXPECT_EQ(s->Text(0), kKey1);
    EXPECT_EQ(s->Text(1), cert_a_.pem);
  }
  ApiResponse list = Call("GET", "/api/v1/hosts", viewer_);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["hosts"].size(), 2u);
  EXPECT_EQ(list.body["hosts"][1]["name"], "web-1");
  ApiResponse one = Call("GET", "/api/v1/hosts/web-1", viewer_);
  ASSERT_EQ(one.status, 200) << one.body.dump();
  EXPECT_EQ(one.body["host"]["facts"]["address"], "198.18.0.5");
  EXPECT_EQ(Call("GET", "/api/v1/hosts/nope", viewer_).status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/hosts/web-1/x", viewer_).status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/hosts/", viewer_).status, 404);
  for (const std::string& text : {r.body.dump(), list.body.dump(), one.body.dump(), AllAuditText(), Log()}) {
    EXPECT_EQ(text.find(kToken1), std::string::npos) << text;
    EXPECT_EQ(text.find(kKey1), std::string::npos) << text;
  }
  EXPECT_NE(AllAuditText().find("POST /api/v1/hostshost web-1 (127.0.0.2:7790)ok"), std::string::npos)
      << AllAuditText();
  // The pairing is a history row.
  ApiResponse hist = Call("GET", "/api/v1/history", viewer_);
  ASSERT_EQ(hist.status, 200);
  ASSERT_EQ(hist.body["entries"].size(), 1u);
  EXPECT_EQ(hist.body["entries"][0]["new_status"], "Unclustered");
}

TEST_F(HostsTest, WrongFingerprintIsRefusedAndNothingIsStored) {
  const std::string before = Snapshot();
  ApiResponse r = Pair("127.0.0.2:7790", kToken1, cert_b_.sha);  // host presents cert a
  EXPECT_EQ(r.status, 409) << r.body.dump();
  EXPECT_EQ(r.body["error"]["code"], "pairing_refused");
  EXPECT_EQ(r.body["error"]["field"], "pairing_token");
  EXPECT_EQ(CountCalls("pair "), 0);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(r.body.dump().find(kToken1), std::string::npos);
  EXPECT_NE(AllAuditText().find("pairing_refused"), std::string::npos);
}

TEST_F(HostsTest, AgentRefusingTheTokenIsPairingRefused) {
  const std::string before = Snapshot();
  ApiResponse r = Pair("127.0.0.2:7790", kToken2, cert_a_.sha);
  EXPECT_EQ(r.status, 409) << r.body.dump();
  EXPECT_EQ(r.body["error"]["code"], "pairing_refused");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(r.body.dump().find(kToken2), std::string::npos);
}

TEST_F(HostsTest, BadPairingStringsNameTheFieldAndNeverEchoTheToken) {
  const std::string before = Snapshot();
  const std::string secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  for (const std::string& bad :
       {std::string(""), "tp1." + secret, "tp2." + secret + "." + cert_a_.sha, "tp1." + secret + "x" + cert_a_.sha,
        "tp1." + std::string(64, 'A') + "." + cert_a_.sha, "tp1." + secret + "." + std::string(64, 'g'),
        "tp1." + secret + "." + cert_a_.sha + "0"}) {
    json body{{"address", "127.0.0.2:7790"}, {"pairing_token", bad}};
    ApiResponse r = Call("POST", "/api/v1/hosts", admin_, body.dump());
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body.dump();
    EXPECT_EQ(r.body["error"]["field"], "pairing_token") << bad;
    EXPECT_EQ(r.body.dump().find(secret), std::string::npos) << r.body.dump();
  }
  ApiResponse r = Call("POST", "/api/v1/hosts", admin_, json{{"address", "127.0.0.2:7790"}, {"pairing_token", 5}}.dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"]["field"], "pairing_token");
  r = Call("POST", "/api/v1/hosts", admin_, json{{"address", "127.0.0.2:7790"}}.dump());
  EXPECT_EQ(r.body["error"]["field"], "pairing_token");
  for (const char* addr : {"127.0.0.2", "127.0.0.2:0", "127.0.0.2:65536", ":7790", "a b:1", "h:x"}) {
    r = Call("POST", "/api/v1/hosts", admin_,
             json{{"address", addr}, {"pairing_token", "tp1." + kToken1 + "." + cert_a_.sha}}.dump());
    EXPECT_EQ(r.status, 400) << addr;
    EXPECT_EQ(r.body["error"]["field"], "address") << addr;
  }
  r = Call("POST", "/api/v1/hosts", admin_,
           json{{"address", "127.0.0.2:7790"}, {"pairing_token", "tp1." + kToken1 + "." + cert_a_.sha},
                {"name", "bad name"}}.dump());
  EXPECT_EQ(r.body["error"]["field"], "name");
  r = Call("POST", "/api/v1/hosts", admin_,
           json{{"address", "127.0.0.2:7790"}, {"pairing_token", "tp1." + kToken1 + "." + cert_a_.sha},
                {"extra", 1}}.dump());
  EXPECT_EQ(r.body["error"]["field"], "extra");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(CountCalls(""), 0);  // no agent was contacted
  EXPECT_EQ(AllAuditText().find(secret), std::string::npos);
  EXPECT_EQ(AllAuditText().find(kToken1), std::string::npos);
}

TEST_F(HostsTest, UnreachableAgentIs502AndNothingIsStored) {
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts["127.0.0.2:7790"].reachable = false;
  }
  const std::string before = Snapshot();
  ApiResponse r = Pair("127.0.0.2:7790", kToken1, cert_a_.sha);
  EXPECT_EQ(r.status, 502) << r.body.dump();
  EXPECT_EQ(r.body["error"]["code"], "unreachable");
  EXPECT_EQ(Snapshot(), before);
  r = Pair("127.0.0.9:7790", kToken1, cert_a_.sha);  // nobody there
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(HostsTest, ViewerMayNotPairOrDelete) {
  const std::string before = Snapshot();
  ApiResponse r = Pair("127.0.0.2:7790", kToken1, cert_a_.sha, "", viewer_);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(CountCalls(""), 0);
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  const std::string after = Snapshot();
  EXPECT_EQ(Call("DELETE", "/api/v1/hosts/web-1", viewer_).status, 403);
  EXPECT_EQ(Snapshot(), after);
  EXPECT_EQ(Call("GET", "/api/v1/status", viewer_).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/history", viewer_).status, 200);
}

TEST_F(HostsTest, DuplicateNameOrAddressIsConflictBeforeTheTokenIsUsed) {
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  const std::string before = Snapshot();
  ApiResponse r = Pair("127.0.0.3:7790", kToken2, cert_b_.sha, "web-1");
  EXPECT_EQ(r.status, 409) << r.body.dump();
  EXPECT_EQ(r.body["error"]["field"], "name");
  r = Pair("127.0.0.3:7790", kToken2, cert_b_.sha, "console-1");
  EXPECT_EQ(r.body["error"]["field"], "name");
  r = Pair("127.0.0.2:7790", kToken1, cert_a_.sha, "other");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["error"]["field"], "address");
  EXPECT_EQ(Snapshot(), before);  // web-2's agent is still unpaired
  // A name from the facts that is taken: the token is used by then, so the
  // answer says how to recover.
  SetHa("127.0.0.3:7790", json{{"name", "web-1"}});
  r = Pair("127.0.0.3:7790", kToken2, cert_b_.sha);
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["error"]["field"], "name");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("unpair"), std::string::npos);
  ApiResponse list = Call("GET", "/api/v1/hosts", admin_);
  EXPECT_EQ(list.body["hosts"].size(), 2u);
}

TEST_F(HostsTest, DeleteRules) {
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  ASSERT_EQ(Pair("127.0.0.3:7790", kToken2, cert_b_.sha, "db-1").status, 201);
  SetClusterId("db-1", "c1", "primary");
  const std::string before = Snapshot();
  ApiResponse r = Call("DELETE", "/api/v1/hosts/console-1", admin_);
  EXPECT_EQ(r.status, 409) << r.body.dump();
  r = Call("DELETE", "/api/v1/hosts/db-1", admin_);
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("c1"), std::string::npos);
  EXPECT_EQ(Call("DELETE", "/api/v1/hosts/nope", admin_).status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/hosts/web-1", admin_, "{}").status, 405);
  EXPECT_EQ(Snapshot(), before);
  r = Call("DELETE", "/api/v1/hosts/web-1", admin_);
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(Call("GET", "/api/v1/hosts/web-1", admin_).status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/hosts", admin_).body["hosts"].size(), 2u);
  EXPECT_NE(AllAuditText().find("DELETE /api/v1/hosts/web-1host web-1ok"), std::string::npos);
}

TEST_F(HostsTest, PollerRecordsStatusChangesAndFailovers) {
  SetHa("127.0.0.2:7790", HaFacts("c1-primary", "c1", "primary", "ACTIVE"));
  SetHa("127.0.0.3:7790", HaFacts("c1-secondary", "c1", "secondary", "STANDBY"));
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  ASSERT_EQ(Pair("127.0.0.3:7790", kToken2, cert_b_.sha).status, 201);
  SetClusterId("c1-primary", "c1", "primary");
  SetClusterId("c1-secondary", "c1", "secondary");
  auto poller = MakePoller();
  ASSERT_TRUE(poller->PollOnce().ok());
  ApiResponse hist = Call("GET", "/api/v1/history", admin_);
  EXPECT_EQ(hist.body["entries"].size(), 2u);  // the pairings only: nothing changed

  // The primary fails, the secondary takes over.
  SetHa("127.0.0.2:7790", HaFacts("c1-primary", "c1", "primary", "FAILED"));
  SetHa("127.0.0.3:7790", HaFacts("c1-secondary", "c1", "secondary", "ACTIVE"));
  clock_.now_ms += 5000;
  ASSERT_TRUE(poller->PollOnce().ok());
  hist = Call("GET", "/api/v1/history", admin_);
  ASSERT_EQ(hist.body["entries"].size(), 5u) << hist.body.dump();
  const json& e = hist.body["entries"];
  EXPECT_EQ(e[0]["kind"], "failover");
  EXPECT_EQ(e[0]["host"], "c1-secondary");
  EXPECT_EQ(e[0]["cluster"], "c1");
  EXPECT_EQ(e[0]["reason"], "failover: c1-secondary active, was c1-primary");
  EXPECT_EQ(e[1]["host"], "c1-secondary");
  EXPECT_EQ(e[1]["old_status"], "Standby");
  EXPECT_EQ(e[1]["new_status"], "Active");
  EXPECT_EQ(e[2]["host"], "c1-primary");
  EXPECT_EQ(e[2]["old_status"], "Active");
  EXPECT_EQ(e[2]["new_status"], "Failed");
  EXPECT_EQ(e[2]["reason"], "test says FAILED");
  EXPECT_NE(Log().find("console: host c1-primary status Active -> Failed (test says FAILED)"), std::string::npos)
      << Log();
  EXPECT_NE(Log().find("failover: c1-secondary active, was c1-primary"), std::string::npos);
  ApiResponse one = Call("GET", "/api/v1/hosts/c1-primary", admin_);
  EXPECT_EQ(one.body["host"]["status"], "Failed");
  EXPECT_EQ(one.body["host"]["facts_at"], Rfc3339Ms(clock_.now_ms));

  // Status: table 4 advice for Failed / Active.
  ApiResponse st = Call("GET", "/api/v1/status", viewer_);
  ASSERT_EQ(st.status, 200) << st.body.dump();
  ASSERT_EQ(st.body["clusters"].size(), 1u);
  const json& c = st.body["clusters"][0];
  EXPECT_EQ(c["name"], "c1");
  EXPECT_EQ(c["primary"]["host"], "c1-primary");
  EXPECT_EQ(c["primary"]["status"], "Failed");
  EXPECT_EQ(c["secondary"]["status"], "Active");
  EXPECT_EQ(c["possible_action"], ha::PossibleAction(ha::HostStatus::kFailed, ha::HostStatus::kActive));
  EXPECT_NE(c["possible_action"].get<std::string>().find("primary"), std::string::npos);
  EXPECT_EQ(st.body["hosts"].size(), 3u);

  // The primary's agent goes silent: Unknown, with why; no failover row
  // (the active host did not change).
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts["127.0.0.2:7790"].reachable = false;
  }
  ASSERT_TRUE(poller->PollOnce().ok());
  hist = Call("GET", "/api/v1/history", admin_, "", "", {{"host", "c1-primary"}});
  ASSERT_EQ(hist.body["entries"].size(), 3u) << hist.body.dump();
  EXPECT_EQ(hist.body["entries"][0]["old_status"], "Failed");
  EXPECT_EQ(hist.body["entries"][0]["new_status"], "Unknown");
  EXPECT_NE(hist.body["entries"][0]["reason"].get<std::string>().find("unreachable"), std::string::npos);
  st = Call("GET", "/api/v1/status", viewer_);
  EXPECT_EQ(st.body["clusters"][0]["possible_action"],
            ha::PossibleAction(ha::HostStatus::kUnknown, ha::HostStatus::kActive));

  // Back, and the primary takes the active role again: a failover back.
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts["127.0.0.2:7790"].reachable = true;
  }
  SetHa("127.0.0.2:7790", HaFacts("c1-primary", "c1", "primary", "ACTIVE"));
  SetHa("127.0.0.3:7790", HaFacts("c1-secondary", "c1", "secondary", "STANDBY"));
  ASSERT_TRUE(poller->PollOnce().ok());
  hist = Call("GET", "/api/v1/history", admin_, "", "", {{"limit", "1"}});
  EXPECT_EQ(hist.body["entries"][0]["reason"], "failover: c1-primary active, was c1-secondary");

  // A fresh poller (a console restart) knows the last active host from the database.
  SetHa("127.0.0.2:7790", HaFacts("c1-primary", "c1", "primary", "FAILED"));
  SetHa("127.0.0.3:7790", HaFacts("c1-secondary", "c1", "secondary", "ACTIVE"));
  auto again = MakePoller();
  ASSERT_TRUE(again->PollOnce().ok());
  hist = Call("GET", "/api/v1/history", admin_, "", "", {{"limit", "1"}});
  EXPECT_EQ(hist.body["entries"][0]["reason"], "failover: c1-secondary active, was c1-primary");
  // Nothing the poller wrote holds the agent keys.
  EXPECT_EQ(Log().find(kKey1), std::string::npos);
  EXPECT_EQ(Log().find(kKey2), std::string::npos);
}

TEST_F(HostsTest, PollerThreadPollsAndStops) {
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  PollerOptions o;
  o.interval_ms = 20;
  o.clock = &clock_;
  Poller p(*db_, agents_, std::move(o));
  p.Start();
  for (int i = 0; i < 500 && CountCalls("facts ") < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  p.Stop();
  const int64_t n = CountCalls("facts ");
  EXPECT_GE(n, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(CountCalls("facts "), n);  // stopped
}

TEST_F(HostsTest, HistoryPages) {
  ASSERT_EQ(Pair("127.0.0.2:7790", kToken1, cert_a_.sha).status, 201);
  ASSERT_EQ(Pair("127.0.0.3:7790", kToken2, cert_b_.sha).status, 201);
  auto poller = MakePoller();
  for (int i = 0; i < 4; ++i) {
    {
      std::lock_guard<std::mutex> l(agents_.mu);
      agents_.hosts["127.0.0.2:7790"].reachable = i % 2 == 1;
    }
    ASSERT_TRUE(poller->PollOnce().ok());
  }
  // 2 pairings + web-1: Unknown, Unclustered, Unknown, Unclustered.
  ApiResponse all = Call("GET", "/api/v1/history", viewer_);
  ASSERT_EQ(all.body["entries"].size(), 6u) << all.body.dump();
  std::vector<int64_t> ids;
  int64_t before = 0;
  for (int page = 0; page < 10; ++page) {
    std::multimap<std::string, std::string> params{{"limit", "4"}};
    if (before) params.emplace("before", std::to_string(before));
    ApiResponse r = Call("GET", "/api/v1/history", viewer_, "", "", params);
    ASSERT_EQ(r.status, 200);
    if (r.body["entries"].empty()) break;
    EXPECT_LE(r.body["entries"].size(), 4u);
    for (const json& e : r.body["entries"]) ids.push_back(e["id"].get<int64_t>());
    before = ids.back();
  }
  ASSERT_EQ(ids.size(), 6u);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i], ids[i - 1]);  // newest first
  ApiResponse web2 = Call("GET", "/api/v1/history", viewer_, "", "", {{"host", "web-2"}});
  EXPECT_EQ(web2.body["entries"].size(), 1u);
  EXPECT_EQ(Call("GET", "/api/v1/history", viewer_, "", "", {{"limit", "0"}}).status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/history", viewer_, "", "", {{"limit", "1001"}}).status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/history", viewer_, "", "", {{"host", "a b"}}).body["error"]["field"], "host");
  EXPECT_EQ(Call("GET", "/api/v1/history", viewer_, "", "", {{"x", "1"}}).body["error"]["field"], "x");
  EXPECT_EQ(Call("GET", "/api/v1/history", "").status, 401);
}

TEST(PairingString, ParsesAndDescribesProblemsWithoutTheToken) {
  const std::string tok(64, 'c'), sha(64, 'd');
  auto ok = ParsePairingString("tp1." + tok + "." + sha);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->token, tok);
  EXPECT_EQ(ok->cert_sha256, sha);
  auto bad = ParsePairingString("tp1." + tok + "." + sha.substr(1));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find(tok), std::string::npos);
  EXPECT_FALSE(ParsePairingString("TP1." + tok + "." + sha).ok());
}

TEST(StatusFromFacts, MapsTheLocalHaStatus) {
  std::string status, reason;
  StatusFromFacts(json{{"ha", {{"local", {{"status", "SETTING_OFFLINE"}}}}}}, &status, &reason);
  EXPECT_EQ(status, "Setting Offline");
  StatusFromFacts(json{{"ha", nullptr}}, &status, &reason);
  EXPECT_EQ(status, "Unclustered");
  StatusFromFacts(json{{"ha", {{"local", {{"status", "BOGUS"}}}}}}, &status, &reason);
  EXPECT_EQ(status, "Unknown");
  EXPECT_EQ(ParseStoredStatus("Needs Upgrade"), ha::HostStatus::kNeedsUpgrade);
  EXPECT_EQ(ParseStoredStatus("Unclustered"), ha::HostStatus::kUnknown);
}

// The real client against a real TLS server: the pinned certificate is
// accepted, any other refused.
class TlsAgent {
 public:
  TlsAgent(const Cert& cert, const std::string& key) : server_(cert.cert_file.c_str(), cert.key_file.c_str()) {
    TANDEM_CHECK(server_.is_valid());
    const std::string pem = cert.pem;
    server_.Get("/api/v1/agent/certificate", [pem](const httplib::Request&, httplib::Response& res) {
      res.set_content(json{{"pem", pem}}.dump(), "application/json");
    });
    server_.Get("/api/v1/agent/facts", [key](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != "Bearer " + key) {
        res.status = 401;
        res.set_content(json{{"error", {{"code", "unauthenticated"}, {"message", "wrong key"}, {"field", nullptr}}}}.dump(),
                        "application/json");
        return;
      }
      res.set_content(json{{"name", "tls-host"}}.dump(), "application/json");
    });
    server_.Post("/api/v1/agent/pair", [key](const httplib::Request& req, httplib::Response& res) {
      json b = json::parse(req.body, nullptr, false);
      if (b.is_discarded() || b.value("token", "") != kToken1 || b.value("console", "") != "console-1") {
        res.status = 401;
        res.set_content(json{{"error", {{"code", "unauthenticated"}, {"message", "wrong token"}, {"field", nullptr}}}}.dump(),
                        "application/json");
        return;
      }
      res.status = 201;
      res.set_content(json{{"key", key}, {"facts", {{"name", "tls-host"}}}}.dump(), "application/json");
    });
    server_.Post("/api/v1/agent/ha", [](const httplib::Request&, httplib::Response& res) {
      res.status = 409;
      res.set_content(json{{"error", {{"code", "not_clustered"}, {"message", "no HA role here"}, {"field", nullptr}}}}.dump(),
                      "application/json");
    });
    server_.Delete("/api/v1/agent/facts", [](const httplib::Request&, httplib::Response& res) {
      res.status = 500;
      res.set_content("not json", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    TANDEM_CHECK(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 5000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~TlsAgent() {
    server_.stop();
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
};

TEST(HttpsAgentClient, TrustsOnlyThePinnedCertificate) {
  TempDir dir("console-agent-tls");
  const Cert a = MakeCert(dir, "a"), b = MakeCert(dir, "b");
  TlsAgent agent(a, kKey1);
  auto client = NewHttpsAgentClient();

  auto pem = client->FetchCertificate(agent.address());
  ASSERT_TRUE(pem.ok()) << pem.status().message();
  EXPECT_EQ(*pem, a.pem);
  auto sha = CertDerSha256Hex(*pem);
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(*sha, a.sha);
  EXPECT_NE(*sha, b.sha);

  // Pairing over the pinned connection.
  auto refused = client->Pair(agent.address(), a.pem, kToken2, "console-1");
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(AgentUnreachable(refused.status())) << refused.status().message();
  EXPECT_NE(refused.status().message().find("answered 401: wrong token"), std::string::npos);
  auto mitm = client->Pair(agent.address(), b.pem, kToken1, "console-1");
  ASSERT_FALSE(mitm.ok());
  EXPECT_TRUE(AgentUnreachable(mitm.status())) << mitm.status().message();
  auto paired = client->Pair(agent.address(), a.pem, kToken1, "console-1");
  ASSERT_TRUE(paired.ok()) << paired.status().message();
  EXPECT_EQ((*paired)["key"], kKey1);

  auto facts = client->Facts(AgentEndpoint{agent.address(), a.pem, kKey1});
  ASSERT_TRUE(facts.ok()) << facts.status().message();
  EXPECT_EQ((*facts)["name"], "tls-host");
  auto other = client->Facts(AgentEndpoint{agent.address(), b.pem, kKey1});
  ASSERT_FALSE(other.ok());
  EXPECT_TRUE(AgentUnreachable(other.status()));
  EXPECT_NE(other.status().message().find("not the pinned one"), std::string::npos)
      << other.status().message();
  EXPECT_EQ(other.status().message().find(kKey1), std::string::npos);
  auto wrong_key = client->Facts(AgentEndpoint{agent.address(), a.pem, kKey2});
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.status().message().find("answered 401"), std::string::npos);

  // cpp-httplib also checks the address against the certificate's
  // subjectAltName (docs/CONSOLE.md): a pinned certificate naming another
  // address is refused too.
  {
    Cert elsewhere;
    elsewhere.cert_file = dir / "c.cert.pem";
    elsewhere.key_file = dir / "c.key.pem";
    ASSERT_TRUE(GenerateSelfSigned(elsewhere.cert_file, elsewhere.key_file, "c", {"127.0.0.9"},
                                   {"c.invalid"}).ok());
    elsewhere.pem = *os::ReadFile(elsewhere.cert_file, 1 << 20);
    TlsAgent c(elsewhere, kKey1);
    auto c_pem = client->FetchCertificate(c.address());
    ASSERT_TRUE(c_pem.ok());
    auto c_facts = client->Facts(AgentEndpoint{c.address(), *c_pem, kKey1});
    EXPECT_FALSE(c_facts.ok());
    EXPECT_TRUE(AgentUnreachable(c_facts.status())) << c_facts.status().message();
  }

  // Nobody listening: unreachable, within the call timeout.
  const std::string gone = [&] {
    TlsAgent tmp(a, kKey1);
    return tmp.address();
  }();
  auto down = client->Facts(AgentEndpoint{gone, a.pem, kKey1});
  ASSERT_FALSE(down.ok());
  EXPECT_TRUE(AgentUnreachable(down.status())) << down.status().message();
}

// Invoke's answer carries the agent's HTTP status and its error code and
// message (what callers decide on), besides the error text.
TEST(HttpsAgentClient, InvokeCarriesTheAgentsStatusAndErrorCode) {
  TempDir dir("console-agent-invoke");
  const Cert a = MakeCert(dir, "a");
  TlsAgent agent(a, kKey1);
  auto client = NewHttpsAgentClient();
  const AgentEndpoint endpoint{agent.address(), a.pem, kKey1};

  AgentReply ok = client->Invoke(endpoint, "GET", "/api/v1/agent/facts", json::object(), kAgentCallTimeoutMs);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok.http_status, 200);
  EXPECT_EQ(ok.error_code, "");
  EXPECT_EQ((*ok)["name"], "tls-host");

  AgentReply refused = client->Invoke(endpoint, "POST", "/api/v1/agent/ha", json{{"cmd", "offline"}},
                                      kAgentCallTimeoutMs);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.http_status, 409);
  EXPECT_EQ(refused.error_code, "not_clustered");
  EXPECT_EQ(refused.error_message, "no HA role here");
  EXPECT_EQ(refused.status().message(), "agent " + agent.address() + " answered 409: no HA role here");
  EXPECT_FALSE(AgentUnreachable(refused.status()));

  // A wrong key: the agent's 401 and its code.
  AgentReply wrong = client->Invoke(AgentEndpoint{agent.address(), a.pem, kKey2}, "GET", "/api/v1/agent/facts",
                                    json::object(), kAgentCallTimeoutMs);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.http_status, 401);
  EXPECT_EQ(wrong.error_code, "unauthenticated");

  // An error answer without the error object: the status, no code.
  AgentReply bare = client->Invoke(endpoint, "DELETE", "/api/v1/agent/facts", json::object(), kAgentCallTimeoutMs);
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.http_status, 500);
  EXPECT_EQ(bare.error_code, "");
  EXPECT_NE(bare.status().message().find("answered 500: no error message"), std::string::npos)
      << bare.status().message();

  // No answer at all: status 0.
  const std::string gone = [&] {
    TlsAgent tmp(a, kKey1);
    return tmp.address();
  }();
  AgentReply down = client->Invoke(AgentEndpoint{gone, a.pem, kKey1}, "POST", "/api/v1/agent/ha",
                                   json{{"cmd", "offline"}}, kAgentCallTimeoutMs);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.http_status, 0);
  EXPECT_EQ(down.error_code, "");
  EXPECT_TRUE(AgentUnreachable(down.status())) << down.status().message();
}

// The wiring: a Console pairs through its agent client over its HTTPS API
// and its poller thread keeps the host's status current.
TEST(ConsolePoller, PairsOverHttpsAndPollsTheStatus) {
  TempDir dir("console-poll");
  const Cert a = MakeCert(dir, "a");
  FakeAgentClient agents;
  FakeAgentClient::Host h;
  h.cert_pem = a.pem;
  h.token = kToken1;
  h.key = kKey1;
  h.facts = HaFacts("db-1", "c1", "primary", "STANDBY");
  agents.hosts["127.0.0.2:7790"] = h;
  std::mutex log_mu;
  std::string log;
  ConsoleOptions o;
  o.state_dir = dir / "console";
  o.host_name = "console-test";
  o.kdf = kFast;
  o.poll_interval_ms = 50;
  o.agents = &agents;
  o.log = [&](int, const std::string& m) {
    std::lock_guard<std::mutex> l(log_mu);
    log += m + "\n";
  };
  Console c(o);
  ASSERT_TRUE(c.Start().ok());
  httplib::SSLClient cli("127.0.0.1", c.port());
  cli.set_ca_cert_path(c.cert_file().c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(5, 0);
  auto pw = os::ReadFile(c.password_file(), 100);
  ASSERT_TRUE(pw.ok());
  auto login = cli.Post("/api/v1/sessions",
                        json{{"user", "admin"}, {"password", pw->substr(0, pw->size() - 1)}}.dump(),
                        "application/json");
  ASSERT_TRUE(login && login->status == 201);
  httplib::Headers auth{{"Authorization", "Bearer " + json::parse(login->body)["token"].get<std::string>()}};
  auto paired = cli.Post("/api/v1/hosts", auth,
                         json{{"address", "127.0.0.2:7790"}, {"pairing_token", "tp1." + kToken1 + "." + a.sha}}.dump(),
                         "application/json");
  ASSERT_TRUE(paired);
  ASSERT_EQ(paired->status, 201) << paired->body;
  EXPECT_EQ(json::parse(paired->body)["host"]["status"], "Standby");
  {
    std::lock_guard<std::mutex> l(agents.mu);
    agents.hosts["127.0.0.2:7790"].facts = HaFacts("db-1", "c1", "primary", "ACTIVE");
  }
  std::string status;
  for (int i = 0; i < 500 && status != "Active"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto r = cli.Get("/api/v1/hosts/db-1", auth);
    ASSERT_TRUE(r);
    status = json::parse(r->body)["host"]["status"].get<std::string>();
  }
  EXPECT_EQ(status, "Active");
  c.Stop();
  std::lock_guard<std::mutex> l(log_mu);
  EXPECT_NE(log.find("console: host db-1 status Standby -> Active"), std::string::npos) << log;
  {
    std::lock_guard<std::mutex> l2(agents.mu);
    EXPECT_NE(std::find(agents.calls.begin(), agents.calls.end(), "pair 127.0.0.2:7790 console-test"),
              agents.calls.end());
  }
  EXPECT_EQ(log.find(kToken1), std::string::npos);
  EXPECT_EQ(log.find(kKey1), std::string::npos);
}

}  // namespace
}  // namespace tandem::console
