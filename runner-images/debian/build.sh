#!/usr/bin/env bash
# Recipe `debian`: a Debian 12 (bookworm) root filesystem made with debootstrap (bash, git, curl,
# build-essential, python3, openssh-server, sudo, a `runner` user with passwordless sudo), packed
# into an ext4 filesystem in a qcow2 template, plus the guest's own kernel and initrd for direct
# boot (root=/dev/vda). A systemd unit implements the ghrunner guest contract.
#
# Usage:
#   build.sh check          print one `MISSING <debian-package> <what>` line per missing
#                           prerequisite; exit 2 if any is missing
#   build.sh build OUTDIR   build into OUTDIR (empty) and write OUTDIR/manifest.json
#
# Needs root (debootstrap, chroot) and the network (a Debian mirror).
#
# Environment overrides:
#   GHRUNNER_DEBIAN_MIRROR  mirror URL (default: the host's apt mirror, else deb.debian.org)
#   GHRUNNER_DEBIAN_SUITE   suite (default: bookworm)
#   GHRUNNER_DEBIAN_FREE_MIB  free space left in the root filesystem (default: 2048)
set -euo pipefail
export LC_ALL=C

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE="${GHRUNNER_DEBIAN_SUITE:-bookworm}"
FREE_MIB="${GHRUNNER_DEBIAN_FREE_MIB:-2048}"
PACKAGES=(
    systemd-sysv udev dbus systemd-resolved kmod iproute2 iputils-ping netbase procps
    linux-image-amd64 initramfs-tools e2fsprogs
    openssh-server sudo bash ca-certificates curl wget git build-essential python3
    jq unzip zip xz-utils zstd less
)
STEPS=7
STEP=0
ROOT=""

step() {
    STEP=$((STEP + 1))
    echo "==> [$STEP/$STEPS] $*"
}

die() {
    echo "error: $*" >&2
    exit 1
}

# The first http(s) Debian mirror of the host's apt sources, else deb.debian.org.
host_mirror() {
    local uri
    uri="$(grep -hoE '^(URIs:|deb) *https?://[^ ]*/debian/?( |$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        2>/dev/null | grep -oE 'https?://[^ ]*' | head -n 1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

check() {
    local missing=0
    need_cmd() { # command package
        if ! command -v "$1" >/dev/null 2>&1; then
            echo "MISSING $2 command \`$1\` not found"
            missing=1
        fi
    }
    need_cmd debootstrap debootstrap
    need_cmd mkfs.ext4 e2fsprogs
    need_cmd qemu-img qemu-utils
    need_cmd xz xz-utils
    need_cmd zstd zstd
    need_cmd grep grep
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || {
        echo "MISSING debian-archive-keyring /usr/share/keyrings/debian-archive-keyring.gpg not found"
        missing=1
    }
    [ "$missing" = 0 ] || exit 2
    if [ "$(id -u)" != 0 ]; then
        echo "the debian recipe must run as root (debootstrap and chroot need it)" >&2
        exit 1
    fi
}

# Unmounts whatever debootstrap or we mounted under the root, then removes it (never crossing
# into another filesystem).
cleanup() {
    [ -n "$ROOT" ] && [ -d "$ROOT" ] || return 0
    local mnt
    for mnt in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts |
        sort -r); do
        umount -l "$mnt" 2>/dev/null || true
    done
    rm -rf --one-file-system "$ROOT"
}

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

in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
}

configure() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    echo ghrunner >"$ROOT/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 ghrunner\n' >"$ROOT/etc/hosts"
    echo '/dev/vda / ext4 defaults,noatime,errors=remount-ro 0 0' >"$ROOT/etc/fstab"

    in_root useradd --create-home --shell /bin/bash --groups sudo runner
    # `*`: no password, yet not "locked", so sshd accepts the key.
    in_root usermod --password '*' runner
    echo 'runner ALL=(ALL) NOPASSWD:ALL' >"$ROOT/etc/sudoers.d/runner"
    chmod 0440 "$ROOT/etc/sudoers.d/runner"

    mkdir -p "$ROOT/etc/systemd/network"
    printf '[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n' >"$ROOT/etc/systemd/network/eth0.network"
    in_root systemctl enable systemd-networkd.service systemd-resolved.service
    ln -sf /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"

    cat >"$ROOT/etc/ssh/sshd_config.d/ghrunner.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
