#include "console/db.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

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

TEST(Db, OpenErrorNamesThePath) {
  auto db = Db::Open("/nonexistent-dir-for-tandem-test/c.db");
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("/nonexistent-dir-for-tandem-test/c.db"), std::string::npos);
}

}  // namespace
}  // namespace tandem::console
