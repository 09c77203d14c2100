//! The egress policy end to end: a job's guest reaches neither link-local nor private addresses
//! nor the agent host's own addresses, and does reach what `network.allow` opens.
//!
//! Everything happens inside two network namespaces this test creates (nothing outside them is
//! contacted): `A` plays the agent's host, `B` its network. A veth pair joins them (the kernels
//! these tests run on have no `dummy` link type; a veth end carries the addresses just as well):
//!
//! ```text
//!   A: v0 10.99.0.2/24, 169.254.10.2/16, 198.51.100.1/32 (the host's own, publicly routable)
//!   B: v1 10.99.0.1/24, 169.254.10.1/16 (the default gateway of A)
//! ```
//!
//! Listeners: 169.254.10.1:9001 (link-local), 10.99.0.1:9002 (private), 198.51.100.1:9003 (the
//! host's own address, in A), 10.99.0.1:9004 (private, but on `network.allow`). `ghrunner-vm
//! demo` runs inside A with that config; its job's guest connects to each. Needs root (network
//! namespaces, nftables) and the packages of `tests/install-deps.sh`: fails naming what is
//! missing.

mod support;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const WORKFLOW: &str = r#"name: egress
on: push
jobs:
  probe:
    runs-on: [self-hosted]
    steps:
      - name: Connect to each listener
        run: |
          for target in 169.254.10.1:9001 10.99.0.1:9002 198.51.100.1:9003 10.99.0.1:9004; do
            out=$(timeout 8 nc -w 3 "${target%:*}" "${target#*:}" </dev/null 2>&1) || true
            echo "probe $target: $out"
          done
"#;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.0];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (package iproute2) runs");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

/// A TCP listener inside a namespace that answers each connection with its own name.
struct Listener {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(netns: &str, addr: &str, name: &'static str) -> Listener {
        let path = format!("/run/netns/{netns}");
        let addr: SocketAddr = addr.parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                // This thread alone enters the namespace; the socket stays in it.
                let ns = std::fs::File::open(&path).expect("namespace file");
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the test namespace");
                let listener = TcpListener::bind(addr).expect("bind the listener");
                listener.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let _ = conn.set_nonblocking(false);
                            let _ = writeln!(conn, "reached-{name}");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener bound");
        Listener {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn the_guest_reaches_only_the_public_internet_and_what_network_allow_opens() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it creates network namespaces and nftables rules \
         (run tests/run-all.sh as root, e.g. `sudo -E tests/run-all.sh`)"
    );
    for program in ["nft", "ip"] {
        assert!(
            Command::new(program).arg("--version").output().is_ok()
                || Command::new(program).arg("-V").output().is_ok(),
            "{program} is missing: run tests/install-deps.sh (packages nftables, iproute2)"
        );
    }
    let image = support::image::tiny_image();
    let tag = std::process::id();
    let a = Netns::create(format!("ghrvm-egress-a-{tag}"));
    let b = Netns::create(format!("ghrvm-egress-b-{tag}"));
    let (v0, v1) = (format!("ge0-{tag}"), format!("ge1-{tag}"));
    // Interface names are at most 15 bytes.
    let (v0, v1) = (&v0[..v0.len().min(15)], &v1[..v1.len().min(15)]);
    ip(&[
        "link", "add", v0, "netns", &a.0, "type", "veth", "peer", "name", v1, "netns", &b.0,
    ]);
    a.exec(&["ip", "link", "set", "lo", "up"]);
    a.exec(&["ip", "link", "set", v0, "up"]);
    a.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", v0]);
    a.exec(&["ip", "addr", "add", "169.254.10.2/16", "dev", v0]);
    a.exec(&["ip", "addr", "add", "198.51.100.1/32", "dev", v0]);
    a.exec(&["ip", "route", "add", "default", "via", "10.99.0.1"]);
    b.exec(&["ip", "link", "set", "lo", "up"]);
    b.exec(&["ip", "link", "set", v1, "up"]);
    b.exec(&["ip", "addr", "add", "10.99.0.1/24", "dev", v1]);
    b.exec(&["ip", "addr", "add", "169.254.10.1/16", "dev", v1]);

    let link_local = Listener::start(&b.0, "169.254.10.1:9001", "link-local");
    let private = Listener::start(&b.0, "10.99.0.1:9002", "private");
    let own = Listener::start(&a.0, "198.51.100.1:9003", "own-address");
    let allowed = Listener::start(&b.0, "10.99.0.1:9004", "allowed");

    let work = tempfile::tempdir().unwrap();
    let workflow = work.path().join("egress.yml");
    std::fs::write(&workflow, WORKFLOW).unwrap();
    let config = work.path().join("config.yaml");
    std::fs::write(&config, "network:\n  allow: [\"10.99.0.1:9004\"]\n").unwrap();
    let output = Command::new("ip")
        .args(["netns", "exec", &a.0, env!("CARGO_BIN_EXE_ghrunner-vm")])
        .arg("--dir")
        .arg(work.path().join("runner"))
        .args(["demo", "--workflow"])
        .arg(&workflow)
        .arg("--config")
        .arg(&config)
        .arg("--image-dir")
        .arg(&image)
        .env("GHRUNNER_VM_ACCEL", support::image::accel())
        .output()
        .expect("ghrunner-vm runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("egress policy in force"),
        "the runner did not report the policy in force:\n{stderr}"
    );

    // The allowed listener answered, and the guest saw its answer.
    assert!(
        stdout.contains("probe 10.99.0.1:9004: reached-allowed"),
        "the allowed address was not reached:\n{stdout}"
    );
    assert!(allowed.accepted() >= 1);
    // The others never saw a connection, and the guest got nothing from them.
    for (listener, name) in [
        (&link_local, "link-local"),
        (&private, "private"),
        (&own, "own-address"),
    ] {
        assert_eq!(
            listener.accepted(),
            0,
            "the guest reached the {name} listener:\n{stdout}"
        );
        assert!(
            !stdout.contains(&format!("reached-{name}")),
            "{name}: {stdout}"
        );
    }
}
