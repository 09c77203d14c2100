#!/usr/bin/env bash
# Recipe `tiny`: a Debian kernel plus an uncompressed cpio initramfs holding busybox, dropbear
# and an /init that implements the ghrunner guest contract (see runner-images/README.md).
#
# Usage:
#   build.sh check          print one `MISSING <debian-package> <what>` line per missing
#                           prerequisite; exit 2 if any is missing
#   build.sh build OUTDIR   build the image files into OUTDIR (which must exist and be empty)
#                           and write OUTDIR/manifest.json (without checksums)
#
# Environment overrides:
#   GHRUNNER_TINY_KERNEL    kernel image to use (default: the newest /boot/vmlinuz-*)
#   GHRUNNER_TINY_MODULES   module tree of that kernel (default: /lib/modules/<version>)
#
# Progress goes to stdout as `==> [n/N] step` lines; everything else is detail.
set -euo pipefail
export LC_ALL=C

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STEPS=6
STEP=0

step() {
    STEP=$((STEP + 1))
    echo "==> [$STEP/$STEPS] $*"
}

die() {
    echo "error: $*" >&2
    exit 1
}

# The kernel to boot: the override, else the newest /boot/vmlinuz-* that has a module tree.
find_kernel() {
    if [ -n "${GHRUNNER_TINY_KERNEL:-}" ]; then
        echo "$GHRUNNER_TINY_KERNEL"
        return
    fi
    local k
    for k in /boot/vmlinuz-*; do
        [ -e "$k" ] && [ -d "/lib/modules/${k#/boot/vmlinuz-}" ] && echo "$k"
    done | sort -V | tail -n 1
}

kernel_version() {
    local name
    name="$(basename "$1")"
    echo "${name#vmlinuz-}"
}

modules_dir() {
    if [ -n "${GHRUNNER_TINY_MODULES:-}" ]; then
        echo "$GHRUNNER_TINY_MODULES"
    else
        echo "/lib/modules/$(kernel_version "$1")"
    fi
}

check() {
    local missing=0 kernel
    need_cmd() { # command package
        if ! command -v "$1" >/dev/null 2>&1; then
            echo "MISSING $2 command \`$1\` not found"
            missing=1
        fi
    }
    need_cmd busybox busybox-static
    need_cmd dropbear dropbear-bin
    need_cmd dropbearkey dropbear-bin
    need_cmd cpio cpio
    need_cmd ldd libc-bin
    need_cmd grep grep
    need_cmd perl perl-base
    need_cmd xz xz-utils
    need_cmd zstd zstd
    need_cmd gzip gzip
    if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
        echo "MISSING busybox-static \`$(command -v busybox)\` is dynamically linked"
        missing=1
    fi
    kernel="$(find_kernel)"
    if [ -z "$kernel" ]; then
        echo "MISSING linux-image-amd64 no /boot/vmlinuz-<version> with a matching /lib/modules/<version>"
        missing=1
    elif [ ! -f "$kernel" ]; then
        echo "MISSING linux-image-amd64 kernel $kernel${GHRUNNER_TINY_KERNEL:+ (from GHRUNNER_TINY_KERNEL)} does not exist"
        missing=1
    elif [ ! -r "$kernel" ]; then
        echo "MISSING linux-image-amd64 kernel $kernel is not readable by this user (run as root or make it readable)"
        missing=1
    elif [ ! -f "$(modules_dir "$kernel")/modules.dep" ]; then
        echo "MISSING linux-image-amd64 module tree $(modules_dir "$kernel") (modules.dep) not found"
        missing=1
    fi
    [ "$missing" = 0 ] || exit 2
}

# Writes the uncompressed ELF vmlinux embedded in a bzImage to $2; fails if none is found.
# The bzImage payload is one compressed stream; try each magic offset until an ELF comes out.
extract_vmlinux() {
    local img="$1" out="$2" pair magic tool off
    for pair in '\xfd7zXZ\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -dcq' '\x1f\x8b\x08:gzip -dc'; do
        magic="${pair%%:*}"
        tool="${pair#*:}"
        for off in $(grep -obUaP "$magic" "$img" | cut -d: -f1); do
            tail -c +$((off + 1)) "$img" | $tool >"$out" 2>/dev/null || true
            if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
                echo "    found a ${tool%% *} stream at offset $off"
                return 0
            fi
        done
    done
    rm -f "$out"
    return 1
}

# Prints the modules (paths relative to the module tree) needed for $@, dependencies first.
module_order() {
    local tree="$1"
    shift
    local -A seen=()
    visit() {
        local rel="$1" dep deps
        [ -z "${seen[$rel]:-}" ] || return 0
        seen[$rel]=1
        deps="$(grep -m1 "^${rel}:" "$tree/modules.dep" | cut -d: -f2)"
        for dep in $deps; do
            visit "$dep"
        done
        echo "$rel"
    }
    local name rel
    for name in "$@"; do
        if grep -q "/${name}\.ko" "$tree/modules.builtin" 2>/dev/null; then
            continue # built in: nothing to load
        fi
        rel="$(grep -m1 -E "(^|/)${name}\.ko(\.xz|\.zst|\.gz)?:" "$tree/modules.dep" | cut -d: -f1 || true)"
        [ -n "$rel" ] || die "kernel module $name is neither built in nor in $tree"
        visit "$rel"
    done
}

