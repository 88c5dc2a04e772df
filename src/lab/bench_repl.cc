// `tandem bench repl`: /store replication measured on a loopback lab with
// replication (real tandemd processes, real TCP, real fsync). Prints one
// JSON object (also written to DIR/bench-repl.json; docs/PERFORMANCE.md,
// "Replication"):
//  1. full (initial) sync of a new disk with the rate limit lifted (4096
//     MB/s), next to `cp -r` + fdatasync of the same store directory;
//  2. accuracy of the sync rate limit at 100 MB/s (`ha sync-rate 100`);
//  3. protocol C appends (4 KiB and 64 KiB, 1 and 16 writers, each on its own
//     volume-socket connection with one request in flight, each to its own
//     file), replicated and on the same primary with its peer stopped;
//  4. resync after changing 1% of the store vs the full sync;
//  5. peak RSS (VmHWM) of both tandemd;
//  6. the disk's own capacity for the write pattern of 3, without Tandem:
//     N threads each appending 4 KiB to its own file with fdatasync, for
//     N = 1, 16 and 32 (32 = both hosts' 16 writers at once: in this lab
//     the two replicas share one disk, which bounds the replicated/local
//     ratio of 3 by fsyncs_per_s(32) / (2 * fsyncs_per_s(16))).
// Every figure is measured in the run; every wait is bounded; the lab is
// stopped (lab::Down) on every path, and the bulky store data removed.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "api/control.h"
#include "config/config.h"
#include "lab/bench.h"
#include "lab/lab.h"
#include "os/files.h"
#include "os/process.h"

namespace tandem::lab {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMB = 1000 * 1000;             // MB/s as in sync_rate_mb
constexpr uint64_t kChunk = 64 * 1024;            // the replication chunk (repl/frame.h)
constexpr uint64_t kFileBytes = 8 * kMB;          // size of each store file of the fill
constexpr int64_t kPollMs = 20;                   // status polling while waiting
constexpr int kSocketTimeoutS = 30;               // one volume request
constexpr int64_t kSettleMs = 60000;              // in sync / peer gone
constexpr int64_t kSnapshotSettleMs = 300;        // the daemon's status snapshot is <= 200 ms old
constexpr uint64_t kRateTestMbPerS = 100;
constexpr double kRateTestMinSeconds = 2.5;       // the rate test's store takes at least this
constexpr double kChangeFraction = 0.01;          // resync after a 1% change





double MbPerS(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0.0;
}





std::string RandomBytes(size_t n, std::mt19937_64& rng) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, std::min<size_t>(8, n - i));
  }
  return s;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Percentiles of latencies in ms (nearest rank).
json LatencyMs(std::vector<double> v) {
  if (v.empty()) return json{{"samples", 0}};
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
    return RoundTo(v[std::min(i, v.size() - 1)], 3);
  };
  double sum = 0;
  for (double x : v) sum += x;
  return json{{"samples", v.size()}, {"p50", pct(0.50)}, {"p99", pct(0.99)},
              {"max", RoundTo(v.back(), 3)}, {"mean", RoundTo(sum / static_cast<double>(v.size()), 3)}};
}

// Bytes allocated to the regular files under `dir` (st_blocks; on ext4 this
// includes delayed-allocation reservations, so it follows the writes).
uint64_t AllocatedBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

// Byte-for-byte comparison of two trees of regular files; "" if identical.
std::string CompareTrees(const std::string& a, const std::string& b) {
  std::set<std::string> files_a, files_b;
  std::error_code ec;
  for (const auto& [root, out] : {std::pair{a, &files_a}, std::pair{b, &files_b}}) {
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file()) out->insert(fs::relative(it->path(), root).string());
    }
    if (ec) return root + ": " + ec.message();
  }
  if (files_a != files_b) {
    for (const auto& p : files_a) if (!files_b.count(p)) return p + " is only on the primary";
    for (const auto& p : files_b) if (!files_a.count(p)) return p + " is only on the secondary";
  }
  std::vector<char> ba(1 << 20), bb(1 << 20);
  for (const auto& p : files_a) {
    std::ifstream fa(a + "/" + p, std::ios::binary), fb(b + "/" + p, std::ios::binary);
    uint64_t off = 0;
    for (;;) {
      fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
      fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
      std::streamsize na = fa.gcount(), nb = fb.gcount();
      if (na != nb) return p + ": sizes differ";
      if (std::memcmp(ba.data(), bb.data(), static_cast<size_t>(na)) != 0) {
        return p + ": content differs in the MiB at offset " + std::to_string(off);
      }
      if (na == 0) break;
      off += static_cast<uint64_t>(na);
    }
  }
  return "";
}



// One connection to a volume socket, one request in flight (window 1).
class VolumeConn {
 public:
  VolumeConn() = default;
  VolumeConn(const VolumeConn&) = delete;
  VolumeConn& operator=(const VolumeConn&) = delete;
  ~VolumeConn() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Connect(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
    timeval tv{kSocketTimeoutS, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) return Status::Error(path + ": socket path too long");
    std::memcpy(a.sun_path, path.c_str(), path.size());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      return Status::Error("cannot connect to the volume socket " + path + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }

  // Sends one request (plus `data` for append/write_at) and waits for its
  // reply; an error if the volume refuses it or does not answer in time.
  Status Call(json header, std::string_view data) {
    header["id"] = ++id_;
    if (!data.empty()) header["length"] = data.size();
    std::string line = header.dump() + "\n";
    const char* parts[2] = {line.data(), data.data()};
    size_t sizes[2] = {line.size(), data.size()};
    size_t total = line.size() + data.size(), sent = 0;
    while (sent < total) {
      iovec iov[2];
      int n_iov = 0;
      size_t skip = sent;
      for (int i = 0; i < 2; ++i) {
        if (skip >= sizes[i]) {
          skip -= sizes[i];
          continue;
        }
        iov[n_iov++] = iovec{const_cast<char*>(parts[i]) + skip, sizes[i] - skip};
        skip = 0;
      }
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<size_t>(n_iov);
      ssize_t n = ::sendmsg(fd_, &m, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR && !BenchInterruptRequested()) continue;
        return Status::Error(std::string("volume socket: send: ") +
                             (errno == EAGAIN ? "timed out" : std::strerror(errno)));
      }
      sent += static_cast<size_t>(n);
    }
    for (;;) {
      size_t nl = in_.find('\n');
      if (nl != std::string::npos) {
        json r = json::parse(in_.substr(0, nl), nullptr, false);
        in_.erase(0, nl + 1);
        if (r.is_discarded() || !r.is_object()) return Status::Error("volume socket: bad reply");
        if (!r.value("ok", false)) {
          return Status::Error("the volume refused " + header.value("op", "?") + " " +
                               header.value("path", "") + ": " + r.value("error", "?"));
        }
        if (r.value("id", uint64_t{0}) != id_) return Status::Error("volume socket: reply to another request");
        return Status::Ok();
      }
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return Status::Error("volume socket closed by tandemd");
      if (errno == EINTR && !BenchInterruptRequested()) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return Status::Error("no reply from the volume within " + std::to_string(kSocketTimeoutS) + " s");
      }
      return Status::Error(std::string("volume socket: recv: ") + std::strerror(errno));
    }
  }

 private:
  int fd_ = -1;
  uint64_t id_ = 0;
  std::string in_;
};

