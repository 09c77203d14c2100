//! `ghrunner-vm status`: prints [`crate::agent::status::collect`]'s report as text or JSON.

use clap::Args;

use super::GlobalArgs;
use crate::agent::status::{StatusReport, collect};
use crate::exit::ExitStatus;

/// Show what is registered where, with which labels and images. Never prints secrets.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let dir = global.runner_dir()?;
    let report = collect(&dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitStatus::Success)
}

/// Human-readable report.
pub fn render(report: &StatusReport) -> String {
    let mut out = format!("Runner directory: {}\n", report.dir);
    let v = &report.runner_version;
    out.push_str(&format!(
        "Runner version: {} ({}{}; runner_version: {}; protocol reviewed up to {})\n",
        v.version,
        v.source,
        v.released
            .as_deref()
            .map(|d| format!(", released {d}"))
            .unwrap_or_default(),
        v.setting,
        v.baseline
    ));
    if report.runners.is_empty() {
        out.push_str("No runner is registered (run `ghrunner-vm register`).\n");
    }
    for r in &report.runners {
        out.push_str(&format!("Runner {} (id {})\n", r.name, r.id));
        out.push_str(&format!("  URL:          {}\n", r.url));
        out.push_str(&format!(
            "  Group:        {}\n",
            r.group.as_deref().unwrap_or("-")
        ));
        let via = if r.broker { "broker" } else { "legacy pool" };
        out.push_str(&format!("  Flow:         {} (jobs via {via})\n", r.flow));
        out.push_str(&format!("  Labels:       {}\n", r.labels.join(", ")));
        out.push_str(&format!(
            "  Ephemeral:    {}\n",
            if r.ephemeral { "yes" } else { "no" }
        ));
        out.push_str(&format!("  Credentials:  {}\n", r.credentials));
    }
    if report.images.is_empty() {
        out.push_str("No image is configured (register --image LABEL=DIR).\n");
    } else {
        out.push_str("Images:\n");
        for i in &report.images {
            out.push_str(&format!("  {} -> {} ({})\n", i.label, i.dir, i.state));
        }
    }
    out.push_str(&format!(
        "Default image: {}\n",
        report.default_image.as_deref().unwrap_or("none")
    ));
    out
}
