//! The long-poll listener: session, poll, decrypt, dispatch, back-off, shutdown.
//!
//! ```text
//!   start ─► delete the stale session recorded in `<registration>/.session`
//!     │
//!     ▼
//!   CreateSession ──409 conflict──► retry every 30 s ─(4 min)─► exit 5 (SessionConflict)
//!     │   └─transient─► retry every 30 s, forever
//!     ▼ ok (persist id)
//!   Poll (status Online | Busy) ◄───────────────────────────────────────────────┐
//!     │ empty ─► empty-poll guard (>50 in 30 min ⇒ pause 15–30 s) ────────────────┤
//!     │ error ─► back-off 15–30 s ×5, then 30–60 s (broker: inner retry 5×5–15 s;   │
//!     │          10 outer errors ⇒ recreate session) ───────────────────────────────┤
//!     │ session expired / invalid ─► CreateSession                                  │
//!     │ RunnerVersionTooOld (session, poll, acknowledge, acquire) ─► VersionPolicy:  │
//!     │   newer release known ─► delete + CreateSession with it ──────────────────────┤
//!     │   none (or pinned) ─► stop this registration: VersionRejected (exit 7)       │
//!     │ message ─► decrypt (legacy) ─► dispatch ─► delete (legacy) ─────────────────┤
//!     │   PipelineAgentJobRequest ─► spawn job (legacy channel)                     │
//!     │   RunnerJobRequest ─► acknowledge ─► acquirejob ─► spawn job (run service)  │
//!     │     (a job that arrives while the previous one is finishing waits for it:   │
//!     │      see handover.rs; with `--once` or during shutdown it is left for       │
//!     │      redelivery: not deleted, not acknowledged)                             │
//!     │   JobCancellation ─► cancel the running job                                 │
//!     │   BrokerMigration ─► poll the broker now with this session id ─► dispatch   │
//!     │   ForceTokenRefresh ─► drop the cached token                                │
//!     │   Agent/RunnerRefresh ─► VersionPolicy::offer_target (next session)         │
//!     │   unknown ─► log, ignore                                                    │
//!     │ job finished ─► re-poll with the new status (`--once`: stop) ───────────────┘
//!     ▼ SIGINT/SIGTERM, RunnerShutdown, or `--once` done
//!   Stop: let the job finish (grace), else cancel it (reported canceled);
//!         delete the session; exit 0
//! ```
//!
//! One job runs at a time; polling continues while it runs (status `Busy`) so cancellations
//! arrive, and a next job that arrives meanwhile is held until the previous one has ended
//! (never dropped). Transient faults never end the process.

mod handover;
pub mod jobref;
pub mod jobs;
mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::TokenProvider;
use crate::client::backoff::{EmptyPollGuard, ErrorThrottle, PollErrorBackoff, Timings};
use crate::client::broker::{BrokerClient, ServiceError};
use crate::client::http::HttpClient;
use crate::client::session::{LegacyClient, PollStatus, RunnerIdentity, poll_query};
use crate::crypto::rsa::RunnerKey;
use crate::exit::ExitStatus;
use crate::job::lifecycle::{BoxError, JobChannel, JobControl, JobExecutor, run_job};
use crate::metrics::Metrics;
use crate::protocol::TaskResult;
use crate::protocol::message::{
    BrokerErrorKind, ListenerMessage, RunnerJobRequestRef, TaskAgentMessage,
};
use crate::version::{AfterRejection, Version, VersionPolicy, VersionSetting};
use handover::{NextJob, Previous, wait_for_previous};
use jobref::JobRef;
use jobs::{LegacyChannel, RunServiceChannel};
use session::{Session, classify};

/// How long a shutdown waits for a running job to finish by itself before cancelling it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a cancelled job may take to stop before its executor is dropped (the official
/// `max(timeout, 60 s) − 15 s` with the default timeout).
pub const CANCEL_KILL_AFTER: Duration = Duration::from_secs(45);

