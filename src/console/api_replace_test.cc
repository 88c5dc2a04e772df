// Replacing a cluster member whose hardware is gone (console/api_clusters.cc,
// POST /api/v1/clusters/{name}/replace; docs/CONSOLE.md, "Replacing a
// member"): every refusal with its code and field (nothing changed but the
// audit row), the effect on the hosts, the cluster, the pending changes,
// the history and the audit, and the deploy that follows (the replaced host
// is no longer a target; the new host gets the member's document).
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

#include "console/api.h"
#include "console/api_test_support.h"
#include "console/fake_agent_client.h"
#include "console/license.h"
#include "os/files.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr int64_t kDayMs = 86400000;
constexpr const char* kAlphaAgent = "198.18.0.1:7790";
constexpr const char* kBetaAgent = "198.18.0.2:7790";
constexpr const char* kGammaAgent = "198.18.0.3:7790";

// Facts as an agent reports them: a host of 198.18.0.0/24 that passes every
// R-CL-3 check with its peer.
json HostFacts(const std::string& name, const std::string& address, const std::string& cidr = "") {
  return test_support::ClusterReadyFacts(
      name, address, cidr.empty() ? address + "/24" : cidr,
      json::array({{{"name", "linux-syslog"}, {"version", "1.2.0"}, {"kind", "parser"}}}),
      json::array({{{"name", "eth1"}, {"addresses", json::array()}, {"physical", true}, {"up", true}}}));
}

