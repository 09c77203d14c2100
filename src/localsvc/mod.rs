//! An embedded, GHES-compatible GitHub Actions service on 127.0.0.1, following the real
//! protocol shapes. Tests use it as the fake GitHub (with fault injection and a request
//! recorder); the demo runs a real job through it. It keeps only HTTP: workflows are compiled
//! to job messages by [`crate::workflow`], and this service queues and serves them.
//!
//! URL layout (GHES style, so `--url {url}/owner/repo` works unchanged):
//!
//! ```text
//! {url}/api/v3/...                      GitHub REST: runner-registration, runner-admin
//! {url}/_services/pipelines/            the legacy Actions service ("tenant", serverUrl)
//!   _apis/connectionData, _apis/distributedtask/pools[/{id}/agents[/{id}]]
//!   _apis/oauth2/token                  token endpoint; verifies the client-assertion JWT
//! {url}/_services/broker/               ServerUrlV2 handed to runner-admin registrations
//! {url}/actions/build/…/runnerresolve/actions, …/actiondownloadinfo, /api/v3/repos/…/tarball/…
//!                                       `uses:` actions (actions.rs)
//! ```
//!
//! Layout: one file per area (`registration.rs`, `oauth.rs`; later `sessions.rs`,
//! `messages.rs`, `jobs.rs`, `reporting.rs`), each exposing `routes() -> Router<Shared>` merged
//! in [`router`]. State is [`state::State`] behind [`state::Shared`]. Every request passes the
//! recorder, then (in builds with the `fault-injection` feature, i.e. the test suite's) the
//! fault injector, then its handler:
//!
//! ```text
//! TCP accept ─► hyper conn (+ConnectionKill) ─► record ─► [inject faults] ─► area handler
//! ```

// Handlers return an early `Response` as their error, the idiomatic axum shape; its size is
// irrelevant for a test service.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::protocol::registration::TaskAgentPool;

pub mod actions;
pub mod faults;
mod jobs;
mod messages;
pub mod oauth;
pub mod protocol;
pub mod recorder;
pub mod registration;
pub mod reporting;
mod sessions;
pub mod state;

/// The workflow compiler, now [`crate::workflow`]; this path is kept for existing callers.
pub use crate::workflow;
pub use crate::workflow::WorkflowJob;
pub use faults::{Fault, FaultAction};
pub use recorder::RecordedRequest;
pub use state::{Shared, State};

/// Path of the legacy Actions service under the base URL (ends in `/`).
pub const TENANT_PATH: &str = "_services/pipelines/";
/// Path of the broker under the base URL (ends in `/`).
pub const BROKER_PATH: &str = "_services/broker/";
/// Default valid registration token.
pub const DEFAULT_REGISTRATION_TOKEN: &str = "LOCAL-REGISTRATION-TOKEN";
/// Default valid remove token.
pub const DEFAULT_REMOVE_TOKEN: &str = "LOCAL-REMOVE-TOKEN";
/// Default lifetime of issued access tokens.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME_SECS: u64 = 3600;

/// How the local service behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalServiceConfig {
    /// Registration tokens `runner-registration` and runner-admin calls accept.
    pub registration_tokens: Vec<String>,
    /// Remove tokens accepted for `runner_event: remove` and runner deletion.
    pub remove_tokens: Vec<String>,
    /// Answer `use_v2_flow: true` (runner-admin registration).
    pub use_v2_flow: bool,
    /// Value of the agent property `RequireFipsCryptography` (`None` = property absent, which
    /// makes the runner default to PS256).
    pub require_fips: Option<bool>,
    /// Runner groups; the one with `is_internal` is the default.
    pub pools: Vec<TaskAgentPool>,
    /// `expires_in` of issued access tokens.
    pub access_token_lifetime_secs: u64,
    /// Registrations advertising an older runner version are refused (GitHub: 2.329.0).
    pub min_registration_version: Option<crate::version::Version>,
    /// Polls and acknowledges advertising an older runner version are refused, as the broker
    /// (`RunnerVersionTooOld`) and the legacy service (`AccessDeniedException`, error code 1)
    /// refuse them.
    pub min_runner_version: Option<crate::version::Version>,
    /// What `GET /repos/actions/runner/releases/latest` answers (`None`: 404).
    pub latest_runner_release: Option<(crate::version::Version, chrono::DateTime<chrono::Utc>)>,
}

