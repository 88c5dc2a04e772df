// Clusters, licenses and settings of the console API (console/api_clusters.cc):
// every R-CL-3 refusal with its code (and nothing changed), the R-CL-4
// warnings, creation, editing, disconnecting, and HA licenses (R-DEP-4).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>

#include "console/api.h"
#include "console/api_test_support.h"
#include "console/fake_agent_client.h"
#include "console/license.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr int64_t kDayMs = 86400000;
constexpr const char* kAlphaAgent = "198.18.0.1:7790";
constexpr const char* kBetaAgent = "198.18.0.2:7790";
constexpr const char* kGammaAgent = "198.18.0.3:7790";

// Facts as an agent reports them (docs/CONSOLE.md, "Facts"): a host of the
// lab subnet 198.18.0.0/24 that passes every R-CL-3 check with its peer.
json HostFacts(const std::string& name, const std::string& address) {
  return test_support::ClusterReadyFacts(
      name, address, address + "/24",
      json::array({{{"name", "linux-syslog"}, {"version", "1.2.0"}, {"kind", "parser"}},
                   {{"name", "relp"}, {"version", "2.0.1"}, {"kind", "protocol"}}}),
      json::array({{{"name", "eth1"}, {"addresses", json::array()}, {"physical", true}, {"up", true}},
                   {{"name", "lo"}, {"addresses", json::array({"127.0.0.1/8"})}, {"physical", false}, {"up", true}}}));
}

class ClustersTest : public test_support::ApiFixture {
 protected:
  ClustersTest() : ApiFixture("console-clusters") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("198.18.0.100"));
    ASSERT_TRUE(os::MakeDirs(dir_ / "keys", 0700).ok());
    auto key = GenerateLicenseKey();
    ASSERT_TRUE(key.ok()) << key.status().message();
    key_ = *key;
    ASSERT_TRUE(os::WriteFileAtomic(dir_ / "keys/vendor.pem", key_.public_pem, 0644).ok());
    ApiOptions o = Options();
    o.session_ttl_s = 30 * 86400;
    o.agents = &agents_;
    o.console_name = "console-1";
    o.license_keys_dir = dir_ / "keys";
    ASSERT_NO_FATAL_FAILURE(StartApi(o, "viewer password 1"));
    AddHost("alpha", kAlphaAgent, HostFacts("alpha", "198.18.0.1"));
    AddHost("beta", kBetaAgent, HostFacts("beta", "198.18.0.2"));
    AddHost("gamma", kGammaAgent, HostFacts("gamma", "198.18.0.3"));
  }

  // A paired managed host, as the pairing stores it (and the fake agent
  // behind it).
  void AddHost(const std::string& name, const std::string& agent, const json& facts) {
    AddPairedHost(agents_, name, agent, facts);
  }

  void SetFacts(const std::string& name, const json& facts) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("UPDATE hosts SET facts_json = ?1 WHERE name = ?2");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->Bind(1, facts.dump()).Bind(2, name).Run().ok());
  }

  void Sql(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    ASSERT_TRUE(db_->Exec(sql).ok()) << sql;
  }

  int64_t Rows(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    EXPECT_TRUE(s.ok());
    auto r = s->Step();
    EXPECT_TRUE(r.ok() && *r);
    return s->Int(0);
  }

  std::string License(const std::string& id, int64_t expires_at_ms, const std::string& private_pem = "") {
    LicenseFields f;
    f.id = id;
    f.issued_to = "Example Corp";
    f.expires_at_ms = expires_at_ms;
    auto doc = SignLicense(f, private_pem.empty() ? key_.private_pem : private_pem);
    EXPECT_TRUE(doc.ok()) << doc.status().message();
    return doc.ok() ? *doc : "";
  }

  ApiResponse AddLicense(const std::string& document) {
    return Call("POST", "/api/v1/licenses", admin_, json{{"document", document}}.dump());
  }

  // Every row of every table the cluster and license calls touch (the
  // audit aside): what a refused call must leave as it was.
  std::string Snapshot() {
    std::string out;
    std::lock_guard<std::mutex> l(db_->mu());
    for (const char* sql :
         {"SELECT id || '|' || name || '|' || role || '|' || address || '|' || IFNULL(cluster_id, '-') FROM hosts "
          "ORDER BY id",
          "SELECT id || '|' || name || '|' || vip || '|' || IFNULL(primary_host_id, '-') || '|' || "
          "IFNULL(secondary_host_id, '-') || '|' || IFNULL(primary_ip, '-') || '|' || "
          "IFNULL(secondary_original_name, '-') || '|' || options_json || '|' || IFNULL(license_id, '-') "
          "FROM clusters ORDER BY id",
          "SELECT id || '|' || license_id || '|' || expires_at_ms || '|' || document FROM licenses ORDER BY id",
          "SELECT id || '|' || what FROM pending_changes ORDER BY id",
          "SELECT key || '=' || value FROM settings ORDER BY key",
          "SELECT name || '|' || role FROM users ORDER BY id"}) {
      auto s = db_->Prepare(sql);
      EXPECT_TRUE(s.ok()) << sql;
      while (*s->Step()) out += s->Text(0) + "\n";
      out += "--\n";
    }
    return out;
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

  // A refused state-changing call: status, code, field; nothing changed but
  // one audit row naming the refusal.
  void ExpectRefused(const std::string& what, const std::function<ApiResponse()>& call, int status,
                     const std::string& code, const std::string& field) {
    const std::string before = Snapshot();
    const int64_t audit_before = Rows("SELECT COUNT(*) FROM audit");
    ApiResponse r = call();
    EXPECT_EQ(r.status, status) << what << ": " << r.body.dump();
    ASSERT_TRUE(r.body.contains("error")) << what << ": " << r.body.dump();
    EXPECT_EQ(r.body["error"]["code"], code) << what << ": " << r.body.dump();
    EXPECT_FALSE(r.body["error"]["message"].get<std::string>().empty()) << what;
    if (field.empty()) {
      EXPECT_TRUE(r.body["error"]["field"].is_null()) << what << ": " << r.body.dump();
    } else {
      EXPECT_EQ(r.body["error"]["field"], field) << what << ": " << r.body.dump();
    }
    EXPECT_EQ(Snapshot(), before) << what << ": the refused call changed the database";
    EXPECT_EQ(Rows("SELECT COUNT(*) FROM audit"), audit_before + 1) << what;
    json last = LastAudit();
    EXPECT_EQ(last["status"], status) << what;
    EXPECT_EQ(last["result"].get<std::string>().rfind(code + ":", 0), 0u) << what << ": " << last.dump();
  }

  json CreateBody(const std::string& primary = "alpha", const std::string& secondary = "beta",
                  const std::string& new_ip = "198.18.0.10", json options = json()) {
    json b{{"primary", primary}, {"secondary", secondary}, {"primary_new_ip", new_ip}};
    if (!options.is_null()) b["options"] = std::move(options);
    return b;
  }

  ApiResponse Create(const json& body) { return Call("POST", "/api/v1/clusters", admin_, body.dump()); }

  void ExpectCreateRefused(const std::string& what, const json& body, int status, const std::string& code,
                           const std::string& field) {
    ExpectRefused(what, [&] { return Create(body); }, status, code, field);
  }

  // A created cluster alpha (alpha + beta), its pending changes deployed.
  void CreateAlpha(const std::string& license = "") {
    if (!license.empty()) {
      ASSERT_EQ(AddLicense(License(license, clock_.WallMs() + 365 * kDayMs)).status, 201);
    }
    ApiResponse r = Create(CreateBody());
    ASSERT_EQ(r.status, 201) << r.body.dump();
    Sql("DELETE FROM pending_changes");
  }

  std::vector<std::string> Codes(const json& warnings) {
    std::vector<std::string> out;
    for (const json& w : warnings) out.push_back(w["code"].get<std::string>());
    return out;
  }

  FakeAgentClient agents_;
  LicenseKeyPair key_;
};

