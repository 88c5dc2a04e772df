// Network connectivity tests (R-NC-1): TCP connect to each configured
// host:port, all in parallel, non-blocking on the event loop, each bounded by
// a timeout. ICMP comes with the network issue. Single-threaded (loop thread).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "os/event_loop.h"

namespace tandem::net {

struct ProbeResult {
  config::Endpoint peer;
  bool ok = false;
  int64_t rtt_ms = -1;   // connect time when ok
  std::string error;     // "connection refused", "timed out after 2000 ms", ...
};

struct TestReport {
  bool ok = false;  // any (or all, with require_all) probes succeeded; true with no peers
  std::vector<ProbeResult> probes;
  std::string Summary() const;  // "2/3 test peers answered (198.18.0.5:22: timed out ...)"
};

class ConnectivityTester {
 public:
  ConnectivityTester(os::EventLoop& loop, std::vector<config::Endpoint> peers, int64_t timeout_ms,
                     bool require_all);
  ~ConnectivityTester();
  // Starts a round unless one is running; `done` runs on the loop once with
  // the report of the round (callers asking during a round share its result).
  void Run(std::function<void(const TestReport&)> done);
  bool running() const;
  const TestReport& last() const;  // last completed round

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::net
