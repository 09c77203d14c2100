//! Choosing the accelerator: `kvm` when it really works, `tcg` otherwise.
//!
//! Owns: the `auto|kvm|tcg` setting (config `vm.accel`, overridden by `GHRUNNER_VM_ACCEL`), and
//! the bounded KVM probe behind `auto`, cached per host state in the runner directory
//! (`accel-probe.json`) and once per process in memory.
//!
//! ```text
//!   mode kvm ─► Kvm        mode tcg ─► Tcg
//!   mode auto ─► /dev/kvm read-write? ──no──► Tcg ("kvm device unusable", not cached)
//!                    │ yes
//!                    ▼
//!              cached verdict for this key? ──yes──► its accelerator
//!                    │ no (or `doctor --reprobe`)      key: host boot id, host kernel release,
//!                    ▼                                      QEMU --version, probe kernel sha256
//!              take <dir>/accel-probe.lock (concurrent processes probe once), look again, then
//!              boot the image kernel under KVM; "Linux version" on the serial console
//!              within PROBE_TIMEOUT? ──yes──► Kvm   ──no (hang, crash)──► Tcg
//!              ─► write the verdict with its key and time
//! ```
//!
//! A cache file that is missing, unreadable, corrupt or for another key is ignored (debug log)
//! and replaced by a fresh probe; it never causes an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use tokio::sync::OnceCell;

use super::args::Accel;

/// Environment variable overriding the configured accelerator mode.
pub const ACCEL_ENV: &str = "GHRUNNER_VM_ACCEL";

/// The KVM device.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// How long the probe waits for the guest kernel's first line under KVM.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// What the kernel prints first on the serial console.
const KERNEL_BANNER: &[u8] = b"Linux version";

/// Most serial bytes the probe reads before giving up on finding the banner.
const PROBE_MAX_OUTPUT: usize = 64 * 1024;

/// The accelerator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelMode {
    /// Probe KVM and fall back to TCG.
    #[default]
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
}

/// An unknown accelerator mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator {0:?} (expected auto, kvm or tcg)")]
pub struct ParseAccelError(pub String);

impl FromStr for AccelMode {
    type Err = ParseAccelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(ParseAccelError(s.to_owned())),
        }
    }
}

impl fmt::Display for AccelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// The effective mode: a non-empty `env` value wins over `configured`.
pub fn effective_mode(
    configured: AccelMode,
    env: Option<&str>,
) -> Result<AccelMode, ParseAccelError> {
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => value.parse(),
        None => Ok(configured),
    }
}

/// The accelerator chosen and why (logged, shown by `doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why, in a few words.
    pub reason: String,
}

/// Result of the KVM probe, kept for the process.
static PROBE: OnceCell<AccelChoice> = OnceCell::const_new();

/// File in the runner directory holding the last probe's verdict and its key.
pub const PROBE_CACHE_FILE: &str = "accel-probe.json";
/// Lock file serialising probes of concurrent processes.
const PROBE_LOCK_FILE: &str = "accel-probe.lock";

/// What the probe runs: the QEMU binary, the kernel it boots, the KVM device it checks.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSetup<'a> {
    /// `qemu-system-x86_64`.
    pub qemu: &'a Path,
    /// A kernel to boot (an image's).
    pub kernel: &'a Path,
    /// The KVM device ([`KVM_DEVICE`] outside tests).
    pub kvm_device: &'a Path,
    /// The kernel's SHA-256 when already known (an image manifest records it), so that no
    /// process has to hash a large kernel to find its cached verdict.
    pub kernel_sha256: Option<&'a str>,
}

/// What a probe verdict depends on: when any part changes, the host may behave differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeKey {
    /// `/proc/sys/kernel/random/boot_id` (a reboot, e.g. after a BIOS or module change).
    pub boot_id: String,
    /// `/proc/sys/kernel/osrelease` (the host kernel).
    pub kernel_release: String,
    /// The first line of `qemu --version`.
    pub qemu_version: String,
    /// SHA-256 of the probe kernel.
    pub kernel_sha256: String,
}

impl ProbeKey {
    /// The key of this host state; `None` if a part cannot be read (then nothing is cached).
    pub async fn read(setup: &ProbeSetup<'_>) -> Option<ProbeKey> {
        let proc_text = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_owned())
        };
        let boot_id = proc_text("/proc/sys/kernel/random/boot_id")?;
        let kernel_release = proc_text("/proc/sys/kernel/osrelease")?;
        let output = Command::new(setup.qemu)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PROBE_TIMEOUT, output)
            .await
            .ok()?
            .ok()?;
        let qemu_version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()?
            .trim()
            .to_owned();
        let kernel_sha256 = match setup.kernel_sha256 {
            Some(known) => known.to_owned(),
            None => {
                let kernel = setup.kernel.to_owned();
                tokio::task::spawn_blocking(move || crate::image::build::sha256_file(&kernel).ok())
                    .await
                    .ok()??
            }
        };
        Some(ProbeKey {
            boot_id,
            kernel_release,
            qemu_version,
            kernel_sha256,
        })
    }
}

