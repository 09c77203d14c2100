//! Choosing the accelerator: `kvm` when it really works, `tcg` otherwise.
//!
//! Owns: the `auto|kvm|tcg` setting (config `vm.accel`, overridden by `GHRUNNER_VM_ACCEL`), and
//! the bounded KVM probe behind `auto`, cached once per process.
//!
//! ```text
//!   mode kvm ─► Kvm        mode tcg ─► Tcg
//!   mode auto ─► /dev/kvm read-write? ──no──► Tcg ("kvm device unusable")
//!                    │ yes
//!                    ▼
//!              boot the image kernel under KVM; "Linux version" on the serial console
//!              within PROBE_TIMEOUT? ──yes──► Kvm   ──no (hang, crash)──► Tcg
//! ```

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

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

/// Result of the KVM probe, cached for the process.
static PROBE: OnceCell<AccelChoice> = OnceCell::const_new();

/// Resolves `mode` to an accelerator, probing KVM (once per process) if `auto`.
pub async fn choose(mode: AccelMode, qemu: &Path, kernel: &Path) -> AccelChoice {
    let choice = match mode {
        AccelMode::Kvm => AccelChoice {
            accel: Accel::Kvm,
            reason: "forced by configuration".into(),
        },
        AccelMode::Tcg => AccelChoice {
            accel: Accel::Tcg,
            reason: "forced by configuration".into(),
        },
        AccelMode::Auto => PROBE.get_or_init(|| probe(qemu, kernel)).await.clone(),
    };
    tracing::info!(accel = %choice.accel, reason = %choice.reason, %mode, "accelerator chosen");
    choice
}

/// Runs the bounded KVM probe (uncached).
pub async fn probe(qemu: &Path, kernel: &Path) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
    {
        return tcg(format!("{KVM_DEVICE} is not usable ({e})"));
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
        .args(["-serial", "stdio", "-append", "console=ttyS0 panic=-1"])
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
            choose(AccelMode::Tcg, missing, missing).await.accel,
            Accel::Tcg
        );
        assert_eq!(
            choose(AccelMode::Kvm, missing, missing).await.accel,
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
