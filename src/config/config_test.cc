#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tandem::config {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// 36 bytes; the key file holds it plus a trailing newline.
constexpr char kKey[] = "0123456789abcdef0123456789abcdef-lab";

// A TOML document built from tables of raw "key = value" text, so a test
// can set, replace or erase one key without worrying about the rest.
struct Doc {
  using Table = std::map<std::string, std::string>;  // key -> raw TOML value
  std::string prefix;                                // raw text before all tables
  std::vector<std::pair<std::string, Table>> tables;
  std::vector<Table> services;  // [[service]] entries
  std::string suffix;           // raw text after everything

  Table& operator[](const std::string& name) {
    for (auto& [n, t] : tables) {
      if (n == name) return t;
    }
    tables.emplace_back(name, Table{});
    return tables.back().second;
  }
  void EraseTable(const std::string& name) {
    std::erase_if(tables, [&](const auto& t) { return t.first == name; });
  }
  std::string Render() const {
    std::string out = prefix;
    for (const auto& [name, table] : tables) {
      out += "[" + name + "]\n";
      for (const auto& [k, v] : table) out += k + " = " + v + "\n";
      out += "\n";
    }
    for (const Table& svc : services) {
      out += "[[service]]\n";
      for (const auto& [k, v] : svc) out += k + " = " + v + "\n";
      out += "\n";
    }
    return out + suffix;
  }
};

std::string Str(const std::string& s) { return "\"" + s + "\""; }

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem_config_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/host.toml";
    WriteFile(dir_ + "/cluster.key", std::string(kKey) + "\n", 0600);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void WriteFile(const std::string& path, const std::string& contents, mode_t mode) {
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      ASSERT_TRUE(f.good()) << path;
      f << contents;
    }
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }

  // Every required key, nothing else; key_file relative to dir_.
  static Doc Minimal() {
    Doc d;
    d["cluster"] = {
        {"name", Str("lab")}, {"key_file", Str("cluster.key")}, {"vip", Str("127.0.0.100")}};
    d["host"] = {{"name", Str("alpha")},
                 {"role", Str("primary")},
                 {"state_dir", Str("/var/lib/tandem")},
                 {"run_dir", Str("/run/tandem")}};
    d["heartbeat"] = {{"listen", Str("127.0.0.1:7001")}, {"peer", Str("127.0.0.2:7001")}};
    return d;
  }

  // Minimal plus one service, an empty [connectivity], [notify], [log] and
  // [api], so every table exists.
  static Doc WithAllTables() {
    Doc d = Minimal();
    d["connectivity"];
    d.services.push_back({{"name", Str("collector")}, {"command", "[\"/bin/true\"]"}});
    d["notify"];
    d["log"];
    d["api"];
    return d;
  }

  // Every key set to a non-default value.
  Doc Full() const {
    Doc d;
    d["cluster"] = {{"name", Str("lab-1.example")},
                    {"key_file", Str(dir_ + "/cluster.key")},
                    {"vip", Str("127.0.0.100")},
                    {"vip_mode", Str("loopback")}};
    d["host"] = {{"name", Str("alpha_1")},
                 {"role", Str("secondary")},
                 {"state_dir", Str("/var/lib/tandem")},
                 {"run_dir", Str("/run/tandem")},
                 {"admin_group", Str("tandem-admin")}};
    d["heartbeat"] = {{"interval_ms", "250"},
                      {"timeout_ms", "1500"},
                      {"initial_dead_time_ms", "4000"},
                      {"listen", Str("127.0.0.1:7001")},
                      {"peer", Str("127.0.0.2:7002")},
                      {"crossover_listen", Str("10.0.0.1:7003")},
                      {"crossover_peer", Str("10.0.0.2:7004")}};
    d["connectivity"] = {{"peers", "[\"127.0.0.10:22\", \"192.168.1.1:443\"]"},
                         {"interval_ms", "5000"},
                         {"timeout_ms", "750"},
                         {"require", Str("all")}};
    d.services.push_back({{"name", Str("collector")},
                          {"command", "[\"/usr/bin/collector\", \"--port\", \"514\"]"},
                          {"restart_backoff_min_ms", "200"},
                          {"restart_backoff_max_ms", "20000"},
                          {"stop_timeout_ms", "3000"}});
    d.services.push_back({{"name", Str("parser")}, {"command", "[\"parser\"]"}});
    d["notify"] = {{"command", "[\"/usr/local/bin/notify\", \"--verbose\"]"},
                   {"timeout_ms", "2500"}};
    d["log"] = {{"level", Str("debug")}, {"file", Str("/var/log/tandemd.log")}};
    d["api"] = {{"control_socket", Str("/run/tandem/ctl.sock")}};
    return d;
  }

  Result<Config> ParseDoc(const Doc& d) const { return Parse(d.Render(), path_); }

  // The error message for `d`; fails the test if it parsed.
  std::string ErrorOf(const Doc& d) const {
    Result<Config> r = ParseDoc(d);
    EXPECT_FALSE(r.ok()) << d.Render();
    return r.ok() ? std::string() : r.status().message();
  }

  // Asserts the "<path>: <key>: <what>" shape and that <what> contains `what`.
  void ExpectError(const Doc& d, const std::string& key, const std::string& what) const {
    const std::string m = ErrorOf(d);
    EXPECT_THAT(m, StartsWith(path_ + ": " + key + ": ")) << d.Render();
    EXPECT_THAT(m, HasSubstr(what)) << d.Render();
    EXPECT_THAT(m, Not(HasSubstr("\n")));
  }

  std::string dir_;
  std::string path_;
};

TEST_F(ConfigTest, FullConfigRoundTripsEveryField) {
  Result<Config> r = ParseDoc(Full());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Config& c = *r;
  EXPECT_EQ(c.path, path_);
  EXPECT_EQ(c.cluster_name, "lab-1.example");
  EXPECT_EQ(c.key_file, dir_ + "/cluster.key");
  EXPECT_EQ(c.cluster_key, kKey);
  EXPECT_EQ(c.vip, "127.0.0.100");
  EXPECT_EQ(c.vip_mode, "loopback");
  EXPECT_EQ(c.host_name, "alpha_1");
  EXPECT_EQ(c.role, ha::Role::kSecondary);
  EXPECT_EQ(c.state_dir, "/var/lib/tandem");
  EXPECT_EQ(c.run_dir, "/run/tandem");
  EXPECT_EQ(c.admin_group, "tandem-admin");
  EXPECT_EQ(c.heartbeat_interval_ms, 250);
  EXPECT_EQ(c.heartbeat_timeout_ms, 1500);
  EXPECT_EQ(c.initial_dead_time_ms, 4000);
  EXPECT_EQ(c.listen, (Endpoint{"127.0.0.1", 7001}));
  EXPECT_EQ(c.peer, (Endpoint{"127.0.0.2", 7002}));
  EXPECT_EQ(c.crossover_listen, (Endpoint{"10.0.0.1", 7003}));
  EXPECT_EQ(c.crossover_peer, (Endpoint{"10.0.0.2", 7004}));
  EXPECT_EQ(c.connectivity_peers,
            (std::vector<Endpoint>{{"127.0.0.10", 22}, {"192.168.1.1", 443}}));
  EXPECT_EQ(c.connectivity_interval_ms, 5000);
  EXPECT_EQ(c.connectivity_timeout_ms, 750);
  EXPECT_TRUE(c.connectivity_require_all);
  ASSERT_EQ(c.services.size(), 2u);
  EXPECT_EQ(c.services[0].name, "collector");
  EXPECT_EQ(c.services[0].command,
            (std::vector<std::string>{"/usr/bin/collector", "--port", "514"}));
  EXPECT_EQ(c.services[0].restart_backoff_min_ms, 200);
  EXPECT_EQ(c.services[0].restart_backoff_max_ms, 20000);
  EXPECT_EQ(c.services[0].stop_timeout_ms, 3000);
  EXPECT_EQ(c.services[1].name, "parser");
  EXPECT_EQ(c.services[1].command, std::vector<std::string>{"parser"});
  EXPECT_EQ(c.services[1].restart_backoff_min_ms, 100);
  EXPECT_EQ(c.services[1].restart_backoff_max_ms, 10000);
  EXPECT_EQ(c.services[1].stop_timeout_ms, 5000);
  EXPECT_EQ(c.notify_command, (std::vector<std::string>{"/usr/local/bin/notify", "--verbose"}));
  EXPECT_EQ(c.notify_timeout_ms, 2500);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_file, "/var/log/tandemd.log");
  EXPECT_EQ(c.control_socket, "/run/tandem/ctl.sock");
}