// Waits for a child with a deadline; SIGKILLs it when it is over.
Result<int> WaitChild(pid_t pid, double timeout_s, const std::string& what) {
  double deadline = SteadyNowS() + timeout_s;
  for (;;) {
    int ws = 0;
    pid_t r = ::waitpid(pid, &ws, WNOHANG);
    if (r == pid) return ws;
    if (r < 0 && errno != EINTR) return Status::Error(what + ": waitpid: " + std::strerror(errno));
    if (SteadyNowS() > deadline || BenchInterruptRequested()) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &ws, 0);
      return Status::Error(BenchInterruptRequested() ? what + ": interrupted"
                                                : what + ": did not finish within " +
                                                      std::to_string(static_cast<int>(timeout_s)) + " s");
    }
    SleepMs(2);
  }
}

using Host = BenchHost;

class Bench {
 public:
  explicit Bench(const ReplBenchOptions& o) : o_(o), rng_(std::random_device{}()) {}

  Result<json> Run();
  // Stops the lab, records the peak RSS first.
  Status Stop();
  void RemoveStoreData();

 private:
  Status Setup();
  Status Wipe(Host& h);
  Result<json> Fill(const std::string& prefix, int files, uint64_t bytes_per_file, uint64_t seed);
  Result<json> CopyBaseline();
  Result<json> TimedSync(uint64_t expect_bytes, bool sample_disk);
  Result<json> ChangeOnePercent();
  Result<json> RunWriters(size_t block, int writers, double seconds, const std::string& mode,
                          std::vector<double>* latencies);
  Result<json> WriteSuite();
  Status EnsureSecondaryUp();
  void Settle();

  ReplBenchOptions o_;
  std::mt19937_64 rng_;
  Host p_, s_;
  std::string bin_dir_;
  uint64_t store_bytes_ = 0;
  std::vector<std::string> fill_files_;
  bool lab_up_ = false;
};

// A new disk: the store and the replica's metadata (generations, journal).
Status Bench::Wipe(Host& h) {
  for (const std::string& d : {h.store, h.meta}) {
    std::error_code ec;
    fs::remove_all(d, ec);
    if (ec) return Status::Error("cannot remove " + d + ": " + ec.message());
  }
  return Status::Ok();
}

Status Bench::Setup() {
  struct statvfs vfs {};
  if (::statvfs(o_.dir.c_str(), &vfs) == 0) {
    uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    uint64_t need = 3 * std::max<uint64_t>(store_bytes_, kRateTestMbPerS * kMB * 3) + 4000 * kMB;
    if (avail < need) {
      return Status::Error(o_.dir + ": " + std::to_string(avail / kMB) + " MB free, the benchmark needs about " +
                           std::to_string(need / kMB) + " MB (lower --store-mb)");
    }
  }
  LabOptions lo;
  lo.dir = o_.dir;
  lo.bin_dir = o_.bin_dir;
  lo.replication = true;
  lo.sync_rate_mb = 4096;  // the limit lifted for the full sync
  if (!o_.secondary_store.empty()) {
    std::error_code ec;
    if (fs::exists(o_.secondary_store, ec) && !fs::is_empty(o_.secondary_store, ec)) {
      return Status::Error(o_.secondary_store + ": not empty (the benchmark removes it at the end)");
    }
    lo.store_dirs = {o_.dir + "/primary/store", fs::absolute(o_.secondary_store).string()};
  }
  auto up = Up(lo);
  if (!up.ok()) return up.status().Prefix("lab up: ");
  lab_up_ = true;
  bin_dir_ = (*up)["bin_dir"].get<std::string>();
  Host* hosts[2] = {&p_, &s_};
  for (size_t i = 0; i < 2; ++i) {
    const json& h = (*up)["hosts"][i];
    Host& x = *hosts[i];
    x.which = h["role"].get<std::string>();
    x.config = h["config"].get<std::string>();
    x.dir = fs::path(x.config).parent_path().string();
    x.pid = h["pid"].get<int>();
    auto cfg = config::Load(x.config, /*read_key=*/false);
    if (!cfg.ok()) return cfg.status();
    if (!cfg->replication) return Status::Error(x.config + ": no [replication]");
    x.control = cfg->control_socket;
    x.volume = cfg->volume_socket;
    x.store = cfg->store_dir;
    x.meta = cfg->repl_meta_dir;
  }
  if (p_.which != "primary" || s_.which != "secondary") return Status::Error("unexpected lab hosts");
  return Status::Ok();
}

