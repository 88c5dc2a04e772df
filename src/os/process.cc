#include "os/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace tandem::os {

namespace {

// Field 22 of /proc/<pid>/stat is the start time; fields 1 and 2 are the pid
// and "(comm)", so after the last ')' the start time is the 20th field.
constexpr int kStartTimeFieldAfterComm = 20;
// Fallback upper bound when close_range(2) is unavailable.
constexpr int kFdScanMax = 65536;
// The child-side functions run on a stack the daemon allocated, in its
// memory (StartChild): no AddressSanitizer stack poisoning there.
#define TANDEM_CHILD_SIDE __attribute__((no_sanitize_address))
// The stack the child runs on until exec (RunChild; execvpe's path buffer).
constexpr size_t kChildStackBytes = 256 * 1024;

Status Errno(const std::string& what) { return Status::Error(what + ": " + std::strerror(errno)); }

// What the child reports through the exec-error pipe when a step fails.
enum class ChildStep : int { kSetpgid = 1, kDeathSignal, kStdio, kExec };

struct ChildError {
  ChildStep step;
  int err;
};

// Everything the child needs, prepared before fork: between fork and exec
// the child only makes async-signal-safe calls (no allocation).
struct ChildPlan {
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  bool die_with_parent = true;
  bool new_process_group = true;
  int nice = 0;
  pid_t parent_pid = 0;
  int stdin_fd = -1;   // /dev/null
  int stdout_fd = -1;  // -1: inherit stdout and stderr
  int error_fd = -1;   // write end of the CLOEXEC exec-error pipe
};

// The daemon's environment with `overrides` replacing or adding entries.
std::vector<std::string> MergedEnvironment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    std::string name = eq ? std::string(*e, static_cast<size_t>(eq - *e)) : std::string(*e);
    if (overrides.count(name) == 0) out.emplace_back(*e);
  }
  for (const auto& [name, value] : overrides) out.push_back(name + "=" + value);
  return out;
}

// Moves `fd` to a number >= 3 (keeping O_CLOEXEC), so that setting up the
// child's stdio can never clobber it. Returns -1 with errno on failure.
int AboveStdio(int fd) {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  int saved = errno;
  close(fd);
  errno = saved;
  return moved;
}

TANDEM_CHILD_SIDE [[noreturn]] void ChildFail(int error_fd, ChildStep step) {
  ChildError e{step, errno};
  ssize_t n = write(error_fd, &e, sizeof e);
  (void)n;
  _exit(127);
}

// dup2 that also works when fd == target (clears FD_CLOEXEC either way).
TANDEM_CHILD_SIDE bool MoveFd(int fd, int target) {
  if (fd == target) return fcntl(fd, F_SETFD, 0) == 0;
  return dup2(fd, target) == target;
}

// Marks every fd >= 3 close-on-exec (the error pipe already is), so the
// service inherits only stdin/stdout/stderr.
TANDEM_CHILD_SIDE void CloseInheritedFds() {
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  rlimit lim{};
  int max_fd = kFdScanMax;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < static_cast<rlim_t>(kFdScanMax)) {
    max_fd = static_cast<int>(lim.rlim_cur);
  }
  for (int fd = 3; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// Default dispositions for every signal (ignored ones would survive exec)
// and an empty mask (the daemon blocks signals for its signalfd).
TANDEM_CHILD_SIDE void ResetSignals() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig)
    sigaction(sig, &dfl, nullptr);  // fails harmlessly for KILL/STOP
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

TANDEM_CHILD_SIDE [[noreturn]] void RunChild(const ChildPlan& plan) {
  if (plan.new_process_group && setpgid(0, 0) != 0) ChildFail(plan.error_fd, ChildStep::kSetpgid);
  if (plan.die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(plan.error_fd, ChildStep::kDeathSignal);
    // The parent may have died before prctl: then nobody would kill us.
    if (getppid() != plan.parent_pid) _exit(127);
  }
  ResetSignals();
  // Best effort: a child that cannot be reniced still runs.
  if (plan.nice > 0) (void)setpriority(PRIO_PROCESS, 0, plan.nice);
  if (!MoveFd(plan.stdin_fd, STDIN_FILENO)) ChildFail(plan.error_fd, ChildStep::kStdio);
  if (plan.stdout_fd >= 0 &&
      (!MoveFd(plan.stdout_fd, STDOUT_FILENO) || !MoveFd(plan.stdout_fd, STDERR_FILENO))) {
    ChildFail(plan.error_fd, ChildStep::kStdio);
  }
  CloseInheritedFds();
  execvpe(plan.argv[0], plan.argv.data(), plan.envp.data());
  ChildFail(plan.error_fd, ChildStep::kExec);
}

TANDEM_CHILD_SIDE int ChildEntry(void* plan) { RunChild(*static_cast<const ChildPlan*>(plan)); }

