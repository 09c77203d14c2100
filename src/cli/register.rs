//! `ghrunner-vm register`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

use super::GlobalArgs;
use crate::client::registration::{self, RegisterOptions};
use crate::client::{GitHubUrl, HttpClient};
use crate::config::runner::{self as runner_files, Registration};
use crate::config::{Settings, jit};
use crate::crypto::rsa::RunnerKey;
use crate::exit::ExitStatus;
use crate::image::Image;
use crate::protocol::Secret;
use crate::version::VersionPolicy;

/// Register this machine as a runner of a repository or organisation.
///
/// Creates an RSA key pair, registers the runner with GitHub (or a GitHub Enterprise Server)
/// exactly as the official runner does, and writes `.runner`, `.credentials` and
/// `.credentials_rsaparams` (mode 0600) to the runner directory.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Repository or organisation URL, e.g. https://github.com/octo/hello or
    /// https://ghes.example.com/my-org.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Registration token (Settings → Actions → Runners → New runner). Never logged or stored.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "GHRUNNER_VM_TOKEN",
        hide_env_values = true,
        conflicts_with = "jitconfig"
    )]
    pub token: Option<String>,
    /// Just-in-time configuration from the `generate-jitconfig` REST API, instead of a token.
    /// It holds the runner's private key, so prefer a way that keeps it out of `ps`:
    /// `$GHRUNNER_VM_JITCONFIG`, `@FILE` (read from FILE) or `-` (read from standard input).
    #[arg(
        long,
        value_name = "BLOB|@FILE|-",
        env = "GHRUNNER_VM_JITCONFIG",
        hide_env_values = true
    )]
    pub jitconfig: Option<String>,
    /// Runner name [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Extra labels, comma separated, e.g. `tiny,gpu`.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Runner group to join [default: the default group].
    #[arg(long, value_name = "GROUP")]
    pub runner_group: Option<String>,
    /// Guest image for a label: `LABEL=IMAGE_DIR` (repeatable). A job whose `runs-on` names
    /// LABEL runs in a VM from IMAGE_DIR. The label is added to the runner's labels.
    #[arg(long = "image", value_name = "LABEL=IMAGE_DIR")]
    pub images: Vec<String>,
    /// Take one job, then deregister (the server deletes the runner after the job).
    #[arg(long)]
    pub ephemeral: bool,
    /// Replace an existing runner of the same name.
    #[arg(long)]
    pub replace: bool,
    /// Never prompt; fail if a required value is missing.
    #[arg(long)]
    pub unattended: bool,
    /// Do not add the default labels (self-hosted, OS, architecture).
    #[arg(long)]
    pub no_default_labels: bool,
    /// Tell the server not to offer runner updates (ghrunner-vm never self-updates).
    #[arg(long)]
    pub disable_update: bool,
    /// Register N runners named NAME-1 … NAME-N in this directory; `run` serves them all.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u32,
}

/// Most runners one `register --count` may create.
pub const MAX_COUNT: u32 = 64;

/// Runs `register`.
pub async fn run(args: RegisterArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let dir = global.runner_dir()?;
    let mut settings = Settings::load(&dir)?;
    let images = parse_images(&args.images)?;
    let mut labels = args.labels.clone();
    for (label, image_dir) in &images {
        if !labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            labels.push(label.clone());
        }
        settings.images.insert(label.clone(), image_dir.clone());
    }
    if let Some(source) = &args.jitconfig {
        let blob = read_jitconfig(source)?;
        register_jit(&blob, &dir, args.replace)?;
    } else {
        let versions = crate::version::policy_for_dir(&dir, &settings).await?;
        register_with_token(&args, &dir, labels, &versions).await?;
    }
    if !images.is_empty() {
        settings.save(&dir)?;
        for (label, image_dir) in &images {
            println!("Image for label {label}: {}", image_dir.display());
        }
    }
    Ok(ExitStatus::Success)
}