// `tandem store fill` as a child process (bounded), `files` x `bytes_per_file`.
Result<json> Bench::Fill(const std::string& prefix, int files, uint64_t bytes_per_file, uint64_t seed) {
  std::string out = o_.dir + "/fill-" + std::to_string(seed) + ".json";
  std::remove(out.c_str());
  os::SpawnOptions so;
  so.stdout_path = out;
  auto pid = os::Spawn({bin_dir_ + "/tandem", "store", "fill", "--config", p_.config, "--files",
                        std::to_string(files), "--bytes", std::to_string(bytes_per_file),
                        "--write-bytes", std::to_string(1 << 20), "--window", "16", "--prefix", prefix,
                        "--seed", std::to_string(seed)},
                       so);
  if (!pid.ok()) return pid.status();
  uint64_t bytes = bytes_per_file * static_cast<uint64_t>(files);
  auto ws = WaitChild(*pid, 120.0 + static_cast<double>(bytes) / (5.0 * kMB), "tandem store fill");
  if (!ws.ok()) return ws.status();
  auto text = os::ReadFile(out, 1 << 22);
  if (!text.ok()) return text.status();
  if (!WIFEXITED(*ws) || WEXITSTATUS(*ws) != 0) {
    return Status::Error("tandem store fill failed (" + os::DescribeWaitStatus(*ws) + "): " + *text);
  }
  // The last line is the JSON result.
  std::string t = *text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  size_t nl = t.rfind('\n');
  json j = json::parse(nl == std::string::npos ? t : t.substr(nl + 1), nullptr, false);
  if (j.is_discarded() || j.value("bytes", uint64_t{0}) != bytes) {
    return Status::Error("tandem store fill: unexpected output: " + t);
  }
  j.erase("paths");
  for (const char* k : {"seconds", "mb_per_s"}) {
    if (j.contains(k) && j[k].is_number()) j[k] = RoundTo(j[k].get<double>(), 3);
  }
  if (j.contains("latency_ms") && j["latency_ms"].is_object()) {
    for (auto& [k, v] : j["latency_ms"].items()) {
      if (v.is_number()) v = RoundTo(v.get<double>(), 3);
    }
  }
  return j;
}

// `cp -r` of the primary's store directory next to it, then fdatasync of
// every copied file and fsync of every copied directory (what the sync
// target's commit does: repl/store.cc, LocalStore::Commit), timed together.
Result<json> Bench::CopyBaseline() {
  std::string dst = o_.dir + "/cp-copy";
  std::error_code ec;
  fs::remove_all(dst, ec);
  os::SpawnOptions so;
  so.stdout_path = o_.dir + "/cp.out";
  double t0 = SteadyNowS();
  auto pid = os::Spawn({"/bin/cp", "-r", p_.store, dst}, so);
  if (!pid.ok()) return pid.status();
  auto ws = WaitChild(*pid, 120.0 + static_cast<double>(store_bytes_) / (5.0 * kMB), "cp -r");
  if (!ws.ok()) return ws.status();
  if (!WIFEXITED(*ws) || WEXITSTATUS(*ws) != 0) {
    return Status::Error("cp -r failed (" + os::DescribeWaitStatus(*ws) + "); see " + so.stdout_path);
  }
  double t1 = SteadyNowS();
  uint64_t bytes = 0;
  std::vector<std::string> dirs = {dst, fs::path(dst).parent_path().string()};
  for (auto it = fs::recursive_directory_iterator(dst, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory()) {
      dirs.push_back(it->path().string());
      continue;
    }
    if (!it->is_regular_file()) continue;
    int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fdatasync(fd) != 0) {
      std::string e = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return Status::Error(it->path().string() + ": fdatasync: " + e);
    }
    ::close(fd);
    bytes += it->file_size();
  }
  if (ec) return Status::Error(dst + ": " + ec.message());
  for (const std::string& d : dirs) {
    int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      std::string e = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return Status::Error(d + ": fsync: " + e);
    }
    ::close(fd);
  }
  double t2 = SteadyNowS();
  fs::remove_all(dst, ec);
  if (bytes != store_bytes_) return Status::Error("cp -r copied " + std::to_string(bytes) + " bytes, expected " +
                                                  std::to_string(store_bytes_));
  return json{{"method", "fork/exec /bin/cp -r STORE COPY on the same filesystem, then fdatasync of "
                         "every copied file and fsync of every copied directory; timed from the "
                         "fork to the last fsync (source in the page cache, as for the sync source)"},
              {"bytes", bytes},
              {"cp_s", RoundTo(t1 - t0, 3)},
              {"fsync_s", RoundTo(t2 - t1, 3)},
              {"seconds", RoundTo(t2 - t0, 3)},
              {"mb_per_s", RoundTo(MbPerS(bytes, t2 - t0), 1)}};
}

