//! The runner-facing half of the local service: sessions, messages and job lifecycle on both
//! protocol paths, as a router with its own state ([`ProtocolState`]) that the service mounts
//! beside registration and OAuth.
//!
//! ```text
//!  tenant  _services/pipelines/  POST   _apis/distributedtask/pools/{pool}/sessions     sessions.rs
//!                                DELETE _apis/distributedtask/pools/{pool}/sessions/{id}
//!                                GET    _apis/distributedtask/pools/{pool}/messages      messages.rs
//!                                DELETE _apis/distributedtask/pools/{pool}/messages/{id}
//!                                PATCH  _apis/distributedtask/pools/{pool}/jobrequests/{id}  jobs.rs
//!                                POST   {scope}/_apis/distributedtask/hubs/{hub}/plans/{plan}/events
//!  broker  _services/broker/     POST|DELETE session, GET message, POST acknowledge   sessions.rs, messages.rs
//!  run svc _services/run/        POST acquirejob, renewjob, completejob                jobs.rs
//! ```
//!
//! Runner-token calls need an access token issued by the service's token endpoint (a revoked
//! token gets 401); job-token calls need the job token handed out in the job message
//! ([`JOB_TOKEN`]). The state lives in the service's [`Shared`] type map; get it with
//! [`protocol_state`].
//!
//! Tests drive it through the methods of [`ProtocolState`]: enqueue a job (legacy or broker),
//! a cancellation, a broker migration, a tampered message; expire or hold a session; and read
//! back what the runner did ([`JobRecord`], [`ProtocolEvent`]). One message queue serves every
//! runner of the service, like a pool: whichever runner polls first gets the message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::state::Shared;
use crate::crypto::session::{OaepHash, SessionKey};

/// The job token put into every job message's `SystemVssConnection` (job-token calls must
/// carry it).
pub const JOB_TOKEN: &str = "local-job-token";

/// How long a long poll is held when no message arrives (the real service holds ~50 s).
pub const DEFAULT_POLL_HOLD: Duration = Duration::from_secs(2);

pub use super::faults::Tamper;

/// A message waiting for a poll.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub message_type: String,
    pub body: String,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub tamper: Option<Tamper>,
    /// The job this message delivers, if it does.
    pub job_id: Option<String>,
    /// Who may receive it.
    pub delivery: Delivery,
}

/// Who may receive a queued job message. By default any runner of the service that polls as
/// idle (`Online`), as GitHub assigns jobs; tests narrow it to one runner, or hand a job to a
/// runner that still reports `Busy` (the server considers its previous job done, e.g. after a
/// cancellation, while the runner is still tearing it down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Only this runner (agent id) receives it.
    pub agent_id: Option<u64>,
    /// Delivered to a runner polling as `Busy` too.
    pub even_if_busy: bool,
}

impl Delivery {
    /// Whether a poll of `agent_id` with the given busy state may receive the message of a job
    /// (`is_job`); other messages reach every status.
    pub(crate) fn accepts(&self, agent_id: u64, busy: bool, is_job: bool) -> bool {
        self.agent_id.is_none_or(|a| a == agent_id) && (!is_job || !busy || self.even_if_busy)
    }
}

/// A session held by a runner.
#[derive(Debug, Clone)]
pub(crate) struct SessionRecord {
    pub agent_id: u64,
    pub key: Option<SessionKey>,
}

/// What the runner did with one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRecord {
    /// Acquired through the run service (broker path) or delivered (legacy).
    pub acquired: bool,
    /// Successful renewals (run-service `renewjob` or legacy job-request PATCH).
    pub renewals: u32,
    /// The completion body (`completejob`, the legacy finish PATCH or the `JobCompleted` event).
    pub completion: Option<Value>,
    /// When the job's message was handed to a poll (service clock).
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the completion arrived (service clock).
    pub completed_at: Option<DateTime<Utc>>,
    /// The runner (agent id) whose poll received the job's message.
    pub delivered_to: Option<u64>,
    /// The result the server itself recorded for the job ([`ProtocolState::finish_on_server`]),
    /// returned by the legacy job-request GET.
    pub server_result: Option<String>,
}

impl JobRecord {
    /// Records the completion body and its arrival time.
    pub(crate) fn complete(&mut self, body: Value) {
        self.completion = Some(body);
        self.completed_at = Some(Utc::now());
    }
}

