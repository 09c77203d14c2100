//! `ghrunner-vm doctor`: checks what the runner needs on this host and says how to fix it.
//!
//! Each check yields a [`Check`] (ok, warning or failure, with a fix). Failures of something
//! required make the exit code non-zero (1): the host cannot run jobs; 0 means it can (a fresh
//! runner directory without images is a warning naming the `image build` to run). The checks
//! are the programs a job needs (QEMU, qemu-img, passt, with the exact `apt-get` command), /dev/kvm
//! and the accelerator verdict (cached per host state, `--reprobe` probes again), the installed
//! images (manifest valid, files present and matching their checksums; when there is none,
//! what `image build tiny` still needs) and the runner directory's permissions.

use crate::errors::error_chain;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;
use crate::image::build::missing_prerequisites;
use crate::image::{BuildOptions, Image, Recipe};
use crate::vm::qemu::accel::{self, AccelMode, ProbeSetup, VerdictSource};
use crate::vm::qemu::args::Accel;

/// Check QEMU, qemu-img, passt, KVM (with a bounded probe, cached per host state), images and
/// the runner directory's permissions, and print what to install or fix. Exits 0 when the host
/// can run jobs, 1 otherwise.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Probe KVM again even when a verdict for this host state is cached
    /// (<dir>/accel-probe.json), and cache the new verdict.
    #[arg(long)]
    pub reprobe: bool,
}

/// Programs a host needs to run jobs, with the Debian package that has each.
pub const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("passt", "passt"),
];

/// Files holding credentials, which must be readable by the owner only.
const CREDENTIAL_FILES: &[&str] = &[".credentials", ".credentials_rsaparams", ".runner"];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worse than it could (e.g. no KVM).
    Warn,
    /// Something required is missing or wrong.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, if not ok.
    pub fix: Option<String>,
}

impl Check {
    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// Runs `doctor`.
pub async fn run(args: DoctorArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let runner_dir = global.runner_dir()?;
    let mut checks = Vec::new();
    for (program, package) in REQUIRED_PROGRAMS {
        checks.push(program_check(program, package, true).await);
    }
    checks.push(kvm_device_check());
    let images = image_checks(&runner_dir);
    let kernel = probe_kernel(&runner_dir);
    checks.push(accel_check(&runner_dir, kernel.as_deref(), args.reprobe).await);
    checks.push(runner_version_check(&runner_dir).await);
    checks.extend(confinement_checks(&runner_dir).await);
    checks.extend(images);
    checks.extend(permission_checks(&runner_dir));
    print!("{}", render(&checks));
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}

/// Renders the report: one line per check, with its fix indented below.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let tag = match check.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "[{tag}] {}: {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let _ = writeln!(out, "{failed} problem(s), {warned} warning(s)");
    out
}