X11Forwarding no
EOF
    rm -f "$ROOT"/etc/ssh/ssh_host_*
    # sshd is started by the contract unit once the fresh host key exists.
    in_root systemctl disable ssh.service
    install -m 0755 "$RECIPE_DIR/ghrunner-guest.sh" "$ROOT/usr/local/sbin/ghrunner-guest"
    install -m 0644 "$RECIPE_DIR/ghrunner-guest.service" \
        "$ROOT/etc/systemd/system/ghrunner-guest.service"
    in_root systemctl enable ghrunner-guest.service
    # A CI guest needs no graphical target and no periodic maintenance jobs.
    in_root systemctl set-default multi-user.target
    in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer fstrim.timer
    # No login prompt on the serial console: it carries the contract lines.
    ln -sf /dev/null "$ROOT/etc/systemd/system/serial-getty@ttyS0.service"

    # A small initrd: only what mounting /dev/vda needs.
    sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
    printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >>"$ROOT/etc/initramfs-tools/modules"
    in_root update-initramfs -u -k all
    in_root apt-get clean
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/* "$ROOT"/var/log/*.log
}

# image_facts: the manifest's `facts` (runner-images/lib/facts.sh, shared by the recipes).
if [ -f "$RECIPE_DIR/facts.sh" ]; then
    . "$RECIPE_DIR/facts.sh"
else
    . "$RECIPE_DIR/../lib/facts.sh"
fi

build() {
    local out="$1" mirror kernel version kernel_file
    [ -d "$out" ] || die "output directory $out does not exist"
    mirror="${GHRUNNER_DEBIAN_MIRROR:-$(host_mirror)}"
    ROOT="$(mktemp -d "${TMPDIR:-/var/tmp}/ghrunner-debian-root.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    step "debootstrap $SUITE from $mirror (downloads a few hundred MiB; minutes)"
    debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        "$SUITE" "$ROOT" "$mirror"

    step "configuring: runner user, network, sshd, guest contract unit, initrd"
    configure

    step "kernel: extracting the uncompressed ELF"
    kernel="$(ls -1 "$ROOT"/boot/vmlinuz-* | sort -V | tail -n 1)"
    version="${kernel##*/vmlinuz-}"
    if extract_vmlinux "$kernel" "$out/vmlinux"; then
        kernel_file=vmlinux
    else
        echo "    no ELF found; using the compressed bzImage"
        cp "$kernel" "$out/vmlinuz"
        kernel_file=vmlinuz
    fi
    cp "$ROOT/boot/initrd.img-$version" "$out/initrd.img"

    step "unmounting the build root"
    local mnt
    for mnt in $(awk -v r="$ROOT" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$mnt"
    done

    local used size
    used="$(du -sm --apparent-size "$ROOT" | cut -f1)"
    size=$((used * 11 / 10 + FREE_MIB))
    step "ext4 filesystem: ${used} MiB of files in ${size} MiB"
    mkfs.ext4 -q -F -L ghrunner-root -E root_owner=0:0 -d "$ROOT" "$out/disk.raw" "${size}M"

    step "qcow2 template"
    qemu-img convert -f raw -O qcow2 "$out/disk.raw" "$out/disk.qcow2"
    rm -f "$out/disk.raw"
    echo "    $(du -h "$out/disk.qcow2" | cut -f1) disk.qcow2 (virtual ${size} MiB)"

    step "manifest"
    cat >"$out/manifest.json" <<EOF
{
  "name": "debian",
  "arch": "x86_64",
  "disk": "disk.qcow2",
  "kernel": "$kernel_file",
  "initrd": "initrd.img",
  "cmdline": "console=ttyS0 root=/dev/vda rw net.ifnames=0 quiet",
  "user": "runner",
  "shell": "bash",
  "work_dir": "/home/runner/_work",
  "kernel_version": "$version",
  "facts": $(image_facts "$ROOT")
}
EOF
}

case "${1:-}" in
check) check ;;
build)
    [ $# -eq 2 ] || die "usage: build.sh build OUTDIR"
    check >/dev/null
    build "$2"
    ;;
*) die "usage: build.sh check | build.sh build OUTDIR" ;;
esac
