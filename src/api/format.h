// Human renderings of the daemon's status JSON (docs/CLI.md documents every
// field): the appliance-style `cstate` line and the `ha status` table.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace tandem::api {

// "Local: R:PRIMARY S:ACTIVE/ONLINE CS:NONE P:1:1 HBT:UP RTT:1 E:3 LA:3 I:2 SI:42 Remote: ..."
std::string CStateLine(const nlohmann::json& status);

// Multi-line table of both hosts, VIP, most recent active and possible action.
std::string StatusTable(const nlohmann::json& status);

}  // namespace tandem::api
