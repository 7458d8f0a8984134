#!/usr/bin/env bash
# make bench: side-by-side measurements, printed as one table of ratios. Never run by CI.
#   merge: `lofi average` against the usual PyTorch merge (load all, average, save) on the same
#          inputs, 2 / 4 / 8 checkpoints of about 1 GB: wall time, GB/s of input, peak memory.
#   merge methods: `lofi merge` (average, ties) against mergekit-yaml on 4 GPT-2 directories of
#          about 1 GB, fp32 and bf16: wall time and peak memory, beside the page-cache read floor.
#   images: the image loader's images/s at 1 and 2 threads (decode + augmentation).
#   load:  a safetensors file of OPT-1.3B's size (2.6 GB fp16) loaded into the model, against
#          sequential read, memcpy and fp16 -> fp32 conversion bandwidth (bench/load_bench.cpp).
#   shard: nodes of 1, 2 and 4 workers in each dist.shard mode against PyTorch's FSDP2 on the same
#          model: tokens/s, the largest worker's peak memory, what a worker holds (bench/shard.sh).
#   lora:  a small Llama shape with rank-16 adapters on every linear layer: lofi against PEFT +
#          transformers, fp32 and bf16 bases, tokens/s and peak memory (bench/lora.sh).
#   moe:   small Qwen3-MoE and gpt-oss shapes (8 experts, top-2), full fine-tuning: lofi against transformers'
#          Qwen3MoeForCausalLM and GptOssForCausalLM, tokens/s and peak memory (bench/moe.sh).
#   chat:  prepare --chat against transformers' apply_chat_template with assistant masks, and
#          packed against padded rows in training: trained tokens/s (bench/chat.sh).
#   kernels: lofi's fused CPU ops against the same arithmetic in LibTorch's ops, forward and
#          backward (bench/kernels_bench.cpp): the residual add and RMSNorm of a Llama block.
#   hf load memory: a Hugging Face directory of 1.2B parameters (Llama 3.2 1B's shape, bf16, 2
#          shards), and a gpt-oss one of 1.83B with MXFP4 experts, loaded into the fp32 model: time
#          and peak memory beside transformers' from_pretrained (bench/hf_load_memory.sh).
# BENCH_DIR (default /tmp/lofi-bench) holds the generated checkpoints; BENCH_GB sets their size.
set -euo pipefail
build=${1:-build}
lofi=$(realpath "$build/lofi")
dir=${BENCH_DIR:-/tmp/lofi-bench}
gb=${BENCH_GB:-1.0}
# The project environment's PyTorch: the same LibTorch lofi links (scripts/python-env.sh).
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}
here=$(dirname "$0")
threads=$(nproc)

echo "generating 8 checkpoints of ~${gb} GB in $dir (cached between runs)"
$py "$here/make_checkpoints.py" "$dir" 8 "$gb"

measure() {  # measure NAME CMD... -> "seconds peak_kb"
  local log
  log=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$log" "$@" > /dev/null || { echo "bench: failed: $*" >&2; rm -f "$log"; exit 1; }
  cat "$log"
  rm -f "$log"
}

