"""Tokens/s (images/s for classifiers) of a lofi run's node after WARMUP steps, from
node-00/metrics.jsonl: (units at the last record - units at step WARMUP) / (seconds between them).
The run must log a record at step WARMUP (train.log_every divides it).

  metrics_rate.py RUN WARMUP          prints the rate
  metrics_rate.py RUN WARMUP --json   prints one JSON line: rate, unit, from_step, to_step, and
                                      peak_memory_bytes (the last record's, on CUDA: the caching
                                      allocator's peak; null when the records have none)"""
import json, sys

def main():
    run, warmup = sys.argv[1], int(sys.argv[2])
    as_json = "--json" in sys.argv[3:]
    records = [json.loads(l) for l in open(f"{run}/node-00/metrics.jsonl") if l.strip()]
    first = next(r for r in records if r["step"] == warmup)
    last = records[-1]
    unit = "tokens" if "tokens" in last else "images"
    rate = (last[unit] - first[unit]) / (last["seconds"] - first["seconds"])
    if not as_json:
        print(rate)
        return
    peak = next((r["peak_memory_bytes"] for r in reversed(records) if r.get("peak_memory_bytes") is not None), None)
    print(json.dumps({"rate": rate, "unit": unit, "from_step": first["step"], "to_step": last["step"],
                      "peak_memory_bytes": peak}))

if __name__ == "__main__":
    main()
