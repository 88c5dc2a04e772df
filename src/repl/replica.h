// One replica of /store and the replication protocol (docs/REPLICATION.md).
// Single-threaded: every method runs on the replication thread's loop (or
// the simulator's). The driver (repl/service.h) owns the sockets and feeds
// bytes in; the replica sends frames through a Transport and never blocks
// on the network. Disk I/O goes through the FileSystem seam.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "os/clock.h"
#include "os/fs.h"
#include "repl/changes.h"
#include "repl/frame.h"
#include "repl/generations.h"
#include "repl/io_pool.h"
#include "repl/meta_slots.h"
#include "repl/store.h"
#include "util/status.h"

namespace tandem::repl {

// drbdadm's disk states, the ones that apply here.
enum class DiskState : uint8_t { kUpToDate, kOutdated, kInconsistent, kFailed };
// drbdadm's connection/replication states, merged into one.
enum class ReplState : uint8_t {
  kStandAlone,    // not connecting: split brain or refused, waits for the admin
  kConnecting,    // no connection (the driver keeps trying)
  kHandshake,     // connected, exchanging greetings
  kEstablished,   // connected, in sync: writes are replicated
  kSyncSource,    // sending a resync / initial sync
  kSyncTarget,    // receiving one
  kVerifySource,  // online verify, comparing our checksums with the peer's
  kVerifyTarget,
  kMerging,       // split brain being merged (both send)
  kSplitBrainWait,  // exchanging change lists after a split brain was detected
};
std::string_view DiskStateName(DiskState s);  // "UpToDate", ...
std::string_view ReplStateName(ReplState s);  // "Established", ...

struct ReplicaOptions {
  std::string node;       // this host's name (as in the heartbeat)
  std::string peer_node;  // the only peer accepted; empty: any name but ours
  std::string store_dir;  // the replicated directory
  std::string meta_dir;   // generations, change journal, quarantine (outside store_dir)
  std::string key;        // cluster key (raw bytes)
  Protocol protocol = Protocol::kC;
  uint64_t sync_rate_bytes = 100ull * 1000 * 1000;  // resync / verify pacing, bytes per second
  std::vector<std::string> merge_prefixes;  // append-only namespaces merged after split brain
  size_t hot_chunks = 256;                  // activity-log size (chunks of 64 KiB: 16 MiB)
  uint64_t max_unacked_bytes = 64ull * 1024 * 1024;  // back-pressure on writers beyond this
  int64_t ping_interval_ms = 1000;
  int64_t peer_timeout_ms = 5000;  // nothing heard: the connection is dead
  std::string software;
  // A new replica (no metadata yet) on the configured primary is the origin
  // of the cluster's data: UpToDate. On the secondary: Inconsistent until
  // its initial sync.
  bool initial_primary = false;
  // Runs the fsyncs of a group commit side by side (not owned; nullptr: one
  // after the other). Only with a FileSystem whose files may be synced from
  // several threads (the real one).
  IoPool* io_pool = nullptr;
  // Starts write-back of bytes [offset, offset + length) of a store file
  // that a sync target received, so that the final commit has little left
  // to flush. A hint only: the data is still synced by that commit. Empty:
  // none.
  std::function<void(const std::string& full_path, uint64_t offset, uint64_t length)>
      start_writeback;
  // Touch the receive buffer's pages at construction (FrameDecoder::
  // AdoptStorage), so that the first sync after a start does not fault
  // them in; the daemon does, the simulations do not need to.
  bool prefault_receive_buffer = false;
};

// What the transport (TCP in the daemon, a pipe in tests) must offer.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void Send(std::vector<uint8_t> bytes) = 0;
  virtual size_t Backlog() const = 0;  // bytes accepted by Send, not yet written out
  virtual void Close() = 0;            // the replica stops using it
};

using WriteDone = std::function<void(const Status&)>;

struct ReplCounters {
  uint64_t writes = 0;             // local operations completed
  uint64_t write_bytes = 0;
  uint64_t commits = 0;            // group commits (local fsync rounds)
  uint64_t frames_sent = 0, frames_received = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t sync_bytes_sent = 0, sync_bytes_received = 0;  // resync payload
  uint64_t syncs_completed = 0;
  uint64_t frames_rejected = 0;    // bad frames (connection dropped)
  uint64_t writes_no_space = 0;    // appends failed on a full store (undone, not a disk failure)
  uint64_t connections = 0;
  uint64_t verify_chunks = 0, verify_differ = 0;
  uint64_t split_brains = 0;
};