// Starts the (stopped) secondary and times it until both hosts are in sync.
// `sample_disk`: also follow the bytes allocated in the secondary's store
// directory, for a steady-state rate seen from outside the daemons.
Result<json> Bench::TimedSync(uint64_t expect_bytes, bool sample_disk) {
  auto before = HostReplication(p_);
  if (!before.ok()) return before.status();
  uint64_t sent0 = (*before)["counters"].value("sync_bytes_sent", uint64_t{0});
  uint64_t syncs0 = (*before)["counters"].value("syncs_completed", uint64_t{0});
  std::vector<std::pair<double, uint64_t>> samples;
  std::set<std::string> seen_states;
  std::string log_path = p_.dir + "/tandemd.log";
  std::error_code log_ec;
  uintmax_t log_from = fs::exists(log_path, log_ec) ? fs::file_size(log_path, log_ec) : 0;
  double timeout_s = 120.0 + static_cast<double>(expect_bytes) / (10.0 * kMB);
  double p_cpu0 = CpuSeconds(p_.pid);
  double t0 = SteadyNowS();
  TANDEM_RETURN_IF_ERROR(StartBenchHost(o_.dir, s_));
  json a, b;
  for (;;) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    double t = SteadyNowS() - t0;
    if (t > timeout_s) {
      return Status::Error("the sync did not finish within " + std::to_string(static_cast<int>(timeout_s)) +
                           " s; primary: " + a.dump() + " secondary: " + b.dump());
    }
    int ws = 0;
    if (::waitpid(s_.pid, &ws, WNOHANG) == s_.pid) {
      s_.pid = 0;
      return Status::Error("the secondary tandemd exited during the sync (" + os::DescribeWaitStatus(ws) +
                           "); see " + s_.dir + "/tandemd.log");
    }
    NoteRss(s_);
    auto ra = HostReplication(p_), rb = HostReplication(s_);
    if (sample_disk) samples.emplace_back(t, AllocatedBytes(s_.store));
    if (ra.ok() && rb.ok()) {
      a = *ra;
      b = *rb;
      for (const json* x : {&a, &b}) {
        if (x->value("replication", "") == "StandAlone" || x->value("disk", "") == "Failed") {
          return Status::Error("replication failed during the sync: primary " + a.dump() + " secondary " +
                               b.dump());
        }
        seen_states.insert(x->value("replication", ""));
      }
      if (ReplicasInSync(a, b)) break;
    }
    SleepMs(kPollMs);
  }
  double wall = SteadyNowS() - t0;
  double p_cpu = CpuSeconds(p_.pid) - p_cpu0, s_cpu = CpuSeconds(s_.pid);
  NoteRss(p_);
  NoteRss(s_);
  SleepMs(kSnapshotSettleMs);
  auto after = HostReplication(p_);
  if (!after.ok()) return after.status();
  uint64_t sent = (*after)["counters"].value("sync_bytes_sent", uint64_t{0}) - sent0;
  uint64_t syncs = (*after)["counters"].value("syncs_completed", uint64_t{0}) - syncs0;
  json r = {{"wall_s", RoundTo(wall, 3)},
            {"sync_bytes_sent", sent},
            {"syncs_completed", syncs},
            {"wall_mb_per_s", RoundTo(MbPerS(sent, wall), 1)},
            {"primary_last_sync", (*after).value("last_sync", "")},
            {"states_seen", seen_states},
            {"cpu_s", {{"primary", RoundTo(p_cpu, 2)}, {"secondary_incl_startup", RoundTo(s_cpu, 2)}}}};
  // What the primary decided and began, from its log (this sync only).
  {
    std::ifstream log(log_path, std::ios::binary);
    log.seekg(static_cast<std::streamoff>(log_ec ? 0 : log_from));
    std::string line;
    std::smatch lm;
    static const std::regex kDecision("replication: connected to .*: ([a-z-]+ \\(.*\\))$");
    static const std::regex kBegins("replication: (full|partial) sync to .*begins: ([0-9]+) files, ~([0-9]+) bytes");
    while (std::getline(log, line)) {
      if (std::regex_search(line, lm, kDecision)) r["decision"] = lm[1].str();
      if (std::regex_search(line, lm, kBegins)) {
        r["kind"] = lm[1].str();
        r["files_to_send"] = std::stoull(lm[2].str());
      }
    }
  }
  // The daemon's own account of the sync phase (handshake done -> target
  // durable and acknowledged): "sent N bytes in T ms".
  std::smatch m;
  std::string last = (*after).value("last_sync", "");
  if (std::regex_search(last, m, std::regex("sent ([0-9]+) bytes in ([0-9]+) ms"))) {
    uint64_t n = std::stoull(m[1].str());
    double s = std::stod(m[2].str()) / 1000.0;
    r["sync_phase_s"] = RoundTo(s, 3);
    r["sync_phase_bytes"] = n;
    r["sync_phase_mb_per_s"] = RoundTo(MbPerS(n, std::max(s, 0.001)), 1);
    r["startup_and_connect_s"] = RoundTo(std::max(0.0, wall - s), 3);
  }
  auto sec = HostReplication(s_);
  if (sec.ok()) r["secondary_last_sync"] = sec->value("last_sync", "");
  if (sample_disk && samples.size() >= 4) {
    uint64_t first = samples.front().second, last_b = AllocatedBytes(s_.store);
    uint64_t growth = last_b > first ? last_b - first : 0;
    if (static_cast<double>(growth) >= 0.5 * static_cast<double>(expect_bytes)) {
      auto when = [&](double frac) -> std::optional<std::pair<double, uint64_t>> {
        uint64_t level = first + static_cast<uint64_t>(frac * static_cast<double>(growth));
        for (const auto& sm : samples) if (sm.second >= level) return sm;
        return std::nullopt;
      };
      auto lo = when(0.1), hi = when(0.9);
      if (lo && hi && hi->first > lo->first) {
        r["steady_mb_per_s_on_disk"] =
            RoundTo(MbPerS(hi->second - lo->second, hi->first - lo->first), 1);
        r["steady_window"] = "10%..90% of the bytes allocated in the secondary's store directory, "
                             "sampled every ~" + std::to_string(kPollMs) + " ms (" +
                             std::to_string(samples.size()) + " samples)";
      }
    }
  }
  return r;
}

// Changes 1% of the store's bytes through the volume: write_at of 64 KiB of
// new random data at distinct random 64 KiB-aligned offsets of the fill's
// files (the secondary is stopped: the primary records them for the resync).
// `threads` threads, each appending 4 KiB blocks with fdatasync to its own
// new file under `dir`, for `seconds`: fdatasyncs per second in all.
static Result<double> FlushRate(const std::string& dir, int threads, double seconds) {
  std::vector<uint64_t> counts(static_cast<size_t>(threads), 0);
  std::vector<std::string> errors(static_cast<size_t>(threads));
  const double end = SteadyNowS() + seconds;
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      std::string path = dir + "/f" + std::to_string(threads) + "-" + std::to_string(i);
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) {
        errors[static_cast<size_t>(i)] = path + ": " + std::strerror(errno);
        return;
      }
      std::vector<char> block(4096, static_cast<char>('a' + i % 26));
      while (SteadyNowS() < end) {
        if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) || ::fdatasync(fd) != 0) {
          errors[static_cast<size_t>(i)] = path + ": " + std::strerror(errno);
          break;
        }
        counts[static_cast<size_t>(i)]++;
      }
      ::close(fd);
    });
  }
  for (auto& t : ts) t.join();
  for (const std::string& e : errors) {
    if (!e.empty()) return Status::Error("disk flush capacity: " + e);
  }
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  return static_cast<double>(total) / seconds;
}

static Result<json> DiskFlushCapacity(const std::string& dir, double seconds) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Error("disk flush capacity: " + dir + ": " + ec.message());
  json r = {{"how", "N threads, each appending 4 KiB + fdatasync to its own file in the lab directory, " +
                        std::to_string(static_cast<int>(seconds * 1000)) + " ms each; no Tandem"},
            {"seconds_each", seconds}};
  std::map<int, double> rate;
  for (int n : {1, 16, 32}) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    auto x = FlushRate(dir, n, seconds);
    if (!x.ok()) {
      fs::remove_all(dir, ec);
      return x.status();
    }
    rate[n] = *x;
    r["threads_" + std::to_string(n) + "_fsyncs_per_s"] = RoundTo(*x, 0);
  }
  fs::remove_all(dir, ec);
  r["shared_disk_bound_16_writers"] = RoundTo(rate[32] / std::max(1.0, 2.0 * rate[16]), 3);
  r["bound_how"] = "both replicas share this disk: 16 writers on each host need the flushes of 32 "
                   "files at once, so replicated/local at 16 writers cannot exceed "
                   "fsyncs_per_s(32) / (2 * fsyncs_per_s(16)) here; on two hosts each has its own disk";
  return r;
}

