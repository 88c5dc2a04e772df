#include "svc/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "util/temp_dir.h"

namespace tandem::svc {
namespace {

// Generous limits: the machine is shared and noisy. Tests poll for the
// expected state and never assert how fast something happened.
constexpr int64_t kDeadlineMs = 10000;
constexpr int64_t kPollMs = 5;
constexpr int64_t kBackoffMinMs = 50;
constexpr int64_t kBackoffMaxMs = 400;

config::ServiceConfig Svc(const std::string& name, std::vector<std::string> command,
                          int64_t stop_timeout_ms = 5000) {
  config::ServiceConfig c;
  c.name = name;
  c.command = std::move(command);
  c.restart_backoff_min_ms = kBackoffMinMs;
  c.restart_backoff_max_ms = kBackoffMaxMs;
  c.stop_timeout_ms = stop_timeout_ms;
  return c;
}

config::ServiceConfig Sleeper(const std::string& name) { return Svc(name, {"sleep", "30"}); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// True if `pid` is gone or a zombie (dead; maybe not reaped by its parent).
bool Gone(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z';
}

// Reaps our child `pid` (waiting up to kDeadlineMs); nullopt if it did not exit.
std::optional<int> Reap(pid_t pid) {
  for (int64_t waited_ms = 0; waited_ms < kDeadlineMs; waited_ms += kPollMs) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;
    usleep(static_cast<useconds_t>(kPollMs * 1000));
  }
  return std::nullopt;
}

class SupervisorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (sup_) {
      bool stopped = false;
      sup_->StopAll([&] { stopped = true; });
      EXPECT_TRUE(RunUntil([&] { return stopped; })) << "StopAll never finished";
      sup_.reset();
    }
    if (HasFailure()) {
      for (const auto& line : logs_) std::cout << "  log: " << line << "\n";
    }
  }

  Supervisor& Make(std::vector<config::ServiceConfig> services) {
    sup_ = std::make_unique<Supervisor>(loop_, reaper_, std::move(services), dir_,
                                        [this](const std::string& level, const std::string& msg) {
                                          logs_.push_back(level + ": " + msg);
                                        });
    return *sup_;
  }

  // Runs the loop until `pred` holds (checked every kPollMs) or the
  // deadline passes; returns pred().
  bool RunUntil(const std::function<bool()>& pred, int64_t deadline_ms = kDeadlineMs) {
    if (pred()) return true;
    int64_t end = loop_.clock().NowMs() + deadline_ms;
    std::function<void()> poll = [&] {
      if (pred() || loop_.clock().NowMs() >= end) {
        loop_.Stop();
        return;
      }
      loop_.AddTimer(kPollMs, poll);
    };
    loop_.AddTimer(kPollMs, poll);
    loop_.Run();
    return pred();
  }

  // Runs the loop for `ms` regardless.
  void RunFor(int64_t ms) {
    RunUntil([] { return false; }, ms);
  }

  ServiceStatus Get(const std::string& name) const {
    for (const auto& s : sup_->Status()) {
      if (s.name == name) return s;
    }
    ADD_FAILURE() << "no service " << name;
    return {};
  }

