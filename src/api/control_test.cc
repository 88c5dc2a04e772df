#include "api/control.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "util/temp_dir.h"

namespace tandem::api {
namespace {

using nlohmann::json;

constexpr int64_t kCallTimeoutMs = 3000;
constexpr int kRecvTimeoutSec = 5;  // raw test clients never hang the suite
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr gid_t kDaemonGid = 1;     // group "daemon" on Debian
constexpr size_t kBigResponseBytes = 1 << 20;
constexpr int kRetriesMax = 200;
constexpr int kRetryMs = 10;

// Echoes the cmd; "boom" throws, "throw-int" throws a non-exception,
// "big" answers with a megabyte, "bad-utf8" with invalid UTF-8.
json TestHandler(const json& req) {
  std::string cmd = req["cmd"].get<std::string>();
  if (cmd == "boom") throw std::runtime_error("kaboom");
  if (cmd == "throw-int") throw 42;
  if (cmd == "big") return json{{"ok", true}, {"data", std::string(kBigResponseBytes, 'z')}};
  if (cmd == "bad-utf8") return json{{"ok", true}, {"s", "\xff"}};
  return json{{"ok", true}, {"echo", cmd}};
}

sockaddr_un Addr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  return sa;
}

// A blocking client socket connected to `path`, or -1.
int RawConnect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{kRecvTimeoutSec, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_un sa = Addr(path);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// Runs `fn` in a forked child as uid/gid 65534 with `groups` as its
// supplementary groups; returns what `fn` returned.
template <typename Fn>
std::string AsNobody(const std::vector<gid_t>& groups, Fn fn) {
  int p[2];
  if (pipe(p) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    if (setgroups(groups.size(), groups.data()) != 0 || setgid(kNogroup) != 0 ||
        setuid(kNobody) != 0) {
      _exit(3);
    }
    std::string out = fn();
    ssize_t n = write(p[1], out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
  }
  close(p[1]);
  std::string out = ReadAll(p[0]);
  close(p[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << "child status " << ws;
  return out;
}

std::string CallText(const std::string& path, const std::string& cmd) {
  auto r = Call(path, json{{"cmd", cmd}}, kCallTimeoutMs);
  return r.ok() ? r->dump() : r.status().message();
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    chmod(dir_.c_str(), 0755);  // traversable for the unprivileged clients
    path_ = dir_ + "/ctl.sock";
  }
  void TearDown() override {
    if (thread_.joinable()) {
      loop_.Post([this] {
        server_->Close();
        loop_.Stop();
      });
      thread_.join();
    }
    server_.reset();
  }
  void Start(const std::string& admin_group = "") {
    server_ = std::make_unique<ControlServer>(loop_, TestHandler);
    Status st = server_->Listen(path_, admin_group);
    ASSERT_TRUE(st.ok()) << st.message();
    thread_ = std::thread([this] { loop_.Run(); });
  }
  // Sends raw bytes (then shuts down writing if asked) and returns the reply.
  std::string Raw(const std::string& bytes, bool shut_write = false) {
    int fd = RawConnect(path_);
    EXPECT_GE(fd, 0);
    if (fd < 0) return "";
    EXPECT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    if (shut_write) shutdown(fd, SHUT_WR);
    std::string out = ReadAll(fd);
    close(fd);
    return out;
  }
  json RawJson(const std::string& bytes, bool shut_write = false) {
    std::string out = Raw(bytes, shut_write);
    EXPECT_FALSE(out.empty());
    EXPECT_EQ(out.back(), '\n');
    return json::parse(out, nullptr, false);
  }
  void ExpectAlive() {
    auto r = Call(path_, json{{"cmd", "still-alive"}}, kCallTimeoutMs);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)["echo"], "still-alive");
  }

  TempDir tmp_{"tandem-ctl"};
  const std::string dir_ = tmp_.path();
  std::string path_;
  os::EventLoop loop_;
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
};

TEST_F(ControlTest, RoundTripAndSocketMode) {
  Start();
  auto r = Call(path_, json{{"cmd", "status"}, {"extra", 1}}, kCallTimeoutMs);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (json{{"ok", true}, {"echo", "status"}}));
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, 0u);
}

