#!/usr/bin/env bash
# Data parallel across two hosts. Two network namespaces joined by a veth pair stand in
# for two machines (10.231.7.1 and 10.231.7.2, each with its own loopback and nothing
# else: the ranks can reach each other only over the pair, and no traffic leaves them).
# Root only (ip netns); skipped (77) where namespaces cannot be made.
#  - rank 0 in the first, rank 1 in the second, MASTER_ADDR the first's address: the
#    adapter equals that of one process accumulating the same global batch (1e-5, and
#    said whether bit for bit), with the same per-step losses;
#  - rank 1 SIGKILLed mid-run: rank 0 exits 4 (the environment failed) within
#    train.dist_timeout_s;
#  - the second host's link cut mid-run (no reset reaches rank 0): rank 0 exits 4 once
#    train.dist_timeout_s has passed.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
command -v ip >/dev/null || { echo "SKIP: no ip (iproute2)"; exit 77; }
ns_a=safetune-a-$$ ns_b=safetune-b-$$
addr_a=10.231.7.1 addr_b=10.231.7.2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  ip netns del $ns_a 2>/dev/null
  ip netns del $ns_b 2>/dev/null
  remove_work
}
trap cleanup EXIT
ip netns add $ns_a 2>/dev/null || { echo "SKIP: cannot make network namespaces (needs root)"; exit 77; }
ip netns add $ns_b || fail "ip netns add $ns_b"
# The pair is made inside the namespaces: nothing is added to this host's own network.
ip link add veth0 netns $ns_a type veth peer name veth0 netns $ns_b || fail "ip link add (veth)"
ip -n $ns_a addr add $addr_a/24 dev veth0 && ip -n $ns_b addr add $addr_b/24 dev veth0 || fail "ip addr add"
for ns in $ns_a $ns_b; do ip -n $ns link set lo up && ip -n $ns link set veth0 up || fail "ip link set up ($ns)"; done

WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" bench allreduce --timeout 0.1 2>&1 |
  grep -q "built without c10d" && { echo "SKIP: safetune was built without c10d Gloo"; exit 77; }

init_small model 1
for i in $(seq 0 17); do
  echo "{\"instruction\": \"Say colour $i\", \"output\": \"colour $i is $( ((i % 3 == 0)) && echo blue || echo a shade of green)\"}"
done >"$work/train.jsonl"
# Global batch 2 x 2 examples per step: one micro-batch per rank, or two in a row on one
# process; 18 examples, so the last step of the epoch has one micro-batch (rank 1 idles).
common=("$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/train.jsonl" train.batch_size=2
  train.grad_accum=2 train.max_steps=7 train.threads=1 train.log_every=1 train.save_every=2 lora.dropout=0
  train.dist_timeout_s=10)

# rank NS R [key=value ...]: starts rank R in namespace NS (rank 0's host is the master);
# its pid is the safetune process's (ip netns exec and env exec it in place).
rank() {
  local ns=$1 r=$2
  shift 2
  ip netns exec "$ns" env WORLD_SIZE=2 RANK="$r" LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=$addr_a \
    MASTER_PORT=29500 "$bin" train "${common[@]}" "$@" >"$work/rank$r.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
veth_bytes() { ip netns exec "$1" cat /sys/class/net/veth0/statistics/rx_bytes; }

# 1. Two hosts against one process.
"$bin" train "${common[@]}" train.output_dir="$work/one" >"$work/one.log" 2>&1 || { cat "$work/one.log"; fail "1 process"; }
rank $ns_a 0 train.output_dir="$work/two"
r0=$last_pid
rank $ns_b 1 train.output_dir="$work/two"
r1=$last_pid
wait $r0; rc0=$?
wait $r1; rc1=$?
[ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] || { cat "$work/rank0.log" "$work/rank1.log"; fail "two hosts: exit $rc0 / $rc1"; }
grep -q "data parallel: 2 processes" "$work/rank0.log" || { cat "$work/rank0.log"; fail "rank 0 did not run data parallel"; }
rx=$(veth_bytes $ns_a)
[ "$rx" -gt 10000 ] || fail "only $rx bytes came over the veth pair"
out=$($py "$src/tests/reference/compare_runs.py" "$work/one" "$work/two" 7) || { echo "$out"; fail "two hosts != one process"; }
if cmp -s "$work/one/adapter/adapter_model.safetensors" "$work/two/adapter/adapter_model.safetensors"; then
  same="bit for bit"
else
  same="not bit for bit"
fi
echo "PASS two hosts ($addr_a, $addr_b; $rx bytes over the pair) == one process: $out; adapter $same"

# dead_peer HOW: both ranks train until rank 0 has logged 3 steps, then HOW (kill: SIGKILL
# rank 1; cut: take the second host's link down); rank 0 must exit 4 within LIMIT seconds.
dead_peer() {
  local how=$1 limit=$2 t0 t1 rc waited=0 run=$work/dead_$1
  rank $ns_a 0 train.output_dir="$run" train.max_steps=100000 train.save_every=0
  r0=$last_pid
  rank $ns_b 1 train.output_dir="$run" train.max_steps=100000 train.save_every=0
  r1=$last_pid
  for _ in $(seq 1 1200); do
    [ -f "$run/metrics.jsonl" ] && [ "$(wc -l <"$run/metrics.jsonl")" -ge 3 ] && break
    kill -0 $r0 2>/dev/null || break
    sleep 0.05
  done
  [ -f "$run/metrics.jsonl" ] && [ "$(wc -l <"$run/metrics.jsonl")" -ge 3 ] ||
    { cat "$work/rank0.log" "$work/rank1.log"; fail "$how: the pair never trained"; }
  t0=$(date +%s.%N)
  if [ "$how" = kill ]; then kill -KILL $r1; else ip -n $ns_b link set veth0 down; fi
  while kill -0 $r0 2>/dev/null && [ $waited -lt $((limit * 10 + 100)) ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -0 $r0 2>/dev/null && fail "$how: rank 0 still running $((limit + 10)) s later"
  wait $r0
  rc=$?
  t1=$(date +%s.%N)
  kill -KILL $r1 2>/dev/null
  wait $r1 2>/dev/null
  [ $rc -eq 4 ] || { cat "$work/rank0.log"; fail "$how: rank 0 exited $rc, expected 4"; }
  grep -q "^safetune: error: distributed training, rank 0 of 2: .* failed" "$work/rank0.log" ||
    { cat "$work/rank0.log"; fail "$how: no clear error from rank 0"; }
  local took
  took=$(awk "BEGIN {printf \"%.1f\", $t1 - $t0}")
  awk "BEGIN {exit !($took <= $limit)}" || fail "$how: rank 0 took $took s, more than $limit s"
  echo "PASS rank 1 $how: rank 0 exit 4 after $took s (train.dist_timeout_s 10)"
}
dead_peer kill 10
# Nothing tells rank 0 of a cut link: it waits for the timeout, plus the time a step takes.
dead_peer cut 15
echo "PASS all"