class Replica {
 public:
  Replica(os::FileSystem& fs, const os::Clock& clock, ReplicaOptions opts,
          std::function<uint64_t()> random);
  ~Replica();

  // Loads (or creates) the metadata and the change journal. After a crash
  // every journaled chunk counts as changed.
  Status Open();

  // ---- Local writers (only while primary). `done` runs when the write is
  // ---- acknowledged under the protocol (C: durable on both hosts), or
  // ---- with an error. Queued; the next Flush() does the group commit.
  void Submit(Write w, WriteDone done);
  void Flush();
  bool Congested() const;  // writers should wait (queue or unacked bytes too large)
  // Writers still waiting for their answer (queued, or waiting for the
  // peer's acknowledgement).
  bool WritersWaiting() const;

  // ---- Roles (the HA executor's attach / detach steps).
  Status Promote(bool force);
  void Demote(std::function<void()> done);
  bool primary() const { return primary_; }

  // ---- The connection. `outgoing`: we connected and speak first.
  void Connected(std::unique_ptr<Transport> t, bool outgoing);
  void Received(std::span<const uint8_t> bytes);
  // The most a transport should hand to one Received (the service's reads
  // from the socket): the receive buffer kept across connections holds a
  // frame's leftover plus this much without growing.
  static constexpr size_t kReceiveBytesMax = 256 * 1024;
  void Disconnected(const std::string& why);
  bool connected() const { return transport_ != nullptr; }
  bool wants_connection() const { return state_ != ReplState::kStandAlone; }
  // Timers: pings, peer timeout, sync pacing. Call every ~10 ms.
  void Tick();
  // Sends what the sync or verify running may send now (rate and socket
  // backlog permitting). Tick does it too; the driver also calls it when
  // the socket drained, so a fast sync is not held to the tick.
  void Pump();

  // ---- Admin.
  Status StartVerify();
  Status SetSyncRate(uint64_t bytes_per_s);
  // Split brain: this host's changes are discarded (kept in quarantine)
  // and it becomes the sync target; or it is the survivor.
  Status ResolveSplitBrain(bool discard_local);
  Status Reconnect();  // leave StandAlone
  // DRBD's invalidate (`ha invalidate`): this replica's data is declared
  // Inconsistent and replaced by a full sync from the peer. Persisted (disk
  // Inconsistent, full sync wanted) before it returns, so a restart, a
  // crash or a lost connection mid-sync still leads to a full sync, never a
  // partial one; cleared when a sync from the peer has finished (or by a
  // forced promotion). An established connection is dropped and the sync
  // starts on the reconnect. Errors (nothing changed): this replica is
  // primary, its disk failed, the peer is known not to be UpToDate (it has
  // no data, or this host is its sync source), StandAlone or a split brain
  // being resolved.
  Status Invalidate();

  // ---- State.
  DiskState disk() const { return disk_; }
  ReplState state() const { return state_; }
  bool up_to_date() const { return disk_ == DiskState::kUpToDate; }
  bool full_sync_wanted() const { return full_sync_wanted_; }
  bool synchronizing() const;
  const Generations& generations() const { return gens_; }
  nlohmann::json StatusJson() const;
  const ReplCounters& counters() const { return counters_; }
  std::string summary() const;  // "UpToDate Established" etc. for logs
  // Called after any change of disk or replication state.
  void SetOnChange(std::function<void()> cb) { on_change_ = std::move(cb); }
  // Called when the last waiting writer is about to get its answer, before
  // the answers go out (the service refreshes its status snapshot there,
  // so that a writer never reads a status still counting its write).
  // Writes what a finished sync source left for later (its change journal
  // and rotated generations; done by Tick, and on a clean stop).
  void WriteDueRecords();
  void SetOnWritersAnswered(std::function<void()> cb) { on_writers_answered_ = std::move(cb); }
  void SetOnDiskFailed(std::function<void(const std::string&)> cb) { on_disk_failed_ = std::move(cb); }
  void SetLogger(std::function<void(int level, const std::string&)> cb) { log_ = std::move(cb); }

  // Test hooks.
  LocalStore& store() { return store_; }
  const ChangeSet& changes() const { return changes_; }

