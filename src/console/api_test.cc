#include "console/api.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <random>

#include "console/api_test_support.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

using test_support::kFast;
constexpr int64_t kTtlS = 600;

class ApiTest : public test_support::ApiFixture {
 protected:
  ApiTest() : ApiFixture("console-api") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("127.0.0.1"));
    ApiOptions options = Options();
    options.session_ttl_s = kTtlS;
    api_ = std::make_unique<Api>(*db_, std::move(options));
  }

  // Every row of every table but the audit: what a refused call must not change.
  std::string Snapshot() {
    std::string out;
    std::lock_guard<std::mutex> l(db_->mu());
    for (const char* sql :
         {"SELECT name || '|' || role || '|' || password_hash || '|' || created_at_ms FROM users ORDER BY id",
          "SELECT token_sha256 || '|' || user_id || '|' || expires_at_ms FROM sessions ORDER BY token_sha256",
          "SELECT name || '|' || role || '|' || address FROM hosts ORDER BY id",
          "SELECT name FROM clusters ORDER BY id", "SELECT key || '=' || value FROM settings ORDER BY key"}) {
      auto s = db_->Prepare(sql);
      EXPECT_TRUE(s.ok());
      while (*s->Step()) out += s->Text(0) + "\n";
      out += "--\n";
    }
    return out;
  }

  int64_t AuditRows() {
    std::lock_guard<std::mutex> l(db_->mu());
    return *db_->Count("audit");
  }

  json LastAudit(const std::string& admin_token) {
    ApiResponse r = Call("GET", "/api/v1/audit", admin_token, "", "", {{"limit", "1"}});
    EXPECT_EQ(r.status, 200);
    return r.body["entries"].empty() ? json() : r.body["entries"][0];
  }

  // A refused call: the status, the error form, the field, nothing changed
  // but one audit row when it was a state-changing call.
  void ExpectRefused(const std::string& what, const std::function<ApiResponse()>& call, int status,
                     const std::string& field, bool audited) {
    std::string before = Snapshot();
    int64_t audit_before = AuditRows();
    ApiResponse r = call();
    EXPECT_EQ(r.status, status) << what << ": " << r.body.dump();
    ASSERT_TRUE(r.body.contains("error")) << what;
    EXPECT_TRUE(r.body["error"]["code"].is_string()) << what;
    EXPECT_FALSE(r.body["error"]["message"].get<std::string>().empty()) << what;
    if (field.empty()) {
      EXPECT_TRUE(r.body["error"]["field"].is_null()) << what << ": " << r.body.dump();
    } else {
      EXPECT_EQ(r.body["error"]["field"], field) << what;
    }
    EXPECT_EQ(Snapshot(), before) << what << ": the refused call changed the database";
    EXPECT_EQ(AuditRows(), audit_before + (audited ? 1 : 0)) << what;
  }

};

TEST_F(ApiTest, InitialAdminPasswordFileIsPrivateAndCreatedOnce) {
  struct stat st {};
  ASSERT_EQ(stat((dir_ / "admin.password").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(admin_password_.size(), kInitialPasswordChars);
  bool created = true;
  ASSERT_TRUE(EnsureInitialAdmin(*db_, dir_ / "other.password", kFast, 0, &created).ok());
  EXPECT_FALSE(created);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "other.password"));
  std::string token = Login("admin", admin_password_);
  ApiResponse me = Call("GET", "/api/v1/sessions/current", token);
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.body["user"], "admin");
  EXPECT_EQ(me.body["role"], "admin");
}

TEST_F(ApiTest, LoginStoresOnlyTheTokenDigest) {
  std::string token = Login("admin", admin_password_);
  ASSERT_EQ(token.size(), 64u);
  std::string snap = Snapshot();
  EXPECT_EQ(snap.find(token), std::string::npos);
  EXPECT_NE(snap.find(Sha256Hex(token)), std::string::npos);
  EXPECT_EQ(snap.find(admin_password_), std::string::npos);
  // Two logins: two distinct sessions.
  EXPECT_NE(Login("admin", admin_password_), token);
}

