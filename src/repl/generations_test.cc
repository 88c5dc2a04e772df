#include "repl/generations.h"

#include <gtest/gtest.h>

#include <map>
#include <ostream>
#include <random>

namespace tandem::repl {

// Readable kinds in failure messages (found by ADL).
void PrintTo(SyncKind kind, std::ostream* os) { *os << SyncKindName(kind); }

namespace {

using K = SyncKind;

// Generation ids, in the order a scenario creates them.
constexpr uint64_t kGen1 = 0x1111111111111111;
constexpr uint64_t kGen2 = 0x2222222222222222;
constexpr uint64_t kGen3 = 0x3333333333333333;
constexpr uint64_t kGen4 = 0x4444444444444444;
constexpr uint64_t kGen5 = 0x5555555555555555;
constexpr uint64_t kGen6 = 0x6666666666666666;
constexpr uint64_t kOtherCluster = 0x9999999999999999;

Generations G(uint64_t current, uint64_t bitmap = 0, uint64_t h0 = 0, uint64_t h1 = 0) {
  Generations g;
  g.current = current;
  g.bitmap = bitmap;
  g.history = {h0, h1};
  return g;
}

bool Mentions(const SyncDecision& d, std::string_view text) {
  return d.why.find(text) != std::string::npos;
}

// Decides from both sides and checks that the two views mirror each other.
K DecideBoth(const Generations& local, const Generations& peer) {
  const SyncDecision mine = Decide(local, peer);
  const SyncDecision theirs = Decide(peer, local);
  EXPECT_EQ(Mirror(mine.kind), theirs.kind) << ToString(local) << " vs " << ToString(peer);
  EXPECT_FALSE(mine.why.empty());
  return mine.kind;
}

// ---- One test per rule, in decision order.

TEST(Decide, BothWithoutDataAreBothFresh) {
  const SyncDecision d = Decide(Wiped(), Wiped());
  EXPECT_EQ(d.kind, K::kBothFresh);
  EXPECT_TRUE(Mentions(d, "initial full sync")) << d.why;
}

TEST(Decide, PeerWithoutDataGetsFullSyncFromUs) {
  const SyncDecision d = Decide(G(kGen2, kGen1, kGen3), Wiped());
  EXPECT_EQ(d.kind, K::kFullFromLocal);
  EXPECT_TRUE(Mentions(d, "peer has no current generation")) << d.why;
  EXPECT_EQ(Decide(Wiped(), G(kGen2)).kind, K::kFullFromPeer);
}

TEST(Decide, SameCurrentWithoutChangeMapsIsNone) {
  const SyncDecision d = Decide(G(kGen2, 0, kGen1), G(kGen2, 0, kGen1));
  EXPECT_EQ(d.kind, K::kNone);
  EXPECT_TRUE(Mentions(d, "0x2222222222222222")) << d.why;
}

TEST(Decide, SameCurrentWithOneLeftoverChangeMapIsPartialFromItsHolder) {
  EXPECT_EQ(DecideBoth(G(kGen2, kGen1), G(kGen2, 0, kGen1)), K::kPartialFromLocal);
  EXPECT_EQ(DecideBoth(G(kGen2, 0, kGen1), G(kGen2, kGen1)), K::kPartialFromPeer);
}

TEST(Decide, SameCurrentWithTwoChangeMapsIsRefused) {
  EXPECT_EQ(DecideBoth(G(kGen3, kGen1), G(kGen3, kGen2)), K::kSplitBrain);
  EXPECT_EQ(DecideBoth(G(kGen3, kGen1), G(kGen3, kGen1)), K::kSplitBrain);
}

TEST(Decide, OurBitmapIsPeersCurrentIsPartialFromUs) {
  const SyncDecision d = Decide(G(kGen2, kGen1), G(kGen1));
  EXPECT_EQ(d.kind, K::kPartialFromLocal);
  EXPECT_TRUE(Mentions(d, "our bitmap generation 0x1111111111111111 equals the peer's current"))
      << d.why;
}

TEST(Decide, PeersBitmapIsOurCurrentIsPartialFromPeer) {
  const SyncDecision d = Decide(G(kGen1), G(kGen2, kGen1));
  EXPECT_EQ(d.kind, K::kPartialFromPeer);
  EXPECT_TRUE(Mentions(d, "peer's bitmap generation 0x1111111111111111 equals our current: peer "
                          "has changes we lack"))
      << d.why;
}

TEST(Decide, BitmapRuleBothWaysIsRefused) {
  EXPECT_EQ(DecideBoth(G(kGen1, kGen2), G(kGen2, kGen1)), K::kSplitBrain);
}

TEST(Decide, PeersCurrentInOurHistoryIsFullFromUs) {
  const SyncDecision d = Decide(G(kGen3, 0, kGen2, kGen1), G(kGen1));
  EXPECT_EQ(d.kind, K::kFullFromLocal);
  EXPECT_TRUE(Mentions(d, "0x1111111111111111 is in our history")) << d.why;
  EXPECT_EQ(Decide(G(kGen3, 0, kGen2), G(kGen2)).kind, K::kFullFromLocal);
}

TEST(Decide, OurCurrentInPeersHistoryIsFullFromPeer) {
  const SyncDecision d = Decide(G(kGen2), G(kGen4, kGen3, kGen2));
  EXPECT_EQ(d.kind, K::kFullFromPeer);
  EXPECT_TRUE(Mentions(d, "is in the peer's history")) << d.why;
}

TEST(Decide, HistoryRuleBothWaysIsRefused) {
  EXPECT_EQ(DecideBoth(G(kGen1, 0, kGen2), G(kGen2, 0, kGen1)), K::kSplitBrain);
}

TEST(Decide, BitmapRuleTakesPrecedenceOverHistoryRule) {
  // Our change map covers the peer's current even though our current is in
  // its history: partial beats full (both are correct; partial is cheaper).
  EXPECT_EQ(DecideBoth(G(kGen2, kGen1), G(kGen1, 0, kGen2)), K::kPartialFromLocal);
}

TEST(Decide, SourceThatMissedItsCompletionAndWroteOnIsPartialFromIt) {
  const SyncDecision d = Decide(G(kGen3, kGen1), G(kGen2, 0, kGen1));
  EXPECT_EQ(d.kind, K::kPartialFromLocal);
  EXPECT_TRUE(Mentions(d, "newest in the peer's history")) << d.why;
  EXPECT_EQ(DecideBoth(G(kGen2, 0, kGen1), G(kGen3, kGen1)), K::kPartialFromPeer);
  // Not when the older side has a change map of its own: it wrote too.
  EXPECT_EQ(DecideBoth(G(kGen3, kGen1), G(kGen4, kGen2, kGen1)), K::kSplitBrain);
}

TEST(Decide, EqualBitmapsWithDifferentCurrentsIsSplitBrain) {
  const SyncDecision d = Decide(G(kGen2, kGen1), G(kGen3, kGen1));
  EXPECT_EQ(d.kind, K::kSplitBrain);
  EXPECT_TRUE(Mentions(d, "both replicas changed since generation 0x1111111111111111")) << d.why;
}

TEST(Decide, SharedOlderGenerationIsSplitBrain) {
  const SyncDecision d = Decide(G(kGen4, kGen3, kGen1), G(kGen5, kGen2, kGen1));
  EXPECT_EQ(d.kind, K::kSplitBrain);
  EXPECT_TRUE(Mentions(d, "descend from generation 0x1111111111111111")) << d.why;
  EXPECT_EQ(DecideBoth(G(kGen4, kGen2), G(kGen5, kGen3, kGen6, kGen2)), K::kSplitBrain);
}

TEST(Decide, NoSharedGenerationIsUnrelated) {
  const SyncDecision d = Decide(G(kGen2, kGen1, kGen3), G(kGen4, kGen5, kGen6));
  EXPECT_EQ(d.kind, K::kUnrelated);
  EXPECT_TRUE(Mentions(d, "no common generation")) << d.why;
}

// ---- Symmetry over random tuples: ids from a small pool so that every rule
// ---- fires often, and tuples need not be Valid (Decide takes any input).

constexpr int kSymmetrySeeds = 50;
constexpr int kPairsPerSeed = 2000;
constexpr uint64_t kIdPoolMax = 5;  // ids 0..5

Generations RandomGenerations(std::mt19937_64& rng) {
  std::uniform_int_distribution<uint64_t> id(0, kIdPoolMax);
  return G(id(rng), id(rng), id(rng), id(rng));
}

TEST(Decide, IsSymmetricOverRandomPairs) {
  std::map<K, int> seen;
  for (int seed = 1; seed <= kSymmetrySeeds; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    for (int i = 0; i < kPairsPerSeed; ++i) {
      const Generations a = RandomGenerations(rng);
      const Generations b = RandomGenerations(rng);
      const SyncDecision ab = Decide(a, b);
      const SyncDecision ba = Decide(b, a);
      ASSERT_EQ(Mirror(ab.kind), ba.kind) << "seed " << seed << " pair " << i << ": "
                                          << ToString(a) << " vs " << ToString(b) << ": "
                                          << ab.why << " / " << ba.why;
      ASSERT_FALSE(ab.why.empty()) << "seed " << seed;
      ++seen[ab.kind];
    }
  }
  constexpr size_t kKinds = 8;
  EXPECT_EQ(seen.size(), kKinds) << "the generator must reach every kind";
}

// ---- Transitions and helpers.

TEST(Transitions, NewGenerationKeepsAnExistingBitmap) {
  EXPECT_EQ(NewCurrentOnPromote(G(kGen1, 0, kGen6), kGen2), G(kGen2, kGen1, kGen6));
  EXPECT_EQ(NewCurrentOnPromote(G(kGen2, kGen1), kGen3), G(kGen3, kGen1));
  EXPECT_EQ(StartTrackingWhileDisconnected(G(kGen1), kGen2), G(kGen2, kGen1));
  EXPECT_EQ(StartTrackingWhileDisconnected(G(kGen2, kGen1), kGen3), G(kGen3, kGen1));
}

TEST(Transitions, SyncFinishedRotatesTheBitmapIntoHistory) {
  EXPECT_EQ(SyncFinished(G(kGen4, kGen3, kGen2, kGen1)), G(kGen4, 0, kGen3, kGen2));
  EXPECT_EQ(SyncFinished(G(kGen2, 0, kGen1)), G(kGen2, 0, kGen1));  // full sync: no map
  EXPECT_EQ(SyncFinishedOnTarget(G(kGen4, 0, kGen3, kGen2)), G(kGen4, 0, kGen3, kGen2));
}

TEST(Transitions, CreatedAndWipedAreValid) {
  EXPECT_EQ(Created(kGen1), G(kGen1));
  EXPECT_EQ(Wiped(), Generations{});
  EXPECT_TRUE(Valid(Created(kGen1)));
  EXPECT_TRUE(Valid(Wiped()));
  EXPECT_TRUE(Valid(G(kGen4, kGen3, kGen2, kGen1)));
  EXPECT_FALSE(Valid(G(0, kGen1)));
  EXPECT_FALSE(Valid(G(kGen2, kGen2)));
  EXPECT_FALSE(Valid(G(kGen3, 0, 0, kGen1)));
  EXPECT_FALSE(Valid(G(kGen3, kGen1, kGen1)));
}

TEST(Transitions, FreshIdMustBeNewAndNonzero) {
  EXPECT_DEATH(NewCurrentOnPromote(G(kGen1), 0), "CHECK failed");
  EXPECT_DEATH(NewCurrentOnPromote(G(kGen2, 0, kGen1), kGen1), "CHECK failed");
  EXPECT_DEATH(SyncFinishedOnTarget(G(kGen2, kGen1)), "CHECK failed");
}

TEST(Format, ToStringIsDrbdShowGiLayout) {
  EXPECT_EQ(ToString(G(0xABCDEF0123456789, 0x1, kGen2)),
            "ABCDEF0123456789:0000000000000001:2222222222222222:0000000000000000");
}

TEST(Format, KindNamesAndMirror) {
  EXPECT_EQ(SyncKindName(K::kPartialFromPeer), "partial-from-peer");
  EXPECT_EQ(SyncKindName(K::kSplitBrain), "split-brain");
  EXPECT_EQ(SyncKindName(K::kBothFresh), "both-fresh");
  EXPECT_EQ(Mirror(K::kFullFromLocal), K::kFullFromPeer);
  EXPECT_EQ(Mirror(K::kPartialFromPeer), K::kPartialFromLocal);
  EXPECT_EQ(Mirror(K::kUnrelated), K::kUnrelated);
}

// ---- Life cycles driven through the transitions. A and B are one pair.

struct Pair {
  Generations a = Created(kGen1);
  Generations b = Created(kGen1);

