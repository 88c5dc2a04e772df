#include "repl/replica.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "os/fault_fs.h"
#include "repl/io_pool.h"
#include "repl/pair_harness.h"
#include "util/temp_dir.h"

namespace tandem::repl {
namespace {

using testing::AppendOp;
using testing::Pair;
using testing::SimpleOp;
using testing::Snapshot;
using testing::WriteAtOp;

std::string Store(Pair& p, int i) { return p.opts(i).store_dir; }

// Writes through the volume and waits until acknowledged.
void WriteSync(Pair& p, int i, Write w) {
  bool done = false;
  Status result;
  p.Write(i, std::move(w), [&](const Status& st) {
    done = true;
    result = st;
  });
  p.Run();
  ASSERT_TRUE(done);
  ASSERT_TRUE(result.ok()) << result.message();
}

std::string Bytes(size_t n, char seed) {
  std::string s(n, 'x');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i % 23));
  return s;
}

class ReplicaTest : public ::testing::Test {
 protected:
  os::FaultFileSystem fs_a_, fs_b_;
  Pair pair_{fs_a_, fs_b_, "/r"};

  void StartBoth() {
    ASSERT_TRUE(pair_.Start(0).ok());
    ASSERT_TRUE(pair_.Start(1).ok());
  }
  void ExpectIdentical() {
    auto a = Snapshot(fs_a_, Store(pair_, 0));
    auto b = Snapshot(fs_b_, Store(pair_, 1));
    EXPECT_EQ(a.size(), b.size());
    for (auto& [path, data] : a) {
      ASSERT_TRUE(b.count(path)) << path << " missing on beta";
      EXPECT_TRUE(b[path] == data) << path << " differs";
    }
    for (auto& [path, data] : b) EXPECT_TRUE(a.count(path)) << path << " only on beta";
  }
};

TEST_F(ReplicaTest, NewPrimaryIsUpToDateNewSecondaryIsInconsistent) {
  StartBoth();
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kInconsistent);
  EXPECT_FALSE(pair_.r(1).Promote(false).ok());
  EXPECT_TRUE(pair_.r(0).Promote(false).ok());
}

TEST_F(ReplicaTest, InitialFullSyncCopiesTheStoreWhileWritesContinue) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  // Data written before the secondary exists.
  for (int f = 0; f < 5; ++f) WriteSync(pair_, 0, AppendOp("seg/" + std::to_string(f), Bytes(3 << 20, 'a')));
  pair_.Connect();
  // A write while the sync is starting.
  bool acked = false;
  pair_.Write(0, AppendOp("seg/live", "hello"), [&](const Status& st) { acked = st.ok(); });
  pair_.Run();
  EXPECT_TRUE(acked);
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair_.r(0).generations(), pair_.r(1).generations());
  ExpectIdentical();
}

TEST_F(ReplicaTest, ProtocolCAcknowledgesOnlyAfterThePeerIsDurable) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  ASSERT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  bool acked = false;
  pair_.Write(0, AppendOp("a", "x"), [&](const Status& st) { acked = st.ok(); });
  pair_.r(0).Flush();
  EXPECT_FALSE(acked) << "acknowledged before the peer had it";
  uint64_t syncs_before = fs_b_.syncs();
  pair_.Run();
  EXPECT_TRUE(acked);
  EXPECT_GT(fs_b_.syncs(), syncs_before) << "the peer never synced";
  // What the secondary has synced survives its power loss.
  fs_b_.PowerLoss(7, os::FaultFileSystem::Mode::kDropUnsynced);
  auto c = fs_b_.Contents(Store(pair_, 1) + "/a");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(std::string(c->begin(), c->end()), "x");
}

// The service refreshes its status snapshot in this hook: it must run
// before the last writer's answer, when the status no longer counts it.
TEST_F(ReplicaTest, TheLastWriterIsAnsweredAfterTheStatusStopsCountingIt) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  std::vector<std::string> events;
  pair_.r(0).SetOnWritersAnswered([&] {
    nlohmann::json j = pair_.r(0).StatusJson();
    events.push_back("hook unacked=" + std::to_string(j["unacked_writes"].get<uint64_t>()) +
                     " pending=" + std::to_string(j["pending_writes"].get<uint64_t>()));
  });
  for (int i = 0; i < 3; ++i) {
    pair_.Write(0, AppendOp("a", "x"), [&, i](const Status& st) {
      events.push_back("answer " + std::to_string(i) + (st.ok() ? " ok" : " failed"));
    });
  }
  pair_.r(0).Flush();
  EXPECT_TRUE(events.empty()) << "answered before the peer had the writes";
  pair_.Run();
  EXPECT_EQ(events, (std::vector<std::string>{"hook unacked=0 pending=0", "answer 0 ok", "answer 1 ok",
                                              "answer 2 ok"}));
  // Writers answered by a lost connection (on the local copy) too.
  events.clear();
  pair_.Write(0, AppendOp("a", "y"), [&](const Status& st) { events.push_back(st.ok() ? "answer ok" : "failed"); });
  pair_.r(0).Flush();
  pair_.r(0).Disconnected("test");
  EXPECT_EQ(events, (std::vector<std::string>{"hook unacked=0 pending=0", "answer ok"}));
}

