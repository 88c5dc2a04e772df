// Test support shared by the console API tests (api_test.cc,
// api_hosts_test.cc, api_clusters_test.cc): a settable clock and a fixture
// with a fresh database, its initial admin, and calls into the API. Used only
// by tests.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "console/api.h"
#include "console/fake_agent_client.h"
#include "os/clock.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console::test_support {

class FakeClock final : public os::Clock {
 public:
  int64_t NowMs() const override { return now_ms; }
  int64_t WallMs() const override { return now_ms; }
  std::atomic<int64_t> now_ms{1796205600000};  // 2026-12-02T10:00:00Z
};

// Cheap scrypt parameters: tests only.
inline constexpr ScryptParams kFast{10, 8, 1};

class ApiFixture : public ::testing::Test {
 protected:
  explicit ApiFixture(const std::string& dir_name) : dir_(dir_name) {}

  // Opens dir_/console.db, creates the initial admin (its password in
  // admin_password_) and the console host "console-1" at `console_address`.
  void OpenDb(const std::string& console_address) {
    auto db = Db::Open(dir_ / "console.db");
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(*db);
    bool created = false;
    ASSERT_TRUE(EnsureInitialAdmin(*db_, dir_ / "admin.password", kFast, clock_.WallMs(), &created).ok());
    ASSERT_TRUE(created);
    ASSERT_TRUE(EnsureConsoleHost(*db_, "console-1", console_address, clock_.WallMs()).ok());
    auto pw = os::ReadFile(dir_ / "admin.password", 1024);
    ASSERT_TRUE(pw.ok());
    admin_password_ = pw->substr(0, pw->size() - 1);
  }

  // API options with clock_, kFast and a log into log_.
  ApiOptions Options() {
    ApiOptions options;
    options.clock = &clock_;
    options.kdf = kFast;
    options.log = [this](int, const std::string& m) { Logged(m); };
    return options;
  }

  void Logged(const std::string& m) {
    std::lock_guard<std::mutex> l(log_mu_);
    log_ += m + "\n";
  }
  std::string Log() {
    std::lock_guard<std::mutex> l(log_mu_);
    return log_;
  }

  // A call from 127.0.0.1; `token` (if any) as a Bearer token, `body` (if
  // any) with `content_type`.
  ApiResponse Call(const std::string& method, const std::string& path, const std::string& token = "",
                   const std::string& body = "", const std::string& content_type = "application/json",
                   std::multimap<std::string, std::string> params = {}) {
    ApiRequest r;
    r.method = method;
    r.path = path;
    r.params = std::move(params);
    if (!token.empty()) r.authorization = "Bearer " + token;
    r.body = body;
    r.content_type = body.empty() ? "" : content_type;
    r.remote = "127.0.0.1";
    return api_->Handle(r);
  }

  // A new session's token (expects 201).
  std::string Login(const std::string& user, const std::string& password) {
    ApiResponse r = Call("POST", "/api/v1/sessions", "",
                         nlohmann::json{{"user", user}, {"password", password}}.dump());
    EXPECT_EQ(r.status, 201) << r.body.dump();
    return r.body.value("token", "");
  }

  // A paired managed host as the pairing stores it (status Online), with
  // its fake agent in `agents` (key: 64 times the name's first letter).
  void AddPairedHost(FakeAgentClient& agents, const std::string& name, const std::string& agent,
                     const nlohmann::json& facts) {
    FakeAgentClient::Host h;
    h.cert_pem = "CERT " + name;
    h.key = std::string(64, name[0]);
    h.paired = true;
    h.facts = facts;
    {
      std::lock_guard<std::mutex> l(agents.mu);
      agents.hosts[agent] = h;
    }
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(
        "INSERT INTO hosts (name, role, address, added_at_ms, agent_address, agent_cert_pem, agent_key, "
        "facts_json, facts_at_ms, status) VALUES (?1, 'managed', ?2, ?3, ?4, ?5, ?6, ?7, ?3, 'Online')");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->Bind(1, name)
                    .Bind(2, facts.value("address", std::string("198.18.9.9")))
                    .Bind(3, clock_.WallMs())
                    .Bind(4, agent)
                    .Bind(5, h.cert_pem)
                    .Bind(6, h.key)
                    .Bind(7, facts.dump())
                    .Run()
                    .ok());
  }

  // The API over db_ with `options`; the admin logged in (admin_), and a
  // viewer "vera" created and logged in (viewer_).
  void StartApi(ApiOptions options, const std::string& viewer_password = "viewer-password-1") {
    api_ = std::make_unique<Api>(*db_, std::move(options));
    admin_ = Login("admin", admin_password_);
    ASSERT_EQ(Call("POST", "/api/v1/users", admin_,
                   nlohmann::json{{"name", "vera"}, {"password", viewer_password}, {"role", "viewer"}}.dump())
                  .status,
              201);
    viewer_ = Login("vera", viewer_password);
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Api> api_;
  std::string admin_password_;
  std::string admin_, viewer_;  // StartApi's sessions
  std::mutex log_mu_;
  std::string log_;
};

// Facts of a host that pass the cluster checks (api_clusters.cc): version
// 0.1.0, `packages`, eth0 (physical, up) holding `cidr`, then `extra`
// interfaces; a 200 GB store; no cluster and no HA status.
inline nlohmann::json ClusterReadyFacts(const std::string& name, const std::string& address,
                                        const std::string& cidr, nlohmann::json packages,
                                        nlohmann::json extra = nlohmann::json::array()) {
  using nlohmann::json;
  json interfaces = json::array({{{"name", "eth0"},
                                  {"addresses", json::array({cidr})},
                                  {"physical", true},
                                  {"up", true}}});
  for (json& i : extra) interfaces.push_back(std::move(i));
  return json{{"name", name},
              {"version", "0.1.0"},
              {"packages", std::move(packages)},
              {"interfaces", std::move(interfaces)},
              {"management_interface", "eth0"},
              {"address", address},
              {"store", {{"dir", "/store"}, {"bytes_total", int64_t{200000000000}}, {"bytes_free", 1}}},
              {"transient", nullptr},
              {"external_storage", false},
              {"virtual", false},
              {"cluster", nullptr},
              {"ha", nullptr}};
}

}  // namespace tandem::console::test_support