// ---- creation ----

TEST_F(ClustersTest, CreateRenamesHostsMovesTheAddressAndRecordsPendingChanges) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + 365 * kDayMs)).status, 201);
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["warnings"], json::array()) << r.body.dump();
  EXPECT_EQ(r.body["link"]["mbps"], 9000);
  const json& c = r.body["cluster"];
  EXPECT_EQ(c["name"], "alpha");  // the primary's original name (R-DEP-3)
  EXPECT_EQ(c["status"], "Protected");
  EXPECT_EQ(c["ips"]["vip"], "198.18.0.1");  // the primary's old address
  EXPECT_EQ(c["ips"]["primary"], "198.18.0.10");
  EXPECT_EQ(c["ips"]["secondary"], "198.18.0.2");
  EXPECT_TRUE(c["ips"]["crossover"].is_null());
  ASSERT_EQ(c["members"].size(), 2u);
  EXPECT_EQ(c["members"][0]["name"], "alpha-primary");
  EXPECT_EQ(c["members"][1]["name"], "alpha-secondary");
  EXPECT_EQ(c["members"][1]["original_name"], "beta");
  EXPECT_EQ(c["license"]["id"], "ha-1");  // the free license, picked
  EXPECT_EQ(c["options"]["heartbeat_interval_ms"], 10000);
  EXPECT_EQ(c["options"]["heartbeat_timeout_ms"], 30000);
  EXPECT_EQ(c["options"]["sync_rate_mb"], 100);
  EXPECT_EQ(c["options"]["disable_replication"], false);
  EXPECT_TRUE(c["options"]["connectivity_peers"].is_null());
  // R-CL-2: every other managed host (gamma; not the console, not the members).
  EXPECT_EQ(c["connectivity_peers_effective"], json::array({"198.18.0.3"}));

  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name IN ('alpha', 'beta')"), 0);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name IN ('alpha-primary', 'alpha-secondary') AND "
                 "cluster_id = (SELECT id FROM clusters WHERE name = 'alpha')"),
            2);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 3);
  json last = LastAudit();
  EXPECT_EQ(last["action"], "POST /api/v1/clusters");
  EXPECT_EQ(last["target"], "cluster alpha");
  EXPECT_EQ(last["result"], "ok");
  EXPECT_EQ(last["status"], 201);
  // The link was measured from the primary to the secondary's listener.
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    std::string calls;
    for (const std::string& s : agents_.calls) calls += s + "\n";
    EXPECT_NE(calls.find(std::string("measure-listen ") + kBetaAgent + " " + std::to_string(16 << 20)),
              std::string::npos)
        << calls;
    EXPECT_NE(calls.find(std::string("measure-run ") + kAlphaAgent + " -> 198.18.0.2:40000"), std::string::npos)
        << calls;
  }
  // Visible to a viewer, in the list and by name.
  ApiResponse list = Call("GET", "/api/v1/clusters", viewer_);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["clusters"].size(), 1u);
  EXPECT_EQ(list.body["clusters"][0], c);
  EXPECT_EQ(Call("GET", "/api/v1/clusters/alpha", viewer_).body["cluster"], c);
  EXPECT_EQ(Call("GET", "/api/v1/clusters/nope", viewer_).status, 404);
  ApiResponse hosts = Call("GET", "/api/v1/hosts", viewer_);
  EXPECT_NE(hosts.body.dump().find("alpha-secondary"), std::string::npos);
}

