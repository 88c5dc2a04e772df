// RelpSession against real RELP senders, over loopback TCP to a tiny poll()
// server (one thread) that acknowledges messages late and in batches, newest
// first, as a group commit would:
//  - librelp's client API, used the way rsyslog's omrelp uses it: 10,000
//    messages arrive once, in order, all acked; a Nack and a ServerClose
//    are seen by the client as failures.
//  - the real rsyslogd (imuxsock on a private socket -> omrelp) forwarding
//    `logger` lines; skipped when rsyslogd/rsyslog-relp are not installed.
// Built only when CMake finds librelp (TANDEM_HAVE_LIBRELP); skipped
// otherwise.
#include <gtest/gtest.h>

#if defined(TANDEM_HAVE_LIBRELP)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "collect/relp.h"
#include "util/temp_dir.h"

// librelp.h has no extern "C" of its own.
extern "C" {
#include <librelp.h>
}

namespace tandem::collect {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMessages = 10'000;
constexpr auto kAckDelay = std::chrono::milliseconds(2);  // a "group commit"
constexpr auto kServerDeadline = std::chrono::seconds(60);
constexpr size_t kReadBytesMax = 64 * 1024;
// Failure tests send until the client reports the failure, at most this
// many messages (kSendsMax * 2 * kAckDelay is the time bound).
constexpr int kSendsMax = 2'000;

std::string Message(int i) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "<13>1 2024-05-01T12:00:00Z host app - - - message %05d", i);
  return buf;
}

// What the loopback server does besides acknowledging every message late.
struct ServerPolicy {
  int nack_index = -1;          // Nack the message with this 0-based index
  int server_close_after = -1;  // ServerClose once this many messages arrived
  int connections_max = 1;      // connections served one after another
};

// Loopback server driving one RelpSession per accepted connection, in a
// thread of its own (Run), until `connections_max` sessions ended, Stop(),
// or kServerDeadline.
class LoopbackServer {
 public:
  explicit LoopbackServer(ServerPolicy policy = {}) : policy_(policy) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    EXPECT_GE(listen_fd_, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackServer() {
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  void Stop() { stop_ = true; }

  // Thread body.
  void Run() {
    const Clock::time_point deadline = Clock::now() + kServerDeadline;
    while (connections_ < policy_.connections_max && !stop_ && Clock::now() < deadline) {
      pollfd lp{listen_fd_, POLLIN, 0};
      if (::poll(&lp, 1, kPollMs) != 1) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      session_ = std::make_unique<RelpSession>(RelpLimits{});
      due_.clear();
      Serve(fd, deadline);
      ::close(fd);
      acked_ += session_->counters().acked;
      rsp_sent_ += session_->counters().rsp_sent;
      if (!session_->closed()) failure_ += " session not closed;";
      if (session_->closed() && session_->error().ok()) ++clean_closes_;
    }
    if (connections_ == 0) failure_ += " no connection;";
  }

  // Valid once Run has returned.
  const std::vector<RelpMessage>& received() const { return received_; }
  const std::string& failure() const { return failure_; }
  uint64_t acked() const { return acked_; }
  uint64_t rsp_sent() const { return rsp_sent_; }
  int connections() const { return connections_; }
  int clean_closes() const { return clean_closes_; }
  size_t max_batch() const { return max_batch_; }
  // May be read while Run is going.
  size_t received_count() const { return received_count_; }
  bool server_closed() const { return server_closed_; }

 private:
  static constexpr int kPollMs = 1;

  void Serve(int fd, Clock::time_point deadline) {
    std::string out;
    bool eof = false;
    while (!(session_->closed() && out.empty()) && !eof && !stop_ && Clock::now() < deadline) {
      pollfd p{fd, 0, 0};
      if (session_->want_read()) p.events |= POLLIN;
      if (!out.empty()) p.events |= POLLOUT;
      if (::poll(&p, 1, kPollMs) < 0 && errno != EINTR) break;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) eof = !ReadSome(fd);
      AckDue();
      out += session_->TakeOutput();
      if (!WriteSome(fd, &out)) break;
    }
    if (session_->closed() && !session_->error().ok()) {
      failure_ += " session error: " + session_->error().ToString() + ";";
    }
  }

  // Returns false on EOF or a socket error.
  bool ReadSome(int fd) {
    uint8_t buf[kReadBytesMax];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0 || session_->closed()) return false;
    std::vector<RelpMessage> msgs;
    // An error closes the session; Serve reports it.
    (void)session_->Feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)), &msgs);
    for (RelpMessage& m : msgs) {
      due_.push_back({m.txnr, static_cast<int>(received_.size()), Clock::now() + kAckDelay});
      received_.push_back(std::move(m));
    }
    received_count_ = received_.size();
    if (policy_.server_close_after >= 0 &&
        received_.size() >= static_cast<size_t>(policy_.server_close_after)) {
      session_->ServerClose();
      server_closed_ = true;
    }
    return true;
  }

  // Acknowledges, newest first, every message whose delay has passed.
  void AckDue() {
    Clock::time_point now = Clock::now();
    size_t n = 0;
    while (n < due_.size() && due_[n].due <= now) ++n;
    if (n == 0) return;
    max_batch_ = std::max(max_batch_, n);
    for (size_t i = n; i-- > 0;) {
      if (due_[i].index == policy_.nack_index) {
        session_->Nack(due_[i].txnr, "store full");
      } else {
        session_->Ack(due_[i].txnr);
      }
    }
    due_.erase(due_.begin(), due_.begin() + static_cast<std::ptrdiff_t>(n));
  }

  bool WriteSome(int fd, std::string* out) {
    if (out->empty()) return true;
    ssize_t n = ::send(fd, out->data(), out->size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    out->erase(0, static_cast<size_t>(n));
    return true;
  }

  struct Due {
    RelpTxnr txnr;
    int index;  // in received_
    Clock::time_point due;
  };

  const ServerPolicy policy_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::unique_ptr<RelpSession> session_;
  std::deque<Due> due_;
  std::vector<RelpMessage> received_;
  std::atomic<size_t> received_count_{0};
  std::atomic<bool> server_closed_{false};
  std::string failure_;
  uint64_t acked_ = 0;
  uint64_t rsp_sent_ = 0;
  int connections_ = 0;
  int clean_closes_ = 0;
  size_t max_batch_ = 0;
};

