#include "os/process.h"

#include <fcntl.h>
#include <pthread.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "os/testing.h"

namespace tandem::os {
namespace {

// Generous: the machine is shared and noisy. Tests poll, never assert speed.
constexpr int64_t kDeadlineMs = 10000;
constexpr useconds_t kPollUs = 10000;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tandem-os-test-XXXXXX";
    char* dir = mkdtemp(tmpl);
    TANDEM_CHECK(dir != nullptr);
    path_ = dir;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls waitpid(pid) until it is reaped or the deadline passes.
std::optional<int> WaitExit(pid_t pid, int64_t deadline_ms = kDeadlineMs) {
  for (int64_t waited_us = 0; waited_us < deadline_ms * 1000; waited_us += kPollUs) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;
    usleep(kPollUs);
  }
  return std::nullopt;
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  (void)WaitExit(pid);
}

// Spawns argv with stdout/stderr to a file, waits for it and returns the
// output ("<spawn error>" or "<no exit>" on failure).
std::string RunAndCapture(const std::vector<std::string>& argv, SpawnOptions opts = {}) {
  TempDir dir;
  opts.stdout_path = dir.path() + "/out";
  Result<pid_t> pid = Spawn(argv, opts);
  if (!pid.ok()) return "<spawn error: " + pid.status().message() + ">";
  std::optional<int> status = WaitExit(*pid);
  if (!status) {
    KillAndReap(*pid);
    return "<no exit>";
  }
  return ReadFile(opts.stdout_path);
}

bool RunWithDeadline(EventLoop& loop) { return os::RunWithDeadline(loop, kDeadlineMs); }

TEST(SpawnTest, TrueExitsZero) {
  Result<pid_t> pid = Spawn({"/bin/true"}, {});
  ASSERT_TRUE(pid.ok()) << pid.status().message();
  std::optional<int> status = WaitExit(*pid);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(SpawnTest, SearchesPathAndPassesArguments) {
  EXPECT_EQ(RunAndCapture({"echo", "a b", "c"}), "a b c\n");
}

TEST(SpawnTest, MissingBinaryIsAnErrorAndLeavesNoZombie) {
  Result<pid_t> pid = Spawn({"tandem-no-such-binary", "x"}, {});
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().message(),
            "cannot execute 'tandem-no-such-binary': No such file or directory");
  int status;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);  // the failed child was reaped
  EXPECT_EQ(errno, ECHILD);
}

TEST(SpawnTest, MissingAbsolutePathIsAnError) {
  Result<pid_t> pid = Spawn({"/nonexistent/tandem/bin"}, {});
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().message(),
            "cannot execute '/nonexistent/tandem/bin': No such file or directory");
}

TEST(SpawnTest, NonExecutableFileIsAnError) {
  TempDir dir;
  std::string path = dir.path() + "/script";
  std::ofstream(path) << "#!/bin/sh\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  Result<pid_t> pid = Spawn({path}, {});
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().message(), "cannot execute '" + path + "': Permission denied");
}

TEST(SpawnTest, EmptyArgvIsAnError) {
  Result<pid_t> pid = Spawn({}, {});
  EXPECT_FALSE(pid.ok());
}