Result<json> Bench::ChangeOnePercent() {
  uint64_t chunks_per_file = kFileBytes / kChunk;  // whole chunks only
  uint64_t total_chunks = chunks_per_file * fill_files_.size();
  uint64_t want = static_cast<uint64_t>(std::ceil(kChangeFraction * static_cast<double>(store_bytes_) /
                                                  static_cast<double>(kChunk)));
  want = std::min(want, total_chunks);
  std::set<uint64_t> picked;
  std::uniform_int_distribution<uint64_t> pick(0, total_chunks - 1);
  while (picked.size() < want) picked.insert(pick(rng_));
  VolumeConn c;
  TANDEM_RETURN_IF_ERROR(c.Connect(p_.volume));
  double t0 = SteadyNowS();
  for (uint64_t g : picked) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    std::string data = RandomBytes(kChunk, rng_);
    const std::string& path = fill_files_[g / chunks_per_file];
    uint64_t off = (g % chunks_per_file) * kChunk;
    TANDEM_RETURN_IF_ERROR(c.Call(json{{"op", "write_at"}, {"path", path}, {"offset", off}}, data));
  }
  double secs = SteadyNowS() - t0;
  return json{{"writes", picked.size()},
              {"bytes", picked.size() * kChunk},
              {"fraction_of_store", RoundTo(static_cast<double>(picked.size() * kChunk) /
                                              static_cast<double>(store_bytes_), 4)},
              {"how", "write_at of 64 KiB of new data at distinct random 64 KiB-aligned offsets"},
              {"seconds", RoundTo(secs, 3)}};
}

// `writers` threads, each with its own volume connection and file, one
// append of `block` bytes in flight, for `seconds`.
Result<json> Bench::RunWriters(size_t block, int writers, double seconds, const std::string& mode,
                               std::vector<double>* latencies) {
  struct Out {
    uint64_t ops = 0;
    double end_s = 0;
    std::vector<double> lat_ms;
    std::string error;
  };
  std::string data = RandomBytes(block, rng_);
  std::vector<Out> outs(static_cast<size_t>(writers));
  std::vector<std::string> paths;
  for (int k = 0; k < writers; ++k) {
    paths.push_back("bench/" + mode + "-" + std::to_string(block) + "x" + std::to_string(writers) + "-" +
                    std::to_string(k) + ".dat");
  }
  std::latch ready(writers), go(1);
  std::atomic<double> deadline{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < writers; ++k) {
    threads.emplace_back([&, k] {
      Out& out = outs[static_cast<size_t>(k)];
      VolumeConn c;
      Status st = c.Connect(p_.volume);
      if (st.ok()) st = c.Call(json{{"op", "create"}, {"path", paths[static_cast<size_t>(k)]}}, "");
      ready.count_down();
      go.wait();
      if (!st.ok()) {
        out.error = st.message();
        return;
      }
      double end = deadline.load();
      json header = {{"op", "append"}, {"path", paths[static_cast<size_t>(k)]}};
      out.lat_ms.reserve(1 << 14);
      for (;;) {
        double t = SteadyNowS();
        if (t >= end || BenchInterruptRequested()) break;
        st = c.Call(header, data);
        double t2 = SteadyNowS();
        if (!st.ok()) {
          out.error = st.message();
          break;
        }
        out.lat_ms.push_back((t2 - t) * 1000.0);
        out.ops++;
        out.end_s = t2;
      }
    });
  }
  ready.wait();
  SleepMs(kSnapshotSettleMs);
  auto before = HostReplication(p_);
  double t0 = SteadyNowS();
  deadline.store(t0 + seconds);
  go.count_down();
  for (auto& t : threads) t.join();
  double elapsed = 0;
  uint64_t ops = 0;
  std::vector<double> lat;
  std::string error;
  for (const Out& out : outs) {
    elapsed = std::max(elapsed, out.end_s - t0);
    ops += out.ops;
    lat.insert(lat.end(), out.lat_ms.begin(), out.lat_ms.end());
    if (error.empty() && !out.error.empty()) error = out.error;
  }
  SleepMs(kSnapshotSettleMs);
  auto after = HostReplication(p_);
  // Remove the benchmark's files (through the volume) so the store keeps its size.
  {
    VolumeConn c;
    Status st = c.Connect(p_.volume);
    for (const std::string& p : paths) {
      if (st.ok()) st = c.Call(json{{"op", "delete"}, {"path", p}}, "");
    }
    if (!st.ok() && error.empty()) error = "cleanup: " + st.message();
  }
  TANDEM_RETURN_IF_ERROR(BenchInterrupted());
  if (!error.empty()) return Status::Error(mode + " writes (" + std::to_string(block) + " B x " +
                                           std::to_string(writers) + "): " + error);
  if (ops == 0 || elapsed <= 0) return Status::Error(mode + " writes: no write completed");
  json r = {{"block_bytes", block},
            {"writers", writers},
            {"seconds", RoundTo(elapsed, 3)},
            {"ops", ops},
            {"ops_per_s", RoundTo(static_cast<double>(ops) / elapsed, 1)},
            {"mb_per_s", RoundTo(MbPerS(ops * block, elapsed), 2)},
            {"latency_ms", LatencyMs(lat)}};
  latencies->insert(latencies->end(), lat.begin(), lat.end());
  if (before.ok() && after.ok()) {
    const json &cb = (*before)["counters"], &ca = (*after)["counters"];
    auto d = [&](const char* k) { return ca.value(k, uint64_t{0}) - cb.value(k, uint64_t{0}); };
    uint64_t commits = d("commits"), writes = d("writes");
    r["primary"] = {{"commits", commits},
                    {"writes_per_commit", commits ? RoundTo(static_cast<double>(writes) / static_cast<double>(commits), 2) : 0.0},
                    {"journal_syncs", d("journal_syncs")},
                    {"protected", after->value("protected", false)}};
  }
  return r;
}

