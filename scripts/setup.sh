#!/usr/bin/env bash
# Installs everything safetune needs on Debian 12 (idempotent). Run as root (or with sudo).
#  - Debian's packages: compilers, CMake/Ninja, the C++ libraries, the test tools;
#  - the project's Python environment .venv (scripts/requirements.txt): the torch wheel,
#    whose LibTorch safetune builds against (a CUDA build; MKL for the CPU's GEMMs), and the
#    libraries the tests use as references (transformers, peft, tokenizers, sentencepiece).
# The CUDA toolkit (nvcc) is the machine's own, at /usr/local/cuda; without it the binary
# is built CPU-only (the kernels need nvcc; the LibTorch is the same).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  clang-14 libclang-rt-14-dev  # the fuzz targets (libFuzzer, sanitizers): built and run by the tests
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev googletest
  libsentencepiece-dev
  libgloo-dev           # gloo's headers, which LibTorch's c10d headers include (the wheel has none)
  iproute2              # ip netns: the two-host data-parallel test (tests/e2e/dist_two_hosts.sh)
  util-linux            # flock(1): scripts/sweep.sh's lock on its output directory
  python3-venv          # the project's .venv when python3 is Debian's
  chromium              # renders the demo's report.html headless in its test
)

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

# The Python environment, remade when scripts/requirements.txt changes (its hash is kept
# beside it). ~5 GB: the torch wheel and its CUDA libraries.
venv=${SAFETUNE_VENV:-.venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: Python environment $venv (scripts/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -c 'import torch; print("setup: torch", torch.__version__, "(CUDA", str(torch.version.cuda) + ")")'
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ -x "$nvcc" ]; then
  echo "setup: $("$nvcc" --version | grep -o 'release [0-9.]*' | sed 's/release/nvcc/')"
else
  echo "setup: no CUDA toolkit (nvcc): the build will be CPU-only"
fi