printf '\n%-24s %6s %8s %9s %8s %10s %10s %9s %10s %10s\n' "merge (fp32 inputs)" "inputs" "lofi s" "lofi -nc s" "torch s" "lofi GB/s" "torch GB/s" "speed-up" "(-nc)" "mem ratio"
for n in 2 4 8; do
  st=() pt=()
  for ((i = 0; i < n; i++)); do st+=("$dir/in$i.safetensors"); pt+=("$dir/in$i.pt"); done
  bytes=$(du -cb "${st[@]}" | tail -1 | cut -f1)
  sync
  read -r ls lm < <(measure "$lofi" average "${st[@]}" --out "$dir/out.safetensors" --threads "$threads")
  read -r ns nm < <(measure "$lofi" average "${st[@]}" --out "$dir/out.safetensors" --threads "$threads" --no-checksums)
  read -r ts tm < <(THREADS=$threads measure $py "$here/average_torch.py" "$dir/out.pt" "${pt[@]}")
  awk -v n="$n" -v b="$bytes" -v ls="$ls" -v ns="$ns" -v ts="$ts" -v lm="$lm" -v tm="$tm" 'BEGIN {
    printf "%-24s %6d %8.2f %9.2f %8.2f %10.2f %10.2f %8.2fx %9.2fx %9.1fx   peak: lofi %.2f GB, torch %.2f GB\n",
      "average", n, ls, ns, ts, b / ls / 1e9, b / ts / 1e9, ts / ls, ts / ns, tm / lm, lm / 1e6, tm / 1e6
    print "    speed-up >= 5x: " (ts / ls >= 5 ? "met" : "MISSED") ", memory bounded: " (lm < 1e6 ? "met" : "MISSED") }'
  rm -f "$dir/out.safetensors" "$dir/out.pt"
done
echo "-nc: --no-checksums (no XXH3 provenance pass). lofi times include the fsync of its output; torch.save does not sync."
echo "target: bounded memory (lofi peak ~ a few tensors) and >= 5x the PyTorch merge's speed"

bash "$here/merge_mergekit.sh" "$lofi" "$py" "$dir"

echo
echo "image loader: decode + DeiT augmentation throughput (generated images in $dir/images)"
cmake --build "$build" --target lofi_bench_images > /dev/null
out=$("$build/lofi_bench_images" "$dir/images")
echo "$out"
# The same pipeline in PIL + torchvision, one process on one core, on the same files.
for spec in "jpeg256 224 256px" "png64 32 64px"; do
  read -r sub crop tag <<< "$spec"
  read -r ref ref_cpu < <($py "$here/image_loader_torch.py" "$dir/images/$sub" "$crop")
  ours_cpu=$(echo "$out" | awk -v t="$tag" 'index($0, t) && /1 thread\(s\)/ { print $(NF-4) }')
  awk -v r="$ref" -v rc="$ref_cpu" -v o="$ours_cpu" -v t="$tag" 'BEGIN {
    printf "%-22s PIL + torchvision, 1 core: %8.0f images/s, %8.0f images per CPU second; lofi / torchvision per CPU second: %.2fx\n", t, r, rc, o / rc }'
done
# Beside it, what the model consumes: the demo ViT's training images/s on all cores (32px crops of
# the 64px PNGs), so the loader's images per CPU second above can be read as its share of a core.
vit_run="$dir/vit-rate"
rm -rf "$vit_run"
"$lofi" train --quiet --set model.arch=vit --set model.preset=vit_demo_patch4_32 --set data.train="$dir/images/png64" \
  --set run.dir="$vit_run" --set train.steps=20 --set train.batch_size=64 --set train.log_every=1 \
  --set images.mixup=0 --set images.cutmix=0 > /dev/null
vit_rate=$($py "$here/metrics_rate.py" "$vit_run" 5)
echo "$out" | awk -v m="$vit_rate" '/64px/ && /1 thread\(s\)/ { printf "demo ViT training: %.0f images/s on all cores; the loader needs %.1f%% of one core to feed it (target < 25%%: %s)\n", m, 100 * m / $(NF-4), (100 * m / $(NF-4) < 25 ? "met" : "MISSED") }'

echo
cmake --build "$build" --target lofi_load_bench > /dev/null
"$build/lofi_load_bench" "$dir/opt-1.3b-f16.safetensors" F16

bash "$here/hf_load_memory.sh" "$build" "$py" "$dir"

cmake --build "$build" --target lofi_bench_kernels > /dev/null
"$build/lofi_bench_kernels"

bash "$here/train.sh" "$lofi"
bash "$here/shard.sh" "$lofi"
bash "$here/lora.sh" "$lofi"
bash "$here/moe.sh" "$lofi"
bash "$here/chat.sh" "$lofi"
bash "$here/tokenize.sh" "$lofi"
