//! Registering and removing runners (protocol §1): the `runner-registration` token exchange,
//! then either the legacy pool/agent flow or the runner-admin ("v2") flow, as the server's
//! `use_v2_flow` decides; removal in both flows.
//!
//! ```text
//! register: POST actions/runner-registration (RemoteAuth token)
//!   ├─ use_v2_flow=false: connectionData → pools → agents?agentName → POST add | PUT replace
//!   │                     → echo checks → properties → OAuth connection test
//!   └─ use_v2_flow=true:  runner-groups → runners?name → POST actions/runners/register
//! remove:  legacy: runner-registration(remove) → agents?agentName → DELETE agent
//!          runner-admin: DELETE {entity}/runners/{id} (RemoteAuth remove token)
//! ```
//!
//! Layout: the token exchange (`token`), the labels and runner group asked for (`request`),
//! `.credentials` from the server's answers (`credentials`), then one module per flow
//! (`legacy`, `admin`), each registering and removing. The pure pieces (labels, group choice,
//! files from answers) are separate functions with tests. Tokens are never logged.

mod admin;
mod credentials;
mod legacy;
mod request;
mod token;

use super::ClientError;
use super::http::HttpClient;
use super::url::GitHubUrl;
use crate::config::runner::{Credentials, RunnerSettings};
use crate::crypto::rsa::RunnerKey;
use crate::protocol::Secret;
pub use credentials::{credentials_from_admin, credentials_from_agent};
pub use request::{build_labels, runner_os, select_group, select_pool};
pub use token::exchange_token;

/// Accept header of GitHub REST calls.
const GITHUB_REST_ACCEPT: &str = "application/vnd.github.v3+json";
/// Work folder name written to `.runner` (as the official runner).
pub const WORK_FOLDER: &str = "_work";

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Runner name.
    pub name: String,
    /// User labels.
    pub labels: Vec<String>,
    /// Add `self-hosted`, the OS and the architecture.
    pub default_labels: bool,
    /// Runner group name (`None` = the default group).
    pub runner_group: Option<String>,
    /// One job, then deleted by the server.
    pub ephemeral: bool,
    /// Replace a runner of the same name.
    pub replace: bool,
    /// Ask the server not to offer updates.
    pub disable_update: bool,
    /// The official runner version to register as ([`crate::version::VersionPolicy`]).
    pub runner_version: String,
}

/// Which registration flow was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Legacy pool/agent flow.
    Legacy,
    /// Runner-admin REST flow.
    RunnerAdmin,
}

/// The result of a registration: the contents of `.runner` and `.credentials`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredRunner {
    /// `.runner`.
    pub runner: RunnerSettings,
    /// `.credentials`.
    pub credentials: Credentials,
    /// The flow used.
    pub flow: Flow,
    /// Whether an existing runner was replaced.
    pub replaced: bool,
}

/// Errors of registration and removal.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `runner-registration` refused the token.
    #[error(
        "the {event} token was refused by {url}: it is wrong, expired (tokens last one hour) or \
         for another repository or organisation; create a new one"
    )]
    TokenRefused {
        /// `register` or `remove`.
        event: &'static str,
        /// The URL called.
        url: String,
        /// The refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// The runner-admin API refused to delete the runner.
    #[error(
        "{url} refused to delete the runner: the remove token is wrong or expired, or the runner \
         no longer exists on the server (then delete the runner's directory by hand)"
    )]
    RemoveRefused {
        /// The URL called.
        url: String,
        /// The refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// The server answered with a credential type we cannot use.
    #[error("the server answered with token schema {schema:?}; only OAuthAccessToken is supported")]
    UnsupportedTokenSchema {
        /// The schema.
        schema: String,
    },
    /// On GHES, the service URL must be on the server's host.
    #[error(
        "the Actions service URL {tenant} is not on {host}; refusing to send credentials there"
    )]
    TenantHostMismatch {
        /// The tenant URL.
        tenant: String,
        /// The GHES host.
        host: String,
    },
    /// No runner group of that name.
    #[error("there is no runner group named {name:?}; available groups: {}", available.join(", "))]
    GroupNotFound {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// No default runner group.
    #[error("the server has no default runner group; pass --runner-group")]
    NoDefaultGroup,
    /// A runner of that name exists and `--replace` was not given.
    #[error(
        "a runner named {name:?} already exists: pass --replace to replace it, or choose another --name"
    )]
    RunnerExists {
        /// The name.
        name: String,
    },
    /// The server did not honour a requested setting.
    #[error("the server did not accept {what}")]
    NotAccepted {
        /// The setting.
        what: &'static str,
    },
    /// The server's answer lacks the OAuth credential.
    #[error("the server returned no OAuth credential (client id and token URL) for the runner")]
    NoCredential,
    /// No labels at all.
    #[error("--no-default-labels needs at least one label (--labels or --image)")]
    NoLabels,
}

/// Registers a runner with `key` using a registration `token`. `progress` receives one line
/// per step.
pub async fn register(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    key: &RunnerKey,
    opts: &RegisterOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RegisteredRunner, RegistrationError> {
    let labels = build_labels(opts)?;
    progress(&format!(
        "Exchanging the registration token at {}",
        github.runner_registration_url()
    ));
    let tenant = exchange_token(http, github, token, "register").await?;
    if tenant.use_v2_flow == Some(true) {
        admin::register(http, github, token, &tenant, key, opts, labels, progress).await
    } else {
        legacy::register(http, github, &tenant, key, opts, labels, progress).await
    }
}

/// Deregisters `runner` on the server with a remove `token`. Returns `false` when the server
/// no longer knows the runner (the local files may still be deleted).
pub async fn remove(
    http: &HttpClient,
    runner: &RunnerSettings,
    token: &Secret,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, RegistrationError> {
    let github = GitHubUrl::parse(&runner.git_hub_url)?;
    if runner.use_runner_admin_flow {
        admin::remove(http, &github, runner, token, progress).await
    } else {
        legacy::remove(http, &github, runner, token, progress).await
    }
}

#[cfg(test)]
mod tests;
