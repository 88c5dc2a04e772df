// A seeded simulation of the replication protocol (ENGINEERING.md #4, in the
// spirit of FoundationDB's simulator and TigerBeetle's VOPR): two replicas
// joined by the in-memory wire of pair_harness.h, each on its own
// FaultFileSystem, on a manual clock. One 64-bit seed drives everything.
//
// What it models, step by step (Step, HaTick):
//  - writes on the primary (or both, during a dual-primary episode): unique
//    records appended to events/<node>-<period>.seg (one file per primary
//    period, so split brains merge), some up to 200 KiB (several 64 KiB
//    chunks, several frames), and per seed 0-12 % create / write_at /
//    truncate / rename / delete / append on four misc/ files;
//  - the clock: rounds of delivery and timers, 1-700 ms apart;
//  - the network: connects from either side (the service's retry loop),
//    cuts with a refusal period, silent partitions (nothing delivered, the
//    peer timeout decides), a corrupted, dropped or truncated frame;
//  - hosts: process crashes and power losses (drop or tear what was not
//    synced) of the primary or the secondary, restarts after 0-8 s;
//  - disks: I/O errors after N operations on the store, the metadata or
//    both, a full disk; a disk that went Failed is taken out and replaced
//    by a new, empty one (the host rejoins for a full sync);
//  - the HA core: on "no primary", promote an UpToDate replica; planned
//    switch-overs (demote, then promote the other); dual primaries across a
//    partition, one demoted before the network heals;
//  - the admin: ha split-brain --survivor (never the only UpToDate side),
//    demoting the primary that must give way, ha verify, and ha takeover
//    --force when the only other disk is a new one;
//  - healing at the end: faults cleared, hosts restarted, network repaired,
//    then rounds of HA + admin + delivery until converged and stable.
//
// Invariants, checked after every step (some on every state change) and
// after healing:
//  1. no acknowledged write lost: every append acknowledged OK is, after
//     healing, in its file in the converged store, or in a split-brain
//     loser's quarantine;
//  2. convergence: after healing both replicas are Established, UpToDate,
//     at the same generations, with byte-identical stores, and take a
//     replicated write; the stores are identical too whenever the pair is
//     quiescent and in sync during the run;
//  3. safety: never both primary on an established connection; Promote
//     without force refuses a replica that is not UpToDate; a failed
//     Promote leaves the replica secondary; generations always Valid(); a
//     sync source is UpToDate; a record acknowledged under protocol C while
//     replicating is on the peer; every events file holds only records
//     written to it, in order, a torn tail at most;
//  4. liveness: healing converges within kHealRoundsMax rounds.
//
// Excluded from invariant 1 (by design; each counted in the output):
//  - records whose only copy was on a disk the admin replaced (written by
//    that host while unprotected and not resynced yet, or quarantined
//    there), or only unsynced on the survivor that then lost power;
//  - protocols A and B: records acknowledged while replicating and not yet
//    known durable on both hosts (the next quiescent in-sync point) when a
//    host crashes: A acknowledges on handing to the socket, B on receipt;
//  - records written after a split-brain merge that finished on the peer
//    only (a design question, see OnDone).
// Excluded from the order check: files of a replica taken over by force
// (whatever its broken-off sync left), and files that may hold holes after
// a crashed primary reconnected without a resync (a design question, see
// OnLog). Not simulated: a power loss within the kernel's writeback window
// after a process crash (Writeback), and tearing a host's directories while
// a rename may be uncommitted there (Crash).
//
// Seeds: 1..500 by default; TANDEM_SIM_SEEDS=N for more (starting at
// TANDEM_SIM_FIRST_SEED, default 1; TANDEM_SIM_PART=k/n runs the k-th of n
// interleaved parts of them); TANDEM_SIM_SEED=S replays one. A
// failure prints seed=S, the step and the last events (TANDEM_SIM_TRACE=N
// keeps N of them and traces every acknowledgement; TANDEM_SIM_WATCH=path
// traces one store file on both hosts).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "os/fault_fs.h"
#include "repl/pair_harness.h"
#include "repl/replica.h"

namespace tandem::repl {
namespace {

using os::FaultFileSystem;
using testing::AppendOp;
using testing::Pair;
using testing::SimpleOp;
using testing::WriteAtOp;

constexpr int64_t kNever = INT64_MAX;
constexpr int kTraceMax = 40;
constexpr int kLogTailMax = 25;
constexpr int kHealRoundsMax = 60;

struct SimFailure {
  std::string what;
};

struct SimConfig {
  Protocol protocol = Protocol::kC;
  int steps = 400;
};

// Every counter, summed over seeds and printed.
// clang-format off
#define TANDEM_SIM_STATS(X)                                                                       \
  X(seeds) X(steps) X(failovers) X(switchovers) X(dual_primaries) X(forced_promotions)            \
  X(refused_promotions) X(split_brains) X(split_brains_merged) X(split_brains_resolved)           \
  X(partitions) X(silent_partitions) X(connects) X(syncs) X(verifies) X(process_crashes)          \
  X(power_losses) X(disk_faults) X(disks_full) X(disks_failed) X(disks_replaced)                  \
  X(frames_corrupted) X(frames_dropped) X(streams_truncated) X(frames_rejected)                   \
  X(crashed_primary_no_resync) X(half_merges) X(insync_checks) X(appends_acked)                   \
  X(acked_replicated) X(acked_unprotected) X(writes_failed) X(misc_ops) X(big_writes)             \
  X(records_checked) X(records_in_quarantine) X(excluded_replaced_disk) X(excluded_unsynced)      \
  X(excluded_ab_unsettled) X(excluded_half_merged) X(metadata_resets) X(files_left_half_merged)
// clang-format on

struct SimStats {
#define TANDEM_SIM_FIELD(name) uint64_t name = 0;
  TANDEM_SIM_STATS(TANDEM_SIM_FIELD)
#undef TANDEM_SIM_FIELD

  void Add(const SimStats& o) {
#define TANDEM_SIM_ADD(name) name += o.name;
    TANDEM_SIM_STATS(TANDEM_SIM_ADD)
#undef TANDEM_SIM_ADD
  }
  std::string ToString() const {
    std::ostringstream s;
    s << "seeds=" << seeds << " steps=" << steps << "\n"
      << "  failovers=" << failovers << " switchovers=" << switchovers
      << " dual_primaries=" << dual_primaries << " forced_promotions=" << forced_promotions
      << " refused_promotions=" << refused_promotions << "\n"
      << "  split_brains=" << split_brains << " merged=" << split_brains_merged
      << " resolved_by_admin=" << split_brains_resolved
      << " merges_finished_on_one_side_only=" << half_merges
      << " metadata_moved_away=" << metadata_resets
      << " files_left_half_merged=" << files_left_half_merged << "\n"
      << "  partitions=" << partitions << " silent_partitions=" << silent_partitions
      << " connects=" << connects << " syncs=" << syncs << " verifies=" << verifies
      << " crashed_primary_reconnects_without_resync=" << crashed_primary_no_resync << "\n"
      << "  process_crashes=" << process_crashes << " power_losses=" << power_losses
      << " disk_faults=" << disk_faults << " disks_full=" << disks_full
      << " disks_failed=" << disks_failed << " disks_replaced=" << disks_replaced << "\n"
      << "  frames_corrupted=" << frames_corrupted << " frames_dropped=" << frames_dropped
      << " streams_truncated=" << streams_truncated << " frames_rejected=" << frames_rejected
      << "\n"
      << "  appends_acked=" << appends_acked << " (replicated=" << acked_replicated
      << " unprotected=" << acked_unprotected << ") writes_failed=" << writes_failed
      << " misc_ops=" << misc_ops << " big_writes=" << big_writes
      << " in_sync_checks=" << insync_checks << "\n"
      << "  acked records checked=" << records_checked
      << " (found only in quarantine=" << records_in_quarantine
      << "); excluded: replaced disk=" << excluded_replaced_disk
      << " unsynced on the survivor=" << excluded_unsynced
      << " A/B unsettled at a crash=" << excluded_ab_unsettled
      << " after a one-sided merge=" << excluded_half_merged;
    return s.str();
  }
};

bool Replicating(ReplState s) {
  return s == ReplState::kEstablished || s == ReplState::kSyncSource ||
         s == ReplState::kVerifySource || s == ReplState::kMerging;
}

class Sim {
 public:
  Sim(uint64_t seed, SimConfig cfg) : seed_(seed), cfg_(cfg), rng_(seed) {
    // Some seeds write only events (split brains merge), others also the
    // misc/ files (split brains need the admin).
    static const uint64_t kMiscPercent[] = {0, 2, 6, 12};
    misc_percent_ = kMiscPercent[Rnd(4)];
    // Stormy seeds and calmer ones (more time connected and in sync).
    static const double kCalm[] = {0, 0, 0.5, 0.8};
    calm_ = kCalm[Rnd(4)];
    for (int i = 0; i < 2; ++i) disks_[i].push_back(std::make_unique<FaultFileSystem>());
    pair_ = std::make_unique<Pair>(*disks_[0].back(), *disks_[1].back(), "/sim",
                                   seed * 0x9E3779B97F4A7C15ULL + 1, cfg.protocol);
  }

