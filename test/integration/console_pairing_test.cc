// Both sides of the console <-> host channel in one process, over real TLS
// on loopback (docs/CONSOLE.md, "Hosts: pairing and the agent channel"):
// the host's daemon::Agent prints a pairing string, the console
// (console::Console with its HTTPS agent client) pairs it through
// POST /api/v1/hosts, and its poller reads the host's HA status from the
// agent's facts.
#include <gtest/gtest.h>

#include "api/httplib.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "console/console.h"
#include "daemon/agent.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem {
namespace {

using nlohmann::json;

constexpr console::ScryptParams kFast{10, 8, 1};

TEST(ConsolePairing, ConsolePairsARealAgentAndPollsItsStatus) {
  TempDir dir("console-pairing");
  std::atomic<int> ha_status{0};  // 0 STANDBY, 1 ACTIVE
  daemon::AgentOptions ao;
  ao.state_dir = dir / "agent";
  ao.packages_dir = dir / "packages";
  ao.host_name = "db-1";
  ao.cluster = json{{"name", "c1"}, {"role", "primary"}, {"peer", "db-2"}};
  ao.ha_status = [&ha_status] {
    return json{{"local", {{"name", "db-1"},
                           {"status", ha_status.load() == 0 ? "STANDBY" : "ACTIVE"},
                           {"reason", "integration test"}}}};
  };
  daemon::Agent agent(ao);
  ASSERT_TRUE(agent.Start().ok());
  const std::string address = "127.0.0.1:" + std::to_string(agent.port());
  auto pairing = daemon::PairingString(ao.state_dir, ao.host_name, "127.0.0.1");
  ASSERT_TRUE(pairing.ok()) << pairing.status().message();

  std::mutex log_mu;
  std::string log;
  console::ConsoleOptions co;
  co.state_dir = dir / "console";
  co.host_name = "console-1";
  co.kdf = kFast;
  co.poll_interval_ms = 100;
  co.log = [&](int, const std::string& m) {
    std::lock_guard<std::mutex> l(log_mu);
    log += m + "\n";
  };
  console::Console console(co);
  ASSERT_TRUE(console.Start().ok());

  httplib::SSLClient cli("127.0.0.1", console.port());
  cli.set_ca_cert_path(console.cert_file().c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(15, 0);
  auto pw = os::ReadFile(console.password_file(), 100);
  ASSERT_TRUE(pw.ok());
  auto login = cli.Post("/api/v1/sessions",
                        json{{"user", "admin"}, {"password", pw->substr(0, pw->size() - 1)}}.dump(),
                        "application/json");
  ASSERT_TRUE(login);
  ASSERT_EQ(login->status, 201) << login->body;
  httplib::Headers auth{
      {"Authorization", "Bearer " + json::parse(login->body)["token"].get<std::string>()}};

  // A pairing string pinning another certificate: refused, the agent's
  // token is not used.
  std::string forged = *pairing;
  forged.back() = forged.back() == '0' ? '1' : '0';
  auto refused = cli.Post("/api/v1/hosts", auth,
                          json{{"address", address}, {"pairing_token", forged}}.dump(),
                          "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 409) << refused->body;
  EXPECT_EQ(json::parse(refused->body)["error"]["code"], "pairing_refused");
  EXPECT_TRUE(os::ReadFile(daemon::PairingTokenFile(ao.state_dir), 1024).ok());

  auto paired = cli.Post("/api/v1/hosts", auth,
                         json{{"address", address}, {"pairing_token", *pairing}}.dump(),
                         "application/json");
  ASSERT_TRUE(paired);
  ASSERT_EQ(paired->status, 201) << paired->body;
  const json host = json::parse(paired->body)["host"];
  EXPECT_EQ(host["name"], "db-1");
  EXPECT_EQ(host["status"], "Standby");
  EXPECT_EQ(host["cluster_role"], "primary");
  EXPECT_EQ(host["agent_address"], address);
  auto paired_record = daemon::ReadPairing(ao.state_dir);
  ASSERT_TRUE(paired_record.ok() && paired_record->has_value());
  EXPECT_EQ((*paired_record)->console, "console-1");

  // The poller, over the pinned connection with the key, follows the status.
  ha_status = 1;
  std::string status;
  for (int i = 0; i < 300 && status != "Active"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto r = cli.Get("/api/v1/hosts/db-1", auth);
    ASSERT_TRUE(r);
    status = json::parse(r->body)["host"]["status"].get<std::string>();
  }
  EXPECT_EQ(status, "Active");
  // The agent stops: Unknown, with the reason.
  agent.Stop();
  for (int i = 0; i < 300 && status != "Unknown"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto r = cli.Get("/api/v1/hosts/db-1", auth);
    ASSERT_TRUE(r);
    status = json::parse(r->body)["host"]["status"].get<std::string>();
  }
  EXPECT_EQ(status, "Unknown");
  auto hist = cli.Get("/api/v1/history?host=db-1", auth);
  ASSERT_TRUE(hist);
  const json entries = json::parse(hist->body)["entries"];
  ASSERT_GE(entries.size(), 3u) << hist->body;
  EXPECT_EQ(entries[0]["new_status"], "Unknown");
  EXPECT_NE(entries[0]["reason"].get<std::string>().find("unreachable"), std::string::npos);
  EXPECT_EQ(entries[1]["new_status"], "Active");
  console.Stop();
  const std::string token = pairing->substr(4, 64);
  std::lock_guard<std::mutex> l(log_mu);
  EXPECT_NE(log.find("console: host db-1 status Standby -> Active"), std::string::npos) << log;
  EXPECT_EQ(log.find(token), std::string::npos);
}

}  // namespace
}  // namespace tandem
