#!/bin/sh
# CTest's web_test (test/CMakeLists.txt): installs the test's npm packages
# when they are missing (npm ci, from package-lock.json), then runs
# run.mjs against the build directory $1. Exit 77 (skipped) when node or
# /usr/bin/chromium is not installed.
set -eu
build=$1
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed"
  exit 77
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "SKIP: /usr/bin/chromium is not installed (scripts/install-deps.sh)"
  exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$here/node_modules/playwright-core/package.json" ] || [ ! -f "$here/node_modules/axe-core/axe.min.js" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
exec node "$here/run.mjs" "$build"
