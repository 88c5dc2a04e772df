// The binaries' contracts: bad configs refused with a clear message, bad CLI
// arguments rejected, `tandem lab up` JSON, the control channel's access check.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-cli");
    ASSERT_TRUE(os::WriteFileAtomic(dir_ + "/key", std::string(32, 'k'), 0600).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  std::string Valid(const std::string& extra_heartbeat = "") {
    return "[cluster]\nname = \"c\"\nkey_file = \"key\"\nvip = \"127.0.0.10\"\n"
           "[host]\nname = \"h\"\nrole = \"primary\"\nstate_dir = \"s\"\nrun_dir = \"r\"\n"
           "[heartbeat]\nlisten = \"127.0.0.1:1\"\npeer = \"127.0.0.2:1\"\n" +
           extra_heartbeat;
  }
  std::string dir_;
};

TEST_F(CliTest, TandemdRefusesBadConfigsNamingFileAndKey) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {Valid("colour = \"red\"\n"), "heartbeat.colour: unknown key"},
      {Valid("interval_ms = 1000\ntimeout_ms = 500\n"), "heartbeat.timeout_ms"},
      {Valid("interval_ms = \"fast\"\n"), "heartbeat.interval_ms"},
      {"[cluster\n", "TOML syntax error"},
      {Valid().substr(0, Valid().find("[host]")), "host.name: required key is missing"},
  };
  for (const auto& c : cases) {
    std::string path = Write("bad.toml", c.text);
    auto r = RunCommand({BinDir() + "/tandemd", "--config", path});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/s")) << "a refused config must change nothing";
  }
  auto r = RunCommand({BinDir() + "/tandemd", "--check", "--config", Write("ok.toml", Valid())});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand({BinDir() + "/tandemd", "--config", dir_ + "/missing.toml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("cannot read"), std::string::npos) << r.output;
}

TEST_F(CliTest, HaRejectsBadArgumentsAndReportsMissingDaemon) {
  auto r = RunCommand({BinDir() + "/ha"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunCommand({BinDir() + "/ha", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunCommand({BinDir() + "/ha", "takeover", "--timeout-ms", "-5", "--config", "x"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  std::string cfg = Write("ok.toml", Valid());
  r = RunCommand({BinDir() + "/ha", "status", "--config", cfg});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("is tandemd running?"), std::string::npos) << r.output;
  r = RunCommand({BinDir() + "/tandem", "lab", "up"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunCommand({BinDir() + "/tandem", "bench", "failover", "--trials", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST_F(CliTest, LabUpPrintsContractJsonAndDownStopsEverything) {
  auto r = RunCommand({BinDir() + "/tandem", "lab", "up", "--dir", dir_ + "/lab",
                       "--heartbeat-interval-ms", "100", "--heartbeat-timeout-ms", "500"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = json::parse(r.output);
  EXPECT_TRUE(j["vip"].is_string());
  EXPECT_TRUE(j["service_port"].is_number_integer());
  ASSERT_EQ(j["hosts"].size(), 2u);
  std::vector<int> pids;
  for (const auto& h : j["hosts"]) {
    for (const char* k : {"name", "role", "pid", "config"}) EXPECT_TRUE(h.contains(k)) << k;
    pids.push_back(h["pid"]);
    EXPECT_EQ(kill(h["pid"].get<int>(), 0), 0);
  }
  EXPECT_EQ(j["hosts"][0]["role"], "primary");
  // The service is up when `lab up` returns; a loaded machine may still be slow to answer.
  std::string name;
  EXPECT_TRUE(WaitFor(5000, [&] { return (name = ProbeName(j["vip"], j["service_port"])) != ""; }));
  EXPECT_EQ(name, j["hosts"][0]["name"]);
  // The control channel admits only administrators: `nobody` is turned away.
  r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BinDir() + "/ha",
                  "status", "--config", j["hosts"][0]["config"]});
  EXPECT_NE(r.exit_code, 0) << r.output;
  r = RunCommand({BinDir() + "/tandem", "lab", "down", "--dir", dir_ + "/lab"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (int pid : pids) EXPECT_NE(kill(pid, 0), 0) << "pid " << pid << " survived lab down";
  EXPECT_NE(ProbeName(j["vip"], j["service_port"]), j["hosts"][0]["name"]);
}

}  // namespace
}  // namespace tandem::itest
