#!/usr/bin/env bash
# Times `vma copy` against nbdcopy on the same machine, the same inputs, in
# interleaved runs, and prints the medians, the peak RSS of both, and a last
# line "copy ratio vs nbdcopy: X.XX" (nbdcopy's time / godwit's time).
#
#   file:   source `nbdkit file` over a 4 GiB sparse file holding 2 GiB of
#           random data and a 2 GiB hole; target a fresh `nbdkit file` export
#   memory: source `nbdkit memory` (4 GiB, 2 GiB written) to `nbdkit null`:
#           the client's raw ceiling
#
# Usage: scripts/bench-copy.sh [RUNS]   (RUNS defaults to 5; BIN defaults to ./bin)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${BIN:-$PWD/bin}
SIZE=$((4 << 30))
DATA=$((2 << 30))

for tool in nbdkit nbdcopy /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-copy: $tool is missing (make deps; apt-get install time)" >&2; exit 1; }
done
[ -x "$BIN/vma" ] || { echo "bench-copy: $BIN/vma is missing (make build)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a TCP port nobody listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve VAR ARGS...: starts nbdkit ARGS on a free port (in this shell, so
# that it lives until stopped) and sets VAR to its URI.
serve() {
  local var=$1 port
  shift
  port=$(free_port)
  nbdkit --foreground --exit-with-parent -i 127.0.0.1 -p "$port" "$@" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf -v "$var" 'nbd://127.0.0.1:%s' "$port"
      return
    fi
    sleep 0.02
  done
  echo "bench-copy: nbdkit $* did not start" >&2
  exit 1
}

stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

echo "bench-copy: writing the source: $((SIZE >> 30)) GiB, $((DATA >> 30)) GiB of random data then a hole" >&2
head -c "$DATA" /dev/urandom >"$work/source.raw"
truncate -s "$SIZE" "$work/source.raw"
serve src_file -r file "$work/source.raw"
serve src_mem memory "$SIZE"
nbdcopy "$work/source.raw" "$src_mem" # fill the memory disk the same way

# run NAME CMD...: times one copy, appends "seconds maxrss_kib" to $work/NAME.
run() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time.tmp" "$@" >/dev/null
  ((i == 0)) || cat "$work/time.tmp" >>"$work/$name"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Round 0 warms the page cache and is not counted; then the two tools take
# turns going first, so that neither always follows the other.
for ((i = 0; i <= RUNS; i++)); do
  order="nbdcopy godwit"
  ((i % 2 == 0)) && order="godwit nbdcopy"
  for tool in $order; do
    rm -f "$work/target.raw"
    truncate -s "$SIZE" "$work/target.raw"
    serve dst file "$work/target.raw"
    if [ "$tool" = nbdcopy ]; then
      run file-nbdcopy nbdcopy --flush "$src_file" "$dst"
    else
      run file-godwit "$BIN/vma" copy --flush "$src_file" "$dst"
    fi
    cmp -s "$work/source.raw" "$work/target.raw" || { echo "bench-copy: $tool's copy differs from the source" >&2; exit 1; }
    stop_last
    serve null null "$SIZE"
    if [ "$tool" = nbdcopy ]; then
      run mem-nbdcopy nbdcopy "$src_mem" "$null"
    else
      run mem-godwit "$BIN/vma" copy "$src_mem" "$null"
    fi
    stop_last
  done
  ((i == 0)) && echo "bench-copy: warm-up done" >&2 || echo "bench-copy: run $i of $RUNS done" >&2
done

printf '%-28s %12s %12s %14s\n' "case ($RUNS runs, median)" "nbdcopy s" "godwit s" "ratio"
for case in file mem; do
  n=$(cut -d' ' -f1 "$work/$case-nbdcopy" | median)
  g=$(cut -d' ' -f1 "$work/$case-godwit" | median)
  printf '%-28s %12s %12s %14s\n' "$case" "$n" "$g" "$(awk -v n="$n" -v g="$g" 'BEGIN {printf "%.2f", n/g}')"
done
for tool in nbdcopy godwit; do
  rss=$(cat "$work/file-$tool" "$work/mem-$tool" | cut -d' ' -f2 | sort -n | tail -1)
  echo "peak RSS $tool: $((rss / 1024)) MiB"
done
n=$(cut -d' ' -f1 "$work/file-nbdcopy" | median)
g=$(cut -d' ' -f1 "$work/file-godwit" | median)
echo "copy ratio vs nbdcopy: $(awk -v n="$n" -v g="$g" 'BEGIN {printf "%.2f", n/g}')"
