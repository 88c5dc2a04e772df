#include "svc/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace tandem::svc {

namespace {

// A service that ran at least this long before exiting restarts after the
// minimum backoff again: it was working, so this is a new failure.
constexpr int64_t kStableRunMs = 10000;
// CleanupStale waits this long for SIGKILLed processes to disappear.
constexpr int64_t kCleanupWaitMs = 2000;
constexpr useconds_t kCleanupPollUs = 20000;
// Upper bound on services.pids (one short line per service); a bigger file
// is not ours to trust and is ignored.
constexpr size_t kPidsFileBytesMax = 64 * 1024;
// How much of a malformed line a log message quotes.
constexpr size_t kQuoteBytesMax = 80;
constexpr char kPidsFileName[] = "services.pids";

enum class State { kStopped, kRunning, kBackoff, kStopping };

const char* StateName(State s) {
  switch (s) {
    case State::kStopped:
      return "stopped";
    case State::kRunning:
      return "running";
    case State::kBackoff:
      return "backoff";
    case State::kStopping:
      return "stopping";
  }
  return "?";
}

struct StaleEntry {
  std::string name;
  pid_t pid = 0;
  uint64_t start_time = 0;
};

// All of `text` as a decimal number (digits only: no sign, no spaces).
template <typename T>
bool ParseDecimal(const std::string& text, T& out) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// "<name> <pid> <starttime>"; pid must be > 1 (kill(-1) and kill(-0) would
// hit every process or our own group) and starttime > 0.
bool ParsePidsLine(const std::string& line, StaleEntry& out) {
  std::istringstream in(line);
  std::string name, pid_text, start_text, extra;
  if (!(in >> name >> pid_text >> start_text) || (in >> extra)) return false;
  pid_t pid = 0;
  uint64_t start = 0;
  if (!ParseDecimal(pid_text, pid) || !ParseDecimal(start_text, start)) return false;
  if (pid <= 1 || start == 0) return false;
  out = StaleEntry{name, pid, start};
  return true;
}

// True once `pid` no longer runs the recorded process: gone, reused, or a
// zombie (already dead; its parent, not us, has to reap it).
bool StaleProcessGone(pid_t pid, uint64_t start_time) {
  if (os::ProcessStartTime(pid) != start_time) return true;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return true;
  size_t close_paren = text.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= text.size() ||
         text[close_paren + 2] == 'Z' || text[close_paren + 2] == 'X';
}

// `line` cut to kQuoteBytesMax, non-printable bytes shown as '?'.
std::string Quote(const std::string& line) {
  std::string out = line.substr(0, kQuoteBytesMax);
  for (char& c : out) {
    if (c < ' ' || c > '~') c = '?';
  }
  return "\"" + out + (line.size() > kQuoteBytesMax ? "...\"" : "\"");
}

// Replaces `path` with `text`: write a temporary file, fsync, rename.
tandem::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  constexpr mode_t kMode = 0644;
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kMode);
  if (fd < 0) return tandem::Status::Error("cannot create " + tmp + ": " + std::strerror(errno));
  std::string error;
  ssize_t n = write(fd, text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size())) {
    error = n < 0 ? std::strerror(errno) : "short write";
  } else if (fsync(fd) != 0) {
    error = std::string("fsync: ") + std::strerror(errno);
  }
  if (close(fd) != 0 && error.empty()) error = std::string("close: ") + std::strerror(errno);
  if (error.empty() && rename(tmp.c_str(), path.c_str()) != 0) {
    error = std::string("rename: ") + std::strerror(errno);
  }
  if (error.empty()) return tandem::Status::Ok();
  unlink(tmp.c_str());
  return tandem::Status::Error("cannot write " + path + ": " + error);
}

}  // namespace

struct Supervisor::Impl {
  struct Service {
    config::ServiceConfig cfg;
    State state = State::kStopped;
    pid_t pid = 0;
    uint64_t start_time = 0;  // ProcessStartTime(pid)
    int restarts = 0;
    std::string last_exit;
    int64_t since_ms = 0;
    int64_t started_ms = 0;         // when the current process was spawned
    int64_t next_backoff_ms = 0;    // delay before the next restart
    bool start_after_stop = false;  // StartAll arrived while stopping
    os::EventLoop::TimerId restart_timer = 0;
    os::EventLoop::TimerId kill_timer = 0;
  };