TEST_F(ApiTest, AuthenticationRefusals) {
  std::string admin = Login("admin", admin_password_);
  ASSERT_EQ(Call("POST", "/api/v1/users", admin,
                 json{{"name", "vera"}, {"password", "viewer password 1"}, {"role", "viewer"}}.dump())
                .status,
            201);
  std::string viewer = Login("vera", "viewer password 1");
  const std::string new_user = json{{"name", "mallory"}, {"password", "mallory password"}, {"role", "admin"}}.dump();

  ExpectRefused("no token", [&] { return Call("POST", "/api/v1/users", "", new_user); }, 401, "", true);
  ExpectRefused("no token (read)", [&] { return Call("GET", "/api/v1/users"); }, 401, "", false);
  ExpectRefused("wrong token", [&] { return Call("POST", "/api/v1/users", std::string(64, 'a'), new_user); },
                401, "", true);
  ExpectRefused("malformed token", [&] { return Call("POST", "/api/v1/users", "xyz", new_user); }, 401, "", true);
  ExpectRefused("not Bearer",
                [&] {
                  ApiRequest r{"GET", "/api/v1/users", {}, "Basic " + admin, "", "", "127.0.0.1"};
                  return api_->Handle(r);
                },
                401, "", false);
  ExpectRefused("wrong password",
                [&] { return Call("POST", "/api/v1/sessions", "", json{{"user", "admin"}, {"password", "nope"}}.dump()); },
                401, "", true);
  EXPECT_EQ(LastAudit(admin)["user"], "admin");
  EXPECT_EQ(LastAudit(admin)["status"], 401);
  ExpectRefused("unknown user",
                [&] { return Call("POST", "/api/v1/sessions", "", json{{"user", "ghost"}, {"password", "x"}}.dump()); },
                401, "", true);
  EXPECT_EQ(LastAudit(admin)["user"], "-");  // a mistyped password in "user" never lands there
  ExpectRefused("non-admin creating a user", [&] { return Call("POST", "/api/v1/users", viewer, new_user); }, 403,
                "", true);
  json last = LastAudit(admin);
  EXPECT_EQ(last["user"], "vera");
  EXPECT_EQ(last["action"], "POST /api/v1/users");
  EXPECT_EQ(last["status"], 403);
  EXPECT_EQ(last["result"].get<std::string>().rfind("forbidden:", 0), 0u) << last.dump();
  ExpectRefused("non-admin listing users", [&] { return Call("GET", "/api/v1/users", viewer); }, 403, "", false);
  ExpectRefused("non-admin reading the audit", [&] { return Call("GET", "/api/v1/audit", viewer); }, 403, "", false);

  // Expiry: the token works until its TTL has passed, then never again.
  clock_.now_ms += kTtlS * 1000 - 1;
  EXPECT_EQ(Call("GET", "/api/v1/hosts", viewer).status, 200);
  clock_.now_ms += 1;
  ExpectRefused("expired token", [&] { return Call("POST", "/api/v1/users", admin, new_user); }, 401, "", true);
  ExpectRefused("expired token (read)", [&] { return Call("GET", "/api/v1/hosts", viewer); }, 401, "", false);
  std::string admin2 = Login("admin", admin_password_);
  ApiResponse users = Call("GET", "/api/v1/users", admin2);
  ASSERT_EQ(users.status, 200);
  ASSERT_EQ(users.body["users"].size(), 2u);  // admin, vera: no mallory
  EXPECT_EQ(log_.find(admin_password_), std::string::npos);
  EXPECT_EQ(log_.find(admin), std::string::npos);
  EXPECT_EQ(log_.find("viewer password 1"), std::string::npos);
}

// R-NF-2: password guessing is throttled per user name and per address;
// a throttled try is refused before the password is looked at, and the
// lock ends when the failures age out.
TEST_F(ApiTest, RepeatedWrongPasswordsAreThrottledUntilTheyAgeOut) {
  auto login = [&](const std::string& user, const std::string& password) {
    return Call("POST", "/api/v1/sessions", "", json{{"user", user}, {"password", password}}.dump());
  };
  for (int i = 0; i < kLoginFailuresPerUser; ++i) {
    EXPECT_EQ(login("admin", "wrong-password-" + std::to_string(i)).status, 401);
  }
  const std::string before = Snapshot();
  // Now even the right password is refused, and says for how long.
  ApiResponse r = login("admin", admin_password_);
  EXPECT_EQ(r.status, 429) << r.body.dump();
  EXPECT_EQ(r.body["error"]["code"], "too_many_requests");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("try again in 60 s"), std::string::npos)
      << r.body.dump();
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(api_->counters().login_throttled, 1u);
  EXPECT_NE(api_->MetricsText().find("tandem_console_login_throttled_total 1"), std::string::npos);
  // Another user name from the same address is not locked (yet).
  EXPECT_EQ(login("nobody", "wrong-password-x").status, 401);
  // The window passes: the right password works and clears the user's count.
  clock_.now_ms += kLoginFailureWindowMs;
  EXPECT_EQ(login("admin", admin_password_).status, 201);
  EXPECT_EQ(login("admin", "wrong-password-y").status, 401);
  EXPECT_EQ(login("admin", admin_password_).status, 201);
  // Enough failures from one address lock every user name from it (one
  // failure, "wrong-password-y", is already counted).
  for (int i = 0; i < kLoginFailuresPerAddress - 1; ++i) {
    EXPECT_EQ(login("user" + std::to_string(i), "wrong-password-z").status, 401);
  }
  EXPECT_EQ(login("admin", admin_password_).status, 429);
}

