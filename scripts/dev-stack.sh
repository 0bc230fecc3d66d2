#!/usr/bin/env bash
# The development stack `make run` brings up, on this machine:
#   vcsim  a simulated vCenter on 127.0.0.1:8989 (user administrator@vsphere.local,
#          password godwit-dev, datacenter DatabanxDC, VM PGWINTESTBIOS, ...)
#   oma    REST API :8082, NATS 127.0.0.1:4222, NBD exports 10100-10199
#   sshd   the OMA's OpenSSH sshd on 127.0.0.1:2222, with its own config, host key
#          and authorized_keys in $DATA/sshd (the line `oma vma add` made for vma-1)
#   vma    registered as vma-1 with its SSH key; it reaches the OMA only through its
#          SSH tunnel to that sshd, which forwards 127.0.0.1:9081 on the OMA to its API
#          (127.0.0.1:8081 on the VMA's side)
# Ctrl-C stops all three cleanly. State stays in $DATA (default ./data), the
# simulated VMs' disks in $DATA/vcsim/datastore.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-$PWD/data}
SSHD_PORT=2222
mkdir -p "$DATA/oma" "$DATA/vma" "$DATA/vcsim" "$DATA/sshd"
chmod 700 "$DATA/oma" "$DATA/vma" "$DATA/sshd"

# Register the VMA once, with its SSH key, before the OMA holds its state;
# keep its NATS seed 0600.
if [ ! -s "$DATA/vma/nats.seed" ]; then
  rm -f "$DATA/vma/nats.seed"
  key=$("$BIN/vma" pubkey -ssh -data "$DATA/vma")
  if ! "$BIN/oma" vma add -id vma-1 -data "$DATA/oma" -seed-out "$DATA/vma/nats.seed" -ssh-key "$key" >/dev/null; then
    echo "dev-stack: cannot register vma-1 (stale $DATA/oma? remove $DATA to start afresh)" >&2
    exit 1
  fi
fi

# The OMA's sshd: its host key, the VMAs' restricted keys, the VMA's known_hosts.
[ -s "$DATA/sshd/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C godwit-dev-oma -f "$DATA/sshd/host_ed25519"
"$BIN/oma" vma authorized-keys -data "$DATA/oma" >"$DATA/sshd/authorized_keys"
if [ ! -s "$DATA/sshd/authorized_keys" ]; then
  echo "dev-stack: vma-1 has no SSH key (registered by an older make run? remove $DATA to start afresh)" >&2
  exit 1
fi
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$DATA/sshd/host_ed25519.pub")" >"$DATA/vma/known_hosts"
printf '%s\n' "ListenAddress 127.0.0.1:$SSHD_PORT" "HostKey $DATA/sshd/host_ed25519" "PidFile $DATA/sshd/sshd.pid" \
  "AuthorizedKeysFile $DATA/sshd/authorized_keys" "StrictModes no" "PasswordAuthentication no" \
  "KbdInteractiveAuthentication no" "PubkeyAuthentication yes" "AllowTcpForwarding yes" "GatewayPorts no" \
  "PermitTTY no" "X11Forwarding no" "ClientAliveInterval 15" "ClientAliveCountMax 3" >"$DATA/sshd/sshd_config"
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi

# Refuse to start over another stack: name the port that is taken.
for port in 8989 8082 4222 9081 8081 "$SSHD_PORT"; do
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
/usr/sbin/sshd -D -e -f "$DATA/sshd/sshd_config" 2>"$DATA/sshd/sshd.log" &
pids+=($!)
"$BIN/vma" -data "$DATA/vma" -id vma-1 -api-addr 127.0.0.1:8081 \
  -tunnel "ssh://$(id -un)@127.0.0.1:$SSHD_PORT" -tunnel-known-hosts "$DATA/vma/known_hosts" -tunnel-listen 127.0.0.1:9081 \
  -nats-seed "$DATA/vma/nats.seed" -vcenter-ca "$DATA/vcsim/ca.pem" &
pids+=($!)

echo "dev-stack: up. API token: $DATA/oma/initial-token; Ctrl-C stops." >&2
wait -n "${pids[@]}" # one stopped: stop the others