TEST_F(ClustersTest, CreateTakesOptionsAndTheConsoleAsPrimary) {
  json facts = HostFacts("console-1", "198.18.0.100");
  SetFacts("console-1", facts);
  Sql("UPDATE hosts SET agent_address = '198.18.0.100:7790', agent_cert_pem = 'C', agent_key = 'K' "
      "WHERE name = 'console-1'");
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    FakeAgentClient::Host& h = agents_.hosts["198.18.0.100:7790"];
    h.cert_pem = "C";
    h.key = "K";
    h.paired = true;
  }
  ExpectCreateRefused("disable_replication on the console",
                      CreateBody("console-1", "beta", "198.18.0.11", {{"disable_replication", true}}), 400,
                      "invalid_argument", "options.disable_replication");
  json options{{"heartbeat_interval_ms", 2000},
               {"heartbeat_timeout_ms", 6000},
               {"connectivity_peers", {"198.18.0.3", "198.18.0.3:22"}},
               {"sync_rate_mb", 4096},
               {"crossover_interface", "eth1"},
               {"crossover_primary_ip", "10.99.0.1"},
               {"crossover_secondary_ip", "10.99.0.2"}};
  ApiResponse r = Create(CreateBody("console-1", "beta", "198.18.0.11", options));
  ASSERT_EQ(r.status, 201) << r.body.dump();
  const json& c = r.body["cluster"];
  EXPECT_EQ(c["name"], "console-1");
  EXPECT_EQ(c["status"], "Needs License");  // none was free
  EXPECT_EQ(Codes(r.body["warnings"]), std::vector<std::string>{"no_license"});
  EXPECT_EQ(c["options"]["heartbeat_interval_ms"], 2000);
  EXPECT_EQ(c["options"]["sync_rate_mb"], 4096);
  EXPECT_EQ(c["connectivity_peers_effective"], json::array({"198.18.0.3", "198.18.0.3:22"}));
  EXPECT_EQ(c["ips"]["crossover"], json({{"interface", "eth1"}, {"primary", "10.99.0.1"}, {"secondary", "10.99.0.2"}}));
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'console-1-primary' AND role = 'console'"), 1);
}

TEST_F(ClustersTest, ViewerMayNotCreateEditOrDisconnect) {
  ExpectRefused("viewer creates", [&] { return Call("POST", "/api/v1/clusters", viewer_, CreateBody().dump()); },
                403, "forbidden", "");
  CreateAlpha();
  ExpectRefused("viewer edits",
                [&] {
                  return Call("PATCH", "/api/v1/clusters/alpha", viewer_,
                              json{{"options", {{"sync_rate_mb", 5}}}}.dump());
                },
                403, "forbidden", "");
  ExpectRefused("viewer disconnects", [&] { return Call("DELETE", "/api/v1/clusters/alpha/secondary", viewer_); },
                403, "forbidden", "");
  ExpectRefused("viewer adds a license",
                [&] {
                  return Call("POST", "/api/v1/licenses", viewer_,
                              json{{"document", License("x", clock_.WallMs() + kDayMs)}}.dump());
                },
                403, "forbidden", "");
  ExpectRefused("viewer changes a setting",
                [&] { return Call("PUT", "/api/v1/settings/min_store_gb", viewer_, json{{"value", 1}}.dump()); }, 403,
                "forbidden", "");
}