class ReplaceTest : public test_support::ApiFixture {
 protected:
  ReplaceTest() : ApiFixture("console-replace") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("198.18.0.100"));
    ASSERT_TRUE(os::MakeDirs(dir_ / "keys", 0700).ok());
    auto key = GenerateLicenseKey();
    ASSERT_TRUE(key.ok()) << key.status().message();
    ASSERT_TRUE(os::WriteFileAtomic(dir_ / "keys/vendor.pem", key->public_pem, 0644).ok());
    ApiOptions o = Options();
    o.session_ttl_s = 30 * 86400;
    o.agents = &agents_;
    o.console_name = "console-1";
    o.license_keys_dir = dir_ / "keys";
    ASSERT_NO_FATAL_FAILURE(StartApi(o, "viewer password 1"));
    AddPairedHost(agents_, "alpha", kAlphaAgent, HostFacts("alpha", "198.18.0.1"));
    AddPairedHost(agents_, "beta", kBetaAgent, HostFacts("beta", "198.18.0.2"));
    AddPairedHost(agents_, "gamma", kGammaAgent, HostFacts("gamma", "198.18.0.3"));
    agents_.handlers["PUT /api/v1/agent/config"] = [this](FakeAgentClient::Host& h,
                                                           const json& body) -> Result<json> {
      received_[h.key] = body;
      return json{{"revision", body["revision"]}};
    };
    // The cluster alpha (alpha + beta), licensed, its changes deployed; the
    // members as the poller would show them.
    LicenseFields f;
    f.id = "ha-1";
    f.issued_to = "Example Corp";
    f.expires_at_ms = clock_.WallMs() + 365 * kDayMs;
    auto doc = SignLicense(f, key->private_pem);
    ASSERT_TRUE(doc.ok()) << doc.status().message();
    ASSERT_EQ(Call("POST", "/api/v1/licenses", admin_, json{{"document", *doc}}.dump()).status, 201);
    ApiResponse r = Call("POST", "/api/v1/clusters", admin_,
                         json{{"primary", "alpha"}, {"secondary", "beta"}, {"primary_new_ip", "198.18.0.10"}}.dump());
    ASSERT_EQ(r.status, 201) << r.body.dump();
    Sql("DELETE FROM pending_changes");
    Sql("UPDATE hosts SET status = 'Active' WHERE name = 'alpha-primary'");
    Sql("UPDATE hosts SET status = 'Unreachable' WHERE name = 'alpha-secondary'");
    Sql("UPDATE hosts SET status = 'Unclustered' WHERE name = 'gamma'");
  }

  void Sql(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    ASSERT_TRUE(db_->Exec(sql).ok()) << sql;
  }
  int64_t Rows(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    EXPECT_TRUE(s.ok()) << sql;
    auto r = s->Step();
    EXPECT_TRUE(r.ok() && *r) << sql;
    return s->Int(0);
  }
  std::string Text(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    EXPECT_TRUE(s.ok()) << sql;
    auto r = s->Step();
    EXPECT_TRUE(r.ok() && *r) << sql;
    return r.ok() && *r ? s->Text(0) : "";
  }
  void SetFacts(const std::string& name, const json& facts) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare("UPDATE hosts SET facts_json = ?1 WHERE name = ?2");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->Bind(1, facts.dump()).Bind(2, name).Run().ok());
  }

  // Every row a replace touches (the audit aside).
  std::string Snapshot() {
    std::string out;
    std::lock_guard<std::mutex> l(db_->mu());
    for (const char* sql :
         {"SELECT id || '|' || name || '|' || role || '|' || address || '|' || IFNULL(cluster_id, '-') || '|' || "
          "status FROM hosts ORDER BY id",
          "SELECT id || '|' || name || '|' || vip || '|' || IFNULL(primary_host_id, '-') || '|' || "
          "IFNULL(secondary_host_id, '-') || '|' || IFNULL(primary_ip, '-') || '|' || "
          "IFNULL(secondary_original_name, '-') || '|' || options_json || '|' || IFNULL(license_id, '-') "
          "FROM clusters ORDER BY id",
          "SELECT id || '|' || what FROM pending_changes ORDER BY id",
          "SELECT id || '|' || host || '|' || reason FROM host_history ORDER BY id"}) {
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

  ApiResponse Replace(const json& body, const std::string& cluster = "alpha", const std::string& token = "") {
    return Call("POST", "/api/v1/clusters/" + cluster + "/replace", token.empty() ? admin_ : token, body.dump());
  }

  // A refused replace: status, code, field; nothing changed but one audit
  // row naming the refusal.
  void ExpectRefused(const std::string& what, const json& body, int status, const std::string& code,
                     const std::string& field, const std::string& cluster = "alpha") {
    const std::string before = Snapshot();
    const int64_t audit_before = Rows("SELECT COUNT(*) FROM audit");
    ApiResponse r = Replace(body, cluster);
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

  // gamma's facts changed by `edit` (as its agent would report them).
  void EditGamma(const std::function<void(json&)>& edit) {
    json f = HostFacts("gamma", "198.18.0.3");
    edit(f);
    SetFacts("gamma", f);
  }

  json Sent(char initial) {
    std::lock_guard<std::mutex> l(agents_.mu);
    auto it = received_.find(std::string(64, initial));
    return it == received_.end() ? json() : it->second;
  }

  FakeAgentClient agents_;
  std::map<std::string, json> received_;  // by agent key; guarded by agents_.mu
};

TEST_F(ReplaceTest, TheNewHostTakesTheSecondarysPlaceAndTheDeadOneIsRemoved) {
  const int64_t beta_id = Rows("SELECT id FROM hosts WHERE name = 'alpha-secondary'");
  const int64_t gamma_id = Rows("SELECT id FROM hosts WHERE name = 'gamma'");
  // A history row of the dead host: kept when its host row goes.
  Sql("INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (1, 'status', 'alpha-secondary', 'alpha', 'Standby', 'Unreachable', 'the agent does not answer')");
  const int64_t history_before = Rows("SELECT COUNT(*) FROM host_history");

  ApiResponse r = Replace(json{{"role", "secondary"}, {"host", "gamma"}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  // The answer is the cluster as GET shows it.
  EXPECT_EQ(r.body, Call("GET", "/api/v1/clusters/alpha", viewer_).body);
  const json& c = r.body["cluster"];
  EXPECT_EQ(c["status"], "Protected");
  ASSERT_EQ(c["members"].size(), 2u) << c.dump();
  EXPECT_EQ(c["members"][1], (json{{"role", "secondary"},
                                   {"name", "alpha-secondary"},
                                   {"original_name", "gamma"},
                                   {"address", "198.18.0.3"},
                                   {"status", "Unclustered"},
                                   {"status_reason", nullptr}}));
  EXPECT_EQ(c["members"][0]["name"], "alpha-primary");
  EXPECT_EQ(c["ips"]["vip"], "198.18.0.1");
  EXPECT_EQ(c["ips"]["primary"], "198.18.0.10");
  EXPECT_EQ(c["ips"]["secondary"], "198.18.0.3");

  // The dead host's row is gone; gamma's row is the member now.
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE id = " + std::to_string(beta_id)), 0);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'gamma'"), 0);
  EXPECT_EQ(Rows("SELECT id FROM hosts WHERE name = 'alpha-secondary'"), gamma_id);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'alpha-secondary' AND cluster_id = "
                 "(SELECT id FROM clusters WHERE name = 'alpha')"),
            1);
  EXPECT_EQ(Rows("SELECT secondary_host_id FROM clusters WHERE name = 'alpha'"), gamma_id);
  EXPECT_EQ(Text("SELECT secondary_original_name FROM clusters WHERE name = 'alpha'"), "gamma");
  EXPECT_EQ(Text("SELECT primary_ip FROM clusters WHERE name = 'alpha'"), "198.18.0.10");

  // Two pending changes, a history row (the old ones kept), the audit row.
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 2);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE "
                 "'cluster alpha: the secondary alpha-secondary is replaced by host gamma at 198.18.0.3%'"),
            1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE "
                 "'host alpha-secondary (was gamma): joins cluster alpha as secondary%'"),
            1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM host_history"), history_before + 1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM host_history WHERE reason = 'the agent does not answer'"), 1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM host_history WHERE kind = 'action' AND host = 'alpha-secondary' AND "
                 "cluster = 'alpha' AND reason LIKE 'replace requested by admin: host gamma replaces the "
                 "secondary alpha-secondary%'"),
            1);
  const json audit = LastAudit();
  EXPECT_EQ(audit["action"], "POST /api/v1/clusters/alpha/replace");
  EXPECT_EQ(audit["target"], "cluster alpha");
  EXPECT_EQ(audit["status"], 200);
  EXPECT_EQ(audit["user"], "admin");

  // Deploy Changes: the dead host is no target; gamma gets the secondary's
  // document, the primary the new secondary IP.
  {
    std::lock_guard<std::mutex> l(agents_.mu);
    agents_.hosts[kBetaAgent].reachable = false;
  }
  ApiResponse d = Call("POST", "/api/v1/deploy", admin_, json::object().dump());
  ASSERT_EQ(d.status, 200) << d.body.dump();
  ASSERT_EQ(d.body["hosts"].size(), 2u) << d.body.dump();  // alpha-primary, alpha-secondary (gamma)
  EXPECT_TRUE(Sent('b').is_null());
  const json g = Sent('g');
  ASSERT_TRUE(g.is_object()) << "gamma's agent got nothing";
  EXPECT_EQ(g["document"]["host"], (json{{"name", "alpha-secondary"}, {"role", "secondary"}}));
  EXPECT_EQ(g["document"]["cluster"]["secondary_ip"], "198.18.0.3");
  EXPECT_EQ(Sent('a')["document"]["cluster"], g["document"]["cluster"]);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes"), 0);
}

