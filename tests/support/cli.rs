//! Driving the CLI through the library against a local service.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser as _;
use ghrunner_vm::cli::Cli;
use ghrunner_vm::exit::ExitStatus;
use ghrunner_vm::localsvc::{DEFAULT_REGISTRATION_TOKEN, LocalService, LocalServiceConfig};

/// Runs `ghrunner-vm --dir DIR ARGS...` in-process.
pub async fn cli(dir: &Path, args: &[&str]) -> anyhow::Result<ExitStatus> {
    let mut argv = vec![
        "ghrunner-vm".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    ghrunner_vm::cli::run(Cli::try_parse_from(argv)?).await
}

/// A local service with the legacy flow or the runner-admin flow.
pub async fn service(v2: bool) -> LocalService {
    let config = LocalServiceConfig {
        use_v2_flow: v2,
        ..Default::default()
    };
    LocalService::start(config)
        .await
        .expect("start the local service")
}

/// `register --url URL --token <valid> --unattended --name NAME` plus `extra`. The runner
/// directory's `runner_releases_url` is pointed at the service of `url` (unless set), so that
/// neither `register` nor a later `run` asks anything but the local service.
pub async fn register(
    dir: &Path,
    url: &str,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<ExitStatus> {
    let mut settings = ghrunner_vm::config::Settings::load(dir)?;
    if settings.runner_releases_url.is_none() {
        let parsed = url::Url::parse(url)?;
        let origin = parsed.origin().ascii_serialization();
        settings.runner_releases_url = Some(format!(
            "{origin}/{}",
            ghrunner_vm::localsvc::LATEST_RELEASE_PATH
        ));
        std::fs::create_dir_all(dir)?;
        settings.save(dir)?;
    }
    let mut args = vec![
        "register",
        "--url",
        url,
        "--token",
        DEFAULT_REGISTRATION_TOKEN,
        "--unattended",
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    cli(dir, &args).await
}

/// `<dir>/runners/<name>`.
pub fn reg_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("runners").join(name)
}

/// The `{:#}` rendering of an error (with its causes).
pub fn chain(err: &anyhow::Error) -> String {
    format!("{err:#}")
}