/// A notable call, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolEvent {
    /// A session was created (`broker` tells which path).
    SessionCreated {
        /// Its id.
        session_id: String,
        /// Created on the broker.
        broker: bool,
    },
    /// A session was deleted.
    SessionDeleted {
        /// Its id.
        session_id: String,
    },
    /// A create was refused with a conflict.
    SessionConflict,
    /// A legacy message was deleted (acknowledged).
    MessageDeleted {
        /// Its id.
        message_id: i64,
    },
    /// A broker job reference was acknowledged.
    Acknowledged {
        /// The runner request id.
        runner_request_id: String,
        /// The `sessionId` query parameter.
        session_id: String,
        /// The other query parameters (`status`, `runnerVersion`, `os`, `architecture`, …).
        query: std::collections::BTreeMap<String, String>,
    },
    /// A legacy job request was read (`GET .../jobrequests/{id}`).
    JobRequestRead {
        /// The request id.
        request_id: i64,
    },
    /// A poll arrived (`broker` tells which path; `status` is Online/Busy).
    Poll {
        /// Broker or legacy.
        broker: bool,
        /// The `status` query parameter.
        status: String,
    },
}

/// The mutable state behind the lock.
#[derive(Default)]
pub(crate) struct Inner {
    pub sessions: HashMap<String, SessionRecord>,
    pub queue: VecDeque<Pending>,
    pub broker_mode: bool,
    pub next_message_id: i64,
    pub pending_acquire: HashMap<String, Value>,
    pub request_to_job: HashMap<i64, String>,
    pub jobs: HashMap<String, JobRecord>,
    pub next_request_id: i64,
    pub next_run_id: u64,
    pub events: Vec<ProtocolEvent>,
}

/// Knobs tests may turn.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub poll_hold: Duration,
    pub use_fips_encryption: bool,
    pub oaep_hash: Option<OaepHash>,
}

/// State of the runner-facing routes.
pub struct ProtocolState {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) knobs: Mutex<Knobs>,
    pub(crate) wake: Notify,
    base_url: Mutex<String>,
}

impl std::fmt::Debug for ProtocolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolState").finish_non_exhaustive()
    }
}

impl ProtocolState {
    /// A new state; `base_url` is the service root (ending in `/`) used to build the broker
    /// and run-service URLs handed to runners. Set it again with [`ProtocolState::set_base_url`]
    /// once the port is known.
    pub fn new(base_url: &str) -> Arc<ProtocolState> {
        Arc::new(ProtocolState {
            inner: Mutex::new(Inner {
                next_message_id: 1,
                next_request_id: 1000,
                ..Inner::default()
            }),
            knobs: Mutex::new(Knobs {
                poll_hold: DEFAULT_POLL_HOLD,
                use_fips_encryption: false,
                oaep_hash: None,
            }),
            wake: Notify::new(),
            base_url: Mutex::new(with_slash(base_url)),
        })
    }

    /// Sets the service root URL.
    pub fn set_base_url(&self, base_url: &str) {
        *lock(&self.base_url) = with_slash(base_url);
    }

    /// The service root URL (ends in `/`).
    pub fn base_url(&self) -> String {
        lock(&self.base_url).clone()
    }

    /// The legacy service URL (`<base>_services/pipelines/`).
    pub fn tenant_url(&self) -> String {
        format!("{}{}", self.base_url(), super::TENANT_PATH)
    }

    /// The broker base URL handed out in migrations (`<base>_services/broker/`).
    pub fn broker_url(&self) -> String {
        format!("{}{}", self.base_url(), super::BROKER_PATH)
    }

    /// The run-service base URL (`<base>_services/run/`).
    pub fn run_service_url(&self) -> String {
        format!("{}{RUN_PATH}", self.base_url())
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(crate) fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }

    /// How long an idle long poll is held (a "slow poll" fault when long).
    pub fn set_poll_hold(&self, hold: Duration) {
        lock(&self.knobs).poll_hold = hold;
    }

    /// What sessions report as `useFipsEncryption`, and which OAEP hash really wraps the key
    /// (`None`: the one `useFipsEncryption` indicates).
    pub fn set_session_crypto(&self, use_fips_encryption: bool, oaep_hash: Option<OaepHash>) {
        let mut knobs = lock(&self.knobs);
        knobs.use_fips_encryption = use_fips_encryption;
        knobs.oaep_hash = oaep_hash;
    }

    /// Queues a raw message (any type, any body).
    pub fn enqueue(&self, message_type: &str, body: &str) {
        self.push(Pending {
            message_type: message_type.to_owned(),
            body: body.to_owned(),
            tamper: None,
            job_id: None,
            delivery: Delivery::default(),
        });
    }

