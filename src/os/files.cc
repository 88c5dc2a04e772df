#include "os/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tandem::os {

namespace {

Status Errno(const std::string& path, const char* call) {
  return Status::Error(path + ": " + call + ": " + std::strerror(errno));
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

Status SyncDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(dir, "open");
  int rc = fsync(fd);
  close(fd);
  return rc == 0 ? Status::Ok() : Errno(dir, "fsync");
}

}  // namespace

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno(tmp, "open");
  Status st = WriteAll(fd, tmp, data);
  if (st.ok() && fchmod(fd, static_cast<mode_t>(mode)) != 0) st = Errno(tmp, "fchmod");
  if (st.ok() && fsync(fd) != 0) st = Errno(tmp, "fsync");
  close(fd);
  if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) st = Errno(path, "rename");
  if (!st.ok()) {
    unlink(tmp.c_str());
    return st;
  }
  return SyncDir(path);
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(path, "open");
  std::string out;
  char buf[8192];
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
  std::error_code ec;
  bool created = std::filesystem::create_directories(path, ec);
  if (ec) return Status::Error(path + ": cannot create directory: " + ec.message());
  if (!std::filesystem::is_directory(path, ec)) return Status::Error(path + ": not a directory");
  if (created && chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) return Errno(path, "chmod");
  return Status::Ok();
}

PidLock::~PidLock() {
  if (fd_ < 0) return;
  unlink(path_.c_str());
  flock(fd_, LOCK_UN);
  close(fd_);
}

Status PidLock::Acquire(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno(path, "open");
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Status::Error(path + ": already locked by pid " + pid);
  }
  std::string me = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) < 0) {
    close(fd);
    return Errno(path, "write");
  }
  fd_ = fd;
  path_ = path;
  return Status::Ok();
}

}  // namespace tandem::os
