// A console's deployment on an unclustered managed host (docs/CONSOLE.md,
// "Clusters formed by a deploy"): the document the agent stored
// (docs/formats/deployment.md) turns the host's own agent-only file into
// the configuration of one host of an HA pair. tandemd (src/exe/tandemd.cc)
// starts from it and restarts when a newer document changes its identity.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "util/status.h"

namespace tandem::config {

// What of a deployment document (already validated by the agent) decides
// whether and how this host runs an HA role: cluster, key, VIP, this host's
// name and role, the members' and crossover addresses, replication on or
// off. "" when the document forms no HA pair here (NoClusterReason says
// why). Two documents with the same identity differ only in options that a
// running pair takes live (or logs as taking effect at restart), so moving
// from one to the other needs no restart. Holds the key: never log it.
std::string DeploymentIdentity(const nlohmann::json& document);

// Why DeploymentIdentity(document) is "" (for the log); "" when it is not.
std::string NoClusterReason(const nlohmann::json& document);

// The configuration of an agent-only host (`local`, loaded from its file)
// with the cluster of `document` (DeploymentIdentity non-empty): its own
// file plus the [cluster], [heartbeat], [connectivity] and [replication]
// sections the document implies — ports from [agent] heartbeat_port and
// replication_port, the store from agent.store_dir, the VIP in loopback
// mode when it is in 127/8 (else interface mode on host.interface) — parsed
// and validated like any file. Writes the cluster key to
// <agent.state_dir>/cluster.key (0600) first. Error: what is wrong, and the
// host stays unclustered.
Result<Config> WithDeployment(const Config& local, const nlohmann::json& document);

// The TOML text WithDeployment parses (for tests and `tandemd --check`);
// `key_file` is where the key is (or will be) written.
Result<std::string> DeploymentToml(const Config& local, const nlohmann::json& document,
                                   const std::string& key_file);

}  // namespace tandem::config
