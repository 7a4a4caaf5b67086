#!/usr/bin/env bash
# safetune starts with idle OpenMP workers waiting passively (src/cli/runtime_env.cpp):
# libgomp's own report (OMP_DISPLAY_ENV=verbose) must show a spin count of 0 by default,
# the user's OMP_WAIT_POLICY or GOMP_SPINCOUNT when one is exported, and libgomp's
# default with SAFETUNE_OMP_WAIT_POLICY=keep. The re-exec that sets it must hand the
# arguments over unchanged (spaces, a newline, non-ASCII) and keep the exit code.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"

spin() {  # the GOMP_SPINCOUNT libgomp reports for `safetune --version` under env "$@"
  env "$@" OMP_DISPLAY_ENV=verbose "$bin" --version 2>&1 | sed -n "s/^ *GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p"
}
default=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT bash -c "$(declare -f spin); bin='$bin'; spin SAFETUNE_OMP_WAIT_POLICY=keep")
[ -n "$default" ] || { echo "SKIP: the OpenMP runtime is not libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)"; exit 77; }
[ "$default" != 0 ] || fail "libgomp's default spin count is already 0: nothing to check"

got=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT bash -c "$(declare -f spin); bin='$bin'; spin")
[ "$got" = 0 ] || fail "default: spin count $got, expected 0 (passive waiting)"
got=$(spin -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1234)
[ "$got" = 1234 ] || fail "GOMP_SPINCOUNT=1234 not kept: $got"
got=$(spin -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active)
[ "$got" != 0 ] && [ "$got" != "$default" ] || fail "OMP_WAIT_POLICY=active not kept: spin count $got"

# Arguments survive the re-exec byte for byte, and so does the exit code.
out="$work/a dir/with space"$'\n'"and line/ü"
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$bin" init --arch llama --out "$out" --vocab 260 --hidden 16 --layers 1 \
  --heads 2 --kv-heads 1 --intermediate 32 --seed 1 >/dev/null || fail "init with an odd output path"
[ -f "$out/config.json" ] || fail "init did not write to the exact path it was given"
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$bin" train "$work/missing.yaml" >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || fail "exit code through the re-exec: $rc, expected 2"
echo "PASS: passive by default (spin 0, libgomp default $default); user settings kept; argv and exit code intact"
