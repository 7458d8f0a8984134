#!/usr/bin/env bash
# Chat data benchmark (part of `make bench`), on WordNet's glosses (examples/wordnet-instruct) with
# the Llama 3 chat template of the test fixtures' tokenizer:
#   prepare  lofi prepare --chat against transformers' apply_chat_template with its assistant mask
#            (what TRL's assistant-only loss runs), samples/s, measured side by side;
#   train    packed rows against padded rows (data.packing = false, what a trainer without packing
#            does) on a small Llama shape: trained (assistant) tokens per second of the same samples.
set -euo pipefail
lofi=$1
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
dir=${BENCH_DIR:-/tmp/lofi-bench}/chat
fixtures=$here/../tests/fixtures/chat
mkdir -p "$dir"
cores=$(nproc)
python3 "$here/../examples/wordnet-instruct/make_wordnet_tasks.py" --out "$dir/wordnet" --train 30000 > /dev/null
# The fixture's Llama 3 template with {% generation %} around the assistant's turns, as TRL needs it.
$py -c "import sys; sys.path.insert(0, '$fixtures'); import make_chat_fixtures as m; open('$dir/tagged.jinja', 'w').write(m.LLAMA3_TAGGED)"

start=$(date +%s.%N)
"$lofi" prepare --chat "$dir/wordnet/train.jsonl" --tokenizer "$fixtures/tiny-llama" --out "$dir/chat" --quiet > "$dir/prepare.log"
lofi_s=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
hf=$($py "$here/chat_prepare_hf.py" "$fixtures/tiny-llama" "$dir/tagged.jinja" "$dir/wordnet/train.jsonl" 2>/dev/null | tail -1)
hf_s=$(echo "$(date +%s.%N) - $start" | bc)
hf_loop=$($py -c "import json,sys; print(json.loads(sys.argv[1])['samples_per_s'])" "$hf")
n=$(wc -l < "$dir/wordnet/train.jsonl")
echo
printf '%-52s %14s %14s %8s\n' "chat data: $n WordNet samples, Llama 3 template" "lofi samples/s" "HF samples/s" "ratio"
awk -v n=$n -v s="$lofi_s" -v h="$hf_s" 'BEGIN { printf "%-52s %14.0f %14.0f %7.2fx  (whole commands, start-up included)\n",
  "  prepare --chat vs apply_chat_template + mask", n / s, n / h, h / s }'
awk -v n=$n -v h="$hf_loop" 'BEGIN { printf "%-52s %14s %14.0f  (its loop alone, after importing transformers)\n", "", "", h }'

L=4 D=256 H=4 KV=2 FF=704 T=256 B=16 S=8 warm=2
train() {  # train RUN_DIR PACKING -> trained tokens/s after warm-up
  rm -rf "$1"
  "$lofi" train --quiet --set model.arch=llama --set model.n_layer=$L --set model.n_head=$H --set model.n_kv_head=$KV \
    --set model.d_model=$D --set model.d_ff=$FF --set model.vocab_size=600 --set model.activation=silu \
    --set model.max_seq_len=$T --set data.seq_len=$T --set train.batch_size=$B --set train.steps=$S --set train.log_every=1 \
    --set train.warmup_steps=1 --set train.threads=$cores --set data.train="$dir/chat.train.chat" --set data.packing=$2 \
    --set run.dir="$1" > "$dir/train-$2.log" 2>&1 || { echo "failed: see $dir/train-$2.log" >&2; exit 1; }
  # rows/s from the metrics, times the trained tokens per row of this layout (rows: the start line)
  local rows_per_s rows trained
  rows_per_s=$($py "$here/metrics_rate.py" "$1" $warm | awk -v t=$T '{ print $1 / t }')
  rows=$(grep -o "into [0-9]* rows\|padded to [0-9]* rows" "$dir/train-$2.log" | grep -o "[0-9]*")
  trained=$(grep -o "[0-9]* of them trained" "$dir/prepare.log" | head -1 | grep -o "^[0-9]*")
  awk -v r="$rows_per_s" -v n="$rows" -v t="$trained" 'BEGIN { print r * t / n }'
}
packed=$(train "$dir/run-packed" true)
padded=$(train "$dir/run-padded" false)
printf '%-52s %14s %14s %8s\n' "training, Llama $L x $D, rows of $T ($cores threads)" "packed tok/s" "padded tok/s" "ratio"
awk -v p="$packed" -v q="$padded" 'BEGIN { printf "%-52s %14.0f %14.0f %7.2fx  (assistant tokens trained per second)\n",
  "  packed rows vs one sample per padded row", p, q, p / q }'
