//! `ghrunner-vm register`.

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

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
    /// Just-in-time configuration blob from the `generate-jitconfig` REST API, instead of a token.
    #[arg(long, value_name = "BLOB", hide_env_values = true)]
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
    let _ = (args, global);
    anyhow::bail!("`register` is not implemented yet")
}