  Impl(os::EventLoop& l, os::ChildReaper& r, std::string dir, LogFn fn)
      : loop(l), reaper(r), run_dir(std::move(dir)), log(std::move(fn)) {}

  os::EventLoop& loop;
  os::ChildReaper& reaper;
  std::string run_dir;
  LogFn log;
  std::vector<Service> services;
  std::map<std::string, std::string> env;
  std::vector<std::function<void()>> stop_done;
  // Reaper and loop callbacks outlive us; they hold this and do nothing once
  // the supervisor is gone.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  int64_t Now() const { return loop.clock().NowMs(); }
  std::string PidsPath() const { return run_dir + "/" + kPidsFileName; }

  // Wraps a loop/reaper callback so it is dropped after destruction.
  template <typename F>
  auto Guard(F f) {
    return [weak = std::weak_ptr<bool>(alive), f = std::move(f)](auto... args) {
      if (weak.lock()) f(args...);
    };
  }

  void SetState(Service& s, State state) {
    s.state = state;
    s.since_ms = Now();
  }

  void Start(size_t i);
  void OnExit(size_t i, pid_t pid, int wait_status);
  void OnCrash(size_t i, const std::string& why, bool ran_stable);
  void OnRestartTimer(size_t i);
  void Stop(size_t i);
  void OnStopTimeout(size_t i, pid_t pid);
  void MaybeFinishStop();
  void WritePids();
  Result<std::vector<StaleEntry>> ReadPids(const std::string& path);
  tandem::Status KillStale(const std::vector<StaleEntry>& entries);
};

void Supervisor::Impl::Start(size_t i) {
  Service& s = services[i];
  os::SpawnOptions opts;
  opts.env = env;
  opts.stdout_path = run_dir + "/service-" + s.cfg.name + ".log";
  Result<pid_t> pid = os::Spawn(s.cfg.command, opts);
  if (!pid.ok()) {
    log("error", "service " + s.cfg.name + ": cannot start: " + pid.status().message());
    OnCrash(i, pid.status().message(), false);
    return;
  }
  s.pid = *pid;
  s.start_time = os::ProcessStartTime(s.pid);
  s.started_ms = Now();
  SetState(s, State::kRunning);
  reaper.Watch(s.pid, Guard([this, i, p = s.pid](int status) { OnExit(i, p, status); }));
  log("info", "service " + s.cfg.name + " started (pid " + std::to_string(s.pid) + ")");
  WritePids();
}

void Supervisor::Impl::OnExit(size_t i, pid_t pid, int wait_status) {
  Service& s = services[i];
  if (s.pid != pid) return;
  // Whatever the leader left behind in its group goes with it, so a restart
  // never runs next to a leftover of the previous instance.
  kill(-pid, SIGKILL);
  s.pid = 0;
  s.start_time = 0;
  std::string what = os::DescribeWaitStatus(wait_status);
  if (s.state == State::kStopping) {
    loop.CancelTimer(s.kill_timer);
    s.kill_timer = 0;
    SetState(s, State::kStopped);
    log("info", "service " + s.cfg.name + " stopped (" + what + ")");
    WritePids();
    if (s.start_after_stop) {
      s.start_after_stop = false;
      Start(i);
    }
    MaybeFinishStop();
    return;
  }
  log("warn",
      "service " + s.cfg.name + " (pid " + std::to_string(pid) + ") exited unexpectedly: " + what);
  WritePids();
  OnCrash(i, what, Now() - s.started_ms >= kStableRunMs);
}

