#!/usr/bin/env bash
# The fused step's cost of one constraint against another (default: safety_mass against
# pact), CE + lambda x constraint from hidden states, forward + backward, on the CPU
# target shape of scripts/bench_loss.sh (N = 4096, V = 32000, d = 1024, K = 50, fp32,
# lm_head frozen). `safetune bench loss --json` runs each constraint in turn, alternating,
# ROUNDS times, so that load from other processes hits both alike; each run reports its
# best fused wall time of ITERS and the fused op's peak extra memory (LibTorch allocator).
# Printed: every round's times and ratio, then the median of the per-round ratios of wall
# time and of process CPU time (the steadier one when other processes share the cores),
# the ratio of the median wall times, and of the peak memories.
# Targets (safety_mass vs pact): time within +5%, peak memory within +1%.
#
#   scripts/bench_constraint_cost.sh [ROUNDS=7] [A=safety_mass] [B=pact]
# Environment: SAFETUNE_BIN (default build/safetune), TOKENS, VOCAB, HIDDEN, SUBSET,
# CHUNK (0: default), ITERS (3), WARMUP (1), THREADS (0: all cores).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
bin=${SAFETUNE_BIN:-$src/build/safetune}
rounds=${1:-7}
a=${2:-safety_mass}
b=${3:-pact}
py=/usr/bin/python3
threads=${THREADS:-0}
if [ "$threads" != 0 ]; then export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads; fi
. "$here/lib/bench.sh"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
last=""
for ((i = 1; i <= rounds; i++)); do
  for c in "$a" "$b"; do
    out=$("$bin" bench loss --tokens "${TOKENS:-4096}" --vocab "${VOCAB:-32000}" --hidden "${HIDDEN:-1024}" \
      --subset "${SUBSET:-50}" --chunk "${CHUNK:-0}" --iters "${ITERS:-3}" --warmup "${WARMUP:-1}" \
      --threads "$threads" --constraint "$c" --json)
    echo "$i $c $out" >>"$results"
    echo "$i $c $out" >&2
    last=$out
  done
done
"$py" - "$a" "$b" "$results" <<'PY'
import json, statistics, sys
a, b = sys.argv[1], sys.argv[2]
runs = {}
for line in open(sys.argv[3]):
    i, c, j = line.split(" ", 2)
    runs.setdefault(int(i), {})[c] = json.loads(j)
ratios, cpu_ratios = [], []
for i in sorted(runs):
    ra, rb = runs[i][a], runs[i][b]
    ratios.append(ra["fused_ms"] / rb["fused_ms"])
    cpu_ratios.append(ra["fused_cpu_ms"] / rb["fused_cpu_ms"])
    print(f"round {i}: {a} {ra['fused_ms']:.1f} ms, {b} {rb['fused_ms']:.1f} ms, ratio {ratios[-1]:.3f}; "
          f"cpu {ra['fused_cpu_ms']:.1f} / {rb['fused_cpu_ms']:.1f} ms, ratio {cpu_ratios[-1]:.3f}; "
          f"peak {ra['fused_peak_mb']:.1f} / {rb['fused_peak_mb']:.1f} MiB; max |fused - unfused| {ra['max_abs_diff']:.2g}")
ma = statistics.median(r[a]["fused_ms"] for r in runs.values())
mb = statistics.median(r[b]["fused_ms"] for r in runs.values())
pa = max(r[a]["fused_peak_mb"] for r in runs.values())
pb = max(r[b]["fused_peak_mb"] for r in runs.values())
t = statistics.median(ratios)
ct = statistics.median(cpu_ratios)
ok = lambda x: "ok" if x else "MISS"
print(f"{a} / {b}: median of per-round wall time ratios {t:.3f}, of cpu time ratios {ct:.3f}, "
      f"ratio of median wall times {ma / mb:.3f} "
      f"({ma:.1f} / {mb:.1f} ms), peak memory {pa / pb:.4f} ({pa:.1f} / {pb:.1f} MiB): "
      f"wall time {ok(t <= 1.05)}, cpu time {ok(ct <= 1.05)}, memory {ok(pa / pb <= 1.01)}")
PY
blas_line "$last"
