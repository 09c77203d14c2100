#!/bin/bash
# The ghrunner guest contract of the debian image, run once per boot by ghrunner-guest.service
# (after the network is online):
#   job key from ghrunner.ssh_key= -> fresh ed25519 host key -> GHRUNNER-HOSTKEY on ttyS0
#   -> sshd -> GHRUNNER-READY on ttyS0 once sshd listens and eth0 has an address.
set -u
SERIAL=/dev/ttyS0
USER_NAME=runner
HOME_DIR=/home/$USER_NAME
# How long sshd and eth0 may take to come up, in tenths of a second.
READY_POLLS=600

say() {
    echo "$*" >"$SERIAL"
}

key=""
for word in $(cat /proc/cmdline); do
    case "$word" in
    ghrunner.ssh_key=*) key="${word#ghrunner.ssh_key=}" ;;
    esac
done
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$HOME_DIR/.ssh"
rm -f "$HOME_DIR/.ssh/authorized_keys"
if [ -n "$key" ] && printf '%s' "$key" | base64 -d >"$HOME_DIR/.ssh/authorized_keys" 2>/dev/null; then
    chown "$USER_NAME:$USER_NAME" "$HOME_DIR/.ssh/authorized_keys"
    chmod 0600 "$HOME_DIR/.ssh/authorized_keys"
else
    rm -f "$HOME_DIR/.ssh/authorized_keys"
    say "ghrunner: no valid ghrunner.ssh_key= on the kernel command line; nobody can log in"
fi
install -d -o "$USER_NAME" -g "$USER_NAME" "$HOME_DIR/_work"

# The job's overlay may be larger than the template: grow the root filesystem into it.
resize2fs /dev/vda >/dev/null 2>&1 || true

rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C '' -f /etc/ssh/ssh_host_ed25519_key
read -r type blob _ </etc/ssh/ssh_host_ed25519_key.pub
say "GHRUNNER-HOSTKEY $type $blob"

systemctl start ssh.service
for _ in $(seq "$READY_POLLS"); do
    if [ -n "$(ss -Hltn 'sport = :22')" ] && ip -4 -o addr show dev eth0 | grep -q ' inet '; then
        say "GHRUNNER-READY"
        exit 0
    fi
    sleep 0.1
done
say "ghrunner: sshd or eth0 did not come up"
exit 1
