#include "api/control.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

namespace tandem::api {

using nlohmann::json;

namespace {

constexpr mode_t kSocketMode = 0660;
constexpr size_t kReadChunkBytes = 16 * 1024;
constexpr size_t kResponseBytesMax = 16 * 1024 * 1024;  // client side sanity cap
constexpr int64_t kClientIdleMs = 10000;   // a connection must finish within this
constexpr int64_t kAcceptRetryMs = 100;    // after EMFILE & co., instead of spinning
constexpr int kGroupsMax = 1024;           // getgrouplist fallback

std::string ErrnoText() { return std::strerror(errno); }

json ErrorResponse(const std::string& error) { return json{{"ok", false}, {"error", error}}; }

// Never throws: invalid UTF-8 (e.g. echoed from a request) is replaced.
std::string Line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

bool FillAddr(const std::string& path, sockaddr_un* sa) {
  *sa = sockaddr_un{};
  if (path.empty() || path.size() >= sizeof(sa->sun_path)) return false;
  sa->sun_family = AF_UNIX;
  std::memcpy(sa->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Whether a live process has `gid` among its real/effective/supplementary
// groups, from /proc; nullopt if the process is not visible.
std::optional<bool> ProcessInGroup(pid_t pid, gid_t gid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0 && line.rfind("Gid:", 0) != 0) continue;
    std::istringstream ss(line.substr(line.find(':') + 1));
    long g = 0;
    while (ss >> g) {
      if (static_cast<gid_t>(g) == gid) return true;
    }
  }
  return false;
}

// Fallback when the peer's pid is not visible (another pid namespace): the
// group database's memberships of the peer's user.
bool UserInGroup(uid_t uid, gid_t primary, gid_t gid) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(kReadChunkBytes);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return false;
  std::vector<gid_t> groups(kGroupsMax);
  int n = kGroupsMax;
  if (getgrouplist(pw.pw_name, primary, groups.data(), &n) < 0) return false;
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == gid) return true;
  }
  return false;
}

// Parses one request line: the request object, or an error response.
std::pair<json, json> ParseRequest(const std::string& line) {
  json req;
  try {
    req = json::parse(line);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    size_t cut = what.find("] ");  // drop "[json.exception.parse_error.101] "
    if (cut != std::string::npos) what = what.substr(cut + 2);
    return {json(), ErrorResponse("malformed request: " + what)};
  }
  if (!req.is_object()) return {json(), ErrorResponse("malformed request: not a JSON object")};
  auto cmd = req.find("cmd");
  if (cmd == req.end() || !cmd->is_string()) {
    return {json(), ErrorResponse("malformed request: missing string \"cmd\"")};
  }
  return {std::move(req), json()};
}

// Runs the handler on a parsed request; never throws.
json Dispatch(const Handler& handler, const json& req) {
  try {
    json resp = handler(req);
    if (!resp.is_object()) return ErrorResponse("internal error: handler returned no object");
    return resp;
  } catch (const std::exception& e) {
    return ErrorResponse("request failed: " + std::string(e.what()));
  } catch (...) {
    return ErrorResponse("request failed: unknown exception");
  }
}

}  // namespace

struct ControlServer::Impl {
  struct Client {
    std::string in;
    std::string out;  // the response, once there is one
    size_t written = 0;
    uint64_t id = 0;  // unique per connection (descriptors are reused)
    bool waiting = false;  // an asynchronous request is being handled
    os::EventLoop::TimerId idle_timer = 0;
  };

  Impl(os::EventLoop& l, Handler h) : loop(l), handler(std::move(h)) {}

  os::EventLoop& loop;
  Handler handler;
  int fd = -1;
  std::string path;
  bool has_group = false;
  gid_t group = 0;
  std::string group_name;
  os::EventLoop::TimerId accept_retry_timer = 0;
  std::map<int, Client> clients;
  std::map<std::string, AsyncHandler> async;
  uint64_t next_client_id = 0;
  // Replies hold a weak reference: a reply after the server is gone is a no-op.
  std::shared_ptr<Impl*> self = std::make_shared<Impl*>(this);

