// The indirect heartbeat (R-NC-4). A witness (`tandem witness`, run on
// managed hosts) receives the cluster hosts' heartbeats and answers queries:
// "when did you last hear host X, and what did it say?". A standby that
// stops hearing the active asks the witnesses before taking over; if any
// still hears the active, it does not (it is the one cut off).
// Single-threaded: loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "config/config.h"
#include "os/event_loop.h"
#include "peer/packet.h"

namespace tandem::peer {

constexpr size_t kWitnessHostsMax = 16;  // distinct senders a witness tracks

class Witness {
 public:
  Witness(os::EventLoop& loop, std::string name, std::string key, config::Endpoint listen);
  ~Witness();
  Status Open();

  struct Counters {
    uint64_t heartbeats = 0, queries = 0, dropped = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Host {
    ReplayFilter replay;
    int64_t last_heard_ms = -1;
    ha::Advert advert;
  };
  void OnReadable();
  void Handle(const Packet& p, const void* from, unsigned from_len);
  void Reply(const Packet& query, const void* from, unsigned from_len);

  os::EventLoop& loop_;
  std::string name_;
  std::string key_;
  config::Endpoint listen_;
  int fd_ = -1;
  uint64_t incarnation_;
  uint64_t seq_ = 0;
  std::map<std::string, Host> hosts_;
  Counters counters_;
};

}  // namespace tandem::peer
