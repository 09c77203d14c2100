//! The life of one acquired job, independent of the protocol path: first renewal, the
//! heartbeat task, running the [`JobExecutor`], cancellation, and completion with retries.
//! The job arrives typed ([`AgentJobRequestMessage`], validated where the listener received
//! it); a job whose message did not validate goes through [`fail_unusable_job`] instead.
//!
//! ```text
//!  acquired ──first renew ok──► running ──executor returns──► completing ──► done
//!     │ (≤ N attempts)            │  │                            ▲   (≤ N attempts)
//!     │ all failed                │  │ cancel token (JobCancellation │
//!     ▼                           │  │ or shutdown): executor sees it,
//!  abandoned ─────────────────────┼──┘ is given `kill_after`, then dropped ─► canceled
//!     ▲                           │
//!     └── lock lost: heartbeat gave up (404 / lockedUntil + grace passed)
//! ```
//!
//! The heartbeat runs beside the executor on its own task and keeps the last `lockedUntil`;
//! transient renewal failures are retried per [`RenewPolicy`]. The protocol calls are behind
//! [`JobChannel`], implemented by the run-service and legacy clients; the job's work is behind
//! [`JobExecutor`], implemented by the VM job runner (and by fakes in tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::client::backoff::{RenewDecision, RenewPolicy, Timings};
use crate::errors::ErrorChain;
use crate::job::report::{CompletionAnnotation, StepResult};
use crate::protocol::TaskResult;
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::lifecycle::VariableValue;

/// A boxed error from another layer (the HTTP client or the executor).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job's result.
    pub result: TaskResult,
    /// Job outputs.
    pub outputs: BTreeMap<String, VariableValue>,
    /// Per-step results.
    pub step_results: Vec<StepResult>,
    /// Job-level annotations.
    pub annotations: Vec<CompletionAnnotation>,
}

impl JobOutcome {
    /// An outcome with only a result.
    pub fn with_result(result: TaskResult) -> JobOutcome {
        JobOutcome {
            result,
            outputs: BTreeMap::new(),
            step_results: Vec::new(),
            annotations: Vec::new(),
        }
    }
}

/// The executor failed for infrastructure reasons (the job is reported as failed).
#[derive(Debug, thiserror::Error)]
#[error("the job executor failed")]
pub struct ExecutorError {
    /// Why.
    #[source]
    pub source: BoxError,
}

/// Runs one job's steps.
///
/// `message` is the acquired job message, typed and validated where the listener received it.
/// The executor must watch `cancel`: once it fires the job should stop its steps and return
/// soon (typically with [`TaskResult::Canceled`]). If it does not return within the cancel
/// timeout, its future is dropped, so dropping it must release everything it holds (VMs kill
/// themselves on drop).
pub trait JobExecutor: Send + Sync + 'static {
    /// Runs the job to its end.
    fn execute(
        &self,
        message: AgentJobRequestMessage,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<JobOutcome, ExecutorError>> + Send;

    /// The job `job_id` was offered to this runner and is being acquired: the executor may
    /// start getting ready (boot its VM) before the message arrives. Default: nothing.
    fn prepare(&self, job_id: &str) {
        let _ = job_id;
    }

    /// The prepared job will not come (acquiring it failed): release what
    /// [`JobExecutor::prepare`] started. Default: nothing.
    fn discard_prepared(&self) {}

    /// The job `job_id` has ended: release anything still prepared for it (it never reached
    /// [`JobExecutor::execute`], e.g. it was cancelled first). Default: nothing.
    fn release_prepared(&self, job_id: &str) {
        let _ = job_id;
    }
}

