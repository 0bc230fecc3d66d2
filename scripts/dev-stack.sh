#!/usr/bin/env bash
# The development stack `make run` brings up, on this machine's loopback:
#   vcsim  a simulated vCenter on 127.0.0.1:8989 (user administrator@vsphere.local,
#          password godwit-dev, datacenter DatabanxDC, VM PGWINTESTBIOS, ...)
#   oma    REST API :8082, NATS 127.0.0.1:4222, NBD exports 10100-10199
#   sshd   the OMA's OpenSSH sshd on 127.0.0.1:2222 with its own host key ($DATA/sshd)
#          and the production settings of scripts/sshd-godwit.conf; the authorized_keys
#          (the line `oma vma add` made for vma-1) and the VMAs' API sockets are in a
#          directory of this run, $RUN (/tmp/godwit-run.XXXXXX), removed at the end
#   vma    registered as vma-1 with its SSH key; it reaches the OMA only through its
#          SSH tunnel to that sshd, logged in as you, or as nobody when you are root
#          (never as root); it forwards its API (127.0.0.1:8081 on the VMA's side) on
#          the socket $RUN/tunnels/vma-1.sock, and the OMA holds 127.0.0.1:9081 and
#          forwards into it (503 "VMA vma-1 not connected" while the tunnel is down)
#   watch  `oma watch`: one line per job event on this terminal
# It prints one line per component once it answers, then the URLs, the API token, the
# seed's curl commands and the nats commands, and writes them as shell variables to
# $VAR/dev.env (default ./var/dev.env, mode 0600). Full logs: $DATA/logs/<component>.log.
# Ctrl-C stops everything cleanly. State stays in $DATA (default ./data): a second run
# reuses it, jobs included; the simulated VMs' disks are in $DATA/vcsim/datastore.
# The ports can be moved (VCSIM_PORT, OMA_PORT, NATS_PORT, NBD_PORTS, SSHD_PORT,
# VMA_PORT, VMA_TUNNEL_PORT), as the end-to-end test does; the defaults are the documented ones.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-$PWD/data}
VAR=${VAR:-$PWD/var}
VCSIM_PORT=${VCSIM_PORT:-8989}
OMA_PORT=${OMA_PORT:-8082}
NATS_PORT=${NATS_PORT:-4222}
NBD_PORTS=${NBD_PORTS:-10100-10199}
SSHD_PORT=${SSHD_PORT:-2222}
VMA_PORT=${VMA_PORT:-8081}
VMA_TUNNEL_PORT=${VMA_TUNNEL_PORT:-9081}
VCENTER=127.0.0.1:$VCSIM_PORT
VCENTER_USER=administrator@vsphere.local
VCENTER_PASSWORD=${GODWIT_VCSIM_PASSWORD:-godwit-dev}
DATA=$(mkdir -p "$DATA" && cd "$DATA" && pwd)
LOGS=$DATA/logs
mkdir -p "$DATA/oma" "$DATA/vma" "$DATA/vcsim" "$DATA/sshd" "$LOGS" "$VAR"
chmod 700 "$DATA/oma" "$DATA/vma" "$DATA/sshd" "$VAR"
# The tunnel's login user, who must be able to read the authorized_keys and create
# the API socket: never root.
TUNNEL_USER=$(id -un)
if [ "$(id -u)" = 0 ]; then TUNNEL_USER=nobody; fi
RUN=$(mktemp -d /tmp/godwit-run.XXXXXX)
trap 'rm -rf "$RUN"' EXIT
chmod 711 "$RUN"
mkdir -p "$RUN/tunnels"
chmod 700 "$RUN/tunnels"
if [ "$(id -u)" = 0 ]; then chown "$TUNNEL_USER" "$RUN/tunnels"; fi
FORWARDS=(-nats-addr "127.0.0.1:$NATS_PORT" -nbd-ports "$NBD_PORTS" -export-host 127.0.0.1 -tunnel-dir "$RUN/tunnels" -sshd-port "$SSHD_PORT")

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "dev-stack: $*" >&2; exit 1; }