TEST_F(ControlTest, RequestInPiecesAndWithoutNewlineBeforeEof) {
  Start();
  int fd = RawConnect(path_);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, "{\"cmd\":", 7, 0), 7);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(send(fd, "\"split\"}\n", 9, 0), 9);
  EXPECT_EQ(ReadAll(fd), "{\"echo\":\"split\",\"ok\":true}\n");
  close(fd);
  EXPECT_EQ(RawJson("{\"cmd\":\"eof\"}", /*shut_write=*/true)["echo"], "eof");
}

TEST_F(ControlTest, MalformedRequests) {
  Start();
  json j = RawJson("{not json\n");
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"].get<std::string>().rfind("malformed request: parse error", 0), 0u) << j;
  EXPECT_EQ(RawJson("[1,2]\n")["error"], "malformed request: not a JSON object");
  EXPECT_EQ(RawJson("\"cmd\"\n")["error"], "malformed request: not a JSON object");
  EXPECT_EQ(RawJson("{}\n")["error"], "malformed request: missing string \"cmd\"");
  EXPECT_EQ(RawJson("{\"cmd\": 5}\n")["error"], "malformed request: missing string \"cmd\"");
  EXPECT_EQ(RawJson("{\"cmd\":\"\xff\"}\n")["ok"], false) << "invalid UTF-8";
  ExpectAlive();
}

TEST_F(ControlTest, OversizedRequests) {
  Start();
  json j = RawJson(std::string(kRequestBytesMax + 10, 'a'));  // no newline at all
  EXPECT_EQ(j, (json{{"ok", false}, {"error", "request too large"}}));
  EXPECT_EQ(RawJson(std::string(kRequestBytesMax + 1, ' ') + "\n")["error"], "request too large");
  // Exactly the limit is fine.
  json req{{"cmd", "limit"}, {"pad", ""}};
  req["pad"] = std::string(kRequestBytesMax - req.dump().size(), 'p');
  ASSERT_EQ(req.dump().size(), kRequestBytesMax);
  EXPECT_EQ(RawJson(req.dump() + "\n")["echo"], "limit");
  ExpectAlive();
}

TEST_F(ControlTest, HandlerExceptionsBecomeErrors) {
  Start();
  EXPECT_EQ(CallText(path_, "boom"), R"({"error":"request failed: kaboom","ok":false})");
  EXPECT_EQ(CallText(path_, "throw-int"),
            R"({"error":"request failed: unknown exception","ok":false})");
  auto r = Call(path_, json{{"cmd", "bad-utf8"}}, kCallTimeoutMs);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)["s"], "\xEF\xBF\xBD") << "replaced, not thrown";
  ExpectAlive();
}

TEST_F(ControlTest, LargeResponseIsWrittenInFull) {
  Start();
  auto r = Call(path_, json{{"cmd", "big"}}, kCallTimeoutMs);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)["data"].get<std::string>().size(), kBigResponseBytes);
}

TEST_F(ControlTest, ClientsThatLeaveEarlyDoNotHurt) {
  Start();
  int fd = RawConnect(path_);  // connects and closes without a request
  ASSERT_GE(fd, 0);
  close(fd);
  fd = RawConnect(path_);  // half a request, then gone
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, "{\"cmd\":", 7, 0), 7);
  close(fd);
  fd = RawConnect(path_);  // a whole request, gone before the response
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, "{\"cmd\":\"big\"}\n", 14, 0), 14);
  close(fd);
  ExpectAlive();
}

