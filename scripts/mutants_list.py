#!/usr/bin/env python3
"""The list of semantic mutants (tests/mutants.txt), read and checked for scripts/mutants.sh.

The list is blocks of keyed lines, so code of any kind (`||`, `|`, `#`, quotes) fits a value:

    [mutant-id]
    file: src/lofi/...cpp        the file to change
    from: text                   must occur exactly once in the file (the rest of the line, as is)
    to: text                     what replaces it
    tests: regex                 ctest -R regex of the tests that must fail with the mutant

Blank lines and lines starting with '#' between blocks are ignored. A malformed block (a key
missing, repeated or unknown, a line outside a block, an ID used twice) is refused by line number.

    mutants_list.py LIST ROOT           prints each mutant as five NUL-terminated fields
                                        (id, file, from, to, tests) for the runner
    mutants_list.py LIST ROOT --check   also checks that each file exists under ROOT and holds its
                                        `from` text exactly once; prints a line per mutant
"""
import os
import re
import sys

KEYS = ("file", "from", "to", "tests")


class ListError(Exception):
    pass


def parse(path):
    mutants, current, seen = [], None, {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        if line.strip() == "" or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Za-z0-9._-]+)\]\s*", line)
        if header:
            if current is not None:
                finish(current)
            mutant_id = header.group(1)
            if mutant_id in seen:
                raise ListError(f"{where}: mutant [{mutant_id}] is defined twice (first at line {seen[mutant_id]})")
            seen[mutant_id] = number
            current = {"id": mutant_id, "line": number, "where": where}
            mutants.append(current)
            continue
        key, sep, value = line.partition(": ")
        if current is None:
            raise ListError(f"{where}: expected a [mutant-id] line before '{line[:40]}'")
        if not sep or key not in KEYS:
            raise ListError(f"{where}: expected one of {', '.join(k + ': ' for k in KEYS)}in mutant [{current['id']}], "
                            f"found '{line[:40]}'")
        if key in current:
            raise ListError(f"{where}: '{key}' given twice in mutant [{current['id']}]")
        current[key] = value
    if current is not None:
        finish(current)
    return mutants


def finish(mutant):
    missing = [k for k in KEYS if k not in mutant]
    if missing:
        raise ListError(f"{mutant['where']}: mutant [{mutant['id']}] lacks {', '.join(missing)}")
    if mutant["from"] == mutant["to"]:
        raise ListError(f"{mutant['where']}: mutant [{mutant['id']}] changes nothing (from equals to)")


def check(mutants, root):
    bad = 0
    for m in mutants:
        path = os.path.join(root, m["file"])
        if not os.path.isfile(path):
            print(f"{m['where']}: [{m['id']}]: no file {m['file']}")
            bad += 1
            continue
        with open(path, encoding="utf-8") as f:
            count = f.read().count(m["from"])
        if count != 1:
            print(f"{m['where']}: [{m['id']}]: its 'from' text occurs {count} times in {m['file']}, expected once")
            bad += 1
        else:
            print(f"ok {m['id']}")
    return bad


def main(argv):
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--check"):
        sys.exit(__doc__)
    try:
        mutants = parse(argv[1])
    except ListError as e:
        sys.exit(f"mutants: {e}")
    if len(argv) == 4:
        bad = check(mutants, argv[2])
        print(f"mutants: {len(mutants)} in the list, {bad} that cannot be applied")
        sys.exit(1 if bad else 0)
    out = sys.stdout.buffer
    for m in mutants:
        for k in ("id",) + KEYS:
            out.write(m[k].encode("utf-8") + b"\0")


if __name__ == "__main__":
    main(sys.argv)
