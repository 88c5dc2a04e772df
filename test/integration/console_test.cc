// The console role over real HTTPS: a lab with the console on the primary
// (`tandem lab up --console`), a client that trusts only the console's
// generated certificate. Authentication refusals (no token, wrong token,
// expired token, wrong password, a non-admin creating a user) are answered
// with the right status and change nothing; the audit shows every
// state-changing call; the first admin's password file is 0600; no secret
// reaches the daemon's log.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "api/httplib.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "console/db.h"
#include "lab/lab.h"
#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

constexpr int64_t kSessionTtlS = 8;

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-console");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    if (up_) (void)lab::Down(dir_);
    if (HasFailure()) std::cerr << LabLogTails(dir_);
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<httplib::SSLClient> Client() {
    // "https://a.b.c.d:port"
    std::string hostport = url_.substr(std::string("https://").size());
    size_t colon = hostport.rfind(':');
    auto cli = std::make_unique<httplib::SSLClient>(hostport.substr(0, colon),
                                                    std::stoi(hostport.substr(colon + 1)));
    cli->set_ca_cert_path(cert_.c_str());
    cli->enable_server_certificate_verification(true);
    cli->set_connection_timeout(10, 0);
    cli->set_read_timeout(30, 0);
    return cli;
  }

  struct Answer {
    int status = 0;
    json body;
  };
  Answer Call(const std::string& method, const std::string& path, const std::string& token,
              const std::string& body = "") {
    auto cli = Client();
    httplib::Headers h;
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    httplib::Result r = method == "GET"    ? cli->Get(path.c_str(), h)
                        : method == "POST" ? cli->Post(path.c_str(), h, body, "application/json")
                                           : cli->Delete(path.c_str(), h);
    if (!r) {
      ADD_FAILURE() << method << " " << path << ": " << httplib::to_string(r.error());
      return {};
    }
    json j = json::parse(r->body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r->body;
    return {r->status, j};
  }
  std::string Login(const std::string& user, const std::string& password) {
    Answer a = Call("POST", "/api/v1/sessions", "", json{{"user", user}, {"password", password}}.dump());
    EXPECT_EQ(a.status, 201) << a.body.dump();
    std::string token = a.body.value("token", "");
    tokens_.push_back(token);
    return token;
  }

  // The deployment as the database holds it, but for the audit: users and
  // sessions (read from the console's database file).
  std::string Snapshot() {
    auto db = console::Db::Open(db_file_);
    EXPECT_TRUE(db.ok()) << db.status().message();
    if (!db.ok()) return "";
    std::string out;
    for (const char* sql : {"SELECT name || '|' || role || '|' || password_hash FROM users ORDER BY id",
                            "SELECT token_sha256 || '|' || expires_at_ms FROM sessions ORDER BY token_sha256",
                            "SELECT name || '|' || role || '|' || address FROM hosts ORDER BY id"}) {
      auto s = (*db)->Prepare(sql);
      EXPECT_TRUE(s.ok());
      while (s.ok() && *s->Step()) out += s->Text(0) + "\n";
      out += "--\n";
    }
    return out;
  }

  void ExpectRefused(const std::string& what, const std::function<Answer()>& call, int status,
                     const std::string& code) {
    std::string before = Snapshot();
    Answer a = call();
    EXPECT_EQ(a.status, status) << what << ": " << a.body.dump();
    EXPECT_EQ(a.body["error"]["code"], code) << what << ": " << a.body.dump();
    EXPECT_EQ(Snapshot(), before) << what << ": a refused call changed the deployment";
  }

  std::string dir_, url_, cert_, password_file_, db_file_;
  std::vector<std::string> tokens_;
  bool up_ = false;
};

