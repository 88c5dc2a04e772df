#include "console/db.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>

namespace tandem::console {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// Migration N turns schema N-1 into N. Append only: a released migration is
// never edited (databases in the field already ran it).
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE clusters (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  vip TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE hosts (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('console', 'managed')),
  address TEXT NOT NULL,
  cluster_id INTEGER REFERENCES clusters(id) ON DELETE SET NULL,
  added_at_ms INTEGER NOT NULL
);
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
  password_hash TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
  token_sha256 TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  user TEXT NOT NULL,
  remote TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  result TEXT NOT NULL,
  status INTEGER NOT NULL
);
)sql"},
    // Paired hosts (the agent channel), their last facts and HA status, and
    // the history of status changes and failovers.
    {2, R"sql(
ALTER TABLE hosts ADD COLUMN agent_address TEXT;
ALTER TABLE hosts ADD COLUMN agent_cert_pem TEXT;
ALTER TABLE hosts ADD COLUMN agent_key TEXT;
ALTER TABLE hosts ADD COLUMN facts_json TEXT;
ALTER TABLE hosts ADD COLUMN facts_at_ms INTEGER;
ALTER TABLE hosts ADD COLUMN status TEXT NOT NULL DEFAULT 'Unknown';
ALTER TABLE hosts ADD COLUMN status_reason TEXT;
CREATE UNIQUE INDEX hosts_by_agent_address ON hosts(agent_address);
CREATE TABLE host_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('status', 'failover')),
  host TEXT NOT NULL,
  cluster TEXT,
  old_status TEXT NOT NULL,
  new_status TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX host_history_by_host ON host_history(host, id);
)sql"},
    // HA clusters' members, addresses, advanced options and license (R-DEP-2..4,
    // R-CL-2); the HA licenses; the undeployed configuration changes.
    {3, R"sql(
CREATE TABLE licenses (
  id INTEGER PRIMARY KEY,
  license_id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('ha')),
  issued_to TEXT NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  document TEXT NOT NULL,
  added_at_ms INTEGER NOT NULL
);
ALTER TABLE clusters ADD COLUMN primary_host_id INTEGER REFERENCES hosts(id);
ALTER TABLE clusters ADD COLUMN secondary_host_id INTEGER REFERENCES hosts(id);
ALTER TABLE clusters ADD COLUMN primary_ip TEXT;
ALTER TABLE clusters ADD COLUMN secondary_original_name TEXT;
ALTER TABLE clusters ADD COLUMN options_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clusters ADD COLUMN license_id INTEGER REFERENCES licenses(id);
CREATE UNIQUE INDEX clusters_by_license ON clusters(license_id);
CREATE TABLE pending_changes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  what TEXT NOT NULL
);
)sql"},
    // Deployment (docs/CONSOLE.md, "Deploying"): the console-wide revision
    // counter and, per host, the revision its agent last accepted.
    {4, R"sql(
CREATE TABLE deploy_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL,
  deployed_at_ms INTEGER NOT NULL
);
ALTER TABLE hosts ADD COLUMN deployed_revision INTEGER;
ALTER TABLE hosts ADD COLUMN deployed_at_ms INTEGER;
ALTER TABLE hosts ADD COLUMN deployed_document TEXT;
)sql"},
    // Clusters formed by a deploy (docs/CONSOLE.md): the cluster's key,
    // made at its first deploy (64 hex digits; never answered by the API).
    {5, R"sql(
ALTER TABLE clusters ADD COLUMN cluster_key TEXT;
)sql"},
    // Host actions (docs/CONSOLE.md, "Host actions") get history rows of
    // their own kind, 'action' (SQLite cannot change a CHECK in place: the
    // table is rebuilt, ids kept); the action rows written before as kind
    // 'status' (old = new status, reason "action ...") become 'action'.
    {6, R"sql(
CREATE TABLE host_history_v6 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('status', 'failover', 'action')),
  host TEXT NOT NULL,
  cluster TEXT,
  old_status TEXT NOT NULL,
  new_status TEXT NOT NULL,
  reason TEXT NOT NULL
);
INSERT INTO host_history_v6 (id, at_ms, kind, host, cluster, old_status, new_status, reason)
  SELECT id, at_ms, kind, host, cluster, old_status, new_status, reason FROM host_history;
DROP TABLE host_history;
ALTER TABLE host_history_v6 RENAME TO host_history;
CREATE INDEX host_history_by_host ON host_history(host, id);
UPDATE host_history SET kind = 'action'
  WHERE kind = 'status' AND old_status = new_status AND reason LIKE 'action % requested by %';
)sql"},
};

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int KnownSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

// ---- Stmt ----

Stmt::Stmt(Stmt&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), bind_error_(std::move(other.bind_error_)) {
  other.stmt_ = nullptr;
}

Stmt::~Stmt() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Stmt& Stmt::Bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK && bind_error_.ok()) {
    bind_error_ = Status::Error(std::string("bind: ") + sqlite3_errmsg(db_));
  }
  return *this;
}

Stmt& Stmt::Bind(int index, std::string_view text) {
  if (sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT,
                          SQLITE_UTF8) != SQLITE_OK &&
      bind_error_.ok()) {
    bind_error_ = Status::Error(std::string("bind: ") + sqlite3_errmsg(db_));
  }
  return *this;
}

