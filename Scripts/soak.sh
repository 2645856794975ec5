#!/usr/bin/env bash
# Soak test: Scripts/soak.sh MINUTES [--threads N] [--seed S] [--round-seconds R]
#
# Builds Fuzz's TricolorSoak (release, no sanitizers, in Fuzz/.build-soak) and runs it for
# MINUTES (may be fractional): worker threads attach and detach, build and check object
# graphs and hand them between threads while other threads flip GOGC and the memory limit
# and collect. It reports threads, resident memory and address space at the start, after
# round 1 (the baseline) and at the end, and exits nonzero if an object was lost or the
# end is not flat against the baseline (tolerances and their reasons: Tolerance in
# Fuzz/Sources/TricolorSoak/main.swift). A run that does not finish within MINUTES plus
# 3 minutes is a hang: it is sent SIGABRT (the Swift runtime prints every thread's
# backtrace) and the script fails.
#
# Heaps are created and dropped by default; TRICOLOR_SOAK_DROP_HEAPS=0 and
# TRICOLOR_SOAK_DROP_COLLECTED_HEAPS=0 leave that out (see the top of main.swift).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-1}
shift $(( $# > 0 ? 1 : 0 ))
if ! [[ "$minutes" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "usage: $0 MINUTES [--threads N] [--seed S] [--round-seconds R]" >&2
    exit 2
fi

echo "soak: building TricolorSoak (release)"
(cd "$root/Fuzz" && swift build -c release --product TricolorSoak --scratch-path .build-soak 2>&1 | tail -n 3)
bin="$root/Fuzz/.build-soak/release/TricolorSoak"
[ -x "$bin" ] || { echo "soak: $bin was not built" >&2; exit 2; }

limit=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 180 }')
set +e
timeout --signal=ABRT --kill-after=30 "$limit" "$bin" "$minutes" "$@"
status=$?
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "soak: FAIL: no result within ${limit} s (a hang; status $status)"
    exit 1
fi
if [ "$status" -gt 2 ]; then
    echo "soak: FAIL: TricolorSoak died (status $status)"
    exit 1
fi
exit "$status"
