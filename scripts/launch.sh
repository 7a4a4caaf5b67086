#!/usr/bin/env bash
# Data-parallel training on this machine: N copies of `safetune train`, torchrun-style.
#
#   scripts/launch.sh -n N CONFIG.yaml [key=value ...]     N processes of safetune train
#   scripts/launch.sh -n N -- COMMAND [ARGS ...]           N processes of any command
#                                                          (e.g. safetune bench allreduce)
#
# Each process gets RANK = LOCAL_RANK = 0..N-1, WORLD_SIZE = LOCAL_WORLD_SIZE = N,
# MASTER_ADDR = 127.0.0.1 and MASTER_PORT = a free port (or $MASTER_PORT when set). Their
# output is prefixed with "[rank R] ". When one process fails, the others are stopped;
# the exit code is the first non-zero one (0 when all succeed). SIGINT / SIGTERM are
# passed on to every process (training saves a checkpoint and stops at the same step on
# all ranks). The safetune binary is $SAFETUNE_BIN, else build/safetune beside this
# script's directory, else safetune on PATH. Several machines: see docs/distributed.md.
set -uo pipefail

usage() {
  echo "usage: $0 -n N CONFIG.yaml [key=value ...]   or   $0 -n N -- COMMAND [ARGS ...]" >&2
  exit 2
}

n=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--nproc|--nproc-per-node) [ $# -ge 2 ] || usage; n=$2; shift 2 ;;
    -n*) n=${1#-n}; shift ;;
    -h|--help) usage ;;
    *) break ;;
  esac
done
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: -n N: a positive number of processes is required" >&2; usage; }
[ $# -ge 1 ] || usage

here=$(cd "$(dirname "$0")" && pwd)
if [ "$1" = "--" ]; then
  shift
  [ $# -ge 1 ] || usage
  cmd=("$@")
else
  bin=${SAFETUNE_BIN:-}
  if [ -z "$bin" ]; then
    if [ -x "$here/../build/safetune" ]; then bin=$here/../build/safetune; else bin=$(command -v safetune || true); fi
  fi
  [ -n "$bin" ] && [ -x "$bin" ] || { echo "launch.sh: no safetune binary (set SAFETUNE_BIN)" >&2; exit 2; }
  cmd=("$bin" train "$@")
fi

# A free TCP port for rank 0's store: a random one nothing listens on.
free_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50 2>/dev/null || seq 29500 29549); do
    # Nothing listening (connect fails) is good enough: rank 0 binds it right away.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
port=${MASTER_PORT:-$(free_port)} || { echo "launch.sh: no free port found" >&2; exit 1; }

pids=()
stopping=0
forward() {  # pass a signal on to every process, once
  local sig=$1
  stopping=1
  for p in "${pids[@]}"; do kill -s "$sig" "$p" 2>/dev/null; done
}
trap 'forward INT' INT
trap 'forward TERM' TERM

# Output goes through one FIFO pair per rank to `sed` processes of this script's own, so
# that every line is prefixed and all of it is written before this script exits.
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
seds=()
for ((r = 0; r < n; r++)); do
  mkfifo "$tmp/out$r" "$tmp/err$r"
  sed -u "s/^/[rank $r] /" <"$tmp/out$r" &
  seds+=($!)
  sed -u "s/^/[rank $r] /" <"$tmp/err$r" >&2 &
  seds+=($!)
  (
    export RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=${MASTER_ADDR:-127.0.0.1} MASTER_PORT=$port
    exec "${cmd[@]}" >"$tmp/out$r" 2>"$tmp/err$r"
  ) &
  pids+=($!)
done

# Wait for the processes one by one; when one fails, stop the rest (SIGTERM).
status=0
left=$n
declare -A done_pid=()
while [ "$left" -gt 0 ]; do
  alive=()
  for p in "${pids[@]}"; do [ -z "${done_pid[$p]:-}" ] && alive+=("$p"); done
  finished=""
  wait -n -p finished "${alive[@]}"
  rc=$?
  if [ -z "${finished:-}" ]; then
    [ "$rc" -eq 127 ] && break  # no child left
    continue                    # a forwarded signal interrupted the wait
  fi
  done_pid[$finished]=1
  left=$((left - 1))
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
    for ((r = 0; r < n; r++)); do
      [ "${pids[$r]}" = "$finished" ] && echo "launch.sh: rank $r exited with code $rc; stopping the others" >&2
    done
    for p in "${pids[@]}"; do [ -z "${done_pid[$p]:-}" ] && kill -TERM "$p" 2>/dev/null; done
    break
  fi
done
# After a failure, a process still running 30 s after SIGTERM gets SIGKILL.
if [ "$status" -ne 0 ]; then
  for _ in $(seq 1 300); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
fi
wait "${pids[@]}" 2>/dev/null
# A process stopped before it opened its FIFOs leaves their reader waiting for a writer:
# open each end read-write (never blocks) and close it, which ends such a reader with EOF.
for ((r = 0; r < n; r++)); do
  { : <>"$tmp/out$r"; : <>"$tmp/err$r"; } 2>/dev/null
done
wait "${seds[@]}" 2>/dev/null
exit "$status"
