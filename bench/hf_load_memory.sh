#!/usr/bin/env bash
# Peak memory of loading Hugging Face directories into the fp32 model: a 1.2B-parameter Llama (bf16
# shards), and a gpt-oss of 1.83B parameters whose experts are MXFP4 as published (dequantized as
# they load). lofi (bench/hf_load_memory_bench.cpp: family::make_lm, as train and eval load
# model.init) beside transformers' from_pretrained (hf_load_transformers.py; Mxfp4Config(dequantize=True)
# for the second), each a process of its own under /usr/bin/time, against the checkpoint's size and
# the fp32 model's.
# usage: bench/hf_load_memory.sh BUILD PYTHON DIR
set -euo pipefail
build=$1 py=$2 dir=$3
here=$(dirname "$0")
cmake --build "$build" --target lofi_bench_hf_load > /dev/null
measure() {  # CMD... -> "its stdout" "peak_kb"
  local log out
  log=$(mktemp)
  out=$(/usr/bin/time -f "%M" -o "$log" "$@") || { echo "bench: failed: $*" >&2; rm -f "$log"; exit 1; }
  echo "$out $(tail -1 "$log")"
  rm -f "$log"
}
compare() {  # MODEL_DIR WHAT: both loads measured, one table
  local model=$1 what=$2 ckpt ls lp lk ts tp tk
  ckpt=$(du -cb "$model"/*.safetensors | tail -1 | cut -f1)
  read -r ls lp _ lk < <(measure "$build/lofi_bench_hf_load" load "$model")
  read -r ts tp tk < <(TQDM_DISABLE=1 measure "$py" "$here/hf_load_transformers.py" "$model")
  awk -v c="$ckpt" -v what="$what" -v ls="$ls" -v lp="$lp" -v lk="$lk" -v ts="$ts" -v tp="$tp" -v tk="$tk" 'BEGIN {
    m = lp * 4
    printf "  checkpoint %.2f GB (%s), model %.2f GB (%.3fB fp32 parameters)\n", c / 1e9, what, m / 1e9, lp / 1e9
    printf "  %-34s %8s %10s %14s %18s\n", "", "time", "peak", "peak / model", "peak / (model + ckpt)"
    printf "  %-34s %7.2fs %7.2f GB %13.2fx %17.2fx\n", "lofi (family::make_lm)", ls, lk * 1024 / 1e9, lk * 1024 / m, lk * 1024 / (m + c)
    printf "  %-34s %7.2fs %7.2f GB %13.2fx %17.2fx\n", "transformers from_pretrained fp32", ts, tk * 1024 / 1e9, tk * 1024 / m, tk * 1024 / (m + c)
    printf "  lofi peak / transformers peak: %.2fx; one copy held (peak < model + checkpoint): %s\n", lk / tk, (lk * 1024 < m + c ? "met" : "MISSED")
    if (tp != lp) print "  parameter counts differ: lofi " lp ", transformers " tp
  }'
}
echo
echo "hf load memory: $dir/llama-1b-bf16 (Llama 3.2 1B's shape, random bf16 weights; made once)"
"$build/lofi_bench_hf_load" make "$dir/llama-1b-bf16"
compare "$dir/llama-1b-bf16" bf16
echo "hf load memory: $dir/gpt-oss-mxfp4 (2 layers of gpt-oss-20b's shape, random MXFP4 experts; made once)"
"$py" "$here/make_mxfp4_gpt_oss.py" "$dir/gpt-oss-mxfp4"
compare "$dir/gpt-oss-mxfp4" "MXFP4 experts, bf16 rest"