TEST_F(ReplaceTest, TheNewHostTakesThePrimarysPlaceWithItsAddressAsThePrimaryIp) {
  Sql("UPDATE hosts SET status = 'Unreachable' WHERE name = 'alpha-primary'");
  Sql("UPDATE hosts SET status = 'Active' WHERE name = 'alpha-secondary'");
  const int64_t alpha_id = Rows("SELECT id FROM hosts WHERE name = 'alpha-primary'");
  const int64_t gamma_id = Rows("SELECT id FROM hosts WHERE name = 'gamma'");
  ApiResponse r = Replace(json{{"role", "primary"}, {"host", "gamma"}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  const json& c = r.body["cluster"];
  EXPECT_EQ(c["name"], "alpha");  // a cluster keeps its name
  ASSERT_EQ(c["members"].size(), 2u) << c.dump();
  EXPECT_EQ(c["members"][0]["name"], "alpha-primary");
  EXPECT_EQ(c["members"][0]["address"], "198.18.0.3");
  EXPECT_EQ(c["members"][1]["name"], "alpha-secondary");
  EXPECT_EQ(c["members"][1]["original_name"], "beta");
  EXPECT_EQ(c["ips"]["vip"], "198.18.0.1");
  EXPECT_EQ(c["ips"]["primary"], "198.18.0.3");
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE id = " + std::to_string(alpha_id)), 0);
  EXPECT_EQ(Rows("SELECT id FROM hosts WHERE name = 'alpha-primary'"), gamma_id);
  EXPECT_EQ(Rows("SELECT primary_host_id FROM clusters WHERE name = 'alpha'"), gamma_id);
  EXPECT_EQ(Text("SELECT primary_ip FROM clusters WHERE name = 'alpha'"), "198.18.0.3");
  EXPECT_EQ(Text("SELECT secondary_original_name FROM clusters WHERE name = 'alpha'"), "beta");
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE "
                 "'%the primary''s IP becomes 198.18.0.3 (was 198.18.0.10)%'"),
            1);
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM pending_changes WHERE what LIKE "
                 "'host alpha-primary (was gamma): joins cluster alpha as primary%'"),
            1);
}

