// The failover logic as a pure function (ENGINEERING.md #1, etcd raft style):
//   Output Step(const State&, const Event&)
// No sockets, files or clock reads: time arrives inside every Event. The
// executor (daemon/) carries out the returned actions in order and feeds the
// outcomes back as events. Behaviour is pinned by test/scenarios/*.txt.
//
// Design: event handlers only record facts (peer advert, test verdicts, admin
// requests); Reconcile() then applies the rules of the current status. Every
// rule is level-triggered, so a lost heartbeat is repaired by the next one.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ha/types.h"

namespace tandem::ha {

constexpr int kPathsMax = 2;  // 0 = management, 1 = crossover (R-HB-2)

struct Options {
  Role role = Role::kPrimary;
  int64_t heartbeat_interval_ms = 10000;
  int64_t heartbeat_timeout_ms = 30000;
  int64_t initial_dead_time_ms = 60000;
  bool has_connectivity_peers = false;  // no peers: the test trivially passes
  int64_t connectivity_interval_ms = 10000;
  // Ids of takeover / connectivity-check requests start here; the executor
  // derives it from the daemon's incarnation so ids never repeat across runs.
  uint32_t request_id_base = 1;
};

// What survives a restart (the local state file, never /store).
struct Persistent {
  uint64_t epoch = 0;              // newest data generation this host holds
  uint64_t last_active_epoch = 0;  // epoch in which this host was last Active (R-OP-7)
  bool admin_offline = false;
  bool failed = false;  // sticky Failed until `ha restore`
  std::string failed_reason;
  bool operator==(const Persistent&) const = default;
};

enum class SeqKind : uint8_t { kNone, kActivate, kRelease };

// The local replica of /store as the executor reports it (R-DS-*); it is also
// the DiskState event. The executor sends it whenever the replica's state
// changes and, when replication is configured, once right after Boot before
// any other event (the state on disk survives restarts). Without replication
// none ever arrives and these defaults hold: promotion is never held back.
struct DiskState {
  bool up_to_date = true;      // the local disk is UpToDate: it may be promoted
  bool synchronizing = false;  // sync target of an initial or catch-up resync (R-DS-2, R-DS-3)
  std::string detail;          // for reasons and the log: "Inconsistent, SyncTarget 42%"
  bool operator==(const DiskState&) const = default;
};

struct State {
  Options opts;
  Persistent disk;

  HostStatus status = HostStatus::kStarting;
  std::string reason;  // why the host is in `status`
  int64_t now_ms = 0;
  int64_t started_ms = 0;
  int64_t status_since_ms = 0;

  // Peer knowledge.
  std::array<int64_t, kPathsMax> path_heard_ms{-1, -1};  // -1: never heard
  std::optional<Advert> peer;                            // last advert received
  int64_t peer_silent_since_ms = -1;                     // -1: peer alive (or never heard)

  // Connectivity tests (R-NC-1..3).
  bool conn_in_flight = false;
  int64_t conn_requested_ms = -1;
  int64_t conn_result_ms = -1;  // -1: no result yet
  bool conn_ok = true;
  // What a witness last said about the silent peer (fresh replies only).
  std::optional<Advert> conn_witness_peer;
  bool conn_failure_noted = false;  // standby: "not taking over" logged once
  // A witness heard the peer ACTIVE in this epoch, newer than what its
  // heartbeats to us said: those were sent before it took over (buffered
  // while we hung). Until stale_epoch_until_ms, heartbeats of an older epoch
  // are ignored (the epoch of a host never goes down, so they are old news).
  uint64_t stale_below_epoch = 0;
  int64_t stale_epoch_until_ms = -1;

  // Planned switch-over.
  bool handover = false;  // advertised after releasing to the peer
  int64_t handover_since_ms = -1;
  uint32_t next_request_id = 0;
  uint32_t takeover_request = 0;  // ours, as standby
  int64_t takeover_since_ms = -1;
  uint32_t takeover_handled = 0;  // peer's request we already served, as active
  uint32_t conn_check_request = 0;  // ours, as active (R-NC-2)
  int64_t conn_check_since_ms = -1;
  int64_t conn_check_declined_ms = -1;  // the standby's test failed too; ask again after our next test
  uint32_t conn_check_served = 0;  // peer's request whose test we started, as standby
  uint32_t conn_check_answer_id = 0;
  bool conn_check_answer_ok = false;