/// What the listener needs to know.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The runner as the service sees it (its `version` is replaced by the advertised one at
    /// each session).
    pub identity: RunnerIdentity,
    /// The advertised runner version, shared by the registrations of the process.
    pub versions: Arc<VersionPolicy>,
    /// The registration is ephemeral (one job, then the server deletes it).
    pub ephemeral: bool,
    /// Legacy service URL (`serverUrl`).
    pub server_url: String,
    /// Broker URL when the registration uses the broker (`useV2Flow`).
    pub broker_url: Option<String>,
    /// Stop after one job (`--once`, ephemeral registrations).
    pub once: bool,
    /// Registration directory (holds `.session`).
    pub state_dir: PathBuf,
    /// Retry and back-off intervals.
    pub timings: Timings,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// See [`CANCEL_KILL_AFTER`].
    pub cancel_kill_after: Duration,
}

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

/// Where a polled message came from (legacy messages are deleted after processing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Legacy,
    Broker,
}

/// A job this listener dispatched that has not ended yet.
struct Running {
    job_id: String,
    /// The legacy job request id (`None` on the run-service path).
    request_id: Option<i64>,
    cancel: CancellationToken,
    /// Fired when the job's task ends (whatever way).
    finished: CancellationToken,
    handle: JoinHandle<TaskResult>,
}

impl Running {
    fn as_previous(&self) -> Previous {
        Previous {
            job_id: self.job_id.clone(),
            request_id: self.request_id,
            cancel: self.cancel.clone(),
            finished: self.finished.clone(),
        }
    }
}

/// The jobs of one listener: those not ended yet, in dispatch order (each waits for the one
/// before it), and whether a `--once` listener has taken its job.
#[derive(Default)]
struct Jobs {
    running: Vec<Running>,
    taken: bool,
}

impl Jobs {
    fn status(&self) -> PollStatus {
        if self.running.is_empty() {
            PollStatus::Online
        } else {
            PollStatus::Busy
        }
    }

    fn previous(&self) -> Option<Previous> {
        self.running.last().map(Running::as_previous)
    }
}

/// What the loop does after a message.
enum Flow {
    Continue,
    Stop,
    /// The service refused the advertised version (acknowledge or acquire).
    VersionRejected(ServiceError),
}

/// The listener of one registration.
pub struct Listener<E: JobExecutor> {
    cfg: ListenerConfig,
    http: HttpClient,
    tokens: Arc<TokenProvider>,
    key: RunnerKey,
    executor: Arc<E>,
    legacy: LegacyClient,
    metrics: Arc<Metrics>,
    /// The version advertised by the current session.
    session_version: std::sync::Mutex<Version>,
}

impl<E: JobExecutor> Listener<E> {
    /// A listener; `http` should not retry by itself (the listener owns the back-off).
    pub fn new(
        cfg: ListenerConfig,
        http: HttpClient,
        tokens: Arc<TokenProvider>,
        key: RunnerKey,
        executor: Arc<E>,
    ) -> Self {
        let legacy = LegacyClient::new(
            http.clone(),
            tokens.clone(),
            &cfg.server_url,
            cfg.identity.pool_id,
        );
        let session_version = std::sync::Mutex::new(cfg.versions.current().version);
        cfg.versions.bind(&http);
        Listener {
            cfg,
            http,
            tokens,
            key,
            executor,
            legacy,
            metrics: Arc::new(Metrics::default()),
            session_version,
        }
    }

