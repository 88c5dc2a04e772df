#include "repl/meta_slots.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "os/fault_fs.h"
#include "repl/pair_harness.h"
#include "repl/replica.h"

namespace tandem::repl {
namespace {

using os::FaultFileSystem;

constexpr char kDir[] = "/m";
constexpr char kPath[] = "/m/meta.slots";
constexpr char kLegacy[] = "/m/meta.json";

std::vector<uint8_t> B(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string S(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

class MetaSlotsTest : public ::testing::Test {
 protected:
  FaultFileSystem fs_;
  void SetUp() override {
    ASSERT_TRUE(fs_.MakeDirs(kDir).ok());
    ASSERT_TRUE(fs_.SyncDir("/").ok());
  }
  // Loads with a fresh object, as a restarted process does.
  std::string LoadFresh() {
    MetaSlots m(fs_, kPath, kLegacy);
    auto r = m.Load();
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok() || !r->has_value()) return "<none>";
    return S((*r)->payload);
  }
  // Overwrites part of slot `slot` directly (a torn or rotten write).
  void Scribble(int slot, size_t offset, const std::vector<uint8_t>& bytes) {
    auto f = fs_.Open(kPath, false);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(slot * MetaSlots::kSlotBytes + offset, bytes).ok());
    ASSERT_TRUE((*f)->Sync().ok());
  }
};

TEST(MetaSlotCodec, RoundTripsAndRejectsEveryDamage) {
  auto slot = EncodeMetaSlot(42, B("{\"x\": 1}"));
  ASSERT_EQ(slot.size(), MetaSlots::kSlotBytes);
  auto d = DecodeMetaSlot(slot);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->first, 42u);
  EXPECT_EQ(S(d->second), "{\"x\": 1}");
  // Any flipped byte of header, payload or checksum invalidates the slot.
  for (size_t i : {size_t{0}, size_t{9}, size_t{13}, size_t{17}, size_t{24}, size_t{31}, size_t{33}}) {
    auto bad = slot;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DecodeMetaSlot(bad).has_value()) << "byte " << i;
  }
  // A slot cut short (a torn write that kept a prefix) is invalid.
  EXPECT_FALSE(DecodeMetaSlot(std::span<const uint8_t>(slot).first(30)).has_value());
  EXPECT_FALSE(DecodeMetaSlot(std::vector<uint8_t>(MetaSlots::kSlotBytes, 0)).has_value());
  // Sequence 0 is never written.
  EXPECT_FALSE(DecodeMetaSlot(EncodeMetaSlot(0, B("x"))).has_value());
}

TEST_F(MetaSlotsTest, EachWriteIsOneSyncInPlaceAndLoadTakesTheNewest) {
  MetaSlots m(fs_, kPath, kLegacy);
  auto r = m.Load();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());  // a new replica
  ASSERT_TRUE(m.Write(B("one")).ok());  // creates the file (atomically)
  EXPECT_EQ(fs_.Contents(kPath)->size(), 2 * MetaSlots::kSlotBytes);
  for (int i = 2; i <= 5; ++i) {
    uint64_t syncs = fs_.syncs(), dir_syncs = fs_.dir_syncs();
    ASSERT_TRUE(m.Write(B("rec" + std::to_string(i))).ok());
    EXPECT_EQ(fs_.syncs() - syncs, 1u) << "write " << i;
    EXPECT_EQ(fs_.dir_syncs() - dir_syncs, 0u) << "write " << i;
    EXPECT_EQ(m.sequence(), static_cast<uint64_t>(i));
    EXPECT_EQ(fs_.Contents(kPath)->size(), 2 * MetaSlots::kSlotBytes);
    EXPECT_EQ(LoadFresh(), "rec" + std::to_string(i));
  }
  // Durable: a power loss right after keeps the last record.
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(LoadFresh(), "rec5");
}

