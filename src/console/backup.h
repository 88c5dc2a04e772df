// Configuration backup and restore of the console (R-BK-1; docs/CONSOLE.md,
// "Backup and restore").
//
// A backup is the deployment as the database holds it: every table but the
// ones that are not configuration (sessions, the audit, the migration log,
// host status history) and, in tables that keep them, the columns that are
// observations rather than configuration (a host's last facts and status).
// It is sealed with a passphrase (scrypt -> AES-256-GCM, the envelope's
// header authenticated too), because it holds secrets: password hashes and
// the agent keys the console uses to reach its hosts.
//
// Pure functions of a Db; the caller holds db.mu().
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "console/db.h"
#include "console/password.h"
#include "util/status.h"

namespace tandem::console {

inline constexpr const char* kBackupFormat = "tandem-console-backup";
inline constexpr int kBackupVersion = 1;
inline constexpr size_t kBackupPassphraseMin = 12;
inline constexpr size_t kBackupPassphraseMax = 1024;
inline constexpr size_t kBackupRowsMax = 200000;

// {"schema_version", "tables": {name: {"columns": [...], "rows": [[...]]}}}.
Result<nlohmann::json> DumpDeployment(Db& db);

// Replaces every table of the dump with its rows, in one transaction (the
// caller's: REQUIRES an open transaction): tables and columns must be those
// of this database's schema (same schema version), every value an integer,
// a string or null. Sessions end (the users may have changed). Error: what
// is wrong, nothing changed once the caller rolls back.
Status RestoreDeployment(Db& db, const nlohmann::json& dump);

// The sealed envelope:
// {"format", "version", "created_at_ms", "kdf": {"alg": "scrypt", "ln", "r", "p",
//  "salt"}, "cipher": "aes-256-gcm", "iv", "data": base64(ciphertext || tag)}.
Result<nlohmann::json> SealBackup(const nlohmann::json& dump, const std::string& passphrase,
                                  int64_t created_at_ms, const ScryptParams& kdf = kScryptDefault);
// Error "wrong passphrase or damaged backup" when authentication fails;
// otherwise names what is malformed.
Result<nlohmann::json> OpenBackup(const nlohmann::json& envelope, const std::string& passphrase);

}  // namespace tandem::console
