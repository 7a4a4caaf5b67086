#!/usr/bin/env bash
# Fused vs unfused training objective (CE + lambda x constraint from hidden states),
# forward + backward, at the CPU target shape: N = 4096 tokens, V = 32000, d = 1024,
# K = 50 safety tokens, fp32, lm_head frozen (LoRA). One `safetune bench loss --json` per
# constraint; prints each result and the ratios fused/unfused of time and of peak extra
# memory (LibTorch allocator bytes, see `safetune bench loss --help`): t_ratio from the
# best wall times, c_ratio from the process CPU time of those runs (the steadier one when
# other processes share the cores; THREADS=1 makes it the plain work of each path).
# Targets: memory ratio <= 0.125 (1/8), time ratio <= 1.0. The last line names the BLAS
# kernel set the numbers came from.
#
#   scripts/bench_loss.sh [CONSTRAINTS="pact none kl_full anchor"]
# Environment: SAFETUNE_BIN (default build/safetune), TOKENS, VOCAB, HIDDEN, SUBSET,
# DEVICE (cpu), CHUNK (0: the op's default), ITERS (3), WARMUP (1), THREADS (0: all
# cores; also sets OPENBLAS_NUM_THREADS), EXTRA (more bench flags, e.g. --train-weight).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
bin=${SAFETUNE_BIN:-$src/build/safetune}
constraints=${1:-pact none kl_full anchor}
py=${SAFETUNE_PYTHON:-$src/.venv/bin/python}

. "$here/lib/bench.sh"
threads=${THREADS:-0}
if [ "$threads" != 0 ]; then export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads; fi
printf '%-8s %10s %10s %12s %12s %8s %8s %8s %10s\n' constraint fused_ms unfused_ms fused_mb unfused_mb t_ratio c_ratio \
  m_ratio max_diff
for c in $constraints; do
  out=$("$bin" bench loss --tokens "${TOKENS:-4096}" --vocab "${VOCAB:-32000}" --hidden "${HIDDEN:-1024}" \
    --subset "${SUBSET:-50}" --device "${DEVICE:-cpu}" --chunk "${CHUNK:-0}" --iters "${ITERS:-3}" \
    --warmup "${WARMUP:-1}" --threads "$threads" --constraint "$c" ${EXTRA:-} --json)
  echo "$out" >&2
  "$py" - "$c" "$out" <<'EOF'
import json, sys
c, r = sys.argv[1], json.loads(sys.argv[2])
t = r["fused_ms"] / r["unfused_ms"]
ct = r["fused_cpu_ms"] / max(r["unfused_cpu_ms"], 1e-9)
m = r["fused_peak_mb"] / max(r["unfused_peak_mb"], 1e-9)
ok = lambda x: "ok" if x else "MISS"
verdict = f"memory {ok(m <= 0.125)}, wall time {ok(t <= 1.0)}, cpu time {ok(ct <= 1.0)}"
print(f'{c:<8} {r["fused_ms"]:10.1f} {r["unfused_ms"]:10.1f} {r["fused_peak_mb"]:12.1f} '
      f'{r["unfused_peak_mb"]:12.1f} {t:8.3f} {ct:8.3f} {m:8.4f} {r["max_abs_diff"]:10.2e}  {verdict}')
EOF
done
blas_line "$out"
