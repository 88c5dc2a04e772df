#include "repl/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
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

// Forwards to another FileSystem; the first Sync of the file at the gated
// path waits until Release() (and then fails if told to), so a test can hold
// an early sync while it is running. Counts the syncs that reached the base
// file system, per path.
class GatedFileSystem final : public os::FileSystem {
 public:
  explicit GatedFileSystem(os::FileSystem& base) : base_(base) {}

  void Gate(const std::string& path, bool fail) {
    std::lock_guard<std::mutex> g(mu_);
    gated_ = path;
    fail_ = fail;
    entered_ = released_ = false;
  }
  // Bounded: false if no sync of the gated file started within 10 s.
  bool WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [this] { return entered_; });
  }
  void Release() {
    std::lock_guard<std::mutex> g(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int Syncs(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    return syncs_[path];
  }

  Result<std::unique_ptr<os::File>> Open(const std::string& path, bool create) override {
    auto f = base_.Open(path, create);
    if (!f.ok()) return f.status();
    return std::unique_ptr<os::File>(new GatedFile(this, path, std::move(*f)));
  }
  Status Rename(const std::string& from, const std::string& to) override { return base_.Rename(from, to); }
  Status Remove(const std::string& path) override { return base_.Remove(path); }
  Status MakeDirs(const std::string& path) override { return base_.MakeDirs(path); }
  Status SyncDir(const std::string& path) override { return base_.SyncDir(path); }
  Result<std::optional<uint64_t>> FileSize(const std::string& path) override { return base_.FileSize(path); }
  Result<std::vector<std::string>> ListFiles(const std::string& dir) override { return base_.ListFiles(dir); }
  void PruneEmptyDirs(const std::string& dir) override { base_.PruneEmptyDirs(dir); }

 private:
  class GatedFile final : public os::File {
   public:
    GatedFile(GatedFileSystem* fs, std::string path, std::unique_ptr<os::File> f)
        : fs_(fs), path_(std::move(path)), f_(std::move(f)) {}
    Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override { return f_->WriteAt(offset, data); }
    Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) override { return f_->ReadAt(offset, out); }
    Result<uint64_t> Size() override { return f_->Size(); }
    Status Truncate(uint64_t size) override { return f_->Truncate(size); }
    Status Sync() override {
      if (fs_->Hold(path_)) return Status::Error(path_ + ": fdatasync: Input/output error (injected)");
      Status st = f_->Sync();
      if (st.ok()) fs_->Count(path_);
      return st;
    }

   private:
    GatedFileSystem* fs_;
    std::string path_;
    std::unique_ptr<os::File> f_;
  };

  // True: this sync fails.
  bool Hold(const std::string& path) {
    std::unique_lock<std::mutex> lock(mu_);
    if (path != gated_ || entered_) return false;
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(10), [this] { return released_; });
    return fail_;
  }
  void Count(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    syncs_[path]++;
  }

  os::FileSystem& base_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string gated_;
  bool fail_ = false, entered_ = false, released_ = false;
  std::map<std::string, int> syncs_;
};

// A store whose early syncs can be held while running.
class HeldEarlySyncTest : public ::testing::Test {
 protected:
  FaultFileSystem base_;
  GatedFileSystem fs_{base_};

  void SetUp() override {
    ASSERT_TRUE(base_.MakeDirs("/s").ok());
    ASSERT_TRUE(base_.SyncDir("/").ok());
  }
  static Status Chunk(LocalStore& store, const std::string& path, uint64_t size, uint8_t v) {
    auto data = Bytes(ChunkLength(0, size), v);
    return store.ApplyChunk(path, 0, size, data);
  }
  std::vector<uint8_t> Content(const std::string& path) {
    return base_.Contents("/s/" + path).value_or(std::vector<uint8_t>{});
  }
  // Runs the commit on another thread; the future is ready when it returns.
  static std::future<Status> CommitAsync(LocalStore& store) {
    return std::async(std::launch::async, [&store] { return store.Commit(); });
  }
};

TEST_F(HeldEarlySyncTest, ACommitWaitsForARunningEarlySyncInsteadOfSyncingAgain) {
  IoPool pool(4);
  LocalStore store(fs_, "/s");
  store.SetIoPool(&pool);
  ASSERT_TRUE(Chunk(store, "a", 1000, 1).ok());
  ASSERT_TRUE(Chunk(store, "b", 500, 2).ok());
  fs_.Gate("/s/a", /*fail=*/false);
  ASSERT_TRUE(store.SyncEarly("a"));
  ASSERT_TRUE(fs_.WaitEntered());
  // Asked again while it runs: it covers everything written, nothing new.
  ASSERT_TRUE(store.SyncEarly("a"));
  auto commit = CommitAsync(store);
  // "a" is not durable yet: the commit must not return before its sync has.
  EXPECT_EQ(commit.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  fs_.Release();
  ASSERT_EQ(commit.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(commit.get().ok());
  EXPECT_EQ(fs_.Syncs("/s/a"), 1) << "synced once, early";
  EXPECT_EQ(fs_.Syncs("/s/b"), 1);
  EXPECT_EQ(store.early_syncs_waited(), 1u);
  base_.PowerLoss(5, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("a"), Bytes(1000, 1));
  EXPECT_EQ(Content("b"), Bytes(500, 2));
}

TEST_F(HeldEarlySyncTest, AnEarlySyncThatFailsIsRedoneByTheCommit) {
  IoPool pool(4);
  LocalStore store(fs_, "/s");
  store.SetIoPool(&pool);
  ASSERT_TRUE(Chunk(store, "a", 3000, 7).ok());
  fs_.Gate("/s/a", /*fail=*/true);
  ASSERT_TRUE(store.SyncEarly("a"));
  ASSERT_TRUE(fs_.WaitEntered());
  auto commit = CommitAsync(store);
  EXPECT_EQ(commit.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  fs_.Release();
  ASSERT_EQ(commit.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(commit.get().ok());
  EXPECT_EQ(fs_.Syncs("/s/a"), 1) << "the commit synced it itself";
  base_.PowerLoss(6, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("a"), Bytes(3000, 7));
}

TEST_F(HeldEarlySyncTest, AnEarlySyncNotStartedYetIsTakenBackByTheCommit) {
  IoPool pool(2);  // one worker: "b"'s held sync keeps "a"'s queued
  LocalStore store(fs_, "/s");
  store.SetIoPool(&pool);
  ASSERT_TRUE(Chunk(store, "a", 100, 3).ok());
  ASSERT_TRUE(Chunk(store, "b", 200, 4).ok());
  fs_.Gate("/s/b", /*fail=*/false);
  ASSERT_TRUE(store.SyncEarly("b"));
  ASSERT_TRUE(fs_.WaitEntered());
  ASSERT_TRUE(store.SyncEarly("a"));  // queued behind "b"
  auto commit = CommitAsync(store);
  EXPECT_EQ(commit.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  fs_.Release();
  ASSERT_EQ(commit.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(commit.get().ok());
  // The worker is free again: the job of "a" has run (or been dropped) by
  // the time a later job does.
  std::promise<void> drained;
  ASSERT_TRUE(pool.Post([&drained] { drained.set_value(); }));
  ASSERT_EQ(drained.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(fs_.Syncs("/s/a"), 1) << "synced by the commit only: the queued job was taken back";
  EXPECT_EQ(fs_.Syncs("/s/b"), 1);
  EXPECT_EQ(store.early_syncs_waited(), 1u);
  base_.PowerLoss(7, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("a"), Bytes(100, 3));
  EXPECT_EQ(Content("b"), Bytes(200, 4));
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