TEST_F(ControlTest, ConnectionsBeyondTheLimitAreClosed) {
  Start();
  std::vector<int> idle;
  for (int i = 0; i < kClientsMax; ++i) {
    idle.push_back(RawConnect(path_));
    ASSERT_GE(idle.back(), 0);
  }
  int extra = RawConnect(path_);
  ASSERT_GE(extra, 0);
  EXPECT_EQ(ReadAll(extra), R"({"error":"too many control connections","ok":false})"
                            "\n")
      << "closed at once, not timed out";
  close(extra);
  for (int fd : idle) close(fd);
  // The server notices the closes on its own time; then it serves again.
  std::string last;
  for (int i = 0; i < kRetriesMax && last != R"({"echo":"again","ok":true})"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kRetryMs));
    last = CallText(path_, "again");
  }
  EXPECT_EQ(last, R"({"echo":"again","ok":true})");
}

TEST_F(ControlTest, NonAdministratorIsRefusedByCredentials) {
  Start();
  chmod(path_.c_str(), 0666);  // let the socket file through, to reach the SO_PEERCRED check
  std::string out = AsNobody({}, [this] { return CallText(path_, "status"); });
  EXPECT_EQ(out, R"({"error":"permission denied: uid 65534 is not root or tandemd's user",)"
                 R"("ok":false})");
  ExpectAlive();
}

TEST_F(ControlTest, NonAdministratorCannotOpenTheSocketFile) {
  Start();
  std::string out = AsNobody({}, [this] { return CallText(path_, "status"); });
  EXPECT_EQ(out, "cannot connect to " + path_ + ": Permission denied (is tandemd running?)");
}

TEST_F(ControlTest, AdminGroupAsPrimaryGroup) {
  Start("nogroup");
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kNogroup);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  std::string out = AsNobody({}, [this] { return CallText(path_, "status"); });
  EXPECT_EQ(out, R"({"echo":"status","ok":true})");
}

TEST_F(ControlTest, AdminGroupAsSupplementaryGroup) {
  Start("daemon");
  std::string out = AsNobody({kDaemonGid}, [this] { return CallText(path_, "status"); });
  EXPECT_EQ(out, R"({"echo":"status","ok":true})");
  chmod(path_.c_str(), 0666);
  out = AsNobody({}, [this] { return CallText(path_, "status"); });
  EXPECT_EQ(out, R"({"error":"permission denied: uid 65534 is not root or in group daemon",)"
                 R"("ok":false})");
}

TEST_F(ControlTest, StaleSocketFileIsReplacedAndCloseRemovesIt) {
  ASSERT_EQ(close(open(path_.c_str(), O_CREAT | O_WRONLY, 0600)), 0);
  Start();
  ExpectAlive();
  std::promise<void> closed;
  loop_.Post([&] {
    server_->Close();
    closed.set_value();
  });
  closed.get_future().wait();
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_NE(CallText(path_, "status").find("is tandemd running?"), std::string::npos);
}

TEST(ControlServerListen, Errors) {
  os::EventLoop loop;
  ControlServer s(loop, TestHandler);
  Status st = s.Listen("/tmp/tandem-ctl-group-test.sock", "no-such-group-xyz");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "host.admin_group: no such group 'no-such-group-xyz'");
  EXPECT_FALSE(std::filesystem::exists("/tmp/tandem-ctl-group-test.sock"));
  st = s.Listen("/tmp/" + std::string(200, 'x'), "");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("too long"), std::string::npos) << st.message();
  st = s.Listen("/nonexistent-dir/ctl.sock", "");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot bind control socket"), std::string::npos) << st.message();
}

TEST(ControlCall, MissingDaemonSaysSo) {
  auto r = Call("/tmp/definitely-not-a-tandem-socket", json{{"cmd", "status"}}, 500);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "cannot connect to /tmp/definitely-not-a-tandem-socket: No such file or directory "
            "(is tandemd running?)");
}