// librelp reports through callbacks without a user pointer for dbgprint;
// they run on the thread calling librelp (the test's).
std::atomic<int> g_rsp_ok{0};     // rsp frames the client accepted with code 200
std::atomic<int> g_rsp_other{0};  // rsp frames with any other code
std::atomic<int> g_errors{0};     // onErr / onGenericErr calls
std::string g_errors_text;        // all of them, for messages and checks

void ResetCallbacks() {
  g_rsp_ok = 0;
  g_rsp_other = 0;
  g_errors = 0;
  g_errors_text.clear();
}

void DbgPrint(char* fmt, ...) {
  constexpr std::string_view kRsp = "in rsp command handler";
  if (std::strncmp(fmt, kRsp.data(), kRsp.size()) != 0) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (std::strstr(buf, ", code 200,") != nullptr) {
    ++g_rsp_ok;
  } else {
    ++g_rsp_other;
  }
}

void OnErr(void*, char* objinfo, char* errmsg, relpRetVal code) {
  ++g_errors;
  g_errors_text += std::string(objinfo) + ": " + errmsg + " (" + std::to_string(code) + "); ";
}

void OnGenericErr(char* objinfo, char* errmsg, relpRetVal code) {
  OnErr(nullptr, objinfo, errmsg, code);
}

