#!/usr/bin/env bash
# Tokenizer throughput: `lofi prepare` on a generated corpus (~BENCH_TEXT_MB MB of mixed English,
# accented, CJK and emoji text, JSONL) with 1 thread and with all cores, in MB of text per second.
# Uses the small test tokenizer (400 merges), which makes more, shorter tokens than GPT-2's 50k.
set -euo pipefail
lofi=${1:-build/lofi}
here=$(dirname "$0")
dir=${BENCH_DIR:-/tmp/lofi-bench}
mb=${BENCH_TEXT_MB:-20}
mkdir -p "$dir"
python3 - "$dir/text.jsonl" "$mb" <<'PY'
import json, random, sys
random.seed(1)
words = ("the model node averaged weights fine-tunes without communication pretrained basin loss "
         "déjà vu naïve façade 日本語 中文字符 😀 👍 isn't they'll 42 3.14 2023 lo-fi data-parallel").split()
out, size, target = open(sys.argv[1], "w"), 0, float(sys.argv[2]) * 1e6
while size < target:
    text = " ".join(random.choice(words) for _ in range(random.randint(20, 400)))
    text = text.replace(" 42 ", "\n\n").replace(" lo-fi ", "\t")
    line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
    out.write(line)
    size += len(line.encode())
PY
tok=$here/../tests/fixtures/tokenizer/gpt2
bytes=$(stat -c %s "$dir/text.jsonl")
printf '%-22s %8s %10s %8s %14s\n' "tokenize (prepare)" "seconds" "MB/s" "cpu s" "MB per cpu-s"
for threads in 1 $(nproc); do
  log=$(mktemp)
  /usr/bin/time -f "%e %U %S" -o "$log" \
    "$lofi" prepare --tokenizer "$tok" --out "$dir/tok" --threads "$threads" --quiet "$dir/text.jsonl" > /dev/null
  read -r wall user sys < "$log"
  rm -f "$log"
  awk -v t="$threads" -v w="$wall" -v c="$(echo "$user + $sys" | bc)" -v b="$bytes" \
    'BEGIN { printf "%-22s %8.2f %10.1f %8.2f %14.1f\n", t " thread(s)", w, b / w / 1e6, c, b / c / 1e6 }'
done
echo "times include process start (~0.5 s of LibTorch loading) and the fsync of the output"
rm -f "$dir"/tok.*.bin
