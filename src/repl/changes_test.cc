#include "repl/changes.h"

#include <gtest/gtest.h>

#include <set>

#include "os/fault_fs.h"

namespace tandem::repl {
namespace {

using os::FaultFileSystem;

constexpr char kJournal[] = "/m/changes.log";

std::vector<ChunkRef> Refs(const std::string& path, uint64_t from, uint64_t n) {
  std::vector<ChunkRef> out;
  for (uint64_t c = from; c < from + n; ++c) out.push_back(ChunkRef{path, c});
  return out;
}

std::set<ChunkRef> Loaded(FaultFileSystem& fs) {
  ChangeSet set(fs, kJournal, 64);
  EXPECT_TRUE(set.Load().ok());
  std::set<ChunkRef> out;
  for (const auto& [path, chunks] : set.All()) {
    for (uint64_t c : chunks) out.insert(ChunkRef{path, c});
  }
  return out;
}

class ChangeJournalTest : public ::testing::Test {
 protected:
  FaultFileSystem fs_;
  void SetUp() override {
    ASSERT_TRUE(fs_.MakeDirs("/m").ok());
    ASSERT_TRUE(fs_.SyncDir("/").ok());
  }
  uint64_t JournalSize() { return fs_.FileSize(kJournal).value().value_or(0); }
};

// A sync's end empties the journal in place: zeros over its records, no
// truncation (so no file-system journal commit), and the next records are
// written from the start again.
TEST_F(ChangeJournalTest, AnEmptiedJournalIsZeroedInPlaceAndWrittenFromTheStartAgain) {
  ChangeSet set(fs_, kJournal, 64);
  ASSERT_TRUE(set.Load().ok());
  ASSERT_TRUE(set.Record(Refs("a", 0, 10), 1, /*pin=*/true).ok());
  ASSERT_TRUE(set.Record(Refs("bb", 0, 5), 2, /*pin=*/true).ok());
  const uint64_t size = JournalSize();
  ASSERT_GT(size, 0u);
  ASSERT_TRUE(set.SyncFinished(2).ok());
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(JournalSize(), size) << "not truncated";
  auto data = fs_.Contents(kJournal);
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(std::count(data->begin(), data->end(), uint8_t{0}), static_cast<std::ptrdiff_t>(size));
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_TRUE(Loaded(fs_).empty());

  ChangeSet again(fs_, kJournal, 64);
  ASSERT_TRUE(again.Load().ok());
  ASSERT_TRUE(again.Record(Refs("c", 7, 2), 3, /*pin=*/true).ok());
  ASSERT_TRUE(again.SyncFinished(0).ok());  // nothing covered: both stay
  ASSERT_TRUE(again.Record(Refs("d", 1, 1), 4, /*pin=*/true).ok());
  fs_.PowerLoss(2, FaultFileSystem::Mode::kDropUnsynced);
  std::set<ChunkRef> want{{"c", 7}, {"c", 8}, {"d", 1}};
  EXPECT_EQ(Loaded(fs_), want);
}

// Emptying a journal that is durably empty already (a secondary's, which
// records nothing) costs no I/O at all.
TEST_F(ChangeJournalTest, EmptyingAnEmptyJournalSyncsNothing) {
  ChangeSet set(fs_, kJournal, 64);
  ASSERT_TRUE(set.Load().ok());
  const uint64_t syncs = fs_.syncs(), journal_syncs = set.journal_syncs();
  ASSERT_TRUE(set.Clear().ok());
  ASSERT_TRUE(set.SyncFinished(5).ok());
  EXPECT_EQ(fs_.syncs(), syncs);
  EXPECT_EQ(set.journal_syncs(), journal_syncs);
  // Once something was appended, it is emptied for real.
  ASSERT_TRUE(set.Record(Refs("a", 0, 1), 1, /*pin=*/true).ok());
  ASSERT_TRUE(set.Clear().ok());
  EXPECT_GT(set.journal_syncs(), journal_syncs + 1);
  fs_.PowerLoss(3, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_TRUE(Loaded(fs_).empty());
}

// A power loss while the zeros are being written keeps the old records, a
// prefix of them or none: never a record that was not there.
TEST_F(ChangeJournalTest, ATornEmptyingKeepsOnlyOldRecords) {
  std::set<ChunkRef> old;
  for (const auto& r : Refs("a", 0, 20)) old.insert(r);
  for (const auto& r : Refs("longer/name", 3, 20)) old.insert(r);
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    FaultFileSystem fs;
    ASSERT_TRUE(fs.MakeDirs("/m").ok());
    ASSERT_TRUE(fs.SyncDir("/").ok());
    ChangeSet set(fs, kJournal, 64);
    ASSERT_TRUE(set.Load().ok());
    ASSERT_TRUE(set.Record(Refs("a", 0, 20), 1, /*pin=*/true).ok());
    ASSERT_TRUE(set.Record(Refs("longer/name", 3, 20), 2, /*pin=*/true).ok());
    // The zeros are written, their sync fails: the power loss tears them.
    fs.FailAfter(kJournal, 1, "Input/output error");
    EXPECT_FALSE(set.Clear().ok());
    fs.ClearFaults();
    fs.PowerLoss(seed, FaultFileSystem::Mode::kTearUnsynced);
    std::set<ChunkRef> got = Loaded(fs);
    for (const ChunkRef& r : got) EXPECT_TRUE(old.count(r)) << "seed " << seed << ": " << r.path << " " << r.chunk;
  }
}

}  // namespace
}  // namespace tandem::repl