/// A verdict as stored in [`PROBE_CACHE_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedVerdict {
    /// The host state it was probed in.
    pub key: ProbeKey,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Why.
    pub reason: String,
    /// When the probe ran.
    pub probed_at: DateTime<Utc>,
}

impl CachedVerdict {
    fn choice(&self) -> Option<AccelChoice> {
        let accel = match self.accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            _ => return None,
        };
        Some(AccelChoice {
            accel,
            reason: self.reason.clone(),
        })
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictSource {
    /// The cache file, written at `probed_at`.
    Cached {
        /// When the probe ran.
        probed_at: DateTime<Utc>,
    },
    /// A probe run now (and cached, if the key could be read).
    Probed,
    /// No probe: the KVM device cannot be opened (not cached: permissions can change).
    DeviceUnusable,
}

/// A verdict and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The accelerator and why.
    pub choice: AccelChoice,
    /// Where it came from.
    pub source: VerdictSource,
}

/// Reads the cached verdict in `dir`, if it is readable, well-formed and for `key`.
pub fn read_cached(dir: &Path, key: &ProbeKey) -> Option<CachedVerdict> {
    let path = dir.join(PROBE_CACHE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "kvm probe cache unreadable, ignored");
            return None;
        }
    };
    let cached: CachedVerdict = match serde_json::from_str(&text) {
        Ok(cached) => cached,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "kvm probe cache corrupt, ignored");
            return None;
        }
    };
    if cached.key != *key {
        tracing::debug!(path = %path.display(), "kvm probe cache is for another host state, ignored");
        return None;
    }
    if cached.choice().is_none() {
        tracing::debug!(path = %path.display(), accel = cached.accel, "kvm probe cache names an unknown accelerator, ignored");
        return None;
    }
    Some(cached)
}

/// The stored verdict in `dir` whatever its key (for `doctor` to show), if readable.
pub fn read_cache_file(dir: &Path) -> Option<CachedVerdict> {
    let text = std::fs::read_to_string(dir.join(PROBE_CACHE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_cache(dir: &Path, verdict: &CachedVerdict) {
    let path = dir.join(PROBE_CACHE_FILE);
    let written = serde_json::to_vec_pretty(verdict)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the kvm probe cache; the next process probes again");
    }
}

/// Holds the probe lock of `dir` (blocking until other processes are done probing).
async fn lock_probe(dir: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join(PROBE_LOCK_FILE);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
    })
    .await
    .ok()?
}

/// The KVM verdict for this host, from the cache in `dir` when it holds one for the current
/// host state, else by probing (at most one process at a time; the result is cached).
/// `refresh` probes even when a cached verdict exists (`doctor --reprobe`).
pub async fn probe_cached(setup: &ProbeSetup<'_>, dir: &Path, refresh: bool) -> Verdict {
    if let Err(e) = open_device(setup.kvm_device) {
        return Verdict {
            choice: AccelChoice {
                accel: Accel::Tcg,
                reason: format!("{} is not usable ({e})", setup.kvm_device.display()),
            },
            source: VerdictSource::DeviceUnusable,
        };
    }
    let Some(key) = ProbeKey::read(setup).await else {
        tracing::debug!("kvm probe key unreadable (QEMU or the kernel missing?); probing uncached");
        return Verdict {
            choice: probe_with(setup).await,
            source: VerdictSource::Probed,
        };
    };
    let cached = |dir: &Path| {
        read_cached(dir, &key).and_then(|c| {
            Some(Verdict {
                choice: c.choice()?,
                source: VerdictSource::Cached {
                    probed_at: c.probed_at,
                },
            })
        })
    };
    if !refresh && let Some(verdict) = cached(dir) {
        return verdict;
    }
    let _lock = lock_probe(dir).await;
    // Another process may have probed while this one waited for the lock.
    if !refresh && let Some(verdict) = cached(dir) {
        return verdict;
    }
    tracing::info!(timeout = ?PROBE_TIMEOUT, "probing whether KVM works (once per host state)");
    let choice = probe_with(setup).await;
    write_cache(
        dir,
        &CachedVerdict {
            key,
            accel: choice.accel.to_string(),
            reason: choice.reason.clone(),
            probed_at: Utc::now(),
        },
    );
    Verdict {
        choice,
        source: VerdictSource::Probed,
    }
}

fn open_device(device: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
}