/// A failed protocol call of the job lifecycle, classified for the retry loops.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The job no longer exists on the server (404, job-not-found, token expired): stop.
    #[error("the job is gone on the server")]
    Gone {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Retriable (network, 5xx, timeout).
    #[error("job call failed transiently")]
    Transient {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The server refused the request's body (400, 413, 422): sending less may succeed.
    #[error("the server refused the request body")]
    Rejected {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Not retriable (401 after refresh, 4xx).
    #[error("job call failed")]
    Fatal {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The protocol calls of one acquired job (run service or legacy job request).
pub trait JobChannel: Send + Sync + 'static {
    /// Renews the job lock; returns the new `lockedUntil`, if the server said.
    fn renew(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, ChannelError>> + Send;
    /// Reports the job's end.
    fn complete(
        &self,
        outcome: &JobOutcome,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send;
}

/// How cancellation of a running job is delivered and bounded.
#[derive(Debug, Clone)]
pub struct JobControl {
    /// Fired by the listener on `JobCancellation` or shutdown.
    pub cancel: CancellationToken,
    /// How long a cancelled executor may take before its future is dropped.
    pub kill_after: Duration,
}

/// The minimum cancel grace (official: `max(timeout, 60 s) − 15 s`).
pub const MIN_CANCEL_TIMEOUT: Duration = Duration::from_secs(60);
/// Subtracted from the cancel timeout to leave room for completion.
pub const CANCEL_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);

/// The time a cancelled job gets before it is dropped, from a `JobCancellation` timeout.
pub fn kill_after(cancel_timeout: Option<Duration>) -> Duration {
    cancel_timeout
        .unwrap_or_default()
        .max(MIN_CANCEL_TIMEOUT)
        .saturating_sub(CANCEL_TIMEOUT_MARGIN)
}

/// Parses a .NET TimeSpan (`"hh:mm:ss"`, `"d.hh:mm:ss"`, fractional seconds allowed).
pub fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let mut parts = rest.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0.0..60.0).contains(&s) || m >= 60 {
        return None;
    }
    Some(Duration::from_secs((days * 24 + h) * 3600 + m * 60) + Duration::from_secs_f64(s))
}

/// Runs an acquired job to completion and reports it; returns the reported result.
pub async fn run_job<C: JobChannel, E: JobExecutor>(
    channel: Arc<C>,
    executor: &E,
    message: AgentJobRequestMessage,
    control: JobControl,
    timings: &Timings,
) -> TaskResult {
    let policy = match start(channel.as_ref(), &control, timings).await {
        Ok(policy) => policy,
        Err(ended) => return ended,
    };
    let lost = CancellationToken::new();
    // Aborted when this function returns or its future is dropped: no heartbeat without a job.
    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
        channel.clone(),
        policy,
        timings.clone(),
        lost.clone(),
    )));
    let supervised = AssertUnwindSafe(supervise(executor, message, &control, &lost));
    let outcome = match futures::FutureExt::catch_unwind(supervised).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!("the job's executor panicked; completing the job as failed");
            JobOutcome::with_result(TaskResult::Failed)
        }
    };
    drop(_heartbeat);
    complete(channel.as_ref(), &outcome, timings).await;
    outcome.result
}

/// Completes an acquired job whose message did not validate as failed, logging why: it is
/// renewed first and a cancellation that came first still wins, as for any job, but the
/// executor never sees it. Returns the reported result.
pub async fn fail_unusable_job<C: JobChannel>(
    channel: Arc<C>,
    why: &(dyn std::error::Error + Send + Sync),
    control: JobControl,
    timings: &Timings,
) -> TaskResult {
    if let Err(ended) = start(channel.as_ref(), &control, timings).await {
        return ended;
    }
    tracing::error!(error = %ErrorChain(why), "the job message is not valid; completing the job as failed");
    let outcome = JobOutcome::with_result(TaskResult::Failed);
    complete(channel.as_ref(), &outcome, timings).await;
    outcome.result
}

