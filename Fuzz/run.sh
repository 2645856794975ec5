#!/usr/bin/env bash
# Fuzz Tricolor's public API for a bounded time in one mode.
#
#   Fuzz/run.sh MODE SECONDS [libFuzzer flags...]
#     MODE: unchecked (default) | checked (GODEBUG=tricolorcheck=1) | checkmark (GODEBUG=gccheckmark=1)
#
# Builds the fuzzer if needed (release, ASan + libFuzzer, in Fuzz/.build-fuzz), runs it on a
# copy of Fuzz/corpus in a temporary folder (the committed corpus is never modified) and
# prints libFuzzer's final statistics, the driver's operation counts and one last line:
#   fuzz MODE: PASS <executions> executions, <operations> operations in <seconds> s
# Exit status is nonzero on a finding (crash, trap, runtime fatal error, timeout, leak,
# out-of-memory). The input is then saved under Fuzz/.build-fuzz/findings/ and the path
# printed; re-run it with
#   GODEBUG=... TRICOLOR_FUZZ_TRACE=1 Fuzz/.build-fuzz/release/TricolorFuzz FILE
# Environment: TRICOLOR_FUZZ_* flags (see Sources/TricolorFuzz/Fuzzer.swift), GOGC,
# GOMEMLIMIT and GODEBUG pass through to the heap.
set -euo pipefail

mode=${1:-unchecked}
seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
here=$(cd "$(dirname "$0")" && pwd)

case "$mode" in
    unchecked) debug="" ;;
    checked) debug="tricolorcheck=1" ;;
    checkmark) debug="gccheckmark=1" ;;
    *) echo "usage: $0 unchecked|checked|checkmark SECONDS [libFuzzer flags...]" >&2; exit 2 ;;
esac
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 MODE SECONDS: SECONDS must be a whole number" >&2
    exit 2
fi

bin="$here/.build-fuzz/release/TricolorFuzz"
if [ "${TRICOLOR_FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    echo "fuzz: building TricolorFuzz (release, --sanitize=fuzzer --sanitize=address)"
    (cd "$here" && swift build -c release --sanitize=fuzzer --sanitize=address \
        --product TricolorFuzz --scratch-path .build-fuzz 2>&1 | grep -v "Cannot export local symbol" | tail -n 3)
fi
[ -x "$bin" ] || { echo "fuzz: $bin was not built" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tricolor-fuzz-$mode.XXXXXX")
findings="$here/.build-fuzz/findings/$mode"
mkdir -p "$work/corpus" "$findings"
cp "$here"/corpus/* "$work/corpus/"
log="$work/fuzz.log"

godebug="${GODEBUG:-}"
if [ -n "$debug" ]; then godebug="${godebug:+$godebug,}$debug"; fi

echo "fuzz $mode: ${seconds}s, GODEBUG=$godebug, corpus copied to $work/corpus"
start=$(date +%s)
set +e
# -detect_leaks=0: libFuzzer's leak check after each input that mallocs more than it
#   frees costs ~40x the throughput here; LeakSanitizer still checks at exit (lsan.supp).
# -max_len=1024 -len_control=0: programs of up to ~250 operations from the start.
# -timeout=60: an input running a minute is a hang (a finding).
env GODEBUG="$godebug" GOTRACEBACK=crash SWIFT_BACKTRACE=enable=no \
    LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0}" \
    "$bin" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=60 \
    -max_len=1024 -len_control=0 -detect_leaks=0 -print_final_stats=1 \
    -artifact_prefix="$findings/" "$@" "$work/corpus" >"$log" 2>&1
status=$?
set -e
elapsed=$(( $(date +%s) - start ))

grep -E '^(tricolor-fuzz:|stat::|Done |INFO: seed corpus)' "$log" || true
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
ops=$(sed -n 's/^tricolor-fuzz: [0-9]* inputs, \([0-9]*\) operations.*/\1/p' "$log" | tail -n 1)
if [ "$status" -eq 0 ]; then
    echo "fuzz $mode: PASS ${execs:-?} executions, ${ops:-?} operations in ${elapsed} s"
    rm -rf "$work"
    exit 0
fi
# A finding: show what happened and where the input is.
echo "---- last lines of $log ----"
grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)|NEW_FUNC' "$log" | tail -n 60
artifact=$(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log" | tail -n 1)
echo "fuzz $mode: FAIL (status $status) after ${elapsed} s, ${execs:-?} executions; input: ${artifact:-none saved}; full log: $log"
echo "  reproduce: GODEBUG=$godebug GOTRACEBACK=crash TRICOLOR_FUZZ_TRACE=1 SWIFT_BACKTRACE=enable=no $bin ${artifact:-FILE}"
exit 1