// The secondary running and in sync (started if it was stopped).
Status Bench::EnsureSecondaryUp() {
  if (s_.pid <= 0) TANDEM_RETURN_IF_ERROR(StartBenchHost(o_.dir, s_));
  return WaitInSync(p_, s_, kSettleMs);
}

// Before a measured run: write back whatever the filesystem still holds
// dirty (earlier runs, deletions and their discards), then a short pause.
void Bench::Settle() {
  int fd = ::open(p_.store.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::syncfs(fd);
    ::close(fd);
  }
  SleepMs(kSnapshotSettleMs);
}

// Protocol C appends, replicated and local, as pairs run back to back (the
// secondary stopped for the local run and restarted after it), repeated:
// on a shared VM the disk's speed drifts, and pairs see the same drift.
Result<json> Bench::WriteSuite() {
  double seconds = o_.quick ? 1.0 : 3.0;
  int reps = o_.quick ? 1 : 3;
  struct Cell {
    size_t block;
    int writers;
    json runs[2] = {json::array(), json::array()};  // replicated, local
    std::vector<double> lat[2];
    std::vector<double> ratios;
  };
  std::vector<Cell> cells;
  for (size_t block : {size_t{4096}, size_t{65536}}) {
    for (int writers : {1, 16}) cells.push_back(Cell{block, writers, {}, {}, {}});
  }
  for (int rep = 0; rep < reps; ++rep) {
    for (Cell& c : cells) {
      TANDEM_RETURN_IF_ERROR(EnsureSecondaryUp());
      Settle();
      auto r = RunWriters(c.block, c.writers, seconds, "replicated", &c.lat[0]);
      if (!r.ok()) return r.status();
      if (!(*r)["primary"].value("protected", false)) {
        return Status::Error("replicated writes: the primary lost its peer during the run");
      }
      TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
      TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
      Settle();
      auto st = HostReplication(p_);
      if (!st.ok()) return st.status();
      if (st->value("protected", true)) {
        return Status::Error("local writes: the primary is still protected by its peer: " + st->dump());
      }
      auto l = RunWriters(c.block, c.writers, seconds, "local", &c.lat[1]);
      if (!l.ok()) return l.status();
      c.ratios.push_back((*r)["ops_per_s"].get<double>() / std::max(1e-9, (*l)["ops_per_s"].get<double>()));
      c.runs[0].push_back(*r);
      c.runs[1].push_back(*l);
    }
  }
  json configs = json::array();
  bool met = true;
  for (Cell& c : cells) {
    json x = {{"block_bytes", c.block}, {"writers", c.writers}};
    const char* names[2] = {"replicated", "local_peer_stopped"};
    double p50[2] = {0, 0};
    for (int m = 0; m < 2; ++m) {
      std::vector<double> ops, mbs;
      for (const json& run : c.runs[m]) {
        ops.push_back(run["ops_per_s"].get<double>());
        mbs.push_back(run["mb_per_s"].get<double>());
      }
      json lat = LatencyMs(c.lat[m]);
      p50[m] = lat.value("p50", 0.0);
      x[names[m]] = {{"ops_per_s", RoundTo(Median(ops), 1)},
                     {"mb_per_s", RoundTo(Median(mbs), 2)},
                     {"latency_ms", lat},
                     {"runs", c.runs[m]}};
    }
    double q = Median(c.ratios);
    json paired = json::array();
    for (double v : c.ratios) paired.push_back(RoundTo(v, 3));
    x["throughput_ratio"] = RoundTo(q, 3);
    x["paired_ratios"] = paired;
    x["p50_latency_ratio"] = RoundTo(p50[0] / std::max(1e-9, p50[1]), 2);
    if (c.writers == 16) {
      x["target"] = ">= 0.7";
      x["met"] = q >= 0.7;
      met = met && q >= 0.7;
    }
    configs.push_back(x);
  }
  return json{{"seconds_each", seconds},
              {"repetitions", reps},
              {"window", 1},
              {"how", "per configuration and repetition: a replicated run, then the secondary "
                      "stopped and the same run on the unprotected primary, then the secondary "
                      "restarted (resync) — syncfs + 300 ms before each run; ops/s and MB/s are "
                      "medians over the repetitions, latencies pooled, throughput_ratio is the "
                      "median of the paired replicated/local ratios"},
              {"configs", configs},
              {"met_at_16_writers", met}};
}

