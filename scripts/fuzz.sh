#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan, no LibTorch) into
# build-fuzz/ and runs each for N executions on its seed corpus tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [-runs N] [-max_total_time S] [-seed N] [-jobs J] [target...]
#
# Targets: safetensors hf_config tokenizer_json records csv yaml_config (default: all), run one
# after another. New inputs the fuzzer finds go to build-fuzz/corpus/<target>/ (the
# checked-in seeds are only read); a crashing input is written to
# build-fuzz/artifacts/<target>/. -seed fixes libFuzzer's random seed (the tests use one,
# so that a CI run is reproducible; 0, the default, draws one). Exits non-zero if any
# target crashed.
# Reproduce a crash: build-fuzz/fuzz_<target> <crash file>
set -euo pipefail
cd "$(dirname "$0")/.."

runs=200000
max_time=0
seed=0
jobs=${JOBS:-2}
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -runs) runs=$2; shift 2 ;;
    -runs=*) runs=${1#-runs=}; shift ;;
    -max_total_time) max_time=$2; shift 2 ;;
    -max_total_time=*) max_time=${1#-max_total_time=}; shift ;;
    -seed) seed=$2; shift 2 ;;
    -seed=*) seed=${1#-seed=}; shift ;;
    -jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("${1#fuzz_}"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(safetensors hf_config tokenizer_json records csv yaml_config)

build=${FUZZ_BUILD_DIR:-build-fuzz}
cxx=${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
if [ -z "$cxx" ]; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S tests/fuzz -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
fi
# The build's own output only when it fails (then it is the message that matters).
if ! out=$(cmake --build "$build" -j "$jobs" -- $(for t in "${targets[@]}"; do echo "fuzz_$t"; done) 2>&1); then
  echo "$out" | grep -E "error|FAILED" | head -20
  echo "fuzz.sh: the fuzz targets do not build (above)" >&2
  exit 2
fi

status=0
printf '%-16s %12s %8s  %s\n' target executions crashes note
for t in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/$t
  work=$build/corpus/$t
  artifacts=$build/artifacts/$t
  log=$build/logs/$t.log
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  rc=0
  "$build/fuzz_$t" -runs="$runs" -max_total_time="$max_time" -seed="$seed" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # libFuzzer stops at the first crash (ASan/UBSan report, uncaught exception, abort,
  # timeout or out-of-memory), so a run finds 0 or 1.
  crashes=0
  note="log: $log"
  if [ "$rc" -ne 0 ]; then
    status=1
    crashes=1
    note="$(grep -m1 -oE 'Test unit written to [^ ]+' "$log" || echo "exit $rc") (log: $log)"
  fi
  printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "$crashes" "$note"
done
exit $status
