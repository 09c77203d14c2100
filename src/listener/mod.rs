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
//!
//! Here: the configuration, the poll loop and its reactions to failures and version refusals.
//! Acting on one message is in `dispatch`, typing a job message once (both paths) in `jobref`,
//! the jobs dispatched in `running`, the session in `session`, the hand-over between
//! consecutive jobs in `handover`, the errors in `error`.

mod dispatch;
mod error;
mod handover;
pub mod jobref;
pub mod jobs;
mod running;
mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::client::TokenProvider;
use crate::client::backoff::{EmptyPollGuard, ErrorThrottle, PollErrorBackoff, Timings};
use crate::client::broker::{BrokerClient, ServiceError};
use crate::client::http::HttpClient;
use crate::client::session::{LegacyClient, PollStatus, RunnerIdentity, poll_query};
use crate::crypto::rsa::RunnerKey;
use crate::job::lifecycle::JobExecutor;
use crate::metrics::Metrics;
use crate::protocol::TaskResult;
use crate::protocol::message::TaskAgentMessage;
use crate::version::{AfterRejection, Version, VersionPolicy};
use dispatch::Flow;
pub use error::ListenerError;
use running::{Jobs, job_done};
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

/// Where a polled message came from (legacy messages are deleted after processing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Legacy,
    Broker,
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
                    .get_message(&query, timings.timeouts.long_poll)
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
                    timings.timeouts.long_poll,
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
}

enum Event {
    Shutdown,
    JobDone(TaskResult),
    Polled(Result<Option<(Source, TaskAgentMessage)>, ServiceError>),
}

/// Sleeps `delay` unless `shutdown` fires first; false when it did.
async fn sleep_or(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