    /// Queues a message that is damaged when delivered on the legacy path.
    /// Needs the `fault-injection` feature (see [`super::faults::require`]).
    pub fn enqueue_tampered(&self, message_type: &str, body: &str, tamper: Tamper) {
        super::faults::require("a tampered message");
        self.push(Pending {
            message_type: message_type.to_owned(),
            body: body.to_owned(),
            tamper: Some(tamper),
            job_id: None,
            delivery: Delivery::default(),
        });
    }

    /// A new workflow run number (1, 2, …).
    pub fn next_run_id(&self) -> u64 {
        let mut inner = self.inner();
        inner.next_run_id += 1;
        inner.next_run_id
    }

    /// Queues a `JobCancellation` for `job_id`, for the runner that received the job (any
    /// runner if it was not delivered yet).
    pub fn enqueue_cancellation(&self, job_id: &str) {
        let body = json!({"jobId": job_id, "timeout": "00:05:00"});
        let holder = self.job(job_id).and_then(|j| j.delivered_to);
        self.push(Pending {
            message_type: "JobCancellation".to_owned(),
            body: body.to_string(),
            tamper: None,
            job_id: None,
            delivery: Delivery {
                agent_id: holder,
                even_if_busy: true,
            },
        });
    }

    /// Queues the broker's self-update request `RunnerRefresh` for `target_version`.
    pub fn enqueue_runner_refresh(&self, target_version: &str) {
        let body = json!({
            "target_version": target_version,
            "download_url": format!("https://github.com/actions/runner/releases/download/v{target_version}/actions-runner-linux-x64-{target_version}.tar.gz"),
            "sha256_checksum": "0".repeat(64),
            "os": "linux-x64",
        });
        self.enqueue("RunnerRefresh", &body.to_string());
    }

    /// Queues the legacy self-update request `AgentRefresh` for `target_version`.
    pub fn enqueue_agent_refresh(&self, agent_id: u64, target_version: &str) {
        let body =
            json!({"agentId": agent_id, "targetVersion": target_version, "timeout": "00:10:00"});
        self.enqueue("AgentRefresh", &body.to_string());
    }

    /// From now on legacy polls answer `BrokerMigration` and messages are served by the broker.
    pub fn migrate_to_broker(&self) {
        self.inner().broker_mode = true;
        self.wake.notify_waiters();
    }

    /// Queues a job for the legacy path (`PipelineAgentJobRequest`). The job's
    /// `SystemVssConnection` endpoint is pointed at this service and a `requestId` assigned;
    /// returns the job id.
    pub fn enqueue_legacy_job(&self, job: Value) -> String {
        self.enqueue_legacy_job_with(job, Delivery::default())
    }

    /// [`ProtocolState::enqueue_legacy_job`] for the runners `delivery` allows.
    pub fn enqueue_legacy_job_with(&self, mut job: Value, delivery: Delivery) -> String {
        let tenant = self.tenant_url();
        set_system_connection(&mut job, &tenant);
        let job_id = job_id_of(&job);
        {
            let mut inner = self.inner();
            let request_id = inner.next_request_id;
            inner.next_request_id += 1;
            job["requestId"] = json!(request_id);
            job["messageType"] = json!("PipelineAgentJobRequest");
            inner.request_to_job.insert(request_id, job_id.clone());
            inner.jobs.insert(
                job_id.clone(),
                JobRecord {
                    acquired: true,
                    ..JobRecord::default()
                },
            );
        }
        self.push(Pending {
            message_type: "PipelineAgentJobRequest".to_owned(),
            body: job.to_string(),
            tamper: None,
            job_id: Some(job_id.clone()),
            delivery,
        });
        job_id
    }

    /// Queues a job for the broker path: a `RunnerJobRequest` reference whose job is held by
    /// the run service until acquired. Returns the job id.
    pub fn enqueue_broker_job(&self, job: Value) -> String {
        self.enqueue_broker_job_with(job, Delivery::default())
    }

