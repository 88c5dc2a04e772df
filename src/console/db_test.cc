#include "console/db.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "util/temp_dir.h"

namespace tandem::console {
namespace {

TEST(Db, CreatesSchemaWithWalAndMode0600) {
  TempDir dir("console-db");
  auto db = Db::Open(dir / "c.db");
  ASSERT_TRUE(db.ok()) << db.status().message();
  auto v = (*db)->SchemaVersion();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, KnownSchemaVersion());
  for (const char* t : {"settings", "clusters", "hosts", "users", "sessions", "audit"}) {
    auto n = (*db)->Count(t);
    ASSERT_TRUE(n.ok()) << t;
    EXPECT_EQ(*n, 0) << t;
  }
  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->Text(0), "wal");
  auto sync = (*db)->Prepare("PRAGMA synchronous");
  ASSERT_TRUE(sync.ok());
  ASSERT_TRUE(*sync->Step());
  EXPECT_EQ(sync->Int(0), 2);  // FULL
  struct stat st {};
  ASSERT_EQ(stat((dir / "c.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Db, ReopenKeepsDataAndDoesNotReapplyMigrations) {
  TempDir dir("console-db");
  {
    auto db = Db::Open(dir / "c.db");
    ASSERT_TRUE(db.ok());
    auto ins = (*db)->Prepare("INSERT INTO settings (key, value) VALUES (?1, ?2)");
    ASSERT_TRUE(ins.ok());
    ASSERT_TRUE(ins->Bind(1, std::string_view("k")).Bind(2, std::string_view("v")).Run().ok());
  }
  auto db = Db::Open(dir / "c.db");
  ASSERT_TRUE(db.ok()) << db.status().message();
  EXPECT_EQ(*(*db)->Count("settings"), 1);
  auto rows = (*db)->Prepare("SELECT COUNT(*) FROM schema_migrations");
  ASSERT_TRUE(rows.ok());
  ASSERT_TRUE(*rows->Step());
  EXPECT_EQ(rows->Int(0), KnownSchemaVersion());
}

TEST(Db, RefusesNewerSchema) {
  TempDir dir("console-db");
  {
    auto db = Db::Open(dir / "c.db");
    ASSERT_TRUE(db.ok());
    auto ins = (*db)->Prepare("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, 0)");
    ASSERT_TRUE(ins.ok());
    ASSERT_TRUE(ins->Bind(1, int64_t{KnownSchemaVersion() + 1}).Run().ok());
  }
  auto db = Db::Open(dir / "c.db");
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("newer than this tandemd"), std::string::npos)
      << db.status().message();
}

TEST(Db, BoundParametersAreNeverSql) {
  TempDir dir("console-db");
  auto db = Db::Open(dir / "c.db");
  ASSERT_TRUE(db.ok());
  const std::string evil = "x'); DROP TABLE users; --";
  auto ins = (*db)->Prepare("INSERT INTO settings (key, value) VALUES (?1, ?2)");
  ASSERT_TRUE(ins.ok());
  ASSERT_TRUE(ins->Bind(1, evil).Bind(2, evil).Run().ok());
  auto sel = (*db)->Prepare("SELECT value FROM settings WHERE key = ?1");
  ASSERT_TRUE(sel.ok());
  sel->Bind(1, evil);
  ASSERT_TRUE(*sel->Step());
  EXPECT_EQ(sel->Text(0), evil);
  EXPECT_TRUE((*db)->Count("users").ok());  // still there
}

TEST(Db, ConstraintsAndRollback) {
  TempDir dir("console-db");
  auto db = Db::Open(dir / "c.db");
  ASSERT_TRUE(db.ok());
  auto bad_role = (*db)->Prepare(
      "INSERT INTO users (name, role, password_hash, created_at_ms) VALUES ('a', 'root', 'h', 0)");
  ASSERT_TRUE(bad_role.ok());
  Status st = bad_role->Run();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().rfind("constraint:", 0), 0u) << st.message();
  // A session of a user that does not exist: foreign keys are on.
  auto orphan = (*db)->Prepare(
      "INSERT INTO sessions (token_sha256, user_id, created_at_ms, expires_at_ms) VALUES ('t', 99, 0, 1)");
  ASSERT_TRUE(orphan.ok());
  EXPECT_FALSE(orphan->Run().ok());
  {
    Transaction t(**db);
    ASSERT_TRUE(t.Begin().ok());
    auto ins = (*db)->Prepare("INSERT INTO settings (key, value) VALUES ('a', 'b')");
    ASSERT_TRUE(ins.ok());
    ASSERT_TRUE(ins->Run().ok());
  }  // not committed: rolled back
  EXPECT_EQ(*(*db)->Count("settings"), 0);
}

// Migration 6: host_history takes kind 'action'; the action rows of kind
// 'status' written before become 'action'; ids, other rows and the id
// sequence are kept.
TEST(Db, Migration6GivesHostActionsTheirOwnHistoryKind) {
  TempDir dir("console-db");
  {
    auto db = Db::Open(dir / "c.db");
    ASSERT_TRUE(db.ok());
    // host_history as schema version 5 had it, with rows of then.
    ASSERT_TRUE((*db)->Exec(R"sql(
DROP TABLE host_history;
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
INSERT INTO host_history VALUES (7, 1, 'status', 'h1', NULL, 'Unknown', 'Active', 'paired: x');
INSERT INTO host_history VALUES (8, 2, 'status', 'h1', 'c', 'Active', 'Active',
                                 'action offline requested by admin: accepted');
INSERT INTO host_history VALUES (9, 3, 'failover', 'h2', 'c', 'Standby', 'Active', 'failover: h2 active, was h1');
DELETE FROM schema_migrations WHERE version >= 6;
)sql").ok());
    auto bad = (*db)->Prepare("INSERT INTO host_history (at_ms, kind, host, old_status, new_status, reason) "
                              "VALUES (4, 'action', 'h1', 'Active', 'Active', 'r')");
    ASSERT_TRUE(bad.ok());
    ASSERT_FALSE(bad->Run().ok());  // not yet a kind
  }
  auto db = Db::Open(dir / "c.db");
  ASSERT_TRUE(db.ok()) << db.status().message();
  auto rows = (*db)->Prepare("SELECT id || '|' || kind || '|' || reason FROM host_history ORDER BY id");
  ASSERT_TRUE(rows.ok());
  std::vector<std::string> got;
  while (*rows->Step()) got.push_back(rows->Text(0));
  EXPECT_EQ(got, (std::vector<std::string>{"7|status|paired: x",
                                           "8|action|action offline requested by admin: accepted",
                                           "9|failover|failover: h2 active, was h1"}));
  auto ins = (*db)->Prepare("INSERT INTO host_history (at_ms, kind, host, old_status, new_status, reason) "
                            "VALUES (4, 'action', 'h1', 'Active', 'Active', 'r')");
  ASSERT_TRUE(ins.ok());
  ASSERT_TRUE(ins->Run().ok());
  auto last = (*db)->Prepare("SELECT MAX(id) FROM host_history");
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(*last->Step());
  EXPECT_EQ(last->Int(0), 10);  // the sequence went on
  auto other = (*db)->Prepare("INSERT INTO host_history (at_ms, kind, host, old_status, new_status, reason) "
                              "VALUES (5, 'other', 'h1', 'Active', 'Active', 'r')");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->Run().ok());
}

TEST(Db, OpenErrorNamesThePath) {
  auto db = Db::Open("/nonexistent-dir-for-tandem-test/c.db");
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("/nonexistent-dir-for-tandem-test/c.db"), std::string::npos);
}

}  // namespace
}  // namespace tandem::console
