#include "os/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "os/files.h"

namespace tandem::os {
namespace {

constexpr mode_t kFileMode = 0644;
constexpr int kDirMode = 0755;
constexpr size_t kReadChunkBytes = 64 * 1024;  // ReadWholeFile's step past the expected size
// Offsets and sizes travel as off_t; anything above cannot be a file position.
constexpr uint64_t kOffsetMax = static_cast<uint64_t>(std::numeric_limits<off_t>::max());

Status Errno(const std::string& path, const char* call, int err) {
  return Status::Error(path + ": " + call + ": " + std::strerror(err));
}
Status Errno(const std::string& path, const char* call) { return Errno(path, call, errno); }

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset > kOffsetMax || data.size() > kOffsetMax - offset) {
      return Errno(path_, "pwrite", EFBIG);
    }
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = pwrite(fd_, data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno(path_, "pwrite");
      // pwrite never returns 0 for a non-empty regular-file write; guard the loop anyway.
      if (n == 0) return Errno(path_, "pwrite", EIO);
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > kOffsetMax) return size_t{0};  // no file reaches that far
    size_t done = 0;
    while (done < out.size() && offset + done <= kOffsetMax) {
      ssize_t n = pread(fd_, out.data() + done, out.size() - done,
                        static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno(path_, "pread");
      if (n == 0) break;  // end of file
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Result<uint64_t> Size() override {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return Errno(path_, "fstat");
    return static_cast<uint64_t>(st.st_size);
  }

  Status Truncate(uint64_t size) override {
    if (size > kOffsetMax) return Errno(path_, "ftruncate", EFBIG);
    for (;;) {
      if (ftruncate(fd_, static_cast<off_t>(size)) == 0) return Status::Ok();
      if (errno != EINTR) return Errno(path_, "ftruncate");
    }
  }

  Status Sync() override {
    for (;;) {
      if (fdatasync(fd_) == 0) return Status::Ok();
      if (errno != EINTR) return Errno(path_, "fdatasync");
    }
  }

 private:
  int fd_;
  std::string path_;
};

// Opens a directory for reading its entries; `follow`: whether a symbolic
// link at `path` itself may be followed (only for the caller's top directory,
// so a walk never leaves the tree through a link swapped in meanwhile).
DIR* OpenDir(const std::string& path, bool follow) {
  int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
  int fd = open(path.c_str(), flags);
  if (fd < 0) return nullptr;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    int saved = errno;
    close(fd);
    errno = saved;
  }
  return d;
}

enum class Kind { kFile, kDir, kOther, kGone };

// The kind of `full` from its dirent, with lstat when the file system does
// not fill d_type. Never follows symbolic links.
Kind KindOf(const dirent* e, const std::string& full) {
  switch (e->d_type) {
    case DT_REG: return Kind::kFile;
    case DT_DIR: return Kind::kDir;
    case DT_UNKNOWN: break;
    default: return Kind::kOther;
  }
  struct stat st {};
  if (lstat(full.c_str(), &st) != 0) return Kind::kGone;
  if (S_ISREG(st.st_mode)) return Kind::kFile;
  if (S_ISDIR(st.st_mode)) return Kind::kDir;
  return Kind::kOther;
}

// The regular files and the directories under `root` (relative paths, the
// directories in pre-order: a parent before its children). A missing `root`
// is empty. `strict`: fail on an unreadable subdirectory instead of skipping
// it. Iterative, so a deep tree cannot overflow the stack.
Status Walk(const std::string& root, bool strict, std::vector<std::string>* files,
            std::vector<std::string>* dirs) {
  std::vector<std::string> pending = {""};  // relative directories still to read
  while (!pending.empty()) {
    std::string rel = std::move(pending.back());
    pending.pop_back();
    std::string full = rel.empty() ? root : root + "/" + rel;
    DIR* d = OpenDir(full, rel.empty());
    if (d == nullptr) {
      if (errno == ENOENT) continue;  // missing root, or removed meanwhile
      if (strict || rel.empty()) return Errno(full, "opendir");
      continue;
    }
    for (;;) {
      errno = 0;
      const dirent* e = readdir(d);
      if (e == nullptr) break;
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string child = rel.empty() ? name : rel + "/" + name;
      Kind kind = KindOf(e, root + "/" + child);
      if (kind == Kind::kFile && files != nullptr) files->push_back(child);
      if (kind == Kind::kDir) {
        if (dirs != nullptr) dirs->push_back(child);
        pending.push_back(child);
      }
    }
    int err = errno;
    closedir(d);
    if (err != 0 && strict) return Errno(full, "readdir", err);
  }
  return Status::Ok();
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<File>> Open(const std::string& path, bool create) override {
    int fd;
    do {
      fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), kFileMode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Errno(path, "open");
    struct stat st {};
    Status s;
    if (fstat(fd, &st) != 0) s = Errno(path, "fstat");
    else if (!S_ISREG(st.st_mode)) s = Status::Error(path + ": not a regular file");
    if (!s.ok()) {
      close(fd);
      return s;
    }
    return std::unique_ptr<File>(std::make_unique<PosixFile>(fd, path));
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0) return Errno(from + " -> " + to, "rename");
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return Errno(path, "unlink");
    return Status::Ok();
  }

