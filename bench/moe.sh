#!/usr/bin/env bash
# Mixture-of-experts benchmark (part of `make bench`): small Qwen3-MoE and gpt-oss shapes (8 experts,
# 2 a token), full fine-tuning, lofi against transformers' Qwen3MoeForCausalLM and GptOssForCausalLM
# trained as their users train them (bench/train_hf.py), on the CPU: tokens/s after warm-up and peak
# resident memory, measured side by side in this run. lofi and transformers run alternately
# BENCH_REPEATS times (default 3); the medians are compared, peak memory is the largest of the runs.
set -euo pipefail
lofi=$1
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}
here=$(dirname "$0")
dir=${BENCH_DIR:-/tmp/lofi-bench}/moe
mkdir -p "$dir"
cores=$(nproc)
V=8192 L=4 H=4 KV=2 D=256 FF=512 E=8 K=2 EFF=256 T=128 B=8 S=8 warm=2
$py "$here/make_tokens.py" "$dir/tokens.bin" 1000000 $V
source "$here/stats.sh"
repeats=${BENCH_REPEATS:-3}

# compare TITLE "LOFI_SETTINGS..." HF_JSON_FIELDS: both trained REPEATS times, one table row.
compare() {
  local title=$1 settings=$2 fields=$3 krs="" kms="" hrs="" hms="" out kr km hr hm
  for ((i = 0; i < repeats; i++)); do
    rm -rf "$dir/run"
    # shellcheck disable=SC2086  # SETTINGS is a list of --set options
    /usr/bin/time -f "%M" -o "$dir/time.txt" "$lofi" train --quiet $settings \
      --set model.n_layer=$L --set model.n_head=$H --set model.n_kv_head=$KV --set model.d_model=$D \
      --set model.num_experts=$E --set model.experts_per_token=$K --set model.vocab_size=$V \
      --set model.tie_word_embeddings=false --set model.max_seq_len=$T --set data.seq_len=$T \
      --set train.batch_size=$B --set train.steps=$S --set train.log_every=1 --set train.warmup_steps=1 \
      --set train.threads=$cores --set data.train="$dir/tokens.bin" --set run.dir="$dir/run" > "$dir/out.log" 2>&1 ||
      { echo "failed: lofi (see $dir/out.log)" >&2; exit 1; }
    kms+=" $(cat "$dir/time.txt")" krs+=" $($py "$here/metrics_rate.py" "$dir/run" $warm)"
    out=$($py "$here/train_hf.py" "{$fields,\"n_layer\":$L,\"n_head\":$H,\"n_kv_head\":$KV,\"d_model\":$D,
      \"num_experts\":$E,\"experts_per_token\":$K,\"vocab_size\":$V,\"seq_len\":$T,\"batch\":$B,\"steps\":$S,
      \"warmup\":$warm,\"threads\":$cores,\"device\":\"cpu\",\"precision\":\"fp32\",\"tie_word_embeddings\":false,
      \"data\":\"$dir/tokens.bin\"}" 2>/dev/null | tail -1)
    hrs+=" $($py -c "import json,sys; print(json.loads(sys.argv[1])['tokens_per_s'])" "$out")"
    hms+=" $($py -c "import json,sys; print(json.loads(sys.argv[1])['peak_rss_kb'])" "$out")"
  done
  kr=$(median <<< "$krs") km=$(largest <<< "$kms") hr=$(median <<< "$hrs") hm=$(largest <<< "$hms")
  awk -v t="$title" -v kr="$kr" -v hr="$hr" -v km="$km" -v hm="$hm" 'BEGIN {
    printf "%-52s %12.0f %14.0f %7.2fx %10.0f %10.0f %7.2fx  (tokens/s >= transformers: %s; memory <= transformers: %s)\n",
      "  " t, kr, hr, kr / hr, km / 1024, hm / 1024, hm / km, (kr >= hr ? "met" : "MISSED"), (km <= hm ? "met" : "MISSED") }'
}

echo
printf '%-52s %12s %14s %8s %10s %10s %8s\n' "MoE full fine-tune, $L x $D, $E experts top-$K, fp32 ($cores threads, median of $repeats)" \
  "lofi tok/s" "transformers" "ratio" "lofi MB" "HF MB" "mem"
compare "Qwen3-MoE (width $EFF, dense $FF)" \
  "--set model.arch=qwen3_moe --set model.qk_norm=true --set model.d_ff=$FF --set model.moe_d_ff=$EFF --set model.activation=silu" \
  "\"arch\":\"qwen3_moe\",\"d_ff\":$FF,\"moe_d_ff\":$EFF"
# gpt-oss: sinks, every other layer over a window of 64 of the 128 tokens, clamped experts with biases.
compare "gpt-oss (width $EFF, window 64, sinks)" \
  "--set model.arch=gpt_oss --set model.d_ff=$EFF --set model.head_dim=64 --set model.attention_sinks=true
   --set model.attention_bias=true --set model.attention_out_bias=true --set model.swiglu_limit=7 --set model.norm_topk_prob=true
   --set model.sliding_window=64 --set model.sliding_window_pattern=2 --set model.activation=silu" \
  "\"arch\":\"gpt_oss\",\"d_ff\":$EFF,\"head_dim\":64,\"sliding_window\":64"
echo "mem: transformers' peak / lofi's (> 1: lofi holds less). Peak resident memory of the whole process, from /usr/bin/time."