TEST_F(ClustersTest, BadInputIsRefusedNamingTheField) {
  ExpectCreateRefused("unknown host", CreateBody("nope"), 404, "not_found", "primary");
  ExpectCreateRefused("unknown secondary", CreateBody("alpha", "nope"), 404, "not_found", "secondary");
  ExpectCreateRefused("same host twice", CreateBody("alpha", "alpha"), 400, "invalid_argument", "secondary");
  ExpectCreateRefused("bad address", CreateBody("alpha", "beta", "198.18.0.256"), 400, "invalid_argument",
                      "primary_new_ip");
  ExpectCreateRefused("missing field", json{{"primary", "alpha"}, {"secondary", "beta"}}, 400, "invalid_argument",
                      "primary_new_ip");
  ExpectCreateRefused("unknown field", json{{"primary", "alpha"}, {"secondary", "beta"}, {"x", 1}}, 400,
                      "invalid_argument", "x");
  ExpectCreateRefused("unknown option", CreateBody("alpha", "beta", "198.18.0.10", {{"speed", 1}}), 400,
                      "invalid_argument", "options.speed");
  ExpectCreateRefused("timeout not above interval",
                      CreateBody("alpha", "beta", "198.18.0.10", {{"heartbeat_interval_ms", 5000},
                                                                  {"heartbeat_timeout_ms", 5000}}),
                      400, "invalid_argument", "options.heartbeat_timeout_ms");
  ExpectCreateRefused("interval out of range",
                      CreateBody("alpha", "beta", "198.18.0.10", {{"heartbeat_interval_ms", 5}}), 400,
                      "invalid_argument", "options.heartbeat_interval_ms");
  ExpectCreateRefused("sync rate over 4096", CreateBody("alpha", "beta", "198.18.0.10", {{"sync_rate_mb", 4097}}),
                      400, "invalid_argument", "options.sync_rate_mb");
  ExpectCreateRefused("sync rate 0", CreateBody("alpha", "beta", "198.18.0.10", {{"sync_rate_mb", 0}}), 400,
                      "invalid_argument", "options.sync_rate_mb");
  ExpectCreateRefused("disable_replication not a boolean",
                      CreateBody("alpha", "beta", "198.18.0.10", {{"disable_replication", "yes"}}), 400,
                      "invalid_argument", "options.disable_replication");
  ExpectCreateRefused("bad peer",
                      CreateBody("alpha", "beta", "198.18.0.10", {{"connectivity_peers", {"198.18.0.3", "host"}}}),
                      400, "invalid_argument", "options.connectivity_peers[1]");
  ExpectCreateRefused("duplicate peer",
                      CreateBody("alpha", "beta", "198.18.0.10",
                                 {{"connectivity_peers", {"198.18.0.3", "198.18.0.3"}}}),
                      400, "invalid_argument", "options.connectivity_peers[1]");
  ExpectCreateRefused("crossover without addresses",
                      CreateBody("alpha", "beta", "198.18.0.10", {{"crossover_interface", "eth1"}}), 400,
                      "invalid_argument", "options.crossover_primary_ip");
  ExpectCreateRefused("crossover on the management interface",
                      CreateBody("alpha", "beta", "198.18.0.10",
                                 {{"crossover_interface", "eth0"},
                                  {"crossover_primary_ip", "10.99.0.1"},
                                  {"crossover_secondary_ip", "10.99.0.2"}}),
                      400, "invalid_argument", "options.crossover_interface");
  ExpectCreateRefused("crossover interface missing",
                      CreateBody("alpha", "beta", "198.18.0.10",
                                 {{"crossover_interface", "eth7"},
                                  {"crossover_primary_ip", "10.99.0.1"},
                                  {"crossover_secondary_ip", "10.99.0.2"}}),
                      409, "crossover_interface_missing", "options.crossover_interface");
  ExpectCreateRefused("crossover addresses equal",
                      CreateBody("alpha", "beta", "198.18.0.10",
                                 {{"crossover_interface", "eth1"},
                                  {"crossover_primary_ip", "10.99.0.1"},
                                  {"crossover_secondary_ip", "10.99.0.1"}}),
                      400, "invalid_argument", "options.crossover_secondary_ip");
  ExpectCreateRefused("the console as secondary", CreateBody("alpha", "console-1"), 409, "secondary_is_console",
                      "secondary");
  ExpectCreateRefused("unknown license", [&] {
    json b = CreateBody();
    b["license"] = "nope";
    return b;
  }(), 404, "not_found", "license");
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM clusters"), 0);
}

// ---- R-CL-3: one test per refusal reason ----

TEST_F(ClustersTest, RefusedWhenTheSecondaryIsInACluster) {
  CreateAlpha();
  AddHost("delta", "198.18.0.4:7790", HostFacts("delta", "198.18.0.4"));
  ExpectCreateRefused("secondary in a cluster", CreateBody("delta", "alpha-secondary", "198.18.0.20"), 409,
                      "secondary_in_cluster", "secondary");
  ExpectCreateRefused("primary in a cluster", CreateBody("alpha-primary", "delta", "198.18.0.20"), 409,
                      "primary_in_cluster", "primary");
}

TEST_F(ClustersTest, RefusedWhenVersionsDiffer) {
  json f = HostFacts("beta", "198.18.0.2");
  f["version"] = "0.0.9";
  SetFacts("beta", f);
  ExpectCreateRefused("version", CreateBody(), 409, "version_mismatch", "");
}

TEST_F(ClustersTest, RefusedWhenContentPackagesDiffer) {
  json f = HostFacts("beta", "198.18.0.2");
  f["packages"][0]["version"] = "1.1.0";
  SetFacts("beta", f);
  ExpectCreateRefused("package version", CreateBody(), 409, "packages_mismatch", "");
  f = HostFacts("beta", "198.18.0.2");
  f["packages"].push_back({{"name", "netflow"}, {"version", "1.0"}, {"kind", "protocol"}});
  SetFacts("beta", f);
  ExpectCreateRefused("extra package", CreateBody(), 409, "packages_mismatch", "");
}

TEST_F(ClustersTest, RefusedWhenTheSecondaryCannotReachExternalStorage) {
  json f = HostFacts("alpha", "198.18.0.1");
  f["external_storage"] = true;
  SetFacts("alpha", f);
  ExpectCreateRefused("external storage", CreateBody(), 409, "external_storage_unreachable", "");
  json g = HostFacts("beta", "198.18.0.2");
  g["external_storage"] = true;
  SetFacts("beta", g);
  EXPECT_EQ(Create(CreateBody()).status, 201);
}

TEST_F(ClustersTest, RefusedWhenTheSecondaryStorageIsSmaller) {
  json f = HostFacts("beta", "198.18.0.2");
  f["store"]["bytes_total"] = int64_t{150000000000};
  f["transient"] = {{"dir", "/transient"}, {"bytes_total", int64_t{49999999999}}, {"bytes_free", 1}};
  SetFacts("beta", f);
  ExpectCreateRefused("store + transient < primary store", CreateBody(), 409, "secondary_storage_too_small", "");
  // The transient space counts: one byte more and it fits.
  f["transient"]["bytes_total"] = int64_t{50000000000};
  SetFacts("beta", f);
  ApiResponse r = Create(CreateBody());
  EXPECT_EQ(r.status, 201) << r.body.dump();
}