  Status MakeDirs(const std::string& path) override { return os::MakeDirs(path, kDirMode); }

  Status SyncDir(const std::string& path) override {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(path, "open");
    int rc;
    do {
      rc = fsync(fd);
    } while (rc != 0 && errno == EINTR);
    Status s = rc == 0 ? Status::Ok() : Errno(path, "fsync");
    close(fd);
    return s;
  }

  Result<std::optional<uint64_t>> FileSize(const std::string& path) override {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return std::optional<uint64_t>();
      return Errno(path, "lstat");
    }
    if (!S_ISREG(st.st_mode)) return Status::Error(path + ": not a regular file");
    return std::optional<uint64_t>(static_cast<uint64_t>(st.st_size));
  }

  Result<std::vector<std::string>> ListFiles(const std::string& dir) override {
    std::vector<std::string> files;
    TANDEM_RETURN_IF_ERROR(Walk(dir, /*strict=*/true, &files, nullptr));
    std::sort(files.begin(), files.end());
    return files;
  }

  void PruneEmptyDirs(const std::string& dir) override {
    std::vector<std::string> dirs;
    if (!Walk(dir, /*strict=*/false, nullptr, &dirs).ok()) return;
    // Pre-order reversed: every directory comes after all of its children,
    // so a directory holding only empty directories goes too. rmdir refuses
    // non-empty ones, which is what we want.
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) rmdir((dir + "/" + *it).c_str());
  }
};

}  // namespace

FileSystem& RealFileSystem() {
  static PosixFileSystem fs;
  return fs;
}

Status WriteWholeFileAtomic(FileSystem& fs, const std::string& path,
                            std::span<const uint8_t> data) {
  const std::string tmp = path + ".tmp";
  Status s;
  {
    Result<std::unique_ptr<File>> f = fs.Open(tmp, /*create=*/true);
    if (!f.ok()) return f.status();
    s = (*f)->Truncate(0);  // a leftover from an earlier crash
    if (s.ok()) s = (*f)->WriteAt(0, data);
    if (s.ok()) s = (*f)->Sync();
  }  // closed before the rename
  if (s.ok()) s = fs.Rename(tmp, path);
  if (!s.ok()) {
    (void)fs.Remove(tmp);  // best effort; the original error is the one to report
    return s;
  }
  return fs.SyncDir(ParentDir(path));
}

Result<std::optional<std::vector<uint8_t>>> ReadWholeFile(FileSystem& fs, const std::string& path,
                                                          uint64_t max_bytes) {
  using Out = std::optional<std::vector<uint8_t>>;
  Result<std::optional<uint64_t>> size = fs.FileSize(path);
  if (!size.ok()) return size.status();
  if (!size->has_value()) return Out();
  auto too_big = [&] {
    return Status::Error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
  };
  if (**size > max_bytes) return too_big();
  Result<std::unique_ptr<File>> f = fs.Open(path, /*create=*/false);
  if (!f.ok()) return f.status();
  // Read until end of file rather than trusting the size: the file may have
  // changed between FileSize and Open.
  std::vector<uint8_t> out(static_cast<size_t>(**size));
  size_t got = 0;
  for (;;) {
    if (got == out.size()) out.resize(out.size() + kReadChunkBytes);
    Result<size_t> n = (*f)->ReadAt(got, std::span<uint8_t>(out).subspan(got));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    got += *n;
    if (got > max_bytes) return too_big();
  }
  out.resize(got);
  return Out(std::move(out));
}

}  // namespace tandem::os
