#!/usr/bin/env bash
# `safetune demo --quick` end to end: results.json's fields and ranges (the sentiment
# accuracy recomputed in Python from the recorded answers), a second run served from the
# stage cache, report.html self-contained, and rendered by headless Chromium: the
# screenshot is not blank and the console is clean. Without Chromium everything else is
# checked and the test ends as skipped (77).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
[ -x "$py" ] || { echo "SKIP: $py not found"; exit 77; }

t0=$(date +%s)
"$bin" demo --quick --out "$work/demo" >"$work/run1.out" 2>"$work/run1.err" || {
  tail -30 "$work/run1.err"; fail "demo --quick exited $?"; }
t1=$(date +%s)
echo "first run: $((t1 - t0)) s"
cat "$work/run1.out"
grep -q "reproduced" "$work/run1.out" || fail "no claims printed"

"$py" - "$work/demo" <<'PY' || fail "results.json checks"
import json, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "results.json")))
methods = {m["method"]: m for m in r["methods"]}
for need in ["base (probe)", "aligned", "none", "kl_full", "pact"]:
    assert need in methods, f"missing row {need}: {list(methods)}"
for name, m in methods.items():
    for k in ["refusal_rate", "attack_success_rate", "utility"]:
        assert 0.0 <= m[k] <= 1.0, (name, k, m[k])
    assert abs(m["refusal_rate"] + m["attack_success_rate"] - 1.0) < 1e-9, name
    assert m["train_seconds"] > 0, name
    assert m["cached"] is False, name
    steps = [p[0] for p in m["loss_curve"]]
    assert len(steps) >= 3 and steps == sorted(steps), (name, steps[:5])
assert r["all_cached"] is False
assert r["settings"]["quick"] is True
toks = r["safety_tokens"]
assert len(toks) > 0
for t in toks:
    assert 0 <= t["id"] < r["settings"]["vocab_size"] and isinstance(t["piece"], str)
assert any(t["weight"] > 0 for t in toks)
g = r["gate_by_position"]
for k in ["before", "after"]:
    ts, ms = g[k]["t"], g[k]["mean"]
    assert len(ts) >= 4 and ts == list(range(len(ts))), ts
    assert all(0.0 <= x <= 1.0 for x in ms), ms

# Every evaluation stage's numbers, recomputed from its per-item records.
stages = {s["name"]: s for s in r["stages"]}
rows = {"probe": "base (probe)", "aligned": "aligned"}
for name, s in stages.items():
    if not name.startswith("eval-"):
        continue
    ev = json.load(open(os.path.join(s["dir"], "results.json")))
    h, u = ev["harmful_heldout"], ev["sentiment_test"]
    refused = sum(1 for it in h["items"] if it["refused"]) / len(h["items"])
    correct = sum(1 for it in u["items"] if it["response"].strip() == it["label"].strip()) / len(u["items"])
    row = methods[rows.get(name[5:], name[len("eval-finetune-"):])]
    assert abs(row["refusal_rate"] - refused) < 1e-9, (name, row["refusal_rate"], refused)
    assert abs(row["utility"] - correct) < 1e-9, (name, row["utility"], correct)
    assert len(h["items"]) == r["settings"]["sizes"]["harmful_test"]
print("results.json ok")
PY

# Second run: everything cached, fast, the same numbers.
t2=$(date +%s)
"$bin" demo --quick --out "$work/demo" >"$work/run2.out" 2>"$work/run2.err" || fail "second run exited $?"
t3=$(date +%s)
echo "second run: $((t3 - t2)) s"
grep -q "all stages cached" "$work/run2.out" || { cat "$work/run2.out"; fail "second run did not hit the cache"; }
[ $((t3 - t2)) -le 30 ] || fail "cached run took $((t3 - t2)) s"
grep -qE "^stage +[^ ]+ +built " "$work/run2.err" && fail "a stage was rebuilt on the second run"
"$py" - "$work" <<'PY' || fail "second run's numbers differ"
import json, sys
a = json.load(open(sys.argv[1] + "/demo/results.json"))
assert a["all_cached"] is True
PY
# The table and the claims (not the training log lines nor the final timing line).
table() { grep -vE '^\[20[0-9][0-9]-| in |^$' "$1" | sed 's/ (cached)//'; }
diff <(table "$work/run1.out") <(table "$work/run2.out") ||
  fail "the table differs between the runs"

# The report: self-contained.
html="$work/demo/report.html"
[ -s "$html" ] || fail "no report.html"
grep -qi "<script" "$html" && fail "report has a script"
grep -oE "(src|href)=\"[^\"]*\"" "$html" | grep -q . && fail "report references an external resource"
[ "$(grep -c "<svg" "$html")" -ge 5 ] || fail "expected at least 5 charts"

chrome=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chrome" ] || { echo "SKIP: chromium not installed (report not rendered)"; exit 77; }
timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0 \
  --user-data-dir="$work/profile" --screenshot="$work/shot.png" --window-size=1200,1800 \
  "file://$html" >"$work/chrome.out" 2>"$work/chrome.err" || { tail "$work/chrome.err"; fail "chromium exited $?"; }
[ -s "$work/shot.png" ] || fail "no screenshot"
if grep -E "CONSOLE|Uncaught|ERR_FILE|ERR_NAME|net::ERR" "$work/chrome.err"; then fail "console not clean"; fi
"$py" - "$work/shot.png" <<'PY' || fail "screenshot check"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
dark = 0
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    dark += sum(1 for x in range(0, stride, bpp) if min(line[x], line[x + 1], line[x + 2]) < 200)
    prev = line
share = dark / (w * h)
print(f"screenshot {w}x{h}: {100 * share:.1f}% non-white pixels")
assert share > 0.01, "screenshot is blank"
PY
echo "PASS"
