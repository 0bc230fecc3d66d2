#!/usr/bin/env bash
# The three-node cluster `make run-cluster` brings up on this machine's loopback:
#   oma-1  the active OMA, API http://localhost:8082, NATS node 127.0.0.1:4222
#   oma-2  its standby (-standby), API http://localhost:8083 once it takes over,
#          NATS node 127.0.0.1:4223
#   node-3 a NATS node alone (oma node) on 127.0.0.1:4224: the third vote
# The nodes route to each other on 127.0.0.1:6222-6224 with the password of the
# cluster's keys ($DATA/keys, made once by `oma cluster-keys`); every stream and
# bucket is on three replicas. Both OMAs share -data $DATA/shared (the volumes; on a
# real pair, storage both machines mount) and keep their own state in
# $DATA/oma-1 and $DATA/oma-2. Logs: $DATA/logs/<name>.log. Ctrl-C stops it all.
# Kill oma-1 (kill -9 $(cat $DATA/oma-1.pid)) and oma-2 takes over within ~10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-$PWD/data/cluster}
mkdir -p "$DATA/logs"
DATA=$(cd "$DATA" && pwd)
chmod 700 "$DATA"
say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "run-cluster: $*" >&2; exit 1; }
for port in 8082 8083 4222 4223 4224 6222 6223 6224; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (make run?); stop it first"; fi
done
[ -s "$DATA/keys/oma.nk" ] || "$BIN/oma" cluster-keys -dir "$DATA/keys" >/dev/null
ROUTES=nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224
COMMON=(-cluster-name godwit -routes "$ROUTES" -cluster-keys "$DATA/keys")
OMA=(-data "$DATA/shared" -stream-replicas 3 -nbd-ports 10100-10199 -min-sync-interval 5s "${COMMON[@]}")

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -f "$DATA"/*.pid
}
trap stop EXIT
trap 'echo; say "stopping"; stop; say "stopped"; exit 0' INT TERM
start() { # start NAME CMD...
  local name=$1
  shift
  "$@" >>"$DATA/logs/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$DATA/$name.pid"
}
start node-3 "$BIN/oma" node -data "$DATA/node-3" -nats-addr 127.0.0.1:4224 -cluster-listen 127.0.0.1:6224 -server-name node-3 "${COMMON[@]}"
start oma-1 "$BIN/oma" -state-dir "$DATA/oma-1" -api-addr 127.0.0.1:8082 -api-url http://localhost:8082 \
  -nats-addr 127.0.0.1:4222 -cluster-listen 127.0.0.1:6222 -server-name oma-1 "${OMA[@]}"
# The standby starts at once: a new cluster elects its JetStream leader once
# enough of its nodes are up, and -standby leaves the first lease to oma-1.
start oma-2 "$BIN/oma" -standby -state-dir "$DATA/oma-2" -api-addr 127.0.0.1:8083 -api-url http://localhost:8083 \
  -nats-addr 127.0.0.1:4223 -cluster-listen 127.0.0.1:6223 -server-name oma-2 "${OMA[@]}"
for _ in $(seq 600); do curl -sf http://127.0.0.1:8082/api/v1/health >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:8082/api/v1/health >/dev/null || die "oma-1 did not answer in 60 s; see $DATA/logs/oma-1.log"
say "oma-1  active:  http://localhost:8082 (NATS nats://127.0.0.1:4222)"
for _ in $(seq 600); do grep -q 'standby: following' "$DATA/logs/oma-2.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'standby: following' "$DATA/logs/oma-2.log" || die "oma-2 is not following in 60 s; see $DATA/logs/oma-2.log"
say "oma-2  standby: follows oma-1; serves http://localhost:8083 once it takes over (NATS nats://127.0.0.1:4223)"
say "node-3 NATS:    nats://127.0.0.1:4224"
cat <<EOF

The cluster is up: three NATS nodes, every stream on three replicas, oma-1 active, oma-2 its standby.
The admin token is in $DATA/oma-1/initial-token. The nodes, as the admin:

  $BIN/nats --server nats://127.0.0.1:4224 --nkey $DATA/keys/admin.nk server list
  $BIN/nats --server nats://127.0.0.1:4224 --nkey $DATA/keys/admin.nk kv get godwit-lease active

Kill the active OMA and watch the standby take over (its API answers within ~10 s):

  kill -9 \$(cat $DATA/oma-1.pid); until curl -sf localhost:8083/api/v1/health; do sleep 0.5; done

Ctrl-C stops it all.
EOF
# One stopping (killed, to see the standby take over) leaves the others running.
declare -A gone
while :; do
  alive=0
  for name in node-3 oma-1 oma-2; do
    if kill -0 "$(cat "$DATA/$name.pid")" 2>/dev/null; then
      alive=1
    elif [ -z "${gone[$name]:-}" ]; then
      gone[$name]=1
      say "$name stopped; the end of its log:"
      tail -n 3 "$DATA/logs/$name.log" | cut -c1-200
    fi
  done
  [ "$alive" = 1 ] || break
  if [ -z "${gone[oma-2]:-}" ] && [ -z "${taken:-}" ] && curl -sf http://127.0.0.1:8083/api/v1/health >/dev/null 2>&1; then
    taken=1
    say "oma-2  active:  took over, http://localhost:8083"
  fi
  sleep 1
done