TEST_F(ReplaceTest, BadRequestsAndUnknownNamesAreRefused) {
  ExpectRefused("unknown cluster", json{{"role", "secondary"}, {"host", "gamma"}}, 404, "not_found", "", "nope");
  ExpectRefused("no role", json{{"host", "gamma"}}, 400, "invalid_argument", "role");
  ExpectRefused("role not a string", json{{"role", 2}, {"host", "gamma"}}, 400, "invalid_argument", "role");
  ExpectRefused("unknown role", json{{"role", "tertiary"}, {"host", "gamma"}}, 400, "invalid_argument", "role");
  ExpectRefused("no host", json{{"role", "secondary"}}, 400, "invalid_argument", "host");
  ExpectRefused("bad host name", json{{"role", "secondary"}, {"host", "a b"}}, 400, "invalid_argument", "host");
  ExpectRefused("unknown field", json{{"role", "secondary"}, {"host", "gamma"}, {"force", true}}, 400,
                "invalid_argument", "force");
  ExpectRefused("unknown host", json{{"role", "secondary"}, {"host", "delta"}}, 404, "not_found", "host");
  // A viewer may not.
  ApiResponse v = Replace(json{{"role", "secondary"}, {"host", "gamma"}}, "alpha", viewer_);
  EXPECT_EQ(v.status, 403) << v.body.dump();
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM hosts WHERE name = 'gamma' AND cluster_id IS NULL"), 1);
}

TEST_F(ReplaceTest, TheNewHostMustBeAPairedUnclusteredManagedHost) {
  ExpectRefused("the console", json{{"role", "secondary"}, {"host", "console-1"}}, 409, "host_is_console", "host");
  ExpectRefused("a member of this cluster", json{{"role", "secondary"}, {"host", "alpha-primary"}}, 409,
                "host_in_cluster", "host");
  ExpectRefused("the member itself", json{{"role", "secondary"}, {"host", "alpha-secondary"}}, 409,
                "host_in_cluster", "host");
  Sql("INSERT INTO hosts (name, role, address, added_at_ms) VALUES ('delta', 'managed', '198.18.0.4', 1)");
  ExpectRefused("not paired", json{{"role", "secondary"}, {"host", "delta"}}, 409, "host_not_paired", "host");
  Sql("UPDATE hosts SET facts_json = NULL WHERE name = 'gamma'");
  ExpectRefused("no facts", json{{"role", "secondary"}, {"host", "gamma"}}, 409, "facts_incomplete", "host");
}

TEST_F(ReplaceTest, TheActiveMemberOrAMissingSecondaryCannotBeReplaced) {
  ExpectRefused("the active primary", json{{"role", "primary"}, {"host", "gamma"}}, 409, "member_active", "role");
  Sql("UPDATE hosts SET status = 'Active' WHERE name = 'alpha-secondary'");
  Sql("UPDATE hosts SET status = 'Standby' WHERE name = 'alpha-primary'");
  ExpectRefused("the active secondary", json{{"role", "secondary"}, {"host", "gamma"}}, 409, "member_active",
                "role");
  ASSERT_EQ(Call("DELETE", "/api/v1/clusters/alpha/secondary", admin_).status, 200);
  ExpectRefused("disconnected", json{{"role", "secondary"}, {"host", "gamma"}}, 409, "no_secondary", "role");
}