// An unexpected exit or a failed spawn: back off, then restart.
void Supervisor::Impl::OnCrash(size_t i, const std::string& why, bool ran_stable) {
  Service& s = services[i];
  s.last_exit = why;
  if (ran_stable || s.next_backoff_ms <= 0) s.next_backoff_ms = s.cfg.restart_backoff_min_ms;
  int64_t delay = s.next_backoff_ms;
  s.next_backoff_ms = std::min(delay * 2, s.cfg.restart_backoff_max_ms);
  SetState(s, State::kBackoff);
  s.restart_timer = loop.AddTimer(delay, Guard([this, i] { OnRestartTimer(i); }));
  log("info", "service " + s.cfg.name + ": restart in " + std::to_string(delay) + " ms");
}

void Supervisor::Impl::OnRestartTimer(size_t i) {
  Service& s = services[i];
  s.restart_timer = 0;
  if (s.state != State::kBackoff) return;
  ++s.restarts;
  Start(i);
}

void Supervisor::Impl::Stop(size_t i) {
  Service& s = services[i];
  s.start_after_stop = false;
  if (s.state == State::kBackoff) {
    loop.CancelTimer(s.restart_timer);
    s.restart_timer = 0;
    SetState(s, State::kStopped);
    log("info", "service " + s.cfg.name + ": pending restart cancelled, stopped");
    return;
  }
  if (s.state != State::kRunning) return;
  SetState(s, State::kStopping);
  kill(-s.pid, SIGTERM);
  s.kill_timer =
      loop.AddTimer(s.cfg.stop_timeout_ms, Guard([this, i, p = s.pid] { OnStopTimeout(i, p); }));
  log("info",
      "service " + s.cfg.name + ": stopping (SIGTERM to pid " + std::to_string(s.pid) + ")");
}

void Supervisor::Impl::OnStopTimeout(size_t i, pid_t pid) {
  Service& s = services[i];
  if (s.pid != pid || s.state != State::kStopping) return;
  s.kill_timer = 0;
  log("warn", "service " + s.cfg.name + " (pid " + std::to_string(pid) + ") still running " +
                  std::to_string(s.cfg.stop_timeout_ms) + " ms after SIGTERM; sending SIGKILL");
  kill(-pid, SIGKILL);
}

void Supervisor::Impl::MaybeFinishStop() {
  for (const Service& s : services) {
    if (s.state == State::kStopping) return;
  }
  std::vector<std::function<void()>> done;
  done.swap(stop_done);
  for (auto& cb : done) cb();
}

// Rewrites <run_dir>/services.pids atomically; removes it when nothing
// runs. Failures are logged: the file only helps a later CleanupStale.
void Supervisor::Impl::WritePids() {
  std::string text;
  for (const Service& s : services) {
    if (s.pid <= 0) continue;
    text += s.cfg.name + " " + std::to_string(s.pid) + " " + std::to_string(s.start_time) + "\n";
  }
  std::string path = PidsPath();
  if (text.empty()) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      log("error", "cannot remove " + path + ": " + std::strerror(errno));
    }
    return;
  }
  tandem::Status st = WriteFileAtomically(path, text);
  if (!st.ok()) log("error", st.message());
}

// The well-formed entries of services.pids (none if it does not exist);
// malformed lines and an oversized file are logged and skipped.
Result<std::vector<StaleEntry>> Supervisor::Impl::ReadPids(const std::string& path) {
  std::vector<StaleEntry> entries;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return entries;
    return tandem::Status::Error("cannot read " + path + ": " + std::strerror(errno));
  }
  std::string text(kPidsFileBytesMax + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kPidsFileBytesMax) {
    log("warn", path + ": larger than " + std::to_string(kPidsFileBytesMax) + " bytes; ignored");
    return entries;
  }
  std::istringstream lines(text);
  std::string line;
  for (size_t n = 1; std::getline(lines, line); ++n) {
    StaleEntry e;
    if (ParsePidsLine(line, e)) {
      entries.push_back(e);
    } else {
      log("warn", path + ":" + std::to_string(n) + ": malformed entry ignored: " + Quote(line));
    }
  }
  return entries;
}