TEST_F(ConfigTest, MinimalConfigGetsDefaults) {
  Result<Config> r = ParseDoc(Minimal());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Config& c = *r;
  EXPECT_EQ(c.cluster_name, "lab");
  EXPECT_EQ(c.cluster_key, kKey);
  EXPECT_EQ(c.vip_mode, "loopback");
  EXPECT_EQ(c.role, ha::Role::kPrimary);
  EXPECT_EQ(c.admin_group, "");
  EXPECT_EQ(c.heartbeat_interval_ms, 10000);
  EXPECT_EQ(c.heartbeat_timeout_ms, 30000);
  EXPECT_EQ(c.initial_dead_time_ms, 60000);
  EXPECT_TRUE(c.crossover_listen.empty());
  EXPECT_TRUE(c.crossover_peer.empty());
  EXPECT_TRUE(c.connectivity_peers.empty());
  EXPECT_EQ(c.connectivity_interval_ms, 10000);
  EXPECT_EQ(c.connectivity_timeout_ms, 2000);
  EXPECT_FALSE(c.connectivity_require_all);
  EXPECT_TRUE(c.services.empty());
  EXPECT_TRUE(c.notify_command.empty());
  EXPECT_EQ(c.notify_timeout_ms, 10000);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.log_file, "");
  EXPECT_EQ(c.control_socket, "/run/tandem/tandemd.sock");
}

TEST_F(ConfigTest, InitialDeadTimeDefaultsToTwiceTimeout) {
  Doc d = Minimal();
  d["heartbeat"]["interval_ms"] = "100";
  d["heartbeat"]["timeout_ms"] = "500";
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->initial_dead_time_ms, 1000);
  d["heartbeat"]["initial_dead_time_ms"] = "0";  // 0 is allowed: decide at once
  r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->initial_dead_time_ms, 0);
}

TEST_F(ConfigTest, RelativePathsResolveAgainstConfigDirectory) {
  Doc d = Minimal();
  d["cluster"]["key_file"] = Str("../keys/../cluster.key");
  d["host"]["state_dir"] = Str("state");
  d["host"]["run_dir"] = Str("./run/");
  d["log"]["file"] = Str("logs/tandemd.log");
  const std::string path = dir_ + "/etc/host.toml";  // Parse never opens it
  Result<Config> r = Parse(d.Render(), path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->path, path);
  EXPECT_EQ(r->key_file, dir_ + "/cluster.key");
  EXPECT_EQ(r->cluster_key, kKey);
  EXPECT_EQ(r->state_dir, dir_ + "/etc/state");
  EXPECT_EQ(r->run_dir, dir_ + "/etc/run");
  EXPECT_EQ(r->log_file, dir_ + "/etc/logs/tandemd.log");
  EXPECT_EQ(r->control_socket, dir_ + "/etc/run/tandemd.sock");

  d["api"]["control_socket"] = Str("sock/ctl");
  r = Parse(d.Render(), path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->control_socket, dir_ + "/etc/sock/ctl");
}

TEST_F(ConfigTest, RelativeConfigPathResolvesAgainstWorkingDirectory) {
  Doc d = Minimal();
  d["cluster"]["key_file"] = Str(dir_ + "/cluster.key");
  d["host"]["state_dir"] = Str("state");
  Result<Config> r = Parse(d.Render(), "conf/host.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(r->path, cwd + "/conf/host.toml");
  EXPECT_EQ(r->state_dir, cwd + "/conf/state");
}

TEST_F(ConfigTest, LoadReadsTheFile) {
  WriteFile(path_, Full().Render(), 0644);
  Result<Config> r = Load(path_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->path, path_);
  EXPECT_EQ(r->host_name, "alpha_1");
  EXPECT_EQ(r->services.size(), 2u);
}

TEST_F(ConfigTest, LoadReportsUnreadableFile) {
  Result<Config> r = Load(dir_ + "/nope.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), dir_ + "/nope.toml: cannot read: No such file or directory");
  r = Load(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), dir_ + ": cannot read: Is a directory");
}

TEST_F(ConfigTest, LoadRejectsHugeFile) {
  WriteFile(path_, std::string((1 << 20) + 1, '#'), 0644);
  Result<Config> r = Load(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), path_ + ": file is larger than 1048576 bytes");
}

TEST_F(ConfigTest, SyntaxErrorNamesLineAndColumn) {
  const std::string text = "[cluster]\nname = \"lab\"\nvip = \n";
  Result<Config> r = Parse(text, path_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith(path_ + ":3:"));
  EXPECT_THAT(r.status().message(), HasSubstr(": TOML syntax error: "));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("\n")));
}

TEST_F(ConfigTest, DuplicateKeyIsSyntaxError) {
  Doc d = Minimal();
  d.suffix = "[host]\nname = \"beta\"\n";  // redefines [host]
  const std::string m = ErrorOf(d);
  EXPECT_THAT(m, StartsWith(path_ + ":"));
  EXPECT_THAT(m, HasSubstr("TOML syntax error"));
}

TEST_F(ConfigTest, MissingRequiredKeys) {
  const std::pair<std::string, std::string> required[] = {
      {"cluster", "name"}, {"cluster", "key_file"}, {"cluster", "vip"},
      {"host", "name"},    {"host", "role"},        {"host", "state_dir"},
      {"host", "run_dir"}, {"heartbeat", "listen"}, {"heartbeat", "peer"}};
  for (const auto& [table, key] : required) {
    Doc d = Minimal();
    ASSERT_EQ(d[table].erase(key), 1u) << key;
    const std::string m = ErrorOf(d);
    EXPECT_EQ(m, path_ + ": " + table + "." + key + ": required key is missing");
  }
  for (const std::string key : {"name", "command"}) {
    Doc d = WithAllTables();
    ASSERT_EQ(d.services[0].erase(key), 1u);
    EXPECT_EQ(ErrorOf(d), path_ + ": service[0]." + key + ": required key is missing");
  }
}

TEST_F(ConfigTest, MissingRequiredTableReportsItsFirstKey) {
  Doc d = Minimal();
  d.EraseTable("host");
  EXPECT_EQ(ErrorOf(d), path_ + ": host.name: required key is missing");
  EXPECT_EQ(Parse("", path_).status().message(), path_ + ": cluster.name: required key is missing");
}

