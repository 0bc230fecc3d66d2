#!/usr/bin/env bash
# Installs the Debian packages godwit's tests and dev stack need, if missing:
# nbdkit (NBD exports), libnbd-bin (nbdcopy, nbdinfo), openssh-server (the tunnel),
# time (/usr/bin/time: peak RSS in scripts/bench-copy.sh), curl and jq (make run's and
# make demo's walkthrough; make test's and make check's per-package lines, scripts/go-test.sh),
# iproute2 (ip: the network namespaces of e2e's TestTwoMachines) and openssl (the OMA's
# certificate in the README's two-machine steps, which it runs).
set -euo pipefail

pkgs=(nbdkit libnbd-bin openssh-server time curl jq iproute2 openssl)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "Debian packages: all present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
fi
echo "installing Debian packages (apt-get update, then install: a minute or two): ${missing[*]}"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
