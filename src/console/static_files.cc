#include "console/static_files.h"

namespace tandem::console {

namespace {

constexpr std::string_view kNotFound = "not found\n";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A file name of the table: letters, digits, '-', '_' and one or more '.'
// not at the start; anything else (a '/', "..", '%', a NUL) names nothing.
bool PlainName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  if (name.find("..") != std::string_view::npos) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool IsStaticPath(std::string_view path) {
  return path == "/" || path == "/ui" || path.starts_with("/ui/");
}

std::string ContentTypeFor(std::string_view name) {
  if (EndsWith(name, ".html")) return "text/html; charset=utf-8";
  if (EndsWith(name, ".js") || EndsWith(name, ".mjs")) return "text/javascript; charset=utf-8";
  if (EndsWith(name, ".css")) return "text/css; charset=utf-8";
  if (EndsWith(name, ".svg")) return "image/svg+xml";
  if (EndsWith(name, ".png")) return "image/png";
  if (EndsWith(name, ".ico")) return "image/x-icon";
  if (EndsWith(name, ".json")) return "application/json";
  if (EndsWith(name, ".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

StaticAnswer ServeStatic(std::string_view path) {
  std::string_view name;
  if (path == "/" || path == "/ui" || path == "/ui/") {
    name = "index.html";
  } else if (path.starts_with("/ui/")) {
    name = path.substr(4);
  }
  if (PlainName(name)) {
    for (size_t i = 0; i < kEmbeddedWebFileCount; ++i) {
      const EmbeddedFile& f = kEmbeddedWebFiles[i];
      if (name == f.name) {
        return StaticAnswer{200, ContentTypeFor(name),
                            std::string_view(reinterpret_cast<const char*>(f.data), f.size)};
      }
    }
  }
  return StaticAnswer{404, "text/plain; charset=utf-8", kNotFound};
}

}  // namespace tandem::console
