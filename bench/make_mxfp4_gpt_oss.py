#!/usr/bin/env python3
"""A gpt-oss checkpoint as the hub publishes them, for bench/hf_load_memory.sh: two layers of
gpt-oss-20b's width (hidden 2880, 64 heads of 64, 8 kv heads, 32 experts of width 2880, 4 a token)
over a 32000-token vocabulary, 1.83B parameters; the experts' weights in MXFP4 (random *_blocks and
*_scales, uint8, quantization_config quant_method "mxfp4"), every other tensor random bf16.
Writes safetensors directly (no model is built), so making it needs little more memory than the file.
    python3 make_mxfp4_gpt_oss.py DIR
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, EXPERTS, WIDTH, LAYERS, VOCAB = 2880, 64, 8, 64, 32, 2880, 2, 32000


def main():
    out = sys.argv[1]
    if os.path.exists(os.path.join(out, "config.json")):
        return  # made before (the shape is fixed)
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    def bf16(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    def mxfp4(name, experts, rows, cols):  # a weight (experts, cols, rows) as rows of cols / 32 blocks
        return {name + "_blocks": torch.randint(0, 256, (experts, rows, cols // 32, 16), dtype=torch.uint8, generator=g),
                name + "_scales": torch.randint(118, 122, (experts, rows, cols // 32), dtype=torch.uint8, generator=g)}

    tensors = {"model.embed_tokens.weight": bf16(VOCAB, HIDDEN), "lm_head.weight": bf16(VOCAB, HIDDEN),
               "model.norm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[p + norm + ".weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        for proj, rows in (("q_proj", HEADS * HEAD_DIM), ("k_proj", KV_HEADS * HEAD_DIM), ("v_proj", KV_HEADS * HEAD_DIM)):
            tensors[p + f"self_attn.{proj}.weight"], tensors[p + f"self_attn.{proj}.bias"] = bf16(rows, HIDDEN), bf16(rows)
        tensors[p + "self_attn.o_proj.weight"], tensors[p + "self_attn.o_proj.bias"] = bf16(HIDDEN, HEADS * HEAD_DIM), bf16(HIDDEN)
        tensors[p + "self_attn.sinks"] = bf16(HEADS)
        tensors[p + "mlp.router.weight"], tensors[p + "mlp.router.bias"] = bf16(EXPERTS, HIDDEN), bf16(EXPERTS)
        tensors.update(mxfp4(p + "mlp.experts.gate_up_proj", EXPERTS, 2 * WIDTH, HIDDEN))
        tensors.update(mxfp4(p + "mlp.experts.down_proj", EXPERTS, HIDDEN, WIDTH))
        tensors[p + "mlp.experts.gate_up_proj_bias"] = bf16(EXPERTS, 2 * WIDTH)
        tensors[p + "mlp.experts.down_proj_bias"] = bf16(EXPERTS, HIDDEN)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True, "head_dim": HEAD_DIM,
        "hidden_size": HIDDEN, "intermediate_size": WIDTH, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "num_hidden_layers": LAYERS, "num_local_experts": EXPERTS, "num_experts_per_tok": 4, "experts_per_token": 4,
        "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 128, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                                               "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": False},
        "rope_theta": 150000, "swiglu_limit": 7.0, "tie_word_embeddings": False, "vocab_size": VOCAB,
        "eos_token_id": 1, "pad_token_id": 0, "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
