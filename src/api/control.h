// The control channel between `ha` and tandemd (R-NF-2 for the local side):
// a Unix stream socket at config.control_socket, mode 0660 (group =
// admin_group when set, else root's), and every connection is checked with
// SO_PEERCRED: uid 0, the daemon's own uid, or a member of admin_group;
// anyone else gets {"ok":false,"error":"permission denied"} and is closed.
// Protocol: one JSON object per line each way (request, response), at most
// kRequestBytesMax per request; malformed JSON or an oversized request gets
// an error response, never a crash.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "os/event_loop.h"
#include "util/status.h"

namespace tandem::api {

constexpr size_t kRequestBytesMax = 64 * 1024;
constexpr int kClientsMax = 32;  // concurrent control connections

// Handles one request {"cmd": "...", ...} and returns the response object
// (which must contain "ok": true|false and, when false, "error").
using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

// Sends the response of an asynchronous request. Call it on the loop thread
// (from a worker: EventLoop::Post), at most once; if the client is gone by
// then (it hung up, or the server was closed or destroyed), it does nothing.
using Reply = std::function<void(const nlohmann::json& response)>;
// Handles a request whose response comes later (work that must not run on
// the loop, e.g. a search): it is called on the loop thread and must arrange
// for `reply` to be called exactly once. A throw is answered as an error.
using AsyncHandler = std::function<void(const nlohmann::json& request, Reply reply)>;

class ControlServer {
 public:
  ControlServer(os::EventLoop& loop, Handler handler);
  ~ControlServer();
  // Binds `path` (removing a stale socket file first), chmod 0660, chown to
  // `admin_group` when non-empty (error if the group does not exist).
  Status Listen(const std::string& path, const std::string& admin_group);
  void Close();
  // Requests with {"cmd": cmd} go to `handler` instead of the Handler. While
  // such a request waits for its reply the connection's idle limit
  // (kClientIdleMs) does not apply, so the handler must bound its own time or
  // queue (the connection limit kClientsMax still holds).
  void SetAsync(const std::string& cmd, AsyncHandler handler);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Client side (used by `ha`): connects, sends one request, waits up to
// `timeout_ms` for the response line. Errors: "cannot connect to <path>:
// <why> (is tandemd running?)", "timed out", "bad response".
Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& request,
                            int64_t timeout_ms);

}  // namespace tandem::api
