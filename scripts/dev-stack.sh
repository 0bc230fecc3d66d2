#!/usr/bin/env bash
# The development stack `make run` brings up, on this machine:
#   vcsim  a simulated vCenter on 127.0.0.1:8989 (user administrator@vsphere.local,
#          password godwit-dev, datacenter DatabanxDC, VM PGWINTESTBIOS, ...)
#   oma    REST API :8082, NATS 127.0.0.1:4222, NBD exports 10100-10199
#   vma    registered as vma-1; its API on 127.0.0.1:9081, where the OMA will reach
#          it through the SSH tunnel (until the tunnel exists, it listens there itself)
# Ctrl-C stops all three cleanly. State stays in $DATA (default ./data), the
# simulated VMs' disks in $DATA/vcsim/datastore.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-$PWD/data}
mkdir -p "$DATA/oma" "$DATA/vma" "$DATA/vcsim"
chmod 700 "$DATA/oma" "$DATA/vma"

# Register the VMA once, before the OMA holds its state; keep its NATS seed 0600.
if [ ! -s "$DATA/vma/nats.seed" ]; then
  rm -f "$DATA/vma/nats.seed"
  if ! "$BIN/oma" vma add -id vma-1 -data "$DATA/oma" -seed-out "$DATA/vma/nats.seed" >/dev/null; then
    echo "dev-stack: cannot register vma-1 (stale $DATA/oma? remove $DATA to start afresh)" >&2
    exit 1
  fi
fi

# Refuse to start over another stack: name the port that is taken.
for port in 8989 8082 4222 9081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "dev-stack: port $port is in use (another make run?); stop it first" >&2
    exit 1
  fi
done

rm -f "$DATA/vcsim/ca.pem"
pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN/vcsim" -addr 127.0.0.1:8989 -ca-out "$DATA/vcsim/ca.pem" -datastore "$DATA/vcsim/datastore" &
pids+=($!)
"$BIN/oma" -data "$DATA/oma" &
pids+=($!)
for _ in $(seq 200); do
  [ -s "$DATA/vcsim/ca.pem" ] && break
  sleep 0.05
done
"$BIN/vma" -data "$DATA/vma" -id vma-1 -api-addr 127.0.0.1:9081 \
  -nats-seed "$DATA/vma/nats.seed" -vcenter-ca "$DATA/vcsim/ca.pem" &
pids+=($!)

echo "dev-stack: up. API token: $DATA/oma/initial-token; Ctrl-C stops." >&2
wait -n "${pids[@]}" # one stopped: stop the others
