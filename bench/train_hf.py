"""Hugging Face reference for the GPU benchmark (scripts/device-check.sh --prebuilt): transformers'
own OPTForCausalLM, LlamaForCausalLM, Qwen3MoeForCausalLM or GptOssForCausalLM, built from a config of the benchmark's shape and trained the
way a user of transformers would: fp32 master weights, bf16 autocast, SDPA attention (eager for
gpt-oss, whose sinks transformers computes only there and in hub kernels), the loss from
`labels` (transformers shifts them inside the model), fused AdamW with decay / no-decay groups,
global-norm clipping at 1.0; eager or under torch.compile. No dropout (OPT's default 0.1 is set to
0), so it computes what lofi and bench/train_torch.py compute.

Arguments are one JSON object on argv[1], as bench/train_torch.py takes them:
  arch ("opt", "llama", "qwen3_moe" or "gpt_oss"), n_layer, n_head, d_model, d_ff, vocab_size, seq_len, batch, steps, warmup
  optional: compile (bool), compile_mode, device ("cuda" default), precision ("bf16" default, or
  "fp32"), max_seq_len (default seq_len), data (an llm.c token shard, uint16 or uint32; without it
  batches are drawn on the device), threads (CPU), seed; for llama also n_kv_head (default n_head),
  rope_theta (default 10000), rms_norm_eps (default 1e-5), tie_word_embeddings (default true); for
  qwen3_moe also num_experts, experts_per_token and moe_d_ff (the top-k probabilities renormalised);
  for gpt_oss num_experts, experts_per_token, head_dim and sliding_window (every other layer; d_ff is
  the experts' width);
  LoRA through PEFT: lora_rank (0: full fine-tuning), lora_alpha (default 2 x rank), lora_target
  (default "all-linear"), base_dtype ("fp32" default, or "bf16": the frozen base's dtype; PEFT keeps
  the adapters in fp32).
Prints one JSON line: tokens_per_s over the steps after WARMUP (batch x seq_len tokens a step, timed
between two torch.cuda.synchronize() calls), params (each tensor once), params_no_pos (without OPT's
position embedding), peak_mem_bytes (torch.cuda.max_memory_allocated: the caching allocator's peak;
peak resident memory on CPU), and a few details.

CPU smoke test (seconds):
  python bench/train_hf.py '{"arch":"llama","n_layer":2,"n_head":4,"n_kv_head":2,"d_model":64,
      "d_ff":128,"vocab_size":128,"seq_len":64,"batch":2,"steps":3,"warmup":1,"device":"cpu",
      "precision":"fp32"}'
"""
import json
import sys

import torch

from train_common import adamw, print_result, settings, timed_run, token_windows


