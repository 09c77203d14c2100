//! End-to-end tests of the QEMU backend: real VMs from the tiny image, under TCG.
//!
//! Needs qemu-system-x86_64, qemu-img, passt, iproute2 (`ip netns`, as root) and the tiny
//! image. A missing piece FAILS the test with its name. The VM tests take a global lock: the
//! machines running them have 2 cores.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghrunner_vm::image::Image;
use ghrunner_vm::vm::keys::{ClientKey, HostKey};
use ghrunner_vm::vm::qemu::accel::AccelMode;
use ghrunner_vm::vm::qemu::{Qemu, QemuConfig, QemuVm};
use ghrunner_vm::vm::ssh::SshConnection;
use ghrunner_vm::vm::{
    ExecOutcome, GuestCommand, Hypervisor as _, LaunchSource, NetworkPolicy, OutputChunk, Vm as _,
    VmError, VmSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;

/// Serialises the VM tests of this binary.
static VM_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Boot timeout of the tests (TCG on a loaded 2-core machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The tiny image (built and cached under target/ by the shared helper, which fails naming
/// any missing Debian package).
fn tiny_image_dir() -> PathBuf {
    support::image::tiny_image()
}

fn load_image(dir: &Path) -> Image {
    Image::load(dir).unwrap_or_else(|e| panic!("tiny image {} unusable: {e}", dir.display()))
}

fn require_programs() {
    for program in ["qemu-system-x86_64", "qemu-img", "passt", "ip"] {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{program} is missing: install qemu-system-x86, qemu-utils, passt, iproute2"
        );
    }
}

struct Harness {
    runner_dir: tempfile::TempDir,
    qemu: Qemu,
    image: Image,
}

fn harness() -> Harness {
    require_programs();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ghrunner_vm=debug")
        .with_test_writer()
        .try_init();
    let image = load_image(&tiny_image_dir());
    let runner_dir = tempfile::tempdir().unwrap();
    let mut config = QemuConfig::new(runner_dir.path());
    // The machines of this project hang under KVM; `auto` would probe and pick TCG anyway.
    config.accel = AccelMode::Tcg;
    let qemu = Qemu::new(config).unwrap();
    Harness {
        runner_dir,
        qemu,
        image,
    }
}

impl Harness {
    fn spec(&self, name: &str, network: NetworkPolicy) -> VmSpec {
        VmSpec {
            name: name.into(),
            job: None,
            source: LaunchSource::ColdBoot,
            image: self.image.clone(),
            cpus: 1,
            memory_mib: 512,
            disk_gib: None,
            network,
            boot_timeout: BOOT_TIMEOUT,
            console_log: None,
        }
    }

    fn vms_dir(&self) -> PathBuf {
        self.runner_dir.path().join("vms")
    }

    /// Asserts that nothing of any VM remains: no directory, no QEMU process of this runner dir.
    fn assert_nothing_left(&self) {
        let leftovers: Vec<_> = std::fs::read_dir(self.vms_dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        let marker = self.runner_dir.path().to_str().unwrap();
        let procs = processes_mentioning(marker);
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
    }
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
        if cmdline.contains(needle) && !zombie {
            found.push(cmdline);
        }
    }
    found
}

fn sh(script: &str) -> GuestCommand {
    GuestCommand {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Runs `cmd`, returning the outcome and the output chunks in order.
async fn run(vm: &QemuVm, cmd: GuestCommand) -> (ExecOutcome, Vec<OutputChunk>) {
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            chunks.push(chunk);
        }
        chunks
    });
    let outcome = vm
        .exec(cmd, tx, CancellationToken::new())
        .await
        .expect("exec");
    (outcome, collector.await.unwrap())
}

fn stdout_of(chunks: &[OutputChunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| match c {
            OutputChunk::Stdout(b) => Some(String::from_utf8_lossy(b).into_owned()),
            OutputChunk::Stderr(_) => None,
        })
        .collect()
}

fn stderr_of(chunks: &[OutputChunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| match c {
            OutputChunk::Stderr(b) => Some(String::from_utf8_lossy(b).into_owned()),
            OutputChunk::Stdout(_) => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_lifecycle_exec_stream_cancel_transfer_destroy() {
    let _lock = VM_LOCK.lock().await;
    let h = harness();
    let vm = h
        .qemu
        .launch(h.spec("lifecycle", NetworkPolicy::User))
        .await
        .expect("launch");
    let dir = vm.work_dir().to_owned();
    let qemu_pid = vm.qemu_pid().expect("qemu pid");
    assert_eq!(vm.status().await.unwrap().status, "running");

    // uname
    let (outcome, chunks) = run(
        &vm,
        GuestCommand {
            argv: vec!["uname".into(), "-a".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        outcome,
        ExecOutcome {
            exit_code: 0,
            cancelled: false
        }
    );
    assert!(stdout_of(&chunks).starts_with("Linux "), "{chunks:?}");

    // A multi-line script streams stdout and stderr as separate chunks, in order.
    let script = "echo one\nsleep 1\necho two >&2\nsleep 1\necho three\nexit 0";
    let (outcome, chunks) = run(&vm, sh(script)).await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(stdout_of(&chunks), "one\nthree\n");
    assert_eq!(stderr_of(&chunks), "two\n");
    assert!(
        chunks.len() >= 3,
        "output arrived in pieces as produced: {chunks:?}"
    );

    // Exit codes, env, cwd, stdin.
    let (outcome, _) = run(&vm, sh("exit 42")).await;
    assert_eq!(outcome.exit_code, 42);
    let cmd = GuestCommand {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "printf '%s|%s|' \"$X\" \"$PWD\"; cat".into(),
        ],
        env: vec![("X".into(), "it's $(not) run".into())],
        cwd: Some("/tmp".into()),
        stdin: Some(b"from stdin".to_vec()),
    };
    let (outcome, chunks) = run(&vm, cmd).await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(stdout_of(&chunks), "it's $(not) run|/tmp|from stdin");

    // Cancel a long command: interrupted, reported as cancelled.
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.cancel();
    });
    let outcome = vm
        .exec(sh("sleep 600; echo not reached"), tx, cancel)
        .await
        .unwrap();
    assert!(outcome.cancelled);
    assert_ne!(outcome.exit_code, 0);
    // The sleep is gone from the guest.
    let (_, chunks) = run(&vm, sh("ps | grep -c '[s]leep 600' || true")).await;
    assert_eq!(stdout_of(&chunks).trim(), "0");

    // Upload and download.
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    vm.upload("/tmp/it's a file", payload.clone(), 0o600)
        .await
        .unwrap();
    assert_eq!(vm.download("/tmp/it's a file").await.unwrap(), payload);
    let (_, chunks) = run(&vm, sh("stat -c %a \"/tmp/it's a file\"")).await;
    assert_eq!(stdout_of(&chunks).trim(), "600");
    assert!(vm.download("/nonexistent").await.is_err());

    // Any other host key is refused.
    let wrong = HostKey {
        key_type: "ssh-ed25519".into(),
        blob: vec![0; 51],
    };
    let key = Arc::new(ClientKey::generate().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = SshConnection::connect(
        "lifecycle".into(),
        vm.ssh_addr(),
        "root".into(),
        key,
        wrong,
        deadline,
    )
    .await
    .err()
    .expect("a wrong pinned key must be refused");
    assert!(matches!(err, VmError::HostKeyMismatch { .. }), "{err}");

    vm.destroy().await.unwrap();
    assert!(!dir.exists());
    assert!(!Path::new(&format!("/proc/{qemu_pid}")).exists());
    h.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_from_one_template_do_not_share_files() {
    let _lock = VM_LOCK.lock().await;
    let mut h = harness();
    // Give the image a template disk (made here, blank) so that each VM gets its own overlay.
    let image_dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&h.image.dir).unwrap().flatten() {
        std::os::unix::fs::symlink(entry.path(), image_dir.path().join(entry.file_name())).unwrap();
    }
    let template = image_dir.path().join("template.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&template)
        .arg("16M")
        .status();
    assert!(status.unwrap().success(), "qemu-img create");
    let template_before = std::fs::read(&template).unwrap();
    h.image.dir = image_dir.path().to_owned();
    h.image.manifest.disk = Some("template.qcow2".into());

    let a = h
        .qemu
        .launch(h.spec("iso-a", NetworkPolicy::None))
        .await
        .expect("launch a");
    let b = h
        .qemu
        .launch(h.spec("iso-b", NetworkPolicy::None))
        .await
        .expect("launch b");
    assert!(a.work_dir().join("disk.qcow2").is_file());
    let (o, _) = run(&a, sh("echo secret-of-a > /tmp/mine; printf secret-of-a | dd of=/dev/vda conv=fsync 2>/dev/null")).await;
    assert_eq!(o.exit_code, 0);
    let (o, chunks) = run(&b, sh("cat /tmp/mine 2>/dev/null; head -c 11 /dev/vda")).await;
    assert_eq!(o.exit_code, 0);
    assert!(
        !stdout_of(&chunks).contains("secret-of-a"),
        "b saw a's data: {chunks:?}"
    );
    let (_, chunks) = run(&a, sh("head -c 11 /dev/vda")).await;
    assert_eq!(
        stdout_of(&chunks),
        "secret-of-a",
        "a's write reached its own overlay"
    );
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
    assert_eq!(
        std::fs::read(&template).unwrap(),
        template_before,
        "template untouched"
    );
    h.assert_nothing_left();
}

/// A throwaway network namespace joined to the host by a veth pair, with a TCP server inside
/// that answers every connection with a token. Deleted on drop.
struct NetnsServer {
    name: String,
    host_if: String,
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Distinguishes the namespaces of successive tests of this process.
static NETNS_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl NetnsServer {
    fn start(token: &'static str) -> Self {
        let seq = NETNS_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() + seq) % 250;
        let name = format!("ghrt{id}");
        let (host_if, ns_if) = (format!("ghrh{id}"), format!("ghrn{id}"));
        let (host_ip, ns_ip) = (format!("10.213.{id}.1"), format!("10.213.{id}.2"));
        let _ = Command::new("ip")
            .args(["link", "del", &host_if])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["link", "set", &ns_if, "netns", &name],
            vec!["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec![
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/24"),
                "dev",
                &ns_if,
            ],
            vec!["-n", &name, "link", "set", &ns_if, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let status = Command::new("ip")
                .args(&args)
                .status()
                .expect("ip (iproute2) is missing");
            assert!(
                status.success(),
                "ip {args:?} failed (the network tests need root)"
            );
        }
        let ns_path = format!("/run/netns/{name}");
        let (tx, rx) = std::sync::mpsc::channel();
        let bind_ip: Ipv4Addr = ns_ip.parse().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        // A thread that enters the namespace (setns affects only the calling thread) and serves.
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind((bind_ip, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            // Polls so that the thread (which keeps the namespace alive) ends with the test.
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        use std::io::Write as _;
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(token.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("netns server");
        Self {
            name,
            host_if,
            addr,
            stop,
        }
    }
}

impl Drop for NetnsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A server on the host's loopback answering with `token`.
fn loopback_server(token: &'static str) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write as _;
            let mut stream = stream;
            let _ = stream.write_all(token.as_bytes());
        }
    });
    port
}

/// Guest script trying every address that could lead to the host's loopback on `port`.
/// `nc -w` bounds only the connect; `timeout` bounds the whole attempt (a peer that accepts
/// and never closes would otherwise hang it).
fn probe_host_loopback_script(port: u16) -> String {
    format!(
        "gw=$(ip route | awk '/^default/ {{print $3}}')\n\
         for a in 10.0.2.2 $gw 127.0.0.1; do echo \"try $a\"; timeout 5 nc -w 3 $a {port} </dev/null 2>&1; echo; done\n\
         exit 0"
    )
}

/// Guest command fetching what the server at `addr` sends (bounded).
fn fetch_script(addr: SocketAddr) -> String {
    format!(
        "timeout 10 nc -w 5 {} {} </dev/null 2>&1; exit 0",
        addr.ip(),
        addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_network_reaches_outside_but_not_host_loopback() {
    let _lock = VM_LOCK.lock().await;
    let h = harness();
    let outside = NetnsServer::start("token-from-outside");
    let loopback_port = loopback_server("token-from-host-loopback");
    let vm = h
        .qemu
        .launch(h.spec("net-user", NetworkPolicy::User))
        .await
        .expect("launch");

    let (_, chunks) = run(&vm, sh(&fetch_script(outside.addr))).await;
    assert!(
        stdout_of(&chunks).starts_with("token-from-outside"),
        "outbound connection: {chunks:?}"
    );

    let (_, chunks) = run(&vm, sh(&probe_host_loopback_script(loopback_port))).await;
    let out = stdout_of(&chunks);
    assert!(out.contains("try 127.0.0.1"), "probe ran: {out}");
    assert!(
        !out.contains("token-from-host-loopback"),
        "guest reached the host's loopback: {out}"
    );
    vm.destroy().await.unwrap();
    h.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_policy_leaves_only_ssh() {
    let _lock = VM_LOCK.lock().await;
    let h = harness();
    let outside = NetnsServer::start("token-from-outside");
    let loopback_port = loopback_server("token-from-host-loopback");
    let vm = h
        .qemu
        .launch(h.spec("net-none", NetworkPolicy::None))
        .await
        .expect("launch");

    let (_, chunks) = run(&vm, sh(&fetch_script(outside.addr))).await;
    assert!(
        !stdout_of(&chunks).contains("token-from-outside"),
        "guest reached outside: {chunks:?}"
    );
    let (_, chunks) = run(&vm, sh(&probe_host_loopback_script(loopback_port))).await;
    let out = stdout_of(&chunks);
    assert!(out.contains("try 127.0.0.1"), "probe ran: {out}");
    assert!(
        !out.contains("token-from-host-loopback"),
        "guest reached the host's loopback: {out}"
    );
    vm.destroy().await.unwrap();
    h.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_that_never_boots_fails_launch_and_leaves_nothing() {
    let _lock = VM_LOCK.lock().await;
    let mut h = harness();
    let image_dir = tempfile::tempdir().unwrap();
    std::fs::write(image_dir.path().join("vmlinuz"), b"this is not a kernel").unwrap();
    h.image.dir = image_dir.path().to_owned();
    h.image.manifest.kernel = Some("vmlinuz".into());
    h.image.manifest.initrd = None;
    let mut spec = h.spec("never-boots", NetworkPolicy::User);
    spec.boot_timeout = Duration::from_secs(20);
    let err = h.qemu.launch(spec).await.err().expect("launch must fail");
    assert!(
        matches!(err, VmError::Exited { .. } | VmError::BootTimeout { .. }),
        "{err}"
    );
    h.assert_nothing_left();

    // A kernel that loads but prints nothing useful (no initrd: it panics) times out or exits.
    h.image = load_image(&tiny_image_dir());
    h.image.manifest.initrd = None;
    let mut spec = h.spec("never-ready", NetworkPolicy::None);
    spec.boot_timeout = Duration::from_secs(15);
    let err = h.qemu.launch(spec).await.err().expect("launch must fail");
    assert!(
        matches!(err, VmError::Exited { .. } | VmError::BootTimeout { .. }),
        "{err}"
    );
    h.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_vm_kills_it_and_removes_its_files() {
    let _lock = VM_LOCK.lock().await;
    let h = harness();
    let vm = h
        .qemu
        .launch(h.spec("dropped", NetworkPolicy::User))
        .await
        .expect("launch");
    let dir = vm.work_dir().to_owned();
    assert!(dir.join("owner.json").is_file());
    drop(vm);
    assert!(!dir.exists());
    h.assert_nothing_left();

    // A launch future dropped mid-boot leaves nothing either.
    let launch = h.qemu.launch(h.spec("abandoned", NetworkPolicy::User));
    assert!(
        tokio::time::timeout(Duration::from_secs(2), launch)
            .await
            .is_err()
    );
    h.assert_nothing_left();
}