TEST_F(ReplicaTest, GroupCommitSharesOneRoundTripAndSync) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  int acked = 0;
  uint64_t commits = pair_.r(0).counters().commits;
  for (int i = 0; i < 100; ++i) {
    pair_.Write(0, AppendOp("w/" + std::to_string(i % 4), "record"), [&](const Status& st) { acked += st.ok(); });
  }
  pair_.Run();
  EXPECT_EQ(acked, 100);
  EXPECT_EQ(pair_.r(0).counters().commits - commits, 1u);
}

TEST_F(ReplicaTest, EveryOperationIsReplicated) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, SimpleOp(WriteOp::kCreate, "d/one"));
  WriteSync(pair_, 0, AppendOp("d/one", Bytes(100, 'q')));
  WriteSync(pair_, 0, WriteAtOp("d/one", 3 << 20, {1, 2, 3}));
  WriteSync(pair_, 0, SimpleOp(WriteOp::kTruncate, "d/one", "", 50));
  WriteSync(pair_, 0, AppendOp("d/two", "2"));
  WriteSync(pair_, 0, SimpleOp(WriteOp::kRename, "d/two", "e/three"));
  WriteSync(pair_, 0, AppendOp("gone", "bye"));
  WriteSync(pair_, 0, SimpleOp(WriteOp::kDelete, "gone"));
  WriteSync(pair_, 0, SimpleOp(WriteOp::kSync, ""));
  ExpectIdentical();
  auto snap = Snapshot(fs_b_, Store(pair_, 1));
  EXPECT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap["d/one"].size(), 50u);
  EXPECT_EQ(snap["e/three"].size(), 1u);
}

TEST_F(ReplicaTest, SecondaryRefusesWritesAndBadWritesAreRefused) {
  StartBoth();
  bool failed = false;
  pair_.Write(1, AppendOp("x", "y"), [&](const Status& st) { failed = !st.ok(); });
  EXPECT_TRUE(failed);
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  failed = false;
  pair_.Write(0, AppendOp("../escape", "y"), [&](const Status& st) { failed = !st.ok(); });
  EXPECT_TRUE(failed);
  failed = false;
  pair_.Write(0, SimpleOp(WriteOp::kRename, "missing", "other"), [&](const Status& st) { failed = !st.ok(); });
  pair_.Run();
  EXPECT_TRUE(failed);
  EXPECT_FALSE(fs_a_.Exists(Store(pair_, 0) + "/../escape"));
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kUpToDate);
}

// Measured on the wire by the harness, not by the replica's counters.
TEST_F(ReplicaTest, ResyncAfterOnePercentChangeSendsAtMostTwoPercent) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  const int kFiles = 20;
  const size_t kFileBytes = 5 << 20;  // 100 MiB store
  for (int f = 0; f < kFiles; ++f) WriteSync(pair_, 0, AppendOp("s/" + std::to_string(f), Bytes(kFileBytes, 'a')));
  ExpectIdentical();
  pair_.Cut();
  pair_.Run();
  // ~1%: 1 MiB rewritten in place spread over a few files + appends.
  for (int f = 0; f < 4; ++f) {
    WriteSync(pair_, 0, WriteAtOp("s/" + std::to_string(f * 5), 2 << 20, std::vector<uint8_t>(200 * 1024, 7)));
  }
  WriteSync(pair_, 0, AppendOp("s/new", Bytes(200 * 1024, 'n')));
  pair_.Connect();
  pair_.Run();
  ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  ExpectIdentical();
  uint64_t store_bytes = kFiles * kFileBytes;
  uint64_t sent = pair_.wire(0) ? pair_.wire(0)->sync_payload_bytes : 0;
  EXPECT_GT(sent, 0u);
  EXPECT_LE(sent, store_bytes * 2 / 100) << "resync sent " << sent << " of " << store_bytes;
}

TEST_F(ReplicaTest, FailoverThenOldPrimaryReturnsAndGetsOnlyTheChanges) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  for (int f = 0; f < 8; ++f) WriteSync(pair_, 0, AppendOp("s/" + std::to_string(f), Bytes(2 << 20, 'b')));
  // alpha dies with a write in flight (applied locally, never acknowledged).
  bool acked = false;
  pair_.Write(0, AppendOp("s/inflight", "lost?"), [&](const Status& st) { acked = st.ok(); });
  pair_.r(0).Flush();
  pair_.Kill(0);
  fs_a_.PowerLoss(3, os::FaultFileSystem::Mode::kTearUnsynced);
  EXPECT_FALSE(acked);
  // beta takes over and writes.
  ASSERT_TRUE(pair_.r(1).Promote(false).ok());
  WriteSync(pair_, 1, AppendOp("s/after", Bytes(1000, 'c')));
  // alpha comes back as secondary.
  ASSERT_TRUE(pair_.Start(0).ok());
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kUpToDate);
  ExpectIdentical();
  uint64_t sent = pair_.wire(1) ? pair_.wire(1)->sync_payload_bytes : 0;
  // At most the activity log (64 chunks of 64 KiB) plus the new writes;
  // a full resync would be 16 MiB.
  EXPECT_LT(sent, 6u << 20) << "a crash of the primary must not force a full resync";
  if (::testing::Test::HasFailure()) {
    for (int i = 0; i < 2; ++i)
      for (auto& l : pair_.node(i).log) std::cerr << pair_.node(i).name << ": " << l << "\n";
  }
}