TEST_F(MetaSlotsTest, ADamagedNewestSlotFallsBackToTheOther) {
  MetaSlots m(fs_, kPath, kLegacy);
  ASSERT_TRUE(m.Load().ok());
  ASSERT_TRUE(m.Write(B("first")).ok());   // slot 0, sequence 1
  ASSERT_TRUE(m.Write(B("second")).ok());  // slot 1, sequence 2
  EXPECT_EQ(LoadFresh(), "second");
  // Slot 1 torn: its header and the start of a different record only.
  auto other = EncodeMetaSlot(3, B("third, never finished"));
  Scribble(1, 0, std::vector<uint8_t>(other.begin(), other.begin() + 26));
  EXPECT_EQ(LoadFresh(), "first");
  // Slot 0 rotten in its payload instead, slot 1 good again.
  Scribble(1, 0, EncodeMetaSlot(2, B("second")));
  Scribble(0, MetaSlots::kHeaderBytes + 1, {0xFF});
  EXPECT_EQ(LoadFresh(), "second");
  // Both bad: an error, not a new replica.
  Scribble(1, 5, {0x00});
  MetaSlots again(fs_, kPath, kLegacy);
  auto r = again.Load();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no valid slot"), std::string::npos) << r.status().message();
}

TEST_F(MetaSlotsTest, AFailedWriteNeverTargetsTheLastDurableSlot) {
  MetaSlots m(fs_, kPath, kLegacy);
  ASSERT_TRUE(m.Load().ok());
  ASSERT_TRUE(m.Write(B("a")).ok());  // slot 0
  ASSERT_TRUE(m.Write(B("b")).ok());  // slot 1: the newest durable record
  const auto slot1 = EncodeMetaSlot(2, B("b"));
  // The pwrite of "c" (to slot 0) lands, its fdatasync fails.
  fs_.FailAfter(kPath, 1, "Input/output error");
  EXPECT_FALSE(m.Write(B("c")).ok());
  fs_.ClearFaults();
  // The retry goes to slot 0 again: slot 1 still holds "b".
  ASSERT_TRUE(m.Write(B("d")).ok());
  auto c = fs_.Contents(kPath);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(std::equal(slot1.begin(), slot1.end(), c->begin() + MetaSlots::kSlotBytes));
  EXPECT_EQ(LoadFresh(), "d");
  ASSERT_TRUE(m.Write(B("e")).ok());  // and then slot 1
  EXPECT_EQ(LoadFresh(), "e");
}

TEST_F(MetaSlotsTest, APowerLossTearingAWriteLeavesTheOldOrTheNewRecord) {
  // A power loss after the pwrite, before its fdatasync finished: the
  // fault FS keeps nothing, all or a prefix of the write, per seed.
  int olds = 0, news = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    FaultFileSystem fs;
    ASSERT_TRUE(fs.MakeDirs(kDir).ok());
    ASSERT_TRUE(fs.SyncDir("/").ok());
    MetaSlots m(fs, kPath, kLegacy);
    ASSERT_TRUE(m.Load().ok());
    for (int i = 0; i < static_cast<int>(seed % 4) + 1; ++i) ASSERT_TRUE(m.Write(B("old")).ok());
    std::string fresh(200 + seed * 17 % 3000, static_cast<char>('a' + seed % 26));
    fs.FailAfter(kPath, 1, "Input/output error");
    EXPECT_FALSE(m.Write(B(fresh)).ok());
    fs.ClearFaults();
    fs.PowerLoss(seed, FaultFileSystem::Mode::kTearUnsynced);
    MetaSlots after(fs, kPath, kLegacy);
    auto r = after.Load();
    ASSERT_TRUE(r.ok()) << "seed " << seed << ": " << r.status().message();
    ASSERT_TRUE(r->has_value()) << "seed " << seed;
    std::string got = S((*r)->payload);
    if (got == "old") {
      olds++;
    } else {
      EXPECT_EQ(got, fresh) << "seed " << seed;
      news++;
    }
  }
  // Both outcomes happen (so the torn case was really exercised).
  EXPECT_GT(olds, 0);
  EXPECT_GT(news, 0);
}

