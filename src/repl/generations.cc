#include "repl/generations.h"

#include <cstdio>
#include <optional>
#include <utility>

#include "util/status.h"

namespace tandem::repl {
namespace {

constexpr size_t kHexIdChars = 16;

std::string HexDigits(uint64_t id) {
  char buf[kHexIdChars + 1];
  std::snprintf(buf, sizeof(buf), "%016llX", static_cast<unsigned long long>(id));
  return buf;
}

std::string Hex(uint64_t id) { return "0x" + HexDigits(id); }

bool InHistory(const Generations& g, uint64_t id) {
  if (id == kNoGeneration) return false;
  for (uint64_t h : g.history) {
    if (h == id) return true;
  }
  return false;
}

bool Contains(const Generations& g, uint64_t id) {
  return id != kNoGeneration && (g.current == id || g.bitmap == id || InHistory(g, id));
}

// DRBD's "start of a new data generation".
Generations StartNewGeneration(const Generations& g, uint64_t fresh) {
  TANDEM_CHECK(fresh != kNoGeneration);
  TANDEM_CHECK(!Contains(g, fresh));
  Generations next = g;
  if (next.bitmap == kNoGeneration) next.bitmap = g.current;
  next.current = fresh;
  return next;
}

SyncDecision Make(SyncKind kind, std::string why) { return SyncDecision{kind, std::move(why)}; }

// Rules 1-3: a replica without a current generation holds no data.
std::optional<SyncDecision> DecideNoData(const Generations& local, const Generations& peer) {
  if (local.current == kNoGeneration && peer.current == kNoGeneration) {
    return Make(SyncKind::kBothFresh,
                "neither replica has a current generation (both new): initial full sync needed");
  }
  if (peer.current == kNoGeneration) {
    return Make(SyncKind::kFullFromLocal,
                "peer has no current generation (new or wiped disk): full sync from us");
  }
  if (local.current == kNoGeneration) {
    return Make(SyncKind::kFullFromPeer,
                "we have no current generation (new or wiped disk): full sync from the peer");
  }
  return std::nullopt;
}

// Rule 4: the same current generation is the same data. A change map left
// on one side (a crash between the target adopting the generations and the
// source clearing its map) is replayed: a harmless, restartable partial sync.
std::optional<SyncDecision> DecideSameCurrent(const Generations& local, const Generations& peer) {
  if (local.current != peer.current) return std::nullopt;
  const std::string same = "both replicas are at generation " + Hex(local.current);
  if (local.bitmap == kNoGeneration && peer.bitmap == kNoGeneration) {
    return Make(SyncKind::kNone, same + ": nothing to sync");
  }
  if (local.bitmap != kNoGeneration && peer.bitmap != kNoGeneration) {
    return Make(SyncKind::kSplitBrain,
                same + " but both keep a change map (ours since " + Hex(local.bitmap) +
                    ", the peer's since " + Hex(peer.bitmap) +
                    "); no transition leads here, so no direction is guessed");
  }
  if (local.bitmap != kNoGeneration) {
    return Make(SyncKind::kPartialFromLocal,
                same + " but we still keep a change map since " + Hex(local.bitmap) +
                    " (a sync completion was interrupted): partial sync from us");
  }
  return Make(SyncKind::kPartialFromPeer,
              same + " but the peer still keeps a change map since " + Hex(peer.bitmap) +
                  " (a sync completion was interrupted): partial sync from the peer");
}

// Rule 5: one side's bitmap generation is the other's current: it changed
// since the other's data and its change map records exactly what.
std::optional<SyncDecision> DecideByBitmap(const Generations& local, const Generations& peer) {
  const bool local_newer = local.bitmap != kNoGeneration && local.bitmap == peer.current;
  const bool peer_newer = peer.bitmap != kNoGeneration && peer.bitmap == local.current;
  if (local_newer && peer_newer) {
    return Make(SyncKind::kSplitBrain,
                "each replica's bitmap generation is the other's current generation: "
                "contradictory metadata, the admin decides");
  }
  if (local_newer) {
    return Make(SyncKind::kPartialFromLocal,
                "our bitmap generation " + Hex(local.bitmap) +
                    " equals the peer's current: we have changes the peer lacks");
  }
  if (peer_newer) {
    return Make(SyncKind::kPartialFromPeer,
                "peer's bitmap generation " + Hex(peer.bitmap) +
                    " equals our current: peer has changes we lack");
  }
  return std::nullopt;
}

// Rule 6: one side's history holds the other's current: it is newer, but the
// change map of that step is gone (cleared when its sync finished).
std::optional<SyncDecision> DecideByHistory(const Generations& local, const Generations& peer) {
  const bool local_newer = InHistory(local, peer.current);
  const bool peer_newer = InHistory(peer, local.current);
  if (local_newer && peer_newer) {
    return Make(SyncKind::kSplitBrain,
                "each replica's current generation is in the other's history: "
                "contradictory metadata, the admin decides");
  }
  if (local_newer) {
    return Make(SyncKind::kFullFromLocal,
                "peer's current generation " + Hex(peer.current) +
                    " is in our history: we are newer but no change map covers the gap");
  }
  if (peer_newer) {
    return Make(SyncKind::kFullFromPeer,
                "our current generation " + Hex(local.current) +
                    " is in the peer's history: peer is newer but no change map covers the gap");
  }
  return std::nullopt;
}

// `newer` kept its change map since B although `older` already adopted the
// generation that followed B (B is older's newest history entry): newer
// missed its own sync completion and wrote on; its map still covers all.
bool MissedCompletion(const Generations& newer, const Generations& older) {
  return newer.bitmap != kNoGeneration && older.bitmap == kNoGeneration &&
         older.history[0] == newer.bitmap;
}

// Rule 7: the sync source crashed before clearing its map, then went on.
std::optional<SyncDecision> DecideMissedCompletion(const Generations& local,
                                                   const Generations& peer) {
  const bool local_newer = MissedCompletion(local, peer);
  const bool peer_newer = MissedCompletion(peer, local);
  if (local_newer && peer_newer) {
    return Make(SyncKind::kSplitBrain,
                "each replica's bitmap generation is the newest in the other's history: "
                "contradictory metadata, the admin decides");
  }
  if (local_newer) {
    return Make(SyncKind::kPartialFromLocal,
                "our bitmap generation " + Hex(local.bitmap) +
                    " is the newest in the peer's history and the peer kept no change map: "
                    "our change map covers all the peer lacks");
  }
  if (peer_newer) {
    return Make(SyncKind::kPartialFromPeer,
                "peer's bitmap generation " + Hex(peer.bitmap) +
                    " is the newest in our history and we kept no change map: "
                    "the peer's change map covers all we lack");
  }
  return std::nullopt;
}

// A generation both replicas passed through, other than either current.
std::optional<uint64_t> CommonAncestor(const Generations& local, const Generations& peer) {
  const std::array<uint64_t, 1 + kHistorySize> mine{local.bitmap, local.history[0],
                                                    local.history[1]};
  for (uint64_t id : mine) {
    if (id == kNoGeneration) continue;
    if (peer.bitmap == id || InHistory(peer, id)) return id;
  }
  return std::nullopt;
}

// Rules 8-10: no side's data contains the other's.
SyncDecision DecideDiverged(const Generations& local, const Generations& peer) {
  if (local.bitmap != kNoGeneration && local.bitmap == peer.bitmap) {
    return Make(SyncKind::kSplitBrain,
                "both replicas changed since generation " + Hex(local.bitmap) +
                    " (equal bitmap generations, different currents): split brain");
  }
  if (std::optional<uint64_t> common = CommonAncestor(local, peer)) {
    return Make(SyncKind::kSplitBrain,
                "both replicas descend from generation " + Hex(*common) +
                    " and changed independently since: split brain");
  }
  return Make(SyncKind::kUnrelated,
              "no common generation: the replicas hold unrelated data (another cluster?)");
}

}  // namespace

bool Valid(const Generations& g) {
  if (g.current == kNoGeneration) return g == Generations{};
  if (g.history[0] == kNoGeneration && g.history[1] != kNoGeneration) return false;
  const std::array<uint64_t, 2 + kHistorySize> ids{g.current, g.bitmap, g.history[0],
                                                   g.history[1]};
  for (size_t i = 0; i < ids.size(); ++i) {
    for (size_t j = i + 1; j < ids.size(); ++j) {
      if (ids[i] != kNoGeneration && ids[i] == ids[j]) return false;
    }
  }
  return true;
}

Generations Created(uint64_t fresh) {
  TANDEM_CHECK(fresh != kNoGeneration);
  Generations g;
  g.current = fresh;
  return g;
}

Generations Wiped() { return Generations{}; }

Generations NewCurrentOnPromote(const Generations& g, uint64_t fresh) {
  return StartNewGeneration(g, fresh);
}

Generations StartTrackingWhileDisconnected(const Generations& g, uint64_t fresh) {
  return StartNewGeneration(g, fresh);
}

Generations SyncFinished(const Generations& source) {
  TANDEM_CHECK(source.current != kNoGeneration);
  Generations next = source;
  if (source.bitmap != kNoGeneration) {
    next.history[1] = source.history[0];
    next.history[0] = source.bitmap;
    next.bitmap = kNoGeneration;
  }
  return next;
}

Generations SyncFinishedOnTarget(const Generations& finished_source) {
  TANDEM_CHECK(finished_source.current != kNoGeneration);
  TANDEM_CHECK(finished_source.bitmap == kNoGeneration);
  Generations next;
  next.current = finished_source.current;
  next.history = finished_source.history;
  return next;
}

SyncDecision Decide(const Generations& local, const Generations& peer) {
  if (auto d = DecideNoData(local, peer)) return *std::move(d);
  if (auto d = DecideSameCurrent(local, peer)) return *std::move(d);
  if (auto d = DecideByBitmap(local, peer)) return *std::move(d);
  if (auto d = DecideByHistory(local, peer)) return *std::move(d);
  if (auto d = DecideMissedCompletion(local, peer)) return *std::move(d);
  return DecideDiverged(local, peer);
}

SyncKind Mirror(SyncKind kind) {
  switch (kind) {
    case SyncKind::kPartialFromLocal: return SyncKind::kPartialFromPeer;
    case SyncKind::kPartialFromPeer: return SyncKind::kPartialFromLocal;
    case SyncKind::kFullFromLocal: return SyncKind::kFullFromPeer;
    case SyncKind::kFullFromPeer: return SyncKind::kFullFromLocal;
    case SyncKind::kNone:
    case SyncKind::kSplitBrain:
    case SyncKind::kUnrelated:
    case SyncKind::kBothFresh: return kind;
  }
  return kind;
}

std::string ToString(const Generations& g) {
  return HexDigits(g.current) + ":" + HexDigits(g.bitmap) + ":" + HexDigits(g.history[0]) + ":" +
         HexDigits(g.history[1]);
}

std::string_view SyncKindName(SyncKind kind) {
  switch (kind) {
    case SyncKind::kNone: return "none";
    case SyncKind::kPartialFromLocal: return "partial-from-local";
    case SyncKind::kPartialFromPeer: return "partial-from-peer";
    case SyncKind::kFullFromLocal: return "full-from-local";
    case SyncKind::kFullFromPeer: return "full-from-peer";
    case SyncKind::kSplitBrain: return "split-brain";
    case SyncKind::kUnrelated: return "unrelated";
    case SyncKind::kBothFresh: return "both-fresh";
  }
  return "unknown";
}

}  // namespace tandem::repl