  bool Logged(const std::string& text) const {
    for (const auto& line : logs_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  int CountLogged(const std::string& text) const {
    int n = 0;
    for (const auto& line : logs_) n += line.find(text) != std::string::npos ? 1 : 0;
    return n;
  }

  // Delays from "restart in N ms" lines, in order.
  std::vector<int64_t> RestartDelays() const {
    std::vector<int64_t> out;
    const std::string marker = "restart in ";
    for (const auto& line : logs_) {
      size_t at = line.find(marker);
      if (at != std::string::npos) out.push_back(std::stoll(line.substr(at + marker.size())));
    }
    return out;
  }

  std::string PidsPath() const { return dir_ + "/services.pids"; }

  os::EventLoop loop_;
  os::ChildReaper reaper_{loop_};
  TempDir tmp_{"tandem-svc-test"};
  const std::string dir_ = tmp_.path();
  std::vector<std::string> logs_;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(SupervisorTest, StartAllRunsEveryServiceInItsOwnGroup) {
  Supervisor& sup = Make({Sleeper("a"), Sleeper("b")});
  EXPECT_FALSE(sup.AllRunning());
  sup.StartAll({});
  EXPECT_TRUE(sup.AllRunning());
  for (const auto& s : sup.Status()) {
    EXPECT_EQ(s.state, "running") << s.name;
    ASSERT_GT(s.pid, 0) << s.name;
    EXPECT_EQ(kill(s.pid, 0), 0) << s.name;
    EXPECT_EQ(getpgid(s.pid), s.pid) << s.name;
    EXPECT_EQ(s.restarts, 0);
    EXPECT_EQ(s.last_exit, "");
    EXPECT_TRUE(Logged("service " + s.name + " started (pid " + std::to_string(s.pid) + ")"));
  }
}

TEST_F(SupervisorTest, StartAllIsIdempotent) {
  Supervisor& sup = Make({Sleeper("a")});
  sup.StartAll({});
  int pid = Get("a").pid;
  sup.StartAll({});
  RunFor(50);
  EXPECT_EQ(Get("a").pid, pid);
  EXPECT_EQ(Get("a").state, "running");
}

TEST_F(SupervisorTest, PidsFileListsLiveProcesses) {
  Supervisor& sup = Make({Sleeper("a"), Sleeper("b")});
  sup.StartAll({});
  std::string expected;
  for (const auto& s : sup.Status()) {
    expected += s.name + " " + std::to_string(s.pid) + " " +
                std::to_string(os::ProcessStartTime(s.pid)) + "\n";
  }
  EXPECT_EQ(ReadFile(PidsPath()), expected);
  EXPECT_FALSE(FileExists(PidsPath() + ".tmp"));
  bool stopped = false;
  sup.StopAll([&] { stopped = true; });
  ASSERT_TRUE(RunUntil([&] { return stopped; }));
  EXPECT_FALSE(FileExists(PidsPath()));
}

TEST_F(SupervisorTest, EnvironmentAndOutputFile) {
  Supervisor& sup =
      Make({Svc("web", {"sh", "-c", "echo vip=$TANDEM_VIP host=$TANDEM_HOST; exec sleep 30"})});
  sup.StartAll({{"TANDEM_VIP", "10.1.2.3"}, {"TANDEM_HOST", "alpha"}});
  std::string log_path = dir_ + "/service-web.log";
  ASSERT_TRUE(RunUntil([&] { return ReadFile(log_path).find('\n') != std::string::npos; }));
  EXPECT_EQ(ReadFile(log_path), "vip=10.1.2.3 host=alpha\n");
}

TEST_F(SupervisorTest, KilledServiceIsRestarted) {
  Supervisor& sup = Make({Sleeper("a"), Sleeper("b")});
  sup.StartAll({});
  int old_pid = Get("a").pid;
  int other_pid = Get("b").pid;
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return Get("a").restarts == 1 && Get("a").state == "running"; }));
  ServiceStatus a = Get("a");
  EXPECT_NE(a.pid, old_pid);
  EXPECT_EQ(kill(a.pid, 0), 0);
  EXPECT_EQ(a.last_exit, "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE(Logged("service a (pid " + std::to_string(old_pid) +
                     ") exited unexpectedly: killed by signal 9 (SIGKILL)"));
  EXPECT_TRUE(Logged("service a: restart in 50 ms"));
  EXPECT_EQ(Get("b").pid, other_pid);  // the crash did not touch b
  EXPECT_EQ(Get("b").restarts, 0);
  EXPECT_NE(ReadFile(PidsPath()).find("a " + std::to_string(a.pid) + " "), std::string::npos);
  EXPECT_TRUE(sup.AllRunning());
}

TEST_F(SupervisorTest, BackoffDoublesUpToMax) {
  Supervisor& sup = Make({Svc("crashy", {"sh", "-c", "exit 3"})});
  sup.StartAll({});
  std::set<std::string> states_seen;
  ASSERT_TRUE(RunUntil([&] {
    states_seen.insert(Get("crashy").state);
    return Get("crashy").restarts >= 5 && RestartDelays().size() >= 6;
  }));
  EXPECT_TRUE(states_seen.count("backoff"));
  std::vector<int64_t> delays = RestartDelays();
  delays.resize(6);
  EXPECT_EQ(delays, (std::vector<int64_t>{50, 100, 200, 400, 400, 400}));
  EXPECT_EQ(Get("crashy").last_exit, "exited with status 3");
  EXPECT_FALSE(sup.AllRunning());
}

