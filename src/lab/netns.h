// The lab on network namespaces (`tandem lab up --netns`): a primary, a
// secondary, a client and two managed hosts, each in its own namespace, on
// one bridge (itself in a "switch" namespace), 198.18.0.0/24, no default
// routes; optionally a crossover veth pair between primary and secondary
// (198.18.1.0/30). Nothing is created in the caller's namespace.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::lab {

struct NetnsPlan {
  std::string id;  // short, unique: namespaces are "tdm<id>-<role>"
  bool crossover = false;
  std::string Ns(const std::string& role) const { return "tdm" + id + "-" + role; }
};

// Address plan (all /24 on the bridge unless noted).
inline constexpr char kNetnsPrimary[] = "198.18.0.1";
inline constexpr char kNetnsSecondary[] = "198.18.0.2";
inline constexpr char kNetnsVip[] = "198.18.0.10";
inline constexpr char kNetnsClient[] = "198.18.0.100";
inline constexpr const char* kNetnsManaged[] = {"198.18.0.11", "198.18.0.12"};
inline constexpr char kNetnsCrossoverPrimary[] = "198.18.1.1";    // /30
inline constexpr char kNetnsCrossoverSecondary[] = "198.18.1.2";  // /30

// Creates every namespace, link and address. On failure, removes whatever
// it created and returns the failing command.
Status CreateNetns(const NetnsPlan& plan);

// Deletes the plan's namespaces (and with them every link in them).
void DestroyNetns(const NetnsPlan& plan);

// A fresh plan id nobody uses yet.
std::string NewNetnsId();

// argv prefix that runs a command inside `ns`.
std::vector<std::string> InNetns(const std::string& ns);

}  // namespace tandem::lab
