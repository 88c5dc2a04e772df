#include "os/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "util/temp_dir.h"

namespace tandem::os {
namespace {

class FilesTest : public ::testing::Test {
 protected:

  static int ModeOf(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 07777);
  }

  TempDir tmp_{"tandem-files"};
  const std::string dir_ = tmp_.path();
};

// Runs `fn` in a forked child and returns what it wrote to the pipe (the
// child never returns into the test runner: it _exit()s).
template <typename Fn>
std::string InChild(Fn fn) {
  int p[2];
  if (pipe(p) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string out = fn();
    ssize_t n = write(p[1], out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
  }
  close(p[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  return out;
}

TEST_F(FilesTest, WriteReadRoundTrip) {
  std::string p = dir_ + "/f";
  std::string data("line one\n\0binary\xff", 17);
  ASSERT_TRUE(WriteFileAtomic(p, data).ok());
  auto r = ReadFile(p, 100);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, data);
  ASSERT_TRUE(WriteFileAtomic(p, "").ok());
  r = ReadFile(p, 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, "");
}

TEST_F(FilesTest, LargerThanOneChunk) {
  std::string p = dir_ + "/big";
  std::string data(100000, 'x');
  ASSERT_TRUE(WriteFileAtomic(p, data).ok());
  auto r = ReadFile(p, data.size());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, data);
}

TEST_F(FilesTest, ModeIsAppliedRegardlessOfUmask) {
  std::string p = dir_ + "/f";
  mode_t old = umask(077);
  Status st = WriteFileAtomic(p, "x", 0644);
  umask(old);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(ModeOf(p), 0644);
  ASSERT_TRUE(WriteFileAtomic(p, "y").ok());
  EXPECT_EQ(ModeOf(p), 0600) << "default mode";
}

TEST_F(FilesTest, AtomicReplaceLeavesNoTmp) {
  std::string p = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomic(p, "one", 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(p, "two", 0640).ok());
  auto r = ReadFile(p, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "two");
  EXPECT_EQ(ModeOf(p), 0640);
  EXPECT_FALSE(std::filesystem::exists(p + ".tmp"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_),
                          std::filesystem::directory_iterator()),
            1);
}

TEST_F(FilesTest, WriteErrorsNameThePath) {
  Status st = WriteFileAtomic(dir_ + "/no/such/dir/f", "x");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir_ + "/no/such/dir/f.tmp: open: No such file or directory"),
            std::string::npos)
      << st.message();
}

TEST_F(FilesTest, ReadFileLimitsAndErrors) {
  std::string p = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomic(p, "abc").ok());
  EXPECT_TRUE(ReadFile(p, 3).ok()) << "exactly the limit is fine";
  auto big = ReadFile(p, 2);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(), p + ": larger than 2 bytes");
  auto missing = ReadFile(dir_ + "/missing", 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir_ + "/missing: open:"), std::string::npos);
  EXPECT_FALSE(ReadFile(dir_, 10).ok()) << "a directory is not readable as a file";
}

TEST_F(FilesTest, MakeDirsNested) {
  std::string d = dir_ + "/a/b/c";
  ASSERT_TRUE(MakeDirs(d, 0700).ok());
  EXPECT_TRUE(std::filesystem::is_directory(d));
  EXPECT_EQ(ModeOf(d) & 0077, 0) << "mode applied";
  ASSERT_TRUE(MakeDirs(d, 0700).ok()) << "idempotent";
  ASSERT_TRUE(MakeDirs(dir_ + "//x//y/", 0755).ok()) << "doubled and trailing slashes";
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/x/y"));
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/file", "x").ok());
  Status st = MakeDirs(dir_ + "/file/sub", 0700);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a directory"), std::string::npos) << st.message();
  EXPECT_FALSE(MakeDirs(dir_ + "/file", 0700).ok());
}

TEST_F(FilesTest, PidLockExcludesOtherProcessesUntilReleased) {
  std::string p = dir_ + "/pid";
  auto try_lock = [&p] {
    PidLock other;
    Status st = other.Acquire(p);
    return st.ok() ? std::string("ok") : st.message();
  };
  {
    PidLock lock;
    ASSERT_TRUE(lock.Acquire(p).ok());
    auto text = ReadFile(p, 100);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, std::to_string(getpid()) + "\n");
    EXPECT_EQ(InChild(try_lock), p + ": already locked by pid " + std::to_string(getpid()));
  }
  EXPECT_FALSE(std::filesystem::exists(p)) << "released lock removes its file";
  EXPECT_EQ(InChild(try_lock), "ok");
  PidLock again;
  EXPECT_TRUE(again.Acquire(p).ok());
}

TEST_F(FilesTest, PidLockOverStaleFile) {
  std::string p = dir_ + "/pid";
  ASSERT_TRUE(WriteFileAtomic(p, "99999999\n", 0644).ok());  // a crashed holder's file
  PidLock lock;
  ASSERT_TRUE(lock.Acquire(p).ok());
  auto text = ReadFile(p, 100);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, std::to_string(getpid()) + "\n");
}

TEST_F(FilesTest, PidLockOpenErrorNamesPath) {
  PidLock lock;
  Status st = lock.Acquire(dir_ + "/missing/pid");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir_ + "/missing/pid: open:"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace tandem::os
