//! The command line: clap derive structs (doc comments are the `--help` text) and the dispatch
//! to one handler per subcommand. anyhow is used here and in `main.rs` only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::ExitStatus;

pub mod demo;
pub mod doctor;
pub mod expr;
pub mod image;
pub mod register;
pub mod remove;
pub mod run;
pub mod status;

/// A self-hosted GitHub Actions runner that runs every job in a freshly cloned QEMU VM.
///
/// Register once with `ghrunner-vm register`, then serve jobs with `ghrunner-vm run`.
#[derive(Debug, Parser)]
#[command(name = "ghrunner-vm", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory holding the runner's configuration, credentials and VM work files
    /// [default: the per-user data directory, e.g. ~/.local/share/ghrunner-vm]
    #[arg(long, global = true, env = "GHRUNNER_VM_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GHRUNNER_VM_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `ghrunner_vm=debug`.
    #[arg(long, global = true, default_value = "info", env = "GHRUNNER_VM_LOG")]
    pub log: String,
}

impl GlobalArgs {
    /// The runner directory: `--dir`, else `$GHRUNNER_VM_DIR`, else the per-user data dir.
    pub fn runner_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        let base = dirs::data_dir().ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find a per-user data directory: pass --dir or set GHRUNNER_VM_DIR"
            )
        })?;
        Ok(base.join("ghrunner-vm"))
    }
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this machine as a runner of a repository or organisation.
    Register(register::RegisterArgs),
    /// Deregister the runner on the server, then delete its local files.
    Remove(remove::RemoveArgs),
    /// Listen for jobs and run each in a fresh VM.
    Run(run::RunArgs),
    /// Show what is registered where, with which labels and images (no secrets).
    Status(status::StatusArgs),
    /// Evaluate a `${{ }}` expression, for debugging `if:` conditions.
    Expr(expr::ExprArgs),
    /// Build and list runner images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Check QEMU, KVM, images and the runner directory, and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Run the demo workflow through an embedded local GitHub service in a real QEMU VM.
    Demo(demo::DemoArgs),
}

/// Sets up `tracing` on stderr in the chosen format.
pub fn init_tracing(global: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (e.g. in tests) is harmless; ignore it.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let global = cli.global;
    match cli.command {
        Command::Register(args) => register::run(args, &global).await,
        Command::Remove(args) => remove::run(args, &global).await,
        Command::Run(args) => run::run(args, &global).await,
        Command::Status(args) => status::run(args, &global).await,
        Command::Expr(args) => expr::run(args, &global).await,
        Command::Image(cmd) => image::run(cmd, &global).await,
        Command::Doctor(args) => doctor::run(args, &global).await,
        Command::Demo(args) => demo::run(args, &global).await,
    }
}