/// Resolves `mode` to an accelerator. `auto` probes KVM once per process, through the cache in
/// `cache_dir` (the runner directory) when given; `kernel_sha256` is the kernel's hash if known.
pub async fn choose(
    mode: AccelMode,
    qemu: &Path,
    kernel: &Path,
    kernel_sha256: Option<&str>,
    cache_dir: Option<&Path>,
) -> AccelChoice {
    let choice = match mode {
        AccelMode::Kvm => AccelChoice {
            accel: Accel::Kvm,
            reason: "forced by configuration".into(),
        },
        AccelMode::Tcg => AccelChoice {
            accel: Accel::Tcg,
            reason: "forced by configuration".into(),
        },
        AccelMode::Auto => {
            let dir: Option<PathBuf> = cache_dir.map(Path::to_owned);
            let init = || async move {
                let setup = ProbeSetup {
                    qemu,
                    kernel,
                    kvm_device: Path::new(KVM_DEVICE),
                    kernel_sha256,
                };
                match dir {
                    Some(dir) => {
                        let verdict = probe_cached(&setup, &dir, false).await;
                        if let VerdictSource::Cached { probed_at } = verdict.source {
                            tracing::debug!(%probed_at, "kvm probe verdict from the cache");
                        }
                        verdict.choice
                    }
                    None => probe_with(&setup).await,
                }
            };
            PROBE.get_or_init(init).await.clone()
        }
    };
    tracing::info!(accel = %choice.accel, reason = %choice.reason, %mode, "accelerator chosen");
    choice
}

/// Runs the bounded KVM probe (uncached) with the real KVM device.
pub async fn probe(qemu: &Path, kernel: &Path) -> AccelChoice {
    let setup = ProbeSetup {
        qemu,
        kernel,
        kvm_device: Path::new(KVM_DEVICE),
        kernel_sha256: None,
    };
    probe_with(&setup).await
}

/// Runs the bounded KVM probe (uncached).
async fn probe_with(setup: &ProbeSetup<'_>) -> AccelChoice {
    let (qemu, kernel) = (setup.qemu, setup.kernel);
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if let Err(e) = open_device(setup.kvm_device) {
        return tcg(format!(
            "{} is not usable ({e})",
            setup.kvm_device.display()
        ));
    }
    let child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "128M",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-serial",
            "stdio",
            "-append",
            "console=ttyS0 panic=-1 no_timer_check",
        ])
        .arg("-kernel")
        .arg(kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return tcg(format!(
                "cannot run {} for the kvm probe ({e})",
                qemu.display()
            ));
        }
    };
    let Some(mut stdout) = child.stdout.take() else {
        return tcg("kvm probe has no console".into());
    };
    let saw_banner = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen
                .windows(KERNEL_BANNER.len())
                .any(|w| w == KERNEL_BANNER)
            {
                return true;
            }
            if seen.len() > PROBE_MAX_OUTPUT {
                return false;
            }
        }
    })
    .await;
    let _ = child.kill().await;
    match saw_banner {
        Ok(true) => AccelChoice {
            accel: Accel::Kvm,
            reason: "kvm probe booted a kernel".into(),
        },
        Ok(false) => tcg("the guest kernel crashed or exited under kvm".into()),
        Err(_) => tcg(format!(
            "the guest kernel printed nothing under kvm within {PROBE_TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively_and_reject_junk() {
        assert_eq!("auto".parse(), Ok(AccelMode::Auto));
        assert_eq!(" KVM ".parse(), Ok(AccelMode::Kvm));
        assert_eq!("Tcg".parse(), Ok(AccelMode::Tcg));
        assert_eq!(
            "hvf".parse::<AccelMode>(),
            Err(ParseAccelError("hvf".into()))
        );
    }

    #[test]
    fn env_wins_over_config_unless_empty() {
        assert_eq!(
            effective_mode(AccelMode::Kvm, Some("tcg")),
            Ok(AccelMode::Tcg)
        );
        assert_eq!(
            effective_mode(AccelMode::Kvm, Some("  ")),
            Ok(AccelMode::Kvm)
        );
        assert_eq!(effective_mode(AccelMode::Auto, None), Ok(AccelMode::Auto));
        assert!(effective_mode(AccelMode::Auto, Some("xen")).is_err());
    }

    #[tokio::test]
    async fn forced_modes_do_not_probe() {
        let missing = Path::new("/nonexistent/qemu");
        assert_eq!(
            choose(AccelMode::Tcg, missing, missing, None, None)
                .await
                .accel,
            Accel::Tcg
        );
        assert_eq!(
            choose(AccelMode::Kvm, missing, missing, None, None)
                .await
                .accel,
            Accel::Kvm
        );
    }

    #[tokio::test]
    async fn probe_falls_back_to_tcg_when_qemu_cannot_run() {
        let choice = probe(
            Path::new("/nonexistent/qemu"),
            Path::new("/nonexistent/kernel"),
        )
        .await;
        assert_eq!(choice.accel, Accel::Tcg);
    }
}
