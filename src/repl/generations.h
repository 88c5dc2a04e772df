// Generation identifiers of a /store replica and the sync decision taken from
// them on every connect, in the spirit of DRBD's generation identifiers
// (docs/REPLICATION.md, "Generation identifiers"). Pure: no I/O, no clocks.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::repl {

// A generation identifier: a random, nonzero 64-bit id naming one "data
// generation" of the store. 0 means "none".
inline constexpr uint64_t kNoGeneration = 0;
inline constexpr size_t kHistorySize = 2;

// The generation tuple of one replica (DRBD's GI tuple), persisted by the
// replica's metadata store outside the store directory.
//
// Invariants (Valid() checks them; the transitions below keep them):
//  - current == 0 means the replica holds no data (new or wiped disk); then
//    bitmap and history are 0 too.
//  - bitmap != 0 means the replica's change map records every change made
//    since generation `bitmap` (the last generation it shared with its peer);
//    bitmap == 0 means no change map is being kept.
//  - history[0] is the newest earlier generation, history[1] the one before;
//    history[1] != 0 only if history[0] != 0.
//  - the nonzero ids among current, bitmap, history are pairwise distinct.
struct Generations {
  uint64_t current = kNoGeneration;
  uint64_t bitmap = kNoGeneration;
  std::array<uint64_t, kHistorySize> history{};

  bool operator==(const Generations&) const = default;
};

bool Valid(const Generations& g);

// ---- Transitions. Each returns the new tuple; the caller persists it before
// ---- acting on it. `fresh` is a new random id: REQUIRES fresh != 0 and fresh
// ---- not already in `g` (checked: a collision is a bug in the caller).

// Brand-new replica pair after the initial full sync: both replicas get
// {current = fresh}.
Generations Created(uint64_t fresh);

// A replaced or wiped disk: all zero (no data, no history).
Generations Wiped();

// A replica becomes primary (Active) while disconnected, e.g. after a
// failover or on both sides of a partition: a new data generation starts.
// bitmap = current if no change map is kept yet (it then records the
// changes since the last common generation), current = fresh. An existing
// bitmap is kept: its change map already covers everything since then.
Generations NewCurrentOnPromote(const Generations& g, uint64_t fresh);

// The primary loses its peer: the same change of generations as above.
Generations StartTrackingWhileDisconnected(const Generations& g, uint64_t fresh);

// A sync (partial or full) finished, on the sync source: the bitmap
// generation (if any) is rotated into history (history[1] = history[0],
// history[0] = bitmap) and bitmap = 0. REQUIRES source.current != 0.
Generations SyncFinished(const Generations& source);

// The same sync finished, on the sync target: it adopts the source's
// current and history (pass the source's tuple *after* SyncFinished) and
// keeps no change map. Persist on the target before the source persists its
// own SyncFinished (see docs/REPLICATION.md).
Generations SyncFinishedOnTarget(const Generations& finished_source);

// ---- The sync decision.

enum class SyncKind : uint8_t {
  kNone,              // same data generation: nothing to send
  kPartialFromLocal,  // we are newer; our change map says what to send
  kPartialFromPeer,   // the peer is newer; its change map says what to send
  kFullFromLocal,     // we are newer but no change map covers the difference
  kFullFromPeer,      // the peer is newer, no change map covers the difference
  kSplitBrain,        // both changed since a common generation: the admin decides
  kUnrelated,         // no common generation at all: refuse to connect
  kBothFresh,         // neither has data: initial full sync, caller picks direction
};

struct SyncDecision {
  SyncKind kind = SyncKind::kNone;
  std::string why;  // which rule fired, in plain words, from our point of view
};

// Decides from the two tuples alone (never clocks). Symmetric: the peer,
// deciding Decide(peer, local), gets Mirror() of our kind.
SyncDecision Decide(const Generations& local, const Generations& peer);

// The same decision as seen by the peer: FromLocal <-> FromPeer, others equal.
SyncKind Mirror(SyncKind kind);

// "CURRENT:BITMAP:HIST1:HIST2", each as 16 uppercase hex digits (DRBD's
// show-gi layout).
std::string ToString(const Generations& g);

// "none", "partial-from-local", ..., "both-fresh".
std::string_view SyncKindName(SyncKind kind);

}  // namespace tandem::repl
