#!/usr/bin/env python3
"""transformers' from_pretrained of a Hugging Face directory into fp32, as users load a model to
fine-tune it: the reference of bench/hf_load_memory_bench.cpp (bench/run.sh measures both
processes' peak memory with /usr/bin/time).
    python3 hf_load_transformers.py DIR
Prints "SECONDS PARAMETERS".
"""
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
    seconds = time.perf_counter() - start
    print(f"{seconds:.3f} {sum(p.numel() for p in model.parameters())}")


if __name__ == "__main__":
    main()
