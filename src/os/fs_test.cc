#include "os/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "os/fault_fs.h"
#include "util/temp_dir.h"

namespace tandem::os {
namespace {

std::vector<uint8_t> Bytes(std::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::string Text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

// Reads a whole file through the seam, or "<error>" / "<missing>".
std::string Slurp(FileSystem& fs, const std::string& path) {
  auto r = ReadWholeFile(fs, path, 1 << 24);
  if (!r.ok()) return "<" + r.status().message() + ">";
  if (!r->has_value()) return "<missing>";
  return Text(**r);
}

std::unique_ptr<File> OpenOrDie(FileSystem& fs, const std::string& path, bool create = true) {
  auto f = fs.Open(path, create);
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(*f) : nullptr;
}

std::string ReadAll(File& f) {
  auto size = f.Size();
  if (!size.ok()) return "<" + size.status().message() + ">";
  std::vector<uint8_t> buf(static_cast<size_t>(*size));
  auto n = f.ReadAt(0, buf);
  if (!n.ok()) return "<" + n.status().message() + ">";
  buf.resize(*n);
  return Text(buf);
}

// ---- One battery of behaviour tests for both implementations: whatever
// the code under test sees from RealFileSystem, it must see from
// FaultFileSystem too.

struct RealEnv {
  TempDir tmp{"tandem-fs"};
  FileSystem& fs = RealFileSystem();
  std::string root = tmp.path();
};

struct FaultEnv {
  FaultFileSystem fault;
  FileSystem& fs = fault;
  std::string root = "/tmp/fs-test";
  FaultEnv() { TANDEM_CHECK(fault.MakeDirs(root).ok()); }
};

template <typename Env>
class FsTest : public ::testing::Test {
 protected:
  FileSystem& fs() { return env_.fs; }
  std::string P(const std::string& rel) const { return env_.root + "/" + rel; }
  const std::string& root() const { return env_.root; }

  void Write(const std::string& rel, std::string_view data) {
    auto f = OpenOrDie(fs(), P(rel));
    ASSERT_NE(f, nullptr);
    ASSERT_TRUE(f->Truncate(0).ok());
    Status s = f->WriteAt(0, Bytes(data));
    ASSERT_TRUE(s.ok()) << s.message();
  }

  Env env_;
};

struct EnvNames {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, RealEnv> ? "Real" : "Fault";
  }
};
using Envs = ::testing::Types<RealEnv, FaultEnv>;
TYPED_TEST_SUITE(FsTest, Envs, EnvNames);

TYPED_TEST(FsTest, WriteThenReadBack) {
  auto f = OpenOrDie(this->fs(), this->P("a"));
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(0, Bytes("hello world")).ok());
  EXPECT_EQ(ReadAll(*f), "hello world");
  auto size = f->Size();
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 11u);
  ASSERT_TRUE(f->WriteAt(6, Bytes("WORLD")).ok());  // overwrite in place
  EXPECT_EQ(ReadAll(*f), "hello WORLD");
  ASSERT_TRUE(f->Sync().ok());
  EXPECT_EQ(Slurp(this->fs(), this->P("a")), "hello WORLD");
}

TYPED_TEST(FsTest, ReadIsShortOnlyAtEnd) {
  this->Write("a", "0123456789");
  auto f = OpenOrDie(this->fs(), this->P("a"), false);
  ASSERT_NE(f, nullptr);
  std::vector<uint8_t> buf(4);
  auto n = f->ReadAt(8, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(buf[0], '8');
  EXPECT_EQ(buf[1], '9');
  n = f->ReadAt(10, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  n = f->ReadAt(uint64_t{1} << 40, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

TYPED_TEST(FsTest, WritePastEndZeroFillsGap) {
  auto f = OpenOrDie(this->fs(), this->P("a"));
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(0, Bytes("ab")).ok());
  ASSERT_TRUE(f->WriteAt(5, Bytes("xy")).ok());
  EXPECT_EQ(ReadAll(*f), std::string("ab\0\0\0xy", 7));
  ASSERT_TRUE(f->WriteAt(9, {}).ok());  // an empty write does not extend
  EXPECT_EQ(*f->Size(), 7u);
}

TYPED_TEST(FsTest, TruncateShrinksAndGrows) {
  this->Write("a", "hello");
  auto f = OpenOrDie(this->fs(), this->P("a"), false);
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->Truncate(2).ok());
  EXPECT_EQ(ReadAll(*f), "he");
  ASSERT_TRUE(f->Truncate(4).ok());
  EXPECT_EQ(ReadAll(*f), std::string("he\0\0", 4));
  auto size = this->fs().FileSize(this->P("a"));
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, std::optional<uint64_t>(4));
}

TYPED_TEST(FsTest, LargeWriteRoundTrips) {
  std::vector<uint8_t> big(3 * 1024 * 1024 + 17);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  auto f = OpenOrDie(this->fs(), this->P("big"));
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(100, big).ok());
  std::vector<uint8_t> back(big.size() + 50);
  auto n = f->ReadAt(100, back);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, big.size());
  back.resize(*n);
  EXPECT_TRUE(back == big);
}

