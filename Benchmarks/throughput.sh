#!/usr/bin/env bash
# binary-trees N (default 21) with one mutator, side by side in one session: Tricolor,
# C with mimalloc (Debian's libmimalloc-dev, preloaded), C with glibc malloc, Java 17
# with the Serial collector, Go 1.19. Wall and CPU (user+sys) per run, R rounds
# (default 3) interleaved, output checked against expected/. Prints one line per run.
#
#   Benchmarks/throughput.sh            # needs gcc, javac/java, go, libmimalloc
#   R=5 N=21 Benchmarks/throughput.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N="${N:-21}"; R="${R:-3}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
gcc -O2 -o "$OUT/c-bt" "$HERE/c/binarytrees.c"
javac -d "$OUT/java" "$HERE/java/BinaryTrees.java"
(cd "$HERE/go/binarytrees" && GO111MODULE=off go build -o "$OUT/go-bt" .)
MIMALLOC="$(ls /usr/lib/*/libmimalloc.so.2 2>/dev/null | head -1)"
TRICOLOR="${TRICOLOR:-$HERE/../.build/release/tricolor}"
EXPECTED="$HERE/expected/binarytrees-$N.txt"
run() {
    local name="$1"; shift
    /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" "$@" > "$OUT/stdout" 2>/dev/null
    if [ -f "$EXPECTED" ] && ! grep -v '^#' "$OUT/stdout" | diff -q - "$EXPECTED" >/dev/null; then echo "$name: WRONG OUTPUT"; return; fi
    read -r wall user sys rss < "$OUT/time"
    echo "$name wall_s=$wall cpu_s=$(echo "$user + $sys" | bc) maxrss_mib=$((rss / 1024)) load=$(cut -d' ' -f1 /proc/loadavg)"
}
for r in $(seq 1 "$R"); do
    echo "# round $r $(date +%T)"
    run tricolor "$TRICOLOR" run binary-trees "$N"
    [ -n "$MIMALLOC" ] && run c-mimalloc env LD_PRELOAD="$MIMALLOC" "$OUT/c-bt" "$N"
    run c-glibc "$OUT/c-bt" "$N"
    run java-serial java -XX:+UseSerialGC -cp "$OUT/java" BinaryTrees "$N"
    run go-1.19 "$OUT/go-bt" "$N"
done
