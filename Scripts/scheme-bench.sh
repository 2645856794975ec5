#!/usr/bin/env bash
# The Scheme example on Tricolor and on ARC classes, same program, alternating runs:
# wall time and peak RSS (getrusage via the binary's --stats), medians.
#   Scripts/scheme-bench.sh [RUNS] [PROGRAM]
# Defaults: 5 runs of Benchmarks/scheme/closure-cycles.scm. Builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
prog="${2:-Benchmarks/scheme/closure-cycles.scm}"
swift build -c release --product scheme >/dev/null
bin=.build/release/scheme
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$runs"); do
    for impl in tricolor arc; do
        flag=""; [ "$impl" = arc ] && flag="--arc"
        out=$("$bin" $flag --stats "$prog" 2>&1 >/dev/null | grep '^# impl=')
        echo "run $i: $out"
        echo "$out" | sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' >> "$tmp/$impl.wall"
        echo "$out" | sed -n 's/.*maxrss_mb=\([0-9.]*\).*/\1/p' >> "$tmp/$impl.rss"
    done
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for impl in tricolor arc; do
    echo "median $impl: wall_s=$(median "$tmp/$impl.wall") maxrss_mb=$(median "$tmp/$impl.rss")"
done
