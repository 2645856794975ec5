#!/usr/bin/env bash
# CI: fuzz the public API in each mode for a few minutes (TRICOLOR_FUZZ_SECONDS per mode,
# default 90), after one build. Runs every mode even if one fails; exits nonzero if any did.
#   Fuzz/ci.sh            # 3 x 90 s
#   TRICOLOR_FUZZ_SECONDS=30 Fuzz/ci.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${TRICOLOR_FUZZ_SECONDS:-90}

echo "fuzz: building TricolorFuzz (release, --sanitize=fuzzer --sanitize=address)"
if ! (cd "$here" && swift build -c release --sanitize=fuzzer --sanitize=address \
        --product TricolorFuzz --scratch-path .build-fuzz 2>&1 | grep -v "Cannot export local symbol" | tail -n 3; exit "${PIPESTATUS[0]}"); then
    echo "fuzz: build failed"
    echo "fuzz: 0 passed, 3 failed"
    exit 1
fi

passed=0
failed=0
for mode in unchecked checked checkmark; do
    if TRICOLOR_FUZZ_SKIP_BUILD=1 "$here/run.sh" "$mode" "$seconds"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