say "dev stack: state in $DATA, logs in $LOGS; starting vcsim, oma, sshd, vma and oma watch (each says ready below)"

# Refuse to start over another stack: name the port that is taken.
for port in "$VCSIM_PORT" "$OMA_PORT" "$NATS_PORT" "$VMA_TUNNEL_PORT" "$VMA_PORT" "$SSHD_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (another make run?); stop it first"
  fi
done

# Register the VMA once, with its SSH key, before the OMA holds its state;
# keep its NATS seed 0600. An API token of our own, made once, while the OMA is stopped.
if [ ! -s "$DATA/vma/nats.seed" ]; then
  rm -f "$DATA/vma/nats.seed"
  key=$("$BIN/vma" pubkey -ssh -data "$DATA/vma")
  "$BIN/oma" vma add -id vma-1 -data "$DATA/oma" -seed-out "$DATA/vma/nats.seed" -ssh-key "$key" \
    -api-port "$VMA_TUNNEL_PORT" -api-addr "127.0.0.1:$OMA_PORT" "${FORWARDS[@]}" >/dev/null ||
    die "cannot register vma-1 (stale $DATA/oma? remove $DATA to start afresh)"
fi
if [ ! -s "$DATA/oma/make-run.token" ]; then
  (umask 077 && "$BIN/oma" token create -name make-run -scope admin -data "$DATA/oma" >"$DATA/oma/make-run.token.new") ||
    die "cannot create an API token in $DATA/oma"
  mv "$DATA/oma/make-run.token.new" "$DATA/oma/make-run.token"
fi
OMA_TOKEN=$(cat "$DATA/oma/make-run.token")

# The OMA's sshd: its host key, the VMAs' restricted keys, the VMA's known_hosts, and
# the production snippet's settings (its Match block, for every user) after make run's own.
[ -s "$DATA/sshd/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C godwit-dev-oma -f "$DATA/sshd/host_ed25519"
"$BIN/oma" vma authorized-keys -data "$DATA/oma" "${FORWARDS[@]}" >"$RUN/authorized_keys"
chmod 644 "$RUN/authorized_keys"
grep -q godwit-vma-vma-1 "$RUN/authorized_keys" ||
  die "vma-1 has no SSH key (registered by an older make run? remove $DATA to start afresh)"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$DATA/sshd/host_ed25519.pub")" >"$DATA/vma/known_hosts"
{
  printf '%s\n' "# generated by scripts/dev-stack.sh from scripts/sshd-godwit.conf" \
    "ListenAddress 127.0.0.1:$SSHD_PORT" "HostKey $DATA/sshd/host_ed25519" "PidFile $DATA/sshd/sshd.pid" \
    "StrictModes no" "PubkeyAuthentication yes" "PermitRootLogin no" "AuthorizedKeysFile $RUN/authorized_keys"
  awk '/^Match /{m=1; next} m && NF && $1 !~ /^#/ && $1 != "AuthorizedKeysFile" {$1=$1; print}' scripts/sshd-godwit.conf
} >"$DATA/sshd/sshd_config"
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi

pids=()
names=()
tailpid=
# Background commands of a script ignore SIGINT: Ctrl-C reaches them as SIGTERM from here.
stop() {
  trap - INT TERM EXIT
  rm -f "$VAR/dev.env"
  kill -TERM "${pids[@]}" $tailpid 2>/dev/null || true
  wait "${pids[@]}" $tailpid 2>/dev/null || true
  rm -rf "$RUN"
}
trap stop EXIT
trap 'echo; say "stopping"; stop; say "stopped"; exit 0' INT TERM
# start NAME CMD...: runs CMD in the background, its output in $LOGS/NAME.log.
start() {
  local name=$1
  shift
  "$@" >>"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
# ready NAME WHAT CHECK...: waits up to 60 s for CHECK to succeed, then says NAME is ready.
ready() {
  local name=$1 what=$2
  shift 2
  for _ in $(seq 600); do
    if "$@" >/dev/null 2>&1; then
      say "$(printf '%-5s' "$name") ready: $what"
      return
    fi
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} stopped; the end of $LOGS/${names[$i]}.log:
$(tail -n 20 "$LOGS/${names[$i]}.log")"
    done
    sleep 0.1
  done
  die "$name did not answer in 60 s; see $LOGS/$name.log"
}
tcp() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }

rm -f "$DATA/vcsim/ca.pem"
start vcsim "$BIN/vcsim" -addr "$VCENTER" -ca-out "$DATA/vcsim/ca.pem" -datastore "$DATA/vcsim/datastore"
# -min-sync-interval 5s: make demo's plan syncs every 10 s (the OMA's default minimum is a minute).
start oma "$BIN/oma" -data "$DATA/oma" -api-addr "127.0.0.1:$OMA_PORT" -min-sync-interval 5s "${FORWARDS[@]}"
start sshd /usr/sbin/sshd -D -e -f "$DATA/sshd/sshd_config"
ready vcsim "https://$VCENTER/sdk ($VCENTER_USER / $VCENTER_PASSWORD)" test -s "$DATA/vcsim/ca.pem"
ready oma "http://localhost:$OMA_PORT (NATS nats://127.0.0.1:$NATS_PORT, exports on $NBD_PORTS)" \
  curl -sf "http://127.0.0.1:$OMA_PORT/api/v1/health"
ready sshd "127.0.0.1:$SSHD_PORT (the OMA's SSH server for the VMA's tunnel, as $TUNNEL_USER)" tcp "$SSHD_PORT"
curl -sf -H "Authorization: Bearer $OMA_TOKEN" "http://127.0.0.1:$OMA_PORT/api/v1/vmas" | grep -q "\"api_port\":$VMA_TUNNEL_PORT[,}]" ||
  die "vma-1 was registered with another API port than $VMA_TUNNEL_PORT (remove $DATA to start afresh)"
start vma "$BIN/vma" -data "$DATA/vma" -id vma-1 -api-addr "127.0.0.1:$VMA_PORT" \
  -tunnel "ssh://$TUNNEL_USER@127.0.0.1:$SSHD_PORT" -tunnel-known-hosts "$DATA/vma/known_hosts" \
  -tunnel-listen "$RUN/tunnels/vma-1.sock" -nats-url "nats://127.0.0.1:$NATS_PORT" \
  -nats-seed "$DATA/vma/nats.seed" -vcenter-ca "$DATA/vcsim/ca.pem"
ready vma "http://localhost:$VMA_TUNNEL_PORT on the OMA's side: the OMA's port, into its SSH tunnel (127.0.0.1:$VMA_PORT on its own)" \
  curl -sf "http://127.0.0.1:$VMA_TUNNEL_PORT/api/v1/health"
for _ in $(seq 300); do # the VMA's key reaches the OMA with its first heartbeat
  curl -sf -H "Authorization: Bearer $OMA_TOKEN" "http://127.0.0.1:$OMA_PORT/api/v1/health" | grep -q '"vma-1"' && break
  sleep 0.1
done

OBSERVER_NKEY=$DATA/oma/observer.nk
(
  umask 077
  cat >"$VAR/dev.env.new" <<EOF
# written by make run (scripts/dev-stack.sh) while it runs; source it: . var/dev.env
OMA_URL=http://localhost:$OMA_PORT
OMA_TOKEN=$OMA_TOKEN
VMA_URL=http://localhost:$VMA_TUNNEL_PORT
VCENTER=$VCENTER
VCENTER_USER=$VCENTER_USER
VCENTER_PASSWORD=$VCENTER_PASSWORD
VCENTER_DATACENTER=DatabanxDC
VM_NAME=PGWINTESTBIOS
VM_PATH=/DatabanxDC/vm/PGWINTESTBIOS
VCSIM_DATASTORE=$DATA/vcsim/datastore
NATS_URL=nats://127.0.0.1:$NATS_PORT
NATS_OBSERVER_NKEY=$OBSERVER_NKEY
NATS_OBSERVER_JS_API_PREFIX='\$GODWIT.OBSERVER.API'
GODWIT_DATA=$DATA
GODWIT_BIN=$BIN
EOF
)
mv "$VAR/dev.env.new" "$VAR/dev.env"