TEST_F(ReplicaTest, SplitBrainOfAppendOnlySegmentsIsMerged) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, AppendOp("events/alpha-1.seg", "common"));
  pair_.Cut();
  pair_.Run();
  ASSERT_TRUE(pair_.r(1).Promote(false).ok());  // both active across a partition
  WriteSync(pair_, 0, AppendOp("events/alpha-2.seg", "from alpha"));
  WriteSync(pair_, 1, AppendOp("events/beta-2.seg", "from beta"));
  pair_.r(1).Demote([] {});  // the HA core resolved dual-active
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(0).counters().split_brains, 1u);
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  ExpectIdentical();
  auto snap = Snapshot(fs_a_, Store(pair_, 0));
  EXPECT_TRUE(snap.count("events/alpha-1.seg"));
  EXPECT_TRUE(snap.count("events/alpha-2.seg"));
  EXPECT_TRUE(snap.count("events/beta-2.seg"));
  EXPECT_EQ(pair_.r(0).generations(), pair_.r(1).generations());
}

TEST_F(ReplicaTest, SplitBrainOfOtherFilesWaitsForTheAdminAndQuarantinesTheLoser) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, AppendOp("conf/db", "v1"));
  pair_.Cut();
  pair_.Run();
  ASSERT_TRUE(pair_.r(1).Promote(false).ok());
  WriteSync(pair_, 0, WriteAtOp("conf/db", 0, {'A', '2'}));
  WriteSync(pair_, 1, WriteAtOp("conf/db", 0, {'B', '2'}));
  pair_.r(1).Demote([] {});
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(0).state(), ReplState::kStandAlone);
  EXPECT_EQ(pair_.r(1).state(), ReplState::kStandAlone);
  if (::testing::Test::HasFailure()) {
    for (int i = 0; i < 2; ++i)
      for (auto& l : pair_.node(i).log) std::cerr << pair_.node(i).name << ": " << l << "\n";
  }
  EXPECT_NE(pair_.r(0).StatusJson().value("split_brain", ""), "");
  // Nothing was discarded.
  EXPECT_EQ(Snapshot(fs_b_, Store(pair_, 1))["conf/db"], (std::vector<uint8_t>{'B', '2'}));
  ASSERT_TRUE(pair_.r(1).ResolveSplitBrain(true).ok());
  ASSERT_TRUE(pair_.r(0).Reconnect().ok());
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  ExpectIdentical();
  EXPECT_EQ(Snapshot(fs_b_, Store(pair_, 1))["conf/db"], (std::vector<uint8_t>{'A', '2'}));
  // The loser's copy is kept in quarantine, outside the store.
  std::string q = pair_.r(1).StatusJson().value("quarantine", "");
  ASSERT_NE(q, "");
  EXPECT_EQ(Snapshot(fs_b_, q)["conf/db"], (std::vector<uint8_t>{'B', '2'}));
}

TEST_F(ReplicaTest, VerifyFindsAndRepairsADifference) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  for (int f = 0; f < 3; ++f) WriteSync(pair_, 0, AppendOp("v/" + std::to_string(f), Bytes(3 << 20, 'v')));
  // Corrupt beta behind the volume's back: one byte, plus an extra file.
  {
    auto f = fs_b_.Open(Store(pair_, 1) + "/v/1", false);
    ASSERT_TRUE(f.ok());
    std::vector<uint8_t> one{0xff};
    ASSERT_TRUE((*f)->WriteAt(1 << 20, one).ok());
    auto g = fs_b_.Open(Store(pair_, 1) + "/stray", true);
    ASSERT_TRUE(g.ok());
  }
  ASSERT_TRUE(pair_.r(0).StartVerify().ok());
  pair_.Run();
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(0).counters().verify_differ, 1u);
  EXPECT_GE(pair_.r(0).counters().verify_chunks, 9u);
  ExpectIdentical();
}

TEST_F(ReplicaTest, GarbageAndForgedFramesAreRejectedWithoutApplyingAnything) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, AppendOp("f", "good"));
  // Flip a bit in every frame alpha sends from now on: beta must drop them.
  pair_.wire(0)->tap = [](std::vector<uint8_t>& b) { b[b.size() / 2] ^= 1; };
  bool acked = false;
  pair_.Write(0, AppendOp("f", "evil"), [&](const Status& st) { acked = st.ok(); });
  pair_.Run();
  EXPECT_EQ(pair_.r(1).counters().frames_rejected, 1u);
  EXPECT_EQ(Snapshot(fs_b_, Store(pair_, 1))["f"], (std::vector<uint8_t>{'g', 'o', 'o', 'd'}));
  // The write completed locally (peer away) and is resynced on reconnect.
  EXPECT_TRUE(acked);
  pair_.Connect();
  pair_.Run();
  ExpectIdentical();
}

