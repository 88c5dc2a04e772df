// The console over real HTTPS on loopback: certificate generation, TLS
// verification by a client that trusts only that certificate, the API
// through the transport, and limits the transport enforces.
#include "console/console.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "api/httplib.h"

#include <filesystem>

#include "console/tls.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr ScryptParams kFast{10, 8, 1};

int Mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

ConsoleOptions Options(const std::string& state_dir) {
  ConsoleOptions o;
  o.state_dir = state_dir;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  o.host_name = "console-test";
  o.kdf = kFast;
  return o;
}

std::unique_ptr<httplib::SSLClient> Client(const Console& c, const std::string& ca) {
  auto cli = std::make_unique<httplib::SSLClient>("127.0.0.1", c.port());
  cli->set_ca_cert_path(ca.c_str());
  cli->enable_server_certificate_verification(true);
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(5, 0);
  return cli;
}

TEST(Console, ServesTheApiOverVerifiedTls) {
  TempDir dir("console-tls");
  std::vector<std::string> log;
  ConsoleOptions o = Options(dir / "console");
  o.log = [&log](int, const std::string& m) { log.push_back(m); };
  Console c(o);
  ASSERT_TRUE(c.Start().ok());
  ASSERT_GT(c.port(), 0);
  EXPECT_EQ(Mode(dir / "console"), 0700);
  EXPECT_EQ(Mode(c.password_file()), 0600);
  EXPECT_EQ(Mode(dir / "console/tls/key.pem"), 0600);
  EXPECT_EQ(Mode(c.db_file()), 0600);
  auto pw = os::ReadFile(c.password_file(), 100);
  ASSERT_TRUE(pw.ok());
  std::string password = pw->substr(0, pw->size() - 1);

  auto cli = Client(c, c.cert_file());
  auto login = cli->Post("/api/v1/sessions", json{{"user", "admin"}, {"password", password}}.dump(),
                         "application/json");
  ASSERT_TRUE(login) << httplib::to_string(login.error());
  ASSERT_EQ(login->status, 201) << login->body;
  EXPECT_EQ(login->get_header_value("Cache-Control"), "no-store");
  std::string token = json::parse(login->body)["token"];
  httplib::Headers auth{{"Authorization", "Bearer " + token}};
  auto hosts = cli->Get("/api/v1/hosts", auth);
  ASSERT_TRUE(hosts);
  EXPECT_EQ(hosts->status, 200);
  EXPECT_EQ(json::parse(hosts->body)["hosts"][0]["name"], "console-test");
  auto none = cli->Get("/api/v1/hosts");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(json::parse(none->body)["error"]["code"], "unauthenticated");

  // A body beyond what the transport reads: 413 in the API's form, audited.
  auto big = cli->Post("/api/v1/users", auth, std::string(3 * kRestoreBodyBytesMax, 'x'), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(json::parse(big->body)["error"]["code"], "payload_too_large");
  auto audit = cli->Get("/api/v1/audit?limit=1", auth);
  ASSERT_TRUE(audit);
  json last = json::parse(audit->body)["entries"][0];
  EXPECT_EQ(last["action"], "POST /api/v1/users");
  EXPECT_EQ(last["status"], 413);
  EXPECT_EQ(last["user"], "admin");

  // Plain HTTP on the TLS port gets nothing.
  httplib::Client plain("127.0.0.1", c.port());
  plain.set_connection_timeout(2, 0);
  plain.set_read_timeout(2, 0);
  auto p = plain.Get("/api/v1/hosts");
  EXPECT_TRUE(!p || p->status != 200);

  // No secret in the log.
  for (const std::string& line : log) {
    EXPECT_EQ(line.find(password), std::string::npos) << line;
    EXPECT_EQ(line.find(token), std::string::npos) << line;
  }
  c.Stop();
  EXPECT_EQ(c.port(), 0);
}

TEST(Console, RestartKeepsStateAndCertificate) {
  TempDir dir("console-tls");
  std::string fp1;
  {
    Console c(Options(dir / "console"));
    ASSERT_TRUE(c.Start().ok());
    auto fp = CertFingerprint(c.cert_file());
    ASSERT_TRUE(fp.ok());
    fp1 = *fp;
  }
  auto pw1 = os::ReadFile(dir / "console/admin.password", 100);
  ASSERT_TRUE(pw1.ok());
  Console c(Options(dir / "console"));
  ASSERT_TRUE(c.Start().ok());
  EXPECT_EQ(*CertFingerprint(c.cert_file()), fp1);
  EXPECT_EQ(*os::ReadFile(c.password_file(), 100), *pw1);  // not regenerated
  auto cli = Client(c, c.cert_file());
  auto login = cli->Post("/api/v1/sessions",
                         json{{"user", "admin"}, {"password", pw1->substr(0, pw1->size() - 1)}}.dump(),
                         "application/json");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status, 201);
}

TEST(Console, ConfiguredCertificateIsUsedAndVerified) {
  TempDir dir("console-tls");
  ASSERT_TRUE(GenerateSelfSigned(dir / "mine.pem", dir / "mine.key", "mine", {"127.0.0.1"}, {}).ok());
  ASSERT_TRUE(GenerateSelfSigned(dir / "other.pem", dir / "other.key", "other", {"127.0.0.1"}, {}).ok());
  ConsoleOptions o = Options(dir / "console");
  o.tls_cert = dir / "mine.pem";
  o.tls_key = dir / "mine.key";
  Console c(o);
  ASSERT_TRUE(c.Start().ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "console/tls"));
  auto good = Client(c, dir / "mine.pem")->Get("/api/v1/hosts");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 401);
  // A client that trusts another certificate refuses the connection.
  auto bad = Client(c, dir / "other.pem")->Get("/api/v1/hosts");
  EXPECT_FALSE(bad);
}

TEST(Console, BadCertificateOrBusyPortIsAnError) {
  TempDir dir("console-tls");
  ASSERT_TRUE(os::WriteFileAtomic(dir / "junk.pem", "not a certificate\n", 0600).ok());
  ConsoleOptions o = Options(dir / "console");
  o.tls_cert = dir / "junk.pem";
  o.tls_key = dir / "junk.pem";
  Console bad(o);
  Status st = bad.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("junk.pem"), std::string::npos) << st.message();

  Console first(Options(dir / "a"));
  ASSERT_TRUE(first.Start().ok());
  ConsoleOptions o2 = Options(dir / "b");
  o2.listen_port = first.port();
  Console second(o2);
  st = second.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot bind"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace tandem::console
