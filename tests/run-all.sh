#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every check.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