TEST_F(ClustersTest, RefusedWhenTheHostsAreInDifferentSubnets) {
  json f = HostFacts("beta", "198.18.1.2");
  SetFacts("beta", f);
  ExpectCreateRefused("hosts' subnets", CreateBody(), 409, "subnet_mismatch", "secondary");
  SetFacts("beta", HostFacts("beta", "198.18.0.2"));
  ExpectCreateRefused("new IP outside the VIP's subnet", CreateBody("alpha", "beta", "198.18.1.10"), 409,
                      "subnet_mismatch", "primary_new_ip");
  ExpectCreateRefused("new IP the broadcast address", CreateBody("alpha", "beta", "198.18.0.255"), 409,
                      "subnet_mismatch", "primary_new_ip");
}

TEST_F(ClustersTest, RefusedWhenThePrimaryHasMorePhysicalInterfaces) {
  json f = HostFacts("alpha", "198.18.0.1");
  f["interfaces"].push_back({{"name", "eth2"}, {"addresses", json::array()}, {"physical", true}, {"up", false}});
  SetFacts("alpha", f);
  ExpectCreateRefused("interfaces", CreateBody(), 409, "interfaces_fewer", "");
  // A virtual interface more does not count.
  f["interfaces"].back()["physical"] = false;
  SetFacts("alpha", f);
  EXPECT_EQ(Create(CreateBody()).status, 201);
}

TEST_F(ClustersTest, RefusedWhenManagementInterfacesDiffer) {
  json f = HostFacts("beta", "198.18.0.2");
  f["management_interface"] = "eth1";
  SetFacts("beta", f);
  ExpectCreateRefused("management interface", CreateBody(), 409, "management_interface_mismatch", "");
}

TEST_F(ClustersTest, RefusedWithUndeployedChanges) {
  Sql("INSERT INTO pending_changes (at_ms, what) VALUES (1, 'something')");
  ExpectCreateRefused("undeployed", CreateBody(), 409, "undeployed_changes", "");
}

TEST_F(ClustersTest, RefusedWhenTheNewPrimaryIpIsInUse) {
  ExpectCreateRefused("gamma's address", CreateBody("alpha", "beta", "198.18.0.3"), 409, "address_in_use",
                      "primary_new_ip");
  ExpectCreateRefused("the primary's own address", CreateBody("alpha", "beta", "198.18.0.1"), 409,
                      "address_in_use", "primary_new_ip");
  ExpectCreateRefused("the console's address", CreateBody("alpha", "beta", "198.18.0.100"), 409, "address_in_use",
                      "primary_new_ip");
}

TEST_F(ClustersTest, RefusedForUnpairedHostsAndUnknownFacts) {
  Sql("INSERT INTO hosts (name, role, address, added_at_ms) VALUES ('eps', 'managed', '198.18.0.5', 1)");
  ExpectCreateRefused("not paired", CreateBody("alpha", "eps"), 409, "host_not_paired", "secondary");
  Sql("UPDATE hosts SET facts_json = NULL WHERE name = 'beta'");
  ExpectCreateRefused("no facts", CreateBody(), 409, "facts_incomplete", "secondary");
}

// ---- R-CL-4: warnings ----

TEST_F(ClustersTest, WarnsAboutASlowLink) {
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kAlphaAgent].mbps = 940;  // the primary runs the measurement
  }
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(Codes(r.body["warnings"]), (std::vector<std::string>{"no_license", "link_slow"}));
  EXPECT_EQ(LastAudit()["result"], "ok; warnings: no_license, link_slow");
}

TEST_F(ClustersTest, WarnsAboutALongRoundTrip) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kAlphaAgent].rtt_ms = 2.0;
  }
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(Codes(r.body["warnings"]), std::vector<std::string>{"link_latency"});
  EXPECT_EQ(r.body["link"]["rtt_ms"], 2.0);
}

TEST_F(ClustersTest, WarnsWhenTheLinkCannotBeMeasured) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kBetaAgent].reachable = false;
  }
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(Codes(r.body["warnings"]), std::vector<std::string>{"link_not_measured"});
  EXPECT_TRUE(r.body["link"].is_null());
}

// Storage: 100 GB on a hardware appliance (< 130 GB), 200 GB on a virtual
// one (< 256 GB).
void SmallDisks(json* a, json* b) {
  (*a)["store"]["bytes_total"] = int64_t{100000000000};
  (*b)["store"]["bytes_total"] = int64_t{200000000000};
  (*b)["virtual"] = true;
}

TEST_F(ClustersTest, WarnsAboutStorageBelowTheApplianceMinimums) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  json a = HostFacts("alpha", "198.18.0.1"), b = HostFacts("beta", "198.18.0.2");
  SmallDisks(&a, &b);
  SetFacts("alpha", a);
  SetFacts("beta", b);
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(Codes(r.body["warnings"]),
            (std::vector<std::string>{"storage_below_minimum", "storage_below_minimum"}));
  const std::string text = r.body["warnings"].dump();
  EXPECT_NE(text.find("host alpha: store + transient is 100.0 GB"), std::string::npos) << text;
  EXPECT_NE(text.find("130 GB"), std::string::npos) << text;
  EXPECT_NE(text.find("host beta: store + transient is 200.0 GB"), std::string::npos) << text;
  EXPECT_NE(text.find("256 GB"), std::string::npos) << text;
  EXPECT_EQ(LastAudit()["result"], "ok; warnings: storage_below_minimum, storage_below_minimum");
}

