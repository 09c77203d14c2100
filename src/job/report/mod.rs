//! Reporting: turns the step runtime's [`JobEvent`]s into what GitHub shows, on either path.
//!
//! * legacy (VSS, `PipelineAgentJobRequest`): timeline records, logs, live feed lines and
//!   step-summary attachments ([`legacy`]);
//! * results service (`RunnerJobRequest`): Twirp step updates and signed-blob logs and
//!   summaries ([`results`]); the run service's `completejob` then takes
//!   [`ReportOutcome::completion`] (`stepResults` + `annotations`).
//!
//! ```text
//!  step runtime ──JobEvent──► bounded mpsc ──► ingest task ──apply──► ReportState (pure)
//!                                                                    ▲ drain every 500 ms
//!                                                   upload task ─────┘ (legacy or results sink)
//! ```
//!
//! # Never stall, never silently drop, never hold unbounded memory
//! The event channel is bounded ([`EVENT_CHANNEL_CAPACITY`]) and its consumer, the ingest task,
//! does only in-memory work (format, append, queue). Uploads run in a separate task on their own
//! schedule. Full logs are kept in memory until uploaded and are never cut; when more than
//! [`BACKLOG_MAX_BYTES`] wait, the ingest task pauses until the uploads catch up, which holds
//! the step (and its guest) back instead of growing memory. Only the live console is bounded by
//! dropping (excess lines are marked `... (N lines omitted)` there). Every operation is retried
//! per [`ReportOptions::retry`] ([`RetryPolicy::REPORTING`]: 5 attempts, 1 s doubling to 8 s);
//! what still fails is logged and returned in [`ReportOutcome::failures`], and never fails the
//! job.
//!
//! # One client
//! Both sinks send through the runner's shared [`HttpClient`] (the `client` module): the same
//! TLS setup, the User-Agent of the advertised runner version, the time limits of
//! [`Timeouts`](crate::client::Timeouts) (`report_request`, `blob_upload`) and its error type,
//! wrapped in [`ReportError::Request`] with the operation's name. Each attempt is one request
//! ([`HttpClient::send_once`]): the retries are the operation's, never nested. Wire types live
//! with the protocol ([`crate::protocol::timeline`], [`crate::protocol::results`],
//! [`crate::protocol::completion`]).

pub mod batch;
pub mod legacy;
pub mod record;
pub mod results;
pub mod routes;
pub mod state;
pub mod target;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::retry::Retryable;
use crate::client::{ClientError, HttpClient, RetryPolicy};
use crate::job::events::JobEvent;
use crate::protocol::TaskResult;
pub use record::{Completion, CompletionAnnotation, StepResult, TimelineRecord};
pub use state::completion_from_events;
use state::{Drain, ReportState};
pub use target::{RESULTS_ENDPOINT_VARIABLE, ReportTarget, TargetError};

/// Events buffered between the step runtime and the ingest task.
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;
/// Log bytes the reporter holds before it stops taking events until uploads catch up. The
/// step's output then waits, and so does the guest writing it: a job that prints faster than
/// the service takes its log is slowed down, and the agent's memory stays bounded (at most
/// this much waiting, plus one drain of at most this much in flight).
pub const BACKLOG_MAX_BYTES: usize = 32 * 1024 * 1024;
/// How often a paused ingest task looks whether the uploads caught up.
const BACKLOG_POLL: Duration = Duration::from_millis(50);
/// How often the upload task drains the state (the official queue's timeline interval).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Final flush rounds allowed to fail before the reporter gives up on what is left.
pub const FINAL_FLUSH_ATTEMPTS: u32 = 3;

/// Why a reporting request failed. URLs are stored without their query (signed URLs carry
/// credentials there).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request could not be sent, was answered with an error status, or its answer could
    /// not be read. The message names the operation and the URL without its query (signed
    /// URLs carry credentials there).
    #[error("{}", request_failure(what, source))]
    Request {
        /// The operation.
        what: &'static str,
        /// What the shared client reported (boxed: it is large).
        #[source]
        source: Box<ClientError>,
    },
    /// A results metadata call answered `ok: false`.
    #[error("{what} was refused by the results service")]
    Refused {
        /// The operation.
        what: &'static str,
    },
    /// A step summary exceeds the size the results service accepts.
    #[error("step summary of {step_id} is {size} bytes, over the limit of {limit}")]
    SummaryTooLarge {
        /// The step.
        step_id: Uuid,
        /// Its size.
        size: u64,
        /// The service's `soft_size_limit`.
        limit: u64,
    },
    /// A log chunk was not uploaded because an earlier step of its log failed.
    #[error("log chunk {index} of record {record_id} skipped after an earlier failure")]
    LogBroken {
        /// The record.
        record_id: Uuid,
        /// The chunk number.
        index: u32,
    },
    /// The final flush gave up with part of the report unsent.
    #[error("gave up after {attempts} failed final flush rounds with part of the report unsent")]
    Incomplete {
        /// Final rounds tried.
        attempts: u32,
    },
    /// The job message names no results endpoint.
    #[error("the job has no results endpoint (system.github.results_endpoint)")]
    NoResultsEndpoint,
}

