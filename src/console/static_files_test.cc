// The console's web page: the embedded files (generated from web/ at build
// time), their content types, and the static route over real HTTPS (headers,
// 404, no path traversal, no session needed, the API unchanged beside it).
#include "console/static_files.h"

#include <gtest/gtest.h>

#include "api/httplib.h"

#include <set>
#include <string>

#include "console/console.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

// The embedded bytes are web/<name> exactly.
TEST(StaticFiles, EmbedsEveryFileOfWebByteForByte) {
  ASSERT_GT(kEmbeddedWebFileCount, 0u);
  std::set<std::string> names;
  for (size_t i = 0; i < kEmbeddedWebFileCount; ++i) {
    const EmbeddedFile& f = kEmbeddedWebFiles[i];
    names.insert(f.name);
    auto src = os::ReadFile(std::string(TANDEM_SOURCE_DIR) + "/web/" + f.name, 16 << 20);
    ASSERT_TRUE(src.ok()) << f.name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data), f.size), *src) << f.name;
  }
  EXPECT_TRUE(names.contains("index.html"));
  EXPECT_TRUE(names.contains("app.js"));
  EXPECT_TRUE(names.contains("style.css"));
}

TEST(StaticFiles, ContentTypes) {
  EXPECT_EQ(ContentTypeFor("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(ContentTypeFor("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(ContentTypeFor("style.css"), "text/css; charset=utf-8");
  EXPECT_EQ(ContentTypeFor("logo.svg"), "image/svg+xml");
  EXPECT_EQ(ContentTypeFor("data.bin"), "application/octet-stream");
  EXPECT_EQ(ContentTypeFor("js"), "application/octet-stream");
}

TEST(StaticFiles, RouteAndLookup) {
  EXPECT_TRUE(IsStaticPath("/"));
  EXPECT_TRUE(IsStaticPath("/ui"));
  EXPECT_TRUE(IsStaticPath("/ui/app.js"));
  EXPECT_FALSE(IsStaticPath("/api/v1/hosts"));
  EXPECT_FALSE(IsStaticPath("/uix"));
  EXPECT_FALSE(IsStaticPath(""));

  StaticAnswer root = ServeStatic("/");
  EXPECT_EQ(root.status, 200);
  EXPECT_EQ(root.content_type, "text/html; charset=utf-8");
  EXPECT_NE(root.body.find("<!doctype html>"), std::string_view::npos);
  EXPECT_EQ(ServeStatic("/ui/").body, root.body);
  StaticAnswer js = ServeStatic("/ui/app.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_FALSE(js.body.empty());

  for (const char* bad :
       {"/ui/nosuch.js", "/ui/../CMakeLists.txt", "/ui/..%2fCMakeLists.txt", "/ui/./app.js",
        "/ui//app.js", "/ui/sub/app.js", "/ui/.hidden", "/ui/app.js/", "/ui/%61pp.js",
        "/ui/../../etc/passwd", "/ui/app.js\\", "/ui/index.html\x01"}) {
    StaticAnswer a = ServeStatic(bad);
    EXPECT_EQ(a.status, 404) << bad;
    EXPECT_EQ(a.body, "not found\n") << bad;
  }
}

TEST(StaticFiles, ServedOverHttpsWithoutSessionAndWithStrictHeaders) {
  TempDir dir("console-web");
  ConsoleOptions o;
  o.state_dir = dir / "console";
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  o.host_name = "console-web";
  o.kdf = ScryptParams{10, 8, 1};
  Console c(o);
  ASSERT_TRUE(c.Start().ok());
  httplib::SSLClient cli("127.0.0.1", c.port());
  cli.set_ca_cert_path(c.cert_file().c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(5, 0);

  auto page = cli.Get("/");
  ASSERT_TRUE(page) << httplib::to_string(page.error());
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page->get_header_value("Cache-Control"), "no-store");
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  const std::string csp = page->get_header_value("Content-Security-Policy");
  EXPECT_TRUE(csp.starts_with("default-src 'self'")) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos) << csp;
  EXPECT_EQ(page->body, std::string(ServeStatic("/").body));

  auto css = cli.Get("/ui/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  EXPECT_EQ(css->get_header_value("Content-Type"), "text/css; charset=utf-8");

  for (const char* bad : {"/ui/nosuch.js", "/ui/../CMakeLists.txt", "/ui/%2e%2e/CMakeLists.txt",
                          "/ui/..%2f..%2fetc%2fpasswd"}) {
    auto r = cli.Get(bad);
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 404) << bad;
    EXPECT_EQ(r->body, "not found\n") << bad;
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store") << bad;
  }
  // Only GET is static: other methods reach the API, which wants a session.
  auto post = cli.Post("/ui/app.js", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 401);
  // The API beside it is unchanged: a session is still required.
  auto api = cli.Get("/api/v1/hosts");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->status, 401);
  EXPECT_EQ(json::parse(api->body)["error"]["code"], "unauthenticated");
}

}  // namespace
}  // namespace tandem::console