TEST_F(ClustersTest, TheStorageMinimumsAreSettings) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  json a = HostFacts("alpha", "198.18.0.1"), b = HostFacts("beta", "198.18.0.2");
  SmallDisks(&a, &b);
  SetFacts("alpha", a);
  SetFacts("beta", b);
  // Lowered minimums (how tests with small disks run): no warning.
  ASSERT_EQ(Call("PUT", "/api/v1/settings/min_store_gb", admin_, json{{"value", 100}}.dump()).status, 200);
  ASSERT_EQ(Call("PUT", "/api/v1/settings/min_store_gb_virtual", admin_, json{{"value", 200}}.dump()).status, 200);
  EXPECT_EQ(LastAudit()["target"], "setting min_store_gb_virtual");
  ApiResponse settings = Call("GET", "/api/v1/settings", viewer_);
  ASSERT_EQ(settings.status, 200);
  EXPECT_EQ(settings.body["settings"][0]["key"], "min_store_gb");
  EXPECT_EQ(settings.body["settings"][0]["value"], 100);
  EXPECT_EQ(settings.body["settings"][0]["default"], 130);
  EXPECT_EQ(settings.body["settings"][0]["set"], true);
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["warnings"], json::array());
  // null: back to the default.
  ASSERT_EQ(Call("PUT", "/api/v1/settings/min_store_gb", admin_, json{{"value", nullptr}}.dump()).status, 200);
  settings = Call("GET", "/api/v1/settings", viewer_);
  EXPECT_EQ(settings.body["settings"][0]["value"], 130);
  EXPECT_EQ(settings.body["settings"][0]["set"], false);
}

TEST_F(ClustersTest, SettingsAreValidated) {
  ExpectRefused("unknown setting",
                [&] { return Call("PUT", "/api/v1/settings/nope", admin_, json{{"value", 1}}.dump()); }, 404,
                "not_found", "");
  ExpectRefused("out of range",
                [&] { return Call("PUT", "/api/v1/settings/measure_bytes", admin_, json{{"value", 1}}.dump()); },
                400, "invalid_argument", "value");
  ExpectRefused("not an integer",
                [&] { return Call("PUT", "/api/v1/settings/min_store_gb", admin_, json{{"value", "1"}}.dump()); },
                400, "invalid_argument", "value");
  ASSERT_EQ(Call("PUT", "/api/v1/settings/measure_bytes", admin_, json{{"value", 1 << 20}}.dump()).status, 200);
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  ASSERT_EQ(Create(CreateBody()).status, 201);
  std::lock_guard<std::mutex> l(agents_.mu);
  EXPECT_EQ(agents_.calls.back(), std::string("measure-run ") + kAlphaAgent + " -> 198.18.0.2:40000");
  EXPECT_EQ(agents_.calls[agents_.calls.size() - 2],
            std::string("measure-listen ") + kBetaAgent + " " + std::to_string(1 << 20));
}

// ---- editing (R-OP-4) and disconnecting (R-CL-5) ----

TEST_F(ClustersTest, EditOptionsValidatesAndRecordsAPendingChange) {
  CreateAlpha("ha-1");
  ApiResponse r = Call("PATCH", "/api/v1/clusters/alpha", admin_,
                       json{{"options", {{"heartbeat_interval_ms", 5000}, {"sync_rate_mb", 200}}}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["changed"], true);
  EXPECT_EQ(r.body["cluster"]["options"]["heartbeat_interval_ms"], 5000);
  EXPECT_EQ(r.body["cluster"]["options"]["heartbeat_timeout_ms"], 30000);  // kept
  EXPECT_EQ(r.body["cluster"]["options"]["sync_rate_mb"], 200);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE '%sync_rate_mb 100 -> 200%'"), 1);
  // The same values again: nothing to deploy.
  r = Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"options", {{"sync_rate_mb", 200}}}}.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["changed"], false);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 1);

  auto patch = [&](const json& body) { return [&, body] { return Call("PATCH", "/api/v1/clusters/alpha", admin_, body.dump()); }; };
  ExpectRefused("timeout below the new interval", patch({{"options", {{"heartbeat_interval_ms", 40000}}}}), 400,
                "invalid_argument", "options.heartbeat_timeout_ms");
  ExpectRefused("sync rate", patch({{"options", {{"sync_rate_mb", 9999}}}}), 400, "invalid_argument",
                "options.sync_rate_mb");
  ExpectRefused("unknown option", patch({{"options", {{"colour", "red"}}}}), 400, "invalid_argument",
                "options.colour");
  ExpectRefused("options not an object", patch({{"options", 5}}), 400, "invalid_argument", "options");
  ExpectRefused("crossover interface missing on the hosts",
                patch({{"options",
                        {{"crossover_interface", "eth9"},
                         {"crossover_primary_ip", "10.99.0.1"},
                         {"crossover_secondary_ip", "10.99.0.2"}}}}),
                409, "crossover_interface_missing", "options.crossover_interface");
  ExpectRefused("empty body", patch(json::object()), 400, "invalid_argument", "");
  ExpectRefused("unknown cluster",
                [&] { return Call("PATCH", "/api/v1/clusters/nope", admin_, json{{"options", json::object()}}.dump()); },
                404, "not_found", "");
  // Peers back to the default.
  r = Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"options", {{"connectivity_peers", {"198.18.0.9"}}}}}.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["cluster"]["connectivity_peers_effective"], json::array({"198.18.0.9"}));
  r = Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"options", {{"connectivity_peers", nullptr}}}}.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["cluster"]["connectivity_peers_effective"], json::array({"198.18.0.3"}));
}

