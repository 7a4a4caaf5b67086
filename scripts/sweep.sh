#!/usr/bin/env bash
# A grid of `safetune train` + `safetune eval` runs, then `safetune summarize`.
#
#   scripts/sweep.sh [-j N] [--out DIR] [--suite SUITE.json] [--eval-args "ARGS"] CONFIG.yaml \
#       objective.constraint=none,kl_full,pact objective.lambda=0.5,1,2 train.seed=1,2,3 \
#       model.path=... data.train=...
#
# Every key=v1,v2,... with a comma is an axis of the grid; a key=value without one is
# passed to every run (to pass a list value, write it in the YAML). Each point trains in
# DIR/<key>=<value>_<key>=<value> (the last part of each dotted key), with
# train.resume=auto, so a killed sweep continues where it stopped: a point whose final
# weights exist is not trained again, and one with results.json is not evaluated again.
# -j N runs N points at a time (default 1; give each run fewer threads with
# train.threads=K). Without --suite the runs are trained but not evaluated. At the end,
# DIR/summary.md holds the summary table (DIR/summary.csv the same as CSV, DIR/report.html
# the table and a utility vs attack-success scatter). A second sweep on the same DIR is
# refused (exit 2) while the first runs.
# Plain bash and the safetune binary (SAFETUNE_BIN, default build/safetune).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SAFETUNE_BIN:-$here/../build/safetune}
jobs=1 out=runs/sweep suite="" eval_args=""

usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit "${1:-2}"; }
die() { echo "sweep: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    -j) jobs=${2:?-j needs a number}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --suite) suite=${2:?--suite needs a file}; shift 2 ;;
    --eval-args) eval_args=${2?}; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1'" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
config=$1; shift
[ -f "$config" ] || die "$config: no such config file"
[ -x "$bin" ] || die "$bin: no safetune binary (build first, or set SAFETUNE_BIN)"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "-j: expected a positive integer, got '$jobs'"
[ -z "$suite" ] || [ -f "$suite" ] || die "--suite $suite: no such file"

axes=() fixed=()
for kv in "$@"; do
  [[ "$kv" == *=* ]] || die "'$kv': expected key=value or key=v1,v2,..."
  key=${kv%%=*}
  [[ "$key" =~ ^[A-Za-z0-9_.]+$ ]] || die "'$kv': the key must be a dotted config name"
  if [[ "${kv#*=}" == *,* ]]; then axes+=("$kv"); else fixed+=("$kv"); fi
done

# The grid: one line per point, "key=value key=value ..." (first axis varies slowest).
points=("")
for axis in "${axes[@]+"${axes[@]}"}"; do
  key=${axis%%=*}
  IFS=, read -r -a values <<<"${axis#*=}"
  next=()
  for p in "${points[@]}"; do
    for v in "${values[@]}"; do next+=("${p:+$p }$key=$v"); done
  done
  points=("${next[@]}")
done

# DIR name of a point: short keys, values with path separators and odd characters folded.
point_name() {
  local name="" kv key value
  for kv in $1; do
    key=${kv%%=*}; key=${key##*.}
    value=$(basename -- "${kv#*=}")
    value=${value//[^A-Za-z0-9._-]/-}
    name+="${name:+_}$key=$value"
  done
  echo "${name:-run}"
}

run_point() {
  local point=$1 dir=$2 log=$2.log
  # shellcheck disable=SC2086 # a point is a list of key=value words
  if [ ! -d "$dir/adapter" ] && [ ! -d "$dir/model" ]; then
    echo "[sweep] train $dir"
    "$bin" train "$config" "${fixed[@]+"${fixed[@]}"}" $point train.output_dir="$dir" train.resume=auto \
      >"$log" 2>&1 || { echo "[sweep] FAILED: train $dir (see $log)" >&2; return 1; }
  else
    echo "[sweep] trained already: $dir"
  fi
  [ -n "$suite" ] || return 0
  if [ -f "$dir/results.json" ]; then echo "[sweep] evaluated already: $dir"; return 0; fi
  # A LoRA run's adapter names its base model (adapter_config.json), as PEFT's do.
  local model_args=(--model "$dir/model")
  [ -d "$dir/adapter" ] && model_args=(--adapter "$dir/adapter")
  echo "[sweep] eval  $dir"
  # shellcheck disable=SC2086 # --eval-args is a list of words
  "$bin" eval "${model_args[@]}" --suite "$suite" --out "$dir/results.json" $eval_args >>"$log" 2>&1 ||
    { echo "[sweep] FAILED: eval $dir (see $log)" >&2; return 1; }
}

mkdir -p "$out"
# One sweep per output directory: a second one started on it (a job queued twice) stops
# here instead of training the same points beside the first; every point's `safetune
# train` locks its own run directory as well. The kernel drops the lock when this script
# and the runs it started have ended, however they end.
exec 9<>"$out/.lock"
flock -n 9 || die "$out is in use by another sweep (pid $(cut -d' ' -f1 "$out/.lock" 2>/dev/null)); wait for it to end, or stop it first"
echo "$$ $(hostname)" >"$out/.lock"
dirs=() failed=0 running=0
for p in "${points[@]}"; do
  dir=$out/$(point_name "$p")
  dirs+=("$dir")
  if [ "$jobs" -eq 1 ]; then
    run_point "$p" "$dir" || failed=1
  else
    if [ "$running" -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
    run_point "$p" "$dir" &
    running=$((running + 1))
  fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
[ "$failed" -eq 0 ] || die "some points failed; rerun the same command to retry them"

"$bin" summarize "${dirs[@]}" --csv --out "$out/summary.csv" >/dev/null
"$bin" summarize "${dirs[@]}" --out "$out/summary.md" --html "$out/report.html"
echo "[sweep] ${#dirs[@]} runs; summary in $out/summary.md, $out/summary.csv and $out/report.html"