TEST(SpawnTest, StdoutAndStderrAppendToFile) {
  TempDir dir;
  SpawnOptions opts;
  opts.stdout_path = dir.path() + "/service.log";
  mode_t old_umask = umask(022);
  for (int i = 0; i < 2; ++i) {
    Result<pid_t> pid = Spawn({"sh", "-c", "echo out; echo err >&2"}, opts);
    ASSERT_TRUE(pid.ok()) << pid.status().message();
    ASSERT_TRUE(WaitExit(*pid).has_value());
  }
  umask(old_umask);
  EXPECT_EQ(ReadFile(opts.stdout_path), "out\nerr\nout\nerr\n");
  struct stat st {};
  ASSERT_EQ(stat(opts.stdout_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST(SpawnTest, UnopenableStdoutPathIsAnError) {
  SpawnOptions opts;
  opts.stdout_path = "/nonexistent-tandem-dir/x.log";
  Result<pid_t> pid = Spawn({"/bin/true"}, opts);
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("/nonexistent-tandem-dir/x.log"), std::string::npos);
}

TEST(SpawnTest, StdinIsDevNull) {
  EXPECT_EQ(RunAndCapture({"sh", "-c", "readlink /proc/self/fd/0"}), "/dev/null\n");
}

TEST(SpawnTest, EnvOverridesAreVisibleAndReplaceInherited) {
  ASSERT_EQ(setenv("TANDEM_TEST_VAR", "old", 1), 0);
  SpawnOptions opts;
  opts.env = {{"FOO", "bar baz"}, {"TANDEM_TEST_VAR", "new"}};
  std::string out = RunAndCapture(
      {"sh", "-c", "echo \"$FOO|$TANDEM_TEST_VAR|$HOME\"; env | grep -c ^TANDEM_TEST_VAR="}, opts);
  const char* home = getenv("HOME");
  EXPECT_EQ(out, "bar baz|new|" + std::string(home ? home : "") + "\n1\n");
  unsetenv("TANDEM_TEST_VAR");
}

TEST(SpawnTest, NewProcessGroupByDefault) {
  Result<pid_t> pid = Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok()) << pid.status().message();
  EXPECT_EQ(getpgid(*pid), *pid);  // set before exec, so already true here
  KillAndReap(*pid);
}

TEST(SpawnTest, SameProcessGroupWhenAsked) {
  SpawnOptions opts;
  opts.new_process_group = false;
  Result<pid_t> pid = Spawn({"sleep", "30"}, opts);
  ASSERT_TRUE(pid.ok()) << pid.status().message();
  EXPECT_EQ(getpgid(*pid), getpgrp());
  KillAndReap(*pid);
}

TEST(SpawnTest, ChildStartsWithEmptySignalMaskAndDefaultDispositions) {
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGCHLD);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
  struct sigaction ignore {
  }, old_pipe{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGPIPE, &ignore, &old_pipe), 0);
  std::string out = RunAndCapture({"sh", "-c", "exec grep -E '^Sig(Blk|Ign)' /proc/self/status"});
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  EXPECT_EQ(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// The child shares the daemon's memory until it execs (no fork): the
// spawning thread's signal mask is blocked around it and restored after.
TEST(SpawnTest, TheSpawningThreadKeepsItsSignalMask) {
  sigset_t block, before, after;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &before), 0);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &before), 0);
  EXPECT_EQ(RunAndCapture({"sh", "-c", "echo ok"}), "ok\n");
  EXPECT_EQ(RunAndCapture({"/nonexistent/binary"}).rfind("<spawn error", 0), 0u);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &after), 0);
  for (int sig = 1; sig < NSIG; ++sig) {
    EXPECT_EQ(sigismember(&before, sig), sigismember(&after, sig)) << "signal " << sig;
  }
  pthread_sigmask(SIG_UNBLOCK, &block, nullptr);
}

// Several threads spawning at once while others write to the memory the
// children share until exec: every child starts, runs and exits 0.
TEST(SpawnTest, ManyThreadsSpawnAtOnce) {
  constexpr int kThreads = 4, kEach = 20;
  std::atomic<int> ok{0};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> scratch(1 << 16, 0);
  std::thread writer([&] {
    for (uint64_t n = 0; !stop.load(); ++n) scratch[n % scratch.size()] = n;
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        Result<pid_t> pid = Spawn({"/bin/sh", "-c", "exit 0"}, {});
        if (!pid.ok()) continue;
        std::optional<int> st = WaitExit(*pid);
        if (st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) ok++;
      }
    });
  }
  for (auto& t : ts) t.join();
  stop = true;
  writer.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
}

TEST(SpawnTest, NiceValueIsApplied) {
  SpawnOptions opts;
  opts.nice = 10;
  // Field 19 of /proc/<pid>/stat is the nice value (comm "cut" has no space).
  EXPECT_EQ(RunAndCapture({"cut", "-d", " ", "-f19", "/proc/self/stat"}, opts), "10\n");
  EXPECT_EQ(RunAndCapture({"cut", "-d", " ", "-f19", "/proc/self/stat"}), std::to_string(getpriority(PRIO_PROCESS, 0)) + "\n");
}