Result<json> Bench::Run() {
  store_bytes_ = static_cast<uint64_t>(o_.store_mb) * kMB;
  TANDEM_RETURN_IF_ERROR(Setup());
  json out = {{"bench", "repl"}, {"quick", o_.quick}, {"dir", o_.dir}};
  json load = {{"start", LoadAverage()}};
  TANDEM_RETURN_IF_ERROR(WaitInSync(p_, s_, kSettleMs));
  {
    auto st = HostReplication(p_);
    if (!st.ok()) return st.status();
    out["protocol"] = st->value("protocol", "?");
  }

  // ---- 1. Full sync of a new disk, rate limit lifted, vs cp -r.
  TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
  TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
  int files = static_cast<int>(std::max<uint64_t>(1, store_bytes_ / kFileBytes));
  uint64_t per_file = store_bytes_ / static_cast<uint64_t>(files);
  if (per_file != kFileBytes) return Status::Error("--store-mb must be a multiple of 8");
  for (int f = 0; f < files; ++f) fill_files_.push_back("fill/" + std::to_string(f) + ".dat");
  auto fill = Fill("fill/", files, per_file, 1);
  if (!fill.ok()) return fill.status();
  // Pairs of (cp -r, full sync of a wiped secondary), repeated: the shared
  // disk's flush speed drifts between runs, a pair sees the same drift.
  int reps = o_.quick ? 1 : 3;
  json full_runs = json::array(), cp_runs = json::array();
  std::vector<double> full_wall, full_phase, full_mbps, full_phase_mbps, full_steady, cp_s, cp_mbps,
      ratio_wall, ratio_phase;
  for (int rep = 0; rep < reps; ++rep) {
    if (rep > 0) {
      TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
      TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
    }
    Settle();
    auto cp = CopyBaseline();
    if (!cp.ok()) return cp.status();
    TANDEM_RETURN_IF_ERROR(Wipe(s_));
    Settle();
    auto full = TimedSync(store_bytes_, true);
    if (!full.ok()) return full.status().Prefix("full sync: ");
    if ((*full)["sync_bytes_sent"].get<uint64_t>() != store_bytes_ || full->value("kind", "") != "full") {
      return Status::Error("the sync of the wiped secondary was not a full sync of the store: " + full->dump());
    }
    std::string diff = CompareTrees(p_.store, s_.store);
    if (!diff.empty()) return Status::Error("after the full sync the two stores differ: " + diff);
    double c = (*cp)["mb_per_s"].get<double>();
    full_wall.push_back((*full)["wall_s"].get<double>());
    full_mbps.push_back((*full)["wall_mb_per_s"].get<double>());
    cp_s.push_back((*cp)["seconds"].get<double>());
    cp_mbps.push_back(c);
    ratio_wall.push_back(full_mbps.back() / std::max(1e-9, c));
    if (full->contains("sync_phase_s")) {
      full_phase.push_back((*full)["sync_phase_s"].get<double>());
      full_phase_mbps.push_back((*full)["sync_phase_mb_per_s"].get<double>());
      ratio_phase.push_back(full_phase_mbps.back() / std::max(1e-9, c));
    }
    if (full->contains("steady_mb_per_s_on_disk")) full_steady.push_back((*full)["steady_mb_per_s_on_disk"].get<double>());
    full_runs.push_back(*full);
    cp_runs.push_back(*cp);
  }
  auto rounded = [](const std::vector<double>& v, int digits) {
    json a = json::array();
    for (double x : v) a.push_back(RoundTo(x, digits));
    return a;
  };
  out["store"] = {{"bytes", store_bytes_}, {"files", files}, {"fill_through_volume_unprotected", *fill}};
  out["full_sync"] = {{"sync_rate_mb_per_s", 4096},
                      {"repetitions", reps},
                      {"identical_after", true},
                      {"wall_s", RoundTo(Median(full_wall), 3)},
                      {"wall_mb_per_s", RoundTo(Median(full_mbps), 1)},
                      {"runs", full_runs}};
  if (!full_phase.empty()) {
    out["full_sync"]["sync_phase_s"] = RoundTo(Median(full_phase), 3);
    out["full_sync"]["sync_phase_mb_per_s"] = RoundTo(Median(full_phase_mbps), 1);
  }
  if (!full_steady.empty()) out["full_sync"]["steady_mb_per_s_on_disk"] = RoundTo(Median(full_steady), 1);
  out["cp_r"] = {{"method", cp_runs[0]["method"]},
                 {"seconds", RoundTo(Median(cp_s), 3)},
                 {"mb_per_s", RoundTo(Median(cp_mbps), 1)},
                 {"runs", cp_runs}};
  for (auto& r : out["cp_r"]["runs"]) r.erase("method");
  double ratio = Median(ratio_wall);
  json vs = {{"ratio_wall", RoundTo(ratio, 3)},
             {"paired_ratios_wall", rounded(ratio_wall, 3)},
             {"target", ">= 0.7"},
             {"met", ratio >= 0.7},
             {"how", "median over the repetitions of (full sync MB/s, wall clock from the secondary's "
                     "start to both hosts in sync) / (cp -r + fdatasync MB/s), each pair back to back"}};
  if (!ratio_phase.empty()) {
    vs["ratio_sync_phase"] = RoundTo(Median(ratio_phase), 3);
    vs["paired_ratios_sync_phase"] = rounded(ratio_phase, 3);
  }
  out["full_sync_vs_cp"] = vs;
  double full_wall_s = Median(full_wall), full_phase_s = full_phase.empty() ? 0 : Median(full_phase);

  // ---- 4. Resync after a 1% change (same store, now in sync), repeated
  // like the full sync (another 1% each time); the median is reported.
  {
    std::vector<json> runs;
    std::vector<double> walls, phases;
    uint64_t sent_max = 0;
    for (int rep = 0; rep < reps; ++rep) {
      TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
      TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
      auto change = ChangeOnePercent();
      if (!change.ok()) return change.status();
      Settle();
      auto resync = TimedSync((*change)["bytes"].get<uint64_t>(), false);
      if (!resync.ok()) return resync.status().Prefix("resync: ");
      std::string diff = CompareTrees(p_.store, s_.store);
      if (!diff.empty()) return Status::Error("after the resync the two stores differ: " + diff);
      walls.push_back((*resync)["wall_s"].get<double>());
      if (resync->contains("sync_phase_s")) phases.push_back((*resync)["sync_phase_s"].get<double>());
      sent_max = std::max(sent_max, (*resync)["sync_bytes_sent"].get<uint64_t>());
      runs.push_back(json{{"change", *change}, {"resync", *resync}});
    }
    // The run whose sync phase is the median stands for all (its details).
    size_t mid = 0;
    if (phases.size() == runs.size()) {
      std::vector<size_t> order(runs.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return phases[a] < phases[b]; });
      mid = order[order.size() / 2];
    }
    json r = {{"repetitions", reps}, {"change", runs[mid]["change"]}, {"resync", runs[mid]["resync"]},
              {"identical_after", true}};
    double rt = Median(walls) / std::max(1e-9, full_wall_s);
    r["wall_s_each"] = rounded(walls, 3);
    r["time_ratio_wall"] = RoundTo(rt, 4);
    if (phases.size() == runs.size() && full_phase_s > 0) {
      r["sync_phase_s_each"] = rounded(phases, 3);
      r["time_ratio_sync_phase"] = RoundTo(Median(phases) / full_phase_s, 4);
    }
    r["compared_with"] = "medians over the repetitions (each another 1% of the store) against the median full "
                         "sync of the same store (full_sync.wall_s / sync_phase_s); change and resync: the "
                         "median run's";
    r["bytes_ratio"] = RoundTo(static_cast<double>(sent_max) / static_cast<double>(store_bytes_), 4);
    r["bytes_ratio_is"] = "the largest of the repetitions";
    r["target"] = "time ratio <= 0.05";
    r["met_wall"] = rt <= 0.05;
    if (r.contains("time_ratio_sync_phase")) r["met_sync_phase"] = r["time_ratio_sync_phase"].get<double>() <= 0.05;
    out["resync_1pct"] = r;
  }

  // ---- 3. Protocol C writes, replicated vs local (peer stopped), paired.
  load["before_writes"] = LoadAverage();
  auto writes = WriteSuite();
  if (!writes.ok()) return writes.status();
  out["writes"] = *writes;
  if (s_.pid > 0) {
    TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
    TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
  }
  Settle();

  // ---- 6. The disk's flush capacity for that pattern (no Tandem).
  {
    auto cap = DiskFlushCapacity(p_.dir + "/fsync-capacity", o_.quick ? 1.0 : 2.0);
    if (!cap.ok()) return cap.status();
    out["disk_fsync_capacity"] = *cap;
  }

  // ---- 2. Rate limit at 100 MB/s (full sync of a new disk again).
  {
    uint64_t need = static_cast<uint64_t>(kRateTestMinSeconds * static_cast<double>(kRateTestMbPerS * kMB));
    uint64_t rate_store = store_bytes_;
    if (rate_store < need) {
      int pad_files = static_cast<int>((need - rate_store + kFileBytes - 1) / kFileBytes);
      auto pad = Fill("pad/", pad_files, kFileBytes, 2);
      if (!pad.ok()) return pad.status();
      rate_store += kFileBytes * static_cast<uint64_t>(pad_files);
    }
    auto set = api::Call(p_.control, json{{"cmd", "sync-rate"}, {"mb_per_s", kRateTestMbPerS}}, kBenchStatusTimeoutMs);
    if (!set.ok()) return set.status();
    if (!set->value("ok", false)) return Status::Error("sync-rate refused: " + set->value("error", "?"));
    SleepMs(kSnapshotSettleMs);
    auto st = HostReplication(p_);
    if (!st.ok()) return st.status();
    if (st->value("sync_rate_bytes_per_s", uint64_t{0}) != kRateTestMbPerS * kMB) {
      return Status::Error("the primary did not take the sync rate: " + st->dump());
    }
    TANDEM_RETURN_IF_ERROR(Wipe(s_));
    Settle();
    auto rated = TimedSync(rate_store, true);
    if (!rated.ok()) return rated.status().Prefix("rate-limited sync: ");
    json r = {{"set_mb_per_s", kRateTestMbPerS}, {"store_bytes", rate_store}, {"sync", *rated},
              {"target", "within +-10%"}};
    double target = static_cast<double>(kRateTestMbPerS);
    // The paced transfer: bytes landing in the target's store, 10%..90%.
    if (rated->contains("steady_mb_per_s_on_disk")) {
      double m = (*rated)["steady_mb_per_s_on_disk"].get<double>();
      r["transfer_mb_per_s"] = m;
      r["transfer_error_pct"] = RoundTo((m - target) / target * 100.0, 2);
      r["met_transfer"] = std::abs(m - target) <= 0.1 * target;
    }
    // End to end: the daemon's sync phase, which also holds the target's
    // final commit (fdatasync of everything received).
    if (rated->contains("sync_phase_mb_per_s")) {
      double m = (*rated)["sync_phase_mb_per_s"].get<double>();
      r["sync_phase_mb_per_s"] = m;
      r["sync_phase_error_pct"] = RoundTo((m - target) / target * 100.0, 2);
      r["met_sync_phase"] = std::abs(m - target) <= 0.1 * target;
    }
    double w = (*rated)["wall_mb_per_s"].get<double>();
    r["wall_mb_per_s"] = w;
    r["wall_error_pct"] = RoundTo((w - target) / target * 100.0, 2);
    out["rate_limit"] = r;
  }

  // ---- 5. Peak RSS of both daemons (over every incarnation).
  NoteRss(p_);
  NoteRss(s_);
  out["peak_rss_mib"] = {{"primary", RoundTo(static_cast<double>(p_.peak_rss_kib) / 1024.0, 1)},
                         {"secondary", RoundTo(static_cast<double>(s_.peak_rss_kib) / 1024.0, 1)},
                         {"how", "VmHWM of /proc/<pid>/status, sampled during the syncs and before "
                                 "each stop; the secondary's is the largest of its incarnations"}};
  load["end"] = LoadAverage();
  out["load_average_1_5_15min"] = load;
  out["machine"] = MachineJson(o_.dir);
  if (!o_.secondary_store.empty()) {
    out["secondary_store"] = {{"dir", s_.store}, {"filesystem", MountOf(s_.store)},
                              {"note", "the secondary's store directory was given with --secondary-store"}};
  }
  return out;
}

