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
#include <sstream>

namespace tandem::api {

using nlohmann::json;

namespace {

std::string ErrnoText() { return std::strerror(errno); }

bool FillAddr(const std::string& path, sockaddr_un* sa) {
  if (path.size() >= sizeof(sa->sun_path)) return false;
  *sa = sockaddr_un{};
  sa->sun_family = AF_UNIX;
  std::memcpy(sa->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Supplementary and effective groups of a live process, from /proc.
bool ProcessInGroup(pid_t pid, gid_t gid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) == 0 || line.rfind("Gid:", 0) == 0) {
      std::istringstream ss(line.substr(line.find(':') + 1));
      long g;
      while (ss >> g) {
        if (static_cast<gid_t>(g) == gid) return true;
      }
    }
  }
  return false;
}

}  // namespace

struct ControlServer::Impl {
  struct Client {
    std::string in;
    std::string out;
    size_t written = 0;
  };
  os::EventLoop& loop;
  Handler handler;
  int fd = -1;
  std::string path;
  bool has_group = false;
  gid_t group = 0;
  std::string group_name;
  std::map<int, Client> clients;

  void OnAccept();
  void OnClient(int cfd, uint32_t events);
  void Respond(int cfd, const json& response);
  void Drop(int cfd);
  std::string Authorize(int cfd) const;
  json Dispatch(const std::string& line) const;
};

void ControlServer::Impl::Drop(int cfd) {
  loop.RemoveFd(cfd);
  close(cfd);
  clients.erase(cfd);
}

// Returns "" if the peer may use the channel, else why not.
std::string ControlServer::Impl::Authorize(int cfd) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "cannot read credentials";
  if (cred.uid == 0 || cred.uid == geteuid()) return "";
  if (has_group && (cred.gid == group || ProcessInGroup(cred.pid, group))) return "";
  return "permission denied: uid " + std::to_string(cred.uid) + " is not root" +
         (has_group ? " or in group " + group_name : "");
}

json ControlServer::Impl::Dispatch(const std::string& line) const {
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded()) return json{{"ok", false}, {"error", "malformed request: not JSON"}};
  if (!req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
    return json{{"ok", false}, {"error", "malformed request: need an object with a string \"cmd\""}};
  }
  try {
    return handler(req);
  } catch (const std::exception& e) {
    return json{{"ok", false}, {"error", std::string("request failed: ") + e.what()}};
  }
}

void ControlServer::Impl::Respond(int cfd, const json& response) {
  Client& c = clients[cfd];
  c.out = response.dump() + "\n";
  c.written = 0;
  (void)loop.ModifyFd(cfd, EPOLLOUT);
  OnClient(cfd, EPOLLOUT);
}

void ControlServer::Impl::OnClient(int cfd, uint32_t events) {
  auto it = clients.find(cfd);
  if (it == clients.end()) return;
  Client& c = it->second;
  if (!c.out.empty()) {
    while (c.written < c.out.size()) {
      ssize_t n = send(cfd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) break;
      c.written += static_cast<size_t>(n);
    }
    return Drop(cfd);
  }
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  char buf[4096];
  ssize_t n = recv(cfd, buf, sizeof buf, 0);
  if (n < 0 && errno == EAGAIN) return;
  if (n <= 0) return Drop(cfd);
  c.in.append(buf, static_cast<size_t>(n));
  size_t nl = c.in.find('\n');
  if (nl == std::string::npos) {
    if (c.in.size() > kRequestBytesMax) Respond(cfd, json{{"ok", false}, {"error", "request too large"}});
    return;
  }
  if (nl > kRequestBytesMax) return Respond(cfd, json{{"ok", false}, {"error", "request too large"}});
  Respond(cfd, Dispatch(c.in.substr(0, nl)));
}

void ControlServer::Impl::OnAccept() {
  for (;;) {
    int cfd = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return;
    if (clients.size() >= static_cast<size_t>(kClientsMax)) {
      close(cfd);
      continue;
    }
    clients[cfd] = Client{};
    if (!loop.AddFd(cfd, EPOLLIN, [this, cfd](uint32_t ev) { OnClient(cfd, ev); }).ok()) {
      close(cfd);
      clients.erase(cfd);
      continue;
    }
    std::string denied = Authorize(cfd);
    if (!denied.empty()) Respond(cfd, json{{"ok", false}, {"error", denied}});
  }
}

ControlServer::ControlServer(os::EventLoop& loop, Handler handler)
    : impl_(new Impl{loop, std::move(handler), -1, "", false, 0, "", {}}) {}

ControlServer::~ControlServer() { Close(); }

Status ControlServer::Listen(const std::string& path, const std::string& admin_group) {
  Impl& m = *impl_;
  sockaddr_un sa;
  if (!FillAddr(path, &sa)) return Status::Error(path + ": control socket path too long");
  if (!admin_group.empty()) {
    group* g = getgrnam(admin_group.c_str());
    if (!g) return Status::Error("host.admin_group: no such group '" + admin_group + "'");
    m.has_group = true;
    m.group = g->gr_gid;
    m.group_name = admin_group;
  }
  m.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m.fd < 0) return Status::Error("control socket: " + ErrnoText());
  unlink(path.c_str());  // a stale socket of an earlier run (the pid lock says none runs)
  if (bind(m.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return Status::Error(path + ": cannot bind control socket: " + ErrnoText());
  }
  m.path = path;
  if (chmod(path.c_str(), 0660) != 0) return Status::Error(path + ": chmod: " + ErrnoText());
  if (m.has_group && chown(path.c_str(), static_cast<uid_t>(-1), m.group) != 0) {
    return Status::Error(path + ": chown: " + ErrnoText());
  }
  if (listen(m.fd, kClientsMax) != 0) return Status::Error(path + ": listen: " + ErrnoText());
  return m.loop.AddFd(m.fd, EPOLLIN, [this](uint32_t) { impl_->OnAccept(); });
}

void ControlServer::Close() {
  Impl& m = *impl_;
  while (!m.clients.empty()) m.Drop(m.clients.begin()->first);
  if (m.fd >= 0) {
    m.loop.RemoveFd(m.fd);
    close(m.fd);
    m.fd = -1;
    unlink(m.path.c_str());
  }
}

Result<json> Call(const std::string& path, const json& request, int64_t timeout_ms) {
  sockaddr_un sa;
  if (!FillAddr(path, &sa)) return Status::Error(path + ": control socket path too long");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("socket: " + ErrnoText());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    Status st = Status::Error("cannot connect to " + path + ": " + ErrnoText() +
                              " (is tandemd running?)");
    close(fd);
    return st;
  }
  std::string line = request.dump() + "\n";
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    close(fd);
    return Status::Error("cannot send to " + path + ": " + ErrnoText());
  }
  std::string in;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (in.find('\n') == std::string::npos) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) != 1) {
      close(fd);
      return Status::Error("timed out waiting for tandemd at " + path);
    }
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  json resp = json::parse(in, nullptr, false);
  if (resp.is_discarded() || !resp.is_object()) return Status::Error("bad response from " + path);
  return resp;
}

}  // namespace tandem::api