/// What happens to every job before it runs: the first renewal, then a check for a
/// cancellation that came first. `Err` is the result the job was already completed with.
async fn start<C: JobChannel>(
    channel: &C,
    control: &JobControl,
    timings: &Timings,
) -> Result<RenewPolicy, TaskResult> {
    let mut policy = RenewPolicy::default();
    if !first_renew(channel, &mut policy, timings).await {
        tracing::warn!("job lock could not be renewed, job abandoned without running");
        let outcome = JobOutcome::with_result(TaskResult::Abandoned);
        complete(channel, &outcome, timings).await;
        return Err(outcome.result);
    }
    if control.cancel.is_cancelled() {
        // Cancelled before it started (e.g. while it waited for the previous job): the
        // official runner completes it as canceled without starting the worker.
        tracing::info!("job cancelled before it started");
        let outcome = JobOutcome::with_result(TaskResult::Canceled);
        complete(channel, &outcome, timings).await;
        return Err(outcome.result);
    }
    Ok(policy)
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn supervise<E: JobExecutor>(
    executor: &E,
    message: AgentJobRequestMessage,
    control: &JobControl,
    lost: &CancellationToken,
) -> JobOutcome {
    let exec = executor.execute(message, control.cancel.clone());
    tokio::pin!(exec);
    let finished = tokio::select! {
        out = &mut exec => Some(out),
        _ = control.cancel.cancelled() => None,
        _ = lost.cancelled() => None,
    };
    let interrupted = finished.is_none();
    let lock_lost = interrupted && lost.is_cancelled() && !control.cancel.is_cancelled();
    let out = match finished {
        Some(out) => out,
        None => {
            // Make sure the executor sees the cancellation, then bound its wind-down.
            control.cancel.cancel();
            tracing::info!(lock_lost, "job cancelled, waiting for the executor to stop");
            match tokio::time::timeout(control.kill_after, &mut exec).await {
                Ok(out) => out,
                Err(_) => {
                    tracing::warn!("executor did not stop in time, dropping it");
                    Ok(JobOutcome::with_result(TaskResult::Canceled))
                }
            }
        }
    };
    let mut outcome = out.unwrap_or_else(|err| {
        tracing::error!(error = %err, cause = ?err.source, "job executor failed");
        JobOutcome::with_result(TaskResult::Failed)
    });
    if lock_lost {
        outcome.result = TaskResult::Abandoned;
    } else if interrupted {
        outcome.result = TaskResult::Canceled;
    }
    outcome
}

async fn first_renew<C: JobChannel>(
    channel: &C,
    policy: &mut RenewPolicy,
    timings: &Timings,
) -> bool {
    loop {
        match channel.renew().await {
            Ok(until) => {
                policy.on_success(until, Utc::now(), timings);
                tracing::debug!(locked_until = ?policy.locked_until(), "job lock renewed");
                return true;
            }
            Err(ChannelError::Transient { source }) => {
                tracing::warn!(error = %source, "first job renewal failed");
                let decision = policy.on_error(Utc::now(), timings, &mut rand::thread_rng());
                match decision {
                    RenewDecision::RenewAfter(delay) => tokio::time::sleep(delay).await,
                    RenewDecision::GiveUp => return false,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "first job renewal refused");
                return false;
            }
        }
    }
}

/// Renews the lock until aborted; cancels `lost` when renewal gives up.
async fn heartbeat<C: JobChannel>(
    channel: Arc<C>,
    mut policy: RenewPolicy,
    timings: Timings,
    lost: CancellationToken,
) {
    let mut delay = timings.renew_interval;
    loop {
        tokio::time::sleep(delay).await;
        delay = match channel.renew().await {
            Ok(until) => {
                let next = policy.on_success(until, Utc::now(), &timings);
                tracing::debug!(locked_until = ?policy.locked_until(), "job lock renewed");
                next
            }
            Err(ChannelError::Transient { source }) => {
                tracing::warn!(error = %source, "job renewal failed, retrying");
                let decision = policy.on_error(Utc::now(), &timings, &mut rand::thread_rng());
                match decision {
                    RenewDecision::RenewAfter(d) => d,
                    RenewDecision::GiveUp => break,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "job renewal refused");
                break;
            }
        };
    }
    tracing::warn!("job lock lost, cancelling the job");
    lost.cancel();
}

/// Drops one part of a completion.
type Reduction = fn(&mut JobOutcome);

/// What a completion drops, in order, when the server refuses its body: a job whose guest
/// produced more than the server takes is still completed, with its result.
const COMPLETION_REDUCTIONS: [(&str, Reduction); 3] = [
    ("annotations", |o| {
        o.annotations.clear();
        o.step_results
            .iter_mut()
            .for_each(|s| s.annotations.clear());
    }),
    ("step results", |o| o.step_results.clear()),
    ("job outputs", |o| o.outputs.clear()),
];

async fn complete<C: JobChannel>(channel: &C, outcome: &JobOutcome, timings: &Timings) {
    let mut outcome = std::borrow::Cow::Borrowed(outcome);
    let mut reductions = COMPLETION_REDUCTIONS.iter();
    let mut attempt = 0;
    while attempt < timings.complete_attempts {
        attempt += 1;
        match channel.complete(&outcome).await {
            Ok(()) => {
                tracing::info!(result = outcome.result.as_str(), "job completed");
                return;
            }
            Err(ChannelError::Rejected { source }) => {
                let Some((part, reduce)) = reductions.next() else {
                    tracing::error!(error = %source, "job completion refused even without its data, giving up");
                    return;
                };
                tracing::warn!(error = %source, "job completion refused; retrying without its {part}");
                reduce(outcome.to_mut());
                // A reduced body is a new request, not a retry of the same one.
                attempt -= 1;
            }
            Err(ChannelError::Transient { source }) if attempt < timings.complete_attempts => {
                tracing::warn!(attempt, error = %source, "job completion failed, retrying");
                tokio::time::sleep(timings.complete_retry).await;
            }
            Err(err) => {
                tracing::error!(attempt, error = %err, "job completion failed, giving up");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
