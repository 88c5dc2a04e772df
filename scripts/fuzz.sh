#!/usr/bin/env bash
# Builds every libFuzzer target in test/fuzz/ with clang-14 (ASan + UBSan)
# and runs each for a bounded time: FUZZ_SECONDS (default 20) per target.
# Any crash, leak or failed check fails the script; the reproducer is left in
# build-fuzz/<target>/ (run the binary on it to replay).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-20}"
out=build-fuzz
mkdir -p "$out"
CXX="${FUZZ_CXX:-clang++-14}"
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc)
declare -A SOURCES=(
  [heartbeat]="src/peer/packet.cc src/ha/types.cc -lcrypto"
  [replication]="src/repl/frame.cc -lcrypto"
  [syslog]="src/collect/framing.cc src/collect/syslog.cc"
  [relp]="src/collect/relp.cc"
  [netflow]="src/collect/netflow.cc"
  [segment]="src/store/segment.cc -lxxhash"
)
for name in heartbeat replication syslog relp netflow segment; do
  dir="$out/$name"
  mkdir -p "$dir/corpus"
  # shellcheck disable=SC2086
  "$CXX" "${FLAGS[@]}" "test/fuzz/${name}_fuzz.cc" ${SOURCES[$name]} -o "$dir/fuzz"
  echo "== fuzz $name (${secs} s) =="
  rc=0
  (cd "$dir" && ./fuzz -max_total_time="$secs" -max_len=8192 -print_final_stats=1 corpus \
    > fuzz.log 2>&1) || rc=$?
  grep -E "stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY" "$dir/fuzz.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$dir/fuzz.log"
    echo "fuzz $name: FAILED (exit $rc; log and reproducer in $dir)"
    exit 1
  fi
done
echo "fuzz: all targets clean"
