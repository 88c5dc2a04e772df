// A private temporary directory under /tmp, removed with everything in it
// when the object goes away (tests and benchmarks).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "util/status.h"

namespace tandem {

class TempDir {
 public:
  // Creates /tmp/<prefix>-XXXXXX (mode 0700). CHECKs on failure.
  explicit TempDir(const std::string& prefix = "tandem") {
    std::string t = "/tmp/" + prefix + "-XXXXXX";
    TANDEM_CHECK(mkdtemp(t.data()) != nullptr);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    if (!keep_) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  void Keep() { keep_ = true; }  // leave it for inspection (e.g. after a failure)

 private:
  std::string path_;
  bool keep_ = false;
};

}  // namespace tandem
