"""What the training references (bench/train_torch.py, bench/train_hf.py) share: the run's settings
from the JSON argument, batches from an llm.c token shard as lofi reads them (pinned host memory and
a non-blocking copy on CUDA), AdamW as lofi runs it (fused, decay on matrices only), and the timed
loop with its one JSON line of results."""
import json
import resource
import sys
import time

import numpy as np
import torch

LLMC_MAGIC = 20240520


def settings(a):
    """The device, batch, sequence length and bf16 flag of argument A; seeds and threads set."""
    device = torch.device(a.get("device", "cuda"))
    if device.type == "cpu" and a.get("threads"):
        torch.set_num_threads(int(a["threads"]))
    torch.manual_seed(a.get("seed", 0))
    return device, a["batch"], a["seq_len"], a.get("precision", "bf16") == "bf16"


def token_windows(a, device, B, T):
    """Returns next_batch() -> token windows (B, T + 1) int64 on DEVICE: from A's "data" (an llm.c
    shard, uint16 or uint32; raw uint16 without the header), else drawn on the device."""
    path = a.get("data")
    if not path:
        return lambda: torch.randint(0, a["vocab_size"], (B, T + 1), device=device)
    header = np.fromfile(path, dtype=np.int32, count=256)
    if header.size >= 3 and header[0] == LLMC_MAGIC:
        dtype = np.uint16 if header[1] == 1 else np.uint32
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=1024, shape=(int(header[2]),))
    else:  # raw uint16, as lofi reads with data.format = "raw-u16"
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
    if len(tokens) < T + 2:
        sys.exit(f"{path}: {len(tokens)} tokens, need at least {T + 2}")
    rng = np.random.default_rng(a.get("seed", 0))
    pin = device.type == "cuda"

    def from_file():
        starts = rng.integers(0, len(tokens) - T - 1, B)
        w = torch.from_numpy(np.stack([tokens[s:s + T + 1] for s in starts]).astype(np.int64))
        if pin:  # as lofi: pinned host memory, non-blocking copy
            w = w.pin_memory()
        return w.to(device, non_blocking=pin)
    return from_file


def adamw(model, fused=True):
    """Fused AdamW (FUSED; else the foreach kernels) with weight decay on matrices only, lofi's
    groups and betas; frozen parameters (a LoRA base) have no state."""
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]
    no_decay = [p for p in trained if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=fused)


def timed_run(a, device, B, T, train_step):
    """Runs A's warmup steps, then times the rest between two synchronisations. Returns the
    common fields of the result line: tokens_per_s, peak memory, step time, the last loss."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    warmup, steps = a["warmup"], a["steps"]
    if steps <= warmup:
        sys.exit(f"steps ({steps}) must exceed warmup ({warmup})")
    t_start = time.perf_counter()
    for _ in range(warmup):  # includes torch.compile's compilation and cuDNN / cuBLAS autotuning
        loss = train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps - warmup):
        loss = train_step()
    sync()
    t1 = time.perf_counter()
    timed = steps - warmup
    peak = torch.cuda.max_memory_allocated(device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "tokens_per_s": B * T * timed / (t1 - t0),
        "peak_mem_bytes": peak,
        "peak_mem_gb": round(peak / 1e9, 3),
        "peak_mem_kind": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss",
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "step_ms": round(1000 * (t1 - t0) / timed, 3),
        "warmup_s": round(t0 - t_start, 2),
        "timed_steps": timed,
        "final_loss": float(loss.item()),
        "compile": bool(a.get("compile", False)),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
    }


def print_result(fields):
    print(json.dumps(fields))
