"""Reference tokenizer.json tokenization with Hugging Face `tokenizers` (the Rust library
transformers uses), on the real published tokenizer files.

  python tokenize_ref.py encode DIR TEXTS.json   one JSON line {"ids": [...], "decoded": "..."} per text
  python tokenize_ref.py bench  DIR FILE         encode FILE line by line, print MB/s as JSON

DIR holds tokenizer.json. Ids are without added special tokens (no BOS), as `safetune
tokenize` prints them; "decoded" is the library's decode of those ids, special tokens kept.
"""
import json
import sys
import time

from tokenizers import Tokenizer


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("encode", "bench"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, model_dir, arg = sys.argv[1:]
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    if mode == "encode":
        texts = json.load(open(arg, encoding="utf-8"))
        out = sys.stdout
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            out.write(json.dumps({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}) + "\n")
        return
    text = open(arg, encoding="utf-8").read()
    lines = text.split("\n")
    for line in lines[:200]:  # warm-up
        tok.encode(line, add_special_tokens=False)
    t0 = time.perf_counter()
    tokens = sum(len(tok.encode(line, add_special_tokens=False).ids) for line in lines)
    sec = time.perf_counter() - t0
    nbytes = len(text.encode("utf-8"))
    print(json.dumps({"bytes": nbytes, "tokens": tokens, "seconds": sec, "mb_per_s": nbytes / 1e6 / sec}))


if __name__ == "__main__":
    main()
