// The collector: syslog (UDP, TCP with RFC 6587 framing, RELP) and NetFlow /
// IPFIX receivers feeding the store's append-only segments through a
// BlockSink (the replicated volume). Design, limits, recovery and status
// fields: docs/COLLECTOR.md.
//
// Threads: a Collector owns one thread running its own os::EventLoop; every
// socket, framer, RELP session and SegmentWriter lives on it (no locks on the
// data path). Only Start/Stop/StatusJson are called from other threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "os/fs.h"
#include "util/status.h"

namespace tandem::collect {

// ---- The seam to the replicated volume -------------------------------------

// Asynchronous file operations on the store volume. Paths are relative to the
// store root ("events/<writer>-<gen>-<seq>.seg").
//
// Contract for implementations:
//  - `done` is called exactly once, from any thread, possibly before the call
//    returns; OK only once the operation is durable (protocol C: on both
//    hosts). It must not block for long (the collector only posts a task).
//  - Operations on the same path take effect in submission order. (The
//    collector keeps at most one operation per segment in flight anyway.)
//  - The sink must outlive the Collector using it.
class BlockSink {
 public:
  using Done = std::function<void(Status)>;
  virtual ~BlockSink() = default;
  // Creates an empty file (and its directory); an existing file is truncated
  // to 0. Durable: the directory entry too.
  virtual void Create(const std::string& path, Done done) = 0;
  // Writes `bytes` at `offset`, which is the file size before the append.
  // Durable: the data and the new size (fdatasync).
  virtual void Append(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes,
                      Done done) = 0;
  // Makes earlier operations on `path` durable (a no-op where every
  // operation already is).
  virtual void Sync(const std::string& path, Done done) = 0;
  // Cuts the file to `size` bytes (size <= current size). Durable.
  virtual void Truncate(const std::string& path, uint64_t size, Done done) = 0;
  // Removes the file; a missing file is OK. Durable (directory synced).
  virtual void Delete(const std::string& path, Done done) = 0;
};

// A BlockSink over an os::FileSystem rooted at `root_dir`: one unreplicated
// host, and the tests. One worker thread takes operations from a FIFO (at
// most `queue_ops_max` waiting; beyond that the submitting thread blocks
// until the worker has taken the queue -- a Collector keeps one append per
// stream in flight, so only a burst of recovery/retention operations can
// get there), writes them in order and makes each batch durable with one
// fdatasync per file touched (group commit), then calls the `done`s from
// the worker thread. Thread-safe. The destructor finishes what was queued.
// `done` callbacks must not call back into this sink synchronously with a
// full queue (they run on the worker).
class FileBlockSink final : public BlockSink {
 public:
  static constexpr size_t kQueueOpsMaxDefault = 4096;
  static constexpr size_t kOpenFilesMax = 64;  // open files cached; all closed when full

  // `fs` must outlive the sink.
  FileBlockSink(os::FileSystem& fs, std::string root_dir,
                size_t queue_ops_max = kQueueOpsMaxDefault);
  ~FileBlockSink() override;
  FileBlockSink(const FileBlockSink&) = delete;
  FileBlockSink& operator=(const FileBlockSink&) = delete;

  void Create(const std::string& path, Done done) override;
  void Append(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes,
              Done done) override;
  void Sync(const std::string& path, Done done) override;
  void Truncate(const std::string& path, uint64_t size, Done done) override;
  void Delete(const std::string& path, Done done) override;

  uint64_t syncs() const { return syncs_.load(); }  // fdatasync calls made

 private:
  enum class OpKind { kCreate, kAppend, kSync, kTruncate, kDelete };
  struct Op {
    OpKind kind;
    std::string path;
    uint64_t offset = 0;
    std::vector<uint8_t> bytes;
    Done done;
  };
  void Submit(Op op);
  void Run();
  void RunBatch(std::deque<Op>& batch);
  Status Apply(Op& op, std::map<std::string, bool>* dirty);
  Result<os::File*> FileFor(const std::string& path, bool create);
  std::string Full(const std::string& path) const { return root_ + "/" + path; }