// A fake daemon: a listening socket that answers each connection with
// `reply` (or never, when empty) from a thread.
class FakeDaemon {
 public:
  FakeDaemon(const std::string& path, std::string reply) : path_(path) {
    unlink(path.c_str());
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa = Addr(path);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(listen(fd_, 4), 0);
    if (reply.empty()) return;
    thread_ = std::thread([this, reply] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[256];
      EXPECT_GT(recv(c, buf, sizeof buf, 0), 0) << "reads the request before replying";
      EXPECT_EQ(send(c, reply.data(), reply.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(reply.size()));
      close(c);
    });
  }
  ~FakeDaemon() {
    if (thread_.joinable()) thread_.join();
    close(fd_);
    unlink(path_.c_str());
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::thread thread_;
};

TEST(ControlCall, TimesOutWhenNobodyAnswers) {
  std::string path = "/tmp/tandem-ctl-silent-" + std::to_string(getpid()) + ".sock";
  FakeDaemon silent(path, "");
  auto r = Call(path, json{{"cmd", "status"}}, 200);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "timed out after 200 ms waiting for tandemd at " + path);
}

TEST(ControlCall, BadResponses) {
  std::string path = "/tmp/tandem-ctl-bad-" + std::to_string(getpid()) + ".sock";
  for (const std::string& reply : {std::string("garbage\n"), std::string("[1]\n")}) {
    FakeDaemon bad(path, reply);
    auto r = Call(path, json{{"cmd", "status"}}, kCallTimeoutMs);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "bad response from " + path + ": not a JSON object");
  }
  {
    FakeDaemon mute(path, std::string("\n"));
    auto r = Call(path, json{{"cmd", "status"}}, kCallTimeoutMs);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "bad response from " + path + ": closed without a response");
  }
}

}  // namespace
}  // namespace tandem::api

namespace tandem::api {
namespace {

// The asynchronous path (SetAsync): the reply comes later from another
// thread via Post; meanwhile the loop serves other clients; a client that
// hangs up before its reply does no harm.
TEST_F(ControlTest, AsyncCommandsAnswerLaterWhileTheLoopServesOthers) {
  server_ = std::make_unique<ControlServer>(loop_, TestHandler);
  std::vector<std::thread> workers;
  std::mutex mu;
  server_->SetAsync("slow", [this, &workers, &mu](const json& req, Reply reply) {
    std::lock_guard<std::mutex> l(mu);
    workers.emplace_back([this, reply, tag = req.value("tag", "")] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      loop_.Post([reply, tag] { reply(json{{"ok", true}, {"late", tag}}); });
    });
  });
  server_->SetAsync("throws", [](const json&, Reply) { throw std::runtime_error("nope"); });
  ASSERT_TRUE(server_->Listen(path_, "").ok());
  thread_ = std::thread([this] { loop_.Run(); });

  // A client that leaves before its reply.
  int gone = RawConnect(path_);
  ASSERT_GE(gone, 0);
  std::string req = "{\"cmd\":\"slow\",\"tag\":\"gone\"}\n";
  ASSERT_EQ(send(gone, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  close(gone);

  auto start = std::chrono::steady_clock::now();
  Result<json> slow = Status::Error("not yet");
  std::thread caller([&] { slow = Call(path_, json{{"cmd", "slow"}, {"tag", "a"}}, kCallTimeoutMs); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ExpectAlive();  // answered while "slow" waits
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  caller.join();
  ASSERT_TRUE(slow.ok()) << slow.status().message();
  EXPECT_EQ((*slow)["late"], "a");
  auto t = Call(path_, json{{"cmd", "throws"}}, kCallTimeoutMs);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)["ok"], false);
  EXPECT_NE((*t)["error"].get<std::string>().find("nope"), std::string::npos);
  ExpectAlive();
  for (int i = 0; i < kRetriesMax; ++i) {  // both "slow" requests were handed out
    std::lock_guard<std::mutex> l(mu);
    if (workers.size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(kRetryMs));
  }
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(workers.size(), 2u);
  for (auto& w : workers) w.join();
}

}  // namespace
}  // namespace tandem::api