TEST_F(ConfigTest, UnknownKeyInEveryTable) {
  for (const std::string table :
       {"cluster", "host", "heartbeat", "connectivity", "notify", "log", "api"}) {
    Doc d = WithAllTables();
    d[table]["colour"] = "1";
    EXPECT_EQ(ErrorOf(d), path_ + ": " + table + ".colour: unknown key");
  }
  Doc d = WithAllTables();
  d.services[0]["colour"] = Str("blue");
  EXPECT_EQ(ErrorOf(d), path_ + ": service[0].colour: unknown key");
}

TEST_F(ConfigTest, UnknownTopLevelKeysAndTables) {
  Doc d = Minimal();
  d["database"]["url"] = Str("x");
  EXPECT_EQ(ErrorOf(d), path_ + ": database: unknown key");

  d = Minimal();
  d.prefix = "colour = 1\n";
  EXPECT_EQ(ErrorOf(d), path_ + ": colour: unknown key");

  d = Minimal();
  d["heartbeat.extra"]["x"] = "1";  // a sub-table is an unknown key too
  EXPECT_EQ(ErrorOf(d), path_ + ": heartbeat.extra: unknown key");
}

TEST_F(ConfigTest, KeysAreEchoedOnOneLine) {
  Doc d = Minimal();
  d["heartbeat"]["\"a\\nb\""] = "1";
  EXPECT_EQ(ErrorOf(d), path_ + ": heartbeat.\"a\\x0ab\": unknown key");
}

struct TypeCase {
  std::string table;  // "service" means services[0]
  std::string key;
  std::string value;
  std::string expected_key;
  std::string expected_what;
};

TEST_F(ConfigTest, WrongTypesAreRejected) {
  const TypeCase cases[] = {
      {"heartbeat", "interval_ms", Str("fast"), "heartbeat.interval_ms",
       "expected an integer, got string"},
      {"heartbeat", "timeout_ms", "1.5", "heartbeat.timeout_ms",
       "expected an integer, got floating-point"},
      {"cluster", "name", "42", "cluster.name", "expected a string, got integer"},
      {"cluster", "vip", "[1, 2]", "cluster.vip", "expected a string, got array"},
      {"host", "role", "true", "host.role", "expected a string, got boolean"},
      {"host", "state_dir", "1979-05-27", "host.state_dir", "expected a string, got date"},
      {"heartbeat", "listen", "{ a = 1 }", "heartbeat.listen", "expected a string, got table"},
      {"connectivity", "peers", Str("127.0.0.1:1"), "connectivity.peers",
       "expected an array of strings, got string"},
      {"connectivity", "peers", "[1]", "connectivity.peers[0]", "expected a string, got integer"},
      {"connectivity", "require", "1", "connectivity.require", "expected a string, got integer"},
      {"service", "command", Str("/bin/true"), "service[0].command",
       "expected an array of strings, got string"},
      {"service", "command", "[\"/bin/x\", 3]", "service[0].command[1]",
       "expected a string, got integer"},
      {"service", "stop_timeout_ms", "07:32:00", "service[0].stop_timeout_ms",
       "expected an integer, got time"},
      {"notify", "command", "true", "notify.command", "expected an array of strings, got boolean"},
      {"log", "level", "1979-05-27T07:32:00Z", "log.level", "expected a string, got date-time"},
      {"api", "control_socket", "[]", "api.control_socket", "expected a string, got array"},
  };
  for (const TypeCase& c : cases) {
    Doc d = WithAllTables();
    (c.table == "service" ? d.services[0] : d[c.table])[c.key] = c.value;
    ExpectError(d, c.expected_key, c.expected_what);
  }
}

TEST_F(ConfigTest, WrongTypeForWholeTables) {
  Doc d = Minimal();
  d.EraseTable("host");
  d.prefix = "host = 5\n";
  EXPECT_EQ(ErrorOf(d), path_ + ": host: expected a table, got integer");

  d = Minimal();
  d["service"]["name"] = Str("x");  // [service] instead of [[service]]
  EXPECT_EQ(ErrorOf(d), path_ + ": service: expected an array of tables ([[service]]), got table");

  d = Minimal();
  d.prefix = "service = [1]\n";
  EXPECT_EQ(ErrorOf(d), path_ + ": service[0]: expected a table, got integer");
}

TEST_F(ConfigTest, OutOfRangeIntegersAreRejected) {
  const TypeCase cases[] = {
      {"heartbeat", "interval_ms", "9", "heartbeat.interval_ms", "between 10 and 600000, got 9"},
      {"heartbeat", "interval_ms", "600001", "heartbeat.interval_ms", "got 600001"},
      {"heartbeat", "timeout_ms", "3600001", "heartbeat.timeout_ms",
       "must be at most 3600000, got 3600001"},
      {"heartbeat", "initial_dead_time_ms", "-1", "heartbeat.initial_dead_time_ms",
       "between 0 and 86400000, got -1"},
      {"heartbeat", "initial_dead_time_ms", "86400001", "heartbeat.initial_dead_time_ms",
       "got 86400001"},
      {"connectivity", "interval_ms", "3600001", "connectivity.interval_ms",
       "between 10 and 3600000"},
      {"connectivity", "timeout_ms", "0", "connectivity.timeout_ms",
       "between 1 and connectivity.interval_ms (10000), got 0"},
      {"connectivity", "timeout_ms", "10001", "connectivity.timeout_ms", "got 10001"},
      {"service", "restart_backoff_min_ms", "0", "service[0].restart_backoff_min_ms",
       "between 1 and 600000, got 0"},
      {"service", "restart_backoff_max_ms", "50", "service[0].restart_backoff_max_ms",
       "between service[0].restart_backoff_min_ms (100) and 3600000, got 50"},
      {"service", "restart_backoff_max_ms", "3600001", "service[0].restart_backoff_max_ms",
       "got 3600001"},
      {"service", "stop_timeout_ms", "600001", "service[0].stop_timeout_ms", "got 600001"},
      {"notify", "timeout_ms", "0", "notify.timeout_ms", "between 1 and 600000, got 0"},
      {"heartbeat", "interval_ms", "-9223372036854775808", "heartbeat.interval_ms",
       "got -9223372036854775808"},
  };
  for (const TypeCase& c : cases) {
    Doc d = WithAllTables();
    (c.table == "service" ? d.services[0] : d[c.table])[c.key] = c.value;
    ExpectError(d, c.expected_key, c.expected_what);
  }
}

TEST_F(ConfigTest, RangeBoundsAreInclusive) {
  Doc d = WithAllTables();
  d["heartbeat"]["interval_ms"] = "10";
  d["heartbeat"]["timeout_ms"] = "3600000";
  d["heartbeat"]["initial_dead_time_ms"] = "86400000";
  d["connectivity"]["interval_ms"] = "10";
  d["connectivity"]["timeout_ms"] = "10";
  d.services[0]["restart_backoff_min_ms"] = "600000";
  d.services[0]["restart_backoff_max_ms"] = "600000";
  d.services[0]["stop_timeout_ms"] = "1";
  d["notify"]["timeout_ms"] = "600000";
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->heartbeat_timeout_ms, 3600000);
  EXPECT_EQ(r->connectivity_timeout_ms, 10);
  EXPECT_EQ(r->services[0].restart_backoff_max_ms, 600000);
}

TEST_F(ConfigTest, HeartbeatTimeoutMustExceedInterval) {
  Doc d = Minimal();
  d["heartbeat"]["interval_ms"] = "1000";
  d["heartbeat"]["timeout_ms"] = "500";
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.timeout_ms: must be greater than heartbeat.interval_ms "
                            "(1000), got 500");
  d["heartbeat"]["timeout_ms"] = "1000";
  ExpectError(d, "heartbeat.timeout_ms", "got 1000");
  d["heartbeat"].erase("timeout_ms");
  d["heartbeat"]["interval_ms"] = "40000";  // above the default timeout
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.timeout_ms: must be greater than heartbeat.interval_ms "
                            "(40000), got 30000 (the default)");
}