Stmt& Stmt::BindNull(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK && bind_error_.ok()) {
    bind_error_ = Status::Error(std::string("bind: ") + sqlite3_errmsg(db_));
  }
  return *this;
}

Result<bool> Stmt::Step() {
  if (!bind_error_.ok()) return bind_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  std::string m = sqlite3_errmsg(db_);
  sqlite3_reset(stmt_);  // no longer active: a COMMIT may follow
  if (rc == SQLITE_DONE) return false;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) return Status::Error("constraint: " + m);
  return Status::Error(m);
}

Status Stmt::Run() {
  auto r = Step();
  if (!r.ok()) return r.status();
  if (*r) return Status::Error("statement returned a row");
  return Status::Ok();
}

int64_t Stmt::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Stmt::Text(int column) const {
  const unsigned char* p = sqlite3_column_text(stmt_, column);
  if (p == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

bool Stmt::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
bool Stmt::IsInteger(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_INTEGER; }

// ---- Db ----

Result<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  // Created 0600 before SQLite opens it: users' password hashes and session
  // digests are in there. (SQLite creates -wal/-shm with the same mode.)
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      return Status::Error(path + ": cannot create: " + std::strerror(errno));
    }
    if (fd >= 0) ::close(fd);
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string m = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return Status::Error(path + ": cannot open database: " + m);
  }
  std::unique_ptr<Db> db(new Db(raw, path));
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  sqlite3_extended_result_codes(raw, 1);
  // journal_mode answers with a row (the mode now in effect): check it.
  {
    auto wal = db->Prepare("PRAGMA journal_mode=WAL");
    if (!wal.ok()) return wal.status().Prefix(path + ": ");
    auto row = wal->Step();
    if (!row.ok() || !*row || wal->Text(0) != "wal") {
      return Status::Error(path + ": cannot switch the database to WAL mode");
    }
  }  // finalized: an unfinished statement would block COMMIT
  Status st2 = db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (!st2.ok()) return st2.Prefix(path + ": ");
  Status m = db->Migrate();
  if (!m.ok()) return m.Prefix(path + ": ");
  return db;
}

Db::~Db() { sqlite3_close_v2(db_); }

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, &tail);
  if (rc != SQLITE_OK) return Status::Error(std::string("prepare: ") + sqlite3_errmsg(db_));
  if (stmt == nullptr) return Status::Error("prepare: empty statement");
  return Stmt(db_, stmt);
}

Status Db::Exec(std::string_view sql) {
  const char* p = sql.data();
  const char* end = sql.data() + sql.size();
  while (p < end) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db_, p, static_cast<int>(end - p), &stmt, &tail);
    if (rc != SQLITE_OK) return Status::Error(std::string("prepare: ") + sqlite3_errmsg(db_));
    if (stmt == nullptr) break;  // only whitespace or comments left
    Stmt s(db_, stmt);
    while (true) {
      auto r = s.Step();
      if (!r.ok()) return r.status();
      if (!*r) break;
    }
    p = tail;
  }
  return Status::Ok();
}

Status Db::Begin() { return Exec("BEGIN IMMEDIATE"); }
Status Db::Commit() { return Exec("COMMIT"); }
void Db::Rollback() {
  if (sqlite3_get_autocommit(db_) == 0) (void)Exec("ROLLBACK");
}

Result<int> Db::SchemaVersion() {
  auto s = Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!s.ok()) return s.status();
  auto r = s->Step();
  if (!r.ok()) return r.status();
  return static_cast<int>(s->Int(0));
}

Result<int64_t> Db::Count(std::string_view table) {
  static constexpr std::string_view kTables[] = {"settings", "clusters", "hosts",
                                                 "users",    "sessions", "audit"};
  static constexpr const char* kSql[] = {
      "SELECT COUNT(*) FROM settings", "SELECT COUNT(*) FROM clusters",
      "SELECT COUNT(*) FROM hosts",    "SELECT COUNT(*) FROM users",
      "SELECT COUNT(*) FROM sessions", "SELECT COUNT(*) FROM audit"};
  for (size_t i = 0; i < std::size(kTables); ++i) {
    if (kTables[i] != table) continue;
    auto s = Prepare(kSql[i]);
    if (!s.ok()) return s.status();
    auto r = s->Step();
    if (!r.ok()) return r.status();
    return s->Int(0);
  }
  TANDEM_CHECK(false && "Count: not a schema table");
  return Status::Error("unreachable");
}

Status Db::Migrate() {
  TANDEM_RETURN_IF_ERROR(
      Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
           " version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"));
  auto current = SchemaVersion();
  if (!current.ok()) return current.status();
  if (*current > KnownSchemaVersion()) {
    return Status::Error("database schema version " + std::to_string(*current) +
                         " is newer than this tandemd's (" + std::to_string(KnownSchemaVersion()) +
                         "); refusing to use it");
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= *current) continue;
    Transaction t(*this);
    TANDEM_RETURN_IF_ERROR(t.Begin());
    Status st = Exec(m.sql);
    if (!st.ok()) return st.Prefix("migration " + std::to_string(m.version) + ": ");
    auto ins = Prepare("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)");
    if (!ins.ok()) return ins.status();
    TANDEM_RETURN_IF_ERROR(ins->Bind(1, int64_t{m.version}).Bind(2, WallMs()).Run());
    TANDEM_RETURN_IF_ERROR(t.Commit());
  }
  return Status::Ok();
}

}  // namespace tandem::console