TYPED_TEST(FsTest, OpenExistingWithCreateKeepsContent) {
  this->Write("a", "keep");
  auto f = OpenOrDie(this->fs(), this->P("a"), true);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(ReadAll(*f), "keep");
}

TYPED_TEST(FsTest, OpenMissingWithoutCreateFails) {
  auto f = this->fs().Open(this->P("nope"), false);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(), this->P("nope") + ": open: No such file or directory");
  EXPECT_FALSE(this->fs().FileSize(this->P("nope")).value().has_value());  // not created
}

TYPED_TEST(FsTest, OpenInMissingDirectoryFails) {
  auto f = this->fs().Open(this->P("no/such/dir/f"), true);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(), this->P("no/such/dir/f") + ": open: No such file or directory");
}

TYPED_TEST(FsTest, OpenDirectoryFails) {
  ASSERT_TRUE(this->fs().MakeDirs(this->P("d")).ok());
  auto f = this->fs().Open(this->P("d"), true);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(), this->P("d") + ": open: Is a directory");
}

TYPED_TEST(FsTest, RenameReplacesTargetAndKeepsOpenHandle) {
  this->Write("old", "old contents");
  auto f = OpenOrDie(this->fs(), this->P("new"));
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(0, Bytes("new")).ok());
  Status s = this->fs().Rename(this->P("new"), this->P("old"));
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(Slurp(this->fs(), this->P("old")), "new");
  EXPECT_EQ(Slurp(this->fs(), this->P("new")), "<missing>");
  // The handle follows the file, not the name.
  ASSERT_TRUE(f->WriteAt(3, Bytes("er")).ok());
  EXPECT_EQ(Slurp(this->fs(), this->P("old")), "newer");
}

TYPED_TEST(FsTest, RenameAcrossDirectories) {
  ASSERT_TRUE(this->fs().MakeDirs(this->P("x/y")).ok());
  this->Write("a", "moved");
  ASSERT_TRUE(this->fs().Rename(this->P("a"), this->P("x/y/b")).ok());
  auto list = this->fs().ListFiles(this->root());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, std::vector<std::string>{"x/y/b"});
  EXPECT_EQ(Slurp(this->fs(), this->P("x/y/b")), "moved");
}