TEST(SpawnTest, InheritedFdsAreClosed) {
  constexpr int kLeakedFd = 100;
  int fd = open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(fd, 0);
  ASSERT_EQ(dup2(fd, kLeakedFd), kLeakedFd);
  close(fd);
  std::string check =
      "[ -e /proc/self/fd/" + std::to_string(kLeakedFd) + " ] && echo open || echo closed";
  std::string out = RunAndCapture({"sh", "-c", check});
  close(kLeakedFd);
  EXPECT_EQ(out, "closed\n");
}

// Forks an intermediate process that Spawns `sleep 30` (with the given
// die_with_parent) and reports its pid; the intermediate then exits, or
// waits to be SIGKILLed when `kill_parent`. Returns the sleep's pid. The
// test process is a subreaper, so the orphaned sleep becomes our child.
pid_t SpawnGrandchildThenLoseParent(bool die_with_parent, bool kill_parent) {
  TANDEM_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  int report[2];
  TANDEM_CHECK(pipe(report) == 0);
  pid_t mid = fork();
  TANDEM_CHECK(mid >= 0);
  if (mid == 0) {
    close(report[0]);
    SpawnOptions opts;
    opts.die_with_parent = die_with_parent;
    Result<pid_t> pid = Spawn({"sleep", "30"}, opts);
    pid_t p = pid.ok() ? *pid : -1;
    ssize_t n = write(report[1], &p, sizeof p);
    (void)n;
    if (kill_parent) pause();
    _exit(0);
  }
  close(report[1]);
  pid_t grandchild = -1;
  ssize_t n = read(report[0], &grandchild, sizeof grandchild);
  close(report[0]);
  if (kill_parent) kill(mid, SIGKILL);
  std::optional<int> mid_status = WaitExit(mid);
  TANDEM_CHECK(mid_status.has_value());
  return n == static_cast<ssize_t>(sizeof grandchild) ? grandchild : -1;
}

TEST(DieWithParentTest, ChildDiesWhenParentExits) {
  pid_t sleeper = SpawnGrandchildThenLoseParent(true, false);
  ASSERT_GT(sleeper, 0);
  std::optional<int> status = WaitExit(sleeper);
  ASSERT_TRUE(status.has_value()) << "sleep " << sleeper << " outlived its parent";
  EXPECT_EQ(DescribeWaitStatus(*status), "killed by signal 9 (SIGKILL)");
}

TEST(DieWithParentTest, ChildDiesWhenParentIsKilled) {
  pid_t sleeper = SpawnGrandchildThenLoseParent(true, true);
  ASSERT_GT(sleeper, 0);
  std::optional<int> status = WaitExit(sleeper);
  ASSERT_TRUE(status.has_value()) << "sleep " << sleeper << " outlived its parent";
  EXPECT_EQ(DescribeWaitStatus(*status), "killed by signal 9 (SIGKILL)");
}

TEST(DieWithParentTest, ChildSurvivesParentWhenNotAsked) {
  pid_t sleeper = SpawnGrandchildThenLoseParent(false, false);
  ASSERT_GT(sleeper, 0);
  constexpr int64_t kSurviveMs = 300;
  EXPECT_FALSE(WaitExit(sleeper, kSurviveMs).has_value());
  EXPECT_EQ(kill(sleeper, 0), 0);
  KillAndReap(sleeper);
}

TEST(ChildReaperTest, CallbackGetsExitStatus) {
  EventLoop loop;
  ChildReaper reaper(loop);
  Result<pid_t> pid = Spawn({"sh", "-c", "exit 7"}, {});
  ASSERT_TRUE(pid.ok()) << pid.status().message();
  std::optional<int> got;
  reaper.Watch(*pid, [&](int status) {
    got = status;
    loop.Stop();
  });
  EXPECT_EQ(reaper.watched(), 1u);
  ASSERT_TRUE(RunWithDeadline(loop));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(DescribeWaitStatus(*got), "exited with status 7");
  EXPECT_EQ(reaper.watched(), 0u);
}

