#!/usr/bin/env python3
"""transformers' from_pretrained of a Hugging Face directory into fp32, as users load a model to
fine-tune it (an MXFP4 checkpoint, gpt-oss's, with Mxfp4Config(dequantize=True), as transformers
says to for training): the reference of bench/hf_load_memory_bench.cpp (bench/hf_load_memory.sh
measures both processes' peak memory with /usr/bin/time).
    python3 hf_load_transformers.py DIR
Prints "SECONDS PARAMETERS".
"""
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, Mxfp4Config


def main():
    with open(os.path.join(sys.argv[1], "config.json")) as f:
        quantized = json.load(f).get("quantization_config", {}).get("quant_method") == "mxfp4"
    kwargs = {"quantization_config": Mxfp4Config(dequantize=True)} if quantized else {}
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{seconds:.3f} {sum(p.numel() for p in model.parameters())}")


if __name__ == "__main__":
    main()
