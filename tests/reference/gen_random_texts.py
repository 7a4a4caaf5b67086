#!/usr/bin/env python3
"""Writes random_texts.json: 400 seeded random concatenations of the pieces tokenizers
find tricky (whitespace and newline runs, contractions, accents precomposed and
combining, CJK, Cyrillic, digits and other numbers, emoji with modifiers and ZWJ,
Unicode spaces, special tokens of each family, SentencePiece's ▁).

    python3 tests/reference/gen_random_texts.py > tests/reference/random_texts.json
"""
import json
import random
import sys

rng = random.Random(7)
atoms = [" ", "  ", "\t", "\n", "\r\n", "\r", "'", "'s", "'LL", "'re", "a", "Z", "hello", "World", "é",
         "e\u0301", "ß", "中", "文字", "ら", "한", "Ж", "дом", "0", "12", "3456", "٣", "½", "Ⅻ", "!", "?!",
         "...", "—", "“", "(", ")", "#", "_", "-", "😀", "👍🏽", "👨\u200d👩", "\u00a0", "\u3000", "\u2028",
         "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>",
         "<think>", "\u0301", "\u0915\u093c", "ก", "\u200b", "\u2581", "▁▁", "x\u0323\u0307"]
texts = ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 25))) for _ in range(400)]
json.dump(texts, sys.stdout, ensure_ascii=False)
