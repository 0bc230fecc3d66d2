#!/usr/bin/env bash
# make demo: against a running `make run` (it reads var/dev.env), the seed's four steps with curl as
# the README gives them (discover on the VMA, create the job on the OMA, start it on the VMA, watch it),
# then each target compared with its source disk and the figures; then it writes into the simulated
# guest's disks, runs an incremental cycle started from the OMA's /start, compares again and says how
# many bytes moved against the full cycle. Last, a migration plan: the vCenter registered once on the
# OMA, three VMs replicated on a schedule (every $PLAN_INTERVAL, the dev stack's -min-sync-interval is
# 5s), until each has had two scheduled syncs, every replica compared with its source.
# It exits non-zero at the first thing that is not so.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VAR:-$PWD/var}
if [ ! -r "$VAR/dev.env" ]; then
  echo "demo: no $VAR/dev.env: start the stack first (make run), then run make demo in a second terminal" >&2
  exit 1
fi
# shellcheck source=/dev/null
. "$VAR/dev.env"
AUTH="Authorization: Bearer $OMA_TOKEN"
MiB=$((1 << 20))
PLAN_INTERVAL=${PLAN_INTERVAL:-10s}

step() { printf '\n== %s\n' "$*"; }
# quote: what came from the APIs (VM names and paths from vCenter, errors from a VMA) reaches the terminal
# with its control and bidi characters as escapes (\x1b, \u202e), never raw.
quote() { scripts/quote-controls.sh; }
fail() {
  printf 'demo: FAILED: %s\n' "$*" | quote >&2
  exit 1
}
human() { numfmt --to=iec-i --suffix=B --format=%.1f --round=nearest "$1"; }
# show: prints the command about to run as it could be typed, the token elided.
show() {
  local a line='$'
  for a in "$@"; do
    a=${a//$OMA_TOKEN/\$OMA_TOKEN}
    if [[ $a =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then line+=" $a"; else line+=" '$a'"; fi
  done
  printf '%s\n' "$line" | quote >&2
}
# call CURL-ARGS...: runs curl, prints the command, fails with the answer on an HTTP error.
call() {
  show curl "$@"
  local out code
  out=$(curl -sS -w '\n%{http_code}' "$@") || fail "curl $*"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" -ge 400 ]; then
    fail "HTTP $code: $out"
  fi
  printf '%s' "$out"
}
now() { date +%s.%N; }

# wait_job JOB: shows the job's progress from the OMA until it ends; fails unless it completed.
wait_job() {
  local job=$1 last="" view state line
  for _ in $(seq 1200); do
    view=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$job") || fail "GET job $job"
    state=$(jq -r .state <<<"$view")
    line=$state
    if [ "$(jq -r '.bytes_total // 0' <<<"$view")" != 0 ]; then
      line+=" $(jq -r '.percent // 0 | floor' <<<"$view")% $(human "$(jq -r .bytes_done <<<"$view")") of $(human "$(jq -r .bytes_total <<<"$view")")"
    fi
    if [ "$line" != "$last" ]; then
      printf '   %s  %s\n' "$(date +%H:%M:%S)" "$line" | quote
      last=$line
    fi
    case $state in
    completed) return 0 ;;
    failed | cancelled) fail "job $job $state: $(jq -r .last_error <<<"$view")" ;;
    esac
    sleep 0.25
  done
  fail "job $job did not end in 5 minutes"
}

# source_file KEY: the simulated datastore's flat file of the VM's disk KEY.
source_file() {
  local file
  file=$(jq -r --argjson k "$1" '.disks[] | select(.key==$k) | .file' <<<"$VMINFO")
  [ -n "$file" ] || fail "the inventory has no disk $1 for $VM_NAME"
  file=${file#\[*\] }
  printf '%s/%s' "$VCSIM_DATASTORE" "${file%.vmdk}-flat.vmdk"
}

# compare_job JOB: compares every disk's volume with its source disk.
compare_job() {
  local view key vol src
  view=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$1")
  while read -r key vol; do
    src=$(source_file "$key")
    show vma compare "$src" "$vol"
    "$GODWIT_BIN/vma" compare "$src" "$vol" 2>&1 | quote || fail "disk $key: the target differs from its source"
  done < <(jq -r '.disks[] | "\(.key) \(.volume_path)"' <<<"$view")
}

# figures JOB SECONDS: bytes, time, rate and verification of a completed job.
figures() {
  local view bytes verified
  view=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$1")
  bytes=$(jq -r .bytes_done <<<"$view")
  verified=$(jq -r .verified <<<"$view")
  printf '%s copied in %.1f s (%s/s), verified: %s\n' "$(human "$bytes")" "$2" \
    "$(human "$(awk -v b="$bytes" -v s="$2" 'BEGIN { printf "%d", (s > 0 ? b / s : b) }')")" "$verified"
  [ "$verified" = true ] || fail "job $1 is not verified"
}

step "1. discover $VM_NAME's datacenter, on the VMA ($VMA_URL, through the SSH tunnel)"
out=$(call -X POST "$VMA_URL/api/v1/discover" -H 'Content-Type: application/json' \
  -d "{\"vcenter\":\"$VCENTER\",\"username\":\"$VCENTER_USER\",\"password\":\"$VCENTER_PASSWORD\",\"datacenter\":\"$VCENTER_DATACENTER\"}")
echo
echo "   $(jq '.vms | length' <<<"$out") VMs; $VM_NAME: $(jq -c --arg n "$VM_NAME" '.vms[] | select(.name==$n) | {id, path, disks: [.disks[] | {key, capacity_bytes}]}' <<<"$out")" | quote

step "2. create the job on the OMA ($OMA_URL)"
VMS=$(call -H "$AUTH" "$OMA_URL/api/v1/vms")
echo
VMINFO=$(jq --arg n "$VM_NAME" '.vms[] | select(.name==$n)' <<<"$VMS")
VM=$(jq -r .id <<<"$VMINFO")
[ -n "$VM" ] || fail "the OMA's inventory has no $VM_NAME"
out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/replications" \
  -d "{\"source_vm\":{\"id\":\"$VM\"},\"replication_type\":\"initial\"}")
echo
JOB=$(jq -r .job_id <<<"$out")
echo "   job $JOB: $(jq -c '{state, disks: [.disks[] | {key, capacity_bytes, nbd_url}]}' <<<"$out")" | quote

step "3. start it, on the VMA"
t0=$(now)
call -X POST "$VMA_URL/api/v1/replicate" -H 'Content-Type: application/json' \
  -d "{\"job_id\":\"$JOB\",\"vcenter\":\"$VCENTER\",\"username\":\"$VCENTER_USER\",\"password\":\"$VCENTER_PASSWORD\",\"vm_paths\":[\"$VM_PATH\"],\"oma_url\":\"$OMA_URL\"}"
echo

step "4. it runs: progress from the OMA (GET $OMA_URL/api/v1/replications/$JOB)"
wait_job "$JOB"
t1=$(now)
show curl "$VMA_URL/api/v1/progress/$JOB"
curl -sS "$VMA_URL/api/v1/progress/$JOB" | jq -c '{state, bytes_done, percent, average_rate_bytes_per_second}' | quote

step "every target equals its source"
compare_job "$JOB"
initial_bytes=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$JOB" | jq -r .bytes_done)
initial=$(figures "$JOB" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
echo "   initial cycle: $initial"

step "the guest writes: 1 MiB and 64 KiB at random places of each disk"
while read -r key; do
  src=$(source_file "$key")
  size=$(stat -c %s "$src")
  off=$(((RANDOM * 32768 + RANDOM) % (size / MiB)))
  show dd if=/dev/urandom of="$src" bs=1M count=1 seek="$off" conv=notrunc
  dd if=/dev/urandom of="$src" bs=1M count=1 seek="$off" conv=notrunc status=none
  off=$(((RANDOM * 32768 + RANDOM) % (size / 65536)))
  show dd if=/dev/urandom of="$src" bs=64K count=1 seek="$off" conv=notrunc
  dd if=/dev/urandom of="$src" bs=64K count=1 seek="$off" conv=notrunc status=none
done < <(jq -r '.disks[].key' <<<"$VMINFO")

step "an incremental cycle, created and started on the OMA"
out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/replications" \
  -d "{\"source_vm\":{\"id\":\"$VM\"},\"replication_type\":\"incremental\"}")
echo
JOB2=$(jq -r .job_id <<<"$out")
echo "   job $JOB2 created"
t0=$(now)
out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/replications/$JOB2/start" \
  -d "{\"username\":\"$VCENTER_USER\",\"password\":\"$VCENTER_PASSWORD\"}")
echo "   job $JOB2: $(jq -c '{state, base_job_id, disks: [.disks[] | {key, base_change_id}]}' <<<"$out")" | quote
wait_job "$JOB2"
t1=$(now)
compare_job "$JOB2"
incr_bytes=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$JOB2" | jq -r .bytes_done)
incremental=$(figures "$JOB2" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")

step "a migration plan: register the vCenter once, on the OMA (the password proved through the VMA, then kept sealed)"
if curl -sSf -o /dev/null -H "$AUTH" "$OMA_URL/api/v1/vcenters/dev" 2>/dev/null; then
  echo "   vCenter dev is registered already"
else
  out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/vcenters" \
    -d "{\"name\":\"dev\",\"host\":\"$VCENTER\",\"username\":\"$VCENTER_USER\",\"password\":\"$VCENTER_PASSWORD\",\"datacenters\":[\"$VCENTER_DATACENTER\"]}")
  echo
  echo "   $(jq -c '{name, host, username, vmas}' <<<"$out")" | quote
fi
# A plan of the last run holds these VMs: a VM is in one plan only.
curl -sS -o /dev/null -H "$AUTH" -X DELETE "$OMA_URL/api/v1/plans/demo" || true
mapfile -t PLAN_VMS < <(jq -r --arg seed "$VM_NAME" '[.vms[] | select(.name != $seed)] | sort_by(.path) | .[:3][] | .path' <<<"$VMS")
[ "${#PLAN_VMS[@]}" = 3 ] || fail "the inventory has fewer than three VMs besides $VM_NAME"

step "create plan demo: ${PLAN_VMS[*]}, in two waves, a sync every $PLAN_INTERVAL"
out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/plans" \
  -d "$(jq -n --arg i "$PLAN_INTERVAL" --args '{name: "demo", vcenter: "dev", vms: $ARGS.positional,
        waves: [$ARGS.positional[:1], $ARGS.positional[1:]], sync: {interval: $i}}' "${PLAN_VMS[@]}")")
echo
echo "   preflight: $(jq -c '.preflight | {status, errors, warnings}' <<<"$out"), next sync due $(jq -r .next_due <<<"$out")" | quote
[ "$(jq -r .preflight.errors <<<"$out")" = 0 ] || fail "the preflight found errors: $(jq -c '[.preflight.vms[].checks[] | select(.status == "error")]' <<<"$out")"

step "the plan runs: initial copies wave by wave, then two scheduled syncs each (GET $OMA_URL/api/v1/plans/demo)"
last="" wrote=""
for _ in $(seq 1200); do
  plan=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/plans/demo") || fail "GET plan demo"
  # Once every VM has its initial copy, their guests write 1 MiB each: the next sync copies it.
  if [ -z "$wrote" ] && [ "$(jq '[.vms[] | select(.syncs >= 1)] | length' <<<"$plan")" = 3 ]; then
    for path in "${PLAN_VMS[@]}"; do
      file=$(jq -r --arg p "$path" '.vms[] | select(.path == $p) | .disks[0].file' <<<"$VMS")
      file=${file#\[*\] }
      show dd if=/dev/urandom of="$VCSIM_DATASTORE/${file%.vmdk}-flat.vmdk" bs=1M count=1 seek=1 conv=notrunc
      dd if=/dev/urandom of="$VCSIM_DATASTORE/${file%.vmdk}-flat.vmdk" bs=1M count=1 seek=1 conv=notrunc status=none
    done
    wrote=yes
  fi
  line="syncs $(jq -r .syncs <<<"$plan"), $(jq -c '.counts | with_entries(select(.value > 0))' <<<"$plan")"
  if [ "$line" != "$last" ]; then
    printf '   %s  %s\n' "$(date +%H:%M:%S)" "$line" | quote
    last=$line
  fi
  [ "$(jq '[.vms[] | select(.state == "failed" or .state == "paused")] | length' <<<"$plan")" = 0 ] ||
    fail "a VM of plan demo failed: $(jq -c '[.vms[] | select(.last_error) | {name, last_error}]' <<<"$plan")"
  # Two scheduled syncs after the initial copy: three completed copies each.
  [ "$(jq '[.vms[] | select(.syncs >= 3 and .state == "synced")] | length' <<<"$plan")" = 3 ] && break
  sleep 0.5
done
[ "$(jq '[.vms[] | select(.syncs >= 3)] | length' <<<"$plan")" = 3 ] || fail "plan demo did not sync every VM twice in 10 minutes"
for j in $(jq -r '.vms[].last_sync.job' <<<"$plan"); do
  view=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/replications/$j")
  while read -r key vol file; do
    file=${file#\[*\] }
    src="$VCSIM_DATASTORE/${file%.vmdk}-flat.vmdk"
    show vma compare "$src" "$vol"
    "$GODWIT_BIN/vma" compare "$src" "$vol" 2>&1 | quote || fail "plan demo: disk $key of $j differs from its source"
  done < <(jq -r --argjson inv "$VMS" --arg vm "$(jq -r .source_vm.id <<<"$view")" \
    '.disks[] as $d | ($inv.vms[] | select(.id == $vm) | .disks[] | select(.key == $d.key) | .file) as $f | "\($d.key) \($d.volume_path) \($f)"' <<<"$view")
done
echo "   plan demo: $(jq -c '{syncs, next_due, bytes_copied, vms: [.vms[] | {name, state, syncs, last: .last_sync | {type, bytes_changed, verified}}]}' <<<"$plan")" | quote
curl -sS -o /dev/null -H "$AUTH" -X POST "$OMA_URL/api/v1/plans/demo/pause"
echo "   plan demo paused (POST /api/v1/plans/demo/resume starts its syncs again)"

CUT_ID=$(jq -r '.vms[0].id' <<<"$plan")
CUT_NAME=$(jq -r '.vms[0].name' <<<"$plan")
step "cut over $CUT_NAME: its source powered off, a final sync, its disks written to the target directory (POST /api/v1/vms/$CUT_ID/cutover)"
echo "   the simulator's disks hold no guest that boots, so this cutover neither converts nor boot-checks (convert, boot_check false);"
echo "   make test and make test-guest run both on guests that boot"
echo "   predicted downtime: $(jq -r '.vms[0].predicted_downtime_seconds | round' <<<"$plan") s (with a conversion and a boot check, as a cutover does by default)"
out=$(call -H "$AUTH" -H 'Content-Type: application/json' -X POST "$OMA_URL/api/v1/vms/$CUT_ID/cutover" \
  -d '{"power_off": "guest-then-hard", "convert": false, "boot_check": false}')
for _ in $(seq 1 300); do
  cut=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/vms/$CUT_ID/cutover") || fail "GET the cutover"
  case $(jq -r .state <<<"$cut") in
    cut_over) break ;;
    failed) fail "the cutover of $CUT_NAME failed: $(jq -r '.failed_step + ": " + .error' <<<"$cut")" ;;
  esac
  sleep 0.5
done
[ "$(jq -r .state <<<"$cut")" = cut_over ] || fail "the cutover of $CUT_NAME did not end in 150 s: $(jq -r .state <<<"$cut")"
echo "   $(jq -c '{state, power_before, power_method, final_job, final_sync_bytes, measured}' <<<"$cut")" | quote
echo "   target: $(jq -r '.target.dir' <<<"$cut"): $(jq -r '[.target.disks[].path | split("/") | last] | join(", ")' <<<"$cut"), $(jq -r '.target.domain_xml | split("/") | last' <<<"$cut"), cloudstack.txt" | quote
echo "   $(jq -r '.target.cloudstack[0]' <<<"$cut")" | quote
step "roll it back: the source powered on again, the target's disks removed (POST /api/v1/vms/$CUT_ID/cutover/rollback)"
call -H "$AUTH" -X POST "$OMA_URL/api/v1/vms/$CUT_ID/cutover/rollback" >/dev/null
for _ in $(seq 1 120); do
  cut=$(curl -sS -H "$AUTH" "$OMA_URL/api/v1/vms/$CUT_ID/cutover") || fail "GET the cutover"
  [ "$(jq -r .state <<<"$cut")" = rolled_back ] && break
  sleep 0.5
done
[ "$(jq -r .state <<<"$cut")" = rolled_back ] || fail "the rollback of $CUT_NAME did not end in 60 s: $(jq -r '.state + " " + .error' <<<"$cut")"
echo "   $CUT_NAME: $(jq -r .state <<<"$cut"), its source $(jq -r .power_before <<<"$cut") again; plan demo syncs it again when resumed"

step "done"
echo "   initial cycle     $JOB: $initial"
echo "   incremental cycle $JOB2: $incremental"
echo "   the incremental moved $(human "$incr_bytes") against $(human "$initial_bytes") for the full cycle ($(awk -v a="$incr_bytes" -v b="$initial_bytes" 'BEGIN { printf "%.0f", 100 * a / b }')%); both verified, every disk equal to its source"
echo "   plan demo: 3 VMs, $(jq -r .syncs <<<"$plan") scheduled syncs, every replica equal to its source"
echo "   cutover of $CUT_NAME: $(jq -c .measured <<<"$cut" | sed 's/"//g') seconds, rolled back"