  // Local replica (R-DS-*). Promotion to Active needs an UpToDate replica
  // that is not synchronizing, unless the administrator forced a takeover.
  DiskState replica;
  bool promotion_forced = false;  // `ha takeover --force` accepted, not yet done (admin.cc)
  std::string promotion_refused;  // cause of the refusal last noted ("": none)

  // The action sequence in flight (activation or release).
  uint64_t next_sequence = 1;
  uint64_t sequence = 0;  // 0: none in flight
  SeqKind seq_kind = SeqKind::kNone;
  HostStatus release_target = HostStatus::kStandby;
  bool release_handover = false;
};

// Creates the state of a freshly started daemon.
State Boot(const Options& opts, const Persistent& disk, int64_t now_ms);

// ---- Events ----
struct Tick {};
struct PeerHeartbeat {
  int path = 0;  // 0..kPathsMax-1
  Advert advert;
  // The packet was authentic and new on its path, but an advert sent later
  // already arrived on another path: it proves the path is alive, and its
  // (older) advert is ignored.
  bool stale = false;
  // How long the packet waited in our socket before we read it (the kernel's
  // receive time). After this daemon hung (SIGSTOP, a paused VM, a stalled
  // disk) its socket holds heartbeats from before the hang: one older than
  // the heartbeat timeout says nothing about the peer now and is ignored.
  int64_t age_ms = 0;
};
struct ConnectivityResult {
  bool ok = false;
  std::string detail;  // "2/2 peers answered", for the log
  // Indirect heartbeat (R-NC-4): asked while the peer was silent, a witness
  // heard the peer recently, and this is the advert it heard.
  std::optional<Advert> witness_peer;
};
struct SequenceDone {
  uint64_t sequence = 0;
  bool ok = true;
  std::string error;  // which step failed and why
};
enum class AdminOp : uint8_t { kSetOffline, kSetOnline, kTakeover, kGiveback, kRestore };
struct AdminCommand {
  AdminOp op;
  // kTakeover only: promote this host although its replica is not UpToDate
  // (or is synchronizing); the accepted message carries a data-loss warning.
  bool force = false;
};
// A failure of this host that it cannot repair by itself: an I/O error on the
// store's disk (R-DS-8, R-FO-1: "disk failed: /store/x: pwrite: Input/output
// error") or a fatal executor error. The host releases what it holds and is
// FAILED (sticky, persisted) until `ha restore`; a standby peer sees FAILED
// in the advert and takes over at once (R-FO-1).
struct LocalFailure {
  std::string reason;
};

struct Event {
  using Body = std::variant<Tick, PeerHeartbeat, ConnectivityResult, SequenceDone, AdminCommand,
                            LocalFailure, DiskState>;
  int64_t now_ms = 0;
  Body body;
};

// ---- Actions ----
enum class ActionType : uint8_t {
  // R-FO-3 take-over sequence, in this order:
  kAttachStore, kAddAlias, kAssignVip, kStartServices, kFetchConfig,
  // ... and its reverse for releasing:
  kStopServices, kUnassignVip, kRemoveAlias, kDetachStore,
  // Immediate actions:
  kPersist,              // write State::disk to the state file (before anything after it)
  kSendHeartbeat,        // advert changed: tell the peer now, don't wait for the interval
  kRunConnectivityTest,  // answer with ConnectivityResult
  kNotify,               // status changed: run the notify hook (from, to, reason)
};
std::string_view ActionName(ActionType t);  // "attach-store", ...

struct Action {
  ActionType type;
  uint64_t sequence = 0;  // nonzero: a step of that sequence; report SequenceDone after the last
  bool last_in_sequence = false;
  std::string detail;  // reason / notify text

  bool operator==(const Action&) const = default;
};

struct Transition {
  HostStatus from;
  HostStatus to;
  std::string reason;
};

struct Output {
  State state;
  std::vector<Transition> transitions;
  std::vector<Action> actions;
  // For AdminCommand: whether it was accepted, and the reason if refused.
  std::optional<bool> admin_accepted;
  std::string admin_message;
  // Decisions worth one log line that change no status, e.g. a promotion
  // refused because the local replica is not UpToDate (each cause once, not
  // at every tick). The executor logs them as warnings.
  std::vector<std::string> notes = {};
};

Output Step(const State& s, const Event& e);

// The advert this host sends in its heartbeats.
Advert MakeAdvert(const State& s);

// True if the local replica allows promotion to Active: UpToDate and not
// synchronizing (always true without replication).
bool ReplicaReady(const State& s);

// True if the peer has been heard on some path within the timeout.
bool PeerAlive(const State& s);
int PathsUp(const State& s);

}  // namespace tandem::ha