  // A finishes a sync as source towards B: B persists first, then A.
  void FinishSyncFromA() {
    const Generations finished = SyncFinished(a);
    b = SyncFinishedOnTarget(finished);
    a = finished;
  }
};

TEST(LifeCycle, ActiveWritesWhileStandbyIsDownThenPartialFromActive) {
  Pair p;
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kNone);
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);  // B goes down; A writes on
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  p.FinishSyncFromA();
  EXPECT_EQ(p.a, G(kGen2, 0, kGen1));
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kNone);
}

TEST(LifeCycle, ActiveCrashesStandbyTakesOverThenPartialFromNewActive) {
  Pair p;
  p.b = NewCurrentOnPromote(p.b, kGen2);  // A crashed; B promoted, writes
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromPeer);  // A returns
}

TEST(LifeCycle, BothPromotedAcrossAPartitionIsSplitBrain) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.b = NewCurrentOnPromote(p.b, kGen3);
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kSplitBrain);
}

TEST(LifeCycle, WipedDiskGetsFullSync) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.b = Wiped();
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kFullFromLocal);
  const Generations finished = SyncFinished(p.a);
  p.b = SyncFinishedOnTarget(finished);
  p.a = finished;
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kNone);
}

TEST(LifeCycle, OldGenerationInHistoryAfterFinishedSyncsNeedsFullSync) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.FinishSyncFromA();
  const Generations old_disk_of_b = p.b;  // at kGen2, set aside
  p.a = StartTrackingWhileDisconnected(p.a, kGen3);
  p.FinishSyncFromA();
  EXPECT_EQ(p.a, G(kGen3, 0, kGen2, kGen1));
  EXPECT_EQ(DecideBoth(p.a, old_disk_of_b), K::kFullFromLocal);
}

