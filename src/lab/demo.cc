// `tandem demo-service`: the lab's protected service. Answers every TCP
// connection on the VIP with its host's name, so a client can see which host
// serves. Bind failures exit 1 (the supervisor retries with backoff, e.g.
// while a hung old active still holds the address).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <iostream>

#include "config/config.h"
#include "lab/lab.h"
#include "os/files.h"
#include "peer/witness.h"

namespace tandem::lab {

int DemoService(const std::string& bind_to, const std::string& name) {
  auto ep = config::ParseEndpoint(bind_to);
  if (!ep.ok()) {
    std::cerr << "demo-service: --bind: " << ep.status().message() << "\n";
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep->port);
  inet_pton(AF_INET, ep->host.c_str(), &sa.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 128) != 0) {
    std::cerr << "demo-service: cannot listen on " << bind_to << ": " << std::strerror(errno)
              << "\n";
    return 1;
  }
  std::cerr << "demo-service: " << name << " listening on " << bind_to << "\n";
  const std::string answer = name + "\n";
  for (;;) {
    int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    ssize_t n = write(c, answer.data(), answer.size());
    (void)n;
    close(c);
  }
}

int RunWitness(const std::string& listen, const std::string& key_file, const std::string& name) {
  auto ep = config::ParseEndpoint(listen);
  if (!ep.ok()) {
    std::cerr << "witness: --listen: " << ep.status().message() << "\n";
    return 2;
  }
  auto key = os::ReadFile(key_file, 64 * 1024);
  if (!key.ok()) {
    std::cerr << "witness: --key-file: " << key.status().message() << "\n";
    return 2;
  }
  std::string k = *key;
  if (!k.empty() && k.back() == '\n') k.pop_back();  // as config.cc reads cluster.key_file
  os::EventLoop loop;
  peer::Witness w(loop, name, k, *ep);
  Status st = w.Open();
  if (!st.ok()) {
    std::cerr << "witness: " << st.message() << "\n";
    return 1;
  }
  for (int sig : {SIGTERM, SIGINT}) (void)loop.AddSignal(sig, [&loop] { loop.Stop(); });
  std::cerr << "witness " << name << " listening on " << listen << "\n";
  loop.Run();
  return 0;
}

Result<std::string> Probe(const std::string& addr, int64_t timeout_ms) {
  auto ep = config::ParseEndpoint(addr);
  if (!ep.ok()) return Status::Error("--addr: " + ep.status().message());
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep->port);
  inet_pton(AF_INET, ep->host.c_str(), &sa.sin_addr);
  connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  pollfd p{fd, POLLIN, 0};
  std::string out;
  if (poll(&p, 1, static_cast<int>(timeout_ms)) == 1) {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) out.assign(buf, static_cast<size_t>(n));
  }
  close(fd);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty()) return Status::Error("no answer from " + addr + " within " +
                                        std::to_string(timeout_ms) + " ms");
  return out;
}

}  // namespace tandem::lab
