// The change set of a replica: which chunks of which files may differ from
// the peer's copy (docs/REPLICATION.md, "Change set and activity log").
// It plays both of DRBD's parts at file level:
//  - the quick-sync bitmap: while the peer is away (or a sync is running),
//    every chunk written is recorded and stays "pinned" until a sync
//    finishes, so a resync sends only those chunks;
//  - the activity log: while connected, a chunk is recorded (durably)
//    *before* it is first written, and stays recorded while it is hot or not
//    yet acknowledged by the peer. After a crash every recorded chunk counts
//    as changed, so a crash of the active never forces a full resync.
// The journal lives in the replica's metadata directory, outside the store.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "os/fs.h"
#include "util/status.h"

namespace tandem::repl {

// Marks "the whole file, its existence and size" (create, rename, delete,
// truncate to a new size).
inline constexpr uint64_t kWholeFile = UINT64_MAX;

struct ChunkRef {
  std::string path;
  uint64_t chunk = 0;  // or kWholeFile
  bool operator<(const ChunkRef& o) const {
    return path != o.path ? path < o.path : chunk < o.chunk;
  }
  bool operator==(const ChunkRef&) const = default;
};

class ChangeSet {
 public:
  // `journal_path`: the durable record; `hot_limit`: unpinned chunks kept
  // recorded while they are the most recently written (DRBD's al-extents).
  ChangeSet(os::FileSystem& fs, std::string journal_path, size_t hot_limit);

  // Reads the journal (a torn or corrupt tail is cut); every recorded chunk
  // comes back pinned. A missing journal is an empty set.
  Status Load();

  // Before applying writes: records every chunk of `refs` not yet recorded
  // (journal append + one Sync for all of them). `write_id` is the id of the
  // newest write touching them; `pin` pins them (peer away / sync running).
  // `ahead`: chunks likely written soon (the next chunks of appended files),
  // recorded in the same journal append when one is needed for `refs`
  // anyway, never on their own: they save the journal syncs of the next
  // batches (DRBD records 4 MiB activity-log extents for the same reason).
  Status Record(const std::vector<ChunkRef>& refs, uint64_t write_id, bool pin,
                const std::vector<ChunkRef>& ahead = {});

  // The peer has everything up to `write_id` durably: unpinned chunks that
  // are no longer hot and whose last write is covered leave the set.
  void Acknowledged(uint64_t write_id);

  // The peer is away (or a sync starts): every recorded chunk stays until
  // the next sync finishes, except unpinned ones whose last write the peer
  // has durably (`acked`), which leave the set. After a crash nothing is
  // known to be acknowledged: Load() pins everything.
  void PinAll(uint64_t acked = 0);
  // A sync finished: pinned chunks whose last write is covered by
  // `durable_write_id` leave the set (`write_id` 0 for chunks that only came
  // from the journal); the journal is rewritten.
  Status SyncFinished(uint64_t durable_write_id);
  // After a sync: chunks still recorded were written during it and are
  // replicated live; they become ordinary hot entries again.
  void UnpinAll();
  // Forget everything (after a full sync made both replicas identical).
  Status Clear();

  // SyncFinished and Clear in two steps, so that the journal's disk sync
  // can run on another thread beside other disk work: the set changes in
  // memory (on the caller's thread), then RewriteJournal makes the journal
  // match it (it touches only this object; nothing else may use it
  // meanwhile).
  void SyncFinishedEntries(uint64_t durable_write_id);
  void ClearEntries();
  Status RewriteJournal() { return Rewrite(); }

  // At a quiet moment (no writes for a while, connected and in sync): every
  // unpinned chunk the peer has durably leaves the set, hot or not, and the
  // journal is rewritten, so a crash after it resends nothing. Cheap when
  // there is nothing to trim.
  Status TrimAcknowledged();

  // Rewrites the journal with the current set when it has grown (call at
  // quiet moments; cheap when nothing to do).
  Status MaybeCompact();

  // The pinned chunks grouped by path (what a resync must send), sorted.
  std::map<std::string, std::set<uint64_t>> Pinned() const;
  std::map<std::string, std::set<uint64_t>> All() const;
  size_t size() const { return entries_.size(); }
  size_t pinned() const { return pinned_count_; }
  uint64_t journal_bytes() const { return journal_bytes_; }
  uint64_t journal_syncs() const { return journal_syncs_; }

 private:
  struct Entry {
    uint64_t last_write = 0;
    bool pinned = false;
    std::list<ChunkRef>::iterator lru;  // valid iff !pinned
  };
  Status Append(const std::vector<ChunkRef>& refs);
  bool Covered(const ChunkRef& ref) const;  // recorded, or its file is (pinned, whole)
  Status Rewrite();
  void Touch(const ChunkRef& ref, Entry& e);
  void Evict();

  os::FileSystem& fs_;
  std::string path_;
  size_t hot_limit_;
  std::map<ChunkRef, Entry> entries_;
  std::list<ChunkRef> lru_;  // unpinned, most recent first
  size_t pinned_count_ = 0;
  uint64_t acked_ = 0;
  std::unique_ptr<os::File> journal_;
  uint64_t journal_bytes_ = 0;
  uint64_t journal_records_ = 0;
  uint64_t journal_syncs_ = 0;
  // Bytes [0, journal_used_end_) of the journal file may hold records
  // (written, maybe not all durable); everything after them is zeros or
  // beyond the end of the file. An emptied journal is zeroed up to here.
  uint64_t journal_used_end_ = 0;
  // The journal holds no record, durably (made so by Rewrite, nothing
  // appended since): emptying it again needs no I/O.
  bool journal_durably_empty_ = false;
};

// Journal record encoding (docs/REPLICATION.md): u32 length of the rest,
// u64 chunk, path bytes, u64 xxh64 of (chunk, path). Exposed for tests.
std::vector<uint8_t> EncodeJournalRecord(const ChunkRef& ref);
// Parses records from `data`; stops at the first torn or corrupt record and
// returns how many bytes were valid in *valid_bytes.
std::vector<ChunkRef> DecodeJournal(const std::vector<uint8_t>& data, size_t* valid_bytes);

}  // namespace tandem::repl
