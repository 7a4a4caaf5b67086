#!/usr/bin/env bash
# A build made where nvcc is present must contain the CUDA loss kernels: the binary says so
# (`safetune --version`) and holds device code for every architecture asked for
# (cuobjdump). Also run with SAFETUNE_REQUIRE_CUDA=1 (CI sets it), where a build that found
# no nvcc fails too instead of coming out CPU-only unnoticed.
# Usage: cuda_linked.sh SAFETUNE_BIN NVCC_FOUND(0|1) "80;90" [CUOBJDUMP]
set -euo pipefail
bin=$1 nvcc_found=$2 archs=$3 cuobjdump=${4:-}
version=$("$bin" --version)
echo "$version"
if [ "$nvcc_found" != 1 ]; then
  if [ "${SAFETUNE_REQUIRE_CUDA:-0}" = 1 ]; then
    echo "FAIL: SAFETUNE_REQUIRE_CUDA=1 but the build found no CUDA compiler (nvcc): it is CPU-only"
    exit 1
  fi
  echo "skip: no nvcc at configure time, a CPU-only build is expected"
  exit 77
fi
case "$version" in *"CPU only"*) echo "FAIL: nvcc was found but LibTorch is CPU-only"; exit 1 ;; esac
[ -x "$cuobjdump" ] || { echo "FAIL: no cuobjdump ('$cuobjdump') to list the device code with"; exit 1; }
elf=$("$cuobjdump" --list-elf "$bin" 2>&1 || true)
for a in ${archs//;/ }; do
  [[ "$version" == *"sm_$a"* ]] || { echo "FAIL: --version does not list the kernels for sm_$a"; exit 1; }
  grep -q "sm_$a" <<<"$elf" || { echo "FAIL: no sm_$a device code in $bin (cuobjdump --list-elf)"; echo "$elf" | head; exit 1; }
done
echo "ok: CUDA loss kernels for ${archs//;/ } in $bin"