// The recorded kHello passes (accept_id 0), but every later recorded frame
// carries the accept_id of the old connection, not the one beta drew now:
// refused by the codec before the nonce exchange could even fail.
TEST_F(ReplicaTest, AReplayedConnectionIsRefusedAfterTheGreeting) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Run();
  // Record every byte alpha sends on one whole connection that writes "v1".
  std::vector<std::vector<uint8_t>> recorded;
  pair_.SetNextTap(0, [&](std::vector<uint8_t>& b) { recorded.push_back(b); });
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, WriteAtOp("f", 0, {'v', '1'}));
  pair_.Cut();
  pair_.Run();
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, WriteAtOp("f", 0, {'v', '2'}));
  ASSERT_GT(recorded.size(), 3u);
  // Replay the recording to beta on a new (accepted) connection.
  pair_.Cut();
  pair_.Run();
  auto out = std::make_shared<testing::Wire>();
  pair_.r(1).Connected(std::make_unique<testing::PipeTransport>(out), false);
  for (auto& b : recorded) {
    if (!pair_.r(1).connected()) break;
    pair_.r(1).Received(b);
  }
  EXPECT_FALSE(pair_.r(1).connected()) << "the replayed connection was accepted";
  EXPECT_EQ(Snapshot(fs_b_, Store(pair_, 1))["f"], (std::vector<uint8_t>{'v', '2'}));
  EXPECT_NE(pair_.r(1).StatusJson().value("last_error", "").find("wrong_connection"),
            std::string::npos)
      << pair_.r(1).StatusJson().value("last_error", "");
}


// Frames held back by the test instead of delivered.
struct Captured {
  std::vector<std::vector<uint8_t>> frames;
};

TEST_F(ReplicaTest, OutOfOrderFramesAreRejectedWithoutApplyingAnything) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  auto cap = std::make_shared<Captured>();
  pair_.wire(0)->tap = [cap](std::vector<uint8_t>& b) {
    cap->frames.push_back(b);
    b.clear();  // held back
  };
  pair_.Write(0, AppendOp("o", "first"), [](const Status&) {});
  pair_.Write(0, AppendOp("o", "second"), [](const Status&) {});
  pair_.r(0).Flush();
  ASSERT_GE(cap->frames.size(), 3u);  // two writes and the sync marker
  pair_.r(1).Received(cap->frames[1]);  // the second write first
  EXPECT_FALSE(pair_.r(1).connected());
  EXPECT_EQ(pair_.r(1).counters().frames_rejected, 1u);
  EXPECT_FALSE(fs_b_.Exists(Store(pair_, 1) + "/o"));
}

TEST_F(ReplicaTest, ATruncatedFrameAppliesNothing) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  auto cap = std::make_shared<Captured>();
  pair_.wire(0)->tap = [cap](std::vector<uint8_t>& b) {
    cap->frames.push_back(b);
    b.clear();
  };
  pair_.Write(0, AppendOp("t", std::string(3000, 'x')), [](const Status&) {});
  pair_.r(0).Flush();
  ASSERT_FALSE(cap->frames.empty());
  std::vector<uint8_t> half(cap->frames[0].begin(), cap->frames[0].begin() + cap->frames[0].size() / 2);
  pair_.r(1).Received(half);
  EXPECT_TRUE(pair_.r(1).connected());  // waiting for the rest
  pair_.r(1).Disconnected("test: connection lost mid-frame");
  EXPECT_FALSE(fs_b_.Exists(Store(pair_, 1) + "/t"));
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
}

TEST_F(ReplicaTest, AForgedFrameWithTheWrongKeyIsRejected) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  // A frame signed with another key, in sequence, on this connection.
  Write w;
  w.op = WriteOp::kAppend;
  w.path = "forged";
  w.data = {'x'};
  w.length = 1;
  w.write_id = 99;
  auto cap = std::make_shared<Captured>();
  pair_.wire(0)->tap = [cap](std::vector<uint8_t>& b) {
    cap->frames.push_back(b);
    b.clear();
  };
  (void)pair_.r(0).StartVerify();  // any frame, to learn the next sequence number and id
  pair_.r(0).Tick();
  ASSERT_FALSE(cap->frames.empty());
  const auto& f0 = cap->frames[0];
  uint64_t seq = 0, conn = 0, accept = 0;
  for (int i = 7; i >= 0; --i) seq = (seq << 8) | f0[12 + static_cast<size_t>(i)];
  for (int i = 7; i >= 0; --i) conn = (conn << 8) | f0[20 + static_cast<size_t>(i)];
  for (int i = 7; i >= 0; --i) accept = (accept << 8) | f0[28 + static_cast<size_t>(i)];
  auto forged = EncodeFrame(Frame{FrameType::kWrite, 0, seq, conn, accept, w},
                            "another key, 32 bytes long......", Direction::kFromConnecting);
  pair_.r(1).Received(forged);
  EXPECT_FALSE(pair_.r(1).connected());
  EXPECT_FALSE(fs_b_.Exists(Store(pair_, 1) + "/forged"));
}