// Slow (~11 s): kStableRunMs is 10 s.
TEST_F(SupervisorTest, BackoffResetsAfterServiceRanTenSeconds) {
  std::string counter = dir_ + "/runs";
  std::string script = "n=$(cat " + counter + " 2>/dev/null || echo 0); n=$((n+1)); echo $n > " +
                       counter + "; if [ $n -eq 3 ]; then sleep 10.5; fi; exit 1";
  Make({Svc("flappy", {"sh", "-c", script})}).StartAll({});
  ASSERT_TRUE(RunUntil([&] { return RestartDelays().size() >= 4; }, 3 * kDeadlineMs));
  std::vector<int64_t> delays = RestartDelays();
  delays.resize(4);
  EXPECT_EQ(delays, (std::vector<int64_t>{50, 100, 50, 100}));
}

TEST_F(SupervisorTest, SpawnFailureCountsAsCrash) {
  Supervisor& sup = Make({Svc("ghost", {"/nonexistent/tandem-service"})});
  sup.StartAll({});
  ASSERT_TRUE(RunUntil([&] { return Get("ghost").restarts >= 2; }));
  EXPECT_EQ(Get("ghost").last_exit,
            "cannot execute '/nonexistent/tandem-service': No such file or directory");
  EXPECT_TRUE(Logged("error: service ghost: cannot start: cannot execute"));
  EXPECT_FALSE(sup.AllRunning());
}

TEST_F(SupervisorTest, StopAllTerminatesEverythingAndCallsDone) {
  Supervisor& sup = Make({Sleeper("a"), Sleeper("b")});
  sup.StartAll({});
  std::vector<int> pids;
  for (const auto& s : sup.Status()) pids.push_back(s.pid);
  int done = 0;
  sup.StopAll([&] { ++done; });
  EXPECT_EQ(Get("a").state, "stopping");
  ASSERT_TRUE(RunUntil([&] { return done > 0; }));
  RunFor(50);
  EXPECT_EQ(done, 1);
  for (const auto& s : sup.Status()) {
    EXPECT_EQ(s.state, "stopped");
    EXPECT_EQ(s.pid, 0);
    EXPECT_EQ(s.restarts, 0);  // an expected exit is not a crash
    EXPECT_EQ(s.last_exit, "");
    EXPECT_TRUE(Logged("service " + s.name + " stopped (killed by signal 15 (SIGTERM))"));
  }
  for (int pid : pids) EXPECT_EQ(kill(pid, 0), -1) << pid << " still exists";
  EXPECT_FALSE(sup.AllRunning());
}

TEST_F(SupervisorTest, StopAllWithNothingRunningCallsDoneFromLoop) {
  Supervisor& sup = Make({Sleeper("a")});
  bool done = false;
  sup.StopAll([&] { done = true; });
  EXPECT_FALSE(done);  // runs on the loop, not inside StopAll
  EXPECT_TRUE(RunUntil([&] { return done; }));
}

TEST_F(SupervisorTest, StopAllTwiceCallsBothDones) {
  Supervisor& sup = Make({Sleeper("a")});
  sup.StartAll({});
  int done = 0;
  sup.StopAll([&] { ++done; });
  sup.StopAll([&] { ++done; });
  ASSERT_TRUE(RunUntil([&] { return done == 2; }));
  EXPECT_EQ(Get("a").state, "stopped");
}

TEST_F(SupervisorTest, ServiceIgnoringSigtermIsKilledAfterTimeout) {
  constexpr int64_t kStopTimeoutMs = 300;
  Supervisor& sup = Make(
      {Svc("stubborn", {"sh", "-c", "trap '' TERM; echo ready; exec sleep 30"}, kStopTimeoutMs)});
  sup.StartAll({});
  std::string log_path = dir_ + "/service-stubborn.log";
  ASSERT_TRUE(RunUntil([&] { return ReadFile(log_path) == "ready\n"; }));
  int pid = Get("stubborn").pid;
  int64_t start = loop_.clock().NowMs();
  bool done = false;
  sup.StopAll([&] { done = true; });
  ASSERT_TRUE(RunUntil([&] { return done; }));
  EXPECT_GE(loop_.clock().NowMs() - start, kStopTimeoutMs);
  EXPECT_TRUE(Logged("warn: service stubborn (pid " + std::to_string(pid) +
                     ") still running 300 ms after SIGTERM; sending SIGKILL"));
  EXPECT_TRUE(Logged("service stubborn stopped (killed by signal 9 (SIGKILL))"));
  EXPECT_EQ(Get("stubborn").state, "stopped");
  EXPECT_EQ(Get("stubborn").restarts, 0);
}

