#include "repl/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "os/fault_fs.h"
#include "repl/io_pool.h"

namespace tandem::repl {
namespace {

using os::FaultFileSystem;

std::vector<uint8_t> Bytes(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }
uint64_t FileSyncs(const FaultFileSystem& fs) { return fs.syncs() - fs.dir_syncs(); }

class EarlySyncTest : public ::testing::Test {
 protected:
  FaultFileSystem fs_;
  IoPool pool_{4};
  LocalStore store_{fs_, "/s"};

  void SetUp() override {
    ASSERT_TRUE(fs_.MakeDirs("/s").ok());
    ASSERT_TRUE(fs_.SyncDir("/").ok());
    store_.SetIoPool(&pool_);
  }
  Status Chunk(const std::string& path, uint64_t index, uint64_t size, uint8_t v) {
    auto data = Bytes(ChunkLength(index, size), v);
    return store_.ApplyChunk(path, index, size, data);
  }
  // Waits (bounded) until the early sync started is done and reported.
  void WaitSyncs(uint64_t base, uint64_t n) {
    for (int i = 0; i < 1000 && store_.EarlySyncsFinished() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(store_.EarlySyncsFinished(), n);
    EXPECT_GE(fs_.syncs(), base + n);
  }
  std::vector<uint8_t> Content(const std::string& path) {
    auto c = fs_.Contents("/s/" + path);
    return c.value_or(std::vector<uint8_t>{});
  }
};

TEST_F(EarlySyncTest, AFileSyncedEarlyIsNotSyncedAgainAndSurvivesAPowerLoss) {
  const uint64_t size = 2 * kChunkBytes;
  ASSERT_TRUE(Chunk("a", 0, size, 1).ok());
  ASSERT_TRUE(Chunk("a", 1, size, 2).ok());
  ASSERT_TRUE(Chunk("b", 0, 100, 3).ok());
  uint64_t base = fs_.syncs();
  ASSERT_TRUE(store_.SyncEarly("a"));
  WaitSyncs(base, 1);
  uint64_t before = FileSyncs(fs_);
  ASSERT_TRUE(store_.Commit().ok());
  // Only "b" is synced by the commit.
  EXPECT_EQ(FileSyncs(fs_) - before, 1u);
  EXPECT_EQ(store_.early_syncs_used(), 1u);
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  auto a = Content("a");
  ASSERT_EQ(a.size(), size);
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(a[size - 1], 2);
  EXPECT_EQ(Content("b").size(), 100u);
}

TEST_F(EarlySyncTest, AWriteAfterTheEarlySyncStartedIsSyncedByTheCommit) {
  const uint64_t size = kChunkBytes;
  ASSERT_TRUE(Chunk("a", 0, size, 1).ok());
  uint64_t base = fs_.syncs();
  ASSERT_TRUE(store_.SyncEarly("a"));
  WaitSyncs(base, 1);
  // Changed after the early sync: it no longer counts.
  Write w;
  w.op = WriteOp::kWriteAt;
  w.path = "a";
  w.offset = 10;
  w.data = Bytes(5, 9);
  ASSERT_TRUE(store_.Apply(&w).ok());
  uint64_t before = FileSyncs(fs_);
  ASSERT_TRUE(store_.Commit().ok());
  EXPECT_EQ(FileSyncs(fs_) - before, 1u);
  EXPECT_EQ(store_.early_syncs_used(), 0u);
  fs_.PowerLoss(2, FaultFileSystem::Mode::kDropUnsynced);
  auto a = Content("a");
  ASSERT_EQ(a.size(), size);
  EXPECT_EQ(a[10], 9);
  EXPECT_EQ(a[14], 9);
  EXPECT_EQ(a[15], 1);
}

TEST_F(EarlySyncTest, ARenameOrDeleteAfterwardsVoidsIt) {
  ASSERT_TRUE(Chunk("a", 0, 64, 1).ok());
  ASSERT_TRUE(Chunk("x", 0, 32, 7).ok());
  uint64_t base = fs_.syncs();
  ASSERT_TRUE(store_.SyncEarly("a"));
  WaitSyncs(base, 1);
  // "x" replaces "a": the early sync was of the old file.
  Write r;
  r.op = WriteOp::kRename;
  r.path = "x";
  r.path2 = "a";
  ASSERT_TRUE(store_.Apply(&r).ok());
  ASSERT_TRUE(store_.Commit().ok());
  EXPECT_EQ(store_.early_syncs_used(), 0u);
  fs_.PowerLoss(3, FaultFileSystem::Mode::kDropUnsynced);
  auto a = Content("a");
  ASSERT_EQ(a.size(), 32u);
  EXPECT_EQ(a[0], 7);
}

TEST(EarlySync, WithoutAPoolNothingStartsAndTheCommitSyncsAll) {
  FaultFileSystem fs;
  ASSERT_TRUE(fs.MakeDirs("/s").ok());
  LocalStore store(fs, "/s");
  auto data = Bytes(10, 1);
  ASSERT_TRUE(store.ApplyChunk("a", 0, 10, data).ok());
  EXPECT_FALSE(store.SyncEarly("a"));
  EXPECT_FALSE(store.SyncEarly("never-written"));
  uint64_t before = FileSyncs(fs);
  ASSERT_TRUE(store.Commit().ok());
  EXPECT_EQ(FileSyncs(fs) - before, 1u);
}

}  // namespace
}  // namespace tandem::repl