impl Default for LocalServiceConfig {
    fn default() -> Self {
        LocalServiceConfig {
            registration_tokens: vec![DEFAULT_REGISTRATION_TOKEN.to_owned()],
            remove_tokens: vec![DEFAULT_REMOVE_TOKEN.to_owned()],
            use_v2_flow: false,
            require_fips: Some(false),
            pools: vec![pool(1, "Default", true), pool(2, "gpu-runners", false)],
            access_token_lifetime_secs: DEFAULT_ACCESS_TOKEN_LIFETIME_SECS,
            min_registration_version: None,
            min_runner_version: None,
            latest_runner_release: None,
        }
    }
}

fn pool(id: u64, name: &str, internal: bool) -> TaskAgentPool {
    TaskAgentPool {
        id,
        name: name.to_owned(),
        is_hosted: false,
        is_internal: internal,
        pool_type: Some(serde_json::Value::from("automation")),
        size: Some(0),
    }
}

/// The full router: every area, behind the recorder and the fault injector.
pub fn router(shared: Shared) -> Router {
    let router = Router::new()
        .merge(registration::routes())
        .merge(oauth::routes())
        .merge(protocol::routes())
        .merge(reporting::routes())
        .merge(actions::routes())
        .route(
            "/repos/actions/runner/releases/latest",
            axum::routing::get(latest_runner_release),
        )
        .fallback(not_found);
    #[cfg(feature = "fault-injection")]
    let router = router.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        faults::inject,
    ));
    router
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            recorder::record,
        ))
        .with_state(shared)
}

async fn not_found() -> Response {
    rest_error(StatusCode::NOT_FOUND, "Not Found")
}

/// The URL of this service's copy of the GitHub REST "latest runner release" document.
pub const LATEST_RELEASE_PATH: &str = "repos/actions/runner/releases/latest";