// The checks of creation, between the new host and the remaining member.
TEST_F(ReplaceTest, TheNewHostMustPassTheCreationChecksAgainstTheRemainingMember) {
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* code;
    const char* field;
  };
  const Case cases[] = {
      {"version", [](json& f) { f["version"] = "0.2.0"; }, "version_mismatch", ""},
      {"packages", [](json& f) { f["packages"][0]["version"] = "1.3.0"; }, "packages_mismatch", ""},
      {"storage", [](json& f) { f["store"]["bytes_total"] = int64_t{1000}; }, "secondary_storage_too_small", ""},
      {"subnet",
       [](json& f) {
         f["address"] = "198.18.1.3";
         f["interfaces"][0]["addresses"] = json::array({"198.18.1.3/24"});
       },
       "subnet_mismatch", "host"},
      {"prefix", [](json& f) { f["interfaces"][0]["addresses"] = json::array({"198.18.0.3/25"}); },
       "subnet_mismatch", "host"},
      {"address on no interface", [](json& f) { f["interfaces"][0]["addresses"] = json::array(); },
       "facts_incomplete", "host"},
      {"interfaces", [](json& f) { f["interfaces"][1]["physical"] = false; }, "interfaces_fewer", ""},
      {"management interface", [](json& f) { f["management_interface"] = "eth1"; },
       "management_interface_mismatch", ""},
  };
  for (const Case& c : cases) {
    EditGamma(c.edit);
    ExpectRefused(c.what, json{{"role", "secondary"}, {"host", "gamma"}}, 409, c.code, c.field);
  }
  // As a primary replacement the new host is the primary of the checks: a
  // store larger than the secondary's store + transient is refused.
  Sql("UPDATE hosts SET status = 'Unreachable' WHERE name = 'alpha-primary'");
  EditGamma([](json& f) { f["store"]["bytes_total"] = int64_t{900000000000}; });
  ExpectRefused("primary storage", json{{"role", "primary"}, {"host", "gamma"}}, 409, "secondary_storage_too_small",
                "");
  // Back to facts that pass: accepted.
  EditGamma([](json&) {});
  EXPECT_EQ(Replace(json{{"role", "secondary"}, {"host", "gamma"}}).status, 200);
}

TEST_F(ReplaceTest, APrimarysAddressMustBeInTheVipsSubnetAndNotTheVip) {
  Sql("UPDATE hosts SET status = 'Unreachable' WHERE name = 'alpha-primary'");
  ASSERT_EQ(Call("DELETE", "/api/v1/clusters/alpha/secondary", admin_).status, 200);
  Sql("DELETE FROM pending_changes");
  // No secondary to compare with: only the VIP's subnet counts.
  EditGamma([](json& f) {
    f["address"] = "198.18.1.3";
    f["interfaces"][0]["addresses"] = json::array({"198.18.1.3/24"});
  });
  Sql("UPDATE hosts SET address = '198.18.1.3' WHERE name = 'gamma'");
  ExpectRefused("outside the VIP's subnet", json{{"role", "primary"}, {"host", "gamma"}}, 409, "subnet_mismatch",
                "host");
  EditGamma([](json& f) {
    f["address"] = "198.18.0.1";
    f["interfaces"][0]["addresses"] = json::array({"198.18.0.1/24"});
  });
  Sql("UPDATE hosts SET address = '198.18.0.1' WHERE name = 'gamma'");
  ExpectRefused("the VIP", json{{"role", "primary"}, {"host", "gamma"}}, 409, "address_in_use", "host");
  EditGamma([](json&) {});
  Sql("UPDATE hosts SET address = '198.18.0.3' WHERE name = 'gamma'");
  ApiResponse r = Replace(json{{"role", "primary"}, {"host", "gamma"}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["cluster"]["status"], "Unprotected");
  EXPECT_EQ(r.body["cluster"]["ips"]["primary"], "198.18.0.3");
}

TEST_F(ReplaceTest, TheNewHostNeedsTheClustersCrossoverInterface) {
  ApiResponse e = Call("PATCH", "/api/v1/clusters/alpha", admin_,
                       json{{"options",
                             {{"crossover_interface", "eth1"},
                              {"crossover_primary_ip", "10.99.0.1"},
                              {"crossover_secondary_ip", "10.99.0.2"}}}}
                           .dump());
  ASSERT_EQ(e.status, 200) << e.body.dump();
  Sql("DELETE FROM pending_changes");
  EditGamma([](json& f) { f["interfaces"][1]["name"] = "eth2"; });
  ExpectRefused("no eth1", json{{"role", "secondary"}, {"host", "gamma"}}, 409, "crossover_interface_missing",
                "host");
}

}  // namespace
}  // namespace tandem::console
