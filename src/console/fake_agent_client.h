// A scripted AgentClient for unit tests of the console (the seam of
// console/agent_client.h): hosts are entries in a map by agent address;
// every call is recorded. Not thread-safe beyond its mutex-guarded state.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "console/agent_client.h"

namespace tandem::console {

class FakeAgentClient : public AgentClient {
 public:
  struct Host {
    std::string cert_pem;       // what FetchCertificate answers
    std::string token;          // the pairing token it accepts (once)
    std::string key;            // the key it hands out at pairing
    bool paired = false;
    bool reachable = true;      // false: every call fails "unreachable"
    nlohmann::json facts = nlohmann::json::object();
    double rtt_ms = 0.3, mbps = 9000;  // what a measurement run answers
    bool fail_facts = false;    // true: Facts answers 401 (the agent refused the key)
  };

  // Invoke: a handler per "METHOD /api/v1/agent/path" (called with the
  // host's entry and the body, under `mu`); a call with no handler answers
  // 404 not_found "no such path". A handler answers the agent's JSON
  // object, AgentReply::Answered (an error answer with its HTTP status and
  // code), or a plain error Status (no answer: http_status 0).
  using Handler = std::function<AgentReply(Host&, const nlohmann::json&)>;

  std::mutex mu;
  std::map<std::string, Host> hosts;  // by address
  std::vector<std::string> calls;     // "facts 127.0.0.1:7790", "PUT /api/v1/agent/x 127.0.0.1:7790", ...
  std::map<std::string, Handler> handlers;

  Result<std::string> FetchCertificate(const std::string& address) override {
    std::lock_guard<std::mutex> l(mu);
    calls.push_back("certificate " + address);
    Host* h = Find(address);
    if (h == nullptr) return Status::Error("agent " + address + " unreachable");
    return h->cert_pem;
  }
  Result<nlohmann::json> Pair(const std::string& address, const std::string& cert_pem,
                              const std::string& token, const std::string& console) override {
    std::lock_guard<std::mutex> l(mu);
    calls.push_back("pair " + address + " " + console);
    Host* h = Find(address);
    if (h == nullptr) return Status::Error("agent " + address + " unreachable");
    if (cert_pem != h->cert_pem) {
      return Status::Error("agent " + address + " unreachable: its TLS certificate is not the pinned one");
    }
    if (h->paired) return Status::Error("agent " + address + " answered 409: already paired");
    if (token != h->token) return Status::Error("agent " + address + " answered 401: wrong pairing token");
    h->paired = true;
    return nlohmann::json{{"key", h->key}, {"facts", h->facts}};
  }
  Result<nlohmann::json> Facts(const AgentEndpoint& a) override {
    std::lock_guard<std::mutex> l(mu);
    calls.push_back("facts " + a.address);
    Host* h = Authorized(a);
    if (h == nullptr) return Status::Error("agent " + a.address + " unreachable");
    if (h->fail_facts) return Status::Error("agent " + a.address + " answered 401: invalid key");
    return h->facts;
  }
  Result<nlohmann::json> MeasureListen(const AgentEndpoint& a, int64_t bytes) override {
    std::lock_guard<std::mutex> l(mu);
    calls.push_back("measure-listen " + a.address + " " + std::to_string(bytes));
    if (Authorized(a) == nullptr) return Status::Error("agent " + a.address + " unreachable");
    return nlohmann::json{{"port", 40000}, {"nonce", "00"}};
  }
  Result<nlohmann::json> MeasureRun(const AgentEndpoint& a, const std::string& address, int64_t port,
                                    const std::string& nonce, int64_t bytes) override {
    std::lock_guard<std::mutex> l(mu);
    calls.push_back("measure-run " + a.address + " -> " + address + ":" + std::to_string(port));
    Host* h = Authorized(a);
    if (h == nullptr) return Status::Error("agent " + a.address + " unreachable");
    (void)nonce;
    return nlohmann::json{{"rtt_ms", h->rtt_ms}, {"mbps", h->mbps}, {"bytes", bytes}};
  }
  AgentReply Invoke(const AgentEndpoint& a, const std::string& method, const std::string& path,
                    const nlohmann::json& body, int64_t timeout_ms) override {
    std::lock_guard<std::mutex> l(mu);
    (void)timeout_ms;
    calls.push_back(method + " " + path + " " + a.address);
    Host* h = Authorized(a);
    if (h == nullptr) return Status::Error("agent " + a.address + " unreachable");
    auto it = handlers.find(method + " " + path);
    if (it == handlers.end()) return AgentReply::Answered(a.address, 404, "not_found", "no such path");
    AgentReply r = it->second(*h, body);
    if (r.ok()) r.http_status = 200;
    return r;
  }

 private:
  Host* Find(const std::string& address) {
    auto it = hosts.find(address);
    if (it == hosts.end() || !it->second.reachable) return nullptr;
    return &it->second;
  }
  Host* Authorized(const AgentEndpoint& a) {
    Host* h = Find(a.address);
    if (h == nullptr || !h->paired || a.key != h->key || a.cert_pem != h->cert_pem) return nullptr;
    return h;
  }
};

}  // namespace tandem::console
