#!/usr/bin/env bash
# lo-fi against the data-parallel baseline over a slow link: two workers in separate network
# namespaces joined by a veth pair whose egress is rate-limited with tc (plus a few ms of delay).
# The baseline all-reduces every step across the link; lo-fi's two nodes never use it. Pure
# compute: one worker alone with lo-fi's per-node batch. Skipped, and said so, where namespaces
# cannot be made (no root, no CAP_NET_ADMIN).
set -uo pipefail
lofi=$1 dir=$2 flags=$3
py=${LOFI_BENCH_PYTHON:-$(bash "$(dirname "$0")/../scripts/python-env.sh")/bin/python}  # the PyTorch of the LibTorch lofi links
here=$(dirname "$0")
a=lofi-bench-a b=lofi-bench-b
cleanup() { ip netns del $a 2>/dev/null; ip netns del $b 2>/dev/null; true; }
trap cleanup EXIT
cleanup
if ! { ip netns add $a && ip netns add $b && ip link add veth-a netns $a type veth peer name veth-b netns $b; } 2>/dev/null; then
  echo; echo "slow link: skipped (cannot create network namespaces here: needs root / CAP_NET_ADMIN)"; exit 0
fi
ip -n $a addr add 10.77.0.1/24 dev veth-a && ip -n $b addr add 10.77.0.2/24 dev veth-b
for ns in $a $b; do ip -n $ns link set lo up; done
ip -n $a link set veth-a up && ip -n $b link set veth-b up

run_pair() {  # run_pair RUN EXTRA -> wall seconds of the two workers (one per namespace)
  local run=$1 extra=$2 port=29611 t0 t1
  t0=$(date +%s.%N)
  ip netns exec $a env RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 MASTER_ADDR=10.77.0.1 MASTER_PORT=$port GLOO_SOCKET_IFNAME=veth-a \
    "$lofi" train ${flags//RUN/$run} --set train.threads=1 $extra > "$run.a.log" 2>&1 &
  local pa=$!
  ip netns exec $b env RANK=1 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 MASTER_ADDR=10.77.0.1 MASTER_PORT=$port GLOO_SOCKET_IFNAME=veth-b \
    "$lofi" train ${flags//RUN/$run} --set train.threads=1 $extra > "$run.b.log" 2>&1
  local rb=$?
  wait $pa; local ra=$?
  t1=$(date +%s.%N)
  [ $ra -eq 0 ] && [ $rb -eq 0 ] || { echo "slow link run $run failed: see $run.a.log $run.b.log" >&2; echo nan; return; }
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

echo
printf '%-44s %10s %10s %10s %9s %9s\n' "slow link (veth + tc), 25M, 4 steps" "baseline s" "lo-fi s" "compute s" "speed-up" "overhead"
for rate in 100mbit 1gbit; do
  for dev in "$a veth-a" "$b veth-b"; do
    set -- $dev
    ip netns exec $1 tc qdisc replace dev $2 root netem rate $rate delay 2ms 2>/dev/null ||
      ip netns exec $1 tc qdisc replace dev $2 root tbf rate $rate burst 256kb latency 50ms
  done
  base=$(run_pair "$dir/slow-base-$rate" "--set dist.nodes=1")
  lofi_s=$(run_pair "$dir/slow-lofi-$rate" "--set dist.nodes=2")
  # Pure compute: one worker alone, lo-fi's per-node batch (half the global batch), no network.
  batch=$(echo "$flags" | sed -n 's/.*train.batch_size=\([0-9]*\).*/\1/p')
  t0=$(date +%s.%N)
  if ! "$lofi" train ${flags//RUN/$dir/slow-compute} --set train.threads=1 --set train.batch_size=$((batch / 2)) > "$dir/slow-compute.log" 2>&1; then
    echo "slow link: the pure-compute run failed, see $dir/slow-compute.log" >&2; exit 1
  fi
  compute=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  awk -v r="$rate" -v b="$base" -v l="$lofi_s" -v c="$compute" 'BEGIN {
    s = b / l; o = 100 * (l - c) / c
    v = (o <= 3 ? "overhead met" : "overhead MISSED")
    if (r == "100mbit") v = v (s >= 10 ? ", speed-up met" : ", speed-up MISSED")
    printf "%-44s %10.1f %10.1f %10.1f %8.1fx %8.1f%%  %s\n", "  " r ", 2 ms delay", b, l, c, s, o, v }'
done
echo "targets: lo-fi within 3% of pure compute; >= 10x faster than the baseline at 100 Mbit/s"