// SIGKILLs each recorded group whose leader is still the recorded process,
// then waits up to kCleanupWaitMs for them to die.
tandem::Status Supervisor::Impl::KillStale(const std::vector<StaleEntry>& entries) {
  std::vector<StaleEntry> killed;
  for (const StaleEntry& e : entries) {
    if (e.pid == getpid() || os::ProcessStartTime(e.pid) != e.start_time) continue;
    log("warn", "killing service " + e.name + " (pid " + std::to_string(e.pid) +
                    ") left by a previous run");
    kill(-e.pid, SIGKILL);
    kill(e.pid, SIGKILL);  // in case it left its process group
    killed.push_back(e);
  }
  int64_t deadline = Now() + kCleanupWaitMs;
  for (;;) {
    auto alive_it = std::find_if(killed.begin(), killed.end(), [](const StaleEntry& e) {
      return !StaleProcessGone(e.pid, e.start_time);
    });
    if (alive_it == killed.end()) return tandem::Status::Ok();
    if (Now() >= deadline) {
      return tandem::Status::Error("service " + alive_it->name + " (pid " +
                                   std::to_string(alive_it->pid) +
                                   ") left by a previous run survived SIGKILL");
    }
    usleep(kCleanupPollUs);
  }
}

Supervisor::Supervisor(os::EventLoop& loop, os::ChildReaper& reaper,
                       std::vector<config::ServiceConfig> services, std::string run_dir, LogFn log)
    : impl_(std::make_unique<Impl>(loop, reaper, std::move(run_dir), std::move(log))) {
  int64_t now = impl_->Now();
  for (auto& cfg : services) {
    Impl::Service s;
    s.cfg = std::move(cfg);
    s.since_ms = now;
    impl_->services.push_back(std::move(s));
  }
}

Supervisor::~Supervisor() {
  KillAllNow();
  for (auto& s : impl_->services) {
    impl_->loop.CancelTimer(s.restart_timer);
    impl_->loop.CancelTimer(s.kill_timer);
  }
}

tandem::Status Supervisor::CleanupStale() {
  std::string path = impl_->PidsPath();
  Result<std::vector<StaleEntry>> entries = impl_->ReadPids(path);
  if (!entries.ok()) return entries.status();
  tandem::Status st = impl_->KillStale(*entries);
  if (unlink(path.c_str()) != 0 && errno != ENOENT && st.ok()) {
    st = tandem::Status::Error("cannot remove " + path + ": " + std::strerror(errno));
  }
  return st;
}

void Supervisor::StartAll(const std::map<std::string, std::string>& env) {
  impl_->env = env;
  for (size_t i = 0; i < impl_->services.size(); ++i) {
    Impl::Service& s = impl_->services[i];
    if (s.state == State::kStopping) s.start_after_stop = true;
    if (s.state != State::kStopped) continue;
    s.restarts = 0;
    s.next_backoff_ms = 0;
    impl_->Start(i);
  }
}

void Supervisor::StopAll(std::function<void()> done) {
  for (size_t i = 0; i < impl_->services.size(); ++i) impl_->Stop(i);
  if (done) impl_->stop_done.push_back(std::move(done));
  // Runs `done` from the loop even when nothing had to stop.
  impl_->loop.AddTimer(0, impl_->Guard([impl = impl_.get()] { impl->MaybeFinishStop(); }));
}

void Supervisor::KillAllNow() {
  for (auto& s : impl_->services) {
    s.start_after_stop = false;
    if (s.state == State::kBackoff) {
      impl_->loop.CancelTimer(s.restart_timer);
      s.restart_timer = 0;
      impl_->SetState(s, State::kStopped);
    }
    if (s.pid <= 0) continue;
    if (s.state == State::kRunning) impl_->SetState(s, State::kStopping);
    kill(-s.pid, SIGKILL);
  }
}

bool Supervisor::AllRunning() const {
  return std::all_of(impl_->services.begin(), impl_->services.end(),
                     [](const Impl::Service& s) { return s.state == State::kRunning; });
}

std::vector<ServiceStatus> Supervisor::Status() const {
  std::vector<ServiceStatus> out;
  for (const auto& s : impl_->services) {
    ServiceStatus st;
    st.name = s.cfg.name;
    st.state = StateName(s.state);
    st.pid = s.pid;
    st.restarts = s.restarts;
    st.last_exit = s.last_exit;
    st.since_ms = s.since_ms;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace tandem::svc