TEST_F(ConfigTest, BadEndpointsAreRejected) {
  const std::string bad[] = {"1.2.3",
                             "1.2.3:7000",
                             "256.1.1.1:7000",
                             "1.2.3.4:0",
                             "1.2.3.4:65536",
                             "1.2.3.4",
                             "1.2.3.4:",
                             ":7000",
                             "1.2.3.4:80x",
                             " 1.2.3.4:80",
                             "1.2.3.4:80 ",
                             "1.2.3.4.5:80",
                             "01.2.3.4:80",
                             "1.2.3.4:080",
                             "host:80",
                             "[::1]:80",
                             "1..3.4:80",
                             "1.2.3.4:-80",
                             "1.2.3.4:+80",
                             "",
                             "1.2.3.4:999999999999"};
  for (const std::string& ep : bad) {
    Doc d = Minimal();
    d["heartbeat"]["listen"] = Str(ep);
    ExpectError(d, "heartbeat.listen", "expected \"a.b.c.d:port\", got \"" + ep + "\" (");
  }
  Doc d = Minimal();
  d["heartbeat"]["peer"] = Str("1.2.3.4:65536");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.peer: expected \"a.b.c.d:port\", got \"1.2.3.4:65536\" "
                            "(port must be a decimal number 1..65535)");
}

TEST_F(ConfigTest, ListenMustDifferFromPeer) {
  Doc d = Minimal();
  d["heartbeat"]["peer"] = Str("127.0.0.1:7001");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.peer: must differ from heartbeat.listen "
                            "(127.0.0.1:7001)");
  d["heartbeat"]["peer"] = Str("127.0.0.1:7002");  // same address, other port: fine
  EXPECT_TRUE(ParseDoc(d).ok());
}

TEST_F(ConfigTest, CrossoverNeedsBothEndpoints) {
  Doc d = Minimal();
  d["heartbeat"]["crossover_listen"] = Str("10.0.0.1:7003");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.crossover_peer: required when "
                            "heartbeat.crossover_listen is set (give both or neither)");
  d = Minimal();
  d["heartbeat"]["crossover_peer"] = Str("10.0.0.2:7003");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": heartbeat.crossover_listen: required when "
                            "heartbeat.crossover_peer is set (give both or neither)");
}

TEST_F(ConfigTest, CrossoverMustDifferFromManagementEndpoints) {
  struct Case {
    std::string xlisten, xpeer, key, what;
  } cases[] = {
      {"127.0.0.1:7001", "10.0.0.2:7004", "heartbeat.crossover_listen",
       "must differ from heartbeat.listen (127.0.0.1:7001)"},
      {"127.0.0.2:7001", "10.0.0.2:7004", "heartbeat.crossover_listen",
       "must differ from heartbeat.peer (127.0.0.2:7001)"},
      {"10.0.0.1:7003", "127.0.0.2:7001", "heartbeat.crossover_peer",
       "must differ from heartbeat.peer (127.0.0.2:7001)"},
      {"10.0.0.1:7003", "10.0.0.1:7003", "heartbeat.crossover_peer",
       "must differ from heartbeat.crossover_listen (10.0.0.1:7003)"},
  };
  for (const Case& c : cases) {
    Doc d = Minimal();
    d["heartbeat"]["crossover_listen"] = Str(c.xlisten);
    d["heartbeat"]["crossover_peer"] = Str(c.xpeer);
    ExpectError(d, c.key, c.what);
  }
  Doc d = Minimal();
  d["heartbeat"]["crossover_listen"] = Str("bad");
  d["heartbeat"]["crossover_peer"] = Str("10.0.0.2:7004");
  ExpectError(d, "heartbeat.crossover_listen", "expected \"a.b.c.d:port\"");
}

TEST_F(ConfigTest, ConnectivityPeersAreCheckedOneByOne) {
  Doc d = Minimal();
  d["connectivity"]["peers"] = "[\"127.0.0.1:22\", \"127.0.0.1\"]";
  ExpectError(d, "connectivity.peers[1]", "got \"127.0.0.1\" (no \":port\")");
  d["connectivity"]["peers"] = "[\"127.0.0.1:22\", \"127.0.0.3:22\", \"127.0.0.1:22\"]";
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": connectivity.peers[2]: duplicate of connectivity.peers[0] "
                            "(127.0.0.1:22)");
  std::string many = "[";
  for (int i = 1; i <= 65; ++i) many += "\"127.0.0." + std::to_string(i) + ":22\",";
  d["connectivity"]["peers"] = many + "]";
  ExpectError(d, "connectivity.peers", "must have at most 64 elements, got 65");
}

TEST_F(ConfigTest, ConnectivityRequire) {
  Doc d = Minimal();
  d["connectivity"]["require"] = Str("any");
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->connectivity_require_all);
  d["connectivity"]["require"] = Str("most");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": connectivity.require: must be one of \"any\", \"all\"; got "
                            "\"most\"");
}

TEST_F(ConfigTest, DuplicateServiceNames) {
  Doc d = WithAllTables();
  d.services.push_back({{"name", Str("other")}, {"command", "[\"/bin/true\"]"}});
  d.services.push_back({{"name", Str("collector")}, {"command", "[\"/bin/false\"]"}});
  EXPECT_EQ(ErrorOf(d), path_ + ": service[2].name: duplicate service name \"collector\"");
}

TEST_F(ConfigTest, EmptyCommands) {
  Doc d = WithAllTables();
  d.services[0]["command"] = "[]";
  EXPECT_EQ(ErrorOf(d),
            path_ + ": service[0].command: must not be empty (give at least the program)");
  d.services[0]["command"] = "[\"/bin/x\", \"\"]";
  EXPECT_EQ(ErrorOf(d), path_ + ": service[0].command[1]: must not be empty");
  d.services[0]["command"] = "[\"/bin/\\u0000x\"]";
  EXPECT_EQ(ErrorOf(d), path_ + ": service[0].command[0]: must not contain a NUL byte");
  d = WithAllTables();
  d["notify"]["command"] = "[]";
  ExpectError(d, "notify.command", "must not be empty");
  d["notify"]["command"] = "[\"\"]";
  ExpectError(d, "notify.command[0]", "must not be empty");
}

TEST_F(ConfigTest, EmptyServiceListIsAllowed) {
  Doc d = Minimal();
  d.prefix = "service = []\n";
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->services.empty());
}

TEST_F(ConfigTest, NamesAreChecked) {
  Doc d = Minimal();
  d["cluster"]["name"] = Str(std::string(63, 'c'));
  d["host"]["name"] = Str("a.b-c_D9");
  ASSERT_TRUE(ParseDoc(d).ok());
  d["cluster"]["name"] = Str(std::string(64, 'c'));
  ExpectError(d, "cluster.name", "must be 1 to 63 characters from A-Z a-z 0-9 _ . -");
  d = Minimal();
  d["host"]["name"] = Str("al pha");
  ExpectError(d, "host.name", "got \"al pha\"");
  d["host"]["name"] = Str("");
  ExpectError(d, "host.name", "must be 1 to 63");
  d = WithAllTables();
  d.services[0]["name"] = Str(std::string(64, 's'));
  ASSERT_TRUE(ParseDoc(d).ok());
  d.services[0]["name"] = Str(std::string(65, 's'));
  ExpectError(d, "service[0].name", "must be 1 to 64");
  d = Minimal();
  d["host"]["admin_group"] = Str("wheel;rm");
  ExpectError(d, "host.admin_group", "got \"wheel;rm\"");
}

