"""Random token ids in llm.c's shard format (uint16), for throughput benchmarks."""
import sys
import numpy as np

path, count, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
header = np.zeros(256, dtype=np.int32)
header[:3] = (20240520, 1, count)
with open(path, "wb") as f:
    f.write(header.tobytes())
    f.write(np.random.default_rng(0).integers(0, vocab, count, dtype=np.uint16).tobytes())