TEST_F(ReplicaTest, AfterAQuietMomentACrashOfThePrimaryResendsNothing) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  for (int f = 0; f < 4; ++f) WriteSync(pair_, 0, AppendOp("q/" + std::to_string(f), Bytes(2 << 20, 'q')));
  EXPECT_GT(pair_.r(0).changes().size(), 0u);  // the activity log holds the hot chunks
  pair_.clock().Advance(1000);                     // a second without writes
  pair_.Run();
  EXPECT_EQ(pair_.r(0).changes().size(), 0u);
  pair_.Kill(0);
  fs_a_.PowerLoss(11, os::FaultFileSystem::Mode::kDropUnsynced);
  ASSERT_TRUE(pair_.r(1).Promote(false).ok());
  WriteSync(pair_, 1, AppendOp("q/after", "x"));
  ASSERT_TRUE(pair_.Start(0).ok());
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  ExpectIdentical();
  uint64_t sent = pair_.wire(1) ? pair_.wire(1)->sync_payload_bytes : 0;
  EXPECT_LT(sent, 1000u) << "only the one-byte change should travel";
}

TEST_F(ReplicaTest, DiskErrorOnThePrimaryIsADiskFailure) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  fs_a_.FailAfter(Store(pair_, 0), 0, "Input/output error");
  bool failed = false;
  pair_.Write(0, AppendOp("x", "y"), [&](const Status& st) { failed = !st.ok(); });
  pair_.Run();
  EXPECT_TRUE(failed);
  if (::testing::Test::HasFailure()) {
    for (int i = 0; i < 2; ++i)
      for (auto& l : pair_.node(i).log) std::cerr << pair_.node(i).name << ": " << l << "\n";
  }
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kFailed);
  EXPECT_EQ(pair_.node(0).disk_failures, 1);
  EXPECT_FALSE(pair_.r(0).Promote(true).ok());
}

// A full store fails the append that does not fit, with a clear error, and
// nothing else: no disk failure (no failover), the connection stays, the
// part that landed is cut off again, and the stores stay identical.
TEST_F(ReplicaTest, AFullStoreFailsTheAppendNotTheDisk) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, AppendOp("f", "hello"));
  fs_a_.SetFull(true);
  Status result = Status::Ok();
  bool done = false;
  pair_.Write(0, AppendOp("f", " world"), [&](const Status& st) {
    done = true;
    result = st;
  });
  pair_.Run();
  ASSERT_TRUE(done);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.message().find("no space left on the store"), std::string::npos)
      << result.message();
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair_.node(0).disk_failures, 0);
  EXPECT_EQ(pair_.r(0).StatusJson()["counters"].value("writes_no_space", 0), 1);
  fs_a_.ClearFaults();
  WriteSync(pair_, 0, AppendOp("f", "!"));
  EXPECT_EQ(pair_.r(0).state(), ReplState::kEstablished);
  EXPECT_EQ(Snapshot(fs_a_, Store(pair_, 0))["f"],
            (std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', '!'}));
  EXPECT_EQ(Snapshot(fs_a_, Store(pair_, 0)), Snapshot(fs_b_, Store(pair_, 1)));
}

TEST_F(ReplicaTest, StateSurvivesRestartWithoutFullResync) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  WriteSync(pair_, 0, AppendOp("big", Bytes(8 << 20, 'z')));
  Generations g = pair_.r(1).generations();
  pair_.Kill(1);
  ASSERT_TRUE(pair_.Start(1).ok());
  EXPECT_EQ(pair_.r(1).generations(), g);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  uint64_t sent = pair_.wire(0) ? pair_.wire(0)->sync_payload_bytes : 0;
  EXPECT_LT(sent, 3u << 20);
  ExpectIdentical();
}


// ---- ha invalidate (DRBD's invalidate): a full sync replaces the secondary.

uint64_t StoreBytes(Pair& p, os::FileSystem& fs, int i) {
  uint64_t n = 0;
  for (auto& [path, data] : Snapshot(fs, Store(p, i))) n += data.size();
  return n;
}

class InvalidateTest : public ReplicaTest {
 protected:
  // A pair in sync holding 4 files of 4 MiB.
  void Fill() {
    StartBoth();
    ASSERT_TRUE(pair_.r(0).Promote(false).ok());
    pair_.Connect();
    pair_.Run();
    for (int f = 0; f < 4; ++f) WriteSync(pair_, 0, AppendOp("s/" + std::to_string(f), Bytes(4 << 20, 'k')));
    ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
    ExpectIdentical();
  }
  // Damage on the secondary that no change set knows about (bit rot, an
  // operator's mistake): only a full sync repairs it.
  void DamageSecondary() {
    auto f = fs_b_.Open(Store(pair_, 1) + "/s/2", false);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(1 << 20, std::vector<uint8_t>(4096, 0xEE)).ok());
    ASSERT_TRUE((*f)->Sync().ok());
    auto extra = fs_b_.Open(Store(pair_, 1) + "/stray", true);
    ASSERT_TRUE(extra.ok());
    ASSERT_TRUE((*extra)->WriteAt(0, std::vector<uint8_t>(10, 1)).ok());
  }
};