TEST_F(ClustersTest, DisconnectGivesTheSecondaryItsNameBackAndLeavesThePrimaryUnprotected) {
  CreateAlpha("ha-1");
  ApiResponse r = Call("DELETE", "/api/v1/clusters/alpha/secondary", admin_);
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["host"], "beta");
  const json& c = r.body["cluster"];
  EXPECT_EQ(c["status"], "Unprotected");
  EXPECT_EQ(c["members"].size(), 1u);
  EXPECT_EQ(c["ips"]["primary"], "198.18.0.1");  // the VIP back as the primary's address
  EXPECT_TRUE(c["ips"]["secondary"].is_null());
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'beta' AND cluster_id IS NULL"), 1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'alpha-primary' AND cluster_id IS NOT NULL"), 1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 2);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE 'host beta (was alpha-secondary)%'"), 1);
  EXPECT_EQ(LastAudit()["action"], "DELETE /api/v1/clusters/alpha/secondary");
  ExpectRefused("twice", [&] { return Call("DELETE", "/api/v1/clusters/alpha/secondary", admin_); }, 409,
                "no_secondary", "");
  ExpectRefused("unknown cluster", [&] { return Call("DELETE", "/api/v1/clusters/nope/secondary", admin_); }, 404,
                "not_found", "");
}

// GET /api/v1/status and GET /api/v1/clusters agree on a cluster's members
// (the clusters table), right after its creation, before any deploy: the
// hosts' facts still report no cluster, or the wrong roles.
TEST_F(ClustersTest, StatusShowsTheMembersOfTheClustersTable) {
  CreateAlpha("ha-1");
  // Facts of hosts not yet configured as a cluster: one reports none, the
  // other claims to be a primary.
  json beta = HostFacts("beta", "198.18.0.2");
  beta["cluster"] = json{{"name", "alpha"}, {"role", "primary"}, {"peer", "198.18.0.10"}};
  SetFacts("alpha-secondary", beta);
  Sql("UPDATE hosts SET status = 'Unclustered' WHERE name = 'alpha-primary'");
  Sql("UPDATE hosts SET status = 'Standby' WHERE name = 'alpha-secondary'");

  const json c = Call("GET", "/api/v1/clusters/alpha", viewer_).body["cluster"];
  ASSERT_EQ(c["members"].size(), 2u) << c.dump();
  ApiResponse st = Call("GET", "/api/v1/status", viewer_);
  ASSERT_EQ(st.status, 200) << st.body.dump();
  ASSERT_EQ(st.body["clusters"].size(), 1u) << st.body.dump();
  const json& sc = st.body["clusters"][0];
  EXPECT_EQ(sc["name"], "alpha");
  EXPECT_EQ(sc["vip"], c["ips"]["vip"]);
  EXPECT_EQ(sc["primary"], (json{{"host", c["members"][0]["name"]}, {"status", "Unclustered"}})) << sc.dump();
  EXPECT_EQ(sc["secondary"], (json{{"host", c["members"][1]["name"]}, {"status", "Standby"}})) << sc.dump();
  EXPECT_EQ(c["members"][0]["role"], "primary");
  EXPECT_EQ(c["members"][1]["role"], "secondary");
  // Each member's cluster_role is its role in the table, there and in /hosts.
  std::map<std::string, json> roles;
  for (const json& h : st.body["hosts"]) roles[h["name"]] = h["cluster_role"];
  EXPECT_EQ(roles["alpha-primary"], "primary");
  EXPECT_EQ(roles["alpha-secondary"], "secondary");
  EXPECT_EQ(roles["gamma"], nullptr);
  EXPECT_EQ(Call("GET", "/api/v1/hosts/alpha-secondary", viewer_).body["host"]["cluster_role"], "secondary");

  // After a disconnect the primary stands alone, in both.
  ASSERT_EQ(Call("DELETE", "/api/v1/clusters/alpha/secondary", admin_).status, 200);
  st = Call("GET", "/api/v1/status", viewer_);
  ASSERT_EQ(st.body["clusters"].size(), 1u) << st.body.dump();
  EXPECT_EQ(st.body["clusters"][0]["primary"]["host"], "alpha-primary") << st.body.dump();
  EXPECT_EQ(st.body["clusters"][0]["secondary"], (json{{"host", nullptr}, {"status", "Unknown"}}))
      << st.body.dump();
  // beta, in no cluster of the console now, shows what its facts report.
  EXPECT_EQ(Call("GET", "/api/v1/hosts/beta", viewer_).body["host"]["cluster_role"], "primary");
}

// ---- licenses (R-DEP-4) ----