TEST_F(ConfigTest, EnumsAreChecked) {
  Doc d = Minimal();
  d["host"]["role"] = Str("PRIMARY");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": host.role: must be one of \"primary\", \"secondary\"; got "
                            "\"PRIMARY\"");
  d = Minimal();
  d["log"]["level"] = Str("verbose");
  ExpectError(d, "log.level", "\"trace\", \"debug\", \"info\", \"warn\", \"error\"; got");
  d = Minimal();
  d["cluster"]["vip_mode"] = Str("alias");
  ExpectError(d, "cluster.vip_mode", "must be one of \"loopback\", \"interface\"; got \"alias\"");
  for (const std::string level : {"trace", "debug", "info", "warn", "error"}) {
    d = Minimal();
    d["log"]["level"] = Str(level);
    Result<Config> r = ParseDoc(d);
    ASSERT_TRUE(r.ok()) << level;
    EXPECT_EQ(r->log_level, level);
  }
}

TEST_F(ConfigTest, InterfaceModeNeedsAnInterfaceAndTakesGarpSettings) {
  Doc d = Minimal();
  d["cluster"]["vip_mode"] = Str("interface");
  d["cluster"]["vip"] = Str("198.18.0.10");
  ExpectError(d, "host.interface", "required with cluster.vip_mode \"interface\"");
  d["host"]["interface"] = Str("averyverylongifname");
  ExpectError(d, "host.interface", "must be 1 to 13 characters");
  d["host"]["interface"] = Str("eth0");
  d["cluster"]["vip_prefix"] = "33";
  ExpectError(d, "cluster.vip_prefix", "33");
  d["cluster"]["vip_prefix"] = "16";
  d["vip"]["garp_count"] = "3";
  d["vip"]["garp_repeat_delay_ms"] = "2000";
  d["vip"]["garp_refresh_ms"] = "60000";
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->vip_mode, "interface");
  EXPECT_EQ(r->interface, "eth0");
  EXPECT_EQ(r->vip_prefix, 16);
  EXPECT_EQ(r->garp_count, 3);
  EXPECT_EQ(r->garp_repeat_count, 5);
  EXPECT_EQ(r->garp_repeat_delay_ms, 2000);
  EXPECT_EQ(r->garp_refresh_ms, 60000);
  d["vip"]["garp_count"] = "101";
  ExpectError(d, "vip.garp_count", "101");
  d["vip"]["garp_count"] = "5";
  d["vip"]["colour"] = Str("red");
  ExpectError(d, "vip.colour", "unknown key");
}

TEST_F(ConfigTest, IcmpPeersAndWitnesses) {
  Doc d = Minimal();
  d["connectivity"]["peers"] = "[\"127.0.0.5:22\"]";
  d["connectivity"]["icmp_peers"] = "[\"198.18.0.11\", \"198.18.0.12\"]";
  d["connectivity"]["witnesses"] = "[\"198.18.0.11:7790\"]";
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->connectivity_peers.size(), 3u);
  EXPECT_EQ(r->connectivity_peers[1].ToString(), "icmp:198.18.0.11");
  ASSERT_EQ(r->witnesses.size(), 1u);
  EXPECT_EQ(r->witnesses[0].ToString(), "198.18.0.11:7790");
  d["connectivity"]["icmp_peers"] = "[\"198.18.0.11:7\"]";
  ExpectError(d, "connectivity.icmp_peers[0]", "expected a dotted-quad IPv4 address");
  d["connectivity"]["icmp_peers"] = "[\"198.18.0.11\", \"198.18.0.11\"]";
  ExpectError(d, "connectivity.icmp_peers[1]", "duplicate ICMP peer");
  d["connectivity"]["icmp_peers"] = "[]";
  d["connectivity"]["witnesses"] = "[\"198.18.0.11\"]";
  ExpectError(d, "connectivity.witnesses[0]", "");
}

TEST_F(ConfigTest, VipIsChecked) {
  Doc d = Minimal();
  d["cluster"]["vip"] = Str("10.0.0.1");
  EXPECT_EQ(ErrorOf(d), path_ +
                            ": cluster.vip: must be in 127.0.0.0/8 with cluster.vip_mode "
                            "\"loopback\", got \"10.0.0.1\"");
  for (const std::string bad : {"1.2.3", "127.0.0.256", "127.0.0.1:80", "localhost"}) {
    d["cluster"]["vip"] = Str(bad);
    ExpectError(d, "cluster.vip", "expected a dotted-quad IPv4 address, got \"" + bad + "\"");
  }
  d["cluster"]["vip"] = Str("127.255.255.254");
  EXPECT_TRUE(ParseDoc(d).ok());
}

TEST_F(ConfigTest, EmptyPathsAreRejected) {
  Doc d = Minimal();
  d["host"]["run_dir"] = Str("");
  EXPECT_EQ(ErrorOf(d), path_ + ": host.run_dir: must not be empty");
  d = Minimal();
  d["log"]["file"] = Str("");
  ExpectError(d, "log.file", "must not be empty");
}

TEST_F(ConfigTest, KeyFileMissing) {
  Doc d = Minimal();
  d["cluster"]["key_file"] = Str("missing.key");
  EXPECT_EQ(ErrorOf(d), path_ + ": cluster.key_file: cannot open \"" + dir_ +
                            "/missing.key\": No such file or directory");
}

TEST_F(ConfigTest, KeyFileTooShort) {
  WriteFile(dir_ + "/cluster.key", std::string(31, 'k') + "\n", 0600);
  EXPECT_EQ(ErrorOf(Minimal()), path_ + ": cluster.key_file: key in \"" + dir_ +
                                    "/cluster.key\" is 31 bytes, must be at least 32");
  // Exactly 32 bytes plus one newline is enough; only one newline is stripped.
  WriteFile(dir_ + "/cluster.key", std::string(32, 'k') + "\n", 0600);
  Result<Config> r = ParseDoc(Minimal());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cluster_key, std::string(32, 'k'));
  WriteFile(dir_ + "/cluster.key", std::string(31, 'k') + "\n\n", 0600);
  r = ParseDoc(Minimal());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cluster_key, std::string(31, 'k') + "\n");
  WriteFile(dir_ + "/cluster.key", "", 0600);
  ExpectError(Minimal(), "cluster.key_file", "is 0 bytes, must be at least 32");
}

TEST_F(ConfigTest, KeyFileModeMustBePrivate) {
  for (const mode_t mode : {0644, 0640, 0604, 0602, 0620, 0601}) {
    WriteFile(dir_ + "/cluster.key", std::string(kKey), mode);
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(ErrorOf(Minimal()), path_ + ": cluster.key_file: \"" + dir_ +
                                      "/cluster.key\" has mode " + octal +
                                      "; it must not be readable or writable by group or "
                                      "others (chmod 600)");
  }
  WriteFile(dir_ + "/cluster.key", std::string(kKey), 0400);
  EXPECT_TRUE(ParseDoc(Minimal()).ok());
}