TEST_F(InvalidateTest, TheSecondaryIsReplacedByAFullSyncFromThePeer) {
  Fill();
  DamageSecondary();
  const uint64_t store_bytes = StoreBytes(pair_, fs_a_, 0);
  ASSERT_TRUE(pair_.r(1).Invalidate().ok());
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kInconsistent);
  EXPECT_TRUE(pair_.r(1).full_sync_wanted());
  EXPECT_FALSE(pair_.r(1).connected()) << "the connection is dropped to re-decide";
  EXPECT_FALSE(pair_.r(1).Promote(false).ok()) << "an invalidated replica is not UpToDate";
  pair_.Run();
  pair_.Connect();
  pair_.Run(3);
  EXPECT_EQ(pair_.r(1).state(), ReplState::kSyncTarget);
  EXPECT_TRUE(pair_.r(1).StatusJson()["sync"]["full"].get<bool>());
  pair_.Run();
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_FALSE(pair_.r(1).full_sync_wanted());
  EXPECT_EQ(pair_.r(0).generations(), pair_.r(1).generations());
  EXPECT_GE(pair_.wire(0)->sync_payload_bytes, store_bytes) << "not a full sync";
  ExpectIdentical();
}

TEST_F(InvalidateTest, IsRefusedOnThePrimaryAndOnTheSyncSource) {
  Fill();
  Status st = pair_.r(0).Invalidate();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("primary"), std::string::npos) << st.message();
  EXPECT_EQ(pair_.r(0).disk(), DiskState::kUpToDate);
  EXPECT_FALSE(pair_.r(0).full_sync_wanted());
  // The primary steps down while the secondary is away; back, the old
  // primary is the sync source of the changes it made: its peer is not
  // UpToDate, so it must not be invalidated.
  pair_.Cut();
  WriteSync(pair_, 0, AppendOp("s/0", Bytes(1 << 20, 'q')));
  bool demoted = false;
  pair_.r(0).Demote([&] { demoted = true; });
  ASSERT_TRUE(demoted);
  pair_.Connect();
  pair_.Run(1);
  ASSERT_EQ(pair_.r(0).state(), ReplState::kSyncSource);
  st = pair_.r(0).Invalidate();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not UpToDate"), std::string::npos) << st.message();
  pair_.Run();
  ExpectIdentical();
}

TEST_F(InvalidateTest, IsRefusedWhenThePeerHasNoData) {
  StartBoth();  // neither was ever promoted: no data anywhere
  pair_.Connect();
  pair_.Run();
  ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  Status st = pair_.r(1).Invalidate();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no data"), std::string::npos) << st.message();
  EXPECT_FALSE(pair_.r(1).full_sync_wanted());
}

TEST_F(InvalidateTest, ARestartMidSyncStillDoesAFullSync) {
  Fill();
  DamageSecondary();
  const uint64_t store_bytes = StoreBytes(pair_, fs_a_, 0);
  ASSERT_TRUE(pair_.r(1).Invalidate().ok());
  pair_.Run();
  pair_.Connect();
  pair_.Run(3);
  ASSERT_EQ(pair_.r(1).state(), ReplState::kSyncTarget);
  ASSERT_LT(pair_.r(1).counters().sync_bytes_received, store_bytes) << "the sync already ended";
  // The secondary's host loses power mid-sync; on restart the replica is
  // still Inconsistent and the sync is full again: a partial one (the
  // primary's change set) would leave the damage in place.
  pair_.Kill(1);
  fs_b_.PowerLoss(5, os::FaultFileSystem::Mode::kTearUnsynced);
  pair_.Run();
  ASSERT_TRUE(pair_.Start(1).ok());
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kInconsistent);
  EXPECT_TRUE(pair_.r(1).full_sync_wanted());
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_GE(pair_.wire(0)->sync_payload_bytes, store_bytes) << "not a full sync";
  ExpectIdentical();
}

TEST_F(InvalidateTest, AForcedTakeoverMakesTheInvalidatedCopyTheDataOfRecord) {
  Fill();
  ASSERT_TRUE(pair_.r(1).Invalidate().ok());
  pair_.Kill(0);
  pair_.Run();
  EXPECT_FALSE(pair_.r(1).Promote(false).ok());
  ASSERT_TRUE(pair_.r(1).Promote(true).ok());
  EXPECT_FALSE(pair_.r(1).full_sync_wanted());
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_NE(pair_.r(1).generations().current, kNoGeneration);
}

// ---- Status at the start of a sync.

