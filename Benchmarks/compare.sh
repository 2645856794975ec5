#!/usr/bin/env bash
# Side-by-side comparison, in one session, of the reference programs in out/
# (built by build.sh) and our tricolor tool, if built.
#
#   Benchmarks/compare.sh                 # R=5 repetitions, binary-trees N=21 + GCBench
#   R=3 N=21 Benchmarks/compare.sh
#   ONLY=gcbench Benchmarks/compare.sh    # or ONLY=binarytrees
#   TRICOLOR=/path/to/tricolor Benchmarks/compare.sh
#
# Every program is timed as a whole process with /usr/bin/time -f '%e %M'
# (wall seconds, max RSS KiB). Repetitions are interleaved (rep 1 of every
# program, then rep 2, ...) so drift in machine load hits all programs alike.
# binary-trees stdout is checked against expected/binarytrees-N.txt when that
# file exists (else against the first program's output); lines starting with
# '#' (tricolor's key=value summary) are ignored for that check. A run that
# fails or prints the wrong output is reported and left out of the medians.
# GCBench output is checked loosely (exit 0, no "Failed" line; our ports must
# also print "Completed in N msec"), since it contains timings.
#
# Output: progress on stderr, a markdown table on stdout; raw per-run data in
# out/compare-<timestamp>/runs.tsv and each program's last stdout beside it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
OUT="$HERE/out"
R="${R:-5}"
N="${N:-21}"
ONLY="${ONLY:-all}"
TIMEOUT="${TIMEOUT:-900}"           # seconds per run
TRICOLOR="${TRICOLOR:-$HERE/../.build/release/tricolor}"
TIME=/usr/bin/time

note() { printf '%s\n' "$*" >&2; }

[[ "$R" =~ ^[1-9][0-9]*$ ]] || { note "R must be a positive integer"; exit 2; }
[[ "$N" =~ ^[0-9]+$ ]] || { note "N must be a non-negative integer"; exit 2; }