  // Runs the seed; throws SimFailure.
  void Run() {
    for (int i = 0; i < 2; ++i) StartNode(i);
    PromoteNode(0, false, "initial primary");
    for (step_ = 1; step_ <= cfg_.steps; ++step_) {
      stats_.steps++;
      Step();
      HaTick(false);
      CheckInvariants();
    }
    step_ = cfg_.steps + 1;
    Heal();
    FinalChecks();
  }

  std::string Report(const std::string& what) const {
    std::ostringstream s;
    s << "seed=" << seed_ << " step=" << step_ << " protocol=" << static_cast<char>(cfg_.protocol)
      << ": " << what << "\n"
      << "  replay: TANDEM_SIM_SEED=" << seed_ << " repl_test --gtest_filter='ReplSim*'\n"
      << "  last events:\n";
    for (const std::string& e : trace_) s << "    " << e << "\n";
    for (int i = 0; i < 2; ++i) {
      s << "  " << Name(i) << " log tail:\n";
      for (const std::string& l : logs_[i]) s << "    " << l << "\n";
    }
    return s.str();
  }
  const SimStats& stats() const { return stats_; }

 private:
  // An append to an events file, tracked to the end.
  struct Rec {
    std::string file;
    std::string data;
    int writer = 0;
    enum { kPending, kAcked, kFailed } state = kPending;
    bool replicated = false;  // acknowledged while the writes were being replicated
    uint64_t ack_seq = 0;
    int64_t ack_ms = 0;
    bool excluded = false;  // lost by design (see Exclude's callers)
  };
  struct NodeSim {
    int64_t restart_at_ms = kNever;
    bool fault_active = false;
    int64_t fault_until_ms = 0;
    std::string file;  // events file of the current primary period
    ReplState prev_state = ReplState::kConnecting;
    uint64_t replaced_at_seq = 0;  // ack_seq when its disk was last replaced
    bool fresh_disk = false;       // replaced, not yet UpToDate
    int clean_step = 0;            // last step that ended with nothing uncommitted here
    int64_t merge_began_ms = -1, merged_ms = -2, half_merge_noted_ms = -3;
    bool half_merged = false;      // the peer finished the last merge, this side did not
    bool crashed_primary = false;  // crashed as primary, no sync since
    std::set<uint64_t> fragile;    // records whose only copy was unsynced here
  };

  // ------------------------------------------------------------ helpers

