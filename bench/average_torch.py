"""The usual PyTorch merge: load every state dict, average, save. The baseline that
`lofi average` is measured against in bench/run.sh."""
import sys
import torch

def main():
    out, inputs = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
    states = [torch.load(p, map_location="cpu") for p in inputs]
    avg = {k: sum(s[k] for s in states) / len(states) for k in states[0]}
    torch.save(avg, out)

if __name__ == "__main__":
    main()