    /// The version advertised by the current session.
    fn session_version(&self) -> Version {
        *self
            .session_version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The runner as the current session presents it.
    fn identity(&self) -> RunnerIdentity {
        RunnerIdentity {
            version: self.session_version().to_string(),
            ..self.cfg.identity.clone()
        }
    }

    /// A new session advertises the version current now.
    fn adopt_current_version(&self) -> Version {
        let version = self.cfg.versions.current().version;
        *self
            .session_version
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = version;
        version
    }

    /// The service refused the advertised version: with a newer one known (auto), a new
    /// session with it; otherwise the registration stops with [`ListenerError::VersionRejected`].
    /// `Ok(None)`: shutdown while reconnecting.
    async fn on_version_rejected(
        &self,
        session: Option<&Session>,
        err: &ServiceError,
        shutdown: &CancellationToken,
    ) -> Result<Option<Session>, ListenerError> {
        let rejected = self.session_version();
        let reason = crate::errors::error_chain(err);
        match self.cfg.versions.after_rejection(rejected).await {
            AfterRejection::Newer(newer) => {
                tracing::warn!(%rejected, %newer, reason, "the service refused the runner version; reconnecting with a newer one");
                if let Some(session) = session {
                    self.delete_session(session).await;
                }
                Box::pin(self.create_session(shutdown)).await
            }
            AfterRejection::Stop => Err(ListenerError::VersionRejected {
                version: rejected,
                setting: self.cfg.versions.config().setting,
                reason,
            }),
        }
    }

    /// Counts failed polls and session calls in `metrics` (`ghrunner_vm_poll_errors_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts a failed poll and classifies it.
    fn poll_failed(&self, err: &ServiceError) -> session::Failure {
        self.metrics.poll_error();
        classify(err)
    }

    fn broker(&self, url: &str) -> BrokerClient {
        BrokerClient::new(self.http.clone(), self.tokens.clone(), url)
    }

    /// Serves jobs until `shutdown` fires (or one job with `once`), then cleans up.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ListenerError> {
        self.delete_stale_session().await;
        let Some(mut session) = self.create_session(&shutdown).await? else {
            return Ok(());
        };
        tracing::info!(broker = session.is_broker(), "listening for jobs");
        let mut jobs = Jobs::default();
        let mut last_message_id = None;
        let mut backoff = PollErrorBackoff::default();
        let mut guard = EmptyPollGuard::default();
        let mut throttle = ErrorThrottle::default();
        let timings = &self.cfg.timings;
        loop {
            let status = jobs.status();
            // A poll that has an answer is handled before anything else, so that a message
            // that arrived is never dropped because a job ended or a shutdown began at the
            // same moment (a job request is then left for redelivery, see `act`).
            let event = tokio::select! {
                biased;
                polled = self.poll(&session, last_message_id, status) => Event::Polled(polled),
                result = job_done(&mut jobs.running) => Event::JobDone(result),
                _ = shutdown.cancelled() => Event::Shutdown,
            };
            let polled = match event {
                Event::Shutdown => break,
                Event::JobDone(result) => {
                    jobs.running.remove(0);
                    tracing::info!(result = result.as_str(), "job finished");
                    if self.cfg.once && jobs.running.is_empty() {
                        break;
                    }
                    continue;
                }
                Event::Polled(polled) => polled,
            };
            match polled {
                Ok(None) => {
                    backoff.on_success();
                    let pause = guard.on_empty(Instant::now(), timings, &mut rand::thread_rng());
                    if let Some(pause) = pause {
                        tracing::debug!(?pause, "many empty polls, pausing");
                        if !sleep_or(&shutdown, pause).await {
                            break;
                        }
                    }
                }
                Ok(Some((source, message))) => {
                    backoff.on_success();
                    guard.on_message();
                    if source == Source::Legacy {
                        last_message_id = Some(message.message_id);
                    }
                    let accepting = !shutdown.is_cancelled();
                    let flow = self
                        .dispatch(
                            &session,
                            source,
                            message,
                            &mut jobs,
                            accepting,
                            &mut throttle,
                        )
                        .await;
                    match flow {
                        Flow::Continue => {}
                        Flow::Stop => break,
                        Flow::VersionRejected(err) => {
                            match self
                                .on_version_rejected(Some(&session), &err, &shutdown)
                                .await
                            {
                                Ok(Some(new)) => session = new,
                                Ok(None) => break,
                                Err(rejected) => {
                                    self.stop_jobs(jobs.running).await;
                                    return Err(rejected);
                                }
                            }
                        }
                    }
                }
                Err(err) => match self.poll_failed(&err) {
                    session::Failure::SessionGone => {
                        tracing::warn!(error = %err, "session expired, creating a new one");
                        match self.create_session(&shutdown).await? {
                            Some(new) => session = new,
                            None => break,
                        }
                    }
                    session::Failure::RegistrationGone => {
                        return Err(ListenerError::RegistrationGone {
                            source: Box::new(err),
                        });
                    }
                    session::Failure::Refused => {
                        return Err(ListenerError::Refused {
                            source: Box::new(err),
                        });
                    }
                    session::Failure::VersionRejected => {
                        match self
                            .on_version_rejected(Some(&session), &err, &shutdown)
                            .await
                        {
                            Ok(Some(new)) => session = new,
                            Ok(None) => break,
                            Err(rejected) => {
                                self.stop_jobs(jobs.running).await;
                                return Err(rejected);
                            }
                        }
                    }
                    _ => {
                        let delay = backoff.on_error(timings, &mut rand::thread_rng());
                        tracing::warn!(error = %err, consecutive = backoff.consecutive(), ?delay, "poll failed, backing off");
                        if session.is_broker() && backoff.should_recreate_session(timings) {
                            backoff.on_success();
                            self.delete_session(&session).await;
                            match self.create_session(&shutdown).await? {
                                Some(new) => session = new,
                                None => break,
                            }
                        } else if !sleep_or(&shutdown, delay).await {
                            break;
                        }
                    }
                },
            }
        }
        self.stop_jobs(jobs.running).await;
        self.delete_session(&session).await;
        tracing::info!("listener stopped");
        Ok(())
    }

