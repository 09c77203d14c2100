#!/usr/bin/env bash
# Installs the Debian packages ghrunner-vm's tests and demo need, then verifies that every
# program they use actually runs (shared by tests/run-all.sh, examples/demo.sh and .ci/run).
#
#   tests/install-deps.sh           install what is missing, repair qemu-utils, verify
#   tests/install-deps.sh --check   only verify; exit 1 naming each broken program and its fix
#
# Idempotent, and silent when everything is there. Uses sudo when not run as root.
#
# qemu-utils must come from the same QEMU release as qemu-system-x86: installing Debian 12's
# qemu-system-x86 (7.2) *removes* a newer qemu-utils (e.g. a 10.0 backport) to satisfy
# qemu-system-common's dependencies, and qemu-img is gone. So qemu-system-x86 is installed
# together with qemu-utils of its own version, and a removed or mismatched qemu-utils is
# reinstalled at the version of the installed qemu-system-x86.
set -euo pipefail

CHECK_ONLY=0
case "${1:-}" in
  "") ;;
  --check) CHECK_ONLY=1 ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# The tiny image is built from these, offline; QEMU boots it; passt gives it a network; the
# Rust build needs libssl-dev and pkg-config (ssh2); the tests use ip, ssh and mkfs.ext4; the
# egress policy (a root agent's guests reach no private network) is an nftables table.
PACKAGES=(qemu-system-x86 qemu-utils busybox-static dropbear-bin linux-image-amd64 passt
          cpio libssl-dev pkg-config iproute2 openssh-client e2fsprogs nftables)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT="${SUDO:+$SUDO }apt-get install -y"

installed_version() { # package -> version, or nothing when not installed
  { dpkg-query -W -f='${Status}\t${Version}\n' "$1" 2>/dev/null || true; } |
    awk -F'\t' '$1 ~ / installed$/ {print $2}'
}

candidate_version() { # package -> the version apt would install
  { apt-cache policy "$1" 2>/dev/null || true; } | awk '/Candidate:/ {print $2; exit}'
}

# Whether two versions are of one QEMU release (a binNMU suffix `+bN` may differ).
same_release() {
  [ "${1%+b[0-9]*}" = "${2%+b[0-9]*}" ]
}

# The available qemu-utils version of the release of qemu-system-x86 version $1.
utils_version_for() {
  local v
  for v in $(apt-cache madison qemu-utils 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}'); do
    if same_release "$v" "$1"; then
      echo "$v"
      return
    fi
  done
  echo "$1"
}

# Each program the project runs: "program|package|command that must succeed".
PROGRAMS=(
  "qemu-system-x86_64|qemu-system-x86|qemu-system-x86_64 --version"
  "qemu-img|qemu-utils|qemu-img --version"
  "passt|passt|passt --version"
  "busybox|busybox-static|busybox true"
  "dropbear|dropbear-bin|command -v dropbear"
  "dropbearkey|dropbear-bin|command -v dropbearkey"
  "cpio|cpio|cpio --version"
  "pkg-config|pkg-config|pkg-config --version"
  "openssl headers|libssl-dev|pkg-config --exists openssl"
  "ip|iproute2|ip -V"
  "ssh|openssh-client|ssh -V"
  "mkfs.ext4|e2fsprogs|mkfs.ext4 -V"
  "nft|nftables|nft --version"
)

# The exact command that fixes `package`. The two QEMU packages are pinned to one release.
fix_for() {
  local package="$1" sys
  sys="$(installed_version qemu-system-x86)"
  case "$package" in
    qemu-utils)
      if [ -n "$sys" ]; then
        echo "$APT --allow-downgrades qemu-utils=$(utils_version_for "$sys")"
        return
      fi ;;
    qemu-system-x86)
      sys="$(candidate_version qemu-system-x86)"
      if [ -n "$sys" ] && [ "$sys" != "(none)" ]; then
        echo "$APT --allow-downgrades qemu-system-x86=$sys qemu-utils=$(utils_version_for "$sys")"
        return
      fi ;;
  esac
  echo "$APT $package"
}

# Prints one line per problem (program, package, fix); returns 1 if there is any.
verify() {
  local entry program package cmd problems=0 sys utils kernel
  for entry in "${PROGRAMS[@]}"; do
    IFS='|' read -r program package cmd <<<"$entry"
    if ! bash -c "$cmd" >/dev/null 2>&1; then
      echo "error: $program does not run ($cmd failed): package $package; fix: $(fix_for "$package")" >&2
      problems=1
    fi
  done
  if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
    echo "error: $(command -v busybox) is dynamically linked: the tiny image needs busybox-static; fix: $APT busybox-static" >&2
    problems=1
  fi
  kernel=""
  for k in /boot/vmlinuz-*; do
    [ -e "$k" ] && [ -d "/lib/modules/${k#/boot/vmlinuz-}" ] && kernel="$k"
  done
  if [ -z "$kernel" ]; then
    echo "error: no /boot/vmlinuz-<version> with /lib/modules/<version> (the tiny image's kernel): package linux-image-amd64; fix: $APT linux-image-amd64" >&2
    problems=1
  fi
  sys="$(installed_version qemu-system-x86)"
  utils="$(installed_version qemu-utils)"
  if [ -n "$sys" ] && [ -n "$utils" ] && ! same_release "$sys" "$utils"; then
    echo "error: qemu-utils $utils does not match qemu-system-x86 $sys; fix: $(fix_for qemu-utils)" >&2
    problems=1
  fi
  return "$problems"
}

if [ "$CHECK_ONLY" = 1 ]; then
  if ! verify; then
    echo "(or run $0 without --check to install and repair everything)" >&2
    exit 1
  fi
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  [ -n "$(installed_version "$pkg")" ] || missing+=("$pkg")
done
sys="$(installed_version qemu-system-x86)"
utils="$(installed_version qemu-utils)"
if ((${#missing[@]})) || { [ -n "$sys" ] && ! same_release "$sys" "$utils"; }; then
  if ! command -v apt-get >/dev/null; then
    echo "error: apt-get not found; install these Debian packages yourself: ${missing[*]}" >&2
    exit 1
  fi
  echo "==> apt-get update"
  $SUDO apt-get update -qq
  install=()
  for pkg in "${missing[@]}"; do
    [ "$pkg" = qemu-utils ] || [ "$pkg" = qemu-system-x86 ] || install+=("$pkg")
  done
  # qemu-system-x86 and qemu-utils of one release, in one transaction.
  sys="${sys:-$(candidate_version qemu-system-x86)}"
  if [ -z "$sys" ] || [ "$sys" = "(none)" ]; then
    echo "error: apt has no qemu-system-x86 package; add a Debian/Ubuntu main repository" >&2
    exit 1
  fi
  [ -n "$(installed_version qemu-system-x86)" ] || install+=("qemu-system-x86=$sys")
  if [ -z "$utils" ] || ! same_release "$utils" "$sys"; then
    install+=("qemu-utils=$(utils_version_for "$sys")")
  fi
  echo "==> installing Debian packages: ${install[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --allow-downgrades "${install[@]}"
fi

if ! verify; then
  echo "error: the toolchain above is incomplete after installing; run the fix commands shown" >&2
  exit 1
fi