 private:
  struct Pending {
    uint64_t write_id;  // the batch's sync marker
    std::vector<WriteDone> done;
    uint64_t bytes;
    bool received = false;
  };
  struct Queued {
    Write w;
    WriteDone done;
  };
  struct SyncItem {
    std::string path;
    std::set<uint64_t> chunks;  // kWholeFile: all
  };

  // Handshake and decision.
  void SendFrame(FrameType type, FrameBody body);
  void OnFrame(Frame f);
  void OnHello(const Hello& h, FrameType type);
  void Decide();
  void BeginSyncSource(bool full);
  void BeginSyncTarget(bool full);
  void ResetSyncProgress(uint64_t total_bytes);
  void StartTokenBucket();
  // The generations shown to the peer and used in the decision: none while
  // a full sync is wanted (invalidate), so both sides decide a full sync
  // from the peer (rule 2).
  Generations Advertised() const;
  Status CheckPeerCanBeSource() const;
  void BeginSplitBrain();
  void ResolveAfterExchange();
  void SendChangeList(const std::map<std::string, std::set<uint64_t>>& list, uint64_t flags);
  Hello MakeHello() const;

  // Data path.
  void ApplyRemoteWrite(Write w);
  void OnAck(const Ack& a);
  void CompleteUpTo(uint64_t write_id, bool durable);
  void FailQueued(const std::string& why);
  void PumpSync();
  bool SendSyncItem(SyncItem& item, uint64_t* budget);
  void OnSyncRequest(const SyncRequest& r);
  void OnSyncData(const SyncData& d);
  void HintWriteback(const std::string& path, uint64_t offset, uint64_t length, bool file_end);
  void FlushWritebackHint();
  // Appends reach the next chunks of their files soon: recorded ahead.
  void NoteAppend(const std::string& path, uint64_t last_chunk);
  std::vector<ChunkRef> AheadRefs() const;
  void OnSyncDone(const SyncDone& d);
  void FinishSyncSource();
  void FinishSyncTarget();
  void FinishMerge();
  void MaybeFinishMerge();
  void FinishDemote();
  Status Quarantine(const std::map<std::string, std::set<uint64_t>>& paths);
  void PumpVerify();
  void OnVerifyRequest(const VerifyRequest& v);
  void OnVerifyReply(const VerifyReply& v);

  // State.
  Status Persist();
  // The metadata record of the current state (on the replication thread),
  // and a job that makes it durable: it touches only meta_, so it may run
  // on an IoPool thread beside other disk work (RunSideBySide).
  std::vector<uint8_t> EncodeMeta() const;
  std::function<Status()> PersistJob();
  // Runs independent disk jobs side by side on the I/O pool (one after the
  // other without one); every job runs even if another fails; returns OK
  // or the first error in `jobs` order. The caller waits for all of them.
  Status RunSideBySide(std::vector<std::function<Status()>> jobs);
  // Persists the new disk state; false if that failed (the disk is then
  // Failed and the connection dropped: the caller stops).
  [[nodiscard]] bool SetDisk(DiskState d);
  void SetState(ReplState s);
  void DiskFailed(const Status& st);
  void Drop(const std::string& why, bool standalone = false);
  bool ReplicatingWrites() const;  // live writes go to the peer
  bool InSync() const;             // Established and both UpToDate
  void Log(int level, const std::string& msg);
  uint64_t Fresh();
  // The peer's name for log lines: from its greeting, else the configured one.
  std::string PeerName() const;

  os::FileSystem& fs_;
  const os::Clock& clock_;
  ReplicaOptions opts_;
  std::function<uint64_t()> random_;
  LocalStore store_;
  ChangeSet changes_;
  MetaSlots meta_;

  Generations gens_;
  DiskState disk_ = DiskState::kUpToDate;
  ReplState state_ = ReplState::kConnecting;
  bool primary_ = false;
  bool discard_local_ = false;  // persisted: admin chose this side as split-brain loser
  bool survivor_ = false;       // persisted: admin chose this side as survivor
  bool full_sync_wanted_ = false;  // persisted: invalidated, a full sync from the peer is due
  std::string standalone_reason_;
  std::string last_error_;
  std::string failed_reason_;