TYPED_TEST(FsTest, RenameErrors) {
  Status s = this->fs().Rename(this->P("missing"), this->P("b"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            this->P("missing") + " -> " + this->P("b") + ": rename: No such file or directory");
  this->Write("a", "x");
  ASSERT_TRUE(this->fs().MakeDirs(this->P("d/e")).ok());
  s = this->fs().Rename(this->P("a"), this->P("d"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(": rename: Is a directory"), std::string::npos) << s.message();
  s = this->fs().Rename(this->P("a"), this->P("nodir/a"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(": rename: No such file or directory"), std::string::npos);
  EXPECT_EQ(Slurp(this->fs(), this->P("a")), "x");  // untouched
}

TYPED_TEST(FsTest, RenameOntoItselfIsNoOp) {
  this->Write("a", "same");
  ASSERT_TRUE(this->fs().Rename(this->P("a"), this->P("a")).ok());
  EXPECT_EQ(Slurp(this->fs(), this->P("a")), "same");
}

TYPED_TEST(FsTest, RemoveFileMissingOkDirectoryNot) {
  this->Write("a", "x");
  auto f = OpenOrDie(this->fs(), this->P("a"), false);
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(this->fs().Remove(this->P("a")).ok());
  EXPECT_FALSE(this->fs().FileSize(this->P("a")).value().has_value());
  EXPECT_EQ(ReadAll(*f), "x");  // an open handle outlives the name
  EXPECT_TRUE(this->fs().Remove(this->P("a")).ok());
  EXPECT_TRUE(this->fs().Remove(this->P("no/such/dir/a")).ok());
  ASSERT_TRUE(this->fs().MakeDirs(this->P("d")).ok());
  Status s = this->fs().Remove(this->P("d"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), this->P("d") + ": unlink: Is a directory");
}

TYPED_TEST(FsTest, MakeDirsNestedIdempotentAndNotOverFile) {
  ASSERT_TRUE(this->fs().MakeDirs(this->P("a/b/c")).ok());
  ASSERT_TRUE(this->fs().MakeDirs(this->P("a/b/c")).ok());
  ASSERT_TRUE(this->fs().MakeDirs(this->P("a/b")).ok());
  this->Write("a/b/c/f", "x");
  EXPECT_EQ(Slurp(this->fs(), this->P("a/b/c/f")), "x");
  this->Write("file", "x");
  Status s = this->fs().MakeDirs(this->P("file/sub"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), this->P("file") + ": exists and is not a directory");
  EXPECT_FALSE(this->fs().MakeDirs("").ok());
}

TYPED_TEST(FsTest, SyncDir) {
  EXPECT_TRUE(this->fs().SyncDir(this->root()).ok());
  Status s = this->fs().SyncDir(this->P("missing"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), this->P("missing") + ": open: No such file or directory");
  this->Write("f", "x");
  s = this->fs().SyncDir(this->P("f"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), this->P("f") + ": open: Not a directory");
}

TYPED_TEST(FsTest, FileSize) {
  auto r = this->fs().FileSize(this->P("missing"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  r = this->fs().FileSize(this->P("missing/deeper"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  this->Write("f", "12345");
  r = this->fs().FileSize(this->P("f"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, std::optional<uint64_t>(5));
  r = this->fs().FileSize(this->root());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), this->root() + ": not a regular file");
  r = this->fs().FileSize(this->P("f/x"));  // a file in the way is not "nothing there"
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), this->P("f/x") + ": lstat: Not a directory");
}

TYPED_TEST(FsTest, ListFilesRecursiveSortedFilesOnly) {
  for (const char* dir : {"a/b", "c/empty", "z"}) {
    ASSERT_TRUE(this->fs().MakeDirs(this->P(dir)).ok());
  }
  for (const char* f : {"b", "a/z", "a/b/c", "a.x", "z/1"}) this->Write(f, "x");
  auto list = this->fs().ListFiles(this->root());
  ASSERT_TRUE(list.ok()) << list.status().message();
  // Byte order: '.' < '/' so "a.x" sorts before "a/...".
  EXPECT_EQ(*list, (std::vector<std::string>{"a.x", "a/b/c", "a/z", "b", "z/1"}));
  list = this->fs().ListFiles(this->P("a"));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"b/c", "z"}));
}

TYPED_TEST(FsTest, ListFilesMissingIsEmptyFileIsError) {
  auto list = this->fs().ListFiles(this->P("missing"));
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  this->Write("f", "x");
  list = this->fs().ListFiles(this->P("f"));
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().message(), this->P("f") + ": opendir: Not a directory");
}

TYPED_TEST(FsTest, PruneEmptyDirsBottomUp) {
  for (const char* dir : {"a/b/c", "a/d", "keep/x/y", "e"}) {
    ASSERT_TRUE(this->fs().MakeDirs(this->P(dir)).ok());
  }
  this->Write("keep/x/f", "x");
  this->fs().PruneEmptyDirs(this->root());
  // Gone: a (held only empty dirs), e, keep/x/y. Kept: keep/x (a file), the root.
  for (const char* gone : {"a", "a/b", "e", "keep/x/y"}) {
    EXPECT_FALSE(this->fs().SyncDir(this->P(gone)).ok()) << gone;
  }
  EXPECT_TRUE(this->fs().SyncDir(this->P("keep/x")).ok());
  EXPECT_TRUE(this->fs().SyncDir(this->root()).ok());
  auto list = this->fs().ListFiles(this->root());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, std::vector<std::string>{"keep/x/f"});
  this->fs().PruneEmptyDirs(this->root());  // nothing left to do
  this->fs().PruneEmptyDirs(this->P("missing"));  // best effort: no crash
  EXPECT_TRUE(this->fs().SyncDir(this->root()).ok());  // not the top itself, even when empty
}