TEST_F(ConsoleTest, AuthenticationRefusalsChangeNothingAndAreAudited) {
  lab::LabOptions o = FastLabOptions(dir_);
  o.console = true;
  o.console_session_ttl_s = kSessionTtlS;
  auto lab = lab::Up(o);
  ASSERT_TRUE(lab.ok()) << lab.status().message();
  up_ = true;
  ASSERT_TRUE(lab->contains("api")) << lab->dump();
  const json& api = (*lab)["api"];
  url_ = api["url"];
  cert_ = api["tls_cert"];
  password_file_ = api["password_file"];
  EXPECT_EQ(api["user"], "admin");
  EXPECT_EQ(url_.rfind("https://" + (*lab)["hosts"][0]["address"].get<std::string>() + ":", 0), 0u) << url_;
  db_file_ = std::filesystem::path(password_file_).parent_path().string() + "/console.db";

  struct stat st {};
  ASSERT_EQ(stat(password_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pw = os::ReadFile(password_file_, 1024);
  ASSERT_TRUE(pw.ok());
  const std::string admin_password = pw->substr(0, pw->find('\n'));
  ASSERT_GE(admin_password.size(), 16u);

  std::string admin = Login("admin", admin_password);
  Answer hosts = Call("GET", "/api/v1/hosts", admin);
  ASSERT_EQ(hosts.status, 200) << hosts.body.dump();
  ASSERT_EQ(hosts.body["hosts"].size(), 1u);
  EXPECT_EQ(hosts.body["hosts"][0]["name"], "lab-primary");
  EXPECT_EQ(hosts.body["hosts"][0]["role"], "console");

  const std::string viewer_password = "viewer-password-5f1e";
  Answer created = Call("POST", "/api/v1/users", admin,
                        json{{"name", "vera"}, {"password", viewer_password}, {"role", "viewer"}}.dump());
  ASSERT_EQ(created.status, 201) << created.body.dump();
  std::string viewer = Login("vera", viewer_password);
  const std::string mallory =
      json{{"name", "mallory"}, {"password", "mallory-password-1"}, {"role", "admin"}}.dump();

  ExpectRefused("no token", [&] { return Call("POST", "/api/v1/users", "", mallory); }, 401, "unauthenticated");
  ExpectRefused("wrong token", [&] { return Call("POST", "/api/v1/users", std::string(64, '0'), mallory); }, 401,
                "unauthenticated");
  ExpectRefused("wrong password",
                [&] {
                  return Call("POST", "/api/v1/sessions", "",
                              json{{"user", "admin"}, {"password", "not-the-password"}}.dump());
                },
                401, "unauthenticated");
  ExpectRefused("non-admin creating a user", [&] { return Call("POST", "/api/v1/users", viewer, mallory); }, 403,
                "forbidden");
  ExpectRefused("unknown field",
                [&] {
                  return Call("POST", "/api/v1/users", admin,
                              json{{"name", "x1"}, {"password", "long-enough-pw"}, {"role", "viewer"}, {"admin", true}}
                                  .dump());
                },
                400, "invalid_argument");

  // Expiry: a session older than session_ttl_s is refused (bounded wait).
  std::string short_lived = Login("admin", admin_password);
  Answer me = Call("GET", "/api/v1/sessions/current", short_lived);
  ASSERT_EQ(me.status, 200);
  const int64_t expires_ms = me.body["expires_at_ms"];
  ASSERT_TRUE(WaitFor((kSessionTtlS + 30) * 1000, [&] {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return now > expires_ms + 100;
  }));
  ExpectRefused("expired token", [&] { return Call("POST", "/api/v1/users", short_lived, mallory); }, 401,
                "unauthenticated");

  // The audit (newest first) has every state-changing call, refused or not.
  std::string fresh = Login("admin", admin_password);
  Answer audit = Call("GET", "/api/v1/audit?limit=1000", fresh);
  ASSERT_EQ(audit.status, 200) << audit.body.dump();
  std::vector<std::string> seen;
  for (const json& e : audit.body["entries"]) {
    seen.push_back(e["user"].get<std::string>() + " " + e["action"].get<std::string>() + " " +
                   std::to_string(e["status"].get<int>()));
    EXPECT_FALSE(e["at"].get<std::string>().empty());
    EXPECT_FALSE(e["result"].get<std::string>().empty());
  }
  std::reverse(seen.begin(), seen.end());
  const std::vector<std::string> want = {
      "admin POST /api/v1/sessions 201",  "admin POST /api/v1/users 201",
      "vera POST /api/v1/sessions 201",   "- POST /api/v1/users 401",
      "- POST /api/v1/users 401",         "admin POST /api/v1/sessions 401",
      "vera POST /api/v1/users 403",      "admin POST /api/v1/users 400",
      "admin POST /api/v1/sessions 201",  "admin POST /api/v1/users 401",
      "admin POST /api/v1/sessions 201"};
  EXPECT_EQ(seen, want);

  // R-NF-3: the console's counters are part of tandemd's metrics.
  CommandResult m = RunCommand({BinDir() + "/ha", "metrics", "--config", dir_ + "/primary/tandemd.toml"});
  EXPECT_NE(m.output.find("tandem_console_logins_total 4"), std::string::npos) << m.output;
  EXPECT_NE(m.output.find("tandem_console_login_failures_total 1"), std::string::npos) << m.output;

  Answer out = Call("DELETE", "/api/v1/sessions/current", fresh);
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/hosts", fresh).status, 401);

  // No secret in the daemon's log or output, but the console did log.
  std::string logs;
  for (const char* f : {"/primary/tandemd.log", "/primary/tandemd.out"}) {
    std::ifstream in(dir_ + f);
    std::stringstream ss;
    ss << in.rdbuf();
    logs += ss.str();
  }
  EXPECT_NE(logs.find("console: serving /api/v1 on " + url_), std::string::npos) << logs;
  EXPECT_NE(logs.find("audit: user=vera"), std::string::npos);
  EXPECT_EQ(logs.find(admin_password), std::string::npos) << "the admin password was logged";
  EXPECT_EQ(logs.find(viewer_password), std::string::npos) << "a user's password was logged";
  EXPECT_EQ(logs.find("mallory-password-1"), std::string::npos);
  for (const std::string& t : tokens_) {
    ASSERT_FALSE(t.empty());
    EXPECT_EQ(logs.find(t), std::string::npos) << "a session token was logged";
  }
}

}  // namespace
}  // namespace tandem::itest
