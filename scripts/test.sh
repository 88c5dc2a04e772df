#!/usr/bin/env bash
# Runs every test, once, on one build with AddressSanitizer +
# UndefinedBehaviorSanitizer and warnings as errors, then the fuzz targets
# for a bounded time. Needs root (real sockets, process groups, network
# namespaces).
#
# One build, not a plain one and a sanitized one: on CI's two cores each
# build of the whole tree takes ~10 minutes, and every test that passes
# without the sanitizers passes with them. The sanitized build is optimised
# with -Og (about the compile time of -O0, tests several times faster) and
# line tables only (-g1: enough for the sanitizers' stack traces).
# Warnings that only the optimiser finds (-O2) are checked by the developers'
# RelWithDebInfo -Werror build (scripts/build.sh build -DTANDEM_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export TANDEM_SIM_SEEDS="${TANDEM_SIM_SEEDS:-500}"
dir="${TANDEM_TEST_BUILD:-build-asan}"
echo "== build (ASan + UBSan, -Werror) =="
BUILD_TYPE=Debug scripts/build.sh "$dir" -DTANDEM_WERROR=ON -DTANDEM_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS_DEBUG="-Og -g1"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== unit tests and simulations ($TANDEM_SIM_SEEDS seeds) =="
ctest --test-dir "$dir" --output-on-failure -j2 -E '^(integration_test_|web_test$)'
echo "== integration and browser tests =="
# These run labs one at a time: side by side, two sanitized labs on two
# cores starve each other's heartbeats.
ctest --test-dir "$dir" --output-on-failure -j1 -R '^(integration_test_|web_test$)'
# The browser test's own log (every step checked), kept in CI's output; the
# screenshots are beside it in $dir/web-screenshots.
if [ -f "$dir/web-screenshots/run.log" ]; then
  echo "== browser test log ($dir/web-screenshots/run.log) =="
  cat "$dir/web-screenshots/run.log"
fi
echo "== fuzzing (bounded) =="
FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz.sh