Status Bench::Stop() {
  if (!lab_up_) return Status::Ok();
  NoteRss(p_);
  NoteRss(s_);
  lab_up_ = false;
  return Down(o_.dir);
}

// The stores (hundreds of MB) go; configs, logs and the result stay.
void Bench::RemoveStoreData() {
  std::error_code ec;
  for (const Host* h : {&p_, &s_}) {
    if (!h->store.empty()) fs::remove_all(h->store, ec);
  }
  fs::remove_all(o_.dir + "/cp-copy", ec);
}

}  // namespace

Result<json> BenchRepl(const ReplBenchOptions& o) {
  if (o.store_mb < 8 || o.store_mb % 8 != 0) {
    return Status::Error("--store-mb must be a multiple of 8, at least 8");
  }
  if (o.dir.empty()) return Status::Error("--dir is required");
  Status made = os::MakeDirs(o.dir, 0755);
  if (!made.ok()) return made;
  BenchSignalScope signals;
  Bench bench(o);
  Result<json> r = Status::Error("not run");
  try {
    r = bench.Run();
  } catch (const std::exception& e) {
    r = Status::Error(std::string("bench repl: ") + e.what());
  }
  Status down = bench.Stop();
  bench.RemoveStoreData();
  if (!r.ok()) return r;
  if (!down.ok()) return down;
  json result = *r;
  Status w = os::WriteFileAtomic(o.dir + "/bench-repl.json", result.dump(2) + "\n", 0644);
  if (!w.ok()) return w;
  return result;
}

}  // namespace tandem::lab