TEST_F(ConfigTest, KeyFileMustBeRegularFile) {
  ASSERT_EQ(::mkdir((dir_ + "/keydir").c_str(), 0700), 0);
  Doc d = Minimal();
  d["cluster"]["key_file"] = Str("keydir");
  EXPECT_EQ(ErrorOf(d),
            path_ + ": cluster.key_file: \"" + dir_ + "/keydir\" is not a regular file");
  ASSERT_EQ(::mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
  d["cluster"]["key_file"] = Str("fifo");  // must not hang
  ExpectError(d, "cluster.key_file", "is not a regular file");
}

TEST_F(ConfigTest, KeyFileLimitIsEnforced) {
  WriteFile(dir_ + "/cluster.key", std::string(64 * 1024 + 1, 'k'), 0600);
  ExpectError(Minimal(), "cluster.key_file", "is larger than 65536 bytes");
}

TEST_F(ConfigTest, TextErrorsComeBeforeKeyFileErrors) {
  Doc d = Minimal();
  d["cluster"]["key_file"] = Str("missing.key");
  d["log"]["level"] = Str("loud");
  ExpectError(d, "log.level", "got \"loud\"");
}

TEST_F(ConfigTest, ControlSocketPathLimit) {
  Doc d = Minimal();
  d["api"]["control_socket"] = Str("/" + std::string(106, 's'));  // 107 bytes: fits
  EXPECT_TRUE(ParseDoc(d).ok());
  d["api"]["control_socket"] = Str("/" + std::string(107, 's'));
  ExpectError(d, "api.control_socket", "must be at most 107 bytes (the Unix socket path limit)");
  d = Minimal();
  d["host"]["run_dir"] = Str("/" + std::string(100, 'r'));
  ExpectError(d, "api.control_socket", "the default <host.run_dir>/tandemd.sock must be at most");
}

TEST_F(ConfigTest, TooManyServices) {
  Doc d = Minimal();
  for (int i = 0; i < 65; ++i) {
    d.services.push_back({{"name", Str("s" + std::to_string(i))}, {"command", "[\"x\"]"}});
  }
  EXPECT_EQ(ErrorOf(d), path_ + ": service: at most 64 services are allowed, got 65");
  d.services.pop_back();
  EXPECT_TRUE(ParseDoc(d).ok());
}

TEST_F(ConfigTest, MessagesStartWithPathAndNameTheDottedKey) {
  Doc d = WithAllTables();
  d.services[0]["stop_timeout_ms"] = "0";
  const std::string m = ErrorOf(d);
  EXPECT_THAT(m, StartsWith(path_ + ": "));
  EXPECT_THAT(m, HasSubstr(": service[0].stop_timeout_ms: "));
  EXPECT_THAT(m, EndsWith("got 0"));
  EXPECT_EQ(m.find('\n'), std::string::npos);
  // The path is used as given, not made absolute.
  Result<Config> r = Parse("[bogus]\n", "rel/host.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "rel/host.toml: bogus: unknown key");
}

TEST_F(ConfigTest, GarbageNeverThrows) {
  const std::string inputs[] = {
      std::string("\0\0\0", 3),
      "\xff\xfe\xfd",
      "[[[[[[[[",
      "a = " + std::string(1000, '['),
      "x = 99999999999999999999999",
      "[cluster]\nname = \"\xc3\x28\"\n",
      "[host]\nname = '''\n",
      "[heartbeat]\ninterval_ms = 0x7fffffffffffffff\n",
      std::string(10000, '='),
      "\"\\u0000\" = 1\n",
  };
  for (const std::string& text : inputs) {
    Result<Config> r = Parse(text, path_);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), StartsWith(path_ + ":"));
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  }
}

// One random edit: flip a bit, truncate, insert a random byte or insert a
// TOML token.
void Mutate(std::mt19937_64& rng, std::string* text) {
  static const std::string kTokens[] = {"[",
                                        "]",
                                        "[[",
                                        "]]",
                                        "\"",
                                        "'''",
                                        "=",
                                        "\n",
                                        ",",
                                        "0",
                                        "-1",
                                        "{",
                                        "}",
                                        ".",
                                        ":",
                                        "\\u0000",
                                        "99999999999999999999",
                                        "1979-05-27",
                                        "true",
                                        "#"};
  const size_t pos = text->empty() ? 0 : rng() % text->size();
  switch (rng() % 4) {
    case 0:
      if (!text->empty()) (*text)[pos] = static_cast<char>((*text)[pos] ^ (1u << (rng() % 8)));
      break;
    case 1:
      text->resize(pos);
      break;
    case 2:
      text->insert(pos, 1, static_cast<char>(rng() % 256));
      break;
    default:
      text->insert(pos, kTokens[rng() % std::size(kTokens)]);
      break;
  }
}

// Mutates a valid config 2000 times (1 to 4 edits each); Parse must never
// crash or throw, and must either succeed or return one line starting with
// the path.
TEST_F(ConfigTest, FuzzedConfigsNeverCrash) {
  const std::string base = Full().Render();
  constexpr uint64_t kSeed = 20240601;
  std::mt19937_64 rng(kSeed);
  int successes = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text = base;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) Mutate(rng, &text);
    Result<Config> r = Parse(text, path_);
    if (r.ok()) {
      ++successes;
      continue;
    }
    const std::string& msg = r.status().message();
    ASSERT_THAT(msg, StartsWith(path_ + ":")) << "seed=" << kSeed << " iter=" << iter;
    ASSERT_EQ(msg.find('\n'), std::string::npos) << "seed=" << kSeed << " iter=" << iter << msg;
    ASSERT_EQ(msg.find('\r'), std::string::npos) << "seed=" << kSeed << " iter=" << iter << msg;
  }
  // Some mutations (inside comments or string values) leave a valid file.
  EXPECT_GT(successes, 0);
}

TEST(EndpointTest, ParsesValidEndpoints) {
  Result<Endpoint> e = ParseEndpoint("192.168.0.1:7789");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->host, "192.168.0.1");
  EXPECT_EQ(e->port, 7789);
  e = ParseEndpoint("0.0.0.0:1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 1);
  e = ParseEndpoint("255.255.255.255:65535");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 65535);
}

TEST(EndpointTest, ErrorsSayWhatIsWrong) {
  EXPECT_EQ(ParseEndpoint("1.2.3.4").status().message(),
            "expected \"a.b.c.d:port\", got \"1.2.3.4\" (no \":port\")");
  EXPECT_EQ(ParseEndpoint("1.2.3:80").status().message(),
            "expected \"a.b.c.d:port\", got \"1.2.3:80\" (not a dotted-quad IPv4 address)");
  EXPECT_EQ(ParseEndpoint("1.2.3.4:0").status().message(),
            "expected \"a.b.c.d:port\", got \"1.2.3.4:0\" (port must be a decimal number "
            "1..65535)");
}

TEST(EndpointTest, ToString) {
  EXPECT_EQ((Endpoint{"10.1.2.3", 7789}).ToString(), "10.1.2.3:7789");
  EXPECT_EQ(Endpoint{}.ToString(), "");
  Result<Endpoint> e = ParseEndpoint("127.0.0.1:65535");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->ToString(), "127.0.0.1:65535");
}

