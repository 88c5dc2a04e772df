#!/usr/bin/env bash
# Builds Tandem into build/ (or $1) with extra CMake arguments after it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"; shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
ninja -C "$dir" ${NINJA_JOBS:+-j "$NINJA_JOBS"}
