#!/usr/bin/env bash
# Encode throughput of safetune's tokenizer.json implementation vs Hugging Face
# `tokenizers` (the Rust library transformers uses, called from python one line at a time)
# on the same ~2 MB of mixed text (English prose, code, numbers, CJK, Cyrillic, accents,
# emoji), encoded line by line by both, with the published tokenizer files.
#
#   scripts/bench_tokenizer.sh [BUILD_DIR] [MODEL...]     MODEL: qwen3 gpt2 llama3 llama2 gemma3
#
# Needs the project's python ($SAFETUNE_PYTHON, else .venv from scripts/setup.sh) and the
# tokenizer files ($SAFETUNE_TOKENIZERS_DIR, else ../shared/data/tokenizers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen3 gpt2)
bin=$build/safetune
ref=$root/tests/reference
py=${SAFETUNE_PYTHON:-$root/.venv/bin/python}
tokenizers_dir=${SAFETUNE_TOKENIZERS_DIR:-$root/../shared/data/tokenizers}
[ -x "$bin" ] || { echo "no $bin: build first" >&2; exit 1; }
[ -x "$py" ] || { echo "no python at $py: run scripts/setup.sh or set SAFETUNE_PYTHON" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" - "$work/text.txt" <<'PY'
import random, sys
rng = random.Random(1234)
words = ("the of and to in is was for that with as on by be at this from it an are which or "
         "model training safety alignment token language data fine tuning gradient loss batch "
         "learning rate optimizer weight layer attention head vector matrix result experiment "
         "people time year way day thing man world life hand part child eye woman place work "
         "week case point government company number group problem fact quickly however "
         "isn't don't we'll they've she'd it's Hello World Internet Python Paris London").split()
cjk = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明"
cyr = "привет мир как дела всё хорошо модель обучение данные безопасность язык слово".split()
acc = "café naïve résumé jalapeño Straße Zürich façade crème brûlée São Paulo Kraków".split()
emo = ["😀", "🎉", "👍🏽", "🚀", "🔥", "✅", "❤️", "👨‍👩‍👧"]
code = ["def f(x):", "    return x ** 2  # square", "for i in range(10):", "\tprint(i, end=' ')",
        "if (a && b) { c = d[i] + 1; }", "    }", "x = {\"key\": [1, 2, 3]}"]
out, size = [], 0
while size < 2_000_000:
    k = rng.random()
    if k < 0.45:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(5, 25)))
        line = line.capitalize() + rng.choice([".", "!", "?", ",", ":"]) + " " + str(rng.randint(0, 10**rng.randint(1, 7)))
    elif k < 0.6:
        line = "".join(rng.choice(cjk) for _ in range(rng.randint(10, 40))) + "。"
    elif k < 0.7:
        line = " ".join(rng.choice(cyr) for _ in range(rng.randint(4, 15))).capitalize() + "."
    elif k < 0.8:
        line = " ".join(rng.choice(acc + words) for _ in range(rng.randint(4, 15)))
    elif k < 0.9:
        line = rng.choice(code)
    else:
        line = " ".join(rng.choice(emo + words) for _ in range(rng.randint(3, 12))) + "   " + "\t" * rng.randint(0, 2)
    out.append(line)
    size += len(line.encode()) + 1
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
echo "text: $(wc -c <"$work/text.txt") bytes, $(wc -l <"$work/text.txt") lines"
printf "%-8s %14s %14s %8s\n" model "safetune MB/s" "reference MB/s" ratio
for m in "${models[@]}"; do
  [ -f "$tokenizers_dir/$m/tokenizer.json.gz" ] || { echo "no $tokenizers_dir/$m/tokenizer.json.gz" >&2; exit 1; }
  mkdir -p "$work/$m"
  gzip -dc "$tokenizers_dir/$m/tokenizer.json.gz" >"$work/$m/tokenizer.json"
  cp "$tokenizers_dir/$m/tokenizer_config.json" "$work/$m/"
  ours=$("$bin" tokenize --model "$work/$m" --bench "$work/text.txt")
  theirs=$("$py" "$ref/tokenize_ref.py" bench "$work/$m" "$work/text.txt")
  "$py" - "$m" "$ours" "$theirs" <<'PY'
import json, sys
m, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
if a["tokens"] != b["tokens"]:
    print(f"note: {m}: token counts differ: safetune {a['tokens']} vs reference {b['tokens']}")
print(f"{m:<8s} {a['mb_per_s']:14.2f} {b['mb_per_s']:14.2f} {a['mb_per_s'] / b['mb_per_s']:7.2f}x")
PY
done
