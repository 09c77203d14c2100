//! Why a listener stops with an error, the exit status of each reason, and what to tell the
//! operator about a refused runner version.

use crate::exit::ExitStatus;
use crate::job::lifecycle::BoxError;
use crate::version::{Version, VersionSetting};

/// Why the listener stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Another process kept this runner's session for the whole give-up time.
    #[error(
        "another process holds this runner's session: stop it, or wait for its session to expire"
    )]
    SessionConflict,
    /// The runner or its registration no longer exists on the server.
    #[error("the runner registration is gone on the server: register again")]
    RegistrationGone {
        /// What the server said.
        #[source]
        source: BoxError,
    },
    /// The server refuses this runner for good (access denied).
    #[error("the service refuses this runner")]
    Refused {
        /// What the server said.
        #[source]
        source: BoxError,
    },
    /// The server refuses the advertised runner version and no newer one is known.
    #[error(
        "the service refuses runner version {version} ({how}): {reason}; {fix}",
        how = describe_setting(setting),
        fix = version_fix(setting)
    )]
    VersionRejected {
        /// The version it refused.
        version: Version,
        /// How the version was chosen.
        setting: VersionSetting,
        /// What the server said.
        reason: String,
    },
}

fn describe_setting(setting: &VersionSetting) -> String {
    match setting {
        VersionSetting::Auto => "runner_version: auto".to_owned(),
        VersionSetting::Pinned(v) => format!("runner_version pinned to {v}"),
    }
}

/// How to get past a version rejection.
fn version_fix(setting: &VersionSetting) -> String {
    match setting {
        VersionSetting::Pinned(_) => format!(
            "set `runner_version: auto` in config.yaml (or {}=auto) to follow the official \
             releases, or pin a current release",
            crate::version::VERSION_ENV
        ),
        VersionSetting::Auto => format!(
            "no newer official release is known: check that the releases endpoint \
             (runner_releases_url, {}) is reachable from this host, or pin the current release \
             with runner_version (protocol reviewed up to {})",
            crate::version::RELEASES_URL_ENV,
            crate::version::BASELINE
        ),
    }
}

impl ListenerError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            ListenerError::SessionConflict => ExitStatus::SessionConflict,
            ListenerError::RegistrationGone { .. } => ExitStatus::RegistrationGone,
            ListenerError::Refused { .. } => ExitStatus::Error,
            ListenerError::VersionRejected { .. } => ExitStatus::VersionRejected,
        }
    }
}
