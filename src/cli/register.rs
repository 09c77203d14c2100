//! `ghrunner-vm register`: asks for what is missing (on a terminal), then registers through
//! [`crate::agent::register`] and prints what it did.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Args;

use super::GlobalArgs;
use crate::agent::register::{
    default_name, parse_images, refuse_existing, register_jit, register_one, runner_names,
};
use crate::client::registration::RegisterOptions;
use crate::client::{GitHubUrl, HttpClient};
use crate::config::Settings;
use crate::config::runner as runner_files;
use crate::exit::ExitStatus;
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
        let registration = register_jit(&blob, &dir, args.replace)?;
        println!(
            "Runner {} (id {}) configured from --jitconfig in {}",
            registration.runner.agent_name,
            registration.runner.agent_id,
            registration.dir.display()
        );
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
        println!("Registering runner {} with {}", opts.name, github.url);
        let mut progress = |line: &str| println!("  {line}");
        let registration = register_one(&http, &github, &token, &opts, dir, &mut progress).await?;
        println!(
            "Runner {} registered (id {}, labels {}) in {}",
            registration.runner.agent_name,
            registration.runner.agent_id,
            registration.runner.labels.join(","),
            registration.dir.display()
        );
    }
    Ok(())
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