unsigned char* U(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

// A librelp engine and client set up as rsyslog's omrelp does, connected to
// 127.0.0.1:port. Destroying it sends `close` if the session is still up.
class Client {
 public:
  explicit Client(uint16_t port) {
    ResetCallbacks();
    EXPECT_EQ(relpEngineConstruct(&engine_), RELP_RET_OK);
    EXPECT_EQ(relpEngineSetDbgprint(engine_, DbgPrint), RELP_RET_OK);
    EXPECT_EQ(relpEngineSetOnErr(engine_, OnErr), RELP_RET_OK);
    EXPECT_EQ(relpEngineSetOnGenericErr(engine_, OnGenericErr), RELP_RET_OK);
    std::string syslog_cmd = "syslog";
    EXPECT_EQ(relpEngineSetEnableCmd(engine_, U(syslog_cmd), eRelpCmdState_Required), RELP_RET_OK);
    EXPECT_EQ(relpEngineCltConstruct(engine_, &client_), RELP_RET_OK);
    EXPECT_EQ(relpCltSetTimeout(client_, kClientTimeoutS), RELP_RET_OK);
    std::string port_text = std::to_string(port);
    std::string host = "127.0.0.1";
    connect_ = relpCltConnect(client_, AF_INET, U(port_text), U(host));
  }
  ~Client() { Destroy(); }

  relpRetVal connect_result() const { return connect_; }
  relpRetVal Send(std::string m) { return relpCltSendSyslog(client_, U(m), m.size()); }
  // Sends `close`, waits for its rsp; returns relpEngineCltDestruct's result.
  relpRetVal Destroy() {
    relpRetVal r = RELP_RET_OK;
    if (client_ != nullptr) r = relpEngineCltDestruct(engine_, &client_);
    if (engine_ != nullptr) {
      EXPECT_EQ(relpEngineDestruct(&engine_), RELP_RET_OK);
    }
    return r;
  }

 private:
  static constexpr unsigned kClientTimeoutS = 20;
  relpEngine_t* engine_ = nullptr;
  relpClt_t* client_ = nullptr;
  relpRetVal connect_ = RELP_RET_OK;
};

TEST(RelpLibrelp, TenThousandMessagesExactlyOnceInOrderAllAcked) {
  LoopbackServer server;
  std::thread server_thread([&] { server.Run(); });
  {
    Client client(server.port());
    ASSERT_EQ(client.connect_result(), RELP_RET_OK) << g_errors_text;
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_EQ(client.Send(Message(i)), RELP_RET_OK) << "message " << i << ": " << g_errors_text;
    }
    // Sends `close` and waits for its rsp, which we emit only after all acks.
    EXPECT_EQ(client.Destroy(), RELP_RET_OK);
  }
  server_thread.join();

  EXPECT_EQ(server.failure(), "");
  EXPECT_EQ(server.clean_closes(), 1);
  ASSERT_EQ(server.received().size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(server.received()[i].data, Message(i)) << "at " << i;
    ASSERT_EQ(server.received()[i].txnr, static_cast<RelpTxnr>(i + 2));  // 1 is `open`
  }
  EXPECT_EQ(server.acked(), static_cast<uint64_t>(kMessages));
  EXPECT_EQ(server.rsp_sent(), static_cast<uint64_t>(kMessages + 2));
  EXPECT_GT(server.max_batch(), 1u);  // acks really were grouped
  // The client took every rsp as success: open + each message + close.
  EXPECT_EQ(g_rsp_ok.load(), kMessages + 2);
  EXPECT_EQ(g_rsp_other.load(), 0);
  EXPECT_EQ(g_errors.load(), 0) << g_errors_text;
}