// R-BK-1 through the API: a backup taken, a change made, the backup
// restored: the change is gone, every session ended, both calls audited;
// refusals change nothing.
TEST_F(ApiTest, BackupAndRestoreThroughTheApi) {
  std::string admin = Login("admin", admin_password_);
  auto create_user = [&](const std::string& token, const std::string& name) {
    return Call("POST", "/api/v1/users", token,
                json{{"name", name}, {"password", "a-long-password-1"}, {"role", "viewer"}}.dump());
  };
  ASSERT_EQ(create_user(admin, "vera").status, 201);
  std::string viewer = Login("vera", "a-long-password-1");
  EXPECT_EQ(Call("POST", "/api/v1/backup", viewer, json{{"passphrase", "backup-passphrase"}}.dump()).status, 403);
  ApiResponse bad = Call("POST", "/api/v1/backup", admin, json{{"passphrase", "short"}}.dump());
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["field"], "passphrase");

  ApiResponse b = Call("POST", "/api/v1/backup", admin, json{{"passphrase", "backup-passphrase"}}.dump());
  ASSERT_EQ(b.status, 200) << b.body.dump();
  EXPECT_EQ(b.body["format"], "tandem-console-backup");
  const std::string at_backup = Snapshot();
  ASSERT_EQ(create_user(admin, "bob").status, 201);
  const std::string changed = Snapshot();

  ApiResponse wrong = Call("POST", "/api/v1/restore", admin,
                           json{{"backup", b.body}, {"passphrase", "another-passphrase"}}.dump());
  EXPECT_EQ(wrong.status, 400);
  EXPECT_EQ(wrong.body["error"]["field"], "backup");
  EXPECT_EQ(Snapshot(), changed);
  EXPECT_EQ(Call("POST", "/api/v1/restore", admin, json{{"backup", "text"}, {"passphrase", "backup-passphrase"}}.dump())
                .body["error"]["field"],
            "backup");

  ApiResponse ok = Call("POST", "/api/v1/restore", admin,
                        json{{"backup", b.body}, {"passphrase", "backup-passphrase"}}.dump());
  ASSERT_EQ(ok.status, 200) << ok.body.dump();
  EXPECT_EQ(ok.body["sessions_ended"], true);
  EXPECT_EQ(ok.body["restored"]["users"], 2);
  // Back to the backup's users; sessions are not configuration: all ended.
  std::string now = Snapshot();
  EXPECT_NE(now, changed);
  auto users_of = [](const std::string& snap) { return snap.substr(0, snap.find("--")); };
  EXPECT_EQ(users_of(now), users_of(at_backup));
  EXPECT_EQ(Call("GET", "/api/v1/hosts", admin).status, 401);
  std::string again = Login("admin", admin_password_);
  ApiResponse audit = Call("GET", "/api/v1/audit", again, "", "", {{"limit", "3"}});
  ASSERT_EQ(audit.status, 200);
  EXPECT_EQ(audit.body["entries"][1]["action"], "POST /api/v1/restore");
  EXPECT_EQ(audit.body["entries"][1]["result"], "ok");
}

