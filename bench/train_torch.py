"""PyTorch reference for the training benchmarks (bench/train.sh on CPU, scripts/device-check.sh on
GPU): the decoders lofi trains, written in plain PyTorch, under bf16 autocast with fused AdamW (the
same decay / no-decay groups as lofi), global-norm clipping at 1.0 and cross-entropy, eager or under
torch.compile.
  arch "opt" (default): token embedding, learned positions with OPT's offset of 2, pre-LayerNorm
    blocks with biased q/k/v/out projections and F.scaled_dot_product_attention (is_causal=True), a
    ReLU MLP, a final LayerNorm and an output head tied to the embedding.
  arch "llama": token embedding, pre-RMSNorm blocks with bias-free q/k/v/o projections, rotate-half
    RoPE (rope_theta), grouped-query attention (n_kv_head key/value heads, SDPA with enable_gqa), a
    SwiGLU MLP (gate, up, down), a final RMSNorm and a head tied to the embedding (tie_word_embeddings
    true, as Llama-3.2-1B) or its own.

Arguments are one JSON object on argv[1]:
  n_layer, n_head, d_model, d_ff, vocab_size, seq_len, batch, steps, warmup, compile (bool), device
  optional: arch ("opt" or "llama"), max_seq_len (default seq_len), precision ("bf16" default, or
  "fp32"), data (an llm.c token shard, uint16 or uint32, as lofi reads it; without it batches are
  drawn on the device), threads (CPU), compile_mode (torch.compile's mode), seed; for llama also
  n_kv_head (default n_head), rope_theta (default 10000), rms_norm_eps (default 1e-5),
  tie_word_embeddings (default true); fsdp (bool: PyTorch's FSDP2, fully_shard on each decoder
  layer and then the root, as its docs shard a transformer; run under torchrun, each of the
  WORLD_SIZE processes on batch / WORLD_SIZE rows of the same global batch, Gloo on CPU and NCCL on
  GPU; rank 0 prints the line, its peak memory the largest of the ranks'); param_dtype ("fp32"
  default, or "bf16": with fsdp, MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32));
  meta_init (bool, with fsdp, arch "opt": FSDP2's way for models bigger than one process's memory:
  built on the meta device, sharded, given memory with to_empty and initialised shard by shard).
The JSON line also holds start_peak_rss_kb: the process's resident peak once the model is built,
sharded and initialised, before the first step (with fsdp, the largest rank's).
Prints one JSON line: tokens_per_s over the steps after WARMUP (timed between two
torch.cuda.synchronize() calls), params (each tensor once: a tied head is the embedding),
params_no_pos (without the position embedding, for MFU), peak_mem_bytes and peak_mem_gb
(torch.cuda.max_memory_allocated: the caching allocator's peak; peak resident memory on CPU), and a
few details.

CPU smoke tests (seconds):
  python bench/train_torch.py '{"n_layer":2,"n_head":2,"d_model":32,"d_ff":64,"vocab_size":128,
      "seq_len":16,"batch":2,"steps":4,"warmup":1,"compile":false,"device":"cpu"}'
  python bench/train_torch.py '{"arch":"llama","n_layer":2,"n_head":4,"n_kv_head":2,"d_model":64,
      "d_ff":128,"vocab_size":128,"seq_len":16,"batch":2,"steps":4,"warmup":1,"compile":false,
      "device":"cpu","precision":"fp32"}'
"""
import json
import os
import resource
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from train_common import adamw, print_result, settings, timed_run, token_windows


