#include "api/http.h"

#include <gtest/gtest.h>

#include "api/httplib.h"

#include <atomic>
#include <mutex>

namespace tandem::api {
namespace {

using nlohmann::json;

const std::string kToken = "0123456789abcdef0123456789abcdef";

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<HttpServer>(kToken, [this](const HttpRequest& r) {
      calls_++;
      {
        std::lock_guard<std::mutex> l(mu_);
        last_ = r;
      }
      if (r.path == "/throw") throw std::runtime_error("boom");
      if (r.path != "/api/v1/echo") return HttpError(404, "no such path");
      return HttpResponse{200, json{{"path", r.path}, {"params", r.params}}};
    });
    ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
    ASSERT_NE(server_->port(), 0);
  }

  httplib::Result Get(const std::string& target, const std::string& auth) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(5, 0);
    httplib::Headers h;
    if (!auth.empty()) h.emplace("Authorization", auth);
    return c.Get(target, h);
  }

  std::unique_ptr<HttpServer> server_;
  std::atomic<int> calls_{0};
  std::mutex mu_;
  HttpRequest last_;
};

TEST(TokenEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(TokenEquals("abc", "abc"));
  EXPECT_TRUE(TokenEquals("", ""));
  EXPECT_FALSE(TokenEquals("abc", "abd"));
  EXPECT_FALSE(TokenEquals("abc", "ab"));
  EXPECT_FALSE(TokenEquals("ab", "abc"));
  EXPECT_FALSE(TokenEquals("", "a"));
  EXPECT_FALSE(TokenEquals(std::string("a\0b", 3), "a"));
}

TEST_F(HttpServerTest, ValidTokenReachesTheHandlerWithPathAndParams) {
  auto r = Get("/api/v1/echo?from=-15m&host=fw%201&count=1", "Bearer " + kToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  json body = json::parse(r->body);
  EXPECT_EQ(body["path"], "/api/v1/echo");
  EXPECT_EQ(body["params"]["from"], "-15m");
  EXPECT_EQ(body["params"]["host"], "fw 1");
  EXPECT_EQ(body["params"]["count"], "1");
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(HttpServerTest, MissingOrWrongTokenIs401AndNeverReachesTheHandler) {
  for (const std::string& auth : std::vector<std::string>{std::string(), "Bearer", "Bearer ", "Bearer wrong", "Bearer " + kToken + "x",
        "Bearer " + kToken.substr(0, kToken.size() - 1), "Basic " + kToken, "bearer " + kToken,
        kToken}) {
    auto r = Get("/api/v1/echo", auth);
    ASSERT_TRUE(r) << auth;
    EXPECT_EQ(r->status, 401) << auth;
    json body = json::parse(r->body);
    EXPECT_EQ(body["ok"], false);
    EXPECT_FALSE(body.value("error", "").empty());
  }
  // Unknown paths too: authentication comes first.
  auto r = Get("/nope", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, HandlerStatusesAndErrorsAreJson) {
  auto r = Get("/nope", "Bearer " + kToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(json::parse(r->body)["ok"], false);
  r = Get("/throw", "Bearer " + kToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("boom"), std::string::npos);
}

TEST_F(HttpServerTest, RepeatedParameterIs400) {
  auto r = Get("/api/v1/echo?host=a&host=b", "Bearer " + kToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("host"), std::string::npos);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, OnlyGet) {
  httplib::Client c("127.0.0.1", server_->port());
  auto r = c.Post("/api/v1/echo", httplib::Headers{{"Authorization", "Bearer " + kToken}}, "{}",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  r = c.Post("/api/v1/echo", "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, BindsOnlyTheConfiguredAddress) {
  httplib::Client other("127.0.0.2", server_->port());
  other.set_connection_timeout(1, 0);
  auto r = other.Get("/api/v1/echo", httplib::Headers{{"Authorization", "Bearer " + kToken}});
  EXPECT_FALSE(r);
}

TEST_F(HttpServerTest, ManyConcurrentRequestsAllAnswered) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 24; ++i) {
    threads.emplace_back([&] {
      auto r = Get("/api/v1/echo", "Bearer " + kToken);
      if (r && r->status == 200) ok++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 24);
}

TEST_F(HttpServerTest, StopIsIdempotentAndClosesThePort) {
  uint16_t port = server_->port();
  server_->Stop();
  server_->Stop();
  EXPECT_EQ(server_->port(), 0);
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  EXPECT_FALSE(c.Get("/api/v1/echo"));
}

TEST(HttpServerStartTest, PortInUseIsAnError) {
  HttpServer a(kToken, [](const HttpRequest&) { return HttpResponse{}; });
  ASSERT_TRUE(a.Start("127.0.0.1", 0).ok());
  HttpServer b(kToken, [](const HttpRequest&) { return HttpResponse{}; });
  Status st = b.Start("127.0.0.1", a.port());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("http_listen"), std::string::npos) << st.message();
  EXPECT_EQ(b.port(), 0);
}

}  // namespace
}  // namespace tandem::api
