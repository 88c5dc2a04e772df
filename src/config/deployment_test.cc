#include "config/deployment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace tandem::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const std::string kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// A validated deployment document (docs/formats/deployment.md) of a
// member of cluster "alpha" on loopback.
json Document(const std::string& role) {
  return json{{"revision", 9},
              {"console", {{"name", "cons"}}},
              {"host", {{"name", "alpha-" + role}, {"role", role}}},
              {"cluster",
               {{"name", "alpha"},
                {"key", kKeyHex},
                {"vip", "127.0.0.1"},
                {"vip_prefix", 8},
                {"primary_ip", "127.0.0.30"},
                {"secondary_ip", "127.0.0.1"},
                {"license_valid", true},
                {"options",
                 {{"heartbeat_interval_ms", 500},
                  {"heartbeat_timeout_ms", 1500},
                  {"connectivity_peers", {"127.0.0.5", "127.0.0.6:7000"}},
                  {"sync_rate_mb", 250},
                  {"disable_replication", false},
                  {"crossover_interface", nullptr},
                  {"crossover_primary_ip", nullptr},
                  {"crossover_secondary_ip", nullptr}}}}}};
}

class DeploymentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem_deploy_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Write(dir_ + "/tandemd.toml",
          "[host]\nname = \"m1\"\nstate_dir = \"state\"\nrun_dir = \"run\"\n\n"
          "[agent]\nlisten = \"127.0.0.1:7790\"\nstore_dir = \"store\"\nheartbeat_port = 17788\n"
          "replication_port = 17789\n\n[log]\nlevel = \"debug\"\n");
    auto local = Load(dir_ + "/tandemd.toml");
    ASSERT_TRUE(local.ok()) << local.status().message();
    local_ = *local;
    ASSERT_TRUE(local_.agent_only);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }

  std::string dir_;
  Config local_;
};

TEST(DeploymentIdentityTest, OnlyAMemberWithSecondaryLicenseAndKeyFormsAPair) {
  EXPECT_NE(DeploymentIdentity(Document("primary")), "");
  EXPECT_EQ(NoClusterReason(Document("primary")), "");
  json managed{{"revision", 3}, {"console", {{"name", "c"}}}, {"host", {{"name", "m"}, {"role", "managed"}}},
               {"cluster", nullptr}};
  EXPECT_EQ(DeploymentIdentity(managed), "");
  EXPECT_THAT(NoClusterReason(managed), HasSubstr("in no cluster"));
  json d = Document("primary");
  d["cluster"]["secondary_ip"] = nullptr;
  EXPECT_EQ(DeploymentIdentity(d), "");
  EXPECT_THAT(NoClusterReason(d), HasSubstr("no secondary"));
  d = Document("secondary");
  d["cluster"]["license_valid"] = false;
  EXPECT_EQ(DeploymentIdentity(d), "");
  EXPECT_THAT(NoClusterReason(d), HasSubstr("Needs License"));
  d = Document("secondary");
  d["cluster"].erase("key");  // an older console's document
  EXPECT_EQ(DeploymentIdentity(d), "");
  EXPECT_THAT(NoClusterReason(d), HasSubstr("key"));
  EXPECT_EQ(DeploymentIdentity(json::object()), "");
}

TEST(DeploymentIdentityTest, LiveOptionsKeepTheIdentityMembershipChangesIt) {
  const std::string id = DeploymentIdentity(Document("primary"));
  json d = Document("primary");
  d["revision"] = 10;
  d["cluster"]["options"]["sync_rate_mb"] = 5;
  d["cluster"]["options"]["heartbeat_interval_ms"] = 1000;
  d["cluster"]["options"]["heartbeat_timeout_ms"] = 3000;
  d["cluster"]["options"]["connectivity_peers"] = json::array();
  EXPECT_EQ(DeploymentIdentity(d), id);
  EXPECT_NE(DeploymentIdentity(Document("secondary")), id);
  d = Document("primary");
  d["cluster"]["vip"] = "127.0.0.2";
  EXPECT_NE(DeploymentIdentity(d), id);
  d = Document("primary");
  d["cluster"]["options"]["disable_replication"] = true;
  EXPECT_NE(DeploymentIdentity(d), id);
  d = Document("primary");
  d["cluster"]["key"] = std::string(64, 'f');
  EXPECT_NE(DeploymentIdentity(d), id);
}

