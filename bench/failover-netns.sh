#!/usr/bin/env bash
# Host-death outage on the namespace lab, Tandem next to keepalived (Debian
# package), as seen by a client probing the VIP every 5 ms (docs/PERFORMANCE.md).
# Root only (network namespaces). Usage: bench/failover-netns.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v keepalived >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq keepalived
scripts/build.sh build >/dev/null
trials="${1:-20}"
build/bin/tandem bench failover --netns --trials "$trials" --heartbeat-interval-ms 1000 \
  --heartbeat-timeout-ms 3000 --keepalived-advert-int-ms 1000
build/bin/tandem bench failover --netns --trials "$trials" --heartbeat-interval-ms 100 \
  --heartbeat-timeout-ms 300 --keepalived-advert-int-ms 100
