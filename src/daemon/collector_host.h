// The collector inside tandemd (docs/COLLECTOR.md): runs on the active host
// only, started by the take-over's start-services step (after the VIP is
// assigned) and stopped by the release's stop-services step (before the VIP
// goes). It writes its segments through the replicated volume, so a block is
// durable on both hosts (protocol C) before a RELP sender hears "200".
//
// Thread safety: Start/Stop from the daemon's loop thread; StatusJson from any.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "collect/collector.h"
#include "config/config.h"
#include "repl/service.h"
#include "util/status.h"

namespace tandem::daemon {

// collect::BlockSink over the replicated volume (repl::Service::Submit):
// `done` runs on the replication thread once the write is acknowledged under
// the configured protocol (C: durable on both hosts).
class ReplBlockSink : public collect::BlockSink {
 public:
  explicit ReplBlockSink(repl::Service& service) : service_(service) {}
  void Create(const std::string& path, Done done) override;
  void Append(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes,
              Done done) override;
  void Sync(const std::string& path, Done done) override;
  void Truncate(const std::string& path, uint64_t size, Done done) override;
  void Delete(const std::string& path, Done done) override;

 private:
  void Submit(repl::Write w, Done done);
  repl::Service& service_;
};

// Maps [collector] to the collector's options. `generation`: the HA epoch of
// this activation (segment names are unique per writer and generation).
collect::CollectorOptions CollectorOptionsFor(const config::Config& cfg, uint64_t generation);

class CollectorHost {
 public:
  // REQUIRES: cfg.collector.enabled and `repl` (the collector writes the
  // replicated store). Both outlive this object.
  CollectorHost(const config::Config& cfg, repl::Service& repl);
  ~CollectorHost();

  // Binds the listeners on the VIP and starts collecting. An error (a port
  // in use, an unreadable store) is returned and kept for the status; the
  // host stays active (its other services and the store still serve).
  Status Start(uint64_t generation);
  void Stop();  // idempotent; waits (bounded: stop_timeout_ms) for in-flight appends
  // Stop on a helper thread, so the HA loop never waits; `done` runs on that
  // thread afterwards.
  void StopAsync(std::function<void()> done);
  bool Running() const;
  // {"enabled", "running", "last_error", ...the collector's own status}.
  nlohmann::json StatusJson() const;

 private:
  const config::Config& cfg_;
  ReplBlockSink sink_;
  mutable std::mutex mu_;
  std::unique_ptr<collect::Collector> collector_;  // GUARDED_BY(mu_) for reads
  std::string last_error_;
  std::thread stopper_;  // loop thread only
};

}  // namespace tandem::daemon