/// `GET /repos/actions/runner/releases/latest`: the release set in the configuration, in the
/// GitHub REST shape (`tag_name`, `published_at`, …).
async fn latest_runner_release(
    axum::extract::State(shared): axum::extract::State<Shared>,
) -> Response {
    let release = shared.lock().config.latest_runner_release;
    match release {
        Some((version, published)) => {
            let body = serde_json::json!({
                "tag_name": format!("v{version}"), "name": format!("v{version}"),
                "draft": false, "prerelease": false,
                "published_at": published.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "html_url": format!("https://github.com/actions/runner/releases/tag/v{version}"),
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        None => rest_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The message GitHub gives a runner whose version it no longer serves.
pub fn version_too_old_message(version: &str) -> String {
    format!("Runner version v{version} is deprecated and cannot receive messages.")
}

/// Whether `advertised` (a `runnerVersion` or registration version) is below `minimum`; an
/// unreadable version is below any minimum.
pub fn below_minimum(advertised: &str, minimum: Option<crate::version::Version>) -> bool {
    minimum.is_some_and(|min| {
        advertised
            .parse::<crate::version::Version>()
            .ok()
            .is_none_or(|v| v < min)
    })
}

/// A queued workflow job.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// The job's id (its timeline record id).
    pub job_id: String,
    /// The job's key in the workflow.
    pub job: String,
    /// Its `runs-on` labels.
    pub runs_on: Vec<String>,
}

/// A running local service. Dropping it stops the server.
#[derive(Debug)]
pub struct LocalService {
    addr: SocketAddr,
    shared: Shared,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LocalService {
    /// Starts the service on `127.0.0.1:0`.
    pub async fn start(config: LocalServiceConfig) -> std::io::Result<LocalService> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(State::new(config, format!("http://{addr}")));
        let cancel = CancellationToken::new();
        let app = router(shared.clone());
        let task = tokio::spawn(accept_loop(listener, app, cancel.clone()));
        tracing::debug!(%addr, "local service started");
        Ok(LocalService {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A repository URL on this service (`--url` for register).
    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}", self.url())
    }

    /// An organisation URL on this service.
    pub fn org_url(&self, org: &str) -> String {
        format!("{}/{org}", self.url())
    }

    /// The legacy service URL (`serverUrl`), ending in `/`.
    pub fn tenant_url(&self) -> String {
        self.shared.lock().tenant_url()
    }

    /// Resolves and serves the actions of `index` from now on (see [`actions`]).
    pub fn serve_actions(&self, index: actions::ActionIndex) {
        actions::serve_actions(&self.shared, index);
    }

    /// The shared state, to inspect or script it.
    pub fn state(&self) -> Shared {
        self.shared.clone()
    }

    /// The registered runners, by id order.
    pub fn agents(&self) -> Vec<state::AgentRecord> {
        self.shared.lock().agents.values().cloned().collect()
    }

    /// Forgets every registered runner (as if removed on the server's side).
    pub fn forget_agents(&self) {
        self.shared.lock().agents.clear();
    }

    /// Revokes every access token handed out so far (the next authorized call gets a 401).
    pub fn revoke_access_tokens(&self) {
        self.shared.lock().revoke_access_tokens();
    }

    /// Compiles a workflow job for this service (see
    /// [`crate::workflow::compile_workflow_job`]) and queues it on the legacy path (a
    /// `PipelineAgentJobRequest` message).
    pub fn queue_workflow_job(
        &self,
        workflow: &WorkflowJob<'_>,
    ) -> Result<QueuedJob, crate::workflow::WorkflowError> {
        self.queue(workflow, false)
    }

    /// Like [`LocalService::queue_workflow_job`], on the broker path: a `RunnerJobRequest`
    /// reference whose message the runner acquires from the run service.
    pub fn queue_workflow_job_on_broker(
        &self,
        workflow: &WorkflowJob<'_>,
    ) -> Result<QueuedJob, crate::workflow::WorkflowError> {
        self.queue(workflow, true)
    }

    fn queue(
        &self,
        workflow: &WorkflowJob<'_>,
        broker: bool,
    ) -> Result<QueuedJob, crate::workflow::WorkflowError> {
        let proto = protocol::protocol_state(&self.shared);
        let compiled = crate::workflow::compile_workflow_job(
            workflow,
            &self.url(),
            &self.tenant_url(),
            proto.next_run_id(),
        )?;
        let message = serde_json::to_value(&compiled.message).map_err(|e| {
            crate::workflow::WorkflowError::in_file(workflow.file_name, e.to_string())
        })?;
        let job_id = if broker {
            proto.enqueue_broker_job(message)
        } else {
            proto.enqueue_legacy_job(message)
        };
        Ok(QueuedJob {
            job_id,
            job: compiled.job,
            runs_on: compiled.runs_on,
        })
    }

    /// Adds a runner named `name` (version `version`) to pool 1 directly in the state, as if
    /// it had registered with `key`; returns its agent id and credentials (`fips` sets
    /// `requireFipsCryptography`). For tests and benchmarks that need a runner without going
    /// through registration.
    pub fn seed_runner(
        &self,
        key: &crate::crypto::rsa::RunnerKey,
        name: Option<&str>,
        version: &str,
        fips: bool,
    ) -> (u64, crate::config::Credentials) {
        let mut state = self.shared.lock();
        let id = state.allocate_id();
        let client_id = uuid::Uuid::new_v4().to_string();
        state.agents.insert(
            id,
            state::AgentRecord {
                id,
                pool_id: 1,
                name: name.map_or_else(|| format!("seeded-{id}"), str::to_owned),
                version: version.to_owned(),
                labels: vec![],
                ephemeral: false,
                disable_update: true,
                os_description: None,
                public_key: key.task_agent_public_key(),
                client_id: client_id.clone(),
                runner_admin: false,
            },
        );
        let credentials = crate::config::Credentials {
            scheme: "OAuth".into(),
            data: crate::config::CredentialData {
                client_id,
                authorization_url: state.token_url(),
                require_fips_cryptography: Some(if fips { "True" } else { "False" }.into()),
                ..Default::default()
            },
        };
        (id, credentials)
    }

    /// Sets the runner versions the service accepts for polls and acknowledges (`None`: any).
    pub fn set_min_runner_version(&self, minimum: Option<crate::version::Version>) {
        self.shared.lock().config.min_runner_version = minimum;
    }

    /// Sets the latest official release the releases endpoint answers (`None`: 404).
    pub fn set_latest_runner_release(
        &self,
        release: Option<(crate::version::Version, chrono::DateTime<chrono::Utc>)>,
    ) {
        self.shared.lock().config.latest_runner_release = release;
    }

    /// The URL of this service's latest-release document (for `runner_releases_url`).
    pub fn releases_url(&self) -> String {
        format!("{}/{LATEST_RELEASE_PATH}", self.url())
    }

    /// A copy of every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Adds a fault rule. Needs the `fault-injection` feature (see [`faults::require`]).
    pub fn inject(&self, fault: Fault) {
        faults::require("a fault rule");
        self.shared.lock().faults.push(fault.into_rule());
    }

    /// Stops accepting and closes every open connection but keeps the state, so
    /// [`resume_listening`](Self::resume_listening) can restart the same service (an outage:
    /// clients get "connection refused" meanwhile).
    pub async fn stop_listening(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Listens again on the same address after [`stop_listening`](Self::stop_listening).
    pub async fn resume_listening(&mut self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.cancel = CancellationToken::new();
        let app = router(self.shared.clone());
        self.task = Some(tokio::spawn(accept_loop(
            listener,
            app,
            self.cancel.clone(),
        )));
        Ok(())
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, app: Router, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(error = %err, "local service accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, app.clone(), cancel.clone()));
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Router, cancel: CancellationToken) {
    let kill = Arc::new(tokio::sync::Notify::new());
    #[cfg(feature = "fault-injection")]
    let kill_handle = faults::ConnectionKill(kill.clone());
    let service = hyper::service::service_fn(
        move |#[allow(unused_mut)] mut request: hyper::Request<hyper::body::Incoming>| {
            #[cfg(feature = "fault-injection")]
            request.extensions_mut().insert(kill_handle.clone());
            app.clone().oneshot(request.map(axum::body::Body::new))
        },
    );
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = cancel.cancelled() => {}
    }
}

/// The `Authorization` header's credential after `scheme ` (case-insensitive scheme).
pub fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim())
}

/// A GitHub REST error: `{"message": ..., "documentation_url": ...}`.
pub fn rest_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
    });
    (status, axum::Json(body)).into_response()
}

/// A VSS `WrappedException` error.
pub fn vss_error(status: StatusCode, type_key: &str, message: &str) -> Response {
    vss_error_with_code(status, type_key, message, 0)
}

/// [`vss_error`] with an `errorCode` (the runner reads `AccessDeniedException` with code 1 as
/// "this runner version is deprecated").
pub fn vss_error_with_code(
    status: StatusCode,
    type_key: &str,
    message: &str,
    error_code: u64,
) -> Response {
    let body = serde_json::json!({
        "$id": "1",
        "innerException": null,
        "message": message,
        "typeName": format!("GitHub.DistributedTask.WebApi.{type_key}, Sdk"),
        "typeKey": type_key,
        "errorCode": error_code,
        "eventId": 3000,
    });
    (status, axum::Json(body)).into_response()
}

/// A random opaque token.
pub fn random_token() -> String {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}