TEST_F(SupervisorTest, StopAllCancelsPendingRestart) {
  constexpr int64_t kLongBackoffMs = 1000;
  config::ServiceConfig c = Svc("crashy", {"sh", "-c", "exit 1"});
  c.restart_backoff_min_ms = kLongBackoffMs;
  Supervisor& sup = Make({c});
  sup.StartAll({});
  ASSERT_TRUE(RunUntil([&] { return Get("crashy").state == "backoff"; }));
  bool done = false;
  sup.StopAll([&] { done = true; });
  EXPECT_EQ(Get("crashy").state, "stopped");
  ASSERT_TRUE(RunUntil([&] { return done; }));
  RunFor(kLongBackoffMs + 500);
  EXPECT_EQ(Get("crashy").state, "stopped");
  EXPECT_EQ(Get("crashy").restarts, 0);
  EXPECT_TRUE(Logged("service crashy: pending restart cancelled"));
  EXPECT_EQ(CountLogged("service crashy started"), 1);  // only the first start
}

TEST_F(SupervisorTest, StartAfterStopStartsAgainWithFreshCounters) {
  Supervisor& sup = Make({Sleeper("a")});
  sup.StartAll({});
  ASSERT_EQ(kill(Get("a").pid, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return Get("a").restarts == 1 && Get("a").state == "running"; }));
  bool done = false;
  sup.StopAll([&] { done = true; });
  ASSERT_TRUE(RunUntil([&] { return done; }));
  sup.StartAll({});
  EXPECT_EQ(Get("a").state, "running");
  EXPECT_EQ(Get("a").restarts, 0);
  EXPECT_TRUE(sup.AllRunning());
}

TEST_F(SupervisorTest, StartAllWhileStoppingStartsAfterExit) {
  Supervisor& sup = Make({Sleeper("a")});
  sup.StartAll({});
  int old_pid = Get("a").pid;
  bool done = false;
  sup.StopAll([&] { done = true; });
  sup.StartAll({});
  ASSERT_TRUE(RunUntil([&] { return done && Get("a").state == "running"; }));
  EXPECT_NE(Get("a").pid, old_pid);
}

TEST_F(SupervisorTest, LeftoversInGroupDieWithLeader) {
  std::string bg_file = dir_ + "/bg.pid";
  Supervisor& sup =
      Make({Svc("forky", {"sh", "-c", "sleep 30 & echo $! > " + bg_file + "; wait"})});
  sup.StartAll({});
  ASSERT_TRUE(RunUntil([&] { return ReadFile(bg_file).find('\n') != std::string::npos; }));
  pid_t bg = std::stoi(ReadFile(bg_file));
  ASSERT_FALSE(Gone(bg));
  ASSERT_EQ(kill(Get("forky").pid, SIGKILL), 0);  // only the leader
  EXPECT_TRUE(RunUntil([&] { return Gone(bg); })) << "background child " << bg << " survived";
}

TEST_F(SupervisorTest, DestructorKillsServices) {
  Make({Sleeper("a")}).StartAll({});
  int pid = Get("a").pid;
  sup_.reset();
  EXPECT_TRUE(RunUntil([&] { return Gone(pid); }));
}

// A "previous run": a group (sh leader + background sleep) we spawn
// ourselves and record in services.pids by hand.
struct StaleGroup {
  pid_t leader = 0;
  pid_t member = 0;
};

StaleGroup SpawnStaleGroup(const std::string& dir) {
  std::string member_file = dir + "/member.pid";
  Result<pid_t> pid = os::Spawn({"sh", "-c", "sleep 30 & echo $! > " + member_file + "; wait"}, {});
  TANDEM_CHECK(pid.ok());
  for (int64_t waited_ms = 0; waited_ms < kDeadlineMs; waited_ms += kPollMs) {
    std::string text = ReadFile(member_file);
    if (text.find('\n') != std::string::npos) return {*pid, std::stoi(text)};
    usleep(static_cast<useconds_t>(kPollMs * 1000));
  }
  return {*pid, 0};
}

