#include "daemon/state_file.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "os/files.h"

namespace tandem::daemon {

namespace {
constexpr int kStateFileVersion = 1;
constexpr size_t kStateFileBytesMax = 64 * 1024;
}  // namespace

Result<StateFile> LoadStateFile(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return StateFile{};
  auto text = os::ReadFile(path, kStateFileBytesMax);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Error(path + ": state file is not valid JSON; move it away to start fresh");
  }
  try {
    if (j.at("version").get<int>() != kStateFileVersion) {
      return Status::Error(path + ": unsupported state file version");
    }
    StateFile s;
    s.incarnation = j.at("incarnation").get<uint64_t>();
    s.disk.epoch = j.at("epoch").get<uint64_t>();
    s.disk.last_active_epoch = j.at("last_active_epoch").get<uint64_t>();
    s.disk.admin_offline = j.at("admin_offline").get<bool>();
    s.disk.failed = j.at("failed").get<bool>();
    s.disk.failed_reason = j.at("failed_reason").get<std::string>();
    s.last_status = j.value("last_status", "");
    s.last_status_wall_ms = j.value("last_status_wall_ms", int64_t{0});
    s.last_active_wall_ms = j.value("last_active_wall_ms", int64_t{0});
    s.peer_status = j.value("peer_status", "");
    s.peer_epoch = j.value("peer_epoch", uint64_t{0});
    s.peer_incarnation = j.value("peer_incarnation", uint64_t{0});
    s.peer_heard_wall_ms = j.value("peer_heard_wall_ms", int64_t{0});
    return s;
  } catch (const nlohmann::json::exception& e) {
    return Status::Error(path + ": state file field missing or of the wrong type: " + e.what());
  }
}

Status SaveStateFile(const std::string& path, const StateFile& s) {
  nlohmann::json j = {
      {"version", kStateFileVersion},
      {"incarnation", s.incarnation},
      {"epoch", s.disk.epoch},
      {"last_active_epoch", s.disk.last_active_epoch},
      {"admin_offline", s.disk.admin_offline},
      {"failed", s.disk.failed},
      {"failed_reason", s.disk.failed_reason},
      {"last_status", s.last_status},
      {"last_status_wall_ms", s.last_status_wall_ms},
      {"last_active_wall_ms", s.last_active_wall_ms},
      {"peer_status", s.peer_status},
      {"peer_epoch", s.peer_epoch},
      {"peer_incarnation", s.peer_incarnation},
      {"peer_heard_wall_ms", s.peer_heard_wall_ms},
  };
  return os::WriteFileAtomic(path, j.dump(2) + "\n", 0600);
}

}  // namespace tandem::daemon
