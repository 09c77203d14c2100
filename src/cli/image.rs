//! `ghrunner-vm image build|list`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Build and list runner images.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image directory from a recipe in runner-images/ (`tiny` or `debian`).
    Build(ImageBuildArgs),
    /// List the images installed in the runner directory and the ones registered to labels.
    List(ImageListArgs),
}

/// Arguments of `image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Recipe name (`tiny`, `debian`) or path to a recipe directory.
    pub recipe: String,
    /// Output image directory [default: <runner dir>/images/<recipe>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Arguments of `image list`.
#[derive(Debug, Args)]
pub struct ImageListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `image`.
pub async fn run(cmd: ImageCommand, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (cmd, global);
    anyhow::bail!("`image` is not implemented yet")
}
