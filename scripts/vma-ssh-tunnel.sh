#!/usr/bin/env bash
# vma-ssh-tunnel.sh: the VMA's connection to the OMA with plain OpenSSH, for
# operators who prefer it to the VMA's in-process tunnel (-tunnel), with the
# limits the README gives (a static list of forwards; the VMA knows nothing of it).
# Run it on the VMA, as the user that holds the VMA's SSH key:
#
#   OMA=godwit-oma@oma.example.com SSH_KEY=/var/lib/godwit-vma/id_ed25519 \
#   KNOWN_HOSTS=/etc/godwit/oma_known_hosts scripts/vma-ssh-tunnel.sh
#
# It forwards, as the key's authorized_keys line on the OMA allows:
#   VMA 127.0.0.1:4222          -> OMA 127.0.0.1:4222   NATS
#   VMA 127.0.0.1:<each port>   -> OMA 127.0.0.1:<port> NBD exports, the VMA's share
# and not the VMA's API: the OMA holds the VMA's API port and forwards into a
# Unix socket only after the VMA there signs a challenge with its key, which
# ssh cannot do; that port answers 503 while this script is the tunnel.
# and runs ssh again when it exits (5 s, doubling to 60 s; at once again
# after a connection that lasted a minute). SIGINT/SIGTERM stop it.
#
# Settings (environment):
#   OMA          user@host of the OMA's sshd (required)
#   OMA_PORT     sshd port (22)
#   SSH_KEY      the VMA's private key (ssh's default when empty)
#   KNOWN_HOSTS  known_hosts file holding the OMA's host key (ssh's default
#                when empty); the host key is always checked, never learned
#   NATS_PORT    4222
#   NBD_PORTS    the VMA's share of the OMA's NBD port pool, FIRST-LAST
#                (nbd_ports in GET /api/v1/vmas; 10100-10199, the whole
#                pool, which sshd narrows to the share)
#
# Limits, compared with the in-process tunnel:
# - The NBD forwards are a static list: every port of NBD_PORTS is bound on
#   the VMA's loopback for as long as ssh runs (they must all be free there),
#   and a new share of the VMA means changing NBD_PORTS here too.
# - The VMA does not know about the tunnel: when ssh dies, its NATS and NBD
#   connections just drop. NATS reconnects, and a copy retries its export for
#   -export-retry (10m), so a short outage costs a resume; a longer one fails
#   the jobs that were copying.
# - After a VMA-side crash the OMA keeps the old connection until sshd's
#   ClientAlive check drops it (about 45 s).
# - One ssh process, one TCP connection: all traffic shares it, as with the
#   in-process tunnel, but there is no per-connection view or metric.
set -euo pipefail

: "${OMA:?set OMA to user@host of the OMA (such as godwit-oma@oma.example.com)}"
OMA_PORT=${OMA_PORT:-22}
NATS_PORT=${NATS_PORT:-4222}
NBD_PORTS=${NBD_PORTS:-10100-10199}

first=${NBD_PORTS%-*}
last=${NBD_PORTS#*-}
if ! [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ ]] || ((first < 1 || last > 65535 || first > last)); then
	echo "vma-ssh-tunnel: NBD_PORTS=$NBD_PORTS: want FIRST-LAST, such as 10100-10199" >&2
	exit 2
fi

args=(-N -T -p "$OMA_PORT"
	-o BatchMode=yes
	-o ExitOnForwardFailure=yes
	-o ServerAliveInterval=15
	-o ServerAliveCountMax=3
	-o StrictHostKeyChecking=yes
	-L "127.0.0.1:$NATS_PORT:127.0.0.1:$NATS_PORT")
if [[ -n ${SSH_KEY:-} ]]; then
	args+=(-o IdentitiesOnly=yes -i "$SSH_KEY")
fi
if [[ -n ${KNOWN_HOSTS:-} ]]; then
	args+=(-o UserKnownHostsFile="$KNOWN_HOSTS")
fi
for ((port = first; port <= last; port++)); do
	args+=(-L "127.0.0.1:$port:127.0.0.1:$port")
done

child=
stop() {
	if [[ -n $child ]]; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	exit 0
}
trap stop INT TERM

delay=5
while :; do
	started=$SECONDS
	echo "vma-ssh-tunnel: connecting to $OMA port $OMA_PORT" >&2
	ssh "${args[@]}" "$OMA" &
	child=$!
	rc=0
	wait "$child" || rc=$?
	child=
	if ((SECONDS - started >= 60)); then
		delay=5
	fi
	echo "vma-ssh-tunnel: ssh exited ($rc); again in ${delay}s" >&2
	sleep "$delay" &
	wait $! || true
	delay=$((delay * 2 > 60 ? 60 : delay * 2))
done