TEST_F(ApiTest, CreateUserValidatesEveryField) {
  std::string admin = Login("admin", admin_password_);
  auto create = [&](const std::string& body, const std::string& ct = "application/json") {
    return [=, this] { return Call("POST", "/api/v1/users", admin, body, ct); };
  };
  ExpectRefused("unknown field", create(R"({"name":"u1","password":"long enough pw","role":"viewer","x":1})"), 400,
                "x", true);
  ExpectRefused("missing role", create(R"({"name":"u1","password":"long enough pw"})"), 400, "role", true);
  ExpectRefused("name not a string", create(R"({"name":7,"password":"long enough pw","role":"viewer"})"), 400,
                "name", true);
  ExpectRefused("bad name", create(R"({"name":"a b","password":"long enough pw","role":"viewer"})"), 400, "name",
                true);
  ExpectRefused("short password", create(R"({"name":"u1","password":"short","role":"viewer"})"), 400, "password",
                true);
  ExpectRefused("bad role", create(R"({"name":"u1","password":"long enough pw","role":"root"})"), 400, "role", true);
  ExpectRefused("duplicate key",
                create(R"({"name":"u1","password":"long enough pw","role":"viewer","role":"admin"})"), 400, "role",
                true);
  ExpectRefused("not JSON", create(R"({"name":)"), 400, "", true);
  ExpectRefused("not an object", create(R"(["name"])"), 400, "", true);
  ExpectRefused("wrong content type", create(R"({"name":"u1","password":"long enough pw","role":"viewer"})", "text/plain"),
                415, "", true);
  ExpectRefused("too large", create(std::string(kApiBodyBytesMax + 1, ' ')), 413, "", true);
  ExpectRefused("existing user", create(R"({"name":"admin","password":"long enough pw","role":"viewer"})"), 409,
                "name", true);
  ExpectRefused("query parameter", [&] {
    return Call("POST", "/api/v1/users", admin, R"({"name":"u1","password":"long enough pw","role":"viewer"})",
                "application/json", {{"force", "1"}});
  }, 400, "force", true);
  // The audit names the field; the password never appears in it.
  ApiResponse audit = Call("GET", "/api/v1/audit", admin, "", "", {{"limit", "1000"}});
  ASSERT_EQ(audit.status, 200);
  EXPECT_EQ(audit.body.dump().find("long enough pw"), std::string::npos);
  bool saw_field = false;
  for (const json& e : audit.body["entries"]) {
    saw_field = saw_field || e["result"].get<std::string>().find("(field password)") != std::string::npos;
  }
  EXPECT_TRUE(saw_field);
  // And a valid one goes through.
  ApiResponse ok = Call("POST", "/api/v1/users", admin, R"({"name":"u1","password":"long enough pw","role":"viewer"})");
  EXPECT_EQ(ok.status, 201) << ok.body.dump();
  EXPECT_EQ(ok.body["user"]["name"], "u1");
  json last = LastAudit(admin);
  EXPECT_EQ(last["result"], "ok");
  EXPECT_EQ(last["target"], "user u1");
  EXPECT_EQ(last["user"], "admin");
  EXPECT_EQ(Login("u1", "long enough pw").size(), 64u);
}

TEST_F(ApiTest, LogoutEndsTheSession) {
  std::string token = Login("admin", admin_password_);
  ApiResponse out = Call("DELETE", "/api/v1/sessions/current", token);
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/hosts", token).status, 401);
  std::string again = Login("admin", admin_password_);
  json last = LastAudit(again);
  EXPECT_EQ(last["action"], "POST /api/v1/sessions");  // the login just now
  ApiResponse all = Call("GET", "/api/v1/audit", again);
  bool saw_logout = false;
  for (const json& e : all.body["entries"]) {
    saw_logout = saw_logout || (e["action"] == "DELETE /api/v1/sessions/current" && e["result"] == "ok");
  }
  EXPECT_TRUE(saw_logout);
}

TEST_F(ApiTest, HostsAuditAndRouting) {
  std::string admin = Login("admin", admin_password_);
  ApiResponse hosts = Call("GET", "/api/v1/hosts", admin);
  ASSERT_EQ(hosts.status, 200);
  ASSERT_EQ(hosts.body["hosts"].size(), 1u);
  EXPECT_EQ(hosts.body["hosts"][0]["name"], "console-1");
  EXPECT_EQ(hosts.body["hosts"][0]["role"], "console");
  EXPECT_TRUE(hosts.body["hosts"][0]["cluster"].is_null());

  ExpectRefused("unknown path", [&] { return Call("GET", "/api/v1/nothing", admin); }, 404, "", false);
  ExpectRefused("unknown path, unauthenticated", [&] { return Call("GET", "/api/v1/nothing"); }, 401, "", false);
  ExpectRefused("wrong method", [&] { return Call("PUT", "/api/v1/hosts", admin); }, 405, "", true);
  ExpectRefused("unknown parameter", [&] { return Call("GET", "/api/v1/hosts", admin, "", "", {{"x", "1"}}); }, 400,
                "x", false);
  ExpectRefused("bad limit", [&] { return Call("GET", "/api/v1/audit", admin, "", "", {{"limit", "0"}}); }, 400,
                "limit", false);
  ExpectRefused("limit twice",
                [&] { return Call("GET", "/api/v1/audit", admin, "", "", {{"limit", "1"}, {"limit", "2"}}); }, 400,
                "limit", false);
  ExpectRefused("body on DELETE", [&] { return Call("DELETE", "/api/v1/sessions/current", admin, "{}"); }, 400, "",
                true);
  EXPECT_EQ(Call("GET", "/api/v1/hosts", admin).status, 200);  // the session survived that

  ApiResponse page = Call("GET", "/api/v1/audit", admin, "", "", {{"limit", "2"}});
  ASSERT_EQ(page.status, 200);
  ASSERT_EQ(page.body["entries"].size(), 2u);
  int64_t newest = page.body["entries"][0]["id"], next = page.body["entries"][1]["id"];
  EXPECT_GT(newest, next);
  ApiResponse older = Call("GET", "/api/v1/audit", admin, "", "",
                           {{"limit", "1"}, {"before", std::to_string(next)}});
  ASSERT_EQ(older.body["entries"].size(), 1u);
  EXPECT_LT(older.body["entries"][0]["id"].get<int64_t>(), next);
  EXPECT_EQ(page.body["entries"][0]["action"], "DELETE /api/v1/sessions/current");
  EXPECT_EQ(page.body["entries"][0]["remote"], "127.0.0.1");
  EXPECT_EQ(page.body["entries"][0]["at"].get<std::string>().rfind("2026-12-02T10:00:00", 0), 0u);
}

