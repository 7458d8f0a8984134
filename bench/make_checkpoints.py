"""Writes N random fp32 checkpoints of about SIZE_GB each, shaped like a decoder LM
(a large embedding plus uniform blocks), twice: as safetensors (for lofi) and as a PyTorch
state dict (.pt, for the usual PyTorch merge). Used by bench/run.sh; never by tests."""
import json, os, struct, sys
import torch

def layout(size_gb):
    d = 2048
    params = int(size_gb * 1e9 / 4)
    shapes = {"model.decoder.embed_tokens.weight": (50272, d)}
    per_block = 12 * d * d + 13 * d
    for i in range(max(1, (params - 50272 * d) // per_block)):
        p = f"model.decoder.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (d, d),
                       p + "self_attn.v_proj.weight": (d, d), p + "self_attn.out_proj.weight": (d, d),
                       p + "fc1.weight": (4 * d, d), p + "fc2.weight": (d, 4 * d),
                       p + "self_attn.q_proj.bias": (d,), p + "fc1.bias": (4 * d,)})
    return shapes

def save_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors.items():
        n = t.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for t in tensors.values():
            f.write(t.contiguous().numpy().tobytes())
    os.replace(path + ".tmp", path)

def main():
    out, n, size_gb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    shapes = layout(size_gb)
    for i in range(n):
        st, pt = f"{out}/in{i}.safetensors", f"{out}/in{i}.pt"
        if os.path.exists(st) and os.path.exists(pt):
            continue
        g = torch.Generator().manual_seed(i)
        tensors = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
        save_safetensors(st, tensors)
        torch.save(tensors, pt)
        del tensors

if __name__ == "__main__":
    main()
