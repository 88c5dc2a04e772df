// The console on a lab deployment of real processes (docs/CONSOLE.md, "In
// the lab"): `tandem lab up --console --managed 2` runs the HA cluster (the
// console on its primary) and two agent-only managed hosts. Over real HTTPS
// with the console's certificate pinned: every host is paired with its
// pairing file, the poller shows the hosts' real status, the R-CL-3 checks
// refuse from the hosts' real facts (each refusal changes nothing), a
// cluster is created from the two managed hosts with a license made by
// `tandem license`, edited, backed up; then the console's database is
// wiped and the backup restores the same cluster.
#include <gtest/gtest.h>

#include "api/httplib.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "ha/guidance.h"
#include "lab/lab.h"
#include "os/files.h"
#include "console_fixture.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

constexpr const char* kPassphrase = "lab backup passphrase";

class ConsoleLabTest : public ConsoleLabFixture {
 protected:
  ConsoleLabTest() : ConsoleLabFixture("tandem-console-lab") {}

  Answer LoginAnswer(const std::string& password, bool quiet = false) {
    return CallAs("POST", "/api/v1/sessions", "", json{{"user", "admin"}, {"password", password}}, quiet);
  }
  std::string Login(const std::string& password) {
    Answer a = LoginAnswer(password);
    EXPECT_EQ(a.status, 201) << a.body.dump();
    return a.body.value("token", "");
  }

  // The configuration the API shows, without what the poller changes.
  json Snapshot() {
    json hosts = CallAs("GET", "/api/v1/hosts", token_).body["hosts"];
    for (json& h : hosts) {
      for (const char* k : {"status", "status_reason", "facts_at", "facts", "cluster_role"}) h.erase(k);
    }
    json clusters = CallAs("GET", "/api/v1/clusters", token_).body["clusters"];
    for (json& c : clusters) {
      for (json& m : c["members"]) {
        m.erase("status");
        m.erase("status_reason");
      }
    }
    return json{{"hosts", hosts}, {"clusters", clusters},
                {"licenses", CallAs("GET", "/api/v1/licenses", token_).body["licenses"]}};
  }

  // A call that must be refused with `status` / `code` (and `field` when
  // given), changing nothing the API shows.
  void ExpectRefused(const std::string& what, const std::string& method, const std::string& path,
                     const json& body, int status, const std::string& code,
                     const std::string& field = "") {
    SCOPED_TRACE(what);
    const json before = Snapshot();
    Answer a = CallAs(method, path, token_, body);
    EXPECT_EQ(a.status, status) << a.body.dump();
    EXPECT_EQ(a.body["error"]["code"], code) << a.body.dump();
    if (!field.empty()) {
      EXPECT_EQ(a.body["error"]["field"], field) << a.body.dump();
    }
    EXPECT_EQ(Snapshot(), before) << "a refused call changed the deployment";
  }

  json Host(const std::string& name) { return CallAs("GET", "/api/v1/hosts/" + name, token_).body["host"]; }

  // Waits (bounded) until the poller has read facts of `name` for which
  // `pred` holds.
  bool WaitForFacts(const std::string& name, const std::function<bool(const json&)>& pred) {
    return WaitFor(60000, [&] {
      json h = Host(name);
      return h.is_object() && h["facts"].is_object() && pred(h);
    });
  }
};

