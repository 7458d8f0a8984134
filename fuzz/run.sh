#!/usr/bin/env bash
# Runs a libFuzzer target for a bounded time over its committed seed corpus. New inputs it finds
# go to a corpus beside the binary (kept out of git); a crash leaves crash-* there and fails.
# usage: fuzz/run.sh BINARY [SECONDS=60]
set -euo pipefail
bin=$1
seconds=${2:-60}
if [ ! -x "$bin" ]; then
  echo "fuzz: $bin is not built (needs clang++ with libFuzzer: clang and libclang-rt-14-dev)" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$(dirname "$bin")" && pwd)
name=$(basename "$bin" _fuzz)
mkdir -p "$out/corpus/$name"
echo "fuzz: $name for ${seconds}s"
exec "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus/$name" "$here/corpus/$name"