impl ReportError {
    /// A failed request of operation `what`.
    pub fn request(what: &'static str, error: ClientError) -> ReportError {
        ReportError::Request {
            what,
            source: Box::new(error),
        }
    }

    /// Whether the server refused the request for its body (413, 400, 422): sending less may
    /// succeed where sending the same again cannot.
    pub fn is_body_rejected(&self) -> bool {
        matches!(
            self,
            ReportError::Request { source, .. }
                if source.status().is_some_and(|s| matches!(s.as_u16(), 400 | 413 | 422))
        )
    }

    /// Whether retrying the same request may help: the shared client's classification
    /// ([`ClientError::is_retryable`]: transport errors, timeouts, 408, 429, 5xx but 501).
    pub fn is_retryable(&self) -> bool {
        match self {
            ReportError::Request { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

impl Retryable for ReportError {
    fn is_retryable(&self) -> bool {
        ReportError::is_retryable(self)
    }
}

/// The message of a failed request: `<what> request to <url> answered <status>` (or
/// `... failed`, or `<what> answer from <url> is not valid`).
fn request_failure(what: &str, error: &ClientError) -> String {
    let url = error.url().unwrap_or("the service");
    match error {
        ClientError::Status { status, .. } => {
            format!("{what} request to {url} answered {}", status.as_u16())
        }
        ClientError::Decode { .. } => format!("{what} answer from {url} is not valid"),
        _ => format!("{what} request to {url} failed"),
    }
}

/// Tuning of a reporter.
#[derive(Debug, Clone, Copy)]
pub struct ReportOptions {
    /// Request retries.
    pub retry: RetryPolicy,
    /// Drain interval.
    pub flush_interval: Duration,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            retry: RetryPolicy::REPORTING,
            flush_interval: FLUSH_INTERVAL,
        }
    }
}

/// What a finished reporter hands back.
#[derive(Debug)]
pub struct ReportOutcome {
    /// `stepResults` and `annotations` for `completejob`.
    pub completion: Completion,
    /// The job's result and outputs as reported by the runtime (none if it never completed).
    pub job_result: Option<(TaskResult, Vec<(String, String)>)>,
    /// Requests that failed for good (already logged); they never fail the job.
    pub failures: Vec<ReportError>,
    /// Live console lines left out of the live view (the full logs have them).
    pub console_lines_omitted: u64,
}

type Shared = Arc<Mutex<ReportState>>;

fn lock(state: &Shared) -> MutexGuard<'_, ReportState> {
    // A panic while holding the lock leaves plain data behind; keep reporting with it.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The I/O half of one path: sends what the state hands out.
pub(crate) trait Sink: Send + 'static {
    /// Sends one drain; returns false if something failed (and was recorded or requeued).
    fn send(
        &mut self,
        drain: Drain,
        state: &Shared,
    ) -> impl std::future::Future<Output = bool> + Send;
    /// Takes the failures recorded so far.
    fn take_failures(&mut self) -> Vec<ReportError>;
}

/// A running reporter for one job (see the module doc).
pub struct Reporter {
    events: mpsc::Sender<JobEvent>,
    ingest: JoinHandle<()>,
    upload: JoinHandle<ReportOutcome>,
}

impl Reporter {
    /// Starts a legacy (VSS) reporter. Must be called inside a tokio runtime.
    pub fn legacy(target: ReportTarget, http: HttpClient, options: ReportOptions) -> Reporter {
        let state = ReportState::new(&target.identity(), batch::LEGACY_PAGE_BYTES);
        let sink = legacy::LegacySink::new(target, http, options.retry);
        Reporter::start(state, sink, options)
    }

    /// Starts a results-service reporter. Must be called inside a tokio runtime.
    pub fn results(
        target: ReportTarget,
        http: HttpClient,
        options: ReportOptions,
    ) -> Result<Reporter, ReportError> {
        let state = ReportState::new(&target.identity(), batch::RESULTS_BLOCK_BYTES);
        let sink = results::ResultsSink::new(target, http, options.retry)?;
        Ok(Reporter::start(state, sink, options))
    }

    fn start<S: Sink>(state: ReportState, sink: S, options: ReportOptions) -> Reporter {
        let state: Shared = Arc::new(Mutex::new(state));
        let (events, receiver) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (done_tx, done_rx) = watch::channel(false);
        let ingest = tokio::spawn(ingest(receiver, Arc::clone(&state), done_tx));
        let upload = tokio::spawn(upload(sink, state, done_rx, options.flush_interval));
        Reporter {
            events,
            ingest,
            upload,
        }
    }

    /// A sender for the step runtime. Sending waits only while the ingest task catches up
    /// with in-memory work, never on the network.
    pub fn events(&self) -> mpsc::Sender<JobEvent> {
        self.events.clone()
    }

