#!/usr/bin/env python3
"""Hugging Face `tokenizers` on the texts of a JSONL file, as a user would tokenize a corpus:
encode_batch over every line (Rust, all cores unless RAYON_NUM_THREADS says otherwise), no special
tokens. Prints "seconds MB/s tokens" for bench/tokenize.sh's side-by-side row; the file's reading
and JSON parsing are left out of the time.
    python3 tokenize_hf.py TOKENIZER_DIR TEXT.jsonl
"""
import json
import os
import sys
import time

from tokenizers import Tokenizer


def main():
    tok = Tokenizer.from_file(os.path.join(sys.argv[1], "tokenizer.json"))
    with open(sys.argv[2], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    size = sum(len(t.encode()) for t in texts)
    start = time.perf_counter()
    tokens = 0
    for first in range(0, len(texts), 4096):  # batches, as datasets.map(batched=True) hands them over
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts[first:first + 4096], add_special_tokens=False))
    seconds = time.perf_counter() - start
    print(f"{seconds:.3f} {size / seconds / 1e6:.2f} {tokens}")


if __name__ == "__main__":
    main()
