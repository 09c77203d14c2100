//! Host checks: the programs a job needs, /dev/kvm and the accelerator verdict.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::image::Image;
use crate::vm::qemu::accel::{self, AccelMode, ProbeSetup, VerdictSource};
use crate::vm::qemu::args::Accel;

use super::runner::{human_age, image_dirs};
use super::{Check, Status};

pub(super) async fn program_check(program: &str, package: &str, required: bool) -> Check {
    let output = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match output {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let version = text.lines().next().unwrap_or("").trim();
            Check::new(
                program,
                Status::Ok,
                if version.is_empty() { "found" } else { version },
                None,
            )
        }
        Err(e) => Check::new(
            program,
            if required { Status::Fail } else { Status::Warn },
            format!("cannot run it ({e})"),
            Some(install_fix(package)),
        ),
    }
}

/// The command that installs `package` so that it works with what is installed. qemu-utils
/// must come from the same QEMU release as an installed qemu-system-x86: apt removes a newer
/// qemu-utils (e.g. a backport) when it installs an older qemu-system-x86.
pub fn install_fix(package: &str) -> String {
    if package == "qemu-utils"
        && let Some(version) = installed_version("qemu-system-x86")
    {
        return format!(
            "apt-get install --allow-downgrades qemu-utils={version} (the release of the \
             installed qemu-system-x86)"
        );
    }
    format!("apt-get install {package}")
}

/// The installed version of a Debian package, if dpkg knows it as installed.
pub(super) fn installed_version(package: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('\t')?;
    (out.status.success() && status.ends_with(" installed") && !version.is_empty())
        .then(|| version.trim().to_owned())
}

pub(super) fn kvm_device_check() -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(accel::KVM_DEVICE)
    {
        Ok(_) => Check::new(
            accel::KVM_DEVICE,
            Status::Ok,
            "present and accessible",
            None,
        ),
        Err(e) => Check::new(
            accel::KVM_DEVICE,
            Status::Warn,
            format!("not usable ({e}); VMs run under TCG, several times slower"),
            Some(
                "enable virtualisation, load kvm_intel/kvm_amd, add this user to the `kvm` group"
                    .into(),
            ),
        ),
    }
}

/// The configured accelerator mode (`vm.accel` of config.yaml), if set.
pub(super) fn configured_accel(runner_dir: &Path) -> Result<AccelMode, String> {
    #[derive(serde::Deserialize, Default)]
    struct VmOnly {
        #[serde(default)]
        vm: VmSection,
    }
    #[derive(serde::Deserialize, Default)]
    struct VmSection {
        accel: Option<String>,
    }
    let path = runner_dir.join("config.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(AccelMode::Auto);
    };
    let parsed: VmOnly =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    parsed.vm.accel.map_or(Ok(AccelMode::Auto), |a| {
        a.parse().map_err(|e| format!("vm.accel: {e}"))
    })
}

pub(super) async fn accel_check(runner_dir: &Path, kernel: Option<&Path>, reprobe: bool) -> Check {
    let env = std::env::var(accel::ACCEL_ENV).ok();
    let mode = match configured_accel(runner_dir).and_then(|c| {
        accel::effective_mode(c, env.as_deref()).map_err(|e| format!("{}: {e}", accel::ACCEL_ENV))
    }) {
        Ok(mode) => mode,
        Err(e) => {
            return Check::new(
                "accelerator",
                Status::Fail,
                e,
                Some("use auto, kvm or tcg".into()),
            );
        }
    };
    if mode != AccelMode::Auto {
        return Check::new("accelerator", Status::Ok, format!("{mode} (forced)"), None);
    }
    let Some(kernel) = kernel else {
        return Check::new(
            "accelerator",
            Status::Warn,
            "auto, but no kernel to probe KVM with",
            Some(
                "install linux-image-amd64 or build an image: ghrunner-vm image build tiny".into(),
            ),
        );
    };
    let setup = ProbeSetup {
        qemu: Path::new("qemu-system-x86_64"),
        kernel,
        kvm_device: Path::new(accel::KVM_DEVICE),
        kernel_sha256: None,
    };
    let verdict = if runner_dir.is_dir() {
        accel::probe_cached(&setup, runner_dir, reprobe).await
    } else {
        accel::Verdict {
            choice: accel::probe(setup.qemu, kernel).await,
            source: VerdictSource::Probed,
        }
    };
    let choice = verdict.choice;
    let source = match verdict.source {
        VerdictSource::Cached { probed_at } => {
            let age = (chrono::Utc::now() - probed_at)
                .to_std()
                .unwrap_or_default();
            format!(
                "verdict cached {} ago in {}; `doctor --reprobe` probes again",
                human_age(age),
                runner_dir.join(accel::PROBE_CACHE_FILE).display()
            )
        }
        VerdictSource::Probed if runner_dir.is_dir() => "probed now, verdict cached".to_owned(),
        VerdictSource::Probed => "probed now".to_owned(),
        VerdictSource::DeviceUnusable => "no probe".to_owned(),
    };
    match choice.accel {
        Accel::Kvm => Check::new(
            "accelerator",
            Status::Ok,
            format!("kvm ({}; {source})", choice.reason),
            None,
        ),
        Accel::Tcg => Check::new(
            "accelerator",
            Status::Warn,
            format!("tcg: {} ({source})", choice.reason),
            Some(format!(
                "set {}=tcg (or vm.accel: tcg) to skip the probe",
                accel::ACCEL_ENV
            )),
        ),
    }
}

/// A kernel to probe KVM with: the first usable image's, else the newest /boot/vmlinuz-*.
pub(super) fn probe_kernel(runner_dir: &Path) -> Option<PathBuf> {
    let from_image = image_dirs(runner_dir).into_iter().find_map(|dir| {
        let image = Image::load(&dir).ok()?;
        let kernel = image.path(image.manifest.kernel.as_deref()?);
        kernel.is_file().then_some(kernel)
    });
    from_image.or_else(|| {
        let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .collect();
        kernels.sort();
        kernels.pop()
    })
}
