"""PyTorch eager reference for the training benchmark: the same OPT-layout decoder as lofi's
(learned positions offset by 2, pre-LayerNorm, ReLU MLP, tied head), the same AdamW groups,
clipping and batch, on the same token file. Prints one JSON line: tokens/s after warm-up steps,
and peak resident memory."""
import json, math, resource, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

class Attention(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h = h
        s.k_proj, s.v_proj, s.q_proj, s.out_proj = (nn.Linear(d, d) for _ in range(4))
    def forward(s, x):
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, s.h, C // s.h).transpose(1, 2)
        q = heads(s.q_proj(x) * (C // s.h) ** -0.5); k = heads(s.k_proj(x)); v = heads(s.v_proj(x))
        att = q @ k.transpose(-2, -1)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return s.out_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))

class Layer(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.self_attn = Attention(d, h); s.self_attn_layer_norm = nn.LayerNorm(d)
        s.fc1 = nn.Linear(d, ff); s.fc2 = nn.Linear(ff, d); s.final_layer_norm = nn.LayerNorm(d)
    def forward(s, x):
        x = x + s.self_attn(s.self_attn_layer_norm(x))
        return x + s.fc2(F.relu(s.fc1(s.final_layer_norm(x))))

class Gpt(nn.Module):
    def __init__(s, L, d, h, ff, V, T):
        super().__init__()
        s.embed_tokens = nn.Embedding(V, d); s.embed_positions = nn.Embedding(T + 2, d)
        s.layers = nn.ModuleList(Layer(d, h, ff) for _ in range(L)); s.final_layer_norm = nn.LayerNorm(d)
    def forward(s, x):
        h = s.embed_tokens(x) + s.embed_positions(torch.arange(2, x.shape[1] + 2))
        for layer in s.layers:
            h = layer(h)
        return s.final_layer_norm(h) @ s.embed_tokens.weight.t()

def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    model = Gpt(a["n_layer"], a["d_model"], a["n_head"], a["d_ff"], a["vocab_size"], a["seq_len"])
    # lofi's (OPT's) initialisation, so both sides run the same numerics: PyTorch's defaults
    # (N(0, 1) embeddings) drive this model into values that are far slower to compute with.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = np.memmap(a["data"], dtype=np.uint16, mode="r", offset=1024)
    B, T = a["batch"], a["seq_len"]
    rng = np.random.default_rng(0)
    times = []
    for step in range(a["steps"]):
        t0 = time.perf_counter()
        starts = rng.integers(0, len(tokens) - T - 1, B)
        w = torch.from_numpy(np.stack([tokens[s:s + T + 1].astype(np.int64) for s in starts]))
        opt.zero_grad()
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    timed = times[a["warmup"]:]
    print(json.dumps({"tokens_per_s": B * T * len(timed) / sum(timed),
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "params": sum(p.numel() for p in model.parameters())}))

if __name__ == "__main__":
    main()