TEST_F(ApiTest, CountersCountWhatWasAnswered) {
  std::string admin = Login("admin", admin_password_);
  EXPECT_EQ(Call("POST", "/api/v1/sessions", "", R"({"user":"admin","password":"wrong"})").status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/hosts").status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/hosts", admin).status, 200);
  EXPECT_EQ(Call("DELETE", "/api/v1/sessions/current", admin).status, 200);
  ApiCounters c = api_->counters();
  EXPECT_EQ(c.requests, 5u);
  EXPECT_EQ(c.refused, 2u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(c.logins, 1u);
  EXPECT_EQ(c.login_failures, 1u);
  EXPECT_EQ(c.changes, 2u);  // the login and the logout
  std::string m = api_->MetricsText();
  EXPECT_NE(m.find("\ntandem_console_requests_total 5\n"), std::string::npos) << m;
  EXPECT_NE(m.find("\ntandem_console_login_failures_total 1\n"), std::string::npos) << m;
}

// R-NF-1: arbitrary requests get an error in the API's form and change
// nothing (but the audit), and nothing crashes.
TEST_F(ApiTest, ArbitraryInputIsRefusedInForm) {
  std::string admin = Login("admin", admin_password_);
  std::mt19937 rng(12345);
  auto bytes = [&](size_t n) {
    std::string b(n, '\0');
    for (char& c : b) c = static_cast<char>(rng() % 256);
    return b;
  };
  const std::vector<std::string> methods = {"GET", "POST", "PUT", "DELETE", "PATCH"};
  const std::vector<std::string> paths = {"/api/v1/users", "/api/v1/sessions", "/api/v1/audit",
                                          "/api/v1/hosts", "/api/v1/sessions/current", "/"};
  const std::vector<std::string> bodies = {R"({"name":{"a":1},"password":[],"role":null})",
                                           R"({"user":"admin","password":"x","user":"admin"})",
                                           R"({"name":"\u0000","password":"long enough pw","role":"viewer"})",
                                           "{\"name\":\"\xff\xfe\",\"password\":\"long enough pw\",\"role\":\"viewer\"}",
                                           "1e999", "[[[[[[[[[[]]]]]]]]]]", "null", ""};
  std::string before = Snapshot();
  for (int i = 0; i < 300; ++i) {
    std::string body = i % 3 == 0 ? bytes(rng() % 200) : bodies[rng() % bodies.size()];
    std::string token = i % 4 == 0 ? "" : i % 4 == 1 ? bytes(64) : admin;
    std::string path = paths[rng() % paths.size()];
    std::string method = methods[rng() % methods.size()];
    if (method == "POST" && path == "/api/v1/sessions") continue;  // may legitimately log in
    if (method == "DELETE" && path == "/api/v1/sessions/current" && body.empty()) continue;  // logout
    ApiResponse r = Call(method, path, token, body);
    if (r.status < 400) {
      EXPECT_EQ(method, "GET") << path << " " << body;
      continue;
    }
    ASSERT_TRUE(r.body.contains("error")) << r.body.dump();
    EXPECT_TRUE(r.body["error"]["code"].is_string());
    EXPECT_LT(r.status, 500) << r.body.dump();
  }
  EXPECT_EQ(Snapshot(), before);
}

TEST(ApiFormat, Rfc3339) {
  EXPECT_EQ(Rfc3339Ms(1796205600123), "2026-12-02T10:00:00.123Z");
  EXPECT_EQ(Rfc3339Ms(0), "1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace tandem::console
