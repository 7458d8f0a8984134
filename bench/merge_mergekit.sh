#!/usr/bin/env bash
# lofi merge against mergekit's own CLI (mergekit-yaml, pinned in scripts/requirements.lock) on the
# same inputs: 4 Hugging Face GPT-2 directories of about BENCH_GB (default 1) GB each and their base,
# in fp32 and bf16, methods average (mergekit: linear) and ties. Wall time and peak RSS of each, and
# beside them the floor: reading every input once from the page cache into memory (dd, 4 MB reads;
# cat to /dev/null would not read at all).
# usage: merge_mergekit.sh LOFI PYTHON DIR
set -euo pipefail
lofi=$1 py=$2 dir=$3
here=$(dirname "$0")
gb=${BENCH_GB:-1.0}
mergekit="$(dirname "$py")/mergekit-yaml"
threads=$(nproc)

measure() {  # measure CMD... -> "seconds peak_kb"
  local log
  log=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$log" "$@" > /dev/null 2>&1 || { echo "bench: failed: $*" >&2; rm -f "$log"; exit 1; }
  cat "$log"
  rm -f "$log"
}

printf '\n%-34s %8s %8s %9s %11s %11s %9s %9s\n' "lofi merge vs mergekit-yaml" "floor s" "lofi s" "mergekit s" "lofi GB" "mergekit GB" "speed-up" "mem ratio"
for dtype in float32 bfloat16; do
  d="$dir/gpt2-$dtype"
  echo "generating a base and 4 fine-tunes of ~${gb} GB ($dtype) in $d (cached between runs)" >&2
  $py "$here/make_gpt2_models.py" "$d" 4 "$gb" "$dtype"
  inputs=("$d/in0" "$d/in1" "$d/in2" "$d/in3")
  files=("${inputs[@]/%//model.safetensors}")
  cat "${files[@]}" "$d/base/model.safetensors" > /dev/null  # into the page cache
  read -r floor _ < <(measure bash -c 'for f; do dd if="$f" of=/dev/null bs=4M status=none; done' _ "${files[@]}")
  for method in average ties; do
    flags=() yaml=""
    if [ "$method" = average ]; then
      yaml="merge_method: linear
dtype: $dtype
models:"
      for m in "${inputs[@]}"; do yaml+=$'\n'"  - model: $m"$'\n'"    parameters: {weight: 1.0}"; done
    else
      flags=(--base "$d/base" --density 0.5)
      yaml="merge_method: ties
dtype: $dtype
base_model: $d/base
models:"
      for m in "${inputs[@]}"; do yaml+=$'\n'"  - model: $m"$'\n'"    parameters: {weight: 1.0, density: 0.5}"; done
    fi
    echo "$yaml" > "$dir/mergekit.yml"
    rm -rf "$dir/out-lofi" "$dir/out-mergekit"
    read -r ls lm < <(measure "$lofi" merge --method "$method" "${flags[@]}" "${inputs[@]}" --out "$dir/out-lofi" --threads "$threads")
    read -r ms mm < <(measure "$mergekit" "$dir/mergekit.yml" "$dir/out-mergekit" --no-copy-tokenizer --no-write-model-card \
                        --quiet --lazy-unpickle -j "$threads")
    rm -rf "$dir/out-lofi" "$dir/out-mergekit"
    awk -v name="$method, 4 x $dtype" -v f="$floor" -v ls="$ls" -v ms="$ms" -v lm="$lm" -v mm="$mm" -v avg="$method" 'BEGIN {
      printf "%-34s %8.2f %8.2f %9.2f %11.2f %11.2f %8.2fx %8.2fx\n", name, f, ls, ms, lm / 1e6, mm / 1e6, ms / ls, lm / mm
      printf "    >= 3x mergekit: %s, no more memory: %s", (ms / ls >= 3 ? "met" : "MISSED"), (lm <= mm ? "met" : "MISSED")
      if (avg == "average") printf ", within 1.5x of the read floor: %s (%.2fx)", (ls <= 1.5 * f ? "met" : "MISSED"), ls / f
      printf "\n" }'
  done
done
echo "floor: dd of the 4 inputs from the page cache, one after another. lofi's time includes its XXH3 provenance pass (one more read of every input), writing its output and the fsync."
