"""Tokens/s (images/s for classifiers) of a lofi run's node after WARMUP steps, from
node-00/metrics.jsonl (log_every = 1)."""
import json, sys

def main():
    run, warmup = sys.argv[1], int(sys.argv[2])
    records = [json.loads(l) for l in open(f"{run}/node-00/metrics.jsonl") if l.strip()]
    first = next(r for r in records if r["step"] == warmup)
    last = records[-1]
    unit = "tokens" if "tokens" in last else "images"
    print((last[unit] - first[unit]) / (last["seconds"] - first["seconds"]))

if __name__ == "__main__":
    main()