TEST(LifeCycle, TwoClustersAreUnrelated) {
  Pair p;
  EXPECT_EQ(DecideBoth(p.a, Created(kOtherCluster)), K::kUnrelated);
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.FinishSyncFromA();
  EXPECT_EQ(DecideBoth(p.a, StartTrackingWhileDisconnected(Created(kOtherCluster), kGen6)),
            K::kUnrelated);
}

TEST(LifeCycle, InterruptedSyncIsRestartedWithTheSameDecision) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  // The sync starts and breaks off: no transition ran. Reconnect.
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  // The active writes on after losing the peer mid-sync: its map is kept.
  p.a = StartTrackingWhileDisconnected(p.a, kGen3);
  EXPECT_EQ(p.a, G(kGen3, kGen1));
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  p.FinishSyncFromA();
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kNone);
}

TEST(LifeCycle, SourceCrashAfterTargetAdoptedIsStillPartial) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.b = SyncFinishedOnTarget(SyncFinished(p.a));  // A crashes before persisting
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  p.a = StartTrackingWhileDisconnected(p.a, kGen3);  // A went on writing alone
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kPartialFromLocal);
  p.FinishSyncFromA();
  EXPECT_EQ(p.a, G(kGen3, 0, kGen1));
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kNone);
}

TEST(LifeCycle, SourcePersistingBeforeTargetCostsAFullSync) {
  Pair p;
  p.a = StartTrackingWhileDisconnected(p.a, kGen2);
  p.a = SyncFinished(p.a);  // the wrong order: B crashes before adopting
  EXPECT_EQ(DecideBoth(p.a, p.b), K::kFullFromLocal);
}

}  // namespace
}  // namespace tandem::repl