    /// [`ProtocolState::enqueue_broker_job`] for the runners `delivery` allows.
    pub fn enqueue_broker_job_with(&self, mut job: Value, delivery: Delivery) -> String {
        let run = self.run_service_url();
        set_system_connection(&mut job, &run);
        job["messageType"] = json!("RunnerJobRequest");
        job["requestId"] = json!(0);
        let job_id = job_id_of(&job);
        let runner_request_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "id": job_id, "runner_request_id": runner_request_id, "should_acknowledge": true,
            "run_service_url": run, "billing_owner_id": "O_local",
        });
        {
            let mut inner = self.inner();
            inner.pending_acquire.insert(runner_request_id, job);
            inner.jobs.insert(job_id.clone(), JobRecord::default());
        }
        self.push(Pending {
            message_type: "RunnerJobRequest".to_owned(),
            body: body.to_string(),
            tamper: None,
            job_id: Some(job_id.clone()),
            delivery,
        });
        job_id
    }

    /// Creates a session for `agent_id` as if another process held it (for conflict tests);
    /// returns its id.
    pub fn hold_session(&self, agent_id: u64) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner().sessions.insert(
            id.clone(),
            SessionRecord {
                agent_id,
                key: None,
            },
        );
        id
    }

    /// Deletes a session server-side (it expired); its next poll fails.
    pub fn expire_session(&self, session_id: &str) -> bool {
        let removed = self.inner().sessions.remove(session_id).is_some();
        self.wake.notify_waiters();
        removed
    }

    /// Ids of the live sessions.
    pub fn sessions(&self) -> Vec<String> {
        self.inner().sessions.keys().cloned().collect()
    }

    /// Records that the server considers `job_id` finished with `result` (e.g. `canceled`):
    /// the legacy job-request GET then reports it, as GitHub does once it has given up on a
    /// cancelled job. The runner's own completion is still accepted afterwards.
    pub fn finish_on_server(&self, job_id: &str, result: &str) {
        if let Some(job) = self.inner().jobs.get_mut(job_id) {
            job.server_result = Some(result.to_owned());
        }
    }

    /// What happened to a job so far.
    pub fn job(&self, job_id: &str) -> Option<JobRecord> {
        self.inner().jobs.get(job_id).cloned()
    }

    /// Every notable call so far.
    pub fn events(&self) -> Vec<ProtocolEvent> {
        self.inner().events.clone()
    }

    /// Messages not yet delivered.
    pub fn queued(&self) -> usize {
        self.inner().queue.len()
    }

    fn push(&self, pending: Pending) {
        self.inner().queue.push_back(pending);
        self.wake.notify_waiters();
    }

    pub(crate) fn record(&self, event: ProtocolEvent) {
        self.inner().events.push(event);
    }
}

/// Path of the run service under the base URL.
pub const RUN_PATH: &str = "_services/run/";

/// The runner-facing routes, to merge into the service's router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .merge(super::sessions::routes())
        .merge(super::messages::routes())
        .merge(super::jobs::routes())
}

/// The protocol state of a service, created on first use.
pub fn protocol_state(shared: &Shared) -> Arc<ProtocolState> {
    let mut state = shared.lock();
    if let Some(existing) = state.extensions.get::<Arc<ProtocolState>>() {
        return existing.clone();
    }
    let created = ProtocolState::new(&state.base_url);
    state.extensions.insert(created.clone());
    created
}

impl FromRef<Shared> for Arc<ProtocolState> {
    fn from_ref(shared: &Shared) -> Self {
        protocol_state(shared)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

fn job_id_of(job: &Value) -> String {
    job.get("jobId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Points the job's `SystemVssConnection` at `url` with a job token (adding it if missing).
fn set_system_connection(job: &mut Value, url: &str) {
    if job.get("jobId").is_none() {
        job["jobId"] = json!(uuid::Uuid::new_v4().to_string());
    }
    let endpoint = json!({
        "name": "SystemVssConnection", "url": url,
        "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": JOB_TOKEN}},
        "data": {}, "isShared": false, "isReady": true,
    });
    let resources = job
        .as_object_mut()
        .map(|o| o.entry("resources").or_insert_with(|| json!({})));
    let Some(resources) = resources.and_then(Value::as_object_mut) else {
        return;
    };
    let endpoints = resources.entry("endpoints").or_insert_with(|| json!([]));
    if let Some(list) = endpoints.as_array_mut() {
        list.retain(|e| {
            !e.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case("SystemVssConnection"))
        });
        list.push(endpoint);
    }
}

/// Whether the request carries the job token.
pub(crate) fn has_job_token(headers: &HeaderMap) -> bool {
    super::authorization(headers, "Bearer") == Some(JOB_TOKEN)
}

/// A broker / run-service error document.
pub(crate) fn broker_error(
    status: StatusCode,
    source: &str,
    kind: &str,
    message: &str,
) -> Response {
    let body = json!({
        "source": source, "errorKind": kind, "statusCode": status.as_u16(), "errorMessage": message,
    });
    (status, axum::Json(body)).into_response()
}
