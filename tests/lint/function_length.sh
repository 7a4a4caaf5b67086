#!/usr/bin/env bash
# No function body over 80 lines in src/, data tables aside: a function that long does
# several things, and each should have a name. Bodies are found by matching braces after
# comments, strings and character literals are blanked; a class or namespace body is
# looked into, not counted. The data tables, listed below by file and first line, are
# exempt: they are one entry per line, not steps.
set -uo pipefail
src=${SAFETUNE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 1
python3 - <<'PY'
import glob, re, sys

LIMIT = 80
TABLES = {  # file: the opening line of a data table
    "src/train/config.cpp": "const std::vector<Field>& fields() {",            # every config key
    "src/demo/settings.cpp": "json default_settings_v2(bool quick) {",          # the demo's settings
    "src/demo/settings_v3.cpp": "json default_settings_v3(json s, bool quick) {",
    "src/io/model_family.cpp": "std::deque<FamilyTraits> make_table() {",       # one row per family
}
SKIP = {"src/text/unicode_tables.cpp"}  # generated tables (scripts/gen_unicode_tables.py)

def blank(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])*'", "''", line)
    return re.sub(r"//.*", "", line)

bad = 0
files = sorted(glob.glob("src/**/*.cpp", recursive=True) + glob.glob("src/**/*.cu", recursive=True))
for path in files:
    if path in SKIP:
        continue
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    stack = []  # (kind, first line index)
    in_comment = False
    for i, raw in enumerate(lines):
        line = raw
        if in_comment:
            if "*/" not in line:
                continue
            line, in_comment = line.split("*/", 1)[1], False
        line = re.sub(r"/\*.*?\*/", "", line)
        if "/*" in line:
            line, in_comment = line.split("/*", 1)[0], True
        for ch in blank(line):
            if ch == "{":
                if re.match(r'\s*(namespace\b|extern "C")', raw):
                    kind = "scope"
                elif re.match(r"\s*(class|struct)\b", raw) and not re.search(r"\)\s*(const)?\s*\{", raw):
                    kind = "scope"
                else:
                    kind = "body"
                stack.append((kind, i))
            elif ch == "}" and stack:
                kind, start = stack.pop()
                if kind != "body" or any(k != "scope" for k, _ in stack):
                    continue
                n = i - start + 1
                if n > LIMIT and TABLES.get(path) != lines[start].strip():
                    print(f"FAIL: {path}:{start + 1}: {n} lines: {lines[start].strip()[:80]}")
                    bad = 1
print("PASS: no function body over %d lines outside the data tables" % LIMIT if not bad else "")
sys.exit(bad)
PY