// Regression: the state change published the status before the progress of
// the previous sync was reset, so `ha status` showed its numbers.
TEST_F(ReplicaTest, StatusAtTheStartOfASyncShowsNoProgressFromTheLastOne) {
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  WriteSync(pair_, 0, AppendOp("a", Bytes(2 << 20, 'a')));
  pair_.Connect();
  pair_.Run();  // the initial full sync: 2 MiB
  ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  pair_.Cut();
  WriteSync(pair_, 0, AppendOp("b", "x"));
  std::vector<uint64_t> seen[2];
  for (int i = 0; i < 2; ++i) {
    pair_.r(i).SetOnChange([this, i, &seen] {
      nlohmann::json j = pair_.r(i).StatusJson();
      if (j.contains("sync")) seen[i].push_back(j["sync"]["done_bytes"].get<uint64_t>());
    });
  }
  pair_.Connect();
  pair_.Run();
  for (int i = 0; i < 2; ++i) {
    ASSERT_FALSE(seen[i].empty()) << "node " << i << " never published a sync status";
    EXPECT_EQ(seen[i].front(), 0u) << "node " << i << " showed the last sync's progress";
    pair_.r(i).SetOnChange(nullptr);
  }
}

// ---- Group commit and the activity log.

TEST_F(ReplicaTest, AppendsRecordChunksAheadSoTheJournalIsRarelySynced) {
  for (int i = 0; i < 2; ++i) pair_.opts(i).hot_chunks = 256;
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  const int kWriters = 16, kRounds = 40;
  uint64_t journal_before = pair_.r(0).changes().journal_syncs();
  uint64_t commits_before = pair_.r(0).counters().commits;
  for (int round = 0; round < kRounds; ++round) {
    int acked = 0;
    for (int w = 0; w < kWriters; ++w) {
      pair_.Write(0, AppendOp("w/" + std::to_string(w), Bytes(64 * 1024, 'w')),
                  [&](const Status& st) { acked += st.ok(); });
    }
    pair_.Run();
    ASSERT_EQ(acked, kWriters);
  }
  uint64_t journal_syncs = pair_.r(0).changes().journal_syncs() - journal_before;
  uint64_t commits = pair_.r(0).counters().commits - commits_before;
  EXPECT_EQ(commits, static_cast<uint64_t>(kRounds));
  // Every round writes a new 64 KiB chunk of each file: without recording
  // ahead, every commit would sync the journal.
  EXPECT_LE(journal_syncs, commits / 4) << journal_syncs << " journal syncs for " << commits << " commits";
  // What the primary wrote last is still recorded: a crash now resends it.
  auto all = pair_.r(0).changes().All();
  for (int w = 0; w < kWriters; ++w) {
    const uint64_t last_chunk = (kRounds * 64 * 1024 - 1) / kChunkBytes;
    EXPECT_TRUE(all["w/" + std::to_string(w)].count(last_chunk)) << w;
  }
  ExpectIdentical();
}

// Regression: only the files of the batch that needed a journal append
// were topped up, so with 16 writers spread over batches of 8 (the
// daemon's pattern) nearly every batch had a file that had run out.
TEST_F(ReplicaTest, AppendsSpreadOverBatchesStillRecordAheadTogether) {
  for (int i = 0; i < 2; ++i) pair_.opts(i).hot_chunks = 256;
  StartBoth();
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  const int kWriters = 16, kRounds = 80;
  uint64_t journal_before = pair_.r(0).changes().journal_syncs();
  uint64_t commits_before = pair_.r(0).counters().commits;
  for (int round = 0; round < kRounds; ++round) {
    int acked = 0;
    for (int w = round % 2; w < kWriters; w += 2) {  // half of the writers per batch
      pair_.Write(0, AppendOp("w/" + std::to_string(w), Bytes(64 * 1024, 'v')),
                  [&](const Status& st) { acked += st.ok(); });
    }
    pair_.Run();
    ASSERT_EQ(acked, kWriters / 2);
  }
  uint64_t journal_syncs = pair_.r(0).changes().journal_syncs() - journal_before;
  uint64_t commits = pair_.r(0).counters().commits - commits_before;
  EXPECT_EQ(commits, static_cast<uint64_t>(kRounds));
  EXPECT_LE(journal_syncs, commits / 4) << journal_syncs << " journal syncs for " << commits << " commits";
  ExpectIdentical();
}

