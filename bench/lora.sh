#!/usr/bin/env bash
# LoRA benchmark (part of `make bench`): a small Llama shape with rank-16 adapters on every linear
# layer of its blocks, lofi against PEFT + transformers (bench/train_hf.py with lora_rank), the
# frozen base in fp32 and in bf16, on the CPU: tokens/s after warm-up and peak resident memory,
# measured side by side in this run, beside lofi's full fine-tune of the same model. Each base runs
# lofi and PEFT alternately BENCH_REPEATS times (default 3) and compares the medians: one run
# varies by 10% from run to run on a shared machine, enough to flip a verdict. Peak memory is the
# largest of the runs.
set -euo pipefail
lofi=$1
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}
here=$(dirname "$0")
dir=${BENCH_DIR:-/tmp/lofi-bench}/lora
mkdir -p "$dir"
cores=$(nproc)
V=8192 L=8 H=8 KV=4 D=512 FF=1408 T=256 B=8 S=8 R=16 warm=2
$py "$here/make_tokens.py" "$dir/tokens.bin" 1000000 $V
peak() {  # peak CMD... -> peak resident KB
  /usr/bin/time -f "%M" -o "$dir/time.txt" "$@" > "$dir/out.log" 2>&1 || { echo "failed: $* (see $dir/out.log)" >&2; exit 1; }
  cat "$dir/time.txt"
}
lofi_run() {  # lofi_run RUN_DIR EXTRA... -> peak KB; tokens/s via metrics_rate.py
  rm -rf "$1"
  local run=$1
  shift
  peak "$lofi" train --quiet --set model.arch=llama --set model.n_layer=$L --set model.n_head=$H --set model.n_kv_head=$KV \
    --set model.d_model=$D --set model.d_ff=$FF --set model.vocab_size=$V --set model.activation=silu \
    --set model.max_seq_len=$T --set data.seq_len=$T --set train.batch_size=$B --set train.steps=$S --set train.log_every=1 \
    --set train.warmup_steps=1 --set train.threads=$cores --set data.train="$dir/tokens.bin" --set run.dir="$run" "$@"
}
hf_run() {  # hf_run BASE_DTYPE -> the JSON line
  $py "$here/train_hf.py" "{\"arch\":\"llama\",\"n_layer\":$L,\"n_head\":$H,\"n_kv_head\":$KV,\"d_model\":$D,\"d_ff\":$FF,
    \"vocab_size\":$V,\"seq_len\":$T,\"batch\":$B,\"steps\":$S,\"warmup\":$warm,\"threads\":$cores,\"device\":\"cpu\",
    \"precision\":\"fp32\",\"data\":\"$dir/tokens.bin\",\"lora_rank\":$R,\"lora_alpha\":$((2 * R)),\"base_dtype\":\"$1\"}" 2>/dev/null | tail -1
}
field() { $py -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
source "$here/stats.sh"
repeats=${BENCH_REPEATS:-3}

echo
printf '%-46s %12s %12s %8s %10s %10s %8s\n' "LoRA r=$R all-linear, Llama $L x $D ($cores threads, median of $repeats)" "lofi tok/s" "PEFT tok/s" "ratio" "lofi MB" "PEFT MB" "mem"
# Without AVX-512, PyTorch's bf16 matrix products run a reference loop (lofi computes its products
# in fp32 there: kernels/fp32_products.h); PEFT's bf16 row would take minutes a step, so it is left
# out on such a CPU, said in the table.
peft_bf16=$(grep -qw avx512bw /proc/cpuinfo && echo yes || echo no)
for base in fp32 bf16; do
  krs="" kms="" hrs="" hms=""
  for ((i = 0; i < repeats; i++)); do
    kms+=" $(lofi_run "$dir/run-$base" --set lora.rank=$R --set lora.alpha=$((2 * R)) --set model.dtype=$base)"
    krs+=" $($py "$here/metrics_rate.py" "$dir/run-$base" $warm)"
    [ "$base" = bf16 ] && [ "$peft_bf16" = no ] && continue
    out=$(hf_run $base)
    hrs+=" $(field "$out" tokens_per_s)" hms+=" $(field "$out" peak_rss_kb)"
  done
  kr=$(median <<< "$krs") km=$(largest <<< "$kms")
  if [ -z "$hrs" ]; then
    printf '%-46s %12.0f %12s %8s %10.0f %10s %8s  (PEFT not run: no AVX-512, its bf16 products run PyTorch'"'"'s reference loop)\n' \
      "  base $base" "$kr" "-" "-" "$((km / 1024))" "-" "-"
    continue
  fi
  hr=$(median <<< "$hrs") hm=$(largest <<< "$hms")
  awk -v b="$base" -v kr="$kr" -v hr="$hr" -v km="$km" -v hm="$hm" 'BEGIN {
    printf "%-46s %12.0f %12.0f %7.2fx %10.0f %10.0f %7.2fx  (tokens/s >= PEFT: %s; memory <= PEFT: %s)\n",
      "  base " b, kr, hr, kr / hr, km / 1024, hm / 1024, hm / km, (kr >= hr ? "met" : "MISSED"), (km <= hm ? "met" : "MISSED") }'
done
fm=$(lofi_run "$dir/run-full")
fr=$($py "$here/metrics_rate.py" "$dir/run-full" $warm)
awk -v fr="$fr" -v fm="$fm" 'BEGIN { printf "%-46s %12.0f %12s %8s %10.0f\n", "  lofi full fine-tune, for scale", fr, "", "", fm / 1024 }'
echo "mem: PEFT's peak / lofi's (> 1: lofi holds less). Peak resident memory of the whole process, from /usr/bin/time."