TEST_F(DeploymentTest, TheSecondaryRunsTheDeployedClusterWithItsOwnPortsAndStore) {
  auto cfg = WithDeployment(local_, Document("secondary"));
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_FALSE(cfg->agent_only);
  EXPECT_EQ(cfg->cluster_name, "alpha");
  EXPECT_EQ(cfg->host_name, "alpha-secondary");
  EXPECT_EQ(cfg->role, ha::Role::kSecondary);
  EXPECT_EQ(cfg->vip, "127.0.0.1");
  EXPECT_EQ(cfg->vip_mode, "loopback");
  EXPECT_EQ(cfg->cluster_key, kKeyHex);  // the key file, as a key file is read
  EXPECT_EQ(cfg->listen, (Endpoint{"127.0.0.1", 17788}));
  EXPECT_EQ(cfg->peer, (Endpoint{"127.0.0.30", 17788}));
  EXPECT_EQ(cfg->heartbeat_interval_ms, 500);
  EXPECT_EQ(cfg->heartbeat_timeout_ms, 1500);
  ASSERT_TRUE(cfg->replication);
  EXPECT_EQ(cfg->store_dir, dir_ + "/store");
  EXPECT_EQ(cfg->repl_listen, (Endpoint{"127.0.0.1", 17789}));
  EXPECT_EQ(cfg->repl_peer, (Endpoint{"127.0.0.30", 17789}));
  EXPECT_EQ(cfg->sync_rate_mb, 250);
  ASSERT_EQ(cfg->connectivity_peers.size(), 2u);
  EXPECT_EQ(cfg->state_dir, dir_ + "/state");  // the file's own, relative to it
  EXPECT_EQ(cfg->log_level, "debug");
  EXPECT_EQ(cfg->agent.listen, (Endpoint{"127.0.0.1", 7790}));
  EXPECT_EQ(cfg->deployment_revision, 9);
  EXPECT_EQ(cfg->deployment_identity, DeploymentIdentity(Document("secondary")));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/state/agent/cluster.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(DeploymentTest, CrossoverCarriesHeartbeatsAndReplicationAndReplicationCanBeOff) {
  json d = Document("primary");
  auto& o = d["cluster"]["options"];
  o["crossover_interface"] = "xo0";
  o["crossover_primary_ip"] = "127.9.0.1";
  o["crossover_secondary_ip"] = "127.9.0.2";
  auto cfg = WithDeployment(local_, d);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->listen, (Endpoint{"127.0.0.30", 17788}));
  EXPECT_EQ(cfg->crossover_listen, (Endpoint{"127.9.0.1", 17788}));
  EXPECT_EQ(cfg->crossover_peer, (Endpoint{"127.9.0.2", 17788}));
  EXPECT_EQ(cfg->repl_listen, (Endpoint{"127.9.0.1", 17789}));
  EXPECT_EQ(cfg->repl_peer, (Endpoint{"127.9.0.2", 17789}));
  o["disable_replication"] = true;
  cfg = WithDeployment(local_, d);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_FALSE(cfg->replication);
}

TEST_F(DeploymentTest, WhatCannotRunIsRefusedWithTheReason) {
  // A VIP outside 127/8 is an interface VIP: host.interface is needed.
  json d = Document("primary");
  d["cluster"]["vip"] = "198.18.0.1";
  auto cfg = WithDeployment(local_, d);
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(cfg.status().message(), HasSubstr("interface"));
  // A document that forms no pair.
  d = Document("primary");
  d["cluster"]["license_valid"] = false;
  cfg = WithDeployment(local_, d);
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(cfg.status().message(), HasSubstr("Needs License"));
  // A host with its own [cluster] takes none from a console.
  Config clustered = local_;
  clustered.agent_only = false;
  cfg = WithDeployment(clustered, Document("primary"));
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(cfg.status().message(), HasSubstr("agent-only"));
  // The TOML is that of a regular file (what `--check` shows).
  auto text = DeploymentToml(local_, Document("primary"), "/k");
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_THAT(*text, HasSubstr("[heartbeat]"));
  EXPECT_THAT(*text, HasSubstr("icmp_peers"));
  EXPECT_THAT(*text, HasSubstr("127.0.0.6:7000"));
}

}  // namespace
}  // namespace tandem::config