TEST_F(MetaSlotsTest, TheOldFormatLoadsAndTheFirstWriteReplacesIt) {
  ASSERT_TRUE(os::WriteWholeFileAtomic(fs_, kLegacy, B("{\"legacy\": true}\n")).ok());
  MetaSlots m(fs_, kPath, kLegacy);
  auto r = m.Load();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE((*r)->legacy);
  EXPECT_EQ(S((*r)->payload), "{\"legacy\": true}\n");
  EXPECT_FALSE(fs_.Exists(kPath));
  ASSERT_TRUE(m.Write(B("converted")).ok());
  EXPECT_TRUE(fs_.Exists(kPath));
  EXPECT_FALSE(fs_.Exists(kLegacy));
  // Both changes are durable.
  fs_.PowerLoss(2, FaultFileSystem::Mode::kTearUnsynced);
  EXPECT_EQ(LoadFresh(), "converted");
  EXPECT_FALSE(fs_.Exists(kLegacy));
}

TEST_F(MetaSlotsTest, ALeftoverOldFileIsIgnoredAndRemovedWhenTheSlotFileExists) {
  {
    MetaSlots m(fs_, kPath, kLegacy);
    ASSERT_TRUE(m.Load().ok());
    ASSERT_TRUE(m.Write(B("new")).ok());
  }
  // As after a crash between creating the slot file and removing the old.
  ASSERT_TRUE(os::WriteWholeFileAtomic(fs_, kLegacy, B("{\"stale\": true}")).ok());
  EXPECT_EQ(LoadFresh(), "new");
  EXPECT_FALSE(fs_.Exists(kLegacy));
}

TEST_F(MetaSlotsTest, ARecordTooLargeForASlotIsRefusedAndChangesNothing) {
  MetaSlots m(fs_, kPath, kLegacy);
  ASSERT_TRUE(m.Load().ok());
  ASSERT_TRUE(m.Write(B("small")).ok());
  Status st = m.Write(std::vector<uint8_t>(MetaSlots::kPayloadBytesMax + 1, 'x'));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("fit in a slot"), std::string::npos) << st.message();
  EXPECT_EQ(LoadFresh(), "small");
  ASSERT_TRUE(m.Write(std::vector<uint8_t>(MetaSlots::kPayloadBytesMax, 'y')).ok());
  EXPECT_EQ(LoadFresh(), std::string(MetaSlots::kPayloadBytesMax, 'y'));
}

// ---- The replica's use of it.

class ReplicaMetaTest : public ::testing::Test {
 protected:
  FaultFileSystem fs_a_, fs_b_;
  testing::Pair pair_{fs_a_, fs_b_, "/r"};
  std::string Meta(int i) { return pair_.opts(i).meta_dir; }
};

TEST_F(ReplicaMetaTest, AReplicaWithOldFormatMetadataKeepsItsStateAndIsRewritten) {
  ASSERT_TRUE(pair_.Start(0).ok());
  ASSERT_TRUE(pair_.Start(1).ok());
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  const Generations g = pair_.r(1).generations();
  ASSERT_NE(g.current, kNoGeneration);
  pair_.Kill(1);
  // What an older version left: meta.json only (its JSON is the payload).
  MetaSlots cur(fs_b_, Meta(1) + "/meta.slots", "");
  auto rec = cur.Load();
  ASSERT_TRUE(rec.ok() && rec->has_value());
  nlohmann::json j = nlohmann::json::parse(S((*rec)->payload));
  EXPECT_EQ(j["disk"], "UpToDate");
  ASSERT_TRUE(os::WriteWholeFileAtomic(fs_b_, Meta(1) + "/meta.json", B(j.dump(2))).ok());
  ASSERT_TRUE(fs_b_.Remove(Meta(1) + "/meta.slots").ok());
  ASSERT_TRUE(fs_b_.SyncDir(Meta(1)).ok());
  ASSERT_TRUE(pair_.Start(1).ok());
  EXPECT_EQ(pair_.r(1).generations(), g);
  EXPECT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_TRUE(fs_b_.Exists(Meta(1) + "/meta.slots"));
  EXPECT_FALSE(fs_b_.Exists(Meta(1) + "/meta.json"));
  // Durably so, and the pair reconnects without a sync.
  pair_.Kill(1);
  fs_b_.PowerLoss(4, FaultFileSystem::Mode::kDropUnsynced);
  ASSERT_TRUE(pair_.Start(1).ok());
  EXPECT_EQ(pair_.r(1).generations(), g);
  pair_.Connect();
  pair_.Run();
  EXPECT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  EXPECT_EQ(pair_.r(1).counters().sync_bytes_received, 0u);
}

