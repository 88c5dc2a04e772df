#include "console/api_client.h"

#include <sys/stat.h>

#include <chrono>

#include "api/httplib.h"
#include "os/files.h"

namespace tandem::console {

using nlohmann::json;

namespace {

constexpr size_t kOptionsFileBytesMax = 64 * 1024;
constexpr size_t kPasswordFileBytesMax = 4096;
constexpr std::string_view kUnreachable = " unreachable: ";

// "https://host[:port]" -> host, port. Error: why it is not one.
Status SplitUrl(const std::string& url, std::string* host, int* port) {
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::Error("the console URL must start with https://, got \"" + url + "\"");
  }
  std::string rest = url.substr(scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos) {
    return Status::Error("the console URL must be https://HOST[:PORT] with no path, got \"" + url + "\"");
  }
  *port = 443;
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    const std::string p = rest.substr(colon + 1);
    int v = 0;
    if (p.empty() || p.size() > 5) v = -1;
    for (char c : p) v = (v < 0 || c < '0' || c > '9') ? -1 : v * 10 + (c - '0');
    if (v < 1 || v > 65535) return Status::Error("the console URL has a bad port: \"" + url + "\"");
    *port = v;
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Status::Error("the console URL has no host: \"" + url + "\"");
  *host = rest;
  return Status::Ok();
}

}  // namespace

Result<ApiClientOptions> ReadApiClientOptions(const std::string& file) {
  auto text = os::ReadFile(file, kOptionsFileBytesMax);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Status::Error(file + ": not a JSON object (expected {\"url\", \"user\", \"password_file\", "
                                "\"tls_cert\"})");
  }
  ApiClientOptions o;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"url", &o.url},
                          {"user", &o.user},
                          {"password_file", &o.password_file},
                          {"tls_cert", &o.tls_cert}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
      return Status::Error(file + ": \"" + key + "\" must be a non-empty string");
    }
    *out = it->get<std::string>();
  }
  return o;
}

std::string ApiAnswer::ErrorText() const {
  const json e = body.is_object() ? body.value("error", json()) : json();
  if (!e.is_object()) return "HTTP " + std::to_string(status);
  std::string out = e.value("code", "error") + ": " + e.value("message", "");
  if (e.contains("field") && e["field"].is_string()) out += " (field " + e["field"].get<std::string>() + ")";
  return out;
}

bool IsUnreachable(const Status& st) {
  return !st.ok() && st.message().find(kUnreachable) != std::string::npos;
}

ApiClient::~ApiClient() {
  if (token_.empty()) return;
  (void)Send("DELETE", "/api/v1/sessions/current", nullptr, token_);
}

Result<ApiAnswer> ApiClient::Send(const std::string& method, const std::string& path,
                                  const json& body, const std::string& token) {
  std::string host;
  int port = 0;
  TANDEM_RETURN_IF_ERROR(SplitUrl(options_.url, &host, &port));
  struct stat st {};
  if (::stat(options_.tls_cert.c_str(), &st) != 0) {
    return Status::Error("the console's TLS certificate file " + options_.tls_cert + " cannot be read");
  }
  httplib::SSLClient cli(host, port);
  if (!cli.is_valid()) return Status::Error("console " + options_.url + ": cannot set up TLS");
  SSL_CTX_set_min_proto_version(cli.ssl_context(), TLS1_2_VERSION);
  cli.set_ca_cert_path(options_.tls_cert.c_str());
  cli.enable_server_certificate_verification(true);
  const auto timeout = std::chrono::milliseconds(options_.timeout_ms);
  cli.set_connection_timeout(timeout);
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);
  cli.set_keep_alive(false);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  const std::string payload = body.is_null() ? std::string() : body.dump();
  httplib::Result res =
      method == "GET"      ? cli.Get(path, headers)
      : method == "DELETE" ? cli.Delete(path, headers)
      : method == "PUT"    ? cli.Put(path, headers, payload, "application/json")
      : method == "PATCH"  ? cli.Patch(path, headers, payload, "application/json")
                           : cli.Post(path, headers, payload, "application/json");
  if (!res) {
    const httplib::Error err = res.error();
    std::string why = httplib::to_string(err);
    if (err == httplib::Error::SSLServerVerification) {
      why += " (the console's certificate is not " + options_.tls_cert + " or not issued by it)";
    }
    return Status::Error("console " + options_.url + std::string(kUnreachable) + why);
  }
  if (res->body.size() > kApiClientAnswerBytesMax) {
    return Status::Error("console " + options_.url + " answered " + std::to_string(res->status) +
                         " with an oversized body");
  }
  ApiAnswer a;
  a.status = res->status;
  a.body = res->body.empty() ? json::object()
                             : json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (a.body.is_discarded()) {
    return Status::Error("console " + options_.url + " answered " + std::to_string(res->status) +
                         " with a body that is not JSON");
  }
  return a;
}

Status ApiClient::Login() {
  auto text = os::ReadFile(options_.password_file, kPasswordFileBytesMax);
  if (!text.ok()) return text.status().Prefix("the password file: ");
  std::string password = text->substr(0, text->find('\n'));
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) return Status::Error("the password file " + options_.password_file + " is empty");
  auto a = Send("POST", "/api/v1/sessions", json{{"user", options_.user}, {"password", password}}, "");
  if (!a.ok()) return a.status();
  if (a->status != 201 || !a->body.value("token", json()).is_string()) {
    return Status::Error("login as " + options_.user + " refused: " + a->ErrorText());
  }
  token_ = a->body["token"].get<std::string>();
  return Status::Ok();
}

Result<ApiAnswer> ApiClient::Call(const std::string& method, const std::string& path,
                                  const json& body) {
  if (token_.empty()) TANDEM_RETURN_IF_ERROR(Login());
  return Send(method, path, body, token_);
}

}  // namespace tandem::console
