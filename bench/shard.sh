#!/usr/bin/env bash
# Sharding inside a node (part of `make bench`): per-worker peak memory and step time of nodes of
# 1, 2 and 4 workers in each dist.shard mode, against the unsharded node and against PyTorch's own
# FSDP2 (fully_shard on each decoder layer and the root, Gloo, torchrun) on the same model, global
# batch and data, measured side by side in this run on this CPU. Peak memory is the largest
# worker's resident peak at the last training step (lofi: metrics.jsonl's peak_rss_bytes, before
# the final checkpoint is gathered; FSDP2: ru_maxrss at the end of its timed loop, the largest
# rank's); "held" is what a lofi worker keeps of parameters, gradients and AdamW state between
# steps (metrics.jsonl). fp32 on both sides; then bf16 weights with fp32 masters on both sides.
set -euo pipefail
lofi=$1
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}
here=$(realpath "$(dirname "$0")")
dir=${BENCH_DIR:-/tmp/lofi-bench}/shard
mkdir -p "$dir"
cores=$(nproc)
V=8192 L=8 H=8 D=512 FF=2048 T=128 B=8 S=6 warm=2
$py "$here/make_tokens.py" "$dir/tokens.bin" 2000000 $V
flags="--set model.n_layer=$L --set model.n_head=$H --set model.d_model=$D --set model.d_ff=$FF --set model.vocab_size=$V
       --set model.max_seq_len=$T --set data.seq_len=$T --set train.batch_size=$B --set train.steps=$S --set train.log_every=1
       --set train.warmup_steps=1 --set data.train=$dir/tokens.bin --quiet"
field() {  # field RUN KEY: KEY of the last metrics record of RUN's node 0
  $py -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1]).get(sys.argv[2], 0))" "$1/node-00/metrics.jsonl" "$2"
}

echo
echo "sharding inside a node: OPT-shaped, $L layers, d_model $D, vocabulary $V, global batch $B x $T, fp32, $cores cores"
printf '%-9s %-10s %12s %10s %14s %12s %12s\n' "workers" "dist.shard" "tokens/s" "step ms" "peak (worker)" "held" "vs FSDP2"
# fsdp G PRECISION PARAM_DTYPE: FSDP2 on G torchrun processes; sets ref_rate and ref_peak.
fsdp() {
  local threads=$(( cores / $1 > 0 ? cores / $1 : 1 )) json ref
  json="{\"n_layer\":$L,\"n_head\":$H,\"d_model\":$D,\"d_ff\":$FF,\"vocab_size\":$V,\"seq_len\":$T,\"batch\":$B,\"steps\":$S,\"warmup\":$warm,\"threads\":$threads,\"device\":\"cpu\",\"precision\":\"$2\",\"param_dtype\":\"$3\",\"compile\":false,\"data\":\"$dir/tokens.bin\",\"fsdp\":true}"
  ref=$(cd "$here" && OMP_NUM_THREADS=$threads $py -m torch.distributed.run --standalone --nproc-per-node "$1" train_torch.py "$json" 2> "$dir/fsdp-$1-$3.log" | tail -1)
  ref_rate=$(echo "$ref" | $py -c "import json,sys; print(json.load(sys.stdin)['tokens_per_s'])")
  ref_peak=$(echo "$ref" | $py -c "import json,sys; print(json.load(sys.stdin)['peak_rss_kb'] * 1024)")
}
# lofi_row G MODE LABEL [--set ...]: a lofi node of G workers, its row against the last fsdp call.
lofi_row() {
  local G=$1 mode=$2 label=$3 run rate peak held
  shift 3
  run="$dir/run-$G-$label"
  rm -rf "$run"
  "$lofi" launch --workers "$G" -- train $flags --set run.dir="$run" --set dist.shard=$mode "$@" > "$dir/lofi.log" 2>&1 ||
    { echo "failed: lofi $G workers, $label (see $dir/lofi.log)" >&2; exit 1; }
  rate=$($py "$here/metrics_rate.py" "$run" "$warm")
  peak=$(field "$run" peak_rss_bytes)
  held=$(( $(field "$run" parameter_bytes) + $(field "$run" gradient_bytes) + $(field "$run" optimizer_state_bytes) ))
  awk -v g="$G" -v m="$label" -v r="$rate" -v p="$peak" -v h="$held" -v fr="$ref_rate" -v fp="$ref_peak" -v b="$B" -v t="$T" 'BEGIN {
    printf "%-9d %-10s %12.0f %10.1f %11.0f MB %9.0f MB   speed %.2fx, memory %.2fx\n", g, m, r, 1000 * b * t / r, p / 1e6, h / 1e6, r / fr, fp / p }'
}
fsdp_row() {  # fsdp_row G LABEL
  awk -v g="$1" -v l="$2" -v r="$ref_rate" -v p="$ref_peak" -v b="$B" -v t="$T" 'BEGIN {
    printf "%-9d %-10s %12.0f %10.1f %11.0f MB\n", g, l, r, 1000 * b * t / r, p / 1e6 }'
}
for G in 1 2 4; do
  modes=(none)
  [ "$G" -gt 1 ] && modes=(none optimizer gradients full)
  fsdp "$G" fp32 fp32
  for mode in "${modes[@]}"; do lofi_row "$G" "$mode" "$mode"; done
  fsdp_row "$G" FSDP2
