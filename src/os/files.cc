#include "os/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem::os {

namespace {

constexpr size_t kReadChunkBytes = 8192;
constexpr size_t kPidTextBytesMax = 32;
constexpr int kPidLockAttemptsMax = 8;  // retries when the file is replaced under us
constexpr mode_t kPidFileMode = 0644;

Status Errno(const std::string& path, const char* call) {
  return Status::Error(path + ": " + call + ": " + std::strerror(errno));
}

// Closes `fd` without clobbering errno (for error paths that report it).
void CloseKeepErrno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

Status WriteAll(int fd, const std::string& path, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(path, "write");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status SyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(dir, "open");
  int rc = fsync(fd);
  if (rc != 0) CloseKeepErrno(fd);
  else close(fd);
  return rc == 0 ? Status::Ok() : Errno(dir, "fsync");
}

// Writes, chmods (the umask must not weaken or widen `mode`) and syncs `tmp`.
Status WriteTemp(const std::string& tmp, const std::string& data, int mode) {
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno(tmp, "open");
  Status st = WriteAll(fd, tmp, data);
  if (st.ok() && fchmod(fd, static_cast<mode_t>(mode)) != 0) st = Errno(tmp, "fchmod");
  if (st.ok() && fsync(fd) != 0) st = Errno(tmp, "fsync");
  if (close(fd) != 0 && st.ok()) st = Errno(tmp, "close");
  return st;
}

Status MakeOneDir(const std::string& dir, int mode) {
  if (mkdir(dir.c_str(), static_cast<mode_t>(mode)) == 0) return Status::Ok();
  if (errno != EEXIST) return Errno(dir, "mkdir");
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return Errno(dir, "stat");
  if (!S_ISDIR(st.st_mode)) return Status::Error(dir + ": exists and is not a directory");
  return Status::Ok();
}

// The pid text of a lock file, "?" if unreadable.
std::string ReadPid(int fd) {
  char buf[kPidTextBytesMax] = {};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "?" : pid;
}

// True if `fd` is still the file at `path` (a releasing holder unlinks it,
// and a lock on an unlinked file excludes nobody).
bool StillLinked(int fd, const std::string& path) {
  struct stat by_fd {};
  struct stat by_path {};
  if (fstat(fd, &by_fd) != 0 || stat(path.c_str(), &by_path) != 0) return false;
  return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

}  // namespace

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode) {
  std::string tmp = path + ".tmp";
  Status st = WriteTemp(tmp, data, mode);
  if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) st = Errno(path, "rename");
  if (!st.ok()) {
    unlink(tmp.c_str());
    return st;
  }
  return SyncDir(ParentDir(path));
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(path, "open");
  std::string out;
  char buf[kReadChunkBytes];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = Errno(path, "read");
      close(fd);
      return st;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      close(fd);
      return Status::Error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  close(fd);
  return out;
}

Status MakeDirs(const std::string& path, int mode) {
  if (path.empty()) return Status::Error("MakeDirs: empty path");
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    if (path[pos - 1] == '/') continue;  // "a//b"
    TANDEM_RETURN_IF_ERROR(MakeOneDir(path.substr(0, pos), mode));
  }
  if (path.back() == '/') return Status::Ok();
  return MakeOneDir(path, mode);
}

PidLock::~PidLock() {
  if (fd_ < 0) return;
  // Unlink while still holding the lock, so nobody locks a file on its way out.
  unlink(path_.c_str());
  flock(fd_, LOCK_UN);
  close(fd_);
}

Status PidLock::Acquire(const std::string& path) {
  if (fd_ >= 0) return Status::Error(path + ": lock already held by this object");
  for (int attempt = 0; attempt < kPidLockAttemptsMax; ++attempt) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kPidFileMode);
    if (fd < 0) return Errno(path, "open");
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) {
        close(fd);
        continue;
      }
      Status st = errno == EWOULDBLOCK
                      ? Status::Error(path + ": already locked by pid " + ReadPid(fd))
                      : Errno(path, "flock");
      close(fd);
      return st;
    }
    if (!StillLinked(fd, path)) {  // the previous holder just released it
      close(fd);
      continue;
    }
    std::string me = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 ||
        pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
      Status st = Errno(path, "write");
      close(fd);
      return st;
    }
    fd_ = fd;
    path_ = path;
    return Status::Ok();
  }
  return Status::Error(path + ": lock file keeps being replaced");
}

}  // namespace tandem::os
