#!/usr/bin/env bash
# Forward throughput of a ~25M-parameter Llama-shaped model (hidden 512, 8 layers, 8 heads,
# MLP 1376, vocab 32000, tied embeddings: 25.3M parameters in the layers, 41.7M in all)
# at batch 8 x 256 tokens, and its model FLOP utilisation: achieved forward FLOP/s over
# `safetune bench gemm` (fp32 2048^3 matmul) on the same machine. The gemm is measured
# before and after the forward and the better figure is kept, so that a busy moment does
# not flatter the ratio. The last line names the BLAS kernel set the numbers came from.
# ARCH=gemma2 (or qwen3, gemma3, ...) gives the same sizes in that family's shape (Gemma 2:
# soft-capping, four norms per layer, GeGLU), for comparing its MFU with Llama's.
#   [ARCH=gemma2] scripts/bench_forward.sh [extra `bench` flags, e.g. --device cuda]
# Uses build/safetune (or $SAFETUNE_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SAFETUNE_BIN:-build/safetune}
gflops_of() { sed -E 's/.*"gflops": ([0-9.]+).*/\1/'; }
. scripts/lib/bench.sh
g1=$("$bin" bench gemm --json --size 2048 "$@")
fwd=$("$bin" bench forward --init-25m --arch "${ARCH:-llama}" --batch 8 --seq 256 --iters 5 --json --gemm-gflops "$(echo "$g1" | gflops_of)" "$@")
g2=$("$bin" bench gemm --json --size 2048 "$@")
echo "bench gemm (before): $g1"
echo "bench forward:       $fwd"
echo "bench gemm (after):  $g2"
awk -v a="$(echo "$g1" | gflops_of)" -v b="$(echo "$g2" | gflops_of)" \
    -v f="$(echo "$fwd" | gflops_of)" -v t="$(echo "$fwd" | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/')" \
    'BEGIN { g = (a > b ? a : b); printf "forward: %.1f tokens/s, %.2f GFLOP/s; gemm peak %.2f GFLOP/s; MFU %.1f%%\n", t, f, g, 100 * f / g }'
blas_line "$fwd"
