#include "console/backup.h"

#include <gtest/gtest.h>

#include "console/api.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr ScryptParams kFast{10, 8, 1};
constexpr char kPassphrase[] = "correct horse battery";

// Every row of every configuration table, as text.
std::string Rows(Db& db) {
  std::lock_guard<std::mutex> l(db.mu());
  auto d = DumpDeployment(db);
  EXPECT_TRUE(d.ok()) << d.status().message();
  return d.ok() ? (*d)["tables"].dump() : "";
}

class BackupTest : public ::testing::Test {
 protected:
  std::unique_ptr<Db> Open(const std::string& name) {
    auto db = Db::Open(dir_ / name);
    EXPECT_TRUE(db.ok()) << db.status().message();
    return db.ok() ? std::move(*db) : nullptr;
  }
  void Fill(Db& db) {
    bool created = false;
    ASSERT_TRUE(EnsureInitialAdmin(db, dir_ / "admin.password", kFast, 1000, &created).ok());
    ASSERT_TRUE(EnsureConsoleHost(db, "console-1", "198.18.0.5", 1000).ok());
    ASSERT_TRUE(db.Exec("INSERT INTO settings (key, value) VALUES ('colour', 'blue')").ok());
    ASSERT_TRUE(db.Exec("INSERT INTO sessions (token_sha256, user_id, created_at_ms, expires_at_ms) "
                        "VALUES ('ab', 1, 1, 99999999999999)").ok());
  }
  json Sealed(Db& db) {
    std::lock_guard<std::mutex> l(db.mu());
    auto d = DumpDeployment(db);
    EXPECT_TRUE(d.ok());
    auto s = SealBackup(*d, kPassphrase, 5000, kFast);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return *s;
  }
  Status Restore(Db& db, const json& envelope, const std::string& passphrase) {
    auto dump = OpenBackup(envelope, passphrase);
    if (!dump.ok()) return dump.status();
    std::lock_guard<std::mutex> l(db.mu());
    Transaction t(db);
    TANDEM_RETURN_IF_ERROR(t.Begin());
    TANDEM_RETURN_IF_ERROR(RestoreDeployment(db, *dump));
    return t.Commit();
  }

  TempDir dir_;
};

TEST_F(BackupTest, RoundTripIntoAFreshDatabaseRestoresEveryConfigurationRow) {
  auto a = Open("a.db");
  Fill(*a);
  json env = Sealed(*a);
  // Nothing of the content is readable in the envelope.
  EXPECT_EQ(env.dump().find("colour"), std::string::npos);
  EXPECT_EQ(env.dump().find("scrypt$"), std::string::npos);
  EXPECT_EQ(env["format"], kBackupFormat);

  auto b = Open("b.db");  // "wiped": a new console
  ASSERT_TRUE(b->Exec("INSERT INTO settings (key, value) VALUES ('stale', 'x')").ok());
  ASSERT_TRUE(Restore(*b, env, kPassphrase).ok());
  EXPECT_EQ(Rows(*b), Rows(*a));
  EXPECT_EQ(*b->Count("sessions"), 0);  // not configuration: not carried, and ended
  EXPECT_EQ(*a->Count("sessions"), 1);
}

TEST_F(BackupTest, WrongPassphraseTamperingAndMismatchesChangeNothing) {
  auto a = Open("a.db");
  Fill(*a);
  json env = Sealed(*a);
  auto b = Open("b.db");
  ASSERT_TRUE(b->Exec("INSERT INTO settings (key, value) VALUES ('keep', 'me')").ok());
  const std::string before = Rows(*b);

  auto expect_refused = [&](const json& e, const std::string& passphrase, const std::string& why) {
    Status st = Restore(*b, e, passphrase);
    EXPECT_FALSE(st.ok()) << why;
    EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
    EXPECT_EQ(Rows(*b), before) << why;
  };
  expect_refused(env, "incorrect horse battery", "wrong passphrase or damaged backup");
  json t = env;
  t["created_at_ms"] = 6000;  // the header is authenticated too
  expect_refused(t, kPassphrase, "wrong passphrase or damaged backup");
  t = env;
  std::string data = t["data"];
  data[10] = data[10] == 'A' ? 'B' : 'A';
  t["data"] = data;
  expect_refused(t, kPassphrase, "wrong passphrase or damaged backup");
  t = env;
  t["format"] = "something-else";
  expect_refused(t, kPassphrase, "not a Tandem console backup");
  t = env;
  t["kdf"]["ln"] = 40;
  expect_refused(t, kPassphrase, "unsupported scrypt parameters");
  t = env;
  t["iv"] = "zz";
  expect_refused(t, kPassphrase, "malformed");

  // Content that does not fit this schema, sealed properly.
  auto reseal = [&](json dump) {
    auto s = SealBackup(dump, kPassphrase, 1, kFast);
    EXPECT_TRUE(s.ok());
    return *s;
  };
  json dump;
  {
    std::lock_guard<std::mutex> l(a->mu());
    dump = *DumpDeployment(*a);
  }
  json d = dump;
  d["schema_version"] = d["schema_version"].get<int>() + 1;
  expect_refused(reseal(d), kPassphrase, "schema version");
  d = dump;
  d["tables"]["evil; DROP TABLE users"] = {{"columns", json::array()}, {"rows", json::array()}};
  expect_refused(reseal(d), kPassphrase, "a table this console does not");
  d = dump;
  d["tables"]["settings"]["columns"] = {"key", "value", "extra"};
  expect_refused(reseal(d), kPassphrase, "columns differ");
  d = dump;
  d["tables"]["settings"]["rows"].push_back(json{"only-one-value"});
  expect_refused(reseal(d), kPassphrase, "does not have 2 values");
  d = dump;
  d["tables"]["settings"]["rows"].push_back(json{"k", 1.5});
  expect_refused(reseal(d), kPassphrase, "neither an integer");
  d = dump;
  d["tables"]["settings"]["rows"].push_back(json{"colour", "red"});  // duplicate primary key
  expect_refused(reseal(d), kPassphrase, "settings");
  d = dump;
  d["tables"].erase("users");
  expect_refused(reseal(d), kPassphrase, "lacks table users");
}

}  // namespace
}  // namespace tandem::console
