#!/usr/bin/env bash
# Runs every test: a warnings-as-errors build, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. Needs root (real sockets,
# process groups; later issues add network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export TANDEM_SIM_SEEDS="${TANDEM_SIM_SEEDS:-500}"
echo "== build (-Werror) =="
scripts/build.sh build -DTANDEM_WERROR=ON
echo "== tests =="
ctest --test-dir build --output-on-failure -j2
echo "== build (ASan + UBSan, -Werror) =="
BUILD_TYPE=Debug scripts/build.sh build-asan -DTANDEM_WERROR=ON -DTANDEM_SANITIZE=ON
echo "== tests under ASan + UBSan =="
# The simulations run 500 seeds above; under the sanitizers (several times
# slower) the first 100 seeds keep the whole run within CI's time.
# The 100,000-event RELP load test ran above; under the sanitizers it would
# take minutes and check nothing the other collector tests do not. The
# integration shards run one after the other here: side by side, two
# sanitized labs on two cores starve each other's heartbeats.
(
  export GTEST_FILTER="${TANDEM_ASAN_GTEST_FILTER:--CollectorTest.RsyslogOverRelpLosesNothingWhenTheActiveIsKilledMidStream}"
  export TANDEM_SIM_SEEDS="${TANDEM_ASAN_SIM_SEEDS:-100}"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --test-dir build-asan --output-on-failure -j2 -E '^integration_test_'
  ctest --test-dir build-asan --output-on-failure -j1 -R '^integration_test_'
)
echo "== fuzzing (bounded) =="
FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz.sh
