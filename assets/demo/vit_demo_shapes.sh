#!/usr/bin/env bash
# Makes vit_demo_shapes.safetensors beside this script: the vision demo's pretrained ViT, which the
# build embeds in lofi. It is the demo's own pretraining run with nothing cached (vit_demo_patch4_32,
# 8000 steps of 128 generated source-task images, AdamW at 2e-3 with cosine decay; the recipe is in
# src/lofi/demo/vision_demo.cpp), so after any change to the image generator, the ViT or that
# recipe, run this and rebuild. About 90 minutes on 2 cores (measured: ~190 images/s); the vision demo's fine-tuning runs
# after it, and its results.json holds the new model's score on held-out source images
# (vision.pretrained_source), which tests/shipped_vit_test.cpp checks too.
#
# Usage: bash assets/demo/vit_demo_shapes.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/lofi" demo --only vision --fresh --vision-pretrain-steps 8000 --sync-every 0 --out "$out"
cp "$out/vision/pretrained.safetensors" "$here/vit_demo_shapes.safetensors.tmp"
mv "$here/vit_demo_shapes.safetensors.tmp" "$here/vit_demo_shapes.safetensors"
python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["vision"]["pretrained_source"]; print("source", s["metric"], round(s["value"], 2))' \
  "$out/results.json"