    /// Closes this handle's sender, waits for the other senders to be dropped, flushes
    /// everything and returns the outcome. A job that never sent `JobCompleted` is reported
    /// `abandoned`.
    pub async fn finish(self) -> ReportOutcome {
        drop(self.events);
        if let Err(err) = self.ingest.await {
            tracing::error!(error = %err, "report ingest task failed");
        }
        match self.upload.await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(error = %err, "report upload task failed");
                ReportOutcome {
                    completion: Completion::default(),
                    job_result: None,
                    failures: Vec::new(),
                    console_lines_omitted: 0,
                }
            }
        }
    }
}

async fn ingest(mut receiver: mpsc::Receiver<JobEvent>, state: Shared, done: watch::Sender<bool>) {
    while let Some(event) = receiver.recv().await {
        let backlog = {
            let mut state = lock(&state);
            state.apply(event, Utc::now());
            state.backlog_bytes()
        };
        if backlog > BACKLOG_MAX_BYTES {
            tracing::debug!(
                backlog,
                "log uploads are behind; holding the step's output back"
            );
            while lock(&state).backlog_bytes() > BACKLOG_MAX_BYTES / 2 {
                tokio::time::sleep(BACKLOG_POLL).await;
            }
        }
    }
    let mut state = lock(&state);
    if !state.is_completed() {
        tracing::warn!("event stream ended without JobCompleted; reporting the job abandoned");
        let now = Utc::now();
        state.apply(
            JobEvent::JobCompleted {
                result: TaskResult::Abandoned,
                outputs: Vec::new(),
                at: now,
            },
            now,
        );
    }
    drop(state);
    // The upload task may already be gone (it only stops after `done`); nothing to tell then.
    let _ = done.send(true);
}

async fn upload<S: Sink>(
    mut sink: S,
    state: Shared,
    mut done: watch::Receiver<bool>,
    interval: Duration,
) -> ReportOutcome {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut final_failures = 0;
    loop {
        if !*done.borrow() {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = done.changed() => {}
            }
        }
        let finishing = *done.borrow();
        let drain = lock(&state).drain();
        let ok = drain.is_empty() || sink.send(drain, &state).await;
        if finishing {
            if lock(&state).is_drained() {
                break;
            }
            if !ok {
                final_failures += 1;
                if final_failures >= FINAL_FLUSH_ATTEMPTS {
                    tracing::error!("giving up on the rest of the job report");
                    break;
                }
            }
        }
    }
    let mut failures = sink.take_failures();
    if final_failures >= FINAL_FLUSH_ATTEMPTS {
        failures.push(ReportError::Incomplete {
            attempts: final_failures,
        });
    }
    for failure in &failures {
        tracing::warn!(error = %failure, "job report incomplete");
    }
    let state = lock(&state);
    ReportOutcome {
        completion: state.completion(),
        job_result: state.job_result().cloned(),
        failures,
        console_lines_omitted: state.console_dropped(),
    }
}

/// Sends one attempt of an operation through the shared client (the operation's
/// [`RetryPolicy::run`] does the retrying).
pub(crate) async fn send(
    http: &HttpClient,
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<reqwest::Response, ReportError> {
    http.send_once(request)
        .await
        .map_err(|source| ReportError::request(what, source))
}

/// Reads a JSON answer (tolerating a UTF-8 BOM).
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &'static str,
) -> Result<T, ReportError> {
    crate::client::http::read_json(response)
        .await
        .map_err(|source| ReportError::request(what, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn status(code: u16) -> ReportError {
        ReportError::request(
            "log append",
            ClientError::Status {
                method: reqwest::Method::POST,
                url: "http://h/logs/3".into(),
                status: reqwest::StatusCode::from_u16(code).unwrap(),
                type_key: None,
                message: None,
                error_code: None,
            },
        )
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(408).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!ReportError::Refused { what: "x" }.is_retryable());
        assert!(status(413).is_body_rejected());
        assert!(status(422).is_body_rejected());
        assert!(!status(503).is_body_rejected());
    }

    #[test]
    fn messages_name_the_operation_url_and_status() {
        assert_eq!(
            status(401).to_string(),
            "log append request to http://h/logs/3 answered 401"
        );
        let decode = ReportError::request(
            "log create",
            ClientError::Decode {
                url: "http://h/logs".into(),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            },
        );
        assert_eq!(
            decode.to_string(),
            "log create answer from http://h/logs is not valid"
        );
        assert!(!decode.is_retryable());
    }

    #[test]
    fn target_debug_hides_the_token() {
        let target = ReportTarget {
            server_url: Url::parse("http://h/").unwrap(),
            access_token: "s3cr3t".into(),
            scope_identifier: Uuid::nil(),
            hub_name: "actions".into(),
            plan_id: Uuid::nil(),
            timeline_id: Uuid::nil(),
            job_id: Uuid::nil(),
            job_name: "j".into(),
            worker_name: "w".into(),
            results_url: None,
        };
        assert!(!format!("{target:?}").contains("s3cr3t"));
    }
}
