#include "lab/store_tool.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>

#include "config/config.h"

namespace tandem::lab {

using nlohmann::json;

uint8_t FillByte(uint64_t seed, int index, uint64_t offset) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(index) << 40) ^ (offset / 8);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<uint8_t>(x >> (8 * (offset % 8)));
}

namespace {

double NowS() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Status SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error(std::string("volume socket: send: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Sends one request and waits for its reply line.
Status Exchange(int fd, const json& header, std::string_view data, std::string* in) {
  TANDEM_RETURN_IF_ERROR(SendAll(fd, header.dump() + "\n" + std::string(data)));
  size_t nl;
  while ((nl = in->find('\n')) == std::string::npos) {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Error("volume socket closed by tandemd");
    in->append(buf, static_cast<size_t>(n));
  }
  json r = json::parse(in->substr(0, nl), nullptr, false);
  in->erase(0, nl + 1);
  if (r.is_discarded()) return Status::Error("volume socket: bad reply");
  if (!r.value("ok", false)) {
    return Status::Error(header.value("op", "") + " " + header.value("path", "") +
                         " refused: " + r.value("error", "?"));
  }
  return Status::Ok();
}

// The volume socket of the host behind `config_path`: [replication]'s, or
// on an agent-only host the default one (<run_dir>/volume.sock) of the
// cluster a console deployed to it (docs/CONSOLE.md, "Clusters formed by a
// deploy") when tandemd runs one.
Result<std::string> VolumeSocket(const std::string& config_path) {
  auto cfg = config::Load(config_path, /*read_key=*/false);
  if (!cfg.ok()) return cfg.status();
  if (cfg->replication) return cfg->volume_socket;
  const std::string deployed = cfg->run_dir + "/volume.sock";
  struct stat st {};
  if (cfg->agent_only && ::stat(deployed.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return deployed;
  return Status::Error(config_path + ": no [replication]" +
                       (cfg->agent_only ? " and no deployed cluster running here" : std::string()) +
                       ": this host has no volume");
}

Result<int> ConnectVolume(const std::string& config_path) {
  auto path = VolumeSocket(config_path);
  if (!path.ok()) return path.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("socket failed");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path->c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::string e = std::strerror(errno);
    ::close(fd);
    return Status::Error("cannot connect to " + *path + ": " + e + " (is tandemd running?)");
  }
  return fd;
}

}  // namespace

Status StorePut(const std::string& config, const std::string& path, const std::string& data) {
  auto fd = ConnectVolume(config);
  if (!fd.ok()) return fd.status();
  std::string in;
  uint64_t id = 0;
  Status st = Exchange(*fd, json{{"id", ++id}, {"op", "create"}, {"path", path}}, "", &in);
  for (size_t off = 0; st.ok() && off < data.size(); off += kPutChunkBytes) {
    size_t n = std::min(kPutChunkBytes, data.size() - off);
    st = Exchange(*fd, json{{"id", ++id}, {"op", "append"}, {"path", path}, {"length", n}},
                  std::string_view(data).substr(off, n), &in);
  }
  ::close(*fd);
  return st;
}

Result<json> StoreFill(const FillOptions& o) {
  auto connected = ConnectVolume(o.config);
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  // Requests: per file a create, then appends.
  struct Req {
    std::string header;
    std::string data;
    int file = -1;    // appends: which file ...
    uint64_t end = 0;  // ... and where the data ends
  };
  std::deque<Req> requests;
  json paths = json::array();
  uint64_t id = 0;
  for (int f = 0; f < o.files; ++f) {
    std::string path = o.prefix + std::to_string(f) + ".dat";
    paths.push_back(path);
    requests.push_back({json{{"id", ++id}, {"op", "create"}, {"path", path}}.dump() + "\n", ""});
    for (uint64_t off = 0; off < o.bytes; off += o.write_bytes) {
      uint64_t n = std::min(o.write_bytes, o.bytes - off);
      std::string data(n, '\0');
      for (uint64_t i = 0; i < n; ++i) data[i] = static_cast<char>(FillByte(o.seed, f, off + i));
      requests.push_back({json{{"id", ++id}, {"op", "append"}, {"path", path}, {"length", n}}.dump() + "\n",
                      std::move(data), f, off + n});
    }
  }
  uint64_t total = id;
  std::map<uint64_t, double> sent_at;
  std::map<uint64_t, std::pair<int, uint64_t>> appends;  // id -> (file, end)
  std::vector<double> lat;
  std::string in;
  double start = NowS();
  uint64_t done = 0;
  Status err;
  while (done < total && err.ok()) {
    while (!requests.empty() && static_cast<int>(sent_at.size()) < o.window) {
      Req r = std::move(requests.front());
      requests.pop_front();
      uint64_t rid = total - requests.size();
      sent_at[rid] = NowS();
      if (r.file >= 0) appends[rid] = {r.file, r.end};
      err = SendAll(fd, r.header + r.data);
      if (!err.ok()) break;
    }
    if (!err.ok()) break;
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      err = Status::Error("volume socket closed by tandemd");
      break;
    }
    in.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = in.find('\n')) != std::string::npos) {
      json r = json::parse(in.substr(0, nl), nullptr, false);
      in.erase(0, nl + 1);
      if (r.is_discarded() || !r.value("ok", false)) {
        err = Status::Error("write refused: " + (r.is_discarded() ? std::string("bad reply") : r.value("error", "?")));
        break;
      }
      uint64_t rid = r.value("id", uint64_t{0});
      auto ap = appends.find(rid);
      if (ap != appends.end()) {
        if (o.on_ack) o.on_ack(ap->second.first, ap->second.second);
        appends.erase(ap);
      }
      auto it = sent_at.find(rid);
      if (it != sent_at.end()) {
        lat.push_back((NowS() - it->second) * 1000.0);
        sent_at.erase(it);
      }
      done++;
    }
  }
  ::close(fd);
  if (!err.ok()) return err;
  double secs = std::max(NowS() - start, 1e-9);
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<size_t>(p * static_cast<double>(lat.size())))];
  };
  uint64_t bytes = o.bytes * static_cast<uint64_t>(o.files);
  return json{{"files", o.files},
              {"bytes", bytes},
              {"writes", total},
              {"seconds", secs},
              {"mb_per_s", static_cast<double>(bytes) / secs / 1e6},
              {"latency_ms", {{"p50", pct(0.5)}, {"p99", pct(0.99)}, {"max", lat.empty() ? 0.0 : lat.back()}}},
              {"paths", paths}};
}

}  // namespace tandem::lab