done
# bf16 weights, fp32 masters sharded, bf16 autocast (train.param_dtype = "bf16") against FSDP2's
# MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32), both fully sharded.
for G in 2 4; do
  fsdp "$G" bf16 bf16
  lofi_row "$G" full full-bf16 --set train.precision=bf16 --set train.param_dtype=bf16
  fsdp_row "$G" FSDP2-bf16
done
# glibc keeps freed buffers resident (its mmap threshold grows to the largest freed block), so a
# worker's resident peak hides what sharding frees; with a fixed threshold large blocks are
# returned at once (and faulted in again when reused).
for mode in none full; do
  run="$dir/run-4-$mode-mmap"
  rm -rf "$run"
  MALLOC_MMAP_THRESHOLD_=1048576 "$lofi" launch --workers 4 -- train $flags --set run.dir="$run" --set dist.shard=$mode > "$dir/lofi.log" 2>&1 ||
    { echo "failed: lofi 4 workers, $mode, MALLOC_MMAP_THRESHOLD_ (see $dir/lofi.log)" >&2; exit 1; }
  rate=$($py "$here/metrics_rate.py" "$run" "$warm")
  awk -v m="$mode" -v r="$rate" -v p="$(field "$run" peak_rss_bytes)" -v b="$B" -v t="$T" 'BEGIN {
    printf "%-9d %-10s %12.0f %10.1f %11.0f MB   with MALLOC_MMAP_THRESHOLD_=1048576\n", 4, m, r, 1000 * b * t / r, p / 1e6 }'
done
# The start of a fully sharded node, on a model of 109 M parameters (437 MB in fp32): the largest
# worker's resident peak once the model is built, initialised and sharded, before step 1. lofi
# builds the blocks in pieces (metrics.jsonl's start_peak_rss_bytes, node leader); FSDP2 builds the
# whole model on each rank and then shards it (as above), or, as its docs do for models bigger than
# one process, builds it on the meta device, shards it, and gives each rank's shards memory and values.
SL=8 SD=1024 SFF=4096 ST=32 SB=4
echo
echo "the start of a fully sharded node: OPT-shaped, $SL layers, d_model $SD, d_ff $SFF, vocabulary $V, fp32"
printf '%-9s %-26s %14s
' "workers" "start" "peak (worker)"
for G in 2 4; do
  run="$dir/run-start-$G"
  rm -rf "$run"
  "$lofi" launch --workers "$G" -- train $flags --set model.n_layer=$SL --set model.d_model=$SD --set model.d_ff=$SFF \
    --set model.max_seq_len=$ST --set data.seq_len=$ST --set train.batch_size=$SB --set train.steps=2 --set run.dir="$run" \
    --set dist.shard=full > "$dir/lofi.log" 2>&1 || { echo "failed: lofi start, $G workers (see $dir/lofi.log)" >&2; exit 1; }
  printf '%-9d %-26s %11.0f MB\n' "$G" "lofi, built in pieces" "$(field "$run" start_peak_rss_bytes | awk '{ print $1 / 1e6 }')"
  for meta in false true; do
    threads=$(( cores / G > 0 ? cores / G : 1 ))
    json="{\"n_layer\":$SL,\"n_head\":$H,\"d_model\":$SD,\"d_ff\":$SFF,\"vocab_size\":$V,\"seq_len\":$ST,\"batch\":$SB,\"steps\":2,\"warmup\":1,\"threads\":$threads,\"device\":\"cpu\",\"precision\":\"fp32\",\"compile\":false,\"data\":\"$dir/tokens.bin\",\"fsdp\":true,\"meta_init\":$meta}"
    ref=$(cd "$here" && OMP_NUM_THREADS=$threads $py -m torch.distributed.run --standalone --nproc-per-node "$G" train_torch.py "$json" 2> "$dir/fsdp-start-$G.log" | tail -1)
    label="FSDP2, built whole"
    [ "$meta" = true ] && label="FSDP2, meta-device init"
    printf '%-9d %-26s %11.0f MB\n' "$G" "$label" "$(echo "$ref" | $py -c "import json,sys; print(json.load(sys.stdin)['start_peak_rss_kb'] * 1024 / 1e6)")"
  done
done
echo
echo "speed: lofi tokens/s over FSDP2's; memory: FSDP2's peak over lofi's (above 1: lofi holds less); full-bf16: bf16"
echo "weights and fp32 masters (train.param_dtype = \"bf16\") against FSDP2's MixedPrecisionPolicy. FSDP2 shards every"
echo "layer's and the root's parameters; lofi's \"full\" keeps the embedding and final norm whole, like FSDP2's"
echo "root would between its forward and backward."
