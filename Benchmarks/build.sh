#!/usr/bin/env bash
# Builds the comparison programs into Benchmarks/out/ and checks that every
# binary-trees program prints, for N=10, byte-for-byte expected/binarytrees-10.txt.
#
#   Benchmarks/build.sh            build + check
#   SKIP_SWIFT=1 Benchmarks/build.sh   (skip the swiftc build, e.g. while swift is busy)
#
# Needs: gcc, Go (Debian 12: apt-get install -y golang-go; Go 1.19, built with
# GO111MODULE=off, no module downloads), swiftc. A missing toolchain is
# reported and makes the script exit non-zero after building the rest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
OUT="$HERE/out"
mkdir -p "$OUT"

CC="${CC:-gcc}"
CFLAGS="${CFLAGS:--O2}"
SWIFTC="${SWIFTC:-swiftc}"
TRICOLOR="${TRICOLOR:-$HERE/../.build/release/tricolor}"
EXPECTED="$HERE/expected/binarytrees-10.txt"

status=0
note() { printf '%s\n' "$*" >&2; }
fail() { note "FAIL: $*"; status=1; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- build
if have go; then
    note "go:    $(go version)"
    for prog in binarytrees gcbench liveheap; do
        GO111MODULE=off go build -o "$OUT/go-$prog" "go/$prog/main.go" \
            || fail "go build go/$prog"
    done
else
    fail "go not found (apt-get update && apt-get install -y golang-go)"
fi

if have "$CC"; then
    note "cc:    $("$CC" --version | head -1)"
    "$CC" $CFLAGS -Wall -o "$OUT/c-binarytrees" c/binarytrees.c || fail "cc c/binarytrees.c"
    "$CC" $CFLAGS -Wall -o "$OUT/c-gcbench" c/gcbench.c || fail "cc c/gcbench.c"
else
    fail "$CC not found"
fi

if [[ "${SKIP_SWIFT:-0}" == 1 ]]; then
    note "swift: skipped (SKIP_SWIFT=1)"
elif have "$SWIFTC"; then
    note "swift: $("$SWIFTC" --version 2>&1 | head -1)"
    # -module-cache-path keeps the module cache inside out/ (gitignored).
    "$SWIFTC" -O -wmo -module-cache-path "$OUT/.swift-module-cache" \
        -o "$OUT/swift-arc-binarytrees" swift-arc/binarytrees.swift \
        || fail "swiftc swift-arc/binarytrees.swift"
else
    fail "swiftc not found"
fi

# ---------------------------------------------------------------- check N=10
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# check_bt [--strip-hash] label command... : runs "command... 10" and compares
# its stdout byte-for-byte with the expected file. --strip-hash first drops
# lines starting with '#' (the tricolor tool's trailing key=value line).
check_bt() {
    local strip=0
    if [[ "$1" == --strip-hash ]]; then strip=1; shift; fi
    local label="$1"; shift
    if ! "$@" 10 >"$TMP/raw"; then
        fail "$label exited non-zero"; return 0
    fi
    if [[ $strip == 1 ]]; then grep -v '^#' "$TMP/raw" >"$TMP/got" || true
    else cp "$TMP/raw" "$TMP/got"; fi
    if cmp -s "$TMP/got" "$EXPECTED"; then
        note "ok:    $label 10 matches expected/binarytrees-10.txt"
    else
        fail "$label 10 output differs from expected/binarytrees-10.txt:"
        diff "$TMP/got" "$EXPECTED" >&2 || true
    fi
}

[[ -x "$OUT/go-binarytrees" ]] && {
    check_bt "GOMAXPROCS=1 go-binarytrees" env GOMAXPROCS=1 "$OUT/go-binarytrees"
    check_bt "GOMAXPROCS=2 go-binarytrees" env GOMAXPROCS=2 "$OUT/go-binarytrees"
}
[[ -x "$OUT/c-binarytrees" ]] && check_bt "c-binarytrees" "$OUT/c-binarytrees"
[[ -x "$OUT/swift-arc-binarytrees" ]] && check_bt "swift-arc-binarytrees" "$OUT/swift-arc-binarytrees"
# Our own tool, if it has been built (`swift build -c release` at the package
# root). Its trailing '#' line is ignored.
if [[ -x "$TRICOLOR" ]]; then
    check_bt --strip-hash "tricolor run binary-trees" "$TRICOLOR" run binary-trees
else
    note "skip:  $TRICOLOR not built"
fi

# GCBench: quick sanity run (about 1 s each).
for g in go-gcbench c-gcbench; do
    [[ -x "$OUT/$g" ]] || continue
    if res="$("$OUT/$g")" && grep -q '^Completed in [0-9]* msec$' <<<"$res" \
        && ! grep -q '^Failed' <<<"$res" \
        && [[ "$(grep -c '^Creating [0-9]* trees of depth' <<<"$res")" == 7 ]]; then
        note "ok:    $g ($(grep '^Completed' <<<"$res"))"
    else
        fail "$g output unexpected"; printf '%s\n' "$res" >&2
    fi
done

[[ $status == 0 ]] && note "build.sh: all built and checked in $OUT" || note "build.sh: FAILED (see above)"
exit $status