TYPED_TEST(FsTest, AtomicWriteAndReadBack) {
  const std::string p = this->P("state");
  Status s = WriteWholeFileAtomic(this->fs(), p, Bytes("first version, long"));
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(Slurp(this->fs(), p), "first version, long");
  this->Write("state.tmp", "leftover from a crash, longer than the next");
  ASSERT_TRUE(WriteWholeFileAtomic(this->fs(), p, Bytes("second")).ok());
  EXPECT_EQ(Slurp(this->fs(), p), "second");  // no tail of either older content
  auto list = this->fs().ListFiles(this->root());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, std::vector<std::string>{"state"});  // no .tmp left
  ASSERT_TRUE(WriteWholeFileAtomic(this->fs(), p, {}).ok());
  EXPECT_EQ(Slurp(this->fs(), p), "");
}

TYPED_TEST(FsTest, AtomicWriteIntoMissingDirFails) {
  Status s = WriteWholeFileAtomic(this->fs(), this->P("nodir/f"), Bytes("x"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), this->P("nodir/f.tmp") + ": open: No such file or directory");
}

TYPED_TEST(FsTest, ReadWholeFileLimits) {
  auto r = ReadWholeFile(this->fs(), this->P("missing"), 10);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  this->Write("f", "0123456789");
  r = ReadWholeFile(this->fs(), this->P("f"), 10);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(Text(**r), "0123456789");
  r = ReadWholeFile(this->fs(), this->P("f"), 9);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), this->P("f") + ": larger than 9 bytes");
  ASSERT_TRUE(this->fs().MakeDirs(this->P("d")).ok());
  r = ReadWholeFile(this->fs(), this->P("d"), 10);
  EXPECT_FALSE(r.ok());
}

// ---- RealFileSystem only: what the in-memory one has no notion of.

TEST(RealFsTest, ListFilesAndFileSizeSkipSymlinks) {
  TempDir tmp("tandem-fs");
  FileSystem& fs = RealFileSystem();
  ASSERT_TRUE(WriteWholeFileAtomic(fs, tmp / "f", Bytes("x")).ok());
  ASSERT_TRUE(fs.MakeDirs(tmp / "d").ok());
  ASSERT_TRUE(WriteWholeFileAtomic(fs, tmp / "d/g", Bytes("y")).ok());
  ASSERT_EQ(symlink((tmp / "f").c_str(), (tmp / "link-to-file").c_str()), 0);
  ASSERT_EQ(symlink((tmp / "d").c_str(), (tmp / "link-to-dir").c_str()), 0);
  ASSERT_EQ(symlink("/nonexistent", (tmp / "dangling").c_str()), 0);
  auto list = fs.ListFiles(tmp.path());
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ(*list, (std::vector<std::string>{"d/g", "f"}));
  auto size = fs.FileSize(tmp / "link-to-file");
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.status().message(), (tmp / "link-to-file") + ": not a regular file");
  fs.PruneEmptyDirs(tmp.path());  // must not follow the links
  EXPECT_TRUE(fs.FileSize(tmp / "d/g").value().has_value());
}