TEST(ParseIPv4Test, StrictDottedQuad) {
  EXPECT_EQ(ParseIPv4("127.0.0.1"), 0x7F000001u);
  EXPECT_EQ(ParseIPv4("255.255.255.255"), 0xFFFFFFFFu);
  EXPECT_EQ(ParseIPv4("0.0.0.0"), 0u);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.", "1.2.3.256", "01.2.3.4", "1.2.3.0004",
                          "1.2.3.-4", "a.b.c.d", "1.2.3.4 ", "1,2.3.4", "1.2..4"}) {
    EXPECT_FALSE(ParseIPv4(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace tandem::config

namespace tandem::config {
namespace {

class CollectorConfigTest : public ConfigTest {
 protected:
  Doc WithReplication() const {
    Doc d = Minimal();
    d["replication"] = {{"store_dir", Str(dir_ + "/store")},
                        {"listen", Str("127.0.0.1:7789")},
                        {"peer", Str("127.0.0.2:7789")}};
    return d;
  }
};

TEST_F(CollectorConfigTest, AbsentSectionMeansNoCollector) {
  Result<Config> r = ParseDoc(WithReplication());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->collector.enabled);
}

TEST_F(CollectorConfigTest, EmptySectionGetsDefaultsOnTheVip) {
  Doc d = WithReplication();
  d["collector"];
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const CollectorConfig& k = r->collector;
  EXPECT_TRUE(k.enabled);
  EXPECT_EQ(k.listen_address, "127.0.0.100");
  EXPECT_EQ(k.syslog_udp_port, 514);
  EXPECT_EQ(k.syslog_tcp_port, 514);
  EXPECT_EQ(k.relp_port, 2514);
  EXPECT_EQ(k.netflow_port, 2055);
  EXPECT_EQ(k.message_bytes_max, 65536);
  EXPECT_EQ(k.capacity_stop_percent, 95);
  EXPECT_EQ(k.capacity_resume_percent, 90);
  EXPECT_EQ(k.status_file, "/run/tandem/collector.json");
}

TEST_F(CollectorConfigTest, EveryKeyIsRead) {
  Doc d = WithReplication();
  d["collector"] = {{"listen_address", Str("127.0.0.7")}, {"syslog_udp_port", "10514"},
                    {"syslog_tcp_port", "10515"},        {"relp_port", "10516"},
                    {"netflow_port", "0"},               {"message_bytes_max", "8192"},
                    {"batch_ms", "20"},                  {"queue_mb", "128"},
                    {"capacity_stop_percent", "80"},     {"capacity_resume_percent", "70"},
                    {"retention_days", "30"},            {"retention_gb", "500"},
                    {"segment_mb", "64"},                {"segment_seconds", "600"},
                    {"tcp_connections_max", "100"},      {"status_file", Str("c.json")}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const CollectorConfig& k = r->collector;
  EXPECT_EQ(k.listen_address, "127.0.0.7");
  EXPECT_EQ(k.syslog_udp_port, 10514);
  EXPECT_EQ(k.syslog_tcp_port, 10515);
  EXPECT_EQ(k.relp_port, 10516);
  EXPECT_EQ(k.netflow_port, 0);
  EXPECT_EQ(k.message_bytes_max, 8192);
  EXPECT_EQ(k.batch_ms, 20);
  EXPECT_EQ(k.queue_mb, 128);
  EXPECT_EQ(k.capacity_stop_percent, 80);
  EXPECT_EQ(k.capacity_resume_percent, 70);
  EXPECT_EQ(k.retention_days, 30);
  EXPECT_EQ(k.retention_gb, 500);
  EXPECT_EQ(k.segment_mb, 64);
  EXPECT_EQ(k.segment_seconds, 600);
  EXPECT_EQ(k.tcp_connections_max, 100);
  EXPECT_EQ(k.status_file, dir_ + "/c.json");
}

TEST_F(CollectorConfigTest, BadValuesNameTheKey) {
  Doc d = Minimal();
  d["collector"];
  ExpectError(d, "collector.listen_address", "needs [replication]");
  struct Case {
    const char* key;
    std::string value;
    const char* what;
  } cases[] = {
      {"listen_address", Str("host.example"), "dotted-quad"},
      {"syslog_udp_port", "65536", "65535"},
      {"relp_port", "-1", ""},
      {"relp_port", "514", "must differ from syslog_tcp_port"},
      {"netflow_port", "514", "must differ from syslog_udp_port"},
      {"message_bytes_max", "100", ""},
      {"batch_ms", "0", ""},
      {"queue_mb", "4096", ""},
      {"capacity_stop_percent", "101", ""},
      {"capacity_resume_percent", "95", "must be below capacity_stop_percent"},
      {"segment_mb", "0", ""},
      {"tcp_connections_max", "0", ""},
      {"bogus", "1", "unknown key"},
      {"status_file", "1", ""},
  };
  for (const Case& c : cases) {
    Doc bad = WithReplication();
    bad["collector"] = {{c.key, c.value}};
    ExpectError(bad, std::string("collector.") + c.key, c.what);
  }
}

TEST_F(CollectorConfigTest, HttpApiNeedsAPrivateTokenFile) {
  Doc d = Minimal();
  d["api"] = {{"http_listen", Str("127.0.0.1:8443")}};
  ExpectError(d, "api.token_file", "");
  d["api"]["token_file"] = Str("api.token");
  WriteFile(dir_ + "/api.token", "0123456789abcdef0123456789abcdef\n", 0644);
  ExpectError(d, "api.token_file", "");
  WriteFile(dir_ + "/api.token", "0123456789abcdef0123456789abcdef\n", 0600);
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->http_listen.ToString(), "127.0.0.1:8443");
  EXPECT_EQ(r->api_token_file, dir_ + "/api.token");
  EXPECT_EQ(r->api_token, "0123456789abcdef0123456789abcdef");
}

TEST_F(ConfigTest, ConsoleAbsentMeansNoConsole) {
  Result<Config> r = ParseDoc(Minimal());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->console.enabled);
}

TEST_F(ConfigTest, ConsoleDefaults) {
  Doc d = Minimal();
  d["console"] = {{"listen", Str("127.0.0.1:8443")}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ConsoleConfig& k = r->console;
  EXPECT_TRUE(k.enabled);
  EXPECT_EQ(k.listen.ToString(), "127.0.0.1:8443");
  EXPECT_EQ(k.state_dir, "/var/lib/tandem/console");
  EXPECT_EQ(k.session_ttl_s, 3600);
  EXPECT_EQ(k.tls_cert, "");
  EXPECT_EQ(k.tls_key, "");
}

TEST_F(ConfigTest, ConsoleEveryKeyIsRead) {
  Doc d = Minimal();
  d["console"] = {{"enabled", "false"},          {"listen", Str("0.0.0.0:9443")},
                  {"state_dir", Str("console")}, {"session_ttl_s", "60"},
                  {"tls_cert", Str("c.pem")},    {"tls_key", Str("/etc/tandem/k.pem")}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ConsoleConfig& k = r->console;
  EXPECT_FALSE(k.enabled);
  EXPECT_EQ(k.listen.ToString(), "0.0.0.0:9443");
  EXPECT_EQ(k.state_dir, dir_ + "/console");
  EXPECT_EQ(k.session_ttl_s, 60);
  EXPECT_EQ(k.tls_cert, dir_ + "/c.pem");
  EXPECT_EQ(k.tls_key, "/etc/tandem/k.pem");
}

TEST_F(ConfigTest, ConsoleBadValuesNameTheKey) {
  struct Case {
    const char* key;
    std::string value;
    const char* what;
  } cases[] = {
      {"listen", Str("localhost:8443"), "a.b.c.d:port"},
      {"listen", "8443", "expected a string"},
      {"enabled", Str("yes"), "expected a boolean"},
      {"session_ttl_s", "0", "between 1 and 2592000"},
      {"session_ttl_s", "2592001", "between 1 and 2592000"},
      {"state_dir", Str(""), "must not be empty"},
      {"tls_cert", Str("c.pem"), ""},
      {"bogus", "1", "unknown key"},
  };
  for (const Case& c : cases) {
    Doc d = Minimal();
    d["console"] = {{"listen", Str("127.0.0.1:8443")}};
    d["console"][c.key] = c.value;
    // tls_cert alone: the error names the missing tls_key.
    ExpectError(d, std::string("console.") + (std::string(c.key) == "tls_cert" ? "tls_key" : c.key),
                c.what);
  }
  Doc d = Minimal();
  d["console"] = {{"tls_key", Str("k.pem")}};
  ExpectError(d, "console.listen", "required key is missing");
  d["console"]["listen"] = Str("127.0.0.1:8443");
  ExpectError(d, "console.tls_cert", "required when tls_key is set");
  Doc inside = Minimal();
  inside["replication"] = {{"store_dir", Str(dir_ + "/store")},
                           {"listen", Str("127.0.0.1:7789")},
                           {"peer", Str("127.0.0.2:7789")}};
  inside["console"] = {{"listen", Str("127.0.0.1:8443")}, {"state_dir", Str(dir_ + "/store/console")}};
  ExpectError(inside, "console.state_dir", "outside replication.store_dir");
}

TEST_F(ConfigTest, AgentAbsentMeansNoAgent) {
  Result<Config> r = ParseDoc(Minimal());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->agent.enabled);
  EXPECT_FALSE(r->agent_only);
}

TEST_F(ConfigTest, AgentDefaults) {
  Doc d = Minimal();
  d["replication"] = {{"store_dir", Str(dir_ + "/store")},
                      {"listen", Str("127.0.0.1:7789")},
                      {"peer", Str("127.0.0.2:7789")}};
  d["agent"] = {{"listen", Str("127.0.0.1:7790")}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const AgentConfig& k = r->agent;
  EXPECT_TRUE(k.enabled);
  EXPECT_FALSE(r->agent_only);
  EXPECT_EQ(k.listen.ToString(), "127.0.0.1:7790");
  EXPECT_EQ(k.state_dir, "/var/lib/tandem/agent");
  EXPECT_EQ(k.packages_dir, "/var/lib/tandem/agent/packages");
  EXPECT_EQ(k.store_dir, dir_ + "/store");
  EXPECT_EQ(k.transient_dir, "");
  EXPECT_FALSE(k.external_storage);
  EXPECT_FALSE(k.virtual_appliance);
}

TEST_F(ConfigTest, AgentEveryKeyIsRead) {
  Doc d = Minimal();
  d["agent"] = {{"listen", Str("0.0.0.0:7790")},      {"state_dir", Str("agent")},
                {"packages_dir", Str("/opt/pkgs")},    {"store_dir", Str("/store")},
                {"transient_dir", Str("transient")},   {"external_storage", "true"},
                {"virtual", "true"}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const AgentConfig& k = r->agent;
  EXPECT_EQ(k.listen.ToString(), "0.0.0.0:7790");
  EXPECT_EQ(k.state_dir, dir_ + "/agent");
  EXPECT_EQ(k.packages_dir, "/opt/pkgs");
  EXPECT_EQ(k.store_dir, "/store");
  EXPECT_EQ(k.transient_dir, dir_ + "/transient");
  EXPECT_TRUE(k.external_storage);
  EXPECT_TRUE(k.virtual_appliance);
}

TEST_F(ConfigTest, AgentBadValuesNameTheKey) {
  struct Case {
    const char* key;
    std::string value;
    const char* what;
  } cases[] = {
      {"listen", Str("agent:7790"), "a.b.c.d:port"},
      {"listen", "7790", "expected a string"},
      {"external_storage", Str("no"), "expected a boolean"},
      {"virtual", "1", "expected a boolean"},
      {"state_dir", Str(""), "must not be empty"},
      {"packages_dir", "3", "expected a string"},
      {"bogus", "1", "unknown key"},
  };
  for (const Case& c : cases) {
    Doc d = Minimal();
    d["agent"] = {{"listen", Str("127.0.0.1:7790")}};
    d["agent"][c.key] = c.value;
    ExpectError(d, std::string("agent.") + c.key, c.what);
  }
  Doc d = Minimal();
  d["agent"] = {{"virtual", "true"}};
  ExpectError(d, "agent.listen", "required key is missing");
  Doc same = Minimal();
  same["console"] = {{"listen", Str("127.0.0.1:8443")}};
  same["agent"] = {{"listen", Str("127.0.0.1:8443")}};
  ExpectError(same, "agent.listen", "must differ from console.listen");
  Doc inside = Minimal();
  inside["replication"] = {{"store_dir", Str(dir_ + "/store")},
                           {"listen", Str("127.0.0.1:7789")},
                           {"peer", Str("127.0.0.2:7789")}};
  inside["agent"] = {{"listen", Str("127.0.0.1:7790")}, {"state_dir", Str(dir_ + "/store/a")}};
  ExpectError(inside, "agent.state_dir", "outside replication.store_dir");
}

// [host] + [agent], no [cluster]/[heartbeat]: an unclustered managed host.
Doc AgentOnly() {
  Doc d;
  d["host"] = {{"name", Str("managed-1")},
               {"state_dir", Str("/var/lib/tandem")},
               {"run_dir", Str("/run/tandem")}};
  d["agent"] = {{"listen", Str("0.0.0.0:7790")}, {"store_dir", Str("/store")}};
  return d;
}

TEST_F(ConfigTest, AgentOnlyHostIsValidWithoutClusterAndHeartbeat) {
  Doc d = AgentOnly();
  d["log"] = {{"level", Str("debug")}};
  d["console"] = {{"listen", Str("127.0.0.1:8443")}};
  Result<Config> r = ParseDoc(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->agent_only);
  EXPECT_TRUE(r->agent.enabled);
  EXPECT_EQ(r->host_name, "managed-1");
  EXPECT_EQ(r->agent.store_dir, "/store");
  EXPECT_EQ(r->cluster_name, "");
  EXPECT_EQ(r->cluster_key, "");  // no key file is read
  EXPECT_TRUE(r->console.enabled);
  EXPECT_EQ(r->log_level, "debug");
  // host.role may still be given (and is checked).
  d["host"]["role"] = Str("secondary");
  EXPECT_TRUE(ParseDoc(d).ok());
  d["host"]["role"] = Str("tertiary");
  ExpectError(d, "host.role", "primary");
}

TEST_F(ConfigTest, AgentOnlyHostRefusesHaSections) {
  for (const char* name : {"connectivity", "notify", "vip", "replication", "collector"}) {
    Doc d = AgentOnly();
    d[name];
    ExpectError(d, name, "needs [cluster] and [heartbeat]");
  }
  Doc svc = AgentOnly();
  svc.services.push_back({{"name", Str("x")}, {"command", "[\"/bin/true\"]"}});
  ExpectError(svc, "service", "needs [cluster] and [heartbeat]");
  Doc http = AgentOnly();
  http["api"] = {{"http_listen", Str("127.0.0.1:8080")}, {"token_file", Str("tok")}};
  ExpectError(http, "api.http_listen", "needs [cluster] and [heartbeat]");
  // Without [agent], a missing [cluster] is still an error, as before.
  Doc none = AgentOnly();
  none.EraseTable("agent");
  ExpectError(none, "cluster.name", "required key is missing");
  // [cluster] without [heartbeat] is a clustered host with a missing key.
  Doc half = AgentOnly();
  half["cluster"] = {
      {"name", Str("lab")}, {"key_file", Str("cluster.key")}, {"vip", Str("127.0.0.100")}};
  half["host"]["role"] = Str("primary");
  ExpectError(half, "heartbeat.listen", "required key is missing");
  // The agent section is still validated.
  Doc bad = AgentOnly();
  bad["agent"]["listen"] = Str("nowhere");
  ExpectError(bad, "agent.listen", "a.b.c.d:port");
}

}  // namespace
}  // namespace tandem::config
