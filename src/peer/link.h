// Heartbeat link to the peer over one or two UDP paths (R-HB-1..3):
// management and, optionally, crossover. Sends the local advert every
// interval and whenever it changes, answers each heartbeat with an ACK at
// once (RTT), authenticates everything (HMAC, docs/formats/heartbeat.md),
// drops and counts forged, replayed, unconfirmed and malformed packets.
// Single-threaded: loop thread only.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "ha/state_machine.h"
#include "os/event_loop.h"
#include "peer/packet.h"

namespace tandem::peer {

constexpr size_t kRttSamplesMax = 64;  // sent-heartbeat times remembered per path

struct PathStats {
  std::string name;             // "management" | "crossover"
  config::Endpoint listen, peer;
  int64_t last_heard_ms = -1;   // monotonic; -1 never
  int64_t rtt_ms = -1;          // last measured round trip; -1 unknown
  uint64_t sent = 0;
  uint64_t received = 0;        // accepted packets
  std::string send_error;       // last sendto error, "" if none
};

struct LinkCounters {
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> dropped{};
  uint64_t unknown_sender = 0;  // from an address that is not the peer's
  uint64_t unconfirmed = 0;     // authentic, but echoing an old incarnation of ours
  uint64_t late = 0;            // heartbeats read more than an interval after they arrived (we hung)
};

class HeartbeatLink {
 public:
  struct Path {
    config::Endpoint listen;
    config::Endpoint peer;
  };
  using OnHeartbeat = std::function<void(const ha::PeerHeartbeat&)>;

  // `incarnation`: this daemon's persisted start counter (strictly increasing).
  HeartbeatLink(os::EventLoop& loop, std::string self_name, std::string key,
                std::vector<Path> paths, uint64_t incarnation, int64_t interval_ms,
                OnHeartbeat on_heartbeat, std::vector<config::Endpoint> witnesses = {});
  ~HeartbeatLink();

  // Binds every path's listen address and starts the interval timer.
  Status Open();
  void SetAdvert(const ha::Advert& a) { advert_ = a; }
  void SendNow();  // a heartbeat on every path now (advert changed)
  // A new heartbeat interval (a deployed option, live): the next heartbeat
  // goes out now and then every `interval_ms`.
  void SetInterval(int64_t interval_ms);

  const std::vector<PathStats>& paths() const { return stats_; }
  const LinkCounters& counters() const { return counters_; }
  const std::string& peer_name() const { return peer_name_; }
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  int64_t rtt_ms() const;  // best current RTT over live paths; -1 unknown

  // Indirect heartbeat (R-NC-4): asks every witness about `subject` (empty:
  // the freshest host other than us). `done` runs once, when all answered or
  // after `timeout_ms`, with what they said. No witnesses: done at once.
  struct WitnessReport {
    int asked = 0;
    int answered = 0;
    // Some witness heard `subject` within `fresh_ms` and it said ACTIVE.
    bool subject_active = false;
    // The freshest-heard advert of `subject` among fresh replies (ACTIVE ones
    // preferred, then the highest epoch).
    std::optional<ha::Advert> subject_advert;
    std::string detail;  // "198.18.0.11:7790 heard lab-primary ACTIVE 40 ms ago; ..."
  };
  void QueryWitnesses(const std::string& subject, int64_t fresh_ms, int64_t timeout_ms,
                      std::function<void(const WitnessReport&)> done);
  bool has_witnesses() const { return !witnesses_.empty(); }

 private:
  void Send(size_t path, PacketType type, uint64_t echo_seq);
  void OnReadable(size_t path);
  // queued_ms: how long the datagram waited in our socket (kernel receive time).
  void Handle(size_t path, const Packet& p, int64_t queued_ms);
  void ScheduleTick();
  void HandleWitnessReply(const Packet& p, size_t witness, int64_t queued_ms);
  void SendTo(const config::Endpoint& to, PacketType type, uint64_t echo_seq,
              const std::string& subject);
  int WitnessIndex(const sockaddr_in& from) const;
  void FinishWitnessQuery();

  os::EventLoop& loop_;
  std::string self_;
  std::string key_;
  std::vector<Path> cfg_;
  std::vector<PathStats> stats_;
  std::vector<int> fds_;
  std::vector<ReplayFilter> replay_;
  std::vector<std::array<std::pair<uint64_t, int64_t>, kRttSamplesMax>> sent_at_;
  uint64_t incarnation_;
  uint64_t seq_ = 0;
  int64_t interval_ms_;
  OnHeartbeat on_heartbeat_;
  ha::Advert advert_;
  LinkCounters counters_;
  std::string peer_name_;
  uint64_t peer_incarnation_ = 0;                   // highest authentic incarnation seen
  std::pair<uint64_t, uint64_t> newest_{0, 0};      // newest (incarnation, seq) delivered
  os::EventLoop::TimerId timer_ = 0;

  std::vector<config::Endpoint> witnesses_;
  struct WitnessQuery {
    uint64_t seq = 0;  // 0: none outstanding
    int64_t fresh_ms = 0;
    std::vector<bool> answered;
    WitnessReport report;
    std::vector<std::function<void(const WitnessReport&)>> done;
    os::EventLoop::TimerId timer = 0;
  } query_;
};

}  // namespace tandem::peer
