// Vocabulary of the HA core: roles, statuses, admin modes and the state a
// host advertises to its peer in every heartbeat. Pure data, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::ha {

// Fixed at cluster creation (REQUIREMENTS.md section 6).
enum class Role : uint8_t { kPrimary = 1, kSecondary = 2 };

// Host status (REQUIREMENTS.md section 6). Values are wire-stable: they are
// carried in heartbeats and persisted in the state file. Never renumber.
enum class HostStatus : uint8_t {
  kUnknown = 0,         // cannot be read (only ever shown for a silent peer)
  kStarting = 1,        // daemon up, deciding (waiting for peer or dead time)
  kActive = 2,          // services running, VIP held
  kStandby = 3,         // no services, ready to take over
  kFailed = 4,          // sticky until `ha restore`
  kOffline = 5,         // admin set offline
  kSettingOffline = 6,  // transition in progress
  kSettingOnline = 7,   // transition in progress
  // Reserved for later issues (replication, console):
  kSynchronizing = 8,
  kRestoring = 9,
  kNeedsLicense = 10,
  kNeedsUpgrade = 11,
  kUpgrading = 12,
};
constexpr uint8_t kHostStatusMax = 12;

enum class AdminMode : uint8_t { kOnline = 1, kOffline = 2 };

std::string_view RoleName(Role r);             // "PRIMARY" / "SECONDARY"
std::string_view StatusName(HostStatus s);     // "ACTIVE", "SETTING_OFFLINE", ...
std::string_view StatusDisplay(HostStatus s);  // "Active", "Setting Offline", ...
std::string_view AdminName(AdminMode a);       // "ONLINE" / "OFFLINE"
std::optional<Role> ParseRole(std::string_view s);  // "primary"/"PRIMARY"
std::optional<HostStatus> StatusFromWire(uint8_t v);

// What one host tells the other in every heartbeat (and its ACK). The HA
// state machine consumes it as the PeerHeartbeat event. All request/response
// fields are level-triggered ids, so a lost packet is repaired by the next.
struct Advert {
  Role role = Role::kPrimary;
  HostStatus status = HostStatus::kStarting;
  AdminMode admin = AdminMode::kOnline;
  uint64_t epoch = 0;  // data generation: bumped each time the host becomes Active
  // The sender was the Active host of `epoch` (it created that generation):
  // breaks start-up ties in favour of the last active host.
  bool active_in_epoch = false;
  // Sender finished releasing and hands the active role to the receiver
  // (giveback, takeover, manual failover, controlled failover).
  bool handover = false;
  // Sender's latest local connectivity-test verdict (true if it has no peers).
  bool connectivity_ok = true;
  // Standby asks the active to give the role to it: nonzero id, echoed below.
  uint32_t takeover_request = 0;
  // Active asks the standby to run its own connectivity test (R-NC-2).
  uint32_t conn_check_request = 0;
  // Answer to the peer's conn_check_request: the id answered, and the verdict.
  uint32_t conn_check_answer_id = 0;
  bool conn_check_answer_ok = false;

  bool operator==(const Advert&) const = default;
};

}  // namespace tandem::ha
