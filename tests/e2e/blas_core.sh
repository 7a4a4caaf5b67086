#!/usr/bin/env bash
# safetune chooses OpenBLAS's kernel set at start (src/cli/runtime_env.cpp,
# core/blas_core.h) and reports the one that runs (`bench gemm --json`: blas, blas_core,
# blas_core_source). Checked here on this machine's CPU:
#  - SAFETUNE_BLAS_CORETYPE=keep leaves OpenBLAS to its own detection, and on OpenBLAS
#    0.3.21 that detection runs the very core safetune predicts for this CPU;
#  - by default the core is OpenBLAS's own pick or the one safetune set, and a set one is
#    of a higher instruction-set level than OpenBLAS's (never a change for its own sake);
#  - a user's OPENBLAS_CORETYPE is what runs.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"

gemm() {  # `bench gemm --json` of a tiny size under env "$@"
  env "$@" "$bin" bench gemm --size 64 --iters 1 --json
}
field() { $py -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

kept=$(gemm -u OPENBLAS_CORETYPE SAFETUNE_BLAS_CORETYPE=keep) || fail "bench gemm with SAFETUNE_BLAS_CORETYPE=keep"
lib=$(field "$kept" blas)
[ "$lib" != unknown ] || { echo "SKIP: the BLAS library is not OpenBLAS"; exit 77; }
[ "$(field "$kept" blas_core_source)" = openblas ] || fail "keep: the core was not left to OpenBLAS: $kept"
[ -z "$(field "$kept" blas_coretype)" ] || fail "keep: OPENBLAS_CORETYPE was set: $kept"
own=$(field "$kept" blas_core)
if [ "$lib" = "OpenBLAS 0.3.21" ]; then
  [ "$own" = "$(field "$kept" blas_core_detected)" ] ||
    fail "OpenBLAS 0.3.21 runs $own on this CPU, but safetune predicts $(field "$kept" blas_core_detected)"
fi

auto=$(gemm -u OPENBLAS_CORETYPE -u SAFETUNE_BLAS_CORETYPE) || fail "bench gemm by default"
core=$(field "$auto" blas_core)
case "$(field "$auto" blas_core_source)" in
  openblas)
    [ "$core" = "$own" ] || fail "default: OpenBLAS's own core $own expected, $core runs" ;;
  safetune)
    [ "$core" = "$(field "$auto" blas_coretype)" ] || fail "default: safetune set $(field "$auto" blas_coretype), $core runs"
    [ "$core" != "$own" ] || fail "default: safetune set the core OpenBLAS picks anyway ($own)" ;;
  *) fail "default: unexpected source: $auto" ;;
esac

user=$(gemm -u SAFETUNE_BLAS_CORETYPE OPENBLAS_CORETYPE=Prescott) || fail "bench gemm with OPENBLAS_CORETYPE=Prescott"
[ "$(field "$user" blas_core)" = Prescott ] || fail "OPENBLAS_CORETYPE=Prescott not kept: $user"
[ "$(field "$user" blas_core_source)" = environment ] || fail "OPENBLAS_CORETYPE=Prescott: source $user"
echo "PASS: $lib; OpenBLAS's own core $own; by default $core ($(field "$auto" blas_core_source)); user's kept"