// Starts RunChild(plan) as a child that shares the daemon's memory until it
// execs (clone CLONE_VM | CLONE_VFORK on a stack of its own, as
// posix_spawn does): no copy of the daemon's page tables and no
// copy-on-write faults in the daemon's threads afterwards — a fork() in the
// middle of a synchronization made the replication thread fault on every
// buffer page it touched (2-3x slower resyncs under load). The calling
// thread waits until the child has exec'd or failed; the child touches only
// its own stack and reads `plan`. Falls back to fork() if clone fails.
//
// Every signal is blocked in the calling thread around the clone, as
// posix_spawn does: a handler must never run in the child while it shares
// the daemon's memory (the child starts with that mask, sets every signal
// to its default action, then unblocks them: RunChild, ResetSignals).
pid_t StartChild(ChildPlan& plan) {
  std::vector<char> stack(kChildStackBytes);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(ChildEntry, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  if (pid < 0) {
    pid = fork();
    if (pid == 0) RunChild(plan);
  }
  const int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return pid;
}

std::string DescribeChildError(const ChildError& e, const std::string& program) {
  std::string why = std::strerror(e.err);
  switch (e.step) {
    case ChildStep::kSetpgid:
      return "cannot start '" + program + "': setpgid: " + why;
    case ChildStep::kDeathSignal:
      return "cannot start '" + program + "': prctl(PR_SET_PDEATHSIG): " + why;
    case ChildStep::kStdio:
      return "cannot start '" + program + "': redirecting stdio: " + why;
    case ChildStep::kExec:
      break;
  }
  return "cannot execute '" + program + "': " + why;
}

// Opens the files the child's stdio goes to (O_CLOEXEC, above fd 2).
Status OpenStdio(const SpawnOptions& opts, ChildPlan& plan) {
  plan.stdin_fd = AboveStdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (plan.stdin_fd < 0) return Errno("open /dev/null");
  if (opts.stdout_path.empty()) return Status::Ok();
  constexpr mode_t kLogMode = 0640;
  plan.stdout_fd = AboveStdio(
      open(opts.stdout_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, kLogMode));
  if (plan.stdout_fd < 0) return Errno("open " + opts.stdout_path);
  return Status::Ok();
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Reads the child's report: nothing (EOF at exec) means success.
Result<pid_t> AwaitExec(pid_t pid, int read_fd, const std::string& program) {
  ChildError e{};
  ssize_t n;
  do {
    n = read(read_fd, &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return pid;
  // The child failed before or at exec and exits at once: reap it here, so
  // the caller never sees (or has to Watch) a pid it was not given.
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof e)) {
    return Status::Error("cannot start '" + program + "': child failed before exec");
  }
  return Status::Error(DescribeChildError(e, program));
}

}  // namespace

Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  if (argv.empty() || argv[0].empty()) return Status::Error("cannot execute: empty command");
  ChildPlan plan;
  std::vector<std::string> args = argv;
  for (auto& a : args) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  plan.env_storage = MergedEnvironment(opts.env);
  for (auto& e : plan.env_storage) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  plan.die_with_parent = opts.die_with_parent;
  plan.new_process_group = opts.new_process_group;
  plan.nice = opts.nice;
  plan.parent_pid = getpid();

  Status st = OpenStdio(opts, plan);
  int pipe_fds[2] = {-1, -1};
  if (st.ok() && pipe2(pipe_fds, O_CLOEXEC) != 0) st = Errno("pipe2");
  pipe_fds[1] = AboveStdio(pipe_fds[1]);
  if (st.ok() && pipe_fds[1] < 0) st = Errno("fcntl(F_DUPFD_CLOEXEC)");
  plan.error_fd = pipe_fds[1];
  pid_t pid = -1;
  if (st.ok()) pid = StartChild(plan);
  if (st.ok() && pid < 0) st = Errno("fork");
  CloseFd(plan.stdin_fd);
  CloseFd(plan.stdout_fd);
  CloseFd(pipe_fds[1]);
  Result<pid_t> result = st.ok() ? AwaitExec(pid, pipe_fds[0], argv[0]) : Result<pid_t>(st);
  CloseFd(pipe_fds[0]);
  return result;
}

uint64_t ProcessStartTime(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return 0;
  size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(close_paren + 1));
  std::string field;
  for (int i = 0; i < kStartTimeFieldAfterComm; ++i) {
    if (!(fields >> field)) return 0;
  }
  uint64_t start = 0;
  for (char c : field) {
    if (c < '0' || c > '9') return 0;
    start = start * 10 + static_cast<uint64_t>(c - '0');
  }
  return start;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    std::string out = "killed by signal " + std::to_string(sig);
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr) out += std::string(" (SIG") + abbrev + ")";
    if (WCOREDUMP(wait_status)) out += " (core dumped)";
    return out;
  }
  if (WIFSTOPPED(wait_status)) return "stopped by signal " + std::to_string(WSTOPSIG(wait_status));
  return "unknown wait status " + std::to_string(wait_status);
}

// SIGCHLD is blocked (AddSignal) from the moment the reaper exists, so a
// child that exits before its Watch() leaves SIGCHLD pending on the signalfd;
// since Spawn and Watch run back to back on the loop thread, the loop only
// dispatches that signal after the callback is registered. No Reap() after
// Watch is therefore needed. SIGCHLD coalesces, so each Reap drains every
// exited child with waitpid(-1, WNOHANG). Every child of the daemon comes from
// Spawn and is watched; an unwatched pid is reaped and ignored.
ChildReaper::ChildReaper(EventLoop& loop) {
  TANDEM_CHECK(loop.AddSignal(SIGCHLD, [this] { Reap(); }).ok());
}

void ChildReaper::Watch(pid_t pid, ExitCallback cb) {
  TANDEM_CHECK(pid > 0);
  TANDEM_CHECK(callbacks_.count(pid) == 0);
  callbacks_.emplace(pid, std::move(cb));
}

void ChildReaper::Reap() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;  // 0: none exited; ECHILD: no children at all
    auto it = callbacks_.find(pid);
    if (it == callbacks_.end()) continue;
    ExitCallback cb = std::move(it->second);
    callbacks_.erase(it);
    cb(status);
  }
}

}  // namespace tandem::os