  uint64_t Rnd(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Now() const { return pair_->clock().NowMs(); }
  std::string Name(int i) const { return i == 0 ? "alpha" : "beta"; }
  Replica* Rep(int i) { return pair_->node(i).replica.get(); }
  FaultFileSystem& Disk(int i) { return *disks_[i].back(); }
  bool Alive(int i) { return Rep(i) != nullptr; }
  bool Primary(int i) { return Alive(i) && Rep(i)->primary(); }

  [[noreturn]] void Fail(const std::string& what) { throw SimFailure{Report(what)}; }
  // From inside replica callbacks: reported at the next check, so nothing
  // unwinds through the replica.
  void Defer(const std::string& what) {
    if (deferred_.empty()) deferred_ = what;
  }

  void Ev(const std::string& what) {
    std::ostringstream s;
    s << "step " << step_ << " t=" << Now() << ": " << what;
    for (int i = 0; i < 2; ++i) {
      s << " | " << Name(i) << "=";
      if (!Alive(i)) {
        s << "down";
      } else {
        s << Rep(i)->summary() << " " << ToString(Rep(i)->generations());
      }
    }
    trace_.push_back(s.str());
    if (trace_.size() > trace_max_) trace_.pop_front();
  }

  void OnLog(int i, const std::string& m) {
    logs_[i].push_back("t=" + std::to_string(Now()) + " " + m);
    if (logs_[i].size() > log_max_) logs_[i].pop_front();
    // Counted from the log: the counters start over with every restart.
    if (i == 0 && m.rfind("split brain merged", 0) == 0) stats_.split_brains_merged++;
    if (m.rfind("split brain merged", 0) == 0) {
      n_[i].merged_ms = Now();
      // The other side may have left the merge already (its end of the
      // connection broke while our last frames were still on the way).
      if (Rep(1 - i) == nullptr || Rep(1 - i)->state() != ReplState::kMerging) MergeBroke(1 - i);
    }
    if (m.rfind("connected to ", 0) == 0 && m.find(": none (") != std::string::npos &&
        n_[i].crashed_primary && Rep(i) != nullptr && Rep(i)->changes().pinned() > 0) {
      // A design issue (see the report): a primary that crashed and comes
      // back before a failover has the same generations as its peer, so
      // nothing is resynced although its activity log holds chunks the peer
      // may lack (writes in flight at the crash) or have differently. The
      // copies differ until the next sync; later appends leave holes on the
      // peer. The simulator stops comparing until then, exempts those
      // files from the order check, and heals with an online verify.
      diverged_ = true;
      stats_.crashed_primary_no_resync++;
      for (const auto& [p, c] : Rep(i)->changes().Pinned()) holed_files_.insert(p);
      Ev(Name(i) + " crashed as primary and reconnected without a resync");
    }
    if ((m.rfind("sync ", 0) == 0 && m.find(" finished") != std::string::npos) ||
        m.rfind("split brain merged", 0) == 0 || m.rfind("online verify finished", 0) == 0) {
      diverged_ = false;
      n_[0].crashed_primary = n_[1].crashed_primary = false;
    }
    if (m.rfind("split brain merged", 0) == 0 || m.rfind("sync from ", 0) == 0 ||
        m.rfind("sync to ", 0) == 0) {
      if (m.find(" finished") != std::string::npos || m.rfind("split brain merged", 0) == 0) {
        n_[i].half_merged = false;
      }
    }
    if (i == 0 && m.rfind("split brain with", 0) == 0) stats_.split_brains++;
    if (m.find("bad frame from the peer") != std::string::npos) stats_.frames_rejected++;
    if (m.rfind("sync from ", 0) == 0 && m.find(" finished") != std::string::npos) stats_.syncs++;
  }

  void OnChange(int i) {
    Replica* r = Rep(i);
    Replica* o = Rep(1 - i);
    if (r == nullptr) return;
    if (o != nullptr && r->primary() && o->primary() && r->connected() && o->connected() &&
        r->state() == ReplState::kEstablished && o->state() == ReplState::kEstablished) {
      Defer("safety: both replicas primary on an established connection");
    }
    if (r->state() == ReplState::kSyncSource && n_[i].prev_state != ReplState::kSyncSource &&
        r->disk() != DiskState::kUpToDate) {
      Defer("safety: " + Name(i) + " became a sync source with a " +
            std::string(DiskStateName(r->disk())) + " disk (its target would become UpToDate)");
    }
    if (!Valid(r->generations())) Defer("invalid generations on " + Name(i));
    if (r->state() == ReplState::kMerging && n_[i].prev_state != ReplState::kMerging) {
      n_[i].merge_began_ms = Now();
    }
    if (n_[i].prev_state == ReplState::kMerging && r->state() != ReplState::kMerging &&
        r->state() != ReplState::kEstablished) {
      MergeBroke(i);
      NoteHalfReceived(i);
    }
    n_[i].prev_state = r->state();
  }

  // Node i left a merge without finishing it (connection lost, or i
  // died). If the peer finished it (its last frame got through, ours did
  // not), see OnDone.
  void MergeBroke(int i) {
    if (n_[1 - i].merged_ms < n_[i].merge_began_ms || n_[i].merged_ms >= n_[i].merge_began_ms ||
        n_[i].half_merge_noted_ms == n_[i].merge_began_ms) {
      return;
    }
    n_[i].half_merge_noted_ms = n_[i].merge_began_ms;
    n_[i].half_merged = true;
    stats_.half_merges++;
    Ev(Name(i) + ": merge finished on the peer only");
    // What this side acknowledged during the merge went out as live writes
    // the peer may never have received: the same exclusion.
    for (Rec& rec : recs_) {
      if (rec.state == Rec::kAcked && rec.writer == i && rec.ack_ms >= n_[i].merge_began_ms) {
        Exclude(rec, &stats_.excluded_half_merged);
      }
    }
  }

  // The replica of node i goes away (crash, failed disk, admin).
  void KillNode(int i) {
    if (Rep(i) != nullptr && Rep(i)->state() == ReplState::kMerging) {
      MergeBroke(i);
      NoteHalfReceived(i);
    }
    pair_->Kill(i);
  }

  // A merge that broke off leaves the peer's files half-received here
  // (zero-filled up to their final size: each sync chunk sets the size),
  // and on the primary, which stays UpToDate, nothing marks them. A merge
  // that resumes repairs them; if the peer's disk is replaced first, or the
  // admin makes this side the survivor, they stay (see the report). Such
  // files are exempt from the order check.
  void NoteHalfReceived(int i) {
    for (auto& [path, data] : Snap(i, pair_->opts(i).store_dir)) {
      if (path.rfind("events/", 0) == 0 && !EventsFileError(path, data).empty() &&
          broken_merge_files_.insert(path).second) {
        stats_.files_left_half_merged++;
      }
    }
  }

  void Hook(int i) {
    Replica* r = Rep(i);
    r->SetLogger([this, i](int, const std::string& m) { OnLog(i, m); });
    r->SetOnChange([this, i] { OnChange(i); });
    n_[i].prev_state = r->state();
  }

  void StartNode(int i) {
    Disk(i).ClearFaults();
    n_[i].fault_active = false;
    Status st = pair_->Start(i);
    if (!st.ok()) Fail("restart of " + Name(i) + " failed: " + st.message());
    Hook(i);
    n_[i].restart_at_ms = kNever;
    if (Rep(i)->disk() == DiskState::kFailed) {
      // Failed is persisted: the admin replaces the disk before the host
      // rejoins.
      Ev("restarted " + Name(i) + " with a failed disk");
      pair_->Kill(i);
      ReplaceDisk(i);
      st = pair_->Start(i);
      if (!st.ok()) Fail("start of " + Name(i) + " on a new disk failed: " + st.message());
      Hook(i);
    }
    Ev("started " + Name(i));
  }

  // ---------------------------------------------------------- records

  std::string RecordData(uint64_t id, int writer, size_t filler) {
    std::string s = "r" + std::to_string(id) + ":" + std::to_string(seed_) + ":" +
                    std::to_string(step_) + ":" + Name(writer) + ":";
    size_t head = s.size();
    s.resize(head + filler + 1);
    for (size_t k = 0; k < filler; ++k) s[head + k] = static_cast<char>('a' + (id + k) % 26);
    s.back() = '\n';
    return s;
  }

  void OnDone(uint64_t id, int i, const Status& st) {
    Rec& r = recs_[id];
    if (!st.ok()) {
      r.state = Rec::kFailed;
      stats_.writes_failed++;
      return;
    }
    r.state = Rec::kAcked;
    r.ack_seq = ++ack_seq_;
    r.ack_ms = Now();
    stats_.appends_acked++;
    Replica* rep = Rep(i);
    r.replicated = rep != nullptr && rep->connected() && Replicating(rep->state());
    (r.replicated ? stats_.acked_replicated : stats_.acked_unprotected)++;
    // Exclusion (a design issue, see the report): after a split-brain merge
    // that finished on the peer only (the last kSyncDone lost), this host
    // still holds its pre-merge generation, which the peer's history
    // contains. What it writes before its next sync is decided as older
    // data (rule 6: a full sync from the peer) and discarded.
    if (n_[i].half_merged) Exclude(r, &stats_.excluded_half_merged);
    if (trace_max_ >= 1000)
      Ev("acked r" + std::to_string(id) + (r.replicated ? " replicated" : " local"));
  }

  // The id of a complete record line, if `line` (without '\n') is one.
  std::optional<uint64_t> RecordId(std::string_view line) const {
    if (line.size() < 2 || line[0] != 'r') return std::nullopt;
    uint64_t id = 0;
    size_t k = 1;
    for (; k < line.size() && line[k] >= '0' && line[k] <= '9'; ++k) id = id * 10 + (line[k] - '0');
    if (k == 1 || k >= line.size() || line[k] != ':' || id >= recs_.size()) return std::nullopt;
    const std::string& want = recs_[id].data;
    if (want.size() != line.size() + 1 || want.compare(0, line.size(), line) != 0)
      return std::nullopt;
    return id;
  }

  // Adds the ids of the records held in `content` (a copy of events file
  // `path`) to *out.
  void ParseRecords(const std::string& path, const std::vector<uint8_t>& content,
                    std::unordered_set<uint64_t>* out) const {
    // A record starts the file or follows a newline or a hole (zeros left
    // by a sync that broke off, in an Inconsistent copy).
    std::string_view all(reinterpret_cast<const char*>(content.data()), content.size());
    for (size_t pos = 0; pos < all.size(); ++pos) {
      if (all[pos] != 'r' || (pos > 0 && all[pos - 1] != '\n' && all[pos - 1] != '\0')) continue;
      size_t nl = all.find('\n', pos);
      if (nl == std::string_view::npos) break;
      auto id = RecordId(all.substr(pos, nl - pos));
      if (!id) continue;  // e.g. a torn record before a hole: look on
      if (recs_[*id].file == path) out->insert(*id);
      pos = nl;
    }
  }

  // The records on node i's disk now: its store and its quarantine.
  std::unordered_set<uint64_t> RecordsOn(int i, uint64_t* in_quarantine = nullptr) {
    std::unordered_set<uint64_t> out;
    for (auto& [path, data] : Snap(i, pair_->opts(i).store_dir)) {
      if (path.rfind("events/", 0) == 0) ParseRecords(path, data, &out);
    }
    std::unordered_set<uint64_t> q;
    for (auto& [path, data] : Snap(i, pair_->opts(i).meta_dir + "/quarantine")) {
      size_t slash = path.find('/');
      if (slash == std::string::npos) continue;
      std::string inner = path.substr(slash + 1);
      if (inner.rfind("events/", 0) == 0) ParseRecords(inner, data, &q);
    }
    if (in_quarantine != nullptr) {
      for (uint64_t id : q) *in_quarantine += !out.count(id);
    }
    out.insert(q.begin(), q.end());
    return out;
  }

  // Every file under `dir` on node i's disk, read past any injected fault.
  std::map<std::string, std::vector<uint8_t>> Snap(int i, const std::string& dir) {
    std::map<std::string, std::vector<uint8_t>> out;
    auto files = Disk(i).ListFiles(dir);
    if (!files.ok()) Fail("cannot list " + dir + ": " + files.status().message());
    for (const std::string& p : *files) {
      auto c = Disk(i).Contents(dir + "/" + p);
      if (c) out[p] = std::move(*c);
    }
    return out;
  }

  void Exclude(Rec& r, uint64_t* counter) {
    if (r.excluded) return;
    r.excluded = true;
    (*counter)++;
  }

  // Exclusion (A/B only): a write acknowledged while replicating was, under
  // A, only handed to the socket, and under B only received by the peer. A
  // crash of either host before it is known durable on both (the next
  // quiescent in-sync point) may lose it; DRBD's protocols A and B trade
  // exactly that for latency.
  void ExcludeUnsettledAB() {
    if (cfg_.protocol == Protocol::kC) return;
    for (Rec& r : recs_) {
      if (r.state == Rec::kAcked && r.replicated && r.ack_seq > settled_seq_) {
        Exclude(r, &stats_.excluded_ab_unsettled);
      }
    }
  }

  // The admin replaces node i's failed disk with a new, empty one (a full
  // resync follows). Exclusion: whatever was only on the old disk is gone
  // by design: records acknowledged by i while it was unprotected (the peer
  // away) and not resynced yet, and i's quarantine. Anything acknowledged
  // under protocol C while replicating must be on the peer.
  void ReplaceDisk(int i) {
    int j = 1 - i;
    std::unordered_set<uint64_t> on_j = RecordsOn(j);
    bool j_unsynced = Alive(j) && Rep(j)->store().HasUncommitted();
    for (uint64_t id = 0; id < recs_.size(); ++id) {
      Rec& r = recs_[id];
      if (r.state != Rec::kAcked || r.excluded) continue;
      if (!on_j.count(id)) {
        if (cfg_.protocol == Protocol::kC && r.replicated && r.ack_seq > n_[j].replaced_at_seq &&
            r.ack_seq > forced_seq_) {
          Fail("record r" + std::to_string(id) + " (" + r.file +
               ") was acknowledged under protocol C "
               "while replicating, but " +
               Name(j) + " lacks it when " + Name(i) + "'s disk is replaced\n" + WhereIs(r.file) +
               Around(j, r));
        }
        Exclude(r, &stats_.excluded_replaced_disk);
      } else if (j_unsynced) {
        n_[j].fragile.insert(id);
      }
    }
    disks_[i].push_back(std::make_unique<FaultFileSystem>());
    pair_->node(i).fs = disks_[i].back().get();
    n_[i].replaced_at_seq = ack_seq_;
    n_[i].fresh_disk = true;
    // A replacement disk is provisioned as a secondary: with
    // initial_primary a new, empty replica would be UpToDate and could be
    // promoted as the origin of an empty store (see the report).
    pair_->opts(i).initial_primary = false;
    n_[i].fragile.clear();
    stats_.disks_replaced++;
    Ev("replaced " + Name(i) + "'s disk");
  }

  // ------------------------------------------------------------ roles

  bool PromoteNode(int i, bool force, const std::string& why) {
    Replica* r = Rep(i);
    bool was_up = r->up_to_date();
    DiskState before = r->disk();
    Status st = r->Promote(force);
    if (!force && !was_up) {
      if (st.ok())
        Fail("safety: Promote(false) accepted a " + std::string(DiskStateName(before)) +
             " replica");
      if (r->primary()) Fail("safety: a refused promotion left " + Name(i) + " primary");
      stats_.refused_promotions++;
      return false;
    }
    if (!st.ok()) {
      if (r->primary())
        Fail("Promote of " + Name(i) + " failed (" + st.message() + ") but it is primary");
      Ev("promotion of " + Name(i) + " failed: " + st.message());
      return false;
    }
    period_++;
    n_[i].file = "events/" + Name(i) + "-" + std::to_string(period_) + ".seg";
    Ev(std::string(force ? "FORCED " : "") + "promoted " + Name(i) + " (" + why + ")");
    return true;
  }

  void DemoteNode(int i, const std::string& why) {
    Ev("demote " + Name(i) + " (" + why + ")");
    Rep(i)->Demote([] {});
  }

  // ------------------------------------------------------------ actions

  void Step() {
    uint64_t roll = Rnd(1000);
    if (roll < 330) return Writes();
    if (roll < 560) return Advance();
    if (roll < 650) return TryConnect();
    if (roll < 875 && Chance(calm_)) return roll % 2 ? Writes() : Advance();
    if (roll < 675) return Partition();
    if (roll < 690) return SilentPartition();
    if (roll < 720) return Crash(PrimaryOrRandom());
    if (roll < 740) return Crash(1 - PrimaryOrRandom());
    if (roll < 770) return SwitchOver();
    if (roll < 782) return DualPrimary();
    if (roll < 825) return Corrupt();
    if (roll < 850) return DiskFault();
    if (roll < 860) return Verify();
    if (roll < 875) return PromoteProbe();
    Settle();
  }

  int PrimaryOrRandom() {
    for (int i = 0; i < 2; ++i) {
      if (Primary(i)) return i;
    }
    return static_cast<int>(Rnd(2));
  }

  void Writes() {
    for (int i = 0; i < 2; ++i) {
      if (!Primary(i)) continue;
      int n = 1 + static_cast<int>(Rnd(4));
      for (int k = 0; k < n; ++k) SubmitOne(i);
    }
    // Sometimes the batch goes out at once, sometimes it waits (and may be
    // caught by a crash or a cut).
    if (Chance(0.5)) pair_->Run(1 + static_cast<int>(Rnd(3)), 1);
  }

  void SubmitOne(int i) {
    uint64_t roll = Rnd(100);
    if (Rnd(100) < misc_percent_) return MiscOp(i);
    size_t filler = roll < 2 ? 1000 + Rnd(200 * 1024) : Rnd(40);
    if (filler > 1000) stats_.big_writes++;
    SubmitAppend(i, filler);
  }

  uint64_t SubmitAppend(int i, size_t filler) {
    uint64_t id = recs_.size();
    Rec r;
    r.file = n_[i].file;
    r.writer = i;
    r.data = RecordData(id, i, filler);
    recs_.push_back(r);
    pair_->Write(i, AppendOp(recs_[id].file, recs_[id].data),
                 [this, id, i](const Status& st) { OnDone(id, i, st); });
    return id;
  }

  void MiscOp(int i) {
    static const char* kFiles[] = {"misc/f0", "misc/d1/f1", "misc/d2/f2", "misc/f3"};
    std::string f = kFiles[Rnd(4)];
    Write w;
    switch (Rnd(6)) {
      case 0:
        w = SimpleOp(WriteOp::kCreate, f);
        break;
      case 1: {
        std::vector<uint8_t> data(1 + Rnd(3000), static_cast<uint8_t>('A' + Rnd(26)));
        w = WriteAtOp(f, Rnd(150000), std::move(data));
        break;
      }
      case 2:
        w = SimpleOp(WriteOp::kTruncate, f, "", Rnd(100000));
        break;
      case 3:
        w = SimpleOp(WriteOp::kRename, f, kFiles[Rnd(4)]);
        break;
      case 4:
        w = SimpleOp(WriteOp::kDelete, f);
        break;
      default:
        w = AppendOp(f, "misc " + std::to_string(step_) + "\n");
        break;
    }
    if (w.op == WriteOp::kRename && w.path == w.path2) w.path2 += "x";
    if (w.op == WriteOp::kRename) last_rename_step_ = step_;
    stats_.misc_ops++;
    std::string what = "misc op " + std::to_string(static_cast<int>(w.op)) + " " + w.path + " " +
                       w.path2 + " @" + std::to_string(w.offset) + " len " +
                       std::to_string(w.length);
    if (trace_max_ >= 1000) Ev("submit " + what);
    pair_->Write(i, std::move(w), [this, what](const Status& st) {
      if (!st.ok()) stats_.writes_failed++;
      if (trace_max_ >= 1000) Ev(what + ": " + (st.ok() ? "ok" : st.message()));
    });
  }

  // The clock moves on: rounds of delivery and timers.
  void Advance() {
    static const int64_t kSteps[] = {1, 5, 20, 100, 300, 700};
    int64_t step_ms = kSteps[Rnd(6)];
    int rounds = 1 + static_cast<int>(Rnd(30));
    for (int k = 0; k < rounds; ++k) pair_->Run(1, step_ms);
  }

  void Settle() { pair_->Run(3000, 1); }

  bool MayConnect() {
    return Alive(0) && Alive(1) && Now() >= partition_until_ms_ && !pair_->held() &&
           Rep(0)->wants_connection() && Rep(1)->wants_connection();
  }

  void TryConnect() {
    if (pair_->Connected() || !MayConnect()) return Advance();
    int connector = static_cast<int>(Rnd(2));
    Ev("connect from " + Name(connector));
    stats_.connects++;
    pair_->Connect(connector);
    if (Chance(0.7)) pair_->Run(1 + static_cast<int>(Rnd(20)), 1);
  }

  void Partition() {
    partition_until_ms_ = std::max(partition_until_ms_, Now() + static_cast<int64_t>(Rnd(15000)));
    Ev("partition (cut) until t=" + std::to_string(partition_until_ms_));
    stats_.partitions++;
    pair_->Cut();
  }

  void SilentPartition() {
    if (pair_->held()) return;
    held_until_ms_ = Now() + 500 + static_cast<int64_t>(Rnd(12000));
    partition_until_ms_ = std::max(partition_until_ms_, held_until_ms_);
    Ev("silent partition until t=" + std::to_string(held_until_ms_));
    stats_.silent_partitions++;
    pair_->SetHeld(true);
  }

  // The host dies: a process crash (the page cache survives) or a power
  // loss (only what was synced survives, or a torn version of the rest).
  void Crash(int i) {
    if (!Alive(i)) return Advance();
    bool was_primary = Rep(i)->primary();
    uint64_t kind = Rnd(3);
    // Renames are atomic across a crash on the journaling file systems
    // Tandem runs on (ext4, xfs); FaultFileSystem's tear treats the two
    // directory entries independently and may keep both names, one file
    // reachable twice (a hard link no real crash leaves). So no tear while
    // a rename may be uncommitted on this host.
    if (kind == 2 && last_rename_step_ >= n_[i].clean_step && Rep(i)->store().HasUncommitted())
      kind = 1;
    KillNode(i);
    if (kind == 0) {
      stats_.process_crashes++;
      Writeback(i);
    } else {
      Disk(i).PowerLoss(rng_(), kind == 1 ? FaultFileSystem::Mode::kDropUnsynced
                                          : FaultFileSystem::Mode::kTearUnsynced);
      stats_.power_losses++;
      PowerLossChecks(i);
    }
    n_[i].restart_at_ms = Now() + static_cast<int64_t>(Rnd(8000));
    if (was_primary) stats_.failovers++;
    n_[i].crashed_primary = n_[i].crashed_primary || was_primary;
    Ev(std::string(kind == 0   ? "process crash of "
                   : kind == 1 ? "power loss (drop) of "
                               : "power loss (tear) of ") +
       Name(i) + (was_primary ? " (primary)" : ""));
    ExcludeUnsettledAB();
  }

  // After a process crash the kernel still writes the page cache back
  // (within ~30 s on Linux). The simulator does that at once: a power loss
  // within that window after a process crash is not simulated, since the
  // replica cannot know which of the files it wrote before the crash were
  // synced (see the report: a restarted replica never fsyncs them).
  void Writeback(int i) {
    std::string root = "/sim/" + Name(i);
    auto files = Disk(i).ListFiles(root);
    if (!files.ok()) return;
    std::set<std::string> dirs = {"/", "/sim", root};
    for (const std::string& p : *files) {
      std::string full = root + "/" + p;
      auto f = Disk(i).Open(full, false);
      if (f.ok()) (void)(*f)->Sync();
      for (size_t slash = full.rfind('/'); slash != std::string::npos && slash > root.size();
           slash = full.rfind('/', slash - 1)) {
        dirs.insert(full.substr(0, slash));
      }
    }
    for (const std::string& d : dirs) (void)Disk(i).SyncDir(d);
  }

  // Records whose only copy was unsynced on i (the peer's disk was
  // replaced meanwhile) are lost with i's power: by design.
  void PowerLossChecks(int i) {
    if (n_[i].fragile.empty()) return;
    std::unordered_set<uint64_t> on = RecordsOn(i);
    for (uint64_t id : n_[i].fragile) {
      if (!on.count(id)) Exclude(recs_[id], &stats_.excluded_unsynced);
    }
    n_[i].fragile.clear();
  }

  bool InSyncPair() {
    if (!Alive(0) || !Alive(1) || !pair_->Connected()) return false;
    for (int i = 0; i < 2; ++i) {
      Replica* r = Rep(i);
      if (!r->connected() || r->state() != ReplState::kEstablished || !r->up_to_date())
        return false;
    }
    return Rep(0)->generations() == Rep(1)->generations();
  }

  // A planned switch-over: demote the primary, then (the HA tick, soon)
  // promote the other, if it is in sync.
  void SwitchOver() {
    int x = -1;
    for (int i = 0; i < 2; ++i) {
      if (Primary(i)) x = x == -1 ? i : -2;
    }
    if (x < 0 || !InSyncPair() || dual_) return Advance();
    stats_.switchovers++;
    preferred_ = 1 - x;
    DemoteNode(x, "planned switch-over to " + Name(1 - x));
    int rounds = static_cast<int>(Rnd(4));
    for (int k = 0; k < rounds; ++k) pair_->Run(1, 1);
  }

  // Both primary across a partition (the HA's dual-active case); one is
  // demoted before the network heals (HaTick), and the connect decides
  // (merge, or the admin).
  void DualPrimary() {
    int x = -1;
    for (int i = 0; i < 2; ++i) {
      if (Primary(i)) x = x == -1 ? i : -2;
    }
    if (x < 0 || dual_ || !Alive(1 - x) || !Rep(1 - x)->up_to_date()) return Advance();
    pair_->Cut();
    partition_until_ms_ = kNever;
    dual_ = true;
    dual_end_step_ = step_ + 3 + static_cast<int>(Rnd(25));
    Ev("dual primary across a partition begins");
    if (PromoteNode(1 - x, false, "dual primary")) stats_.dual_primaries++;
  }

  // Corrupts, drops or truncates one of the next frames on a live
  // connection.
  void Corrupt() {
    if (!pair_->Connected()) return Advance();
    int from = static_cast<int>(Rnd(2));
    testing::Wire* w = pair_->wire(from);
    int kind = static_cast<int>(Rnd(3));
    auto left = std::make_shared<int>(static_cast<int>(Rnd(12)));
    Ev(std::string(kind == 0   ? "corrupt"
                   : kind == 1 ? "drop"
                               : "truncate stream at") +
       " frame +" + std::to_string(*left) + " from " + Name(from));
    w->tap = [this, w, left, kind](std::vector<uint8_t>& b) {
      if ((*left)-- != 0 || b.empty()) return;
      if (kind == 0) {
        b[Rnd(b.size())] ^= static_cast<uint8_t>(1u << Rnd(8));
        stats_.frames_corrupted++;
      } else if (kind == 1) {
        b.clear();
        stats_.frames_dropped++;
      } else {
        b.resize(Rnd(b.size()));
        w->closed = true;
        stats_.streams_truncated++;
      }
    };
    pair_->Run(1 + static_cast<int>(Rnd(30)), 1);
  }

  void DiskFault() {
    int i = static_cast<int>(Rnd(2));
    if (!Alive(i) || n_[i].fault_active) return Advance();
    n_[i].fault_active = true;
    n_[i].fault_until_ms = Now() + static_cast<int64_t>(Rnd(3000));
    uint64_t kind = Rnd(5);
    if (kind == 4) {
      Disk(i).SetFull(true);
      stats_.disks_full++;
      Ev("disk of " + Name(i) + " full");
      return;
    }
    std::string prefix = kind <= 1   ? pair_->opts(i).store_dir
                         : kind == 2 ? pair_->opts(i).meta_dir
                                     : "/sim/" + Name(i);
    uint64_t ops = Rnd(40);
    Disk(i).FailAfter(prefix, ops, "Input/output error");
    stats_.disk_faults++;
    Ev("I/O errors on " + prefix + " after " + std::to_string(ops) + " ops");
  }

  void Verify() {
    for (int i = 0; i < 2; ++i) {
      if (Primary(i) && InSyncPair()) {
        if (Rep(i)->StartVerify().ok()) {
          stats_.verifies++;
          Ev("verify from " + Name(i));
        }
        return;
      }
    }
    Advance();
  }

  // Promote(false) must refuse a replica that is not UpToDate.
  void PromoteProbe() {
    for (int i = 0; i < 2; ++i) {
      if (Alive(i) && !Rep(i)->primary() && !Rep(i)->up_to_date()) {
        PromoteNode(i, false, "probe");
        return;
      }
    }
    Advance();
  }

  // ------------------------------------------------------------ HA core

  // What the HA core and the admin do between steps; `heal`: at once and
  // without new faults.
  void HaTick(bool heal) {
    for (int i = 0; i < 2; ++i) {
      // A failed disk: the host releases (if active) and is taken out; its
      // disk is replaced and it rejoins later for a full resync.
      if (Alive(i) && Rep(i)->disk() == DiskState::kFailed) {
        bool was_primary = Rep(i)->primary();
        stats_.disks_failed++;
        Ev(Name(i) + "'s disk failed: taken out");
        KillNode(i);
        if (was_primary) stats_.failovers++;
        ExcludeUnsettledAB();
        ReplaceDisk(i);
        n_[i].restart_at_ms = heal ? Now() : Now() + 500 + static_cast<int64_t>(Rnd(6000));
      }
      if (n_[i].fault_active && (heal || Now() >= n_[i].fault_until_ms)) {
        Disk(i).ClearFaults();
        n_[i].fault_active = false;
      }
      if (!Alive(i) && (heal || Now() >= n_[i].restart_at_ms)) StartNode(i);
    }
    if (pair_->held() && (heal || Now() >= held_until_ms_)) {
      Ev("silent partition ends");
      pair_->SetHeld(false);
    }
    if (dual_ && (heal || step_ >= dual_end_step_)) {
      dual_ = false;
      partition_until_ms_ = heal ? 0 : Now() + static_cast<int64_t>(Rnd(2000));
      if (Primary(0) && Primary(1)) {
        int loser = static_cast<int>(Rnd(2));
        preferred_ = 1 - loser;
        DemoteNode(loser, "dual primary ends");
      }
    } else if (dual_ && Primary(0) && Primary(1) && Chance(0.05)) {
      // Two primaries meeting must refuse each other.
      Ev("connect two primaries (must be refused)");
      pair_->Connect(static_cast<int>(Rnd(2)));
      pair_->Run(20, 1);
      pair_->Cut();
    }
    if (!dual_ && Primary(0) && Primary(1)) DemoteNode(static_cast<int>(Rnd(2)), "two primaries");
    Admin(heal);
    if (!Primary(0) && !Primary(1) && (heal || Chance(0.7))) Failover();
    // The service retries connecting every 200 ms; here, between steps.
    if (!heal && !pair_->Connected() && MayConnect() && Chance(0.4)) {
      int connector = static_cast<int>(Rnd(2));
      Ev("reconnect from " + Name(connector));
      stats_.connects++;
      pair_->Connect(connector);
    }
  }

  // No primary: promote an UpToDate replica (the preferred one first). If
  // none is, and the other host only has a new, empty disk (the replaced
  // one), the admin forces the takeover of the replica that has data
  // (`ha takeover --force`).
  void Failover() {
    for (int k = 0; k < 2; ++k) {
      int i = k == 0 ? preferred_ : 1 - preferred_;
      if (Alive(i) && Rep(i)->up_to_date() && !Rep(i)->synchronizing()) {
        if (PromoteNode(i, false, "HA: no primary")) return;
      }
    }
    // A replica with data first (a generation, or at least files from a
    // sync that broke off); if neither has any (both disks were replaced),
    // the cluster starts over from an empty store.
    for (int pass = 0; pass < 3; ++pass) {
      for (int i = 0; i < 2; ++i) {
        Replica* r = Rep(i);
        if (r == nullptr || r->up_to_date() || r->disk() == DiskState::kFailed) continue;
        if (!n_[1 - i].fresh_disk) continue;
        if (pass == 0 && r->generations().current == kNoGeneration) continue;
        if (pass == 1 && Snap(i, pair_->opts(i).store_dir).empty()) continue;
        ForceTakeover(i, "the peer's disk is new");
        return;
      }
    }
  }

  // ha takeover --force on node i.
  void ForceTakeover(int i, const std::string& why) {
    if (!PromoteNode(i, true, "admin: forced takeover, " + why)) return;
    stats_.forced_promotions++;
    forced_seq_ = ack_seq_;
    // Its files are whatever a sync that broke off left (holes, old
    // chunks), taken as they are: exempt from the order check.
    for (auto& [path, data] : Snap(i, pair_->opts(i).store_dir)) forced_files_.insert(path);
  }

  // The admin handles replicas that stopped connecting.
  void Admin(bool heal) {
    for (int i = 0; i < 2; ++i) {
      Replica* r = Rep(i);
      if (r == nullptr || r->state() != ReplState::kStandAlone || r->disk() == DiskState::kFailed)
        continue;
      if (!heal && !Chance(0.3)) continue;
      std::string why = r->StatusJson().value("standalone_reason", "");
      Replica* o = Rep(1 - i);
      if (why.find("split brain") != std::string::npos &&
          why.find("demote it") == std::string::npos) {
        // ha split-brain --survivor: a random side loses (quarantined),
        // but never the only UpToDate one.
        int loser = static_cast<int>(Rnd(2));
        if (o != nullptr && r->up_to_date() != o->up_to_date()) loser = r->up_to_date() ? 1 - i : i;
        Ev("admin: split brain (" + why.substr(0, 80) + "): " + Name(1 - loser) + " survives");
        if (Primary(loser)) DemoteNode(loser, "split-brain loser");
        preferred_ = 1 - loser;
        Status st = r->ResolveSplitBrain(loser == i);
        if (!st.ok()) {
          // E.g. a full disk: the admin tries again later.
          Ev("admin: ResolveSplitBrain failed: " + st.message());
          if (r->StatusJson().value("split_brain_resolution", "") != "none") {
            Fail("a failed ResolveSplitBrain left a resolution set");
          }
          continue;
        }
        if (o != nullptr && o->state() == ReplState::kStandAlone) (void)o->Reconnect();
        stats_.split_brains_resolved++;
        continue;
      }
      if (why.find("primary") != std::string::npos) {
        // "... this host is primary but the peer holds newer data", "the
        // peer is primary but holds older data: demote it", ...: demote the
        // primary whose data must give way.
        bool me = why.find("this host is primary") != std::string::npos ||
                  why.find("this host must become the sync target") != std::string::npos;
        int victim = me ? i : 1 - i;
        Ev("admin: " + Name(i) + " stand-alone (" + why.substr(0, 90) + ")");
        if (Primary(victim)) DemoteNode(victim, "admin");
        preferred_ = 1 - victim;
        (void)r->Reconnect();
        continue;
      }
      if (why.find("its data is Inconsistent") != std::string::npos) {
        // The only data left is half-synced: the admin takes over with
        // --force if the peer's disk is new, else waits for the peer.
        if (Primary(1 - i) || !n_[1 - i].fresh_disk) {
          (void)r->Reconnect();
          continue;
        }
        Ev("admin: " + Name(i) + " stand-alone (" + why.substr(0, 90) + ")");
        ForceTakeover(i, "its data is Inconsistent, the peer's disk is new");
        (void)r->Reconnect();
        continue;
      }
      if (why.find("no common generation") != std::string::npos &&
          (n_[i].half_merged || n_[1 - i].half_merged)) {
        // After a one-sided merge the other side can lose every id the
        // finished side knows (a promotion replaces its current; see
        // OnDone). The documented remedy: move its replica metadata away,
        // so that it gets a full sync from the side that finished.
        int k = n_[i].half_merged ? i : 1 - i;
        Ev("admin: " + Name(k) + "'s replica metadata moved away (full sync)");
        KillNode(k);
        ExcludeUnsettledAB();
        const std::string meta = pair_->opts(k).meta_dir;
        if (!Disk(k).Remove(meta + "/meta.slots").ok() ||
            !Disk(k).Remove(meta + "/changes.log").ok() || !Disk(k).SyncDir(meta).ok()) {
          Fail("cannot move the replica metadata away");
        }
        pair_->opts(k).initial_primary = false;  // see ReplaceDisk
        n_[k].half_merged = false;
        n_[k].fresh_disk = true;
        n_[k].restart_at_ms = Now();
        stats_.metadata_resets++;
        if (Alive(1 - k)) (void)Rep(1 - k)->Reconnect();
        continue;
      }
      Fail("unexpected stand-alone reason on " + Name(i) + ": " + why);
    }
  }

  // -------------------------------------------------------- invariants

  void CheckInvariants() {
    if (!deferred_.empty()) Fail(deferred_);
    if (const char* w = std::getenv("TANDEM_SIM_WATCH"); w != nullptr && *w != '\0') {
      // Debugging aid: traces every change of one store file's size.
      std::string now;
      for (int i = 0; i < 2; ++i) {
        auto c = Disk(i).Contents(pair_->opts(i).store_dir + "/" + w);
        now += Name(i) + ":" + (c ? std::to_string(c->size()) : std::string("-"));
        if (c) {
          std::string_view v(reinterpret_cast<const char*>(c->data()), c->size());
          now += "#" + std::to_string(std::hash<std::string_view>()(v) % 100000) + "[" +
                 std::string(v.substr(0, 6)) + "]";
        }
        now += " ";
      }
      if (now != watched_) Ev(std::string("watch ") + w + " " + now);
      watched_ = now;
    }
    for (int i = 0; i < 2; ++i) {
      if (Alive(i) && !Valid(Rep(i)->generations())) Fail("invalid generations on " + Name(i));
      if (Alive(i) && !Rep(i)->store().HasUncommitted()) {
        n_[i].fragile.clear();
        n_[i].clean_step = step_;
      }
      if (Alive(i) && Rep(i)->up_to_date()) n_[i].fresh_disk = false;
    }
    if (Alive(0) && Alive(1)) {
      Replica* a = Rep(0);
      Replica* b = Rep(1);
      if (a->primary() && b->primary() && a->connected() && b->connected() &&
          a->state() == ReplState::kEstablished && b->state() == ReplState::kEstablished) {
        Fail("safety: both replicas primary on an established connection");
      }
    }
    bool quiet = InSyncPair() && pair_->wire(0)->chunks.empty() && pair_->wire(1)->chunks.empty() &&
                 !Rep(0)->store().HasUncommitted() && !Rep(1)->store().HasUncommitted() &&
                 NothingInFlight(0) && NothingInFlight(1);
    if (quiet) {
      // Every write acknowledged so far is durable on both hosts.
      settled_seq_ = ack_seq_;
      n_[0].fragile.clear();
      n_[1].fragile.clear();
      if (!diverged_ && Chance(0.15)) {
        stats_.insync_checks++;
        CompareStores("in sync and quiescent");
      }
    }
  }

  // No write queued or waiting for the peer (a frame may sit half-received
  // in the peer's decoder).
  bool NothingInFlight(int i) {
    nlohmann::json j = Rep(i)->StatusJson();
    // (Under protocol A writes are acknowledged at once, but their bytes
    // count as unacknowledged until the peer has them.)
    return j.value("pending_writes", 0) == 0 && j.value("unacked_writes", 0) == 0 &&
           j.value("unacked_bytes", 0) == 0;
  }

  void CompareStores(const std::string& when) {
    auto a = Snap(0, pair_->opts(0).store_dir);
    auto b = Snap(1, pair_->opts(1).store_dir);
    for (auto& [path, data] : a) {
      auto it = b.find(path);
      if (it == b.end()) Fail("convergence (" + when + "): " + path + " only on alpha");
      if (it->second != data) {
        Fail("convergence (" + when + "): " + path + " differs (" + std::to_string(data.size()) +
             " bytes on alpha, " + std::to_string(it->second.size()) + " on beta)");
      }
    }
    for (auto& [path, data] : b) {
      if (!a.count(path)) Fail("convergence (" + when + "): " + path + " only on beta");
    }
  }

  bool Converged() {
    if (!InSyncPair() || !Primary(0) == !Primary(1)) return false;
    return pair_->wire(0)->chunks.empty() && pair_->wire(1)->chunks.empty();
  }

  void Heal() {
    Ev("healing: faults cleared, hosts restarted, network repaired");
    for (int i = 0; i < 2; ++i) {
      Disk(i).ClearFaults();
      if (pair_->wire(i) != nullptr) pair_->wire(i)->tap = nullptr;
    }
    partition_until_ms_ = 0;
    int round = 0;
    for (; round < kHealRoundsMax; ++round) {
      HaTick(true);
      CheckInvariants();
      if (!pair_->Connected() && MayConnect()) {
        stats_.connects++;
        pair_->Connect(round % 2);
      }
      pair_->Run(20000, 10);
      CheckInvariants();
      if (!Converged()) continue;
      // Stable for two peer timeouts (a frame swallowed by a corrupted
      // length shows only then), on the same connection.
      uint64_t conns = Rep(0)->counters().connections + Rep(1)->counters().connections;
      for (int k = 0; k < 1200; ++k) pair_->Run(1, 10);
      CheckInvariants();
      if (Converged() && conns == Rep(0)->counters().connections + Rep(1)->counters().connections) {
        if (!diverged_) break;
        // The admin's repair for copies that differ while in sync.
        int p = Primary(0) ? 0 : 1;
        Status st = Rep(p)->StartVerify();
        Ev("admin: online verify from " + Name(p) + ": " + (st.ok() ? "started" : st.message()));
        if (st.ok()) stats_.verifies++;
        pair_->Run(20000, 10);
      }
    }
    if (round == kHealRoundsMax) Fail("liveness: no convergence after healing");
    // The healed pair takes a write, replicated.
    int p = Primary(0) ? 0 : 1;
    uint64_t id = SubmitAppend(p, 10);
    pair_->Run(20000, 1);
    CheckInvariants();
    if (recs_[id].state != Rec::kAcked || !recs_[id].replicated) {
      Fail("liveness: a write after healing was not acknowledged by both hosts");
    }
    if (!InSyncPair()) Fail("liveness: the healed pair lost sync after one write");
  }

  // Every events file holds records written to it, in the order written,
  // and at most a torn prefix of a later one at its end.
  // Empty if OK; else what is wrong.
  std::string EventsFileError(const std::string& path, const std::vector<uint8_t>& content) {
    std::string_view all(reinterpret_cast<const char*>(content.data()), content.size());
    size_t pos = 0;
    int64_t last = -1;
    while (pos < all.size()) {
      size_t nl = all.find('\n', pos);
      if (nl == std::string_view::npos) {
        std::string_view tail = all.substr(pos);
        bool ok = false;
        for (uint64_t id = static_cast<uint64_t>(last + 1); id < recs_.size() && !ok; ++id) {
          ok = recs_[id].file == path && recs_[id].data.compare(0, tail.size(), tail) == 0;
        }
        if (!ok) {
          std::string why = "corruption: " + path + " ends in " + std::to_string(tail.size()) +
                            " bytes (at offset " + std::to_string(pos) +
                            ") that are no record's prefix: '" + std::string(tail.substr(0, 40)) +
                            "'";
          size_t colon = tail.find(':');
          if (tail.size() > 1 && colon != std::string_view::npos) {
            uint64_t id =
                std::strtoull(std::string(tail.substr(1, colon - 1)).c_str(), nullptr, 10);
            if (id < recs_.size()) {
              const std::string& want = recs_[id].data;
              size_t k = 0;
              while (k < tail.size() && k < want.size() && tail[k] == want[k]) ++k;
              why += "; r" + std::to_string(id) + " (" + std::to_string(want.size()) + " bytes, " +
                     recs_[id].file + ") matches up to " + std::to_string(k) + ", then " +
                     std::to_string(static_cast<int>(static_cast<uint8_t>(tail[k]))) +
                     " at file offset " + std::to_string(pos + k);
            }
          }
          return why;
        }
        return "";
      }
      std::string_view line = all.substr(pos, nl - pos);
      auto id = RecordId(line);
      if (!id) {
        return "corruption: " + path + " at " + std::to_string(pos) + ": not a record written: '" +
               std::string(line.substr(0, 60)) + "'";
      }
      if (recs_[*id].file != path) {
        return "corruption: r" + std::to_string(*id) + " found in " + path + ", written to " +
               recs_[*id].file;
      }
      if (static_cast<int64_t>(*id) <= last) {
        return "corruption: " + path + ": r" + std::to_string(*id) + " after r" +
               std::to_string(last);
      }
      last = static_cast<int64_t>(*id);
      pos = nl + 1;
    }
    return "";
  }

  // For reports: where r's first bytes are in node i's copy of its file.
  std::string Around(int i, const Rec& r) {
    auto c = Disk(i).Contents(pair_->opts(i).store_dir + "/" + r.file);
    if (!c) return "  no such file on " + Name(i) + "\n";
    std::string_view all(reinterpret_cast<const char*>(c->data()), c->size());
    std::string head = r.data.substr(0, r.data.find(':') + 1);
    size_t at = all.find(head);
    std::ostringstream s;
    s << "  " << Name(i) << ": " << head << " at "
      << (at == std::string_view::npos ? -1 : static_cast<int64_t>(at)) << " of " << all.size()
      << " bytes";
    if (at != std::string_view::npos) {
      size_t k = 0;
      while (k < r.data.size() && at + k < all.size() && all[at + k] == r.data[k]) ++k;
      s << ", matches " << k << " of " << r.data.size() << " bytes; byte before: "
        << (at > 0 ? static_cast<int>(static_cast<uint8_t>(all[at - 1])) : -1);
    }
    s << "\n";
    return s.str();
  }

  // For reports: every copy of `file` on both disks (store, quarantine).
  std::string WhereIs(const std::string& file) {
    std::ostringstream s;
    for (int i = 0; i < 2; ++i) {
      for (auto& [path, data] : Snap(i, pair_->opts(i).store_dir)) {
        if (path == file) s << "  " << Name(i) << " store: " << data.size() << " bytes\n";
      }
      for (auto& [path, data] : Snap(i, pair_->opts(i).meta_dir + "/quarantine")) {
        s << "  " << Name(i) << " quarantine: " << path << " " << data.size() << " bytes\n";
      }
    }
    return s.str();
  }

  void FinalChecks() {
    CompareStores("after healing");
    auto snap = Snap(0, pair_->opts(0).store_dir);
    for (auto& [path, data] : snap) {
      if (path.rfind("events/", 0) == 0 && !forced_files_.count(path) &&
          !holed_files_.count(path) && !broken_merge_files_.count(path)) {
        if (std::string e = EventsFileError(path, data); !e.empty()) Fail(e);
      }
    }
    uint64_t in_q = 0;
    std::unordered_set<uint64_t> have = RecordsOn(0, &in_q);
    std::unordered_set<uint64_t> have_b = RecordsOn(1, &in_q);
    have.insert(have_b.begin(), have_b.end());
    for (uint64_t id = 0; id < recs_.size(); ++id) {
      const Rec& r = recs_[id];
      if (r.state != Rec::kAcked) continue;
      if (r.state == Rec::kAcked && r.file.empty()) continue;
      if (r.excluded) continue;
      stats_.records_checked++;
      if (!have.count(id)) {
        Fail("acknowledged write lost: r" + std::to_string(id) + " (" + r.file + ", " +
             std::to_string(r.data.size()) + " bytes, by " + Name(r.writer) +
             (r.replicated ? ", acknowledged while replicating" : ", acknowledged unprotected") +
             ")\n" + WhereIs(r.file));
      }
    }
    stats_.records_in_quarantine += in_q;
  }

  uint64_t seed_;
  SimConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<FaultFileSystem>> disks_[2];  // back(): the disk in use
  std::unique_ptr<Pair> pair_;
  NodeSim n_[2];
  int step_ = 0;
  int period_ = 0;
  int preferred_ = 0;
  bool dual_ = false;
  int dual_end_step_ = 0;
  int last_rename_step_ = -1;
  uint64_t misc_percent_ = 0;
  double calm_ = 0;  // share of fault actions skipped
  int64_t partition_until_ms_ = 0;
  int64_t held_until_ms_ = 0;
  std::vector<Rec> recs_;
  uint64_t ack_seq_ = 0;
  uint64_t settled_seq_ = 0;
  uint64_t forced_seq_ = 0;
  std::set<std::string> forced_files_;
  bool diverged_ = false;                     // the copies may differ while in sync (see OnLog)
  std::set<std::string> holed_files_;         // may hold holes from that
  std::set<std::string> broken_merge_files_;  // half-received by a merge that broke off  // on
                                              // a replica promoted by force while Inconsistent
  std::string deferred_;
  std::string watched_;
  std::deque<std::string> trace_;
  // TANDEM_SIM_TRACE=N: keep more events and log lines for the report.
  size_t trace_max_ = std::max<size_t>(
      kTraceMax,
      std::strtoull(std::getenv("TANDEM_SIM_TRACE") ? std::getenv("TANDEM_SIM_TRACE") : "0",
                    nullptr, 0));
  size_t log_max_ = std::max<size_t>(kLogTailMax, trace_max_);
  std::deque<std::string> logs_[2];
  SimStats stats_;
};

uint64_t EnvU64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  return std::strtoull(v, nullptr, 0);
}

// Runs `count` seeds (or the one in TANDEM_SIM_SEED), prints the totals.
void RunSeeds(const std::string& label, SimConfig cfg, uint64_t count) {
  std::vector<uint64_t> seeds;
  if (const char* one = std::getenv("TANDEM_SIM_SEED"); one != nullptr && *one != '\0') {
    seeds.push_back(std::strtoull(one, nullptr, 0));
  } else {
    // TANDEM_SIM_PART=k/n runs every n-th seed from the k-th (0-based), so
    // that n processes share one range (ctest runs the parts side by side).
    uint64_t part = 0, parts = 1;
    if (const char* p = std::getenv("TANDEM_SIM_PART"); p != nullptr && *p != '\0') {
      char* end = nullptr;
      part = std::strtoull(p, &end, 10);
      parts = end != nullptr && *end == '/' ? std::strtoull(end + 1, nullptr, 10) : 0;
      if (parts == 0 || part >= parts) {
        ADD_FAILURE() << "TANDEM_SIM_PART=" << p << ": expected k/n with 0 <= k < n";
        return;
      }
    }
    uint64_t first = EnvU64("TANDEM_SIM_FIRST_SEED", 1);
    for (uint64_t s = first; s < first + count; ++s) {
      if ((s - first) % parts == part) seeds.push_back(s);
    }
  }
  SimStats total;
  std::vector<uint64_t> failed;
  auto t0 = std::chrono::steady_clock::now();
  double slowest_s = 0;
  uint64_t slowest = 0;
  for (uint64_t seed : seeds) {
    auto s0 = std::chrono::steady_clock::now();
    Sim sim(seed, cfg);
    try {
      sim.Run();
    } catch (const SimFailure& f) {
      failed.push_back(seed);
      if (failed.size() <= 3) ADD_FAILURE() << f.what;
    }
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    if (took > slowest_s) {
      slowest_s = took;
      slowest = seed;
    }
    SimStats s = sim.stats();
    s.seeds = 1;
    total.Add(s);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ReplSim " << label << "] protocol " << static_cast<char>(cfg.protocol) << ", "
            << seeds.size() << " seeds in " << secs << " s (slowest: seed " << slowest << ", "
            << slowest_s << " s)\n  " << total.ToString() << "\n";
  if (!failed.empty()) {
    std::ostringstream s;
    for (uint64_t f : failed) s << " " << f;
    ADD_FAILURE() << failed.size() << " of " << seeds.size() << " seeds failed:" << s.str();
  }
}

TEST(ReplSim, ProtocolCConvergesAndLosesNoAcknowledgedWrite) {
  RunSeeds("C", SimConfig{Protocol::kC}, EnvU64("TANDEM_SIM_SEEDS", 500));
}

// Protocols A and B acknowledge before the peer has the write durably: the
// "no acknowledged write lost" invariant holds for writes acknowledged while
// both hosts stay up until they are durable on both (see ExcludeUnsettledAB).
TEST(ReplSim, ProtocolsAAndBConverge) {
  uint64_t n = std::max<uint64_t>(20, EnvU64("TANDEM_SIM_SEEDS", 500) / 25);
  RunSeeds("A", SimConfig{Protocol::kA}, n);
  RunSeeds("B", SimConfig{Protocol::kB}, n);
}

}  // namespace
}  // namespace tandem::repl
