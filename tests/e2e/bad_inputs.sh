#!/usr/bin/env bash
# The catalogue of bad inputs (tests/bad_inputs/cases.txt) through the CLI. For each case:
# exit code 2; stderr is exactly one line, "safetune: error: ...", containing the expected
# text; its output path does not exist afterwards (or, if it existed, is unchanged); and no
# temporary file or directory is left anywhere in the work directory.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cases=$src/tests/bad_inputs/cases.txt
top=$work
mkdir "$top/w" && cd "$top/w"

"$bin" init --arch llama --out good >/dev/null || fail "init"
cp "$src/configs/tiny.yaml" tiny.yaml
"$py" "$src/tests/bad_inputs/make_inputs.py" || fail "make_inputs.py"

# A checksum of a file or of a directory tree ("absent" if there is nothing).
state() {
  if [ -d "$1" ]; then (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum | sha256sum)
  elif [ -e "$1" ]; then sha256sum <"$1"
  else echo absent; fi
}
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }

failed=0 passed=0 skipped=0
while IFS='|' read -r name expect out args; do
  name=$(trim "$name")
  case $name in ''|'#'*) continue;; esac
  expect=$(trim "$expect"); out=$(trim "$out"); args=$(trim "$args")
  if [[ $name == out_readonly* ]] && [ -w readonly ]; then
    echo "SKIP $name: readonly/ is writable anyway (running as root?)"; skipped=$((skipped + 1)); continue
  fi
  before=absent
  [ "$out" != - ] && before=$(state "$out")
  eval "argv=($args)"
  "$bin" "${argv[@]}" >"$top/stdout" 2>"$top/stderr"
  rc=$?
  lines=$(wc -l <"$top/stderr")
  why=""
  if [ $rc -ne 2 ]; then why="exit $rc, expected 2"
  elif [ "$lines" -ne 1 ]; then why="$lines lines on stderr, expected 1"
  elif ! head -1 "$top/stderr" | grep -q '^safetune: error: '; then why="the line does not start with 'safetune: error: '"
  elif ! grep -qF -- "$expect" "$top/stderr"; then why="message lacks '$expect'"
  elif [ "$out" != - ] && [ "$(state "$out")" != "$before" ]; then why="$out was written or changed"
  else
    leftover=$(find "$top" \( -name '*.tmp*' -o -name '.tmp-*' -o -name '*.old*' \) -print | head -3)
    [ -n "$leftover" ] && why="left temporaries: $leftover"
  fi
  if [ -n "$why" ]; then
    echo "FAIL $name: $why"; sed 's/^/    /' "$top/stderr" | head -5; failed=$((failed + 1))
  else
    echo "PASS $name: $(cat "$top/stderr")"; passed=$((passed + 1))
  fi
done <"$cases"

echo "bad inputs: $passed passed, $failed failed, $skipped skipped"
[ $((passed + failed + skipped)) -ge 25 ] || { echo "FAIL: the catalogue has fewer than 25 cases"; exit 1; }
[ $failed -eq 0 ]
