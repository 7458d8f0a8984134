#!/usr/bin/env python3
"""Instruction data and accuracy tasks from WordNet's glosses (Debian's wordnet-base package, the
Princeton WordNet 3.0 database in /usr/share/wordnet), for lofi's instruction-tuning walk-through.

Each synset whose first lemma is one plain lower-case word gives a (word, definition) pair: the
gloss up to its first quoted example. Words are split by a hash of the word (not by chance): 90%
for training, the rest held out. Writes into --out:
  train.jsonl         chat samples, half "Define X." -> the definition, half "Which word means: D?"
                      -> the word ({"messages": [user, assistant]}; lofi prepare --chat renders them)
  mc-seen.jsonl       multiple choice over training words: "Which word means: D?" with the word and
                      three other words of the same part of speech ({"context", "choices", "answer"})
  mc-unseen.jsonl     the same over held-out words: what fine-tuning taught beyond its samples
  define-unseen.jsonl short answers over held-out words: the word, by exact match ({"context", "answer"})
Standard library only; the same files for the same arguments on any machine.
    python3 make_wordnet_tasks.py --out data/wordnet [--train 6000] [--tasks 200] [--seed 0]
"""
import argparse
import hashlib
import json
import os
import random
import re
import sys

POS = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}


def read_pairs(wordnet):
    """(word, definition, part of speech) per usable synset, in file order."""
    pairs, seen = [], set()
    for pos in POS:
        path = os.path.join(wordnet, "data." + pos)
        if not os.path.exists(path):
            sys.exit(f"make_wordnet_tasks: {path} is missing: install Debian's wordnet-base (apt-get install wordnet-base) "
                     "or give --wordnet DIR")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # the license header
                    continue
                fields, _, gloss = line.partition(" | ")
                parts = fields.split()
                word = parts[4]
                definition = re.split(r';\s*"', gloss.strip(), maxsplit=1)[0].strip().rstrip(";").strip()
                if not re.fullmatch(r"[a-z]{3,14}", word) or not 3 <= len(definition.split()) <= 20 or word in definition:
                    continue
                if (word, pos) in seen:  # a word's first sense only
                    continue
                seen.add((word, pos))
                pairs.append((word, definition, pos))
    return pairs


def held_out(word):
    return hashlib.sha256(word.encode()).digest()[0] < 26  # about 10%


def question(definition):
    return f"Which word means: {definition}?"


def multiple_choice(items, pool, rng):
    rows = []
    for word, definition, pos in items:
        others = [w for w, _, p in pool if p == pos and w != word]
        choices = rng.sample(others, 3) + [word]
        rng.shuffle(choices)
        rows.append({"context": question(definition) + "\nAnswer:", "choices": [" " + c for c in choices],
                     "answer": choices.index(word)})
    return rows


def write(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet 3.0 database directory")
    parser.add_argument("--train", type=int, default=6000, help="training samples")
    parser.add_argument("--tasks", type=int, default=200, help="items per task")
    parser.add_argument("--seed", type=int, default=0, help="which pairs, distractors and order")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pairs = read_pairs(args.wordnet)
    train_pairs = [p for p in pairs if not held_out(p[0])]
    unseen = [p for p in pairs if held_out(p[0])]
    rng.shuffle(train_pairs)
    rng.shuffle(unseen)
    train_pairs = train_pairs[:args.train]
    samples = []
    for k, (word, definition, pos) in enumerate(train_pairs):
        if k % 2 == 0:
            turn = (f'Define "{word}" ({POS[pos]}).', definition[0].upper() + definition[1:] + ".")
        else:
            turn = (question(definition), word)
        samples.append({"messages": [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]})
    os.makedirs(args.out, exist_ok=True)
    write(os.path.join(args.out, "train.jsonl"), samples)
    write(os.path.join(args.out, "mc-seen.jsonl"), multiple_choice(train_pairs[:args.tasks], train_pairs, rng))
    write(os.path.join(args.out, "mc-unseen.jsonl"), multiple_choice(unseen[:args.tasks], unseen, rng))
    write(os.path.join(args.out, "define-unseen.jsonl"),
          [{"context": question(d) + " Answer with the word alone.\nAnswer:", "answer": " " + w} for w, d, _ in unseen[:args.tasks]])
    print(f"{len(pairs)} (word, definition) pairs from {args.wordnet}: {len(samples)} training samples, "
          f"{min(args.tasks, len(train_pairs))} seen and {min(args.tasks, len(unseen))} unseen task items -> {args.out}")


if __name__ == "__main__":
    main()
