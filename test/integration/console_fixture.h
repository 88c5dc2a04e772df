// The fixture of the console's lab tests (console_*_test.cc): a temporary
// directory holding a lab started with the console (`lab::Up`), calls of
// the console's API over HTTPS trusting only the lab's console certificate,
// login with the lab's admin password file, and pairing of lab hosts with
// the pairing strings in their pairing files. The lab is stopped and the
// directory removed at the end, with the lab's log tails printed when the
// test failed.
#pragma once

#include <gtest/gtest.h>
#include "api/httplib.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "lab/lab.h"
#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {

struct HttpsAnswer {
  int status = 0;  // 0: no answer (the failure is recorded unless quiet)
  nlohmann::json body;
};

// One HTTPS call to `hostport` ("host:port") trusting only the certificate
// in `ca_file`; `bearer` may be empty. Methods: GET, POST, PUT, PATCH,
// DELETE.
inline HttpsAnswer HttpsCall(const std::string& hostport, const std::string& ca_file,
                             const std::string& method, const std::string& path, const std::string& bearer,
                             const nlohmann::json& body = nullptr, int read_timeout_s = 60,
                             bool quiet = false) {
  const size_t colon = hostport.rfind(':');
  httplib::SSLClient cli(hostport.substr(0, colon), std::stoi(hostport.substr(colon + 1)));
  cli.set_ca_cert_path(ca_file.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(10, 0);
  cli.set_read_timeout(read_timeout_s, 0);
  httplib::Headers h;
  if (!bearer.empty()) h.emplace("Authorization", "Bearer " + bearer);
  const std::string b = body.is_null() ? "" : body.dump();
  httplib::Result r = method == "GET"     ? cli.Get(path.c_str(), h)
                      : method == "POST"  ? cli.Post(path.c_str(), h, b, "application/json")
                      : method == "PATCH" ? cli.Patch(path.c_str(), h, b, "application/json")
                      : method == "PUT"   ? cli.Put(path.c_str(), h, b, "application/json")
                                          : cli.Delete(path.c_str(), h);
  if (!r) {
    if (!quiet) ADD_FAILURE() << method << " " << path << ": " << httplib::to_string(r.error());
    return {};
  }
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r->body;
  return {r->status, j};
}

// The first line of a small file (a password or pairing file), without its
// line end; "" (and a recorded failure) when unreadable.
inline std::string ReadFirstLine(const std::string& file) {
  auto s = os::ReadFile(file, 4096);
  EXPECT_TRUE(s.ok()) << file << ": " << (s.ok() ? "" : s.status().message());
  std::string out = s.ok() ? *s : "";
  out = out.substr(0, out.find('\n'));
  while (!out.empty() && out.back() == '\r') out.pop_back();
  return out;
}

class ConsoleLabFixture : public ::testing::Test {
 protected:
  using Answer = HttpsAnswer;

  // `prefix`: the temporary directory's name; `read_timeout_s`: per API
  // call (a cluster's creation measures the link, an upgrade copies
  // packages through two agents).
  explicit ConsoleLabFixture(std::string prefix, int read_timeout_s = 60)
      : prefix_(std::move(prefix)), read_timeout_s_(read_timeout_s) {}

  void SetUp() override {
    dir_ = MakeTempDir(prefix_);
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    if (up_) (void)lab::Down(dir_ + "/lab");
    if (HasFailure()) std::cerr << LabLogTails(dir_);
    std::filesystem::remove_all(dir_);
  }

  // The fast lab profile in dir_/lab with the console.
  lab::LabOptions ConsoleLabOptions() {
    lab::LabOptions o = FastLabOptions(dir_ + "/lab");
    o.console = true;
    return o;
  }
  // Starts the lab; remembers its JSON, the API's URL and certificate.
  ::testing::AssertionResult UpLab(const lab::LabOptions& o) {
    auto up = lab::Up(o);
    if (!up.ok()) return ::testing::AssertionFailure() << "lab up: " << up.status().message();
    up_ = true;
    lab_ = *up;
    url_ = lab_["api"]["url"].get<std::string>();
    cert_ = lab_["api"]["tls_cert"].get<std::string>();
    return ::testing::AssertionSuccess();
  }

  Answer CallAs(const std::string& method, const std::string& path, const std::string& token,
                const nlohmann::json& body = nullptr, bool quiet = false) {
    return HttpsCall(url_.substr(std::string("https://").size()), cert_, method, path, token, body,
                     read_timeout_s_, quiet);
  }
  // As the logged-in admin (token_).
  Answer Call(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr) {
    return CallAs(method, path, token_, body);
  }

  std::string ReadPassword() { return ReadFirstLine(lab_["api"]["password_file"].get<std::string>()); }
  // Logs in as the lab's admin: token_.
  ::testing::AssertionResult LoginAdmin() {
    Answer a = CallAs("POST", "/api/v1/sessions", "", nlohmann::json{{"user", "admin"}, {"password", ReadPassword()}});
    if (a.status != 201) return ::testing::AssertionFailure() << "login: " << a.status << " " << a.body.dump();
    token_ = a.body.value("token", "");
    return ::testing::AssertionSuccess();
  }

  // Pairs a lab host (an element of the lab JSON's "hosts" or
  // "managed_hosts") with the pairing string in its pairing file.
  Answer Pair(const nlohmann::json& host, const std::string& name = "") {
    nlohmann::json body{{"address", host["agent"]["address"]},
                        {"pairing_token", ReadFirstLine(host["pairing_file"].get<std::string>())}};
    if (!name.empty()) body["name"] = name;
    return Call("POST", "/api/v1/hosts", body);
  }

  // The console recorded itself under the lab primary's name, so that
  // host's agent pairs under another: `tandemd unpair`, then a fresh
  // pairing string in its pairing file.
  ::testing::AssertionResult FreshPairingString(const nlohmann::json& host) {
    auto u = RunCommand({BinDir() + "/tandemd", "unpair", "--config", host["config"].get<std::string>()});
    if (u.exit_code != 0) return ::testing::AssertionFailure() << "tandemd unpair: " << u.output;
    auto t = RunCommand({BinDir() + "/tandemd", "pair-token", "--config", host["config"].get<std::string>()});
    if (t.exit_code != 0) return ::testing::AssertionFailure() << "tandemd pair-token: " << t.output;
    if (!os::WriteFileAtomic(host["pairing_file"].get<std::string>(), t.output, 0600).ok()) {
      return ::testing::AssertionFailure() << "cannot write " << host["pairing_file"];
    }
    return ::testing::AssertionSuccess();
  }

  // The console's view of a host: {"status", "facts", ...} (null if none).
  nlohmann::json HostOf(const std::string& name) {
    Answer a = Call("GET", "/api/v1/hosts/" + name);
    return a.status == 200 ? a.body["host"] : nlohmann::json();
  }
  std::string StatusOf(const std::string& name) {
    nlohmann::json h = HostOf(name);
    return h.is_object() ? h.value("status", "") : "";
  }
  // Waits until every host has its status (as the console shows it).
  ::testing::AssertionResult WaitStatuses(const std::map<std::string, std::string>& want, int64_t ms) {
    std::map<std::string, std::string> seen;
    bool ok = WaitFor(ms, [&] {
      bool all = true;
      for (const auto& [name, status] : want) {
        seen[name] = StatusOf(name);
        all = all && seen[name] == status;
      }
      return all;
    });
    if (ok) return ::testing::AssertionSuccess();
    auto f = ::testing::AssertionFailure() << "statuses not reached:";
    for (const auto& [name, status] : want) f << " " << name << "=" << seen[name] << " (want " << status << ")";
    return f;
  }

  // A valid HA license in the console (`tandem license keygen|sign`; its
  // public key in the lab's license_keys_dir): its id.
  ::testing::AssertionResult AddLicense(const std::string& id) {
    const std::string keys = dir_ + "/license-signing";
    const std::string trusted = lab_["api"]["license_keys_dir"].get<std::string>();
    if (!os::MakeDirs(keys, 0700).ok() || !os::MakeDirs(trusted, 0700).ok()) {
      return ::testing::AssertionFailure() << "cannot make the key directories";
    }
    if (!std::filesystem::exists(keys + "/lab.key")) {
      auto g = RunCommand({BinDir() + "/tandem", "license", "keygen", "--dir", keys, "--name", "lab"});
      if (g.exit_code != 0) return ::testing::AssertionFailure() << "license keygen: " << g.output;
      std::error_code ec;
      std::filesystem::copy_file(keys + "/lab.pem", trusted + "/lab.pem",
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) return ::testing::AssertionFailure() << "copy lab.pem: " << ec.message();
    }
    auto s = RunCommand({BinDir() + "/tandem", "license", "sign", "--key", keys + "/lab.key", "--id", id,
                         "--issued-to", "Lab Corp", "--expires", "2099-12-31T23:59:59Z"});
    if (s.exit_code != 0) return ::testing::AssertionFailure() << "license sign: " << s.output;
    Answer a = Call("POST", "/api/v1/licenses", nlohmann::json{{"document", s.output}});
    if (a.status != 201) return ::testing::AssertionFailure() << "POST licenses: " << a.status << " " << a.body.dump();
    return ::testing::AssertionSuccess();
  }

  std::string dir_, url_, cert_, token_;
  nlohmann::json lab_;
  bool up_ = false;

 private:
  std::string prefix_;
  int read_timeout_s_;
};

}  // namespace tandem::itest