// A 500 rsp fails the transaction at the client: librelp reports "peer
// sent error response" and the next relpCltSendSyslog returns
// RELP_RET_RSP_STATE_ERR (that message is not sent; omrelp would retry it),
// but the session goes on and closes cleanly.
TEST(RelpLibrelp, NackedMessageIsAFailureForTheClient) {
  constexpr int kNacked = 5;
  constexpr int kAfterFailure = 5;  // sends after the failure: session still up
  LoopbackServer server(ServerPolicy{.nack_index = kNacked});
  std::thread server_thread([&] { server.Run(); });
  std::vector<relpRetVal> results;
  {
    Client client(server.port());
    ASSERT_EQ(client.connect_result(), RELP_RET_OK) << g_errors_text;
    int left = kAfterFailure;
    for (int i = 0; i < kSendsMax && left > 0; ++i) {
      results.push_back(client.Send(Message(i)));
      if (results.back() != RELP_RET_OK || left < kAfterFailure) --left;
      std::this_thread::sleep_for(2 * kAckDelay);  // let rsps arrive
    }
    EXPECT_EQ(client.Destroy(), RELP_RET_OK);
  }
  const int sent = static_cast<int>(results.size());
  server_thread.join();

  EXPECT_EQ(server.failure(), "");
  EXPECT_EQ(server.clean_closes(), 1);
  EXPECT_EQ(g_rsp_other.load(), 1);  // the 500
  EXPECT_EQ(g_errors.load(), 1);
  EXPECT_NE(g_errors_text.find("peer sent error response"), std::string::npos) << g_errors_text;
  std::vector<std::string> want;  // what the client really sent
  int failed = 0;
  for (int i = 0; i < sent; ++i) {
    if (results[i] == RELP_RET_OK) {
      want.push_back(Message(i));
      continue;
    }
    ++failed;
    EXPECT_EQ(results[i], RELP_RET_RSP_STATE_ERR) << "send " << i;
    EXPECT_GT(i, kNacked);  // reported on a later send, never before the Nack
  }
  EXPECT_EQ(failed, 1);
  ASSERT_EQ(server.received().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(server.received()[i].data, want[i]);
  EXPECT_EQ(server.acked(), want.size() - 1);
  EXPECT_EQ(g_rsp_ok.load(), static_cast<int>(want.size()) + 1);  // + open + close - 500
}

// A `serverclose` hint breaks the client's session: every later send fails
// with RELP_RET_SESSION_BROKEN (omrelp then reconnects and resends what was
// not acknowledged).
TEST(RelpLibrelp, ServerCloseIsAFailureForTheClient) {
  constexpr int kCloseAfter = 5;
  constexpr int kAfterFailure = 5;
  LoopbackServer server(ServerPolicy{.server_close_after = kCloseAfter});
  std::thread server_thread([&] { server.Run(); });
  std::vector<relpRetVal> results;
  {
    Client client(server.port());
    ASSERT_EQ(client.connect_result(), RELP_RET_OK) << g_errors_text;
    int left = kAfterFailure;
    for (int i = 0; i < kSendsMax && left > 0; ++i) {
      results.push_back(client.Send(Message(i)));
      if (results.back() != RELP_RET_OK || left < kAfterFailure) --left;
      std::this_thread::sleep_for(2 * kAckDelay);
    }
    client.Destroy();  // the session is gone; only frees the client
  }
  const int sent = static_cast<int>(results.size());
  server.Stop();
  server_thread.join();

  EXPECT_EQ(server.failure(), "");
  EXPECT_TRUE(server.server_closed());
  int first_failure = -1;
  for (int i = 0; i < sent; ++i) {
    if (results[i] != RELP_RET_OK && first_failure < 0) first_failure = i;
    if (first_failure >= 0) {
      EXPECT_NE(results[i], RELP_RET_OK) << "send " << i;
    }
  }
  ASSERT_GE(first_failure, kCloseAfter) << "the first sends must succeed";
  EXPECT_EQ(results.back(), RELP_RET_SESSION_BROKEN);
  EXPECT_NE(g_errors_text.find("server closed relp session"), std::string::npos) << g_errors_text;
  ASSERT_GE(server.received().size(), static_cast<size_t>(kCloseAfter));
  ASSERT_LE(server.received().size(), static_cast<size_t>(first_failure));
  for (size_t i = 0; i < server.received().size(); ++i) {
    EXPECT_EQ(server.received()[i].data, Message(static_cast<int>(i)));
  }
  EXPECT_LT(server.acked(), server.received().size());               // some left unanswered
  EXPECT_EQ(g_rsp_ok.load(), static_cast<int>(server.acked()) + 1);  // + open
  EXPECT_EQ(g_rsp_other.load(), 0);
}

// --- The real rsyslogd: imuxsock on a private socket -> omrelp -> us. ---

constexpr int kRsyslogMessages = 200;
constexpr auto kRsyslogDeadline = std::chrono::seconds(30);
constexpr auto kRsyslogExitWait = std::chrono::seconds(10);

// The first of `paths` that access(2) allows with `mode`, or "".
std::string FirstPath(std::initializer_list<const char*> paths, int mode = X_OK) {
  for (const char* p : paths) {
    if (::access(p, mode) == 0) return p;
  }
  return "";
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  return std::fclose(f) == 0 && ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs argv with stdout and stderr appended to `log`; returns the pid or -1.
pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// Waits up to `wait` for `pid` to exit; SIGKILLs it after that. Returns the
// wait status, or -1 if it had to be killed.
int Reap(pid_t pid, std::chrono::milliseconds wait) {
  const Clock::time_point deadline = Clock::now() + wait;
  int status = 0;
  while (Clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// Ends a child we started, whatever happens in the test.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  // Sends SIGTERM and waits; returns the wait status or -1 (killed).
  int Terminate() {
    ::kill(pid_, SIGTERM);
    int status = Reap(pid_, kRsyslogExitWait);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

std::string RsyslogConf(const TempDir& dir, uint16_t port) {
  return "global(workDirectory=\"" + dir.path() +
         "\")\n"
         "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
         "module(load=\"omrelp\")\n"
         "template(name=\"msgonly\" type=\"string\" string=\"%msg%\")\n"
         "ruleset(name=\"fwd\") {\n"
         "  action(type=\"omrelp\" target=\"127.0.0.1\" port=\"" +
         std::to_string(port) +
         "\"\n"
         "         template=\"msgonly\")\n"
         "}\n"
         "input(type=\"imuxsock\" Socket=\"" +
         (dir / "log.sock") +
         "\"\n"
         "      RateLimit.Interval=\"0\" ruleset=\"fwd\")\n";
}

std::string RsyslogText(int i) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "tandem-relp-%05d", i);
  return buf;
}

// rsyslogd (as it runs on a sender) forwards `logger` lines over RELP to
// the loopback server: all arrive once, in order, and rsyslogd's clean
// shutdown -- `close` answered only after every Ack -- proves it saw them
// acknowledged.
TEST(RelpRsyslogd, LoggerLinesArriveInOrderOverOmrelp) {
  const std::string rsyslogd = FirstPath({"/usr/sbin/rsyslogd", "/sbin/rsyslogd"});
  const std::string logger = FirstPath({"/usr/bin/logger", "/bin/logger"});
  if (rsyslogd.empty() || logger.empty()) GTEST_SKIP() << "rsyslogd or logger not installed";
  if (FirstPath({"/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so", "/usr/lib/rsyslog/omrelp.so",
                 "/usr/lib64/rsyslog/omrelp.so"},
                R_OK)
          .empty()) {
    GTEST_SKIP() << "rsyslog's omrelp module (rsyslog-relp) not installed";
  }
  TempDir dir("tandem-relp");
  LoopbackServer server;
  std::thread server_thread([&] { server.Run(); });
  struct Joiner {
    LoopbackServer* s;
    std::thread* t;
    ~Joiner() {
      s->Stop();
      if (t->joinable()) t->join();
    }
  } joiner{&server, &server_thread};

  ASSERT_TRUE(WriteFile(dir / "rsyslog.conf", RsyslogConf(dir, server.port())));
  std::string lines;
  for (int i = 0; i < kRsyslogMessages; ++i) lines += RsyslogText(i) + "\n";
  ASSERT_TRUE(WriteFile(dir / "lines", lines));

  pid_t pid = SpawnLogged({rsyslogd, "-n", "-f", dir / "rsyslog.conf", "-i", dir / "rsyslogd.pid"},
                          dir / "rsyslogd.log");
  ASSERT_GT(pid, 0);
  ChildGuard guard(pid);
  const Clock::time_point deadline = Clock::now() + kRsyslogDeadline;
  while (::access((dir / "log.sock").c_str(), F_OK) != 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(::access((dir / "log.sock").c_str(), F_OK), 0) << ReadFile(dir / "rsyslogd.log");

  pid_t lpid =
      SpawnLogged({logger, "-d", "-u", dir / "log.sock", "-t", "tandemtest", "-f", dir / "lines"},
                  dir / "logger.log");
  ASSERT_GT(lpid, 0);
  int lstatus = Reap(lpid, kRsyslogExitWait);
  ASSERT_TRUE(WIFEXITED(lstatus) && WEXITSTATUS(lstatus) == 0) << ReadFile(dir / "logger.log");

  while (server.received_count() < static_cast<size_t>(kRsyslogMessages) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Give acks time to go out before the shutdown's `close`.
  std::this_thread::sleep_for(10 * kAckDelay);
  int status = guard.Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "status " << status << ": " << ReadFile(dir / "rsyslogd.log");
  server.Stop();
  server_thread.join();

  EXPECT_EQ(server.failure(), "") << ReadFile(dir / "rsyslogd.log");
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(server.clean_closes(), 1);  // rsyslogd closed with `close`
  ASSERT_EQ(server.received().size(), static_cast<size_t>(kRsyslogMessages))
      << ReadFile(dir / "rsyslogd.log");
  for (int i = 0; i < kRsyslogMessages; ++i) {
    EXPECT_NE(server.received()[i].data.find(RsyslogText(i)), std::string::npos)
        << "at " << i << ": " << server.received()[i].data;
  }
  EXPECT_EQ(server.acked(), static_cast<uint64_t>(kRsyslogMessages));
}

}  // namespace
}  // namespace tandem::collect

#else  // !TANDEM_HAVE_LIBRELP

TEST(RelpLibrelp, SkippedWithoutLibrelp) {
  GTEST_SKIP() << "librelp-dev not found at configure time";
}

#endif
