#!/usr/bin/env bash
# Peak memory of loading a 1.2B-parameter Hugging Face directory (bf16 shards) into the fp32 model:
# lofi (bench/hf_load_memory_bench.cpp: family::make_lm, as train and eval load model.init) beside
# transformers' from_pretrained (hf_load_transformers.py), each a process of its own under
# /usr/bin/time, against the checkpoint's size and the fp32 model's.
# usage: bench/hf_load_memory.sh BUILD PYTHON DIR
set -euo pipefail
build=$1 py=$2 dir=$3
here=$(dirname "$0")
model="$dir/llama-1b-bf16"
cmake --build "$build" --target lofi_bench_hf_load > /dev/null
echo
echo "hf load memory: $model (Llama 3.2 1B's shape, random bf16 weights; made once)"
"$build/lofi_bench_hf_load" make "$model"
ckpt=$(du -cb "$model"/*.safetensors | tail -1 | cut -f1)
measure() {  # CMD... -> "its stdout" "peak_kb"
  local log out
  log=$(mktemp)
  out=$(/usr/bin/time -f "%M" -o "$log" "$@") || { echo "bench: failed: $*" >&2; rm -f "$log"; exit 1; }
  echo "$out $(tail -1 "$log")"
  rm -f "$log"
}
read -r ls lp _ lk < <(measure "$build/lofi_bench_hf_load" load "$model")
read -r ts tp tk < <(TQDM_DISABLE=1 measure "$py" "$here/hf_load_transformers.py" "$model")
awk -v c="$ckpt" -v ls="$ls" -v lp="$lp" -v lk="$lk" -v ts="$ts" -v tp="$tp" -v tk="$tk" 'BEGIN {
  m = lp * 4
  printf "  checkpoint %.2f GB (bf16), model %.2f GB (%.3fB fp32 parameters)\n", c / 1e9, m / 1e9, lp / 1e9
  printf "  %-34s %8s %10s %14s %18s\n", "", "time", "peak", "peak / model", "peak / (model + ckpt)"
  printf "  %-34s %7.2fs %7.2f GB %13.2fx %17.2fx\n", "lofi (family::make_lm)", ls, lk * 1024 / 1e9, lk * 1024 / m, lk * 1024 / (m + c)
  printf "  %-34s %7.2fs %7.2f GB %13.2fx %17.2fx\n", "transformers from_pretrained fp32", ts, tk * 1024 / 1e9, tk * 1024 / m, tk * 1024 / (m + c)
  printf "  lofi peak / transformers peak: %.2fx; one copy held (peak < model + checkpoint): %s\n", lk / tk, (lk * 1024 < m + c ? "met" : "MISSED")
  if (tp != lp) print "  parameter counts differ: lofi " lp ", transformers " tp
}'
