#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then runs every check:
# formatting, clippy with -D warnings, and the whole test suite, including the VM end-to-end
# tests that boot the tiny image under QEMU (TCG).
#
#   tests/run-all.sh            # everything
#   GHRUNNER_VM_CONFORMANCE_DIR=/path/to/actions-languageservices tests/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need (the tiny image is built from them, offline), then a check
# that every program really runs: a broken toolchain fails here, not as skipped VM tests.
tests/install-deps.sh
tests/install-deps.sh --check

# GitHub's expression corpus must be present: the conformance test reads it from here.
corpus="${GHRUNNER_VM_CONFORMANCE_DIR:-$PWD/../shared/conformance/actions-languageservices}"
if [ ! -d "$corpus/expressions" ]; then
  echo "error: the expression conformance corpus is missing at $corpus/expressions" >&2
  echo "       (set GHRUNNER_VM_CONFORMANCE_DIR to the actions-languageservices directory)" >&2
  exit 1
fi
export GHRUNNER_VM_CONFORMANCE_DIR="$corpus"

# The real action tarballs (actions/checkout, a hello-world JavaScript action) the `uses:` tests
# unpack: read from ../shared, never copied into this repository.
actions="${GHRUNNER_VM_ACTIONS_DIR:-$PWD/../shared/conformance/actions}"
if [ ! -f "$actions/SOURCE" ]; then
  echo "error: the action tarballs are missing at $actions (no SOURCE file)" >&2
  echo "       (set GHRUNNER_VM_ACTIONS_DIR to the conformance actions directory)" >&2
  exit 1
fi
export GHRUNNER_VM_ACTIONS_DIR="$actions"

# KVM hangs on some hosts with broken nested virtualisation; the runner probes for that, and the
# tests force TCG unless told otherwise so that a broken KVM cannot stall them.
export GHRUNNER_VM_ACCEL="${GHRUNNER_VM_ACCEL:-tcg}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings (with and without the test hooks)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features test-hooks -- -D warnings
echo "==> cargo test (the test-hooks feature enables the hidden switches the tests use)"
cargo test --all-targets --features test-hooks
cargo test --doc
