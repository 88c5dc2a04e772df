// POST /api/v1/backup and POST /api/v1/restore (R-BK-1; docs/CONSOLE.md,
// "Backup and restore").
#include <string>

#include "console/api.h"
#include "console/api_internal.h"
#include "console/backup.h"

namespace tandem::console {

using namespace api_internal;
using nlohmann::json;

namespace {

Error GetPassphrase(const json& body, std::string* out) {
  if (Error e = GetString(body, "passphrase", out)) return e;
  if (out->size() < kBackupPassphraseMin || out->size() > kBackupPassphraseMax) {
    return Fail(400,
                "a passphrase has " + std::to_string(kBackupPassphraseMin) + " to " +
                    std::to_string(kBackupPassphraseMax) + " bytes; this one has " +
                    std::to_string(out->size()),
                "passphrase");
  }
  return std::nullopt;
}

}  // namespace

ApiResponse Api::Backup(const ApiRequest& r, Audit* audit) {
  json body;
  if (Error e = ParseBody(r, {"passphrase"}, &body)) return *e;
  std::string passphrase;
  if (Error e = GetPassphrase(body, &passphrase)) return *e;
  audit->target = "configuration";
  Result<json> dump = Status::Error("");
  {
    std::lock_guard<std::mutex> l(db_.mu());
    dump = DumpDeployment(db_);
  }
  if (!dump.ok()) return Internal(dump.status());
  // The slow key derivation runs outside the database lock.
  auto sealed = SealBackup(*dump, passphrase, NowMs(), options_.kdf);
  if (!sealed.ok()) return Fail(500, sealed.status().message());
  size_t rows = 0;
  for (const auto& [name, t] : (*dump)["tables"].items()) rows += t["rows"].size();
  Log(1, "console: configuration backup taken (" + std::to_string(rows) + " rows)");
  return ApiResponse{200, *sealed};
}

ApiResponse Api::Restore(const ApiRequest& r, Audit* audit) {
  json body;
  if (Error e = ParseBody(r, {"backup", "passphrase"}, &body, kRestoreBodyBytesMax)) return *e;
  if (!body.contains("backup")) return Fail(400, "missing field", "backup");
  if (!body["backup"].is_object()) {
    return Fail(400, "must be the object POST /api/v1/backup answered, got " + TypeName(body["backup"]),
                "backup");
  }
  std::string passphrase;
  if (Error e = GetPassphrase(body, &passphrase)) return *e;
  audit->target = "configuration";
  auto dump = OpenBackup(body["backup"], passphrase);
  if (!dump.ok()) return Fail(400, dump.status().message(), "backup");
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  if (st = RestoreDeployment(db_, *dump); !st.ok()) return Fail(400, st.message(), "backup");
  // Restoring re-deploys the full configuration (R-BK-1): one pending
  // change that the next deploy carries out for every host.
  auto has_pending = db_.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pending_changes'");
  if (!has_pending.ok()) return Internal(has_pending.status());
  auto row = has_pending->Step();
  if (!row.ok()) return Internal(row.status());
  if (*row) {
    auto ins = db_.Prepare("INSERT INTO pending_changes (at_ms, what) VALUES (?1, ?2)");
    if (!ins.ok()) return Internal(ins.status());
    if (st = ins->Bind(1, NowMs()).Bind(2, "configuration restored from a backup: deploy the full configuration")
                 .Run();
        !st.ok()) {
      return Internal(st);
    }
  }
  json counts = json::object();
  for (const auto& [name, tj] : (*dump)["tables"].items()) counts[name] = tj["rows"].size();
  audit->result = "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  Log(1, "console: configuration restored from a backup taken at " +
             Rfc3339Ms(body["backup"].value("created_at_ms", int64_t{0})) + "; every session ended");
  return ApiResponse{200, json{{"restored", counts}, {"sessions_ended", true}}};
}

}  // namespace tandem::console
