#!/usr/bin/env bash
# The README's first command: runs a real workflow job (examples/hello.yml) through the real
# runner protocol, against the embedded local GitHub service, in a fresh QEMU VM from the tiny
# image. Installs the Debian packages it needs when missing (apt-get, with sudo if not root),
# builds ghrunner-vm, builds the tiny image on first use, then prints the job's logs and result.
#
#   examples/demo.sh [--workflow FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found: install Rust 1.85 or newer (https://rustup.rs)" >&2
  exit 1
fi
echo "==> building ghrunner-vm"
cargo build --quiet
exec target/debug/ghrunner-vm demo "$@"