TEST(RealFsTest, CreatesMode0644AndRejectsNonRegular) {
  TempDir tmp("tandem-fs");
  FileSystem& fs = RealFileSystem();
  mode_t old = umask(022);
  auto f = fs.Open(tmp / "f", true);
  umask(old);
  ASSERT_TRUE(f.ok());
  struct stat st {};
  ASSERT_EQ(stat((tmp / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  auto dev = fs.Open("/dev/null", false);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().message(), "/dev/null: not a regular file");
}

// ---- FaultFileSystem: durability, power loss, injected faults.

class FaultFsTest : public ::testing::Test {
 protected:
  // /s exists durably; files are created there.
  FaultFsTest() {
    TANDEM_CHECK(fs_.MakeDirs("/s").ok());
    TANDEM_CHECK(fs_.SyncDir("/").ok());
  }

  // Creates `path` with `data`, syncs it and (if `sync_dir`) its directory.
  void Create(const std::string& path, std::string_view data, bool sync_data, bool sync_dir) {
    auto f = OpenOrDie(fs_, path);
    ASSERT_NE(f, nullptr);
    ASSERT_TRUE(f->WriteAt(0, Bytes(data)).ok());
    if (sync_data) {
      ASSERT_TRUE(f->Sync().ok());
    }
    if (sync_dir) {
      ASSERT_TRUE(fs_.SyncDir(path.substr(0, path.rfind('/'))).ok());
    }
  }

  std::string Content(const std::string& path) {
    auto c = fs_.Contents(path);
    return c ? Text(*c) : "<missing>";
  }

  FaultFileSystem fs_;
};

TEST_F(FaultFsTest, UnsyncedDataDroppedSyncedKept) {
  Create("/s/a", "synced", true, true);
  auto f = OpenOrDie(fs_, "/s/a", false);
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(6, Bytes(" and not")).ok());
  ASSERT_TRUE(f->Truncate(3).ok());
  ASSERT_TRUE(f->WriteAt(0, Bytes("SYN")).ok());
  EXPECT_EQ(Content("/s/a"), "SYN");
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/a"), "synced");
  // Synced data stays across further losses.
  fs_.PowerLoss(2, FaultFileSystem::Mode::kTearUnsynced);
  EXPECT_EQ(Content("/s/a"), "synced");
}

TEST_F(FaultFsTest, SyncMakesLaterStateDurable) {
  Create("/s/a", "one", true, true);
  auto f = OpenOrDie(fs_, "/s/a", false);
  ASSERT_TRUE(f->WriteAt(0, Bytes("two, longer")).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Truncate(3).ok());  // not synced
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/a"), "two, longer");
}

TEST_F(FaultFsTest, CreatedFileDisappearsUntilDirSynced) {
  Create("/s/new", "data synced, entry not", true, false);
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_FALSE(fs_.Exists("/s/new"));
  auto list = fs_.ListFiles("/s");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  Create("/s/new", "both synced", true, true);
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/new"), "both synced");
}

TEST_F(FaultFsTest, DurableEntryWithUnsyncedDataIsEmpty) {
  Create("/s/a", "never synced", false, true);
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/a"), "");
}

TEST_F(FaultFsTest, RenameNotDurableUntilSyncDir) {
  Create("/s/f", "old", true, true);
  Create("/s/f.tmp", "new", true, true);
  ASSERT_TRUE(fs_.Rename("/s/f.tmp", "/s/f").ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/f"), "old");
  EXPECT_EQ(Content("/s/f.tmp"), "new");
  ASSERT_TRUE(fs_.Rename("/s/f.tmp", "/s/f").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/f"), "new");
  EXPECT_FALSE(fs_.Exists("/s/f.tmp"));
}

TEST_F(FaultFsTest, RemoveNotDurableUntilSyncDir) {
  Create("/s/a", "x", true, true);
  ASSERT_TRUE(fs_.Remove("/s/a").ok());
  EXPECT_FALSE(fs_.Exists("/s/a"));
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/a"), "x");
  ASSERT_TRUE(fs_.Remove("/s/a").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_FALSE(fs_.Exists("/s/a"));
}

TEST_F(FaultFsTest, CrossDirectoryRenameNeedsBothDirsSynced) {
  ASSERT_TRUE(fs_.MakeDirs("/s/x").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  Create("/s/a", "x", true, true);
  ASSERT_TRUE(fs_.Rename("/s/a", "/s/x/a").ok());
  ASSERT_TRUE(fs_.SyncDir("/s/x").ok());  // only the target
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/a"), "x");  // both names: like a hard link
  EXPECT_EQ(Content("/s/x/a"), "x");
}

TEST_F(FaultFsTest, NewDirectoryNeedsParentSync) {
  ASSERT_TRUE(fs_.MakeDirs("/s/d/e").ok());
  Create("/s/d/e/f", "x", true, true);  // syncs /s/d/e, not /s or /s/d
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_FALSE(fs_.Exists("/s/d"));
  ASSERT_TRUE(fs_.MakeDirs("/s/d/e").ok());
  Create("/s/d/e/f", "x", true, true);
  ASSERT_TRUE(fs_.SyncDir("/s/d").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/d/e/f"), "x");
}

TEST_F(FaultFsTest, PrunedDirectoryComesBackUntilParentSynced) {
  ASSERT_TRUE(fs_.MakeDirs("/s/d").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  fs_.PruneEmptyDirs("/s");
  EXPECT_FALSE(fs_.Exists("/s/d"));
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_TRUE(fs_.Exists("/s/d"));
}

TEST_F(FaultFsTest, DirectoryCycleFromPartialSyncsIsCut) {
  // a/b durable; then b moves up and a moves into b, and only b is synced:
  // the durable entries say a holds b and b holds a.
  ASSERT_TRUE(fs_.MakeDirs("/s/a/b").ok());
  ASSERT_TRUE(fs_.SyncDir("/s/a").ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  ASSERT_TRUE(fs_.Rename("/s/a/b", "/s/b").ok());
  ASSERT_TRUE(fs_.Rename("/s/a", "/s/b/a").ok());
  ASSERT_TRUE(fs_.SyncDir("/s/b").ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_TRUE(fs_.Exists("/s/a/b"));
  ASSERT_FALSE(fs_.Exists("/s/a/b/a"));  // the back edge is gone (else ListFiles loops)
  auto list = fs_.ListFiles("/s");  // terminates
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// A file of `kWrites` synced-to-empty appends, none synced after: every
// torn state is a byte prefix of the full content.
constexpr int kWrites = 8;
constexpr size_t kWriteBytes = 100;

std::string AllAppends() {
  std::string all;
  for (int i = 0; i < kWrites; ++i) all += std::string(kWriteBytes, static_cast<char>('a' + i));
  return all;
}

void BuildAppendHistory(FaultFileSystem& fs) {
  TANDEM_CHECK(fs.MakeDirs("/s").ok());
  TANDEM_CHECK(fs.SyncDir("/").ok());
  auto f = fs.Open("/s/log", true);
  TANDEM_CHECK(f.ok());
  TANDEM_CHECK((*f)->Sync().ok());
  TANDEM_CHECK(fs.SyncDir("/s").ok());
  std::string all = AllAppends();
  for (int i = 0; i < kWrites; ++i) {
    std::string chunk = all.substr(static_cast<size_t>(i) * kWriteBytes, kWriteBytes);
    TANDEM_CHECK((*f)->WriteAt(static_cast<uint64_t>(i) * kWriteBytes, Bytes(chunk)).ok());
  }
  // Unsynced directory changes as well.
  for (const char* name : {"/s/n1", "/s/n2", "/s/n3"}) TANDEM_CHECK(fs.Open(name, true).ok());
}

struct TornResult {
  std::string log;
  std::vector<std::string> files;
};

TornResult TearWithSeed(uint64_t seed) {
  FaultFileSystem fs;
  BuildAppendHistory(fs);
  fs.PowerLoss(seed, FaultFileSystem::Mode::kTearUnsynced);
  TornResult r;
  auto c = fs.Contents("/s/log");
  TANDEM_CHECK(c.has_value());
  r.log = Text(*c);
  r.files = fs.ListFiles("/s").value();
  return r;
}

TEST_F(FaultFsTest, TearKeepsPrefixAndIsDeterministic) {
  const std::string all = AllAppends();
  std::set<size_t> lengths;
  std::set<std::vector<std::string>> listings;
  bool torn_mid_write = false;
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    TornResult r = TearWithSeed(seed);
    ASSERT_LE(r.log.size(), all.size()) << "seed=" << seed;
    ASSERT_EQ(r.log, all.substr(0, r.log.size())) << "seed=" << seed;
    lengths.insert(r.log.size());
    if (r.log.size() % kWriteBytes != 0) torn_mid_write = true;
    listings.insert(r.files);
    ASSERT_EQ(r.files.front(), "log") << "seed=" << seed;  // the durable entry always stays
    TornResult again = TearWithSeed(seed);
    EXPECT_EQ(again.log, r.log) << "seed=" << seed;
    EXPECT_EQ(again.files, r.files) << "seed=" << seed;
  }
  EXPECT_GE(lengths.size(), 5u);  // the seed matters
  EXPECT_EQ(lengths.count(0), 1u);           // nothing survived
  EXPECT_EQ(lengths.count(all.size()), 1u);  // everything survived
  EXPECT_TRUE(torn_mid_write);
  EXPECT_GE(listings.size(), 4u);  // each new entry independently kept or lost
}

TEST_F(FaultFsTest, TornStateBecomesDurable) {
  FaultFileSystem fs;
  BuildAppendHistory(fs);
  fs.PowerLoss(7, FaultFileSystem::Mode::kTearUnsynced);
  auto before = fs.Contents("/s/log");
  auto files = fs.ListFiles("/s").value();
  fs.PowerLoss(8, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(fs.Contents("/s/log"), before);
  EXPECT_EQ(fs.ListFiles("/s").value(), files);
}

TEST_F(FaultFsTest, StaleHandlesAfterPowerLoss) {
  Create("/s/a", "x", true, true);
  auto f = OpenOrDie(fs_, "/s/a", false);
  ASSERT_NE(f, nullptr);
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  const std::string stale = "/s/a: stale file handle after power loss";
  std::vector<uint8_t> buf(1);
  EXPECT_EQ(f->WriteAt(0, Bytes("y")).ToString(), stale);
  EXPECT_EQ(f->ReadAt(0, buf).status().ToString(), stale);
  EXPECT_EQ(f->Size().status().ToString(), stale);
  EXPECT_EQ(f->Truncate(0).ToString(), stale);
  EXPECT_EQ(f->Sync().ToString(), stale);
  EXPECT_EQ(Content("/s/a"), "x");  // the failed write did nothing
  auto g = OpenOrDie(fs_, "/s/a", false);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(ReadAll(*g), "x");
}

TEST_F(FaultFsTest, FailAfterOnlyUnderPrefixUntilCleared) {
  ASSERT_TRUE(fs_.MakeDirs("/s/data").ok());
  auto in = OpenOrDie(fs_, "/s/data/f");
  auto out = OpenOrDie(fs_, "/s/other");
  ASSERT_NE(in, nullptr);
  ASSERT_NE(out, nullptr);
  fs_.FailAfter("/s/data/", 2, "Input/output error");
  std::vector<uint8_t> buf(4);
  ASSERT_TRUE(in->WriteAt(0, Bytes("ok")).ok());  // 1
  ASSERT_TRUE(in->ReadAt(0, buf).ok());           // 2
  Status s = in->WriteAt(2, Bytes("no"));
  EXPECT_EQ(s.ToString(), "/s/data/f: pwrite: Input/output error");
  EXPECT_EQ(in->Sync().ToString(), "/s/data/f: fdatasync: Input/output error");
  EXPECT_EQ(in->Truncate(0).ToString(), "/s/data/f: ftruncate: Input/output error");
  EXPECT_EQ(in->ReadAt(0, buf).status().ToString(), "/s/data/f: pread: Input/output error");
  EXPECT_EQ(Content("/s/data/f"), "ok");  // failed operations change nothing
  EXPECT_EQ(fs_.syncs(), 1u);  // the constructor's SyncDir only
  // Outside the prefix, and non-data calls, work.
  EXPECT_TRUE(out->WriteAt(0, Bytes("fine")).ok());
  EXPECT_TRUE(out->Sync().ok());
  EXPECT_TRUE(in->Size().ok());
  EXPECT_TRUE(fs_.Open("/s/data/g", true).ok());
  fs_.ClearFaults();
  EXPECT_TRUE(in->WriteAt(2, Bytes("!!")).ok());
  EXPECT_TRUE(in->Sync().ok());
  EXPECT_EQ(Content("/s/data/f"), "ok!!");
}

TEST_F(FaultFsTest, FailAfterZeroFailsAtOnceAndRulesCountSeparately) {
  auto f = OpenOrDie(fs_, "/s/a");
  ASSERT_NE(f, nullptr);
  fs_.FailAfter("/s/a", 0, "boom");
  EXPECT_EQ(f->Sync().ToString(), "/s/a: fdatasync: boom");
  fs_.ClearFaults();
  fs_.FailAfter("/s/", 3, "first");
  fs_.FailAfter("/s/a", 1, "second");
  EXPECT_TRUE(f->Sync().ok());
  EXPECT_EQ(f->Sync().ToString(), "/s/a: fdatasync: second");
  EXPECT_EQ(f->Sync().ToString(), "/s/a: fdatasync: second");
  EXPECT_EQ(f->Sync().ToString(), "/s/a: fdatasync: first");  // "first" ran out too
}

TEST_F(FaultFsTest, FullDiskRefusesGrowthOnly) {
  auto f = OpenOrDie(fs_, "/s/a");
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->WriteAt(0, Bytes("12345")).ok());
  fs_.SetFull(true);
  EXPECT_EQ(f->WriteAt(3, Bytes("abc")).ToString(), "/s/a: pwrite: No space left on device");
  EXPECT_TRUE(f->WriteAt(1, Bytes("abcd")).ok());  // inside the file
  EXPECT_TRUE(f->Truncate(10).ok());
  EXPECT_TRUE(f->Truncate(5).ok());
  EXPECT_EQ(Content("/s/a"), "1abcd");
  fs_.ClearFaults();
  EXPECT_TRUE(f->WriteAt(5, Bytes("6")).ok());
  EXPECT_EQ(Content("/s/a"), "1abcd6");
}

TEST_F(FaultFsTest, TooLargeIsAnErrorNotACrash) {
  auto f = OpenOrDie(fs_, "/s/a");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->WriteAt(FaultFileSystem::kFileBytesMax, Bytes("x")).ToString(),
            "/s/a: pwrite: File too large");
  EXPECT_EQ(f->Truncate(FaultFileSystem::kFileBytesMax + 1).ToString(),
            "/s/a: ftruncate: File too large");
}

TEST_F(FaultFsTest, Counters) {
  EXPECT_EQ(fs_.syncs(), 1u);
  EXPECT_EQ(fs_.dir_syncs(), 1u);
  auto f = OpenOrDie(fs_, "/s/a");
  ASSERT_TRUE(f->WriteAt(0, Bytes("abc")).ok());
  ASSERT_TRUE(f->WriteAt(10, Bytes("de")).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(fs_.SyncDir("/s").ok());
  EXPECT_EQ(fs_.bytes_written(), 5u);
  EXPECT_EQ(fs_.syncs(), 3u);
  EXPECT_EQ(fs_.dir_syncs(), 2u);
  ASSERT_TRUE(WriteWholeFileAtomic(fs_, "/s/state", Bytes("1234")).ok());
  EXPECT_EQ(fs_.bytes_written(), 9u);
  EXPECT_EQ(fs_.syncs(), 5u);  // file + directory
}

TEST_F(FaultFsTest, AccessorsAndPathNormalization) {
  Create("/s/a", "x", false, false);
  EXPECT_TRUE(fs_.Exists("/s"));
  EXPECT_TRUE(fs_.Exists("/"));
  EXPECT_TRUE(fs_.Exists("/s/a"));
  EXPECT_FALSE(fs_.Exists("/s/b"));
  EXPECT_FALSE(fs_.Contents("/s").has_value());
  EXPECT_EQ(Content("//s/./a"), "x");
  EXPECT_EQ(Content("/s/../s/a"), "x");
  EXPECT_EQ(Content("s/a"), "x");  // relative to "/"
}

TEST_F(FaultFsTest, AtomicWriteSurvivesPowerLossAsOldOrNew) {
  ASSERT_TRUE(WriteWholeFileAtomic(fs_, "/s/state", Bytes("old")).ok());
  fs_.PowerLoss(1, FaultFileSystem::Mode::kDropUnsynced);
  EXPECT_EQ(Content("/s/state"), "old");
  // Every prefix of the next atomic write, cut by a power loss, leaves the
  // old or the new content.
  for (uint64_t cut = 0; cut < 6; ++cut) {
    for (uint64_t seed = 1; seed <= 8; ++seed) {
      FaultFileSystem fs;
      ASSERT_TRUE(fs.MakeDirs("/s").ok());
      ASSERT_TRUE(fs.SyncDir("/").ok());
      ASSERT_TRUE(WriteWholeFileAtomic(fs, "/s/state", Bytes("old")).ok());
      fs.FailAfter("/s/", cut, "Input/output error");  // stop the write part-way
      (void)WriteWholeFileAtomic(fs, "/s/state", Bytes("new and longer"));
      fs.PowerLoss(seed, FaultFileSystem::Mode::kTearUnsynced);
      auto c = fs.Contents("/s/state");
      ASSERT_TRUE(c.has_value()) << "cut=" << cut << " seed=" << seed;
      std::string got = Text(*c);
      EXPECT_TRUE(got == "old" || got == "new and longer") << got;
    }
  }
}

TEST_F(FaultFsTest, ConcurrentUseFromTwoThreads) {
  constexpr int kOps = 2000;
  std::atomic<int> failures{0};
  auto worker = [&](const std::string& path) {
    auto f = fs_.Open(path, true);
    if (!f.ok()) {
      ++failures;
      return;
    }
    for (int i = 0; i < kOps; ++i) {
      uint8_t b = static_cast<uint8_t>(i);
      if (!(*f)->WriteAt(static_cast<uint64_t>(i), std::span<const uint8_t>(&b, 1)).ok()) {
        ++failures;
      }
      if (i % 100 == 0 && (!(*f)->Sync().ok() || !fs_.SyncDir("/s").ok())) ++failures;
      if (!fs_.FileSize(path).ok() || !fs_.ListFiles("/s").ok()) ++failures;
    }
  };
  std::thread t1(worker, "/s/t1");
  std::thread t2(worker, "/s/t2");
  t1.join();
  t2.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(fs_.bytes_written(), 2u * kOps);
  EXPECT_EQ(fs_.Contents("/s/t1")->size(), static_cast<size_t>(kOps));
}

}  // namespace
}  // namespace tandem::os