def build(a, max_T):
    import transformers
    arch = a.get("arch", "llama")
    if arch == "opt":
        cfg = transformers.OPTConfig(
            vocab_size=a["vocab_size"], hidden_size=a["d_model"], num_hidden_layers=a["n_layer"],
            ffn_dim=a["d_ff"], num_attention_heads=a["n_head"], max_position_embeddings=max_T,
            word_embed_proj_dim=a["d_model"], do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0,
            activation_dropout=0.0, layerdrop=0.0, enable_bias=True, tie_word_embeddings=True)
        cls = transformers.OPTForCausalLM
    elif arch == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=a["vocab_size"], hidden_size=a["d_model"], intermediate_size=a["d_ff"],
            num_hidden_layers=a["n_layer"], num_attention_heads=a["n_head"],
            num_key_value_heads=a.get("n_kv_head", a["n_head"]), max_position_embeddings=max_T,
            rope_theta=float(a.get("rope_theta", 10000.0)), rms_norm_eps=float(a.get("rms_norm_eps", 1e-5)),
            tie_word_embeddings=bool(a.get("tie_word_embeddings", True)), attention_dropout=0.0)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(
            vocab_size=a["vocab_size"], hidden_size=a["d_model"], intermediate_size=a["d_ff"],
            moe_intermediate_size=a["moe_d_ff"], num_experts=a["num_experts"], num_experts_per_tok=a["experts_per_token"],
            norm_topk_prob=True, num_hidden_layers=a["n_layer"], num_attention_heads=a["n_head"],
            num_key_value_heads=a.get("n_kv_head", a["n_head"]), head_dim=a["d_model"] // a["n_head"],
            max_position_embeddings=max_T, rope_theta=float(a.get("rope_theta", 10000.0)),
            rms_norm_eps=float(a.get("rms_norm_eps", 1e-5)), tie_word_embeddings=bool(a.get("tie_word_embeddings", False)),
            attention_dropout=0.0)
        cls = transformers.Qwen3MoeForCausalLM
    elif arch == "gpt_oss":
        cfg = transformers.GptOssConfig(
            vocab_size=a["vocab_size"], hidden_size=a["d_model"], intermediate_size=a["d_ff"],
            num_local_experts=a["num_experts"], num_experts_per_tok=a["experts_per_token"],
            num_hidden_layers=a["n_layer"], num_attention_heads=a["n_head"],
            num_key_value_heads=a.get("n_kv_head", a["n_head"]), head_dim=a["head_dim"],
            sliding_window=a["sliding_window"], max_position_embeddings=max_T,
            rope_parameters={"rope_type": "default", "rope_theta": float(a.get("rope_theta", 10000.0))},
            rms_norm_eps=float(a.get("rms_norm_eps", 1e-5)), tie_word_embeddings=bool(a.get("tie_word_embeddings", False)),
            attention_dropout=0.0)
        cls = transformers.GptOssForCausalLM
    else:
        sys.exit(f"arch must be \"opt\", \"llama\", \"qwen3_moe\" or \"gpt_oss\", not {arch!r}")
    cfg._attn_implementation = "eager" if arch == "gpt_oss" else "sdpa"
    model = cls(cfg)
    # What the model really got (newer transformers keep rope_theta in rope_parameters).
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None)) if arch != "opt" else None
    return model, cfg, theta, transformers.__version__


def main():
    a = json.loads(sys.argv[1])
    device, B, T, bf16 = settings(a)
    with device:  # initialised where it trains, in fp32 (the master weights)
        model, cfg, theta, tf_version = build(a, a.get("max_seq_len", T))
    params = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    lora = int(a.get("lora_rank", 0))
    if lora > 0:
        import peft
        if a.get("base_dtype", "fp32") == "bf16":
            model.to(torch.bfloat16)
        model = peft.get_peft_model(model, peft.LoraConfig(r=lora, lora_alpha=a.get("lora_alpha", 2 * lora),
                                                           target_modules=a.get("lora_target", "all-linear"),
                                                           lora_dropout=0.0))
    model.train()
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    if dtypes != {torch.float32}:
        sys.exit(f"expected fp32 trained weights, the model has {dtypes}")
    pos = getattr(getattr(getattr(model, "model", None), "decoder", None), "embed_positions", None)
    params_no_pos = params - (pos.weight.numel() if pos is not None else 0)

    opt = adamw(model)
    step_fn = model
    if a.get("compile", False):
        step_fn = torch.compile(model, mode=a.get("compile_mode"))
    next_batch = token_windows(a, device, B, T)

    def train_step():
        x = next_batch()[:, :T]  # transformers shifts the labels inside the model
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        return loss

    result = timed_run(a, device, B, T, train_step)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print_result({**result, "arch": a.get("arch", "llama"), "params": params, "params_no_pos": params_no_pos,
                  "trained_params": trained, "lora_rank": lora,
                  "precision": "bf16" if bf16 else "fp32", "attn_implementation": cfg._attn_implementation,
                  "rope_theta": theta, "transformers": tf_version})


if __name__ == "__main__":
    main()
