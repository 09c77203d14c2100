//! Runner-directory checks: confinement (helper user, egress policy), the advertised runner
//! version, images and permissions.

use crate::errors::error_chain;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::image::build::missing_prerequisites;
use crate::image::{BuildOptions, Image, Recipe};

use super::{CREDENTIAL_FILES, Check, Status};

/// Which user QEMU and passt run as, and whether the egress policy is (or can be) in force.
pub(super) async fn confinement_checks(runner_dir: &Path) -> Vec<Check> {
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
            Some(egress::NEEDS_ROOT.into()),
        )
    } else {
        let nft = Path::new(egress::NFT);
        let uid = user.as_ref().map_or(u32::MAX - 1, |u| u.uid);
        let installed = user.is_some() && egress::installed_for(nft, uid).await;
        let policy = EgressPolicy::build(
            uid,
            &settings.network.allow,
            &[],
            Path::new(egress::RESOLV_CONF),
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
                    Some(egress::NEEDS_NFT.into()),
                ),
            },
        }
    };
    vec![helper_user, egress]
}

/// The runner version `run` would advertise (fetching the latest release if due), and whether
/// GitHub still gives jobs to it (released at most 30 days ago).
pub(super) async fn runner_version_check(runner_dir: &Path) -> Check {
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
    let policy = match crate::version::policy_for_dir(runner_dir, &settings).await {
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
pub(super) fn human_age(age: std::time::Duration) -> String {
    let s = age.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Image directories: `<runner dir>/images/*` plus those named in config.yaml's `images:`.
pub(super) fn image_dirs(runner_dir: &Path) -> Vec<PathBuf> {
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

pub(super) fn image_checks(runner_dir: &Path) -> Vec<Check> {
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
pub(super) fn no_image_check(runner_dir: &Path) -> Check {
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

pub(super) fn permission_checks(runner_dir: &Path) -> Vec<Check> {
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
    checks.push(mode_check(
        name,
        &meta,
        Status::Warn,
        "others can look inside (VM work files, logs)",
        format!("chmod 700 {}", runner_dir.display()),
    ));
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
            checks.push(mode_check(
                name,
                &meta,
                Status::Fail,
                "credentials readable by others",
                format!("chmod 600 {}", path.display()),
            ));
        }
    }
    checks
}

/// Ok when only the owner may access the file of `meta`; else `status` with `problem` and `fix`.
fn mode_check(
    name: impl Into<String>,
    meta: &std::fs::Metadata,
    status: Status,
    problem: &str,
    fix: String,
) -> Check {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        Check::new(name, Status::Ok, format!("mode {mode:o}"), None)
    } else {
        Check::new(name, status, format!("mode {mode:o}: {problem}"), Some(fix))
    }
}
