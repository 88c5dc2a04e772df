#include "ha/types.h"

namespace tandem::ha {

std::string_view RoleName(Role r) { return r == Role::kPrimary ? "PRIMARY" : "SECONDARY"; }

std::string_view StatusName(HostStatus s) {
  switch (s) {
    case HostStatus::kUnknown: return "UNKNOWN";
    case HostStatus::kStarting: return "STARTING";
    case HostStatus::kActive: return "ACTIVE";
    case HostStatus::kStandby: return "STANDBY";
    case HostStatus::kFailed: return "FAILED";
    case HostStatus::kOffline: return "OFFLINE";
    case HostStatus::kSettingOffline: return "SETTING_OFFLINE";
    case HostStatus::kSettingOnline: return "SETTING_ONLINE";
    case HostStatus::kSynchronizing: return "SYNCHRONIZING";
    case HostStatus::kRestoring: return "RESTORING";
    case HostStatus::kNeedsLicense: return "NEEDS_LICENSE";
    case HostStatus::kNeedsUpgrade: return "NEEDS_UPGRADE";
    case HostStatus::kUpgrading: return "UPGRADING";
  }
  return "UNKNOWN";
}

std::string_view StatusDisplay(HostStatus s) {
  switch (s) {
    case HostStatus::kUnknown: return "Unknown";
    case HostStatus::kStarting: return "Starting";
    case HostStatus::kActive: return "Active";
    case HostStatus::kStandby: return "Standby";
    case HostStatus::kFailed: return "Failed";
    case HostStatus::kOffline: return "Offline";
    case HostStatus::kSettingOffline: return "Setting Offline";
    case HostStatus::kSettingOnline: return "Setting Online";
    case HostStatus::kSynchronizing: return "Synchronizing";
    case HostStatus::kRestoring: return "Restoring";
    case HostStatus::kNeedsLicense: return "Needs License";
    case HostStatus::kNeedsUpgrade: return "Needs Upgrade";
    case HostStatus::kUpgrading: return "Upgrading";
  }
  return "Unknown";
}

std::string_view AdminName(AdminMode a) { return a == AdminMode::kOnline ? "ONLINE" : "OFFLINE"; }

std::optional<Role> ParseRole(std::string_view s) {
  if (s == "primary" || s == "PRIMARY") return Role::kPrimary;
  if (s == "secondary" || s == "SECONDARY") return Role::kSecondary;
  return std::nullopt;
}

std::optional<HostStatus> StatusFromWire(uint8_t v) {
  if (v > kHostStatusMax) return std::nullopt;
  return static_cast<HostStatus>(v);
}

}  // namespace tandem::ha