TEST(IoPoolTest, RunAllRunsEveryJobSideBySideAndReturnsTheFirstError) {
  IoPool pool(4);
  std::atomic<int> running{0}, most{0}, ran{0};
  std::vector<std::function<Status()>> jobs;
  for (int i = 0; i < 12; ++i) {
    jobs.push_back([&, i] {
      int now = ++running;
      int m = most.load();
      while (now > m && !most.compare_exchange_weak(m, now)) {}
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      --running;
      ++ran;
      return i == 5 ? Status::Error("job 5 failed") : i == 9 ? Status::Error("job 9 failed") : Status::Ok();
    });
  }
  Status st = pool.RunAll(std::move(jobs));
  EXPECT_EQ(ran.load(), 12);
  EXPECT_EQ(running.load(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "job 5 failed");
  EXPECT_GT(most.load(), 1) << "the jobs ran one after the other";
  EXPECT_LE(most.load(), 4);
  EXPECT_TRUE(pool.RunAll({}).ok());
}

TEST(IoPoolTest, PostRunsInTheBackgroundAndIsBounded) {
  // Declared before the pool, so they outlive its worker.
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  IoPool pool(2);
  ASSERT_TRUE(pool.Post([&started, gate] {
    started.set_value();
    gate.wait();
  }));
  started.get_future().wait();  // the only worker is busy from now on
  size_t accepted = 0;
  for (size_t i = 0; i < IoPool::kBackgroundQueueMax + 10; ++i) accepted += pool.Post([] {});
  EXPECT_EQ(accepted, IoPool::kBackgroundQueueMax);
  release.set_value();
  IoPool single(1);
  EXPECT_FALSE(single.Post([] {})) << "no worker to run it";
}

// The daemon's sync target syncs each file early, on the I/O pool, as soon
// as the sync moves on to the next one, and its final commit waits for those
// syncs: everything it then reports durable (UpToDate, the adopted
// generations) survives a power loss right after the sync.
TEST(ReplicaPoolTest, AResyncWithEarlySyncsIsDurableWhenItEnds) {
  os::FaultFileSystem fs_a, fs_b;
  Pair pair(fs_a, fs_b, "/r");
  IoPool pool(4);
  pair.opts(1).io_pool = &pool;
  ASSERT_TRUE(pair.Start(0).ok());
  ASSERT_TRUE(pair.Start(1).ok());
  ASSERT_TRUE(pair.r(0).Promote(false).ok());
  pair.Connect();
  pair.Run();
  constexpr int kFiles = 12;
  for (int f = 0; f < kFiles; ++f) WriteSync(pair, 0, AppendOp("f/" + std::to_string(f), Bytes(512 << 10, 'a')));
  pair.Cut();
  for (int f = 0; f < kFiles; ++f) {
    for (uint64_t c : {1u, 5u}) {
      WriteSync(pair, 0, WriteAtOp("f/" + std::to_string(f), c * kChunkBytes, std::vector<uint8_t>(kChunkBytes, 'z')));
    }
  }
  pair.Connect();
  pair.Run();
  ASSERT_EQ(pair.r(1).state(), ReplState::kEstablished);
  ASSERT_EQ(pair.r(1).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair.r(1).counters().sync_bytes_received, 2u * kFiles * kChunkBytes);
  const Generations g = pair.r(1).generations();
  pair.Kill(1);
  fs_b.PowerLoss(11, os::FaultFileSystem::Mode::kDropUnsynced);
  ASSERT_TRUE(pair.Start(1).ok());
  EXPECT_EQ(pair.r(1).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair.r(1).generations(), g);
  EXPECT_TRUE(Snapshot(fs_a, Store(pair, 0)) == Snapshot(fs_b, Store(pair, 1)));
  // And the pair is in step: nothing to resend.
  pair.Connect();
  pair.Run();
  EXPECT_EQ(pair.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(pair.r(1).counters().sync_bytes_received, 0u);
}

// The daemon's configuration: real files, the group commit's fsyncs on a
// pool, write-back hints during a sync.
TEST(ReplicaRealDiskTest, GroupCommitOnAnIoPoolAndASyncWithWritebackHints) {
  TempDir dir("repl-pool");
  IoPool pool(4);
  os::FileSystem& fs = os::RealFileSystem();
  Pair pair(fs, fs, dir.path());
  std::atomic<uint64_t> hinted{0};
  for (int i = 0; i < 2; ++i) {
    pair.opts(i).io_pool = &pool;
    pair.opts(i).start_writeback = [&hinted](const std::string& path, uint64_t, uint64_t length) {
      EXPECT_EQ(path.rfind("/", 0), 0u) << "not a full path: " << path;
      hinted += length;
    };
  }
  ASSERT_TRUE(pair.Start(0).ok());
  ASSERT_TRUE(pair.Start(1).ok());
  ASSERT_TRUE(pair.r(0).Promote(false).ok());
  for (int f = 0; f < 3; ++f) WriteSync(pair, 0, AppendOp("pre/" + std::to_string(f), Bytes(5 << 20, 'p')));
  pair.Connect();
  pair.Run();
  ASSERT_EQ(pair.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(hinted.load(), 3u * (5 << 20)) << "every byte received by the sync target is hinted";
  int acked = 0;
  for (int w = 0; w < 16; ++w) {
    pair.Write(0, AppendOp("w/" + std::to_string(w), Bytes(4096, 'c')), [&](const Status& st) { acked += st.ok(); });
  }
  pair.Run();
  EXPECT_EQ(acked, 16);
  auto a = Snapshot(fs, pair.opts(0).store_dir);
  auto b = Snapshot(fs, pair.opts(1).store_dir);
  EXPECT_EQ(a.size(), 19u);
  EXPECT_TRUE(a == b);

  // A resync of scattered chunks gives no hints (one pool job per chunk
  // would cost more than it saves; the final commit flushes them).
  pair.Cut();
  uint64_t before = hinted.load();
  for (int f = 0; f < 3; ++f) {
    WriteSync(pair, 0, WriteAtOp("pre/" + std::to_string(f), uint64_t{1} << 20, std::vector<uint8_t>(64 << 10, 'x')));
  }
  pair.Connect();
  pair.Run();
  ASSERT_EQ(pair.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(hinted.load(), before);
  EXPECT_TRUE(Snapshot(fs, pair.opts(0).store_dir) == Snapshot(fs, pair.opts(1).store_dir));
}

}  // namespace
}  // namespace tandem::repl