TEST(ChildReaperTest, ChildExitingBeforeWatchIsStillReported) {
  EventLoop loop;
  ChildReaper reaper(loop);
  Result<pid_t> pid = Spawn({"/bin/true"}, {});
  ASSERT_TRUE(pid.ok()) << pid.status().message();
  usleep(200000);  // it has exited, SIGCHLD is pending, nobody watches yet
  bool called = false;
  reaper.Watch(*pid, [&](int status) {
    called = true;
    EXPECT_EQ(DescribeWaitStatus(status), "exited with status 0");
    loop.Stop();
  });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_TRUE(called);
}

TEST(ChildReaperTest, ManyChildrenExitingTogetherAreAllReaped) {
  EventLoop loop;
  ChildReaper reaper(loop);
  constexpr int kChildren = 8;
  std::map<pid_t, int> expected, got;
  for (int i = 0; i < kChildren; ++i) {
    Result<pid_t> pid = Spawn({"sh", "-c", "sleep 0.2; exit " + std::to_string(i)}, {});
    ASSERT_TRUE(pid.ok()) << pid.status().message();
    expected[*pid] = i;
    reaper.Watch(*pid, [&, p = *pid](int status) {
      got[p] = WEXITSTATUS(status);
      if (got.size() == expected.size()) loop.Stop();
    });
  }
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(got, expected);
}

TEST(ChildReaperTest, UnwatchedChildIsReapedAndIgnored) {
  EventLoop loop;
  ChildReaper reaper(loop);
  Result<pid_t> unwatched = Spawn({"/bin/true"}, {});
  ASSERT_TRUE(unwatched.ok());
  Result<pid_t> watched = Spawn({"sh", "-c", "sleep 0.3"}, {});
  ASSERT_TRUE(watched.ok());
  int calls = 0;
  reaper.Watch(*watched, [&](int) {
    ++calls;
    loop.Stop();
  });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(calls, 1);
  int status;
  EXPECT_EQ(waitpid(*unwatched, &status, WNOHANG), -1);  // already reaped
}

TEST(ProcessStartTimeTest, SelfIsPositiveAndStable) {
  uint64_t t = ProcessStartTime(getpid());
  EXPECT_GT(t, 0u);
  EXPECT_EQ(ProcessStartTime(getpid()), t);
}

TEST(ProcessStartTimeTest, CommWithSpacesAndParenthesesParses) {
  uint64_t before = ProcessStartTime(getpid());
  char old_name[17] = {};
  ASSERT_EQ(prctl(PR_GET_NAME, old_name), 0);
  ASSERT_EQ(prctl(PR_SET_NAME, "a) b ) (c 1 2 3"), 0);
  uint64_t renamed = ProcessStartTime(getpid());
  prctl(PR_SET_NAME, old_name);
  EXPECT_EQ(renamed, before);
}

TEST(ProcessStartTimeTest, LaterChildStartsNoEarlier) {
  Result<pid_t> pid = Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok());
  EXPECT_GE(ProcessStartTime(*pid), ProcessStartTime(getpid()));
  KillAndReap(*pid);
}

TEST(ProcessStartTimeTest, MissingProcessIsZero) {
  EXPECT_EQ(ProcessStartTime(INT_MAX), 0u);
  EXPECT_EQ(ProcessStartTime(0), 0u);
  EXPECT_EQ(ProcessStartTime(-1), 0u);
}

TEST(DescribeWaitStatusTest, Formats) {
  EXPECT_EQ(DescribeWaitStatus(W_EXITCODE(0, 0)), "exited with status 0");
  EXPECT_EQ(DescribeWaitStatus(W_EXITCODE(3, 0)), "exited with status 3");
  EXPECT_EQ(DescribeWaitStatus(W_EXITCODE(0, SIGKILL)), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(DescribeWaitStatus(W_EXITCODE(0, SIGTERM)), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(DescribeWaitStatus(W_EXITCODE(0, SIGSEGV) | WCOREFLAG),
            "killed by signal 11 (SIGSEGV) (core dumped)");
}

TEST(DescribeWaitStatusTest, RealSignalledChild) {
  Result<pid_t> pid = Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(pid.ok());
  ASSERT_EQ(kill(*pid, SIGTERM), 0);
  std::optional<int> status = WaitExit(*pid);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(DescribeWaitStatus(*status), "killed by signal 15 (SIGTERM)");
}

}  // namespace
}  // namespace tandem::os
