"""Hugging Face reference for the GPU benchmark (scripts/device-check.sh --prebuilt): transformers'
own OPTForCausalLM or LlamaForCausalLM, built from a config of the benchmark's shape and trained the
way a user of transformers would: fp32 master weights, bf16 autocast, SDPA attention, the loss from
`labels` (transformers shifts them inside the model), fused AdamW with decay / no-decay groups,
global-norm clipping at 1.0; eager or under torch.compile. No dropout (OPT's default 0.1 is set to
0), so it computes what lofi and bench/train_torch.py compute.

Arguments are one JSON object on argv[1], as bench/train_torch.py takes them:
  arch ("opt" or "llama"), n_layer, n_head, d_model, d_ff, vocab_size, seq_len, batch, steps, warmup
  optional: compile (bool), compile_mode, device ("cuda" default), precision ("bf16" default, or
  "fp32"), max_seq_len (default seq_len), data (an llm.c token shard, uint16 or uint32; without it
  batches are drawn on the device), threads (CPU), seed; for llama also n_kv_head (default n_head),
  rope_theta (default 10000), rms_norm_eps (default 1e-5), tie_word_embeddings (default true).
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
import resource
import sys
import time

import numpy as np
import torch

LLMC_MAGIC = 20240520


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
    else:
        sys.exit(f"arch must be \"opt\" or \"llama\", not {arch!r}")
    cfg._attn_implementation = "sdpa"
    model = cls(cfg)
    # What the model really got (newer transformers keep rope_theta in rope_parameters).
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None)) if arch == "llama" else None
    return model, cfg, theta, transformers.__version__


def token_source(a, device, B, T):
    """Returns next_batch() -> input ids of shape (B, T) on DEVICE (the labels are the same ids)."""
    path = a.get("data")
    if not path:
        return lambda: torch.randint(0, a["vocab_size"], (B, T), device=device)
    header = np.fromfile(path, dtype=np.int32, count=256)
    if header.size < 3 or header[0] != LLMC_MAGIC:
        sys.exit(f"{path}: not an llm.c token shard (magic {LLMC_MAGIC})")
    dtype = np.uint16 if header[1] == 1 else np.uint32
    tokens = np.memmap(path, dtype=dtype, mode="r", offset=1024, shape=(int(header[2]),))
    if len(tokens) < T + 2:
        sys.exit(f"{path}: {len(tokens)} tokens, need at least {T + 2}")
    rng = np.random.default_rng(a.get("seed", 0))
    pin = device.type == "cuda"

    def from_file():
        starts = rng.integers(0, len(tokens) - T - 1, B)
        w = torch.from_numpy(np.stack([tokens[s:s + T] for s in starts]).astype(np.int64))
        if pin:
            w = w.pin_memory()
        return w.to(device, non_blocking=pin)
    return from_file


def main():
    a = json.loads(sys.argv[1])
    device = torch.device(a.get("device", "cuda"))
    if device.type == "cpu" and a.get("threads"):
        torch.set_num_threads(int(a["threads"]))
    torch.manual_seed(a.get("seed", 0))
    B, T = a["batch"], a["seq_len"]
    bf16 = a.get("precision", "bf16") == "bf16"
    with device:  # initialised where it trains, in fp32 (the master weights)
        model, cfg, theta, tf_version = build(a, a.get("max_seq_len", T))
    model.train()
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        sys.exit(f"expected fp32 master weights, the model has {dtypes}")
    params = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    pos = getattr(getattr(getattr(model, "model", None), "decoder", None), "embed_positions", None)
    params_no_pos = params - (pos.weight.numel() if pos is not None else 0)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = model
    if a.get("compile", False):
        step_fn = torch.compile(model, mode=a.get("compile_mode"))
    next_batch = token_source(a, device, B, T)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def train_step():
        x = next_batch()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    warmup, steps = a["warmup"], a["steps"]
    if steps <= warmup:
        sys.exit(f"steps ({steps}) must exceed warmup ({warmup})")
    t_start = time.perf_counter()
    for _ in range(warmup):  # includes torch.compile's compilation and cuBLAS autotuning
        loss = train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps - warmup):
        loss = train_step()
    sync()
    t1 = time.perf_counter()
    timed = steps - warmup
    peak = torch.cuda.max_memory_allocated(device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "tokens_per_s": B * T * timed / (t1 - t0),
        "arch": a.get("arch", "llama"),
        "params": params,
        "params_no_pos": params_no_pos,
        "peak_mem_bytes": peak,
        "peak_mem_gb": round(peak / 1e9, 3),
        "peak_mem_kind": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss",
        "step_ms": round(1000 * (t1 - t0) / timed, 3),
        "warmup_s": round(t0 - t_start, 2),
        "timed_steps": timed,
        "final_loss": float(loss.item()),
        "compile": bool(a.get("compile", False)),
        "precision": "bf16" if bf16 else "fp32",
        "attn_implementation": cfg._attn_implementation,
        "rope_theta": theta,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": tf_version,
    }))


if __name__ == "__main__":
    main()