TEST_F(ReplicaMetaTest, DamagedOldFormatMetadataIsRefused) {
  ASSERT_TRUE(pair_.Start(1).ok());
  pair_.Kill(1);
  ASSERT_TRUE(fs_b_.Remove(Meta(1) + "/meta.slots").ok());
  ASSERT_TRUE(os::WriteWholeFileAtomic(fs_b_, Meta(1) + "/meta.json", B("{\"version\": 1, \"current\"")).ok());
  Status st = pair_.Start(1);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("meta.json"), std::string::npos) << st.message();
  EXPECT_TRUE(fs_b_.Exists(Meta(1) + "/meta.json"));  // left for the admin
}

// A resync of changed chunks persists Inconsistent at its start and the new
// state at its end on both hosts with in-place metadata writes: no
// temporary file, rename or directory fsync in the whole sync.
TEST_F(ReplicaMetaTest, AResyncSyncsNoDirectory) {
  ASSERT_TRUE(pair_.Start(0).ok());
  ASSERT_TRUE(pair_.Start(1).ok());
  ASSERT_TRUE(pair_.r(0).Promote(false).ok());
  pair_.Connect();
  pair_.Run();
  for (int f = 0; f < 4; ++f) {
    Write w = testing::AppendOp("s/" + std::to_string(f), std::string(1 << 20, 'a'));
    bool ok = false;
    pair_.Write(0, std::move(w), [&](const Status& st) { ok = st.ok(); });
    pair_.Run();
    ASSERT_TRUE(ok);
  }
  pair_.Cut();
  pair_.Run();
  for (int f = 0; f < 4; ++f) {
    bool ok = false;
    pair_.Write(0, testing::WriteAtOp("s/" + std::to_string(f), 65536, std::vector<uint8_t>(65536, 9)),
                [&](const Status& st) { ok = st.ok(); });
    pair_.Run();
    ASSERT_TRUE(ok);
  }
  const uint64_t dirs_a = fs_a_.dir_syncs(), dirs_b = fs_b_.dir_syncs();
  const uint64_t syncs_a = fs_a_.syncs(), syncs_b = fs_b_.syncs();
  pair_.Connect();
  pair_.Run();
  ASSERT_EQ(pair_.r(1).state(), ReplState::kEstablished);
  ASSERT_EQ(pair_.r(1).disk(), DiskState::kUpToDate);
  EXPECT_EQ(pair_.r(0).counters().sync_bytes_sent, 4u * 65536);
  EXPECT_EQ(fs_a_.dir_syncs() - dirs_a, 0u);
  EXPECT_EQ(fs_b_.dir_syncs() - dirs_b, 0u);
  // Source: its store commit (nothing dirty), journal and metadata; target:
  // Inconsistent, the 4 files, journal and metadata.
  EXPECT_LE(fs_a_.syncs() - syncs_a, 2u);
  EXPECT_LE(fs_b_.syncs() - syncs_b, 7u);
}

}  // namespace
}  // namespace tandem::repl
