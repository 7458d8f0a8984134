# Shell helpers the benchmarks source: the median and the largest of numbers given on stdin,
# separated by spaces or newlines.
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
largest() { tr ' ' '\n' | grep . | sort -g | tail -1; }
