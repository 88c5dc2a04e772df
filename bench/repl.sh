#!/usr/bin/env bash
# /store replication benchmark (docs/PERFORMANCE.md, "Replication"): a
# loopback lab with replication; full sync vs cp -r, sync-rate accuracy,
# protocol C writes (replicated vs local), resync after a 1% change, peak RSS.
# Prints one JSON object (also written to DIR/bench-repl.json).
# Usage: bench/repl.sh [STORE_MB (default 256)] [--quick] [--dir DIR]
# BUILD_DIR selects the build directory (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dir="${BUILD_DIR:-build}"
scripts/build.sh "$dir" >/dev/null
store_mb=256
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then store_mb="$1"; shift; fi
"$dir"/bin/tandem bench repl --store-mb "$store_mb" "$@"
