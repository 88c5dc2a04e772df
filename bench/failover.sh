#!/usr/bin/env bash
# Failover outage benchmark (docs/PERFORMANCE.md): prints one JSON object per
# heartbeat profile. Usage: bench/failover.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
trials="${1:-20}"
build/bin/tandem bench failover --trials "$trials" --heartbeat-interval-ms 1000 --heartbeat-timeout-ms 3000
build/bin/tandem bench failover --trials "$trials" --heartbeat-interval-ms 100 --heartbeat-timeout-ms 500
