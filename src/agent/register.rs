//! Registering runners into a runner directory and removing them: the server side through
//! [`crate::client::registration`], the local side through [`crate::config::runner`]. The
//! `register` and `remove` commands ask, print, and call these.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::client::registration::{self, RegisterOptions};
use crate::client::{GitHubUrl, HttpClient};
use crate::config::jit;
use crate::config::runner::{self as runner_files, RUNNER_FILE, Registration};
use crate::crypto::rsa::RunnerKey;
use crate::image::Image;
use crate::protocol::Secret;

/// Most runners one `register --count` may create.
pub const MAX_COUNT: u32 = 64;

/// `--image LABEL=DIR` pairs, each DIR a valid image directory (made absolute).
pub fn parse_images(specs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut images = Vec::new();
    for spec in specs {
        let Some((label, dir)) = spec.split_once('=') else {
            bail!("--image {spec:?}: expected LABEL=IMAGE_DIR");
        };
        let label = label.trim();
        if label.is_empty() || label.contains(',') {
            bail!("--image {spec:?}: the label must be non-empty and contain no comma");
        }
        let dir = std::path::absolute(Path::new(dir.trim()))
            .with_context(|| format!("--image {spec:?}: cannot resolve {dir:?}"))?;
        Image::load(&dir).with_context(|| {
            format!(
                "--image {label}={}: not a runner image directory",
                dir.display()
            )
        })?;
        images.push((label.to_owned(), dir));
    }
    Ok(images)
}

/// Writes the registration a JIT configuration `blob` holds (refusing an existing runner of
/// the same name unless `replace`).
pub fn register_jit(blob: &str, dir: &Path, replace: bool) -> anyhow::Result<Registration> {
    let config = jit::decode(blob)?;
    let name = config.runner.agent_name.clone();
    refuse_existing(dir, &name, replace)?;
    let registration = Registration {
        dir: runner_files::registration_dir(dir, &name)?,
        runner: config.runner,
        credentials: config.credentials,
        key: config.key,
    };
    registration.save()?;
    Ok(registration)
}

/// Fails when runner `name` is registered in `dir` already and `replace` is not set.
pub fn refuse_existing(dir: &Path, name: &str, replace: bool) -> anyhow::Result<()> {
    if !replace && runner_files::registration_exists(dir, name)? {
        bail!(
            "a runner named {name:?} is already registered in {}: pass --replace to register it \
             again, or `ghrunner-vm remove` it first",
            runner_files::registration_dir(dir, name)?.display()
        );
    }
    Ok(())
}

/// Registers one runner with GitHub (a new RSA key) and writes its files under `dir`;
/// `progress` hears each step.
pub async fn register_one(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    opts: &RegisterOptions,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Registration> {
    let key = RunnerKey::generate()?;
    let registered = registration::register(http, github, token, &key, opts, progress)
        .await
        .with_context(|| {
            format!(
                "cannot register runner {:?} (as official runner version {})",
                opts.name, opts.runner_version
            )
        })?;
    let registration = Registration {
        dir: runner_files::registration_dir(dir, &opts.name)?,
        runner: registered.runner,
        credentials: registered.credentials,
        key,
    };
    registration.save()?;
    tracing::info!(
        name = %registration.runner.agent_name,
        id = registration.runner.agent_id,
        replaced = registered.replaced,
        "runner registered"
    );
    Ok(registration)
}

/// `NAME` for one runner, `NAME-1` … `NAME-N` for several.
pub fn runner_names(base: &str, count: u32) -> anyhow::Result<Vec<String>> {
    match count {
        0 => bail!("--count must be at least 1"),
        1 => Ok(vec![base.to_owned()]),
        n if n > MAX_COUNT => bail!("--count must be at most {MAX_COUNT}"),
        n => Ok((1..=n).map(|i| format!("{base}-{i}")).collect()),
    }
}

/// The host name, as a runner name.
pub fn default_name() -> String {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.nodename().to_str().map(str::to_owned))
        .map(|h| h.split('.').next().unwrap_or_default().to_owned())
        .filter(|h| runner_files::validate_name(h).is_ok())
        .unwrap_or_else(|| "ghrunner-vm".to_owned())
}

/// What happened to one registration [`remove_all`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The runner's name.
    pub name: String,
    /// Whether the server still knew it (else only the local files were deleted).
    pub found_on_server: bool,
}

/// The registration directories of `dir`; an error when there is none.
pub fn registrations(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dirs = runner_files::list_registration_dirs(dir)?;
    if dirs.is_empty() {
        bail!("no runner is registered in {}", dir.display());
    }
    Ok(dirs)
}

/// Deletes the registrations in `dirs` (from [`registrations`]) on the server (with the
/// remove `token`), then their local files; a registration the server no longer knows is only
/// deleted locally. `progress` hears each step.
pub async fn remove_all(
    dirs: Vec<PathBuf>,
    token: &Secret,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Removed>> {
    let http = HttpClient::new()?;
    let mut removed = Vec::new();
    for reg_dir in dirs {
        let runner = runner_files::load_runner_settings(&reg_dir.join(RUNNER_FILE))?;
        progress(&format!(
            "Removing runner {} (id {})",
            runner.agent_name, runner.agent_id
        ));
        let mut step = |line: &str| progress(&format!("  {line}"));
        let found = registration::remove(&http, &runner, token, &mut step)
            .await
            .with_context(|| {
                format!("cannot remove runner {:?} on the server", runner.agent_name)
            })?;
        if !found {
            progress(&format!(
                "  The server no longer knows runner {}; deleting the local files",
                runner.agent_name
            ));
        }
        Registration::delete_files(&reg_dir)?;
        tracing::info!(name = %runner.agent_name, id = runner.agent_id, "runner removed");
        progress(&format!("Runner {} removed", runner.agent_name));
        removed.push(Removed {
            name: runner.agent_name,
            found_on_server: found,
        });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_names_runners_with_suffixes() {
        assert_eq!(runner_names("r", 1).unwrap(), ["r"]);
        assert_eq!(runner_names("r", 3).unwrap(), ["r-1", "r-2", "r-3"]);
        assert!(runner_names("r", 0).is_err());
        assert!(runner_names("r", MAX_COUNT + 1).is_err());
    }

    #[test]
    fn image_specs_need_label_and_image_dir() {
        assert!(parse_images(&["nolabel".into()]).is_err());
        assert!(parse_images(&["=/tmp".into()]).is_err());
        let err = parse_images(&["tiny=/nonexistent-dir".into()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a runner image directory"),
            "{err:#}"
        );
    }
}
