#!/usr/bin/env bash
# The main job: builds Tandem, runs a two-host cluster on this machine
# (loopback lab, embedded defaults plus a 1 s / 3 s heartbeat so it is quick
# to watch) with /store replicated between the hosts, and narrates a live
# failover: write data through the active's volume, kill the active, watch
# the standby take over with every acknowledged byte, restore the killed
# host (it resyncs only what changed), give the role back.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
BIN="$PWD/build/bin"
LAB="${LAB_DIR:-$PWD/lab}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
"$BIN/tandem" lab down --dir "$LAB" >/dev/null 2>&1 || true
trap '"$BIN/tandem" lab down --dir "$LAB" >/dev/null 2>&1 || true' EXIT

say "Starting a primary and a secondary on loopback (lab defaults: heartbeat 1000 ms, timeout 3000 ms; /store replicated, protocol C)"
LABJSON=$("$BIN/tandem" lab up --replication --dir "$LAB")
echo "$LABJSON"
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$LABJSON" "$1"; }
VIP=$(field 'd["vip"]'); PORT=$(field 'd["service_port"]')
P_CFG=$(field 'd["hosts"][0]["config"]'); S_CFG=$(field 'd["hosts"][1]["config"]')
probe() { timeout 1 bash -c "exec 3<>/dev/tcp/$VIP/$PORT && head -n1 <&3" 2>/dev/null || echo "(no answer)"; }
cstate() { echo "primary:   $("$BIN/ha" cstate --config "$P_CFG" 2>&1)"; echo "secondary: $("$BIN/ha" cstate --config "$S_CFG" 2>&1)"; }

say "Cluster formed"; cstate
echo "VIP $VIP:$PORT answers: $(probe)"
"$BIN/ha" status --config "$P_CFG"

say "Writing 4 x 8 MB through the active's volume (acknowledged only when durable on both hosts)"
"$BIN/tandem" store fill --config "$P_CFG" --files 4 --bytes 8000000 --prefix demo/
diff -r "$LAB/primary/store" "$LAB/secondary/store" && echo "The two store directories are byte-for-byte identical"

say "Killing the active host's daemon with SIGKILL (a host death)"
PID=$(python3 -c "import json; print(json.load(open('$LAB/lab.json'))['hosts'][0]['pid'])")
start=$(date +%s%N); kill -9 "$PID"
until [ "$(probe)" = "lab-secondary" ]; do sleep 0.005; done
echo "The secondary answers on the VIP after $(( ($(date +%s%N) - start) / 1000000 )) ms"
cstate
"$BIN/ha" status --config "$S_CFG"

say "The new active keeps writing while the old one is away (unprotected: changes are recorded)"
"$BIN/tandem" store fill --config "$S_CFG" --files 1 --bytes 2000000 --prefix after-failover/

say "Restoring the primary: it restarts and rejoins as STANDBY (no automatic failback), resyncing only what changed"
"$BIN/tandem" lab start --dir "$LAB" --host primary >/dev/null
until "$BIN/ha" cstate --config "$P_CFG" 2>/dev/null | grep -q "S:STANDBY"; do sleep 0.1; done
until "$BIN/ha" status --json --config "$P_CFG" 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin)['replication']; sys.exit(0 if r['replication']=='Established' and r['disk']=='UpToDate' else 1)"; do sleep 0.1; done
cstate
"$BIN/ha" status --config "$S_CFG" | grep -A4 "^Store"
diff -r "$LAB/primary/store" "$LAB/secondary/store" && echo "Identical again after the resync"

say "Giving the active role back to the primary (ha takeover on the primary)"
"$BIN/ha" takeover --config "$P_CFG"
echo "VIP $VIP:$PORT answers: $(probe)"
cstate
say "Status changes seen by the notify hook"; cat "$LAB/notify.log"
say "Done; stopping the lab (logs stay in $LAB)"
