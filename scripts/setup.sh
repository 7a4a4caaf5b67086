#!/usr/bin/env bash
# Installs everything safetune needs on Debian 12 (idempotent). Run as root (or with sudo).
# Ends with libblas pointing at OpenBLAS: the reference BLAS is ~30x slower for fp32 GEMM.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  clang-14 libclang-rt-14-dev  # the fuzz targets (libFuzzer, sanitizers): built and run by the tests
  libtorch-dev libopenblas0-pthread
  nlohmann-json3-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev googletest
  libsentencepiece-dev
  libgloo-dev           # headers of the Gloo that libtorch links: data-parallel training (c10d)
  iproute2              # ip netns: the two-host data-parallel test (tests/e2e/dist_two_hosts.sh)
  util-linux            # flock(1): scripts/sweep.sh's lock on its output directory
  # independent references for the tests: PyTorch and SentencePiece in Debian's python
  python3-torch python3-numpy python3-sentencepiece
  chromium              # renders the demo's report.html headless in its test
)
# Node.js runs the published-tokenizer references (npm packages); most machines here
# already have a recent one on PATH, and Debian's npm package drags in hundreds of others.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# OpenBLAS as the system BLAS (libtorch-dev links libblas.so.3 through alternatives).
arch_dir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
openblas="$arch_dir/openblas-pthread/libblas.so.3"
if [ -e "$openblas" ]; then
  "${sudo_cmd[@]}" update-alternatives --set "libblas.so.3-$(basename "$arch_dir")" "$openblas" >/dev/null 2>&1 || true
fi
current=$(readlink -f "$arch_dir/libblas.so.3" || true)
case "$current" in
  *openblas*) echo "setup: libblas -> $current" ;;
  *) echo "setup: error: libblas.so.3 points at '$current', expected OpenBLAS" >&2; exit 1 ;;
esac
