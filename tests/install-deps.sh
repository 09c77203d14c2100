#!/usr/bin/env bash
# Installs the Debian packages ghrunner-vm's tests and demo need, if any is missing (shared by
# tests/run-all.sh and examples/demo.sh). Uses sudo when not run as root.
#
#   tests/install-deps.sh
set -euo pipefail

# The tiny image is built from these, offline; QEMU boots it; passt gives it a network.
PACKAGES=(qemu-system-x86 qemu-utils busybox-static dropbear-bin linux-image-amd64 passt
          cpio libssl-dev pkg-config iproute2 openssh-client e2fsprogs)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! command -v apt-get >/dev/null; then
    echo "error: apt-get not found; install these packages yourself: ${missing[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
