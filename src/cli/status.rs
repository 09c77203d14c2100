//! `ghrunner-vm status`.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use crate::config::Settings;
use crate::config::runner::{self as runner_files, Registration};
use crate::exit::ExitStatus;
use crate::image::Image;
use crate::version::{BASELINE, VersionConfig, VersionPolicy};

/// Show what is registered where, with which labels and images. Never prints secrets.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `status` reports about one registration (nothing secret).
#[derive(Debug, Serialize)]
pub struct RunnerStatus {
    /// Runner name.
    pub name: String,
    /// Runner id.
    pub id: u64,
    /// Repository or organisation URL.
    pub url: String,
    /// Runner group.
    pub group: Option<String>,
    /// `legacy` or `runner-admin`.
    pub flow: &'static str,
    /// Whether jobs arrive through the broker.
    pub broker: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// Ephemeral runner.
    pub ephemeral: bool,
    /// `ok`, or why the credentials cannot be used.
    pub credentials: String,
}

/// What `status` reports about one image label.
#[derive(Debug, Serialize)]
pub struct ImageStatus {
    /// The label.
    pub label: String,
    /// The image directory.
    pub dir: String,
    /// `ok`, or why the image cannot be used.
    pub state: String,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The runner directory.
    pub dir: String,
    /// Registrations.
    pub runners: Vec<RunnerStatus>,
    /// Images per label.
    pub images: Vec<ImageStatus>,
    /// Label used when `runs-on` names no image.
    pub default_image: Option<String>,
    /// The official runner version `run` would advertise now (without fetching).
    pub runner_version: VersionStatus,
}

/// The advertised runner version.
#[derive(Debug, Serialize)]
pub struct VersionStatus {
    /// `auto` or the pinned version.
    pub setting: String,
    /// The version.
    pub version: String,
    /// `pinned`, `latest release`, `cache` or `baseline`.
    pub source: &'static str,
    /// Its release date, if known.
    pub released: Option<String>,
    /// The newest version whose protocol changes were reviewed.
    pub baseline: String,
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

/// Gathers the report from the runner directory.
pub fn collect(dir: &Path) -> anyhow::Result<StatusReport> {
    let settings = Settings::load(dir)?;
    let mut runners = Vec::new();
    for reg_dir in runner_files::list_registration_dirs(dir)? {
        let runner = runner_files::load_runner_settings(&reg_dir.join(runner_files::RUNNER_FILE))?;
        let credentials = match Registration::load(&reg_dir) {
            Ok(_) => "ok".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        runners.push(RunnerStatus {
            name: runner.agent_name.clone(),
            id: runner.agent_id,
            url: runner.git_hub_url.clone(),
            group: runner.pool_name.clone(),
            flow: if runner.use_runner_admin_flow {
                "runner-admin"
            } else {
                "legacy"
            },
            broker: runner.use_v2_flow,
            labels: runner.labels.clone(),
            ephemeral: runner.ephemeral,
            credentials,
        });
    }
    let images = settings
        .images
        .iter()
        .map(|(label, image_dir)| ImageStatus {
            label: label.clone(),
            dir: image_dir.display().to_string(),
            state: match Image::load(image_dir) {
                Ok(_) => "ok".to_owned(),
                Err(err) => err.to_string(),
            },
        })
        .collect();
    let config = VersionConfig::from_settings(
        settings.runner_version,
        settings.runner_releases_url.as_deref(),
        Some(dir),
    )?;
    let advertised = VersionPolicy::offline(&config);
    let runner_version = VersionStatus {
        setting: config.setting.to_string(),
        version: advertised.version.to_string(),
        source: advertised.source.as_str(),
        released: advertised
            .released_at
            .map(|at| at.format("%Y-%m-%d").to_string()),
        baseline: BASELINE.to_string(),
    };
    Ok(StatusReport {
        dir: dir.display().to_string(),
        runners,
        images,
        default_image: settings.default_image.clone(),
        runner_version,
    })
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
