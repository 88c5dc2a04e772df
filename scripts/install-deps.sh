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
  # libFuzzer (scripts/fuzz.sh)
  clang-14 libclang-rt-14-dev
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
