# Sourced by every tests/e2e/*.sh: where the sources and the binary are (ctest sets
# SAFETUNE_SOURCE_DIR and SAFETUNE_BIN), the project's python with the reference libraries
# (torch, transformers, peft, tokenizers: $SAFETUNE_PYTHON, else the .venv that
# scripts/setup.sh makes), a scratch directory removed on exit (kept with KEEP_WORK=1, for
# a look after a failure; made writable first, as a test may leave read-only files there),
# and fail().
here=$(cd "$(dirname "$0")" && pwd)
src=${SAFETUNE_SOURCE_DIR:-$here/../..}
bin=${SAFETUNE_BIN:-$src/build/safetune}
py=${SAFETUNE_PYTHON:-$src/.venv/bin/python}
if ! [ -x "$py" ]; then
  echo "FAIL: no python at $py (the project's virtual environment: run scripts/setup.sh," \
    "which creates $src/.venv, or set SAFETUNE_PYTHON)"
  exit 1
fi
work=$(mktemp -d)
remove_work() {
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; return; fi
  chmod -R u+w "$work" 2>/dev/null
  rm -rf "$work"
}
trap remove_work EXIT
fail() { echo "FAIL: $*"; exit 1; }
# need_py_modules MODULE...: fails (naming them) unless the python imports every module.
need_py_modules() {
  local m
  for m in "$@"; do
    "$py" -c "import $m" 2>/dev/null || fail "$py cannot import $m (the environment of scripts/requirements.txt)"
  done
}
# The published tokenizer files (gzip'd tokenizer.json + tokenizer_config.json per family),
# next to the repository unless $SAFETUNE_TOKENIZERS_DIR says otherwise.
tokenizers_dir=${SAFETUNE_TOKENIZERS_DIR:-$src/../shared/data/tokenizers}
# init_small NAME SEED [flags...]: a tiny random Llama (vocab 300, hidden 32, 2 layers, GQA
# 4/2) at $work/NAME, as the unit tests' tiny model.
init_small() {
  "$bin" init --arch llama --out "$work/$1" --vocab 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
    --intermediate 64 --seed "$2" "${@:3}" >/dev/null || fail "init $1"
}
