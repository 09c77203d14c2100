//! Boots the `tiny` image under QEMU (TCG) exactly as the guest contract describes, without the
//! VM backend: kernel + initrd + `ghrunner.ssh_key=`, user networking with a forwarded port,
//! then checks the serial contract lines and runs commands over SSH with the pinned host key.
//! Needs `qemu-system-x86_64` (Debian package qemu-system-x86).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ghrunner_vm::image::Image;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// How long the guest may take to print GHRUNNER-READY under TCG on a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Kills QEMU when the test ends, whatever the outcome.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn boot(image: &Image, authorized_line: &str, port: u16) -> (Qemu, mpsc::Receiver<String>) {
    let m = &image.manifest;
    let cmdline = format!(
        "{} ghrunner.ssh_key={}",
        m.cmdline.as_deref().unwrap_or("console=ttyS0"),
        B64.encode(authorized_line)
    );
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-display", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(image.path(m.kernel.as_deref().unwrap()))
        .arg("-initrd")
        .arg(image.path(m.initrd.as_deref().unwrap()))
        .args(["-append", &cmdline])
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
        ])
        .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run qemu-system-x86_64 (install the Debian package qemu-system-x86): {e}"
            )
        });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Qemu(child), rx)
}

/// Waits for the contract lines; returns the host key (type, blob) and the console so far.
fn wait_ready(rx: &mpsc::Receiver<String>) -> ((String, String), Vec<String>) {
    let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
    let mut console = Vec::new();
    let mut host_key = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| {
            panic!(
                "no GHRUNNER-READY within {BOOT_TIMEOUT:?} ({e}); console:\n{}",
                console.join("\n")
            )
        });
        // Firmware output may precede the line on the same row.
        if let Some(pos) = line.find("GHRUNNER-HOSTKEY ") {
            let mut words = line[pos..].split_whitespace().skip(1);
            let kind = words.next().unwrap_or_default().to_string();
            let blob = words.next().unwrap_or_default().to_string();
            host_key = Some((kind, blob));
        }
        let ready = line.ends_with("GHRUNNER-READY");
        console.push(line);
        if ready {
            let key = host_key.unwrap_or_else(|| {
                panic!(
                    "READY before any GHRUNNER-HOSTKEY line:\n{}",
                    console.join("\n")
                )
            });
            return (key, console);
        }
    }
}

fn run(session: &ssh2::Session, command: &str) -> (String, i32) {
    let mut channel = session.channel_session().unwrap();
    channel.exec(command).unwrap();
    let mut out = String::new();
    channel.read_to_string(&mut out).unwrap();
    channel.wait_close().unwrap();
    (out, channel.exit_status().unwrap())
}

#[test]
fn tiny_boots_to_ready_and_serves_ssh_with_the_announced_host_key() {
    let image = Image::load(&support::image::tiny_image()).unwrap();
    let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
    let authorized = key.public_key().to_openssh().unwrap();
    let port = free_port();
    let (_qemu, console) = boot(&image, &authorized, port);
    let ((kind, blob), lines) = wait_ready(&console);
    assert_eq!(kind, "ssh-ed25519", "console:\n{}", lines.join("\n"));
    let announced = B64.decode(&blob).expect("the host key blob is base64");

    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut session = ssh2::Session::new().unwrap();
    session.set_tcp_stream(tcp);
    session.set_timeout(30_000);
    session.handshake().unwrap();
    let (presented, _) = session.host_key().unwrap();
    assert_eq!(
        presented,
        announced.as_slice(),
        "the server's host key is not the announced one"
    );
    let methods = session.auth_methods("root").unwrap().to_string();
    assert_eq!(
        methods, "publickey",
        "only public key logins may be offered"
    );

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("id");
    std::fs::write(
        &key_file,
        key.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    session
        .userauth_pubkey_file("root", None, Path::new(&key_file), None)
        .unwrap();
    assert!(session.authenticated());

    let (out, code) = run(&session, "echo \"$0\"; uname -sn; id -u; cd /work && pwd");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "sh\nLinux ghrunner\n0\n/work\n");
    let (out, code) = run(
        &session,
        "printf 'b\\na\\n' | sort | sha256sum | cut -c1-8; exit 7",
    );
    assert_eq!(
        (out.as_str(), code),
        ("911169dd\n", 7),
        "pipelines and exit codes pass through"
    );
    let (out, _) = run(&session, "ip -4 -o addr show dev eth0 | awk '{print $4}'");
    assert!(
        out.trim().contains('/'),
        "eth0 has no DHCP address: {out:?}"
    );
}
