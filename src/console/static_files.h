// The console's web page (web/*, docs/WEB.md): the files are embedded in the
// binary at build time (src/console/embed_web.cmake writes a generated
// web_assets.cc with one byte array per file) and served without a session
// at GET / (index.html) and GET /ui/<file>. A path names a file of the table
// exactly or nothing: no directory, no "..", no file system lookup.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tandem::console {

// One file of web/, as the generated web_assets.cc lists it.
struct EmbeddedFile {
  const char* name;            // "index.html", "app.js", ...
  const unsigned char* data;
  size_t size;
};

// The generated table (sorted by nothing; small, searched linearly).
extern const EmbeddedFile kEmbeddedWebFiles[];
extern const size_t kEmbeddedWebFileCount;

// The headers every answer of the static route carries: never cached, not
// sniffed, scripts, styles, images and connections from the console only.
inline constexpr const char* kWebCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

struct StaticAnswer {
  int status = 200;            // 200, or 404 for a /ui/ path that names no file
  std::string content_type;
  std::string_view body;       // the embedded bytes (static storage) or the 404 text
};

// True for the paths the static route owns: "/", "/ui" and "/ui/...".
bool IsStaticPath(std::string_view path);

// The answer for GET `path` (IsStaticPath(path) must hold).
StaticAnswer ServeStatic(std::string_view path);

// The Content-Type for a file name by its extension
// ("application/octet-stream" for an unknown one).
std::string ContentTypeFor(std::string_view name);

}  // namespace tandem::console