async fn program_check(program: &str, package: &str, required: bool) -> Check {
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
fn installed_version(package: &str) -> Option<String> {
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

fn kvm_device_check() -> Check {
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
fn configured_accel(runner_dir: &Path) -> Result<AccelMode, String> {
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

async fn accel_check(runner_dir: &Path, kernel: Option<&Path>, reprobe: bool) -> Check {
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

/// Which user QEMU and passt run as, and whether the egress policy is (or can be) in force.
async fn confinement_checks(runner_dir: &Path) -> Vec<Check> {
    use crate::vm::egress::{self, EgressPolicy};
    use crate::vm::guest_user::GuestUser;
    let settings = match crate::config::Settings::load(runner_dir) {
        Ok(settings) => settings,
        // The runner-version check reports a broken config.yaml.
        Err(_) => return Vec::new(),
    };
    let root = nix::unistd::geteuid().is_root();
    let run_as = &settings.vm.run_as;
    let user = GuestUser::lookup(run_as).ok().flatten();
    let helper_user = match (&user, root) {
        (_, false) => Check::new(
            "vm helper user",
            Status::Ok,
            format!(
                "QEMU and passt run as the agent's user (uid {}, not root)",
                nix::unistd::geteuid()
            ),
            None,
        ),
        (Some(user), true) if user.uid == 0 => Check::new(
            "vm helper user",
            Status::Fail,
            format!("vm.run_as names {run_as}, which is root: QEMU and passt would run as root"),
            Some("set vm.run_as to an unprivileged user (default ghrunner-vm-guest)".into()),
        ),
        (Some(user), true) => Check::new(
            "vm helper user",
            Status::Ok,
            format!(
                "QEMU and passt switch to {} (uid {}) after start-up",
                user.name, user.uid
            ),
            None,
        ),
        (None, true) => Check::new(
            "vm helper user",
            Status::Ok,
            format!("{run_as} does not exist yet; `run` creates it (a system account) at start"),
            None,
        ),
    };
    let name = "egress policy";
    let egress = if settings.vm.network == crate::config::settings::Network::None {
        Check::new(
            name,
            Status::Ok,
            "guests have no network (vm.network: none)",
            None,
        )
    } else if !root {
        Check::new(
            name,
            Status::Warn,
            "NOT in force: the agent is not root, so guests reach private networks, cloud              metadata (169.254.169.254) and this host",
            Some(super::run_vm::EGRESS_NEEDS_ROOT.into()),
        )
    } else {
        let nft = Path::new(super::run_vm::NFT);
        let uid = user.as_ref().map_or(u32::MAX - 1, |u| u.uid);
        let installed = user.is_some() && egress::installed_for(nft, uid).await;
        let policy = EgressPolicy::build(
            uid,
            &settings.network.allow,
            &[],
            Path::new(super::run_vm::RESOLV_CONF),
        )
        .await;
        match (installed, policy) {
            (true, _) => Check::new(
                name,
                Status::Ok,
                format!(
                    "in force: table inet {} refuses {run_as}'s connections to private, link-local and this host's addresses",
                    egress::TABLE
                ),
                None,
            ),
            (false, Err(err)) => Check::new(
                name,
                Status::Fail,
                error_chain(&err),
                Some("fix network.allow in config.yaml".into()),
            ),
            (false, Ok(policy)) => match egress::check(nft, &policy).await {
                Ok(()) => Check::new(
                    name,
                    Status::Ok,
                    format!(
                        "enforceable: `run` installs table inet {} at start (nft --check passed)",
                        egress::TABLE
                    ),
                    None,
                ),
                Err(err) => Check::new(
                    name,
                    Status::Warn,
                    format!("NOT enforceable: {}", error_chain(&err)),
                    Some(super::run_vm::EGRESS_NEEDS_NFT.into()),
                ),
            },
        }
    };
    vec![helper_user, egress]
}

/// The runner version `run` would advertise (fetching the latest release if due), and whether
/// GitHub still gives jobs to it (released at most 30 days ago).
async fn runner_version_check(runner_dir: &Path) -> Check {
    let name = "runner version";
    let settings = match crate::config::Settings::load(runner_dir) {
        Ok(settings) => settings,
        Err(err) => {
            return Check::new(
                name,
                Status::Fail,
                error_chain(&err),
                Some("fix config.yaml".into()),
            );
        }
    };
    let policy = match super::version_policy(runner_dir, &settings).await {
        Ok(policy) => policy,
        Err(err) => {
            return Check::new(
                name,
                Status::Fail,
                format!("{err:#}"),
                Some("runner_version must be auto or MAJOR.MINOR.PATCH".into()),
            );
        }
    };
    let advertised = policy.current();
    let age = advertised.age_days(chrono::Utc::now());
    match age {
        Some(days) if days > crate::version::MAX_RELEASE_AGE_DAYS => {
            let fix = match policy.config().setting {
                crate::version::VersionSetting::Pinned(_) => format!(
                    "set `runner_version: auto` in config.yaml (or {}=auto), or pin a release \
                     of the last 30 days",
                    crate::version::VERSION_ENV
                ),
                crate::version::VersionSetting::Auto => format!(
                    "make {} reachable from this host (or set runner_releases_url to a mirror), \
                     or pin a release of the last 30 days with runner_version",
                    policy.config().releases_url
                ),
            };
            Check::new(
                name,
                Status::Warn,
                format!(
                    "{advertised}: released {days} days ago; GitHub gives no jobs to runners \
                     whose version was released more than {} days ago",
                    crate::version::MAX_RELEASE_AGE_DAYS
                ),
                Some(fix),
            )
        }
        _ => Check::new(name, Status::Ok, advertised.to_string(), None),
    }
}

/// `3d 4h`, `2h 5m`, `7m 30s`, `12s`.
fn human_age(age: std::time::Duration) -> String {
    let s = age.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A kernel to probe KVM with: the first usable image's, else the newest /boot/vmlinuz-*.
fn probe_kernel(runner_dir: &Path) -> Option<PathBuf> {
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

/// Image directories: `<runner dir>/images/*` plus those named in config.yaml's `images:`.
fn image_dirs(runner_dir: &Path) -> Vec<PathBuf> {
    #[derive(serde::Deserialize, Default)]
    struct ImagesOnly {
        #[serde(default)]
        images: BTreeMap<String, PathBuf>,
    }
    let mut dirs: std::collections::BTreeSet<PathBuf> =
        std::fs::read_to_string(runner_dir.join("config.yaml"))
            .ok()
            .and_then(|t| serde_yaml::from_str::<ImagesOnly>(&t).ok())
            .unwrap_or_default()
            .images
            .into_values()
            .map(|dir| runner_dir.join(dir))
            .collect();
    if let Ok(entries) = std::fs::read_dir(runner_dir.join("images")) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') && entry.path().is_dir() {
                dirs.insert(entry.path());
            }
        }
    }
    dirs.into_iter().collect()
}

fn image_checks(runner_dir: &Path) -> Vec<Check> {
    let dirs = image_dirs(runner_dir);
    if dirs.is_empty() {
        return vec![no_image_check(runner_dir)];
    }
    dirs.into_iter()
        .map(|dir| {
            let name = format!("image {}", dir.display());
            match Image::load(&dir).and_then(|image| image.verify().map(|()| image)) {
                Ok(image) => Check::new(
                    name,
                    Status::Ok,
                    format!("{} ({})", image.manifest.name, image.manifest.arch),
                    None,
                ),
                Err(e) => Check::new(
                    name,
                    Status::Fail,
                    error_chain(&e),
                    Some("rebuild it: ghrunner-vm image build <recipe> --out <dir>".into()),
                ),
            }
        })
        .collect()
}

/// A runner directory without images is not broken, just new: say which build to run, and
/// what the tiny recipe still needs on this host.
fn no_image_check(runner_dir: &Path) -> Check {
    let out = runner_dir.join("images").join("tiny");
    let build = format!(
        "ghrunner-vm --dir {} image build tiny --out {} (or `image build debian` for a full \
         Debian guest)",
        runner_dir.display(),
        out.display()
    );
    let missing = Recipe::builtin("tiny").map(|recipe| {
        let opts = BuildOptions {
            out,
            env: Vec::new(),
            cancel: None,
        };
        missing_prerequisites(&recipe, &opts)
    });
    let fix = match missing {
        Some(Ok(missing)) if !missing.is_empty() => {
            let mut packages: Vec<&str> = missing.iter().map(|m| m.package.as_str()).collect();
            packages.dedup();
            format!("apt-get install {} && {build}", packages.join(" "))
        }
        _ => build,
    };
    Check::new(
        "images",
        Status::Warn,
        format!(
            "no image yet in {}: jobs need one",
            runner_dir.join("images").display()
        ),
        Some(fix),
    )
}

fn permission_checks(runner_dir: &Path) -> Vec<Check> {
    let name = format!("runner directory {}", runner_dir.display());
    let meta = match std::fs::metadata(runner_dir) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![Check::new(
                name,
                Status::Warn,
                format!("not there yet ({e})"),
                Some("ghrunner-vm register creates it".into()),
            )];
        }
    };
    let mut checks = Vec::new();
    let mode = meta.permissions().mode() & 0o777;
    checks.push(if mode & 0o077 == 0 {
        Check::new(name, Status::Ok, format!("mode {mode:o}"), None)
    } else {
        Check::new(
            name,
            Status::Warn,
            format!("mode {mode:o}: others can look inside (VM work files, logs)"),
            Some(format!("chmod 700 {}", runner_dir.display())),
        )
    });
    let registrations =
        crate::config::runner::list_registration_dirs(runner_dir).unwrap_or_default();
    for reg_dir in registrations {
        let reg = reg_dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for file in CREDENTIAL_FILES {
            let path = reg_dir.join(file);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let name = format!("{reg}/{file}");
            let mode = meta.permissions().mode() & 0o777;
            checks.push(if mode & 0o077 == 0 {
                Check::new(name, Status::Ok, format!("mode {mode:o}"), None)
            } else {
                Check::new(
                    name,
                    Status::Fail,
                    format!("mode {mode:o}: credentials readable by others"),
                    Some(format!("chmod 600 {}", path.display())),
                )
            });
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    #[test]
    fn credentials_readable_by_others_fail_with_a_chmod_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let reg = dir.path().join("runners").join("r1");
        std::fs::create_dir_all(&reg).unwrap();
        std::fs::write(reg.join(".credentials"), "{}").unwrap();
        std::fs::set_permissions(
            reg.join(".credentials"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::write(reg.join(".runner"), "{}").unwrap();
        std::fs::set_permissions(reg.join(".runner"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let checks = permission_checks(dir.path());
        let creds = find(&checks, "r1/.credentials");
        assert_eq!(creds.status, Status::Fail);
        assert!(creds.fix.as_deref().unwrap().starts_with("chmod 600 "));
        assert_eq!(find(&checks, "r1/.runner").status, Status::Ok);
        assert_eq!(checks[0].status, Status::Warn, "0755 runner dir");
    }

    #[test]
    fn images_are_listed_from_the_images_dir_and_broken_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let none = &image_checks(dir.path())[0];
        assert_eq!(none.status, Status::Warn, "no images yet is not a failure");
        assert!(
            none.fix
                .as_deref()
                .unwrap()
                .contains("image build tiny --out "),
            "{none:?}"
        );
        let broken = dir.path().join("images/broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("manifest.json"), "{not json").unwrap();
        let checks = image_checks(dir.path());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].name.ends_with("images/broken"));
    }

    #[test]
    fn configured_accel_reads_vm_accel_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(configured_accel(dir.path()), Ok(AccelMode::Auto));
        std::fs::write(dir.path().join("config.yaml"), "vm:\n  accel: tcg\n").unwrap();
        assert_eq!(configured_accel(dir.path()), Ok(AccelMode::Tcg));
        std::fs::write(dir.path().join("config.yaml"), "vm:\n  accel: hvf\n").unwrap();
        assert!(configured_accel(dir.path()).is_err());
    }

    #[test]
    fn report_counts_problems_and_shows_fixes() {
        let checks = vec![
            Check::new(
                "qemu-img",
                Status::Fail,
                "cannot run it",
                Some("apt-get install qemu-utils".into()),
            ),
            Check::new("/dev/kvm", Status::Ok, "present", None),
        ];
        let out = render(&checks);
        assert!(
            out.contains(
                "[FAIL] qemu-img: cannot run it\n       fix: apt-get install qemu-utils\n"
            )
        );
        assert!(out.ends_with("1 problem(s), 0 warning(s)\n"));
    }
}
