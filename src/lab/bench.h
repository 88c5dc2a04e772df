// Benchmarks run on a lab cluster (bench/README.md, docs/PERFORMANCE.md).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::lab {

struct BenchOptions {
  std::string dir;  // lab directory (created)
  std::string bin_dir;
  int trials = 10;
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 3000;
  int64_t keepalived_advert_ms = 1000;  // --netns: keepalived's advert_int for the comparison
};

// Shared by the benchmarks: monotonic milliseconds, and p50/p95/max/min of
// samples (plus all of them) as JSON.
int64_t SteadyNowMs();
nlohmann::json LatencyStats(std::vector<int64_t> samples_ms);

double SteadyNowS();  // the same clock in seconds
void SleepMs(int64_t ms);
double RoundTo(double v, int digits);

// A field of /proc/PID/status in KiB ("VmHWM:", "VmRSS:"); 0 if absent.
int64_t ProcStatusKib(int pid, const std::string& field);
// Peak resident set (VmHWM, KiB) of a live process; 0 if it is gone.
int64_t PeakRssKib(int pid);
// CPU time (user + system) a process has used so far, in seconds.
double CpuSeconds(int pid);
// "1min 5min 15min" from /proc/loadavg.
std::string LoadAverage();

// The machine a benchmark ran on: {"cpus","cpu_model","kernel","mem_mib",
// "load_avg"} (load_avg: the 1-minute load average at the call), plus
// "lab_filesystem": {"mount","device","fstype","options"} of the mount that
// holds `dir` when it is given.
nlohmann::json MachineJson(const std::string& dir = "");
// The mount holding `path` (device, fstype, mount point, options).
nlohmann::json MountOf(const std::string& path);

// SIGINT/SIGTERM while a benchmark runs: caught for the lifetime of a
// BenchSignalScope (the previous handlers come back afterwards), so the
// benchmark can stop its lab and remove its data before it returns.
class BenchSignalScope {
 public:
  BenchSignalScope();
  ~BenchSignalScope();
  BenchSignalScope(const BenchSignalScope&) = delete;
  BenchSignalScope& operator=(const BenchSignalScope&) = delete;

 private:
  struct Saved;
  Saved* saved_;
};
bool BenchInterruptRequested();

// A host of a benchmark's two-host lab (bench_repl.cc, bench_ingest.cc):
// stopped and started again by the benchmark, its peak RSS noted over its
// incarnations.
struct BenchHost {
  std::string which;  // "primary" | "secondary"
  std::string dir, config, control, volume, store, meta;
  int pid = 0;
  int64_t peak_rss_kib = 0;  // the largest over its incarnations
};

inline constexpr int64_t kBenchStatusTimeoutMs = 2000;  // one control-socket call
inline constexpr int64_t kBenchStopWaitMs = 15000;      // SIGTERM, then SIGKILL
inline constexpr int64_t kBenchPollMs = 20;

// Notes the host's current peak RSS (VmHWM) into peak_rss_kib.
void NoteRss(BenchHost& h);
// The host's `status` answer / its "replication" object.
Result<nlohmann::json> HostStatus(const BenchHost& h);
Result<nlohmann::json> HostReplication(const BenchHost& h);
// Both replicas Established and UpToDate with the same generations.
bool ReplicasInSync(const nlohmann::json& a, const nlohmann::json& b);
// Waits (polling, at most `ms`) until the two hosts are in sync / until the
// primary no longer sees its peer. Stops early on SIGINT (BenchInterrupted).
Status WaitInSync(const BenchHost& p, const BenchHost& s, int64_t ms);
Status WaitPeerGone(const BenchHost& p, int64_t ms);
// SIGTERM (SIGKILL after kBenchStopWaitMs: an error), then the pid is
// cleared in the lab's lab.json so that `lab down` never signals a reused
// pid. / `tandem lab start` of the host.
Status StopBenchHost(const std::string& lab_dir, BenchHost& h);
Status StartBenchHost(const std::string& lab_dir, BenchHost& h);
// An error once SIGINT/SIGTERM arrived, else Ok.
Status BenchInterrupted();

// A lab host's own status ("ACTIVE", "STANDBY", ...) over its control socket,
// "" if it does not answer within 2 s. `i` indexes lab["hosts"].
std::string LabHostStatus(const nlohmann::json& lab, size_t i);

// Waits up to `ms` until one lab host is ACTIVE and the other STANDBY;
// returns the active's index in lab["hosts"], or -1 on timeout.
int WaitActiveStandby(const nlohmann::json& lab, int64_t ms);

// Unplanned (SIGKILL) and planned (takeover) outage statistics as JSON.
Result<nlohmann::json> BenchFailover(const BenchOptions& o);

// The same on the namespace lab, host death only (daemon SIGKILL + link
// down), seen from the client namespace, side by side with keepalived.
Result<nlohmann::json> BenchFailoverNetns(const BenchOptions& o);

}  // namespace tandem::lab

namespace tandem::lab {

// `tandem bench repl` (docs/PERFORMANCE.md, "Replication"): full sync vs
// `cp -r`, sync-rate accuracy, protocol C write throughput and latency
// (replicated vs local), resync after a 1% change, peak RSS; on a loopback
// lab with replication. Also writes DIR/bench-repl.json.
struct ReplBenchOptions {
  std::string dir;      // lab directory (created)
  std::string bin_dir;  // empty: next to this binary
  int64_t store_mb = 256;  // MB (10^6 bytes) in the store for the syncs; a multiple of 8
  bool quick = false;      // 1 s per write run instead of 3 s
  // The secondary's store directory (created; removed at the end); empty:
  // in the lab directory, on the same disk as the primary's.
  std::string secondary_store;
};
Result<nlohmann::json> BenchRepl(const ReplBenchOptions& o);

}  // namespace tandem::lab

namespace tandem::lab {

// `tandem bench ingest` (docs/PERFORMANCE.md, "Ingest"): syslog events per
// second over UDP, TCP and RELP into the collector of a loopback lab with
// replication and into the primary alone (secondary stopped), next to
// rsyslogd (imudp/imtcp/imrelp -> omfile, buffered and synced) with the same
// sender; search latency over `search_events` stored events; bytes per
// event; tandemd's peak RSS. Also writes DIR/bench-ingest.json.
struct IngestBenchOptions {
  std::string dir;      // lab directory (created)
  std::string bin_dir;  // empty: next to this binary
  uint64_t events = 1000000;          // per TCP / RELP run
  uint64_t search_events = 10000000;  // stored for the search latency
  bool quick = false;   // one repetition, shorter UDP steps
};
Result<nlohmann::json> BenchIngest(const IngestBenchOptions& o);

}  // namespace tandem::lab