  Status Bind(const std::string& socket_path);
  void OnAccept();
  void AddClient(int cfd);
  void OnClient(int cfd, uint32_t events);
  void OnReadable(int cfd, Client& c);
  void Respond(int cfd, const json& response);
  void HandleLine(int cfd, Client& c, const std::string& line);
  void Flush(int cfd, Client& c);
  void Drop(int cfd);
  std::string Authorize(int cfd) const;
};

void ControlServer::Impl::Drop(int cfd) {
  auto it = clients.find(cfd);
  if (it == clients.end()) return;
  if (it->second.idle_timer != 0) loop.CancelTimer(it->second.idle_timer);
  clients.erase(it);
  loop.RemoveFd(cfd);
  close(cfd);
}

// Returns "" if the peer may use the channel, else why not.
std::string ControlServer::Impl::Authorize(int cfd) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return "permission denied: cannot read peer credentials: " + ErrnoText();
  }
  if (cred.uid == 0 || cred.uid == geteuid()) return "";
  if (has_group) {
    if (cred.gid == group) return "";
    std::optional<bool> member = ProcessInGroup(cred.pid, group);
    if (member.has_value() ? *member : UserInGroup(cred.uid, cred.gid, group)) return "";
  }
  return "permission denied: uid " + std::to_string(cred.uid) + " is not root or " +
         (has_group ? "in group " + group_name : "tandemd's user");
}

void ControlServer::Impl::Respond(int cfd, const json& response) {
  auto it = clients.find(cfd);
  if (it == clients.end()) return;
  Client& c = it->second;
  c.out = Line(response);
  c.written = 0;
  if (!loop.ModifyFd(cfd, EPOLLOUT).ok()) return Drop(cfd);
  Flush(cfd, c);
}