TEST_F(ClustersTest, LicensesAreVerifiedWhenAdded) {
  const int64_t year = clock_.WallMs() + 365 * kDayMs;
  ApiResponse r = AddLicense(License("ha-1", year));
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["license"]["id"], "ha-1");
  EXPECT_EQ(r.body["license"]["valid"], true);
  EXPECT_EQ(r.body["license"]["issued_to"], "Example Corp");
  EXPECT_EQ(r.body["license"]["key_id"], key_.key_id);
  EXPECT_EQ(LastAudit()["target"], "license ha-1");

  ExpectRefused("not JSON", [&] { return AddLicense("{nope"); }, 400, "license_malformed", "document");
  ExpectRefused("wrong kind", [&] {
    json d = json::parse(License("ha-2", year));
    d["license"]["kind"] = "siem";
    return AddLicense(d.dump());
  }, 400, "license_malformed", "document");
  ExpectRefused("tampered", [&] {
    json d = json::parse(License("ha-2", year));
    d["license"]["issued_to"] = "Someone Else";
    return AddLicense(d.dump());
  }, 400, "license_bad_signature", "document");
  ExpectRefused("signature of another license", [&] {
    json d = json::parse(License("ha-2", year));
    d["signature"] = json::parse(License("ha-3", year))["signature"];
    return AddLicense(d.dump());
  }, 400, "license_bad_signature", "document");
  auto other = GenerateLicenseKey();
  ASSERT_TRUE(other.ok());
  ExpectRefused("unknown key", [&] { return AddLicense(License("ha-2", year, other->private_pem)); }, 400,
                "license_unknown_key", "document");
  ExpectRefused("expired", [&] { return AddLicense(License("ha-2", clock_.WallMs() - 1000)); }, 400,
                "license_expired", "document");
  ExpectRefused("duplicate id", [&] { return AddLicense(License("ha-1", year + kDayMs)); }, 409, "license_duplicate",
                "document");
  // A second vendor key in the directory: its licenses verify too.
  ASSERT_TRUE(os::WriteFileAtomic(dir_ / "keys/second.pem", other->public_pem, 0644).ok());
  EXPECT_EQ(AddLicense(License("ha-2", year, other->private_pem)).status, 201);
  ApiResponse list = Call("GET", "/api/v1/licenses", viewer_);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["licenses"].size(), 2u);
  EXPECT_EQ(list.body["licenses"][1]["id"], "ha-2");
  EXPECT_EQ(Call("GET", "/api/v1/licenses/ha-2", viewer_).body["license"]["valid"], true);
  EXPECT_EQ(Call("GET", "/api/v1/licenses/nope", viewer_).status, 404);
}

TEST_F(ClustersTest, AnAssignedLicenseCannotBeDeleted) {
  CreateAlpha("ha-1");
  ASSERT_EQ(AddLicense(License("ha-2", clock_.WallMs() + kDayMs)).status, 201);
  ExpectRefused("assigned", [&] { return Call("DELETE", "/api/v1/licenses/ha-1", admin_); }, 409, "license_in_use",
                "");
  ExpectRefused("unknown", [&] { return Call("DELETE", "/api/v1/licenses/nope", admin_); }, 404, "not_found", "");
  // Move the cluster to ha-2; then ha-1 is free and can go.
  ApiResponse r = Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"license", "ha-2"}}.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["cluster"]["license"]["id"], "ha-2");
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE '%license ha-2 assigned (was ha-1)%'"), 1);
  ASSERT_EQ(Call("DELETE", "/api/v1/licenses/ha-1", admin_).status, 200);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM licenses"), 1);
}

TEST_F(ClustersTest, ANamedLicenseMustBeFreeAndValid) {
  CreateAlpha("ha-1");
  AddHost("delta", "198.18.0.4:7790", HostFacts("delta", "198.18.0.4"));
  json b = CreateBody("gamma", "delta", "198.18.0.20");
  b["license"] = "ha-1";
  ExpectCreateRefused("license in use", b, 409, "license_in_use", "license");
  ASSERT_EQ(AddLicense(License("ha-short", clock_.WallMs() + 1000)).status, 201);
  clock_.now_ms += 2000;
  b["license"] = "ha-short";
  ExpectCreateRefused("license expired since", b, 400, "license_expired", "license");
}

TEST_F(ClustersTest, AClusterWithoutAValidLicenseNeedsLicense) {
  ASSERT_EQ(AddLicense(License("ha-1", clock_.WallMs() + kDayMs)).status, 201);
  ApiResponse r = Create(CreateBody());
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.body["cluster"]["status"], "Protected");
  // Run time: the license expires.
  clock_.now_ms += kDayMs;
  json c = Call("GET", "/api/v1/clusters/alpha", viewer_).body["cluster"];
  EXPECT_EQ(c["status"], "Needs License");
  EXPECT_NE(c["status_reason"].get<std::string>().find("expired"), std::string::npos) << c.dump();
  EXPECT_EQ(c["license"]["problem"], "expired");
  EXPECT_EQ(Call("GET", "/api/v1/clusters", viewer_).body["clusters"][0]["status"], "Needs License");
  // An expired license cannot be assigned; a new one can, and the cluster is licensed again.
  ExpectRefused("assign expired",
                [&] { return Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"license", "ha-1"}}.dump()); },
                400, "license_expired", "license");
  ASSERT_EQ(AddLicense(License("ha-2", clock_.WallMs() + kDayMs)).status, 201);
  ASSERT_EQ(Call("PATCH", "/api/v1/clusters/alpha", admin_, json{{"license", "ha-2"}}.dump()).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/clusters/alpha", viewer_).body["cluster"]["status"], "Protected");
  // Run time: the vendor key is withdrawn from the console.
  std::filesystem::remove(dir_ / "keys/vendor.pem");
  c = Call("GET", "/api/v1/clusters/alpha", viewer_).body["cluster"];
  EXPECT_EQ(c["status"], "Needs License");
  EXPECT_EQ(c["license"]["problem"], "unknown_key");
}

}  // namespace
}  // namespace tandem::console
