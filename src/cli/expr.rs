//! `ghrunner-vm expr`.

use std::path::PathBuf;

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Evaluate a `${{ }}` expression (without the braces), for debugging `if:` conditions.
///
/// Prints `{"kind": "Boolean|Number|String|Null|Array|Object", "value": ...}`, or
/// `{"err": {"kind": "lexing|parsing|evaluation", "value": "message"}}` with a non-zero exit.
#[derive(Debug, Args)]
pub struct ExprArgs {
    /// The expression, e.g. `github.event_name == 'push' && success()`.
    #[arg(required_unless_present = "batch")]
    pub expression: Option<String>,
    /// JSON file with the contexts, e.g. `{"github": {"event_name": "push"}}`.
    #[arg(long, value_name = "FILE.json")]
    pub contexts: Option<PathBuf>,
    /// Read JSON lines `{"expr": ..., "contexts": {...}}` on stdin; write one result per line.
    #[arg(long, conflicts_with_all = ["expression", "contexts"])]
    pub batch: bool,
}

/// Runs `expr`.
pub async fn run(args: ExprArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (args, global);
    anyhow::bail!("`expr` is not implemented yet")
}