// Writes what the socket takes; drops the client when done or broken.
void ControlServer::Impl::Flush(int cfd, Client& c) {
  while (c.written < c.out.size()) {
    ssize_t n = send(cfd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // wait for EPOLLOUT
    if (n <= 0) break;
    c.written += static_cast<size_t>(n);
  }
  Drop(cfd);
}

void ControlServer::Impl::OnReadable(int cfd, Client& c) {
  char buf[kReadChunkBytes];
  ssize_t n = recv(cfd, buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n < 0 || (n == 0 && c.in.empty())) return Drop(cfd);
  c.in.append(buf, static_cast<size_t>(n));
  size_t nl = c.in.find('\n');
  if (nl == std::string::npos && n == 0) nl = c.in.size();  // EOF ends the request too
  if (nl == std::string::npos) {
    if (c.in.size() > kRequestBytesMax) Respond(cfd, ErrorResponse("request too large"));
    return;
  }
  if (nl > kRequestBytesMax) return Respond(cfd, ErrorResponse("request too large"));
  HandleLine(cfd, c, c.in.substr(0, nl));
}

void ControlServer::Impl::HandleLine(int cfd, Client& c, const std::string& line) {
  auto [req, error] = ParseRequest(line);
  if (!error.is_null()) return Respond(cfd, error);
  auto a = async.find(req["cmd"].get<std::string>());
  if (a == async.end()) return Respond(cfd, Dispatch(handler, req));
  c.waiting = true;
  (void)loop.ModifyFd(cfd, 0);  // nothing more is read; the reply re-arms
  if (c.idle_timer != 0) loop.CancelTimer(c.idle_timer);
  c.idle_timer = 0;
  std::weak_ptr<Impl*> weak = self;
  uint64_t id = c.id;
  Reply reply = [weak, cfd, id](const json& response) {
    auto s = weak.lock();
    if (!s) return;
    Impl& m = **s;
    auto it = m.clients.find(cfd);
    if (it == m.clients.end() || it->second.id != id || !it->second.waiting) return;
    it->second.waiting = false;
    m.Respond(cfd, response.is_object() ? response
                                        : ErrorResponse("internal error: handler returned no object"));
  };
  try {
    a->second(req, reply);
  } catch (const std::exception& e) {
    reply(ErrorResponse("request failed: " + std::string(e.what())));
  } catch (...) {
    reply(ErrorResponse("request failed: unknown exception"));
  }
}

void ControlServer::Impl::OnClient(int cfd, uint32_t events) {
  auto it = clients.find(cfd);
  if (it == clients.end()) return;
  Client& c = it->second;
  if (!c.out.empty()) return Flush(cfd, c);
  if (c.waiting) {  // only a hang-up is of interest until the reply
    if ((events & (EPOLLHUP | EPOLLERR)) != 0) Drop(cfd);
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) OnReadable(cfd, c);
}

void ControlServer::Impl::AddClient(int cfd) {
  if (clients.size() >= static_cast<size_t>(kClientsMax)) {
    // Best effort (a fresh socket's buffer takes it), then closed at once.
    std::string busy = Line(ErrorResponse("too many control connections"));
    ssize_t n = send(cfd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(cfd);
    return;
  }
  if (!loop.AddFd(cfd, EPOLLIN, [this, cfd](uint32_t ev) { OnClient(cfd, ev); }).ok()) {
    close(cfd);
    return;
  }
  Client& c = clients[cfd];
  c.id = ++next_client_id;
  c.idle_timer = loop.AddTimer(kClientIdleMs, [this, cfd] {
    auto it = clients.find(cfd);
    if (it == clients.end()) return;
    it->second.idle_timer = 0;
    Drop(cfd);
  });
  std::string denied = Authorize(cfd);
  if (!denied.empty()) Respond(cfd, ErrorResponse(denied));
}

void ControlServer::Impl::OnAccept() {
  for (;;) {
    int cfd = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd >= 0) {
      AddClient(cfd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    // Out of descriptors or memory: pause accepting rather than spin.
    if (!loop.ModifyFd(fd, 0).ok()) return;
    accept_retry_timer = loop.AddTimer(kAcceptRetryMs, [this] {
      accept_retry_timer = 0;
      (void)loop.ModifyFd(fd, EPOLLIN);
    });
    return;
  }
}

Status ControlServer::Impl::Bind(const std::string& socket_path) {
  sockaddr_un sa;
  if (!FillAddr(socket_path, &sa)) {
    return Status::Error(socket_path + ": invalid control socket path (empty or too long)");
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("control socket: " + ErrnoText());
  unlink(socket_path.c_str());  // a stale socket of an earlier run (the pid lock says none runs)
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return Status::Error(socket_path + ": cannot bind control socket: " + ErrnoText());
  }
  path = socket_path;
  // Nobody can connect before listen(), so the mode is right before anyone can.
  if (chmod(path.c_str(), kSocketMode) != 0) return Status::Error(path + ": chmod: " + ErrnoText());
  if (has_group && chown(path.c_str(), static_cast<uid_t>(-1), group) != 0) {
    return Status::Error(path + ": chown to group " + group_name + ": " + ErrnoText());
  }
  if (listen(fd, kClientsMax) != 0) return Status::Error(path + ": listen: " + ErrnoText());
  return loop.AddFd(fd, EPOLLIN, [this](uint32_t) { OnAccept(); });
}

ControlServer::ControlServer(os::EventLoop& loop, Handler handler)
    : impl_(std::make_unique<Impl>(loop, std::move(handler))) {}

ControlServer::~ControlServer() { Close(); }

Status ControlServer::Listen(const std::string& path, const std::string& admin_group) {
  Impl& m = *impl_;
  if (m.fd >= 0) return Status::Error(path + ": control server already listening on " + m.path);
  m.has_group = false;
  if (!admin_group.empty()) {
    group* g = getgrnam(admin_group.c_str());
    if (g == nullptr) return Status::Error("host.admin_group: no such group '" + admin_group + "'");
    m.has_group = true;
    m.group = g->gr_gid;
    m.group_name = admin_group;
  }
  Status st = m.Bind(path);
  if (!st.ok()) Close();
  return st;
}

void ControlServer::SetAsync(const std::string& cmd, AsyncHandler handler) {
  impl_->async[cmd] = std::move(handler);
}

void ControlServer::Close() {
  Impl& m = *impl_;
  while (!m.clients.empty()) m.Drop(m.clients.begin()->first);
  if (m.accept_retry_timer != 0) m.loop.CancelTimer(m.accept_retry_timer);
  m.accept_retry_timer = 0;
  if (m.fd >= 0) {
    m.loop.RemoveFd(m.fd);
    close(m.fd);
    m.fd = -1;
  }
  if (!m.path.empty()) unlink(m.path.c_str());
  m.path.clear();
}

// ---- client ----

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kSendFailed = "send: ";  // Exchange's error prefix for a failed send

int64_t MsLeft(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
}

Status Connect(int fd, const std::string& path, int64_t timeout_ms) {
  sockaddr_un sa;
  if (!FillAddr(path, &sa)) return Status::Error(path + ": invalid control socket path");
  // Bounds a connect blocked on a full backlog, and the send.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_ms % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return Status::Error("cannot connect to " + path + ": " + ErrnoText() +
                         " (is tandemd running?)");
  }
  return Status::Ok();
}

Status SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error(errno == EAGAIN ? "timed out" : ErrnoText());
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads up to the first '\n' (or EOF). Error "timed out" at the deadline.
Result<std::string> ReadLine(int fd, Clock::time_point deadline) {
  std::string in;
  while (in.find('\n') == std::string::npos) {
    int64_t left = MsLeft(deadline);
    if (left <= 0) return Status::Error("timed out");
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Status::Error("poll: " + ErrnoText());
    if (rc == 0) return Status::Error("timed out");
    char buf[kReadChunkBytes];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && in.empty()) return Status::Error(ErrnoText());
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > kResponseBytesMax) return Status::Error("response too large");
  }
  return in.substr(0, in.find('\n'));
}

