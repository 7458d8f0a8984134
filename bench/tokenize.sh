#!/usr/bin/env bash
# Tokenizer throughput: `lofi prepare` on a generated corpus (~BENCH_TEXT_MB MB of mixed English,
# accented, CJK and emoji text, JSONL) with 1 thread and with all cores, in MB of text per second,
# beside Hugging Face's `tokenizers` (encode_batch on all cores, bench/tokenize_hf.py) on the same
# texts: the byte-level test tokenizer (400 merges, which makes more, shorter tokens than GPT-2's
# 50k) and the SentencePiece one (Llama 2's layout, tests/fixtures/tokenizer/make_sentencepiece.py).
set -euo pipefail
lofi=${1:-build/lofi}
here=$(dirname "$0")
py=${LOFI_BENCH_PYTHON:-$(bash "$here/../scripts/python-env.sh")/bin/python}
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
bytes=$(stat -c %s "$dir/text.jsonl")
printf '%-32s %8s %10s %8s %14s %12s\n' "tokenize (prepare)" "seconds" "MB/s" "cpu s" "MB per cpu-s" "HF s / lofi s"
for name in gpt2 llama2; do
  tok=$here/../tests/fixtures/tokenizer/$name
  read -r hs hmb htokens < <("$py" "$here/tokenize_hf.py" "$tok" "$dir/text.jsonl")
  for threads in 1 $(nproc); do
    log=$(mktemp)
    /usr/bin/time -f "%e %U %S" -o "$log" \
      "$lofi" prepare --tokenizer "$tok" --out "$dir/tok" --threads "$threads" --quiet "$dir/text.jsonl" > /dev/null
    read -r wall user sys < "$log"
    rm -f "$log"
    awk -v n="$name" -v t="$threads" -v w="$wall" -v c="$(echo "$user + $sys" | bc)" -v b="$bytes" -v h="$hs" \
      'BEGIN { printf "%-32s %8.2f %10.1f %8.2f %14.1f %11.2fx\n", n " lofi, " t " thread(s)", w, b / w / 1e6, c, b / c / 1e6, h / w }'
  done
  awk -v n="$name" -v s="$hs" -v m="$hmb" -v k="$htokens" \
    'BEGIN { printf "%-32s %8.2f %10.1f %8s %14s %12s   (%d tokens)\n", n " HF tokenizers, all cores", s, m, "-", "-", "", k }'
done
echo "lofi's times include process start (~0.5 s of LibTorch loading), reading and parsing the JSONL file (its MB/s are"
echo "of the file) and the fsync of the output; HF's time is encode_batch's alone (its MB/s are of the texts)"
rm -f "$dir"/tok.*.bin
