//! What `ghrunner-vm status` reports: the registrations of a runner directory, their
//! labels and images, and the advertised runner version. Never holds a secret.

use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::config::runner::{self as runner_files, Registration};
use crate::image::Image;
use crate::version::{BASELINE, VersionConfig, VersionPolicy};

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