// Sends the request and reads the response line. A server that refuses
// (permission denied) may answer and close before the request is sent, so
// a failed send still reads whatever answer came.
Result<std::string> Exchange(int fd, const json& request, int64_t timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Status sent = SendAll(fd, Line(request));
  Result<std::string> line = ReadLine(fd, deadline);
  if (!sent.ok() && (!line.ok() || line->empty())) {
    return Status::Error(std::string(kSendFailed) + sent.message());
  }
  return line;
}

}  // namespace

Result<json> Call(const std::string& path, const json& request, int64_t timeout_ms) {
  if (timeout_ms < 1) timeout_ms = 1;  // 0 would mean "no timeout" to SO_SNDTIMEO
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("socket: " + ErrnoText());
  Status st = Connect(fd, path, timeout_ms);
  if (!st.ok()) {
    close(fd);
    return st;
  }
  Result<std::string> line = Exchange(fd, request, timeout_ms);
  close(fd);
  if (!line.ok()) {
    const std::string& why = line.status().message();
    if (why == "timed out") {
      return Status::Error("timed out after " + std::to_string(timeout_ms) +
                           " ms waiting for tandemd at " + path);
    }
    if (why.rfind(kSendFailed, 0) == 0) {
      return Status::Error("cannot send to " + path + ": " + why.substr(kSendFailed.size()));
    }
    return Status::Error("bad response from " + path + ": " + why);
  }
  if (line->empty()) {
    return Status::Error("bad response from " + path + ": closed without a response");
  }
  json resp = json::parse(*line, nullptr, false);
  if (resp.is_discarded() || !resp.is_object()) {
    return Status::Error("bad response from " + path + ": not a JSON object");
  }
  return resp;
}

}  // namespace tandem::api