  // Connection.
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<FrameDecoder> decoder_;
  // The decoders' buffer, kept from one connection to the next and touched
  // once at construction (FrameDecoder::AdoptStorage).
  std::vector<uint8_t> decode_storage_;
  std::unique_ptr<FrameEncoder> encoder_;
  bool outgoing_ = false;
  uint64_t conn_id_ = 0;
  uint64_t accept_id_ = 0;  // the accepting side's id (docs/formats/replication.md)
  uint64_t send_seq_ = 0;
  bool greeted_ = false;   // peer's greeting received
  bool verified_ = false;  // nonce echo done (the connection is live, not a replay)
  uint64_t nonce_ = 0;
  std::optional<Hello> peer_;
  int64_t last_heard_ms_ = 0;
  int64_t last_ping_ms_ = 0;

  // Writes.
  std::deque<Queued> queue_;
  uint64_t queued_bytes_ = 0;
  std::deque<Pending> pending_;
  uint64_t unacked_bytes_ = 0;
  uint64_t next_write_id_ = 1;
  uint64_t acked_durable_ = 0;
  uint64_t acked_received_ = 0;
  std::vector<std::function<void()>> demote_waiters_;
  bool demoting_ = false;
  int64_t demote_since_ms_ = 0;
  int64_t last_write_ms_ = 0;
  int64_t last_trim_ms_ = 0;

  // Resync / merge / verify.
  std::deque<SyncItem> sync_work_;
  bool peer_requests_done_ = false;  // the peer's change list / request list ended
  bool sync_sent_done_ = false;
  bool peer_finished_ = false;
  uint64_t sync_covered_id_ = 0;  // writes before the sync started are covered by it
  uint64_t sync_total_bytes_ = 0, sync_done_bytes_ = 0;
  int64_t sync_started_ms_ = 0;
  double tokens_ = 0;
  // Milestones of the current sync, ms after sync_started_ms_ (-1: not
  // yet), reported in last_sync_: source, the target's requests all in and
  // the last data sent; target, the first and the last data received.
  bool source_records_due_ = false;  // a sync source's journal and metadata, at the next Tick
  int64_t sync_requests_in_ms_ = -1, sync_data_out_ms_ = -1, sync_target_done_ms_ = -1;
  int64_t sync_first_data_ms_ = -1, sync_last_data_ms_ = -1;
  int64_t tokens_ms_ = 0;
  std::map<std::string, std::set<uint64_t>> peer_changes_;  // split brain: the peer's list
  uint64_t peer_flags_ = 0;
  bool full_sync_ = false;
  int merge_done_received_ = 0;
  bool merge_finished_sent_ = false;
  std::string last_split_brain_;
  std::string last_quarantine_;
  // Verify.
  std::vector<std::string> verify_files_;
  size_t verify_file_ = 0;
  uint64_t verify_chunk_ = 0;
  uint64_t verify_sent_ = 0, verify_replied_ = 0;
  std::set<std::string> verify_seen_;  // on the target
  bool verify_done_sent_ = false;
  uint64_t verify_base_chunks_ = 0, verify_base_differ_ = 0;
  uint64_t verify_total_bytes_ = 0, verify_done_bytes_ = 0;
  std::string last_verify_;
  std::string last_sync_;
  // Files appended to lately (AheadRefs): the last chunk written and the
  // batch (count of group commits recorded) of that append.
  struct RecentAppend {
    uint64_t last_chunk = 0;
    uint64_t batch = 0;
  };
  std::map<std::string, RecentAppend> recent_appends_;
  uint64_t append_batch_ = 0;
  // Sync target: received bytes not yet handed to start_writeback.
  std::string writeback_path_;
  uint64_t writeback_from_ = 0, writeback_bytes_ = 0;
  // Sync target: the file the last chunk was for. When the next chunk is
  // for another file, this one's early sync starts (the source sends a
  // file's chunks one after the other).
  std::string sync_data_path_;

  ReplCounters counters_;
  std::function<void()> on_change_;
  std::function<void()> on_writers_answered_;
  void WritersAnswered() {
    if (on_writers_answered_ && !WritersWaiting()) on_writers_answered_();
  }
  std::function<void(const std::string&)> on_disk_failed_;
  std::function<void(int, const std::string&)> log_;
};

// The generation both sides adopt after merging a split brain: a function
// of the two diverged generations only, so each side computes it alone.
uint64_t MergedGeneration(uint64_t a, uint64_t b);

}  // namespace tandem::repl