    /// One poll on the session's path (broker GETs get the inner retry).
    async fn poll(
        &self,
        session: &Session,
        last_message_id: Option<i64>,
        status: PollStatus,
    ) -> Result<Option<(Source, TaskAgentMessage)>, ServiceError> {
        let timings = &self.cfg.timings;
        match session {
            Session::Legacy { id, .. } => {
                let query = poll_query(id, last_message_id, status, &self.identity());
                let message = self
                    .legacy
                    .get_message(&query, timings.long_poll_timeout)
                    .await
                    .map_err(ServiceError::Client)?;
                Ok(message.map(|m| (Source::Legacy, m)))
            }
            Session::Broker { id, url } => {
                let message = self.poll_broker(url, id, status).await?;
                Ok(message.map(|m| (Source::Broker, m)))
            }
        }
    }

    async fn poll_broker(
        &self,
        url: &str,
        session_id: &str,
        status: PollStatus,
    ) -> Result<Option<TaskAgentMessage>, ServiceError> {
        let timings = &self.cfg.timings;
        let broker = self.broker(url);
        let mut attempt = 1;
        loop {
            let result = broker
                .get_message(
                    session_id,
                    status,
                    &self.identity(),
                    timings.long_poll_timeout,
                )
                .await;
            match result {
                Err(err) if err.is_retryable() && attempt < timings.broker_inner_attempts => {
                    tracing::debug!(attempt, error = %err, "broker poll failed, retrying");
                    attempt += 1;
                    let delay = timings.broker_inner_retry.sample(&mut rand::thread_rng());
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Decrypts, decodes and acts on one message; deletes legacy messages afterwards (unless
    /// the message is left for redelivery).
    async fn dispatch(
        &self,
        session: &Session,
        source: Source,
        message: TaskAgentMessage,
        jobs: &mut Jobs,
        accepting: bool,
        throttle: &mut ErrorThrottle,
    ) -> Flow {
        let message_id = message.message_id;
        let message_type = message.message_type.clone();
        tracing::debug!(message_id, message_type, "message received");
        let (flow, delete) = match session.open(&message) {
            Ok(decoded) => {
                let from = MessageFrom::Session;
                self.act(session, from, decoded, jobs, accepting, throttle)
                    .await
            }
            Err(err) => {
                tracing::warn!(message_id, message_type, error = %err, cause = ?std::error::Error::source(&err), "undecodable message skipped");
                (Flow::Continue, true)
            }
        };
        if delete && source == Source::Legacy {
            let timeout = self.cfg.timings.request_timeout;
            if let Err(err) = self
                .legacy
                .delete_message(session.id(), message_id, timeout)
                .await
            {
                tracing::warn!(message_id, error = %err, "cannot delete message");
            }
        }
        flow
    }

    /// Acts on a decoded message; returns the flow and whether to delete the message.
    /// `accepting` is false during shutdown: a job request is then left for redelivery.
    async fn act(
        &self,
        session: &Session,
        from: MessageFrom<'_>,
        message: ListenerMessage,
        jobs: &mut Jobs,
        accepting: bool,
        throttle: &mut ErrorThrottle,
    ) -> (Flow, bool) {
        let is_job = matches!(
            message,
            ListenerMessage::PipelineAgentJobRequest(_) | ListenerMessage::RunnerJobRequest(_)
        );
        if is_job && let Some(why) = self.not_taking_jobs(jobs, accepting) {
            tracing::info!(
                reason = why,
                "job request left for redelivery (not deleted, not acknowledged)"
            );
            return (Flow::Continue, false);
        }
        match message {
            ListenerMessage::PipelineAgentJobRequest(job) => {
                self.start_legacy_job(job, jobs);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerJobRequest(job) => {
                let flow = self
                    .start_broker_job(session, from, &job, jobs, throttle)
                    .await;
                (flow, true)
            }
            ListenerMessage::JobCancellation(cancel) => {
                let target = jobs
                    .running
                    .iter()
                    .find(|r| r.job_id.eq_ignore_ascii_case(&cancel.job_id));
                match target {
                    Some(r) => {
                        tracing::info!(job_id = %cancel.job_id, "job cancellation requested");
                        r.cancel.cancel();
                    }
                    None => {
                        tracing::info!(job_id = %cancel.job_id, "cancellation for a job not running here, ignored")
                    }
                }
                (Flow::Continue, true)
            }
            ListenerMessage::BrokerMigration(migration) => {
                let url = migration.broker_base_url;
                tracing::debug!(broker = %url, "broker migration, polling the broker");
                match self.poll_broker(&url, session.id(), jobs.status()).await {
                    Ok(Some(message)) => match session.open(&message) {
                        Ok(decoded) => {
                            let from = MessageFrom::Migration { broker_url: &url };
                            let acted = Box::pin(
                                self.act(session, from, decoded, jobs, accepting, throttle),
                            );
                            (acted.await.0, false)
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "undecodable broker message skipped");
                            (Flow::Continue, false)
                        }
                    },
                    Ok(None) => (Flow::Continue, false),
                    Err(err) => {
                        tracing::warn!(error = %err, "broker poll after migration failed");
                        (Flow::Continue, false)
                    }
                }
            }
            ListenerMessage::ForceTokenRefresh => {
                tracing::info!("token refresh requested");
                self.tokens.invalidate();
                (Flow::Continue, true)
            }
            ListenerMessage::AgentRefresh(refresh) => {
                self.cfg.versions.offer_target(&refresh.target_version);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerRefresh(refresh) => {
                self.cfg.versions.offer_target(&refresh.target_version);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerShutdown(shutdown) => {
                tracing::info!(reason = %shutdown.reason, "service asked the runner to shut down");
                (Flow::Stop, false)
            }
            ListenerMessage::Unknown { message_type } => {
                tracing::warn!(message_type, "unknown message type ignored");
                (Flow::Continue, true)
            }
        }
    }

    /// Why a job request cannot be taken now, if it cannot: the process is shutting down, or
    /// a `--once` runner already has its job (the official runner skips deletion likewise).
    fn not_taking_jobs(&self, jobs: &Jobs, accepting: bool) -> Option<&'static str> {
        if !accepting {
            Some("the runner is shutting down")
        } else if self.cfg.once && jobs.taken {
            Some("this one-job (--once or ephemeral) runner already has its job")
        } else {
            None
        }
    }

    fn start_legacy_job(&self, job: serde_json::Value, jobs: &mut Jobs) {
        match JobRef::from_message(&job) {
            Ok(job_ref) => {
                let channel = LegacyChannel::new(
                    self.http.clone(),
                    self.legacy.clone(),
                    job_ref.clone(),
                    self.cfg.timings.clone(),
                );
                let next = NextJob::Legacy(self.legacy.clone());
                self.spawn_job(channel, job_ref, job, next, jobs);
            }
            Err(err) => tracing::error!(error = %err, "job message unusable, skipped"),
        }
    }

    /// Acknowledges (best effort), acquires and dispatches a run-service job. The acknowledge
    /// goes to the broker the reference came from: the session's broker, or after a
    /// `BrokerMigration` the broker the migration named (as the official runner's
    /// `_brokerServer` connection follows the migration).
    async fn start_broker_job(
        &self,
        session: &Session,
        from: MessageFrom<'_>,
        job: &RunnerJobRequestRef,
        jobs: &mut Jobs,
        throttle: &mut ErrorThrottle,
    ) -> Flow {
        let timings = &self.cfg.timings;
        // A refused version on the acknowledge does not lose the job (the official runner
        // acquires after any acknowledge failure); the session is renewed afterwards.
        let mut version_refused = None;
        if job.should_acknowledge {
            let url = match from {
                MessageFrom::Migration { broker_url } => Some(broker_url.to_owned()),
                MessageFrom::Session => session
                    .broker_url()
                    .map(str::to_owned)
                    .or_else(|| self.cfg.broker_url.clone()),
            };
            match url {
                Some(url) => {
                    let ack = self
                        .broker(&url)
                        .acknowledge(
                            session.id(),
                            &job.runner_request_id,
                            jobs.status(),
                            &self.identity(),
                            timings.acknowledge_timeout,
                        )
                        .await;
                    match ack {
                        Ok(()) => {
                            tracing::debug!(request = %job.runner_request_id, "job request acknowledged")
                        }
                        Err(err)
                            if self.cfg.ephemeral
                                && err.kind() == Some(BrokerErrorKind::AcknowledgeJobNotFound) =>
                        {
                            // actions/runner #4540: an ephemeral runner whose job is gone exits.
                            tracing::info!(error = %err, "the job is gone on the broker; this ephemeral runner stops");
                            return Flow::Stop;
                        }
                        Err(err)
                            if session::classify(&err) == session::Failure::VersionRejected =>
                        {
                            tracing::warn!(error = %err, "acknowledge refused the runner version; acquiring the job anyway");
                            version_refused = Some(err);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "acknowledge failed (best effort), acquiring the job anyway")
                        }
                    }
                }
                None => tracing::warn!(
                    request = %job.runner_request_id,
                    "the job request asks for an acknowledge but no broker URL is known; acquiring it without"
                ),
            }
        }
        // The image is known from the registration: boot the VM while the job is acquired.
        self.executor.prepare(&job.id);
        let message = match jobs::acquire(&self.http, &self.tokens, job, throttle, timings).await {
            Ok(message) => message,
            Err(failure) => {
                self.executor.discard_prepared();
                return match failure {
                    Some(err) if session::classify(&err) == session::Failure::VersionRejected => {
                        Flow::VersionRejected(err)
                    }
                    _ => Flow::Continue,
                };
            }
        };
        match JobRef::from_message(&message) {
            Ok(mut job_ref) => {
                if job_ref.billing_owner_id.is_none() {
                    job_ref.billing_owner_id = job.billing_owner_id.clone();
                }
                let channel =
                    RunServiceChannel::new(self.http.clone(), job_ref.clone(), timings.clone());
                self.spawn_job(channel, job_ref, message, NextJob::RunService, jobs);
            }
            Err(err) => {
                tracing::error!(error = %err, "acquired job message unusable, skipped");
                self.executor.discard_prepared();
            }
        }
        version_refused.map_or(Flow::Continue, Flow::VersionRejected)
    }

    /// Spawns the job's task: it waits for the previous job of this runner (if one is still
    /// finishing), then runs the job's lifecycle.
    fn spawn_job<C: JobChannel>(
        &self,
        channel: C,
        job: JobRef,
        message: serde_json::Value,
        next: NextJob,
        jobs: &mut Jobs,
    ) {
        let cancel = CancellationToken::new();
        let finished = CancellationToken::new();
        let control = JobControl {
            cancel: cancel.clone(),
            kill_after: self.cfg.cancel_kill_after,
        };
        let previous = jobs.previous();
        let executor = self.executor.clone();
        let timings = self.cfg.timings.clone();
        let span = tracing::info_span!("job", job_id = %job.job_id);
        let job_id = job.job_id.clone();
        match &previous {
            None => tracing::info!(parent: &span, "job started"),
            Some(p) => {
                tracing::info!(parent: &span, previous = %p.job_id, "job taken; it starts when the previous job has ended")
            }
        }
        let done = finished.clone().drop_guard();
        let handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Fires `finished` however the task ends (a panic included).
                let _done = done;
                wait_for_previous(previous, &next, timings.request_timeout).await;
                let result = run_job(
                    Arc::new(channel),
                    executor.as_ref(),
                    message,
                    control,
                    &timings,
                )
                .await;
                executor.release_prepared(&job_id);
                result
            },
            span,
        ));
        jobs.taken = true;
        jobs.running.push(Running {
            job_id: job.job_id,
            request_id: (job.request_id != 0).then_some(job.request_id),
            cancel,
            finished,
            handle,
        });
    }

    /// Lets the running jobs finish within the grace period, else cancels them and waits for
    /// their completion reports.
    async fn stop_jobs(&self, mut running: Vec<Running>) {
        if running.is_empty() {
            return;
        }
        tracing::info!(grace = ?self.cfg.shutdown_grace, jobs = running.len(), "waiting for the running job");
        let deadline = tokio::time::Instant::now() + self.cfg.shutdown_grace;
        let all_done = async {
            for job in &mut running {
                let _ = (&mut job.handle).await;
            }
        };
        if tokio::time::timeout_at(deadline, all_done).await.is_ok() {
            return;
        }
        tracing::info!("grace period over, cancelling the job");
        for job in &running {
            job.cancel.cancel();
        }
        for job in running {
            if !job.handle.is_finished()
                && let Err(err) = job.handle.await
            {
                tracing::error!(error = %err, "job task failed");
            }
        }
    }
}

/// Where a decoded message came from (decides which broker a job request is acknowledged on).
#[derive(Debug, Clone, Copy)]
enum MessageFrom<'a> {
    /// This session's own poll.
    Session,
    /// The broker named by a `BrokerMigration`, polled with this (legacy) session's id.
    Migration { broker_url: &'a str },
}

enum Event {
    Shutdown,
    JobDone(TaskResult),
    Polled(Result<Option<(Source, TaskAgentMessage)>, ServiceError>),
}

/// Resolves when the oldest running job ends (never, when none runs). Each job waits for the
/// one before it, so the oldest always ends first.
async fn job_done(running: &mut [Running]) -> TaskResult {
    match running.first_mut() {
        Some(job) => match (&mut job.handle).await {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(error = %err, "job task failed");
                TaskResult::Failed
            }
        },
        None => std::future::pending().await,
    }
}

/// Sleeps `delay` unless `shutdown` fires first; false when it did.
async fn sleep_or(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