TEST_F(SupervisorTest, CleanupStaleKillsRecordedGroup) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // reap the orphaned member too
  StaleGroup old = SpawnStaleGroup(dir_);
  ASSERT_GT(old.member, 0);
  std::ofstream(PidsPath()) << "web " << old.leader << " " << os::ProcessStartTime(old.leader)
                            << "\n";
  Supervisor& sup = Make({Sleeper("web")});
  tandem::Status st = sup.CleanupStale();
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(FileExists(PidsPath()));
  EXPECT_TRUE(Gone(old.leader));
  std::optional<int> status = Reap(old.leader);  // before the loop's reaper can
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(os::DescribeWaitStatus(*status), "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE(RunUntil([&] { return Gone(old.member); })) << "group member survived";
  EXPECT_TRUE(Logged("killing service web (pid " + std::to_string(old.leader) + ")"));
}

TEST_F(SupervisorTest, CleanupStaleSparesPidWithOtherStartTime) {
  Result<pid_t> pid = os::Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok());
  std::ofstream(PidsPath()) << "web " << *pid << " " << os::ProcessStartTime(*pid) + 1 << "\n";
  Supervisor& sup = Make({Sleeper("web")});
  EXPECT_TRUE(sup.CleanupStale().ok());
  EXPECT_FALSE(FileExists(PidsPath()));
  EXPECT_FALSE(Gone(*pid)) << "a reused pid was killed";
  kill(*pid, SIGKILL);
  EXPECT_TRUE(Reap(*pid).has_value());
}

TEST_F(SupervisorTest, CleanupStaleWithoutFileIsOk) {
  Supervisor& sup = Make({Sleeper("web")});
  EXPECT_TRUE(sup.CleanupStale().ok());
}

TEST_F(SupervisorTest, CleanupStaleSkipsMalformedLinesAndRemovesFile) {
  Result<pid_t> pid = os::Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok());
  std::ofstream(PidsPath()) << "garbage\n"
                            << "a b c\n"
                            << "x 0 5\n"
                            << "x -5 5\n"
                            << "x 1 " << os::ProcessStartTime(1) + 1 << "\n"  // never matches
                            << "x 12 0\n"
                            << "x 99999999999999999999 5\n"
                            << "x 12 5 extra\n"
                            << "\n"
                            << "\x01\xff\xfe junk\n"
                            << "web " << *pid << " " << os::ProcessStartTime(*pid) << "\n";
  Supervisor& sup = Make({Sleeper("web")});
  EXPECT_TRUE(sup.CleanupStale().ok());
  EXPECT_FALSE(FileExists(PidsPath()));
  EXPECT_TRUE(Logged("services.pids:1: malformed entry ignored"));
  EXPECT_TRUE(Logged("services.pids:10: malformed entry ignored"));
  EXPECT_FALSE(Logged("services.pids:11:"));
  std::optional<int> status = Reap(*pid);
  ASSERT_TRUE(status.has_value()) << "the well-formed entry was not killed";
  EXPECT_EQ(os::DescribeWaitStatus(*status), "killed by signal 9 (SIGKILL)");
}

TEST_F(SupervisorTest, CleanupStaleSurvivesBinaryFile) {
  std::string junk;
  for (int i = 0; i < 10000; ++i) junk.push_back(static_cast<char>((i * 7919) % 256));
  std::ofstream(PidsPath(), std::ios::binary) << junk;
  Supervisor& sup = Make({Sleeper("web")});
  EXPECT_TRUE(sup.CleanupStale().ok());
  EXPECT_FALSE(FileExists(PidsPath()));
  EXPECT_TRUE(Logged("malformed entry ignored"));
}

TEST_F(SupervisorTest, CleanupStaleIgnoresOversizedFile) {
  Result<pid_t> pid = os::Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok());
  std::string line =
      "web " + std::to_string(*pid) + " " + std::to_string(os::ProcessStartTime(*pid)) + "\n";
  std::ofstream out(PidsPath());
  for (size_t written = 0; written <= 64 * 1024; written += line.size()) out << line;
  out.close();
  Supervisor& sup = Make({Sleeper("web")});
  EXPECT_TRUE(sup.CleanupStale().ok());
  EXPECT_FALSE(FileExists(PidsPath()));
  EXPECT_TRUE(Logged("bytes; ignored"));
  EXPECT_FALSE(Gone(*pid));
  kill(*pid, SIGKILL);
  EXPECT_TRUE(Reap(*pid).has_value());
}

}  // namespace
}  // namespace tandem::svc
