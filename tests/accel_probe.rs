//! The KVM probe verdict is cached per host state in the runner directory: the first process
//! probes, the next ones read the verdict; a changed key (QEMU version, probe kernel) probes
//! again; a corrupt cache is ignored; processes starting together probe once; `--reprobe`
//! refreshes. A fake QEMU (a shell script) stands in for the probe: it counts its runs and
//! prints the kernel banner, so the test needs no KVM; a plain file stands in for /dev/kvm.
//! The last test runs the real binary's `doctor` twice and reads its report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ghrunner_vm::vm::qemu::accel::{
    self, PROBE_CACHE_FILE, ProbeSetup, Verdict, VerdictSource, probe_cached,
};
use ghrunner_vm::vm::qemu::args::Accel;

/// A fake QEMU in `dir`: `--version` prints `dir/version`; a probe run appends a line to
/// `dir/runs` and prints the kernel banner (KVM "works").
struct FakeQemu {
    dir: tempfile::TempDir,
}

impl FakeQemu {
    fn new() -> FakeQemu {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "#!/bin/sh\nd='{}'\nif [ \"$1\" = --version ]; then cat \"$d/version\"; exit 0; fi\n\
             echo run >> \"$d/runs\"\necho 'Linux version 6.1.0-fake'\nsleep 30\n",
            dir.path().display()
        );
        let qemu = dir.path().join("qemu-system-x86_64");
        std::fs::write(&qemu, script).unwrap();
        std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.path().join("version"), "QEMU emulator version 9.9.9\n").unwrap();
        std::fs::write(dir.path().join("kernel"), b"a kernel image").unwrap();
        std::fs::write(dir.path().join("kvm"), b"").unwrap();
        FakeQemu { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.path("runs"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

async fn verdict(fake: &FakeQemu, cache: &Path, refresh: bool) -> Verdict {
    let (qemu, kernel, kvm) = (
        fake.path("qemu-system-x86_64"),
        fake.path("kernel"),
        fake.path("kvm"),
    );
    let setup = ProbeSetup {
        qemu: &qemu,
        kernel: &kernel,
        kvm_device: &kvm,
        kernel_sha256: None,
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        probe_cached(&setup, cache, refresh),
    )
    .await
    .expect("the probe is bounded")
}

fn cached(v: &Verdict) -> bool {
    matches!(v.source, VerdictSource::Cached { .. })
}

#[tokio::test]
async fn the_first_process_probes_and_the_next_ones_use_the_cache() {
    let fake = FakeQemu::new();
    let cache = tempfile::tempdir().unwrap();
    let first = verdict(&fake, cache.path(), false).await;
    assert_eq!(first.source, VerdictSource::Probed);
    assert_eq!(first.choice.accel, Accel::Kvm);
    assert_eq!(fake.runs(), 1);
    assert!(cache.path().join(PROBE_CACHE_FILE).is_file());
    for _ in 0..3 {
        let again = verdict(&fake, cache.path(), false).await;
        assert!(cached(&again), "{again:?}");
        assert_eq!(again.choice, first.choice);
    }
    assert_eq!(fake.runs(), 1, "no further probe");
    // `doctor --reprobe` probes even with a valid cache.
    let refreshed = verdict(&fake, cache.path(), true).await;
    assert_eq!(refreshed.source, VerdictSource::Probed);
    assert_eq!(fake.runs(), 2);
}

#[tokio::test]
async fn a_changed_key_invalidates_the_verdict() {
    let fake = FakeQemu::new();
    let cache = tempfile::tempdir().unwrap();
    verdict(&fake, cache.path(), false).await;
    assert!(cached(&verdict(&fake, cache.path(), false).await));
    assert_eq!(fake.runs(), 1);
    // Another QEMU release.
    std::fs::write(fake.path("version"), "QEMU emulator version 10.0.0\n").unwrap();
    assert_eq!(
        verdict(&fake, cache.path(), false).await.source,
        VerdictSource::Probed
    );
    assert_eq!(fake.runs(), 2);
    assert!(cached(&verdict(&fake, cache.path(), false).await));
    // Another probe kernel.
    std::fs::write(fake.path("kernel"), b"another kernel image").unwrap();
    assert_eq!(
        verdict(&fake, cache.path(), false).await.source,
        VerdictSource::Probed
    );
    assert_eq!(fake.runs(), 3);
    // The boot id and kernel release are part of the stored key.
    let stored = accel::read_cache_file(cache.path()).expect("a cache file");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(stored.key.boot_id, boot_id.trim());
    assert!(!stored.key.kernel_release.is_empty());
    assert_eq!(stored.key.qemu_version, "QEMU emulator version 10.0.0");
}

#[tokio::test]
async fn a_corrupt_or_foreign_cache_file_is_ignored() {
    let fake = FakeQemu::new();
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join(PROBE_CACHE_FILE);
    for junk in [
        "{not json".to_owned(),
        String::new(),
        r#"{"key": 1, "accel": "kvm"}"#.to_owned(),
        "\u{0}\u{1}binary".to_owned(),
    ] {
        std::fs::write(&file, &junk).unwrap();
        let v = verdict(&fake, cache.path(), false).await;
        assert_eq!(v.source, VerdictSource::Probed, "{junk:?}");
        assert_eq!(v.choice.accel, Accel::Kvm);
    }
    // A well-formed verdict naming an unknown accelerator is ignored too.
    let mut stored = accel::read_cache_file(cache.path()).expect("rewritten");
    stored.accel = "hvf".into();
    std::fs::write(&file, serde_json::to_string(&stored).unwrap()).unwrap();
    assert_eq!(
        verdict(&fake, cache.path(), false).await.source,
        VerdictSource::Probed
    );
    assert_eq!(fake.runs(), 5);
    assert!(cached(&verdict(&fake, cache.path(), false).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_together_probe_once() {
    let fake = FakeQemu::new();
    let cache = tempfile::tempdir().unwrap();
    let runs = futures::future::join_all((0..4).map(|_| verdict(&fake, cache.path(), false))).await;
    assert_eq!(fake.runs(), 1, "one probe for four starters");
    assert_eq!(
        runs.iter()
            .filter(|v| v.source == VerdictSource::Probed)
            .count(),
        1
    );
    assert!(runs.iter().all(|v| v.choice.accel == Accel::Kvm));
}

#[tokio::test]
async fn an_unusable_kvm_device_is_not_probed_nor_cached() {
    let fake = FakeQemu::new();
    let cache = tempfile::tempdir().unwrap();
    std::fs::remove_file(fake.path("kvm")).unwrap();
    let v = verdict(&fake, cache.path(), false).await;
    assert_eq!(v.source, VerdictSource::DeviceUnusable);
    assert_eq!(v.choice.accel, Accel::Tcg);
    assert_eq!(fake.runs(), 0);
    assert!(!cache.path().join(PROBE_CACHE_FILE).exists());
}

/// `doctor` twice on one runner directory, with the fake QEMU first on `PATH`: the first
/// report probed, the second shows the cached verdict and its age. Needs a KVM device that
/// can be opened (the probe is skipped without one): fails naming it otherwise.
#[test]
fn doctor_probes_once_and_then_shows_the_cached_verdict() {
    assert!(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(accel::KVM_DEVICE)
            .is_ok(),
        "this test needs {} readable and writable by this user (the probe is skipped \
         without it)",
        accel::KVM_DEVICE
    );
    let fake = FakeQemu::new();
    let runner = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        fake.dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let doctor = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
            .arg("--dir")
            .arg(runner.path())
            .arg("doctor")
            .env("PATH", &path)
            .env_remove(accel::ACCEL_ENV)
            // doctor reads the latest runner release: nothing answers here, fast.
            .env(
                "GHRUNNER_VM_RUNNER_RELEASES_URL",
                "http://127.0.0.1:9/releases/latest",
            )
            .output()
            .expect("doctor runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.contains("accelerator:"))
            .unwrap_or_else(|| panic!("no accelerator line:\n{text}"))
            .to_owned()
    };
    let first = doctor();
    assert!(first.contains("probed now"), "{first}");
    assert_eq!(fake.runs(), 1, "{first}");
    let second = doctor();
    assert!(second.contains("verdict cached"), "{second}");
    assert!(second.contains(" ago in "), "{second}");
    assert_eq!(fake.runs(), 1, "the second doctor did not probe: {second}");
}