TEST_F(ConsoleLabTest, PairCreateEditBackupWipeRestore) {
  lab::LabOptions o = ConsoleLabOptions();
  o.managed = 3;
  ASSERT_TRUE(UpLab(o));
  ASSERT_EQ(lab_["managed_hosts"].size(), 3u);
  json all_hosts = lab_["hosts"];
  for (const json& m : lab_["managed_hosts"]) all_hosts.push_back(m);
  for (const json& h : all_hosts) {
    // The pairing string is in a 0600 file, never in the JSON.
    const std::string file = h["pairing_file"];
    EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto ps = os::ReadFile(file, 1024);
    ASSERT_TRUE(ps.ok());
    EXPECT_EQ(lab_.dump().find(ps->substr(4, 64)), std::string::npos);
  }
  const std::string old_password = ReadPassword();
  token_ = Login(old_password);
  ASSERT_FALSE(token_.empty());

  // ---- pairing every host ----
  const json& primary = lab_["hosts"][0];
  const json& secondary = lab_["hosts"][1];
  const json& m1 = lab_["managed_hosts"][0];
  const json& m2 = lab_["managed_hosts"][1];
  const json& m3 = lab_["managed_hosts"][2];
  // The primary runs the console, which recorded itself as lab-primary: its
  // agent takes that name from its facts, and the name is taken. The agent
  // has used its token by then (run `tandemd unpair`, pair again with a name).
  {
    Answer a = Pair(primary);
    EXPECT_EQ(a.status, 409) << a.body.dump();
    EXPECT_EQ(a.body["error"]["field"], "name") << a.body.dump();
    ASSERT_TRUE(FreshPairingString(primary));
  }
  Answer pp = Pair(primary, "lab-primary-agent");
  ASSERT_EQ(pp.status, 201) << pp.body.dump();
  for (const json* h : {&secondary, &m1, &m2, &m3}) {
    Answer a = Pair(*h);
    ASSERT_EQ(a.status, 201) << a.body.dump();
    EXPECT_EQ(a.body["host"]["name"], (*h)["name"]);
    EXPECT_EQ(a.body["host"]["agent_address"], (*h)["agent"]["address"]);
    EXPECT_EQ(a.body["host"]["address"], (*h)["address"]);
  }
  // A used pairing string pairs no more: the agent refuses it.
  ExpectRefused("pairing twice", "POST", "/api/v1/hosts",
                json{{"address", m1["agent"]["address"]},
                     {"pairing_token", [&] {
                        auto s = *os::ReadFile(m1["pairing_file"].get<std::string>(), 1024);
                        return s.substr(0, s.size() - 1);
                      }()}},
                409, "conflict", "address");

  // The poller's facts: the version, and the HA status of the lab's hosts.
  const json hosts = CallAs("GET", "/api/v1/hosts", token_).body["hosts"];
  ASSERT_EQ(hosts.size(), 6u) << hosts.dump();  // the console's own row and the five agents
  std::string version;
  for (const json& h : hosts) {
    if (h["role"] == "console") continue;
    ASSERT_TRUE(h["facts"].is_object()) << h.dump();
    if (version.empty()) version = h["facts"]["version"];
    EXPECT_EQ(h["facts"]["version"], version) << h.dump();
  }
  EXPECT_FALSE(version.empty());
  EXPECT_TRUE(WaitFor(60000, [&] {
    json st = CallAs("GET", "/api/v1/status", token_).body;
    std::map<std::string, std::string> status;
    for (const json& h : st["hosts"]) status[h["name"]] = h["status"];
    return status["lab-primary-agent"] == "Active" && status["lab-secondary"] == "Standby" &&
           status["lab-managed-1"] == "Unclustered" && status["lab-managed-2"] == "Unclustered" &&
           status["lab-managed-3"] == "Unclustered";
  })) << CallAs("GET", "/api/v1/status", token_).body.dump();
  {
    json st = CallAs("GET", "/api/v1/status", token_).body;
    // The lab's HA pair reports its roles (its cluster is not the console's).
    for (const json& h : st["hosts"]) {
      if (h["name"] == "lab-primary-agent") {
        EXPECT_EQ(h["cluster_role"], "primary") << h.dump();
      }
      if (h["name"] == "lab-secondary") {
        EXPECT_EQ(h["cluster_role"], "secondary") << h.dump();
      }
      if (h["role"] == "managed" && h["name"].get<std::string>().starts_with("lab-managed")) {
        EXPECT_TRUE(h["cluster_role"].is_null()) << h.dump();
      }
    }
    EXPECT_TRUE(st["clusters"].empty()) << st.dump();
  }

  // ---- licenses (`tandem license keygen|sign`) ----
  const std::string keys_dir = lab_["api"]["license_keys_dir"];
  for (const std::string& d : {keys_dir, dir_ + "/keys", dir_ + "/other"}) {
    ASSERT_TRUE(os::MakeDirs(d, 0700).ok());
  }
  auto keygen = RunCommand({BinDir() + "/tandem", "license", "keygen", "--dir", dir_ + "/keys",
                            "--name", "lab"});
  ASSERT_EQ(keygen.exit_code, 0) << keygen.output;
  std::filesystem::copy_file(dir_ + "/keys/lab.pem", keys_dir + "/lab.pem");
  auto other = RunCommand({BinDir() + "/tandem", "license", "keygen", "--dir", dir_ + "/other",
                           "--name", "other"});
  ASSERT_EQ(other.exit_code, 0) << other.output;
  auto sign = [&](const std::string& key, const std::string& id, const std::string& expires) {
    auto r = RunCommand({BinDir() + "/tandem", "license", "sign", "--key", key, "--id", id,
                         "--issued-to", "Lab Corp", "--expires", expires});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  };
  const std::string good = sign(dir_ + "/keys/lab.key", "ha-lab-001", "2099-12-31T23:59:59Z");
  ExpectRefused("unknown key", "POST", "/api/v1/licenses",
                json{{"document", sign(dir_ + "/other/other.key", "ha-lab-002", "2099-12-31T23:59:59Z")}},
                400, "license_unknown_key", "document");
  ExpectRefused("expired", "POST", "/api/v1/licenses",
                json{{"document", sign(dir_ + "/keys/lab.key", "ha-lab-003", "2020-01-01T00:00:00Z")}},
                400, "license_expired", "document");
  {
    std::string forged = good;
    size_t at = forged.find("Lab Corp");
    ASSERT_NE(at, std::string::npos);
    forged.replace(at, 8, "Lab Corq");
    ExpectRefused("bad signature", "POST", "/api/v1/licenses", json{{"document", forged}}, 400,
                  "license_bad_signature", "document");
  }
  ExpectRefused("malformed", "POST", "/api/v1/licenses", json{{"document", "not a license"}}, 400,
                "license_malformed", "document");
  Answer lic = CallAs("POST", "/api/v1/licenses", token_, json{{"document", good}});
  ASSERT_EQ(lic.status, 201) << lic.body.dump();
  EXPECT_EQ(lic.body["license"]["valid"], true);
  ExpectRefused("duplicate", "POST", "/api/v1/licenses", json{{"document", good}}, 409,
                "license_duplicate", "document");

  // ---- creating a cluster: refusals from the hosts' real facts ----
  const std::string subnet = primary["address"].get<std::string>().substr(
      0, primary["address"].get<std::string>().rfind('.'));
  const std::string new_ip = subnet + ".30";  // in 127.0.0.0/8, used by nothing
  auto create = [&](const std::string& p, const std::string& s, const std::string& ip) {
    return json{{"primary", p}, {"secondary", s}, {"primary_new_ip", ip}, {"license", "ha-lab-001"}};
  };
  const std::string clusters = "/api/v1/clusters";
  ExpectRefused("no such host", "POST", clusters, create("nope", "lab-managed-2", new_ip), 404,
                "not_found", "primary");
  ExpectRefused("same host", "POST", clusters, create("lab-managed-1", "lab-managed-1", new_ip), 400,
                "invalid_argument", "secondary");
  ExpectRefused("console as secondary", "POST", clusters,
                create("lab-managed-1", "lab-primary", new_ip), 409, "secondary_is_console",
                "secondary");
  ExpectRefused("console row unpaired", "POST", clusters,
                create("lab-primary", "lab-managed-2", new_ip), 409, "host_not_paired", "primary");
  // The lab's cluster hosts listen on 127.x.y.1/.2, which no interface holds.
  ExpectRefused("address on no interface", "POST", clusters,
                create("lab-secondary", "lab-managed-2", new_ip), 409, "facts_incomplete", "primary");
  ExpectRefused("new IP in another subnet", "POST", clusters,
                create("lab-managed-1", "lab-managed-2", "198.18.0.50"), 409, "subnet_mismatch",
                "primary_new_ip");
  ExpectRefused("new IP the network address", "POST", clusters,
                create("lab-managed-1", "lab-managed-2", "127.0.0.0"), 409, "subnet_mismatch",
                "primary_new_ip");
  ExpectRefused("new IP a host's", "POST", clusters,
                create("lab-managed-1", "lab-managed-2", secondary["address"]), 409, "address_in_use",
                "primary_new_ip");
  ExpectRefused("new IP on an interface", "POST", clusters,
                create("lab-managed-1", "lab-managed-2", "127.0.0.1"), 409, "address_in_use",
                "primary_new_ip");
  {
    json body = create("lab-managed-1", "lab-managed-2", new_ip);
    body["options"] = {{"crossover_interface", "nosuch0"}, {"crossover_primary_ip", "10.99.0.1"},
                       {"crossover_secondary_ip", "10.99.0.2"}};
    ExpectRefused("no such crossover interface", "POST", clusters, body, 409,
                  "crossover_interface_missing", "options.crossover_interface");
  }
  // A content package on one host only.
  const std::string manifest = m2["packages_dir"].get<std::string>() + "/lab-parser.json";
  ASSERT_TRUE(os::WriteFileAtomic(
                  manifest, json{{"name", "lab-parser"}, {"version", "1.2"}, {"kind", "parser"}}.dump(), 0644)
                  .ok());
  ASSERT_TRUE(WaitForFacts("lab-managed-2", [](const json& h) {
    return h["facts"]["packages"].size() == 1;
  })) << Host("lab-managed-2").dump();
  ExpectRefused("packages differ", "POST", clusters, create("lab-managed-1", "lab-managed-2", new_ip),
                409, "packages_mismatch");
  std::filesystem::remove(manifest);
  ASSERT_TRUE(WaitForFacts("lab-managed-2", [](const json& h) {
    return h["facts"]["packages"].empty();
  })) << Host("lab-managed-2").dump();

  // ---- created ----
  const json f1 = Host("lab-managed-1")["facts"], f2 = Host("lab-managed-2")["facts"];
  Answer made = CallAs("POST", clusters, token_, create("lab-managed-1", "lab-managed-2", new_ip));
  ASSERT_EQ(made.status, 201) << made.body.dump();
  const json cluster = made.body["cluster"];
  EXPECT_EQ(cluster["name"], "lab-managed-1");
  EXPECT_EQ(cluster["status"], "Protected") << cluster.dump();
  EXPECT_EQ(cluster["ips"]["vip"], m1["address"]);  // the primary's old address
  EXPECT_EQ(cluster["ips"]["primary"], new_ip);
  EXPECT_EQ(cluster["license"]["id"], "ha-lab-001");
  ASSERT_EQ(cluster["members"].size(), 2u) << cluster.dump();
  std::map<std::string, json> members;
  for (const json& m : cluster["members"]) members[m["role"]] = m;
  EXPECT_EQ(members["primary"]["name"], "lab-managed-1-primary");
  EXPECT_EQ(members["primary"]["original_name"], "lab-managed-1");
  EXPECT_EQ(members["secondary"]["name"], "lab-managed-1-secondary");
  EXPECT_EQ(members["secondary"]["original_name"], "lab-managed-2");
  // The link was measured between the two real agents; its warnings follow
  // from what was measured.
  const json link = made.body["link"];
  ASSERT_TRUE(link.is_object()) << made.body.dump();
  EXPECT_EQ(link["bytes"], 16 * 1024 * 1024);
  std::set<std::string> warnings;
  int storage_warnings = 0;
  for (const json& w : made.body["warnings"]) {
    warnings.insert(w["code"].get<std::string>());
    storage_warnings += w["code"] == "storage_below_minimum";
  }
  EXPECT_EQ(warnings.contains("link_slow"), link["mbps"].get<double>() < 1000) << made.body.dump();
  EXPECT_EQ(warnings.contains("link_latency"), link["rtt_ms"].get<double>() >= 2) << made.body.dump();
  EXPECT_FALSE(warnings.contains("link_not_measured")) << made.body.dump();
  EXPECT_FALSE(warnings.contains("no_license")) << made.body.dump();
  // The default minimum: 130 GB of store + transient per host.
  const int64_t min_bytes = int64_t{130} * 1000 * 1000 * 1000;
  int expected_storage = 0;
  for (const json* f : {&f1, &f2}) {
    ASSERT_TRUE((*f)["store"].is_object()) << f->dump();
    expected_storage += (*f)["store"]["bytes_total"].get<int64_t>() < min_bytes;
  }
  EXPECT_EQ(storage_warnings, expected_storage) << made.body.dump();

  // The deployment status: the new cluster with its table-4 advice.
  {
    json st = CallAs("GET", "/api/v1/status", token_).body;
    ASSERT_EQ(st["clusters"].size(), 1u) << st.dump();
    const json& c = st["clusters"][0];
    EXPECT_EQ(c["name"], "lab-managed-1");
    EXPECT_EQ(c["vip"], m1["address"]);
    // Agent-only hosts report no cluster role yet (nothing is deployed).
    EXPECT_EQ(c["possible_action"],
              ha::PossibleAction(ha::HostStatus::kUnknown, ha::HostStatus::kUnknown));
  }
  // The hosts are in a cluster: a second cluster from them, or any cluster
  // while changes are undeployed, is refused.
  ExpectRefused("primary in a cluster", "POST", clusters,
                create("lab-managed-1-primary", "lab-secondary", subnet + ".31"), 409,
                "primary_in_cluster", "primary");
  ExpectRefused("secondary in a cluster", "POST", clusters,
                create("lab-secondary", "lab-managed-1-secondary", subnet + ".31"), 409,
                "secondary_in_cluster", "secondary");
  ExpectRefused("license held", "DELETE", "/api/v1/licenses/ha-lab-001", nullptr, 409,
                "license_in_use");

  // ---- editing ----
  const std::string path = "/api/v1/clusters/lab-managed-1";
  ExpectRefused("timeout not above interval", "PATCH", path,
                json{{"options", {{"heartbeat_interval_ms", 5000}, {"heartbeat_timeout_ms", 5000}}}},
                400, "invalid_argument");
  Answer patched = CallAs("PATCH", path, token_,
                        json{{"options", {{"sync_rate_mb", 250}, {"heartbeat_interval_ms", 2000}}}});
  ASSERT_EQ(patched.status, 200) << patched.body.dump();
  EXPECT_EQ(patched.body["changed"], true);
  EXPECT_EQ(patched.body["cluster"]["options"]["sync_rate_mb"], 250);
  EXPECT_EQ(patched.body["cluster"]["options"]["heartbeat_interval_ms"], 2000);
  Answer same = CallAs("PATCH", path, token_, json{{"options", {{"sync_rate_mb", 250}}}});
  ASSERT_EQ(same.status, 200) << same.body.dump();
  EXPECT_EQ(same.body["changed"], false);

  // ---- backup, wipe, restore ----
  const json before = CallAs("GET", path, token_).body["cluster"];
  const json snapshot = Snapshot();
  Answer backup = CallAs("POST", "/api/v1/backup", token_, json{{"passphrase", kPassphrase}});
  ASSERT_EQ(backup.status, 200) << backup.body.dump();
  EXPECT_EQ(backup.body["format"], "tandem-console-backup");
  const std::string old_token = token_;

  // Wipe: stop the primary's tandemd (the console runs there), remove the
  // database, start it again: a fresh console with a new first admin.
  const int pid = lab::Describe(lab_["dir"]).value()["hosts"][0]["pid"];
  ASSERT_GT(pid, 0);
  kill(pid, SIGTERM);
  ASSERT_TRUE(WaitFor(20000, [&] { return waitpid(pid, nullptr, WNOHANG) == pid || kill(pid, 0) != 0; }));
  const std::string console_dir =
      std::filesystem::path(lab_["api"]["password_file"].get<std::string>()).parent_path();
  for (const char* f : {"console.db", "console.db-wal", "console.db-shm", "admin.password"}) {
    std::filesystem::remove(console_dir + "/" + f);
  }
  auto restarted = lab::StartHost(lab_["dir"], "primary");
  ASSERT_TRUE(restarted.ok()) << restarted.status().message();
  std::string new_password;
  ASSERT_TRUE(WaitFor(30000, [&] {
    if (!std::filesystem::exists(lab_["api"]["password_file"].get<std::string>())) return false;
    new_password = ReadPassword();
    return !new_password.empty() && LoginAnswer(new_password, /*quiet=*/true).status == 201;
  }));
  EXPECT_NE(new_password, old_password);
  EXPECT_EQ(CallAs("GET", "/api/v1/clusters", old_token).status, 401);
  token_ = Login(new_password);
  EXPECT_TRUE(CallAs("GET", "/api/v1/clusters", token_).body["clusters"].empty());
  // A wrong passphrase restores nothing.
  ExpectRefused("wrong passphrase", "POST", "/api/v1/restore",
                json{{"backup", backup.body}, {"passphrase", "not the passphrase"}}, 400,
                "invalid_argument", "backup");
  Answer restored = CallAs("POST", "/api/v1/restore", token_,
                         json{{"backup", backup.body}, {"passphrase", kPassphrase}});
  ASSERT_EQ(restored.status, 200) << restored.body.dump();
  // Every session ended; the users are the backup's: the old password again.
  EXPECT_EQ(CallAs("GET", "/api/v1/clusters", token_).status, 401);
  EXPECT_EQ(CallAs("GET", "/api/v1/clusters", old_token).status, 401);
  EXPECT_EQ(LoginAnswer(new_password).status, 401);
  token_ = Login(old_password);
  json after = CallAs("GET", path, token_).body["cluster"];
  json b = before;
  for (json* c : {&b, &after}) {
    for (json& m : (*c)["members"]) {
      m.erase("status");
      m.erase("status_reason");
    }
  }
  EXPECT_EQ(after, b);
  EXPECT_EQ(Snapshot(), snapshot);
  // The restored keys still reach the agents: the poller reads them again.
  EXPECT_TRUE(WaitForFacts("lab-managed-1-secondary", [](const json& h) {
    return h["status"] == "Unclustered";
  })) << Host("lab-managed-1-secondary").dump();

  // ---- disconnecting the secondary (R-CL-5) ----
  Answer gone = CallAs("DELETE", path + "/secondary", token_);
  ASSERT_EQ(gone.status, 200) << gone.body.dump();
  EXPECT_EQ(gone.body["host"], "lab-managed-2");
  EXPECT_EQ(gone.body["cluster"]["status"], "Unprotected") << gone.body.dump();
  EXPECT_EQ(gone.body["cluster"]["ips"]["primary"], m1["address"]);  // the VIP again
  EXPECT_EQ(gone.body["cluster"]["license"]["id"], "ha-lab-001");
  ExpectRefused("no secondary", "DELETE", path + "/secondary", nullptr, 409, "no_secondary");
  // Two free managed hosts whose facts pass every check, but the
  // configuration is not deployed yet (R-CL-3).
  ExpectRefused("undeployed changes", "POST", clusters,
                create("lab-managed-2", "lab-managed-3", subnet + ".31"), 409, "undeployed_changes");
}

}  // namespace
}  // namespace tandem::itest