if [[ ! -x "$TIME" ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        note "installing GNU time (/usr/bin/time)..."
        apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
    fi
    [[ -x "$TIME" ]] || { note "need GNU time at $TIME: apt-get install -y time"; exit 1; }
fi
TIMEOUT_CMD=()
command -v timeout >/dev/null && TIMEOUT_CMD=(timeout "$TIMEOUT")

STAMP="$(date +%Y%m%d-%H%M%S)"
RUNDIR="$OUT/compare-$STAMP"
mkdir -p "$RUNDIR"
TSV="$RUNDIR/runs.tsv"
printf 'bench\tprogram\trep\twall_s\tmaxrss_kib\tstatus\n' >"$TSV"

# ------------------------------------------------------------ program table
# Each entry: bench|label|executable|args...   (fields separated by '|')
PROGS=()
add() { PROGS+=("$(IFS='|'; echo "$*")"); }
q() { printf '%q' "$1"; }

if [[ "$ONLY" == all || "$ONLY" == binarytrees ]]; then
    add binary-trees "go GOMAXPROCS=1"        "$OUT/go-binarytrees"        "GOMAXPROCS=1" "$N"
    add binary-trees "go GOMAXPROCS=2"        "$OUT/go-binarytrees"        "GOMAXPROCS=2" "$N"
    add binary-trees "c malloc/free"          "$OUT/c-binarytrees"         "" "$N"
    add binary-trees "swift ARC"              "$OUT/swift-arc-binarytrees" "" "$N"
    add binary-trees "tricolor"               "$TRICOLOR"                  "" "run binary-trees $N"
    add binary-trees "tricolor --threads 2"   "$TRICOLOR"                  "" "run binary-trees $N --threads 2"
fi
if [[ "$ONLY" == all || "$ONLY" == gcbench ]]; then
    add gcbench "go (default GOMAXPROCS)"     "$OUT/go-gcbench"            "" ""
    add gcbench "go GOMAXPROCS=1"             "$OUT/go-gcbench"            "GOMAXPROCS=1" ""
    add gcbench "c malloc/free"               "$OUT/c-gcbench"             "" ""
    add gcbench "tricolor"                    "$TRICOLOR"                  "" "run gcbench"
fi

ACTIVE=()
for p in "${PROGS[@]}"; do
    IFS='|' read -r bench label exe envs args <<<"$p"
    if [[ -x "$exe" ]]; then
        ACTIVE+=("$p")
    else
        note "skip: $bench / $label: $exe not found (run Benchmarks/build.sh, or swift build -c release for tricolor)"
    fi
done
[[ ${#ACTIVE[@]} -gt 0 ]] || { note "nothing to run"; exit 1; }

EXPECTED_BT="$HERE/expected/binarytrees-$N.txt"
REF_BT="$RUNDIR/binarytrees-reference.txt"
if [[ -f "$EXPECTED_BT" ]]; then cp "$EXPECTED_BT" "$REF_BT"; fi

note "compare.sh: R=$R N=$N on $(nproc) cores, $(uname -sr), load: $(cut -d' ' -f1-3 /proc/loadavg)"
note "results: $RUNDIR"

slug() { tr -c 'A-Za-z0-9=.-' '_' <<<"$1" | sed 's/_*$//'; }

# ------------------------------------------------------------ runs
for ((rep = 1; rep <= R; rep++)); do
    for p in "${ACTIVE[@]}"; do
        IFS='|' read -r bench label exe envs args <<<"$p"
        name="$(slug "$bench-$label")"
        cmd=(env)
        [[ -n "$envs" ]] && cmd+=("$envs")
        cmd+=("$exe")
        # shellcheck disable=SC2206  # args are plain words, split on purpose
        [[ -n "$args" ]] && cmd+=($args)
        status=ok
        if ! "${TIMEOUT_CMD[@]}" "$TIME" -f '%e %M' -o "$RUNDIR/time.txt" \
                "${cmd[@]}" >"$RUNDIR/$name.out" 2>"$RUNDIR/$name.err"; then
            status=failed
        fi
        read -r wall rss < <(tail -n 1 "$RUNDIR/time.txt" 2>/dev/null || echo "NA NA")
        [[ "$wall" =~ ^[0-9.]+$ ]] || { wall=NA; rss=NA; status=failed; }
        if [[ $status == ok && $bench == binary-trees ]]; then
            grep -v '^#' "$RUNDIR/$name.out" >"$RUNDIR/check.txt" || true
            if [[ ! -f "$REF_BT" ]]; then
                cp "$RUNDIR/check.txt" "$REF_BT"   # first program defines the reference
            elif ! cmp -s "$RUNDIR/check.txt" "$REF_BT"; then
                status=wrong-output
            fi
        fi
        if [[ $status == ok && $bench == gcbench ]]; then
            # Our reference ports must print the classic summary line; the
            # tricolor tool only has to exit 0 and not print "Failed".
            if grep -q '^Failed' "$RUNDIR/$name.out" || { [[ "$exe" != "$TRICOLOR" ]] \
                    && ! grep -q '^Completed in [0-9]* msec' "$RUNDIR/$name.out"; }; then
                status=wrong-output
            fi
        fi
        printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$bench" "$label" "$rep" "$wall" "$rss" "$status" >>"$TSV"
        note "$(printf 'rep %d/%d  %-13s %-24s %8s s %10s KiB  %s' "$rep" "$R" "$bench" "$label" "$wall" "$rss" "$status")"
        if [[ $status != ok ]]; then
            note "  command: ${cmd[*]}"
            note "  stderr (tail):"; tail -n 5 "$RUNDIR/$name.err" | sed 's/^/    /' >&2 || true
        fi
    done
done
rm -f "$RUNDIR/time.txt" "$RUNDIR/check.txt"

# ------------------------------------------------------------ table
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "NA"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

echo
echo "### compare.sh $STAMP — R=$R, binary-trees N=$N"
echo
echo "$(nproc) cores, $(uname -sr); load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
command -v go >/dev/null && echo "$(go version)"
echo
echo "| benchmark | program | ok runs | median wall s | min wall s | max wall s | median max RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|"
for p in "${ACTIVE[@]}"; do
    IFS='|' read -r bench label exe envs args <<<"$p"
    rows="$(awk -F'\t' -v b="$bench" -v l="$label" '$1==b && $2==l && $6=="ok"' "$TSV")"
    nok=0; [[ -n "$rows" ]] && nok="$(wc -l <<<"$rows")"
    if [[ $nok == 0 ]]; then
        why="$(awk -F'\t' -v b="$bench" -v l="$label" '$1==b && $2==l {print $6}' "$TSV" | sort -u | paste -sd, -)"
        echo "| $bench | $label | 0/$R | FAILED ($why) | | | |"
        continue
    fi
    walls="$(cut -f4 <<<"$rows")"
    med="$(median <<<"$walls")"
    mn="$(sort -g <<<"$walls" | head -1)"
    mx="$(sort -g <<<"$walls" | tail -1)"
    rss="$(cut -f5 <<<"$rows" | median | awk '{printf "%.1f", $1/1024}')"
    printf '| %s | %s | %d/%d | %.2f | %.2f | %.2f | %s |\n' "$bench" "$label" "$nok" "$R" "$med" "$mn" "$mx" "$rss"
done

if grep -qv -P '\tok$' <(tail -n +2 "$TSV"); then
    note "compare.sh: some runs failed or printed wrong output (see $TSV)"
    exit 1
fi
