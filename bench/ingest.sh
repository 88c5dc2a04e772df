#!/usr/bin/env bash
# Syslog ingest benchmark (docs/PERFORMANCE.md, "Ingest"): a loopback lab with
# replication; events/s over UDP, TCP and RELP into the collector (replicated
# and on the primary alone) next to rsyslogd (buffered and synced omfile) with
# the same sender; search latency over 10,000,000 stored events; bytes per
# event; tandemd's peak RSS. Prints one JSON object (also DIR/bench-ingest.json).
# Usage: bench/ingest.sh [--quick] [--dir DIR] [--events N] [--search-events M]
# BUILD_DIR selects the build directory (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dir="${BUILD_DIR:-build}"
scripts/build.sh "$dir" >/dev/null
"$dir"/bin/tandem bench ingest "$@"
