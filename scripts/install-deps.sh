#!/usr/bin/env bash
# Installs the Debian packages Tandem needs to build and test (Debian 12).
# Idempotent: does nothing when everything is present.
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libasio-dev libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libtomlplusplus-dev libssl-dev libxxhash-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev librelp-dev
  util-linux iproute2 procps
  # real clients for the collector's tests: rsyslog's omrelp, softflowd
  rsyslog rsyslog-relp softflowd
  # nfdump (nfcapd + nfdump): the independent NetFlow decoder of the
  # collection-client tests; the libraries syslog-ng's loggen needs (below)
  nfdump libglib2.0-0 libivykis0 libjson-c5 libnet1 libpcre3 libwrap0 libcap2
  # libFuzzer (scripts/fuzz.sh)
  clang-14 libclang-rt-14-dev
  # the browser of the web page's end-to-end test (test/web, docs/WEB.md)
  chromium
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# syslog-ng's `loggen` (the load generator of the collection-client tests).
# syslog-ng-core conflicts with rsyslog as a Debian package, so it is not
# installed: its .deb is unpacked (dpkg -x) into LOGGEN_ROOT instead. The
# tests find loggen there (or at $TANDEM_LOGGEN_ROOT) and run it with
# LD_LIBRARY_PATH=<root>/usr/lib/syslog-ng and SYSLOGNG_PREFIX=<root>/usr.
LOGGEN_ROOT=/opt/tandem-tools/syslog-ng
if [ ! -x "$LOGGEN_ROOT/usr/bin/loggen" ]; then
  echo "install-deps: unpacking syslog-ng-core into $LOGGEN_ROOT (for loggen)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && chmod 755 . && apt-get download syslog-ng-core)
  $SUDO mkdir -p "$LOGGEN_ROOT"
  $SUDO dpkg -x "$tmp"/syslog-ng-core_*.deb "$LOGGEN_ROOT"
fi

# Node.js and npm for the web page's end-to-end test (test/web): Debian's
# packages unless a node with npm is already installed (e.g. NodeSource's,
# which bundles npm and conflicts with Debian's npm package).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs npm" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
