"""Writes a base and N fine-tunes of it as Hugging Face GPT-2 model directories (config.json +
model.safetensors, GPT2LMHeadModel's tensor names) of about SIZE_GB each in DTYPE (float32 or
bfloat16): random weights, the fine-tunes the base plus small random differences. Both lofi merge and
mergekit-yaml read them (mergekit knows GPT-2's layout). Used by bench/merge_mergekit.sh; never by tests.

usage: make_gpt2_models.py DIR N SIZE_GB DTYPE   (skips directories already complete)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

D, VOCAB, POSITIONS = 1280, 50257, 1024


def tensors(layers, dtype, gen):
    shapes = {"transformer.wte.weight": (VOCAB, D), "transformer.wpe.weight": (POSITIONS, D),
              "transformer.ln_f.weight": (D,), "transformer.ln_f.bias": (D,)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        shapes.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,), p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
                       p + "attn.c_attn.weight": (D, 3 * D), p + "attn.c_attn.bias": (3 * D,),
                       p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,),
                       p + "mlp.c_fc.weight": (D, 4 * D), p + "mlp.c_fc.bias": (4 * D,),
                       p + "mlp.c_proj.weight": (4 * D, D), p + "mlp.c_proj.bias": (D,)})
    return {name: (torch.randn(shape, generator=gen) * 0.02).to(dtype) for name, shape in shapes.items()}


def main(root, n, size_gb, dtype_name):
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    per_layer = 12 * D * D + 13 * D
    layers = max(1, int((size_gb * 1e9 / dtype.itemsize - (VOCAB + POSITIONS) * D) / per_layer))
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB, "n_positions": POSITIONS,
              "n_embd": D, "n_layer": layers, "n_head": 20, "torch_dtype": dtype_name, "tie_word_embeddings": True}
    gen = torch.Generator().manual_seed(0)
    base = None
    for name in ["base"] + [f"in{i}" for i in range(n)]:
        out = os.path.join(root, name)
        done = os.path.join(out, ".complete")
        if os.path.exists(done):
            continue
        if base is None:
            base = tensors(layers, torch.float32, torch.Generator().manual_seed(0))
        weights = base if name == "base" else {k: v + torch.randn(v.shape, generator=gen) * 1e-3 for k, v in base.items()}
        os.makedirs(out, exist_ok=True)
        save_file({k: v.to(dtype) for k, v in weights.items()}, os.path.join(out, "model.safetensors"))
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f)
        open(done, "w").close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