  os::FileSystem& fs_;
  const std::string root_;
  const size_t queue_ops_max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;  // GUARDED_BY(mu_)
  bool stop_ = false;     // GUARDED_BY(mu_)
  // Worker thread only.
  std::map<std::string, std::unique_ptr<os::File>> files_;
  std::atomic<uint64_t> syncs_{0};
  std::thread worker_;
};

// ---- The collector ---------------------------------------------------------

// Percentage (0..100) of the store's file system in use; error if unknown.
using CapacityProbe = std::function<Result<double>(const std::string& store_dir)>;
// statvfs: used / (used + available to unprivileged users), as df(1) shows.
Result<double> StatvfsUsedPercent(const std::string& store_dir);

struct CollectorOptions {
  // Listeners. nullopt: disabled; 0: an ephemeral port (tests; see the
  // bound_*_port accessors). The daemon maps config port 0 to nullopt.
  std::string listen_address = "127.0.0.1";  // IPv4 or IPv6 literal
  std::optional<uint16_t> syslog_udp_port;
  std::optional<uint16_t> syslog_tcp_port;
  std::optional<uint16_t> relp_port;
  std::optional<uint16_t> netflow_port;

  // Store. `store_dir` is the local path of the volume the sink writes
  // (read here through `fs` for recovery and retention only).
  std::string store_dir;
  std::string writer;       // segment writer name: the host name (ValidateWriterName)
  uint64_t generation = 0;  // the HA epoch, in segment names
  os::FileSystem* fs = nullptr;  // nullptr: os::RealFileSystem()

  // Limits (CollectorConfig, in bytes / ms).
  size_t message_bytes_max = 64 * 1024;  // kSyslogMessageBytesMin..store::kStringBytesMax
  int64_t batch_ms = 5;                  // a block waits at most this long before its append
  uint64_t queue_bytes_max = 64ULL << 20;  // received, not yet durable: above it reads stop
  double capacity_stop_percent = 95;
  double capacity_resume_percent = 90;   // < capacity_stop_percent
  int64_t retention_days = 0;            // 0: no age limit
  uint64_t retention_bytes = 0;          // 0: no size limit
  uint64_t segment_bytes = 256ULL << 20;  // seal at this size ...
  int64_t segment_seconds = 3600;         // ... or age
  size_t tcp_connections_max = 1024;      // TCP syslog + RELP together
  size_t relp_window_max = 1024;          // RelpLimits::window_max

  // Housekeeping; tests shorten these.
  int64_t capacity_check_ms = 1000;
  int64_t retention_interval_ms = 60'000;
  int64_t stop_timeout_ms = 5'000;  // Stop waits this long for in-flight appends
  CapacityProbe capacity_probe;     // empty: StatvfsUsedPercent
  std::string status_file;          // "" : none; else StatusJson written here every second
};

// Receives, parses and stores events and flows. See the file comment for
// threads; the data path and its guarantees are in docs/COLLECTOR.md:
// a RELP message is acknowledged only once the block holding it is durable
// through the sink; UDP/TCP records are stored when durable, and lost if the
// host dies first (those protocols have no acknowledgement).
class Collector {
 public:
  // `sink` must outlive the Collector.
  Collector(CollectorOptions options, BlockSink& sink);
  // Calls Stop().
  ~Collector();
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Validates the options, binds every enabled listener, starts recovery of
  // the unsealed segments found in the store and the collector thread.
  // Error (nothing left running, nothing bound) on invalid options, a bind
  // failure or an unreadable store directory. REQUIRES: not started.
  Status Start();
  // Stops accepting and reading, sends RELP sessions `serverclose`, appends
  // the records already received (not sealing open segments: recovery will
  // find them valid) and waits for in-flight appends up to stop_timeout_ms;
  // then closes everything and joins the thread. Idempotent; any thread but
  // the collector's own (it joins that thread). Late sink completions after
  // Stop are dropped safely (the sink may still call them).
  void Stop();

  // Bound ports (valid after a successful Start; 0 if the listener is off).
  uint16_t syslog_udp_port() const { return bound_[0]; }
  uint16_t syslog_tcp_port() const { return bound_[1]; }
  uint16_t relp_port() const { return bound_[2]; }
  uint16_t netflow_port() const { return bound_[3]; }

  // A snapshot of the counters and state (docs/COLLECTOR.md, "Status").
  // Thread-safe; any time (zeros before Start).
  nlohmann::json StatusJson() const;

  class Impl;  // collector.cc

 private:
  CollectorOptions options_;
  BlockSink& sink_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::mutex stop_mu_;
  bool started_ = false;
  uint16_t bound_[4] = {0, 0, 0, 0};
};

}  // namespace tandem::collect
