#!/usr/bin/env bash
#
# Runs every test of the project on a fresh Debian/Ubuntu machine:
# installs what the tests need, builds the release binary, runs the Rust
# unit and integration tests, then the iotests for raw and qcow2.
# The last line is the iotests' "N passed, N failed[, N skipped]" summed
# over both formats; the exit status is non-zero if anything failed.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -u
cd "$(dirname "$0")/.." || exit 1

. scripts/install-deps.sh || exit 1

failed=0

# One profile for the binary and the tests, so dependencies build once.
echo "== cargo build --release"
cargo build --release --bin qemu-system-x86_64 || exit 1

echo "== cargo test --workspace --release"
cargo test --workspace --release 2>&1 | tee target/cargo-test.log | grep -E '^test result:|FAILED|panicked' 
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "cargo test failed (see target/cargo-test.log)"; failed=1; }

export QEMU_PROG="$PWD/target/release/qemu-system-x86_64"
pass=0 fail=0 skip=0
for fmt in raw qcow2; do
    echo "== tests/qemu-iotests/check -$fmt"
    tests/qemu-iotests/check "-$fmt" 2>&1 | tee "target/iotests-$fmt.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
    line=$(tail -1 "target/iotests-$fmt.log")
    p=$(sed -n 's/^\([0-9]\+\) passed.*/\1/p' <<<"$line")
    f=$(sed -n 's/.* \([0-9]\+\) failed.*/\1/p' <<<"$line")
    s=$(sed -n 's/.* \([0-9]\+\) skipped.*/\1/p' <<<"$line")
    if [ -z "$p" ] || [ -z "$f" ]; then
        echo "test-all: check -$fmt did not finish"
        failed=1
        continue
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
done

if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$failed" -eq 0 ] && [ "$fail" -eq 0 ]