/// `--image LABEL=DIR` pairs, each DIR a valid image directory (made absolute).
fn parse_images(specs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
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

/// Largest JIT configuration read from a file or standard input (real ones are a few KiB).
const MAX_JITCONFIG_BYTES: u64 = 1 << 20;

/// The JIT configuration named by `source`: the blob itself, `@FILE` or `-` (stdin).
fn read_jitconfig(source: &str) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = |reader: &mut dyn std::io::Read, what: &str, text: &mut String| {
        reader
            .take(MAX_JITCONFIG_BYTES + 1)
            .read_to_string(text)
            .with_context(|| format!("cannot read the --jitconfig from {what}"))?;
        if text.len() as u64 > MAX_JITCONFIG_BYTES {
            bail!("the --jitconfig from {what} is larger than {MAX_JITCONFIG_BYTES} bytes");
        }
        Ok(())
    };
    if source == "-" {
        read(&mut std::io::stdin().lock(), "standard input", &mut text)?;
    } else if let Some(path) = source.strip_prefix('@') {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the --jitconfig file {path}"))?;
        read(&mut file, path, &mut text)?;
    } else {
        text = source.to_owned();
    }
    let blob = text.trim();
    if blob.is_empty() {
        bail!("--jitconfig is empty");
    }
    Ok(blob.to_owned())
}

fn register_jit(blob: &str, dir: &Path, replace: bool) -> anyhow::Result<()> {
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
    println!(
        "Runner {name} (id {}) configured from --jitconfig in {}",
        registration.runner.agent_id,
        registration.dir.display()
    );
    Ok(())
}

fn refuse_existing(dir: &Path, name: &str, replace: bool) -> anyhow::Result<()> {
    if !replace && runner_files::registration_exists(dir, name)? {
        bail!(
            "a runner named {name:?} is already registered in {}: pass --replace to register it \
             again, or `ghrunner-vm remove` it first",
            runner_files::registration_dir(dir, name)?.display()
        );
    }
    Ok(())
}

async fn register_with_token(
    args: &RegisterArgs,
    dir: &Path,
    labels: Vec<String>,
    versions: &VersionPolicy,
) -> anyhow::Result<()> {
    let interactive = !args.unattended && std::io::stdin().is_terminal();
    let url = match &args.url {
        Some(url) => url.clone(),
        None if interactive => prompt("Repository or organisation URL", None)?,
        None => bail!("--url is required (e.g. --url https://github.com/OWNER/REPO)"),
    };
    let github = GitHubUrl::parse(&url)?;
    let token = match &args.token {
        Some(token) => Secret::new(token.clone()),
        None if interactive => Secret::new(prompt("Registration token", None)?),
        None => bail!("--token (or $GHRUNNER_VM_TOKEN) or --jitconfig is required"),
    };
    let base_name = match &args.name {
        Some(name) => name.clone(),
        None if interactive => prompt("Runner name", Some(&default_name()))?,
        None => default_name(),
    };
    let names = runner_names(&base_name, args.count)?;
    for name in &names {
        runner_files::validate_name(name)?;
        refuse_existing(dir, name, args.replace)?;
    }
    let http = HttpClient::new()?;
    versions.bind(&http);
    let runner_version = versions.current().version.to_string();
    for name in &names {
        let opts = RegisterOptions {
            name: name.clone(),
            labels: labels.clone(),
            default_labels: !args.no_default_labels,
            runner_group: args.runner_group.clone(),
            ephemeral: args.ephemeral,
            replace: args.replace,
            disable_update: args.disable_update,
            runner_version: runner_version.clone(),
        };
        register_one(&http, &github, &token, &opts, dir).await?;
    }
    Ok(())
}

async fn register_one(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    opts: &RegisterOptions,
    dir: &Path,
) -> anyhow::Result<()> {
    println!("Registering runner {} with {}", opts.name, github.url);
    let key = RunnerKey::generate()?;
    let mut progress = |line: &str| println!("  {line}");
    let registered = registration::register(http, github, token, &key, opts, &mut progress)
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
    println!(
        "Runner {} registered (id {}, labels {}) in {}",
        registration.runner.agent_name,
        registration.runner.agent_id,
        registration.runner.labels.join(","),
        registration.dir.display()
    );
    Ok(())
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
fn default_name() -> String {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.nodename().to_str().map(str::to_owned))
        .map(|h| h.split('.').next().unwrap_or_default().to_owned())
        .filter(|h| runner_files::validate_name(h).is_ok())
        .unwrap_or_else(|| "ghrunner-vm".to_owned())
}

/// Asks on the terminal; an empty answer takes `default`.
fn prompt(question: &str, default: Option<&str>) -> anyhow::Result<String> {
    match default {
        Some(d) => print!("{question} [{d}]: "),
        None => print!("{question}: "),
    }
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    match (answer.is_empty(), default) {
        (false, _) => Ok(answer.to_owned()),
        (true, Some(d)) => Ok(d.to_owned()),
        (true, None) => bail!("{question} is required"),
    }
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
