#!/usr/bin/python3
# Reference for the image loader benchmark: the same decode + DeiT training augmentation in
# PIL + torchvision (timm's pipeline: RandomResizedCrop bicubic, flip, ColorJitter 0.3, ToTensor,
# Normalize) on one core, over the images lofi_bench_images generated. Prints images/s and
# images per CPU second.
#   image_loader_torch.py DIR CROP
import os
import sys
import time

import torch
from PIL import Image
from torchvision import transforms as T

torch.set_num_threads(1)
root, crop = sys.argv[1], int(sys.argv[2])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
tf = T.Compose([
    T.RandomResizedCrop(crop, interpolation=T.InterpolationMode.BICUBIC),
    T.RandomHorizontalFlip(),
    T.ColorJitter(0.3, 0.3, 0.3),
    T.ToTensor(),
    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
for p in paths[:8]:  # warm-up
    tf(Image.open(p).convert("RGB"))
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < 3.0:
    for p in paths:
        tf(Image.open(p).convert("RGB"))
        n += 1
print(f"{n / (time.perf_counter() - t0):.0f} {n / (time.process_time() - c0):.0f}")