class Attention(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h = h
        s.k_proj, s.v_proj, s.q_proj, s.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(s, x):
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, s.h, C // s.h).transpose(1, 2)
        # SDPA's default scale is head_dim ** -0.5, OPT's scaling of q.
        y = F.scaled_dot_product_attention(heads(s.q_proj(x)), heads(s.k_proj(x)), heads(s.v_proj(x)), is_causal=True)
        return s.out_proj(y.transpose(1, 2).reshape(B, T, C))


class Layer(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.self_attn_layer_norm = nn.LayerNorm(d)
        s.self_attn = Attention(d, h)
        s.final_layer_norm = nn.LayerNorm(d)
        s.fc1 = nn.Linear(d, ff)
        s.fc2 = nn.Linear(ff, d)

    def forward(s, x):
        x = x + s.self_attn(s.self_attn_layer_norm(x))
        return x + s.fc2(F.relu(s.fc1(s.final_layer_norm(x))))


class Decoder(nn.Module):
    def __init__(s, L, d, h, ff, V, max_T):
        super().__init__()
        s.embed_tokens = nn.Embedding(V, d)
        s.embed_positions = nn.Embedding(max_T + 2, d)  # OPT: position i is row i + 2
        s.layers = nn.ModuleList(Layer(d, h, ff) for _ in range(L))
        s.final_layer_norm = nn.LayerNorm(d)

    def forward(s, x):
        pos = torch.arange(2, x.shape[1] + 2, device=x.device)
        h = s.embed_tokens(x) + s.embed_positions(pos)
        for layer in s.layers:
            h = layer(h)
        return s.final_layer_norm(h) @ s.embed_tokens.weight.t()  # tied head


# ---- Llama -----------------------------------------------------------------------------------------
def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(s, d, h, kv):
        super().__init__()
        s.h, s.kv, s.hd = h, kv, d // h
        s.q_proj = nn.Linear(d, h * s.hd, bias=False)
        s.k_proj = nn.Linear(d, kv * s.hd, bias=False)
        s.v_proj = nn.Linear(d, kv * s.hd, bias=False)
        s.o_proj = nn.Linear(h * s.hd, d, bias=False)

    def forward(s, x, cos, sin):
        B, T, _ = x.shape
        q = s.q_proj(x).view(B, T, s.h, s.hd).transpose(1, 2)
        k = s.k_proj(x).view(B, T, s.kv, s.hd).transpose(1, 2)
        v = s.v_proj(x).view(B, T, s.kv, s.hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=s.kv != s.h)
        return s.o_proj(y.transpose(1, 2).reshape(B, T, s.h * s.hd))


class LlamaLayer(nn.Module):
    def __init__(s, d, h, kv, ff, eps):
        super().__init__()
        s.input_layernorm = nn.RMSNorm(d, eps=eps)
        s.self_attn = LlamaAttention(d, h, kv)
        s.post_attention_layernorm = nn.RMSNorm(d, eps=eps)
        s.gate_proj = nn.Linear(d, ff, bias=False)
        s.up_proj = nn.Linear(d, ff, bias=False)
        s.down_proj = nn.Linear(ff, d, bias=False)

    def forward(s, x, cos, sin):
        x = x + s.self_attn(s.input_layernorm(x), cos, sin)
        h = s.post_attention_layernorm(x)
        return x + s.down_proj(F.silu(s.gate_proj(h)) * s.up_proj(h))


class LlamaDecoder(nn.Module):
    def __init__(s, L, d, h, kv, ff, V, max_T, theta, eps, tie):
        super().__init__()
        s.embed_tokens = nn.Embedding(V, d)
        s.layers = nn.ModuleList(LlamaLayer(d, h, kv, ff, eps) for _ in range(L))
        s.norm = nn.RMSNorm(d, eps=eps)
        s.lm_head = None if tie else nn.Linear(d, V, bias=False)
        hd = d // h
        inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        freqs = torch.outer(torch.arange(max_T, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        s.register_buffer("cos", emb.cos(), persistent=False)
        s.register_buffer("sin", emb.sin(), persistent=False)

    def forward(s, x):
        T = x.shape[1]
        cos, sin = s.cos[:T], s.sin[:T]
        h = s.embed_tokens(x)
        for layer in s.layers:
            h = layer(h, cos, sin)
        h = s.norm(h)
        return h @ s.embed_tokens.weight.t() if s.lm_head is None else s.lm_head(h)


def llama_init_(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)  # RMSNorm weights
            else:
                p.normal_(0.0, 0.02)


class WithLoss(nn.Module):
    """Forward and loss in one module, so torch.compile sees (and fuses) both."""

    def __init__(s, model):
        super().__init__()
        s.model = model

    def forward(s, x, y):
        logits = s.model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def opt_init_(model):
    # lofi's (OPT's) initialisation, so both sides compute on the same kind of values. A sharded
    # parameter (FSDP2's DTensor) is initialised through its local shard.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p = p.to_local() if hasattr(p, "to_local") else p
            if "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02)


def main():
    a = json.loads(sys.argv[1])
    device, B, T, bf16 = settings(a)
    max_T = a.get("max_seq_len", T)
    arch = a.get("arch", "opt")
    fsdp = bool(a.get("fsdp", False))
    meta_init = fsdp and bool(a.get("meta_init", False))
    if meta_init and arch != "opt":
        sys.exit("meta_init: the llama reference computes its rotary tables as it is built; use arch \"opt\"")
    with torch.device("meta") if meta_init else torch.device("cpu"):
        if arch == "opt":
            model = Decoder(a["n_layer"], a["d_model"], a["n_head"], a["d_ff"], a["vocab_size"], max_T)
        elif arch == "llama":
            model = LlamaDecoder(a["n_layer"], a["d_model"], a["n_head"], a.get("n_kv_head", a["n_head"]), a["d_ff"],
                                 a["vocab_size"], max_T, float(a.get("rope_theta", 10000.0)), float(a.get("rms_norm_eps", 1e-5)),
                                 bool(a.get("tie_word_embeddings", True)))
        else:
            sys.exit(f"arch must be \"opt\" or \"llama\", not {arch!r}")
    init_ = opt_init_ if arch == "opt" else llama_init_
    if not meta_init:
        init_(model)
    params = sum(p.numel() for p in model.parameters())  # parameters() yields the tied weight once
    params_no_pos = params - (model.embed_positions.weight.numel() if arch == "opt" else 0)
    if fsdp:
        import torch.distributed as dist
        from torch.distributed.fsdp import fully_shard
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(__import__("os").environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if B % world:
            sys.exit(f"batch {B} does not split into {world} processes")
        B //= world
        torch.manual_seed(a.get("seed", 0) + rank)  # each rank its own rows
        if not meta_init:
            model.to(device)
        # param_dtype "bf16": FSDP2's mixed precision (bf16 compute weights gathered in bf16, fp32
        # sharded parameters, gradients reduced in fp32), as lofi's train.param_dtype = "bf16".
        mp = {}
        if a.get("param_dtype", "fp32") == "bf16":
            from torch.distributed.fsdp import MixedPrecisionPolicy
            mp = {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
        for layer in model.layers:
            fully_shard(layer, **mp)
        fully_shard(model, **mp)
        if meta_init:  # each rank's shards get memory, then values
            model.to_empty(device=device)
            init_(model)
    else:
        model.to(device)
    start_peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    opt = adamw(model, fused=not fsdp)  # the fused CPU kernel takes plain tensors, not FSDP2's DTensors
    step_fn = WithLoss(model)
    if a.get("compile", False):
        step_fn = torch.compile(step_fn, mode=a.get("compile_mode"))
    next_batch = token_windows(a, device, B, T)

    def train_step():
        w = next_batch()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(w[:, :-1], w[:, 1:])
        loss.backward()  # outside autocast, as torch.autocast recommends (and as lofi does)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    result = timed_run(a, device, B, T, train_step)
    if fsdp:  # the global batch's tokens; the largest rank's peak
        result["tokens_per_s"] *= world
        peak = torch.tensor([result["peak_mem_bytes"], result["peak_rss_kb"], start_peak_rss_kb], dtype=torch.float64, device=device)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        result["peak_mem_bytes"], result["peak_rss_kb"], start_peak_rss_kb = int(peak[0]), int(peak[1]), int(peak[2])
        result["peak_mem_gb"] = round(result["peak_mem_bytes"] / 1e9, 3)
        result["fsdp_world"] = world
        dist.destroy_process_group()
    if not fsdp or rank == 0:
        print_result({**result, "arch": arch, "params": params, "params_no_pos": params_no_pos,
                      "precision": "bf16" if bf16 else "fp32", "start_peak_rss_kb": start_peak_rss_kb, "meta_init": meta_init})
    if meta_init:
        # On CPU (Gloo), a process that built its FSDP2 model on the meta device aborts as the
        # interpreter exits ("terminate called without an active exception"); the run is done.
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