# Copies an executable and the shared libraries it needs into the root $2.
copy_binary() {
    local bin="$1" root="$2" lib
    install -m 0755 "$bin" "$root/bin/$(basename "$bin")"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# image_facts: the manifest's `facts` (runner-images/lib/facts.sh, shared by the recipes).
if [ -f "$RECIPE_DIR/facts.sh" ]; then
    . "$RECIPE_DIR/facts.sh"
else
    . "$RECIPE_DIR/../lib/facts.sh"
fi

build() {
    local out="$1"
    [ -d "$out" ] || die "output directory $out does not exist"
    local kernel version tree
    kernel="$(find_kernel)"
    version="$(kernel_version "$kernel")"
    tree="$(modules_dir "$kernel")"
    ROOT="$(mktemp -d "${TMPDIR:-/tmp}/ghrunner-tiny-root.XXXXXX")"
    trap 'rm -rf "$ROOT"' EXIT
    trap 'exit 130' INT TERM
    local root="$ROOT"

    step "kernel $version: extracting the uncompressed ELF from $kernel"
    local kernel_file
    if extract_vmlinux "$kernel" "$out/vmlinux"; then
        kernel_file=vmlinux
    else
        echo "    no ELF found inside $kernel; falling back to the compressed bzImage (slower boot)"
        cp "$kernel" "$out/vmlinuz"
        kernel_file=vmlinuz
    fi

    step "root filesystem: busybox applets"
    mkdir -p "$root"/{bin,dev,etc,lib,lib64,proc,sys,tmp,run,root,work,var}
    ln -s bin "$root/sbin"
    mkdir -p "$root/usr"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    install -m 0755 "$(command -v busybox)" "$root/bin/busybox"
    # One process for all ~270 links (perl-base is Essential on Debian); a loop of `ln` is
    # seconds on a busy machine.
    busybox --list | grep -vx busybox | (cd "$root/bin" && perl -nle 'symlink("busybox", $_) or die "$_: $!\n"')
    echo "    $(busybox --list | grep -cvx busybox) applets"

    step "ssh server: dropbear and its libraries"
    copy_binary "$(command -v dropbear)" "$root"
    copy_binary "$(command -v dropbearkey)" "$root"

    step "kernel modules for virtio net, block, console and rng"
    mkdir -p "$root/lib/modules"
    local rel name order=()
    mapfile -t order < <(module_order "$tree" virtio_pci virtio_net virtio_blk virtio_console virtio-rng)
    : >"$root/etc/modules.order"
    for rel in "${order[@]}"; do
        name="$(basename "$rel")"
        case "$name" in
        *.ko.xz) xz -dc "$tree/$rel" >"$root/lib/modules/${name%.xz}" ;;
        *.ko.zst) zstd -dcq "$tree/$rel" >"$root/lib/modules/${name%.zst}" ;;
        *.ko.gz) gzip -dc "$tree/$rel" >"$root/lib/modules/${name%.gz}" ;;
        *) cp "$tree/$rel" "$root/lib/modules/$name" ;;
        esac
        name="${name%.xz}"
        name="${name%.zst}"
        name="${name%.gz}"
        echo "$name" >>"$root/etc/modules.order"
        echo "    $name"
    done

    step "guest contract: /init and configuration"
    install -m 0755 "$RECIPE_DIR/init" "$root/init"
    install -m 0755 "$RECIPE_DIR/udhcpc.script" "$root/etc/udhcpc.script"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    printf '/bin/sh\n/bin/ash\n' >"$root/etc/shells"
    echo ghrunner >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 ghrunner\n' >"$root/etc/hosts"
    echo '::shutdown:/bin/umount -a -r' >"$root/etc/inittab"
    chmod 0700 "$root/root"
    chmod 1777 "$root/tmp"

    step "initramfs: packing an uncompressed cpio archive"
    (cd "$root" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
        >"$out/initramfs.cpio"
    echo "    $(du -h "$out/initramfs.cpio" | cut -f1) initramfs.cpio"

    cat >"$out/manifest.json" <<EOF
{
  "name": "tiny",
  "arch": "x86_64",
  "kernel": "$kernel_file",
  "initrd": "initramfs.cpio",
  "cmdline": "console=ttyS0 quiet panic=-1",
  "user": "root",
  "shell": "sh",
  "work_dir": "/work",
  "kernel_version": "$version",
  "facts": $(image_facts "$root")
}
EOF
}

case "${1:-}" in
check) check ;;
build)
    [ $# -eq 2 ] || die "usage: build.sh build OUTDIR"
    check >/dev/null || die "prerequisites are missing; run \`build.sh check\`"
    build "$2"
    ;;
*) die "usage: build.sh check | build.sh build OUTDIR" ;;
esac
