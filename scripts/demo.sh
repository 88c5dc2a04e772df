#!/usr/bin/env bash
# The main job: builds Tandem, runs a two-host cluster on this machine
# (loopback lab, embedded defaults plus a 1 s / 3 s heartbeat so it is quick
# to watch) and narrates a live failover: kill the active, watch the standby
# take over, restore the killed host, give the role back.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
BIN="$PWD/build/bin"
LAB="${LAB_DIR:-$PWD/lab}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
"$BIN/tandem" lab down --dir "$LAB" >/dev/null 2>&1 || true
trap '"$BIN/tandem" lab down --dir "$LAB" >/dev/null 2>&1 || true' EXIT

say "Starting a primary and a secondary on loopback (lab defaults: heartbeat 1000 ms, timeout 3000 ms)"
LABJSON=$("$BIN/tandem" lab up --dir "$LAB")
echo "$LABJSON"
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$LABJSON" "$1"; }
VIP=$(field 'd["vip"]'); PORT=$(field 'd["service_port"]')
P_CFG=$(field 'd["hosts"][0]["config"]'); S_CFG=$(field 'd["hosts"][1]["config"]')
probe() { timeout 1 bash -c "exec 3<>/dev/tcp/$VIP/$PORT && head -n1 <&3" 2>/dev/null || echo "(no answer)"; }
cstate() { echo "primary:   $("$BIN/ha" cstate --config "$P_CFG" 2>&1)"; echo "secondary: $("$BIN/ha" cstate --config "$S_CFG" 2>&1)"; }

say "Cluster formed"; cstate
echo "VIP $VIP:$PORT answers: $(probe)"
"$BIN/ha" status --config "$P_CFG"

say "Killing the active host's daemon with SIGKILL (a host death)"
PID=$(python3 -c "import json; print(json.load(open('$LAB/lab.json'))['hosts'][0]['pid'])")
start=$(date +%s%N); kill -9 "$PID"
until [ "$(probe)" = "lab-secondary" ]; do sleep 0.005; done
echo "The secondary answers on the VIP after $(( ($(date +%s%N) - start) / 1000000 )) ms"
cstate
"$BIN/ha" status --config "$S_CFG"

say "Restoring the primary: it restarts and rejoins as STANDBY (no automatic failback)"
"$BIN/tandem" lab start --dir "$LAB" --host primary >/dev/null
until "$BIN/ha" cstate --config "$P_CFG" 2>/dev/null | grep -q "S:STANDBY"; do sleep 0.1; done
cstate

say "Giving the active role back to the primary (ha takeover on the primary)"
"$BIN/ha" takeover --config "$P_CFG"
echo "VIP $VIP:$PORT answers: $(probe)"
cstate
say "Status changes seen by the notify hook"; cat "$LAB/notify.log"
say "Done; stopping the lab (logs stay in $LAB)"