cat <<EOF

godwit is up. OMA http://localhost:$OMA_PORT, VMA http://localhost:$VMA_TUNNEL_PORT (through the tunnel),
vCenter https://$VCENTER/sdk, NATS nats://127.0.0.1:$NATS_PORT. Logs: $LOGS/. Ctrl-C stops it all.
The admin API token is OMA_TOKEN in $VAR/dev.env, with the rest (not printed here: terminals get logged).
The web console: http://localhost:$OMA_PORT/ (sign in with OMA_TOKEN).

The seed's four steps, in a second terminal (or: make demo):

  . $VAR/dev.env
  # 1. discover, on the VMA
  curl -s -X POST localhost:$VMA_TUNNEL_PORT/api/v1/discover -H 'Content-Type: application/json' \\
    -d '{"vcenter":"$VCENTER","username":"$VCENTER_USER","password":"$VCENTER_PASSWORD","datacenter":"DatabanxDC"}'
  # 2. create the job on the OMA
  VM=\$(curl -s -H "Authorization: Bearer \$OMA_TOKEN" localhost:$OMA_PORT/api/v1/vms | jq -r '.vms[] | select(.name=="PGWINTESTBIOS") | .id')
  JOB=\$(curl -s -H "Authorization: Bearer \$OMA_TOKEN" -H 'Content-Type: application/json' -X POST localhost:$OMA_PORT/api/v1/replications \\
    -d "{\\"source_vm\\":{\\"id\\":\\"\$VM\\"},\\"replication_type\\":\\"initial\\"}" | jq -r .job_id)
  # 3. start it, on the VMA
  curl -s -X POST localhost:$VMA_TUNNEL_PORT/api/v1/replicate -H 'Content-Type: application/json' \\
    -d "{\\"job_id\\":\\"\$JOB\\",\\"vcenter\\":\\"$VCENTER\\",\\"username\\":\\"$VCENTER_USER\\",\\"password\\":\\"$VCENTER_PASSWORD\\",\\"vm_paths\\":[\\"/DatabanxDC/vm/PGWINTESTBIOS\\"],\\"oma_url\\":\\"http://localhost:$OMA_PORT\\"}"
  # 4. watch it: progress on the VMA, the job on the OMA
  curl -s localhost:$VMA_TUNNEL_PORT/api/v1/progress/\$JOB
  curl -s -H "Authorization: Bearer \$OMA_TOKEN" localhost:$OMA_PORT/api/v1/replications/\$JOB

The events, with the nats CLI as the read-only observer:

  export PATH=$BIN:\$PATH NATS_URL=nats://127.0.0.1:$NATS_PORT
  nats --nkey $OBSERVER_NKEY --js-api-prefix '\$GODWIT.OBSERVER.API' sub 'godwit.progress.>'               # live
  nats --nkey $OBSERVER_NKEY --js-api-prefix '\$GODWIT.OBSERVER.API' sub 'godwit.progress.>' --last --count=1  # replayed

Job events follow, one line each:
EOF

start watch "$BIN/oma" watch -nats-url "nats://127.0.0.1:$NATS_PORT" -nkey "$OBSERVER_NKEY"
tail -n 0 -F "$LOGS/watch.log" 2>/dev/null &
tailpid=$!
set +e
wait -n "${pids[@]}" # one stopped: stop the others
rc=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "dev-stack: ${names[$i]} stopped; the end of $LOGS/${names[$i]}.log:" >&2
    tail -n 20 "$LOGS/${names[$i]}.log" >&2
  fi
done
exit "$rc"
