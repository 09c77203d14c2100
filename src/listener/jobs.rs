//! The protocol side of one job: acquiring a broker job from the run service, and the two
//! [`JobChannel`]s (run service `renewjob`/`completejob`; legacy job-request PATCH and the
//! `JobCompleted` plan event) that [`crate::job::lifecycle::run_job`] drives.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use crate::client::backoff::{ErrorThrottle, Timings};
use crate::client::broker::{self, ServiceError};
use crate::client::http::HttpClient;
use crate::client::session::{LegacyClient, PlanLocation, post_job_completed};
use crate::client::{ClientError, TokenProvider, VssErrorKind};
use crate::job::lifecycle::{BoxError, ChannelError, JobChannel, JobOutcome};
use crate::listener::jobref::JobRef;
use crate::protocol::lifecycle::{
    AcquireJobRequest, CompleteJobRequest, JobCompletedEvent, RenewJobRequest, parse_vss_datetime,
};
use crate::protocol::message::RunnerJobRequestRef;

/// Plan versions from this one on complete with the `JobCompleted` event (else finish PATCH).
pub const PLAN_VERSION_JOB_COMPLETED_EVENT: i64 = 8;

/// Statuses that refuse a request for its body (too large, or invalid in part).
fn body_rejected(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY
    )
}

fn classify_service(err: ServiceError) -> ChannelError {
    let status = err.status();
    let source: BoxError = Box::new(err);
    match status {
        Some(StatusCode::NOT_FOUND) => ChannelError::Gone { source },
        Some(s) if body_rejected(s) => ChannelError::Rejected { source },
        Some(s)
            if s.is_client_error()
                && s != StatusCode::REQUEST_TIMEOUT
                && s != StatusCode::TOO_MANY_REQUESTS =>
        {
            ChannelError::Fatal { source }
        }
        _ => ChannelError::Transient { source },
    }
}

fn classify_client(err: ClientError) -> ChannelError {
    let gone = matches!(
        err.vss_kind(),
        Some(VssErrorKind::JobNotFound | VssErrorKind::JobTokenExpired)
    ) || err.status() == Some(StatusCode::NOT_FOUND);
    let retryable = err.is_retryable();
    let rejected = err.status().is_some_and(body_rejected);
    let source: BoxError = Box::new(err);
    if gone {
        ChannelError::Gone { source }
    } else if rejected {
        ChannelError::Rejected { source }
    } else if retryable {
        ChannelError::Transient { source }
    } else {
        ChannelError::Fatal { source }
    }
}

/// A broker job: renew and complete on the run service with the job token.
#[derive(Debug)]
pub struct RunServiceChannel {
    http: HttpClient,
    job: JobRef,
    timings: Timings,
}

impl RunServiceChannel {
    /// A channel for an acquired job.
    pub fn new(http: HttpClient, job: JobRef, timings: Timings) -> Self {
        RunServiceChannel { http, job, timings }
    }
}

impl JobChannel for RunServiceChannel {
    async fn renew(&self) -> Result<Option<DateTime<Utc>>, ChannelError> {
        let body = RenewJobRequest {
            plan_id: self.job.plan_id.clone(),
            job_id: self.job.job_id.clone(),
        };
        let answer = broker::renew_job(
            &self.http,
            &self.job.system_url,
            self.job.job_token.expose(),
            &body,
            self.timings.timeouts.short_call,
        )
        .await
        .map_err(classify_service)?;
        Ok(answer.locked_until.as_deref().and_then(parse_vss_datetime))
    }

    async fn complete(&self, outcome: &JobOutcome) -> Result<(), ChannelError> {
        let body = CompleteJobRequest {
            plan_id: self.job.plan_id.clone(),
            job_id: self.job.job_id.clone(),
            conclusion: outcome.result,
            outputs: outcome.outputs.clone(),
            step_results: outcome.step_results.clone(),
            annotations: outcome.annotations.clone(),
            environment_url: None,
            billing_owner_id: self.job.billing_owner_id.clone(),
            infrastructure_failure_category: None,
        };
        broker::complete_job(
            &self.http,
            &self.job.system_url,
            self.job.job_token.expose(),
            &body,
            self.timings.timeouts.short_call,
        )
        .await
        .map_err(classify_service)
    }
}

/// A legacy job: renew the job request with the runner token; complete with the finish PATCH
/// (plan version < 8) or the `JobCompleted` plan event (job token).
#[derive(Debug)]
pub struct LegacyChannel {
    http: HttpClient,
    legacy: LegacyClient,
    job: JobRef,
    timings: Timings,
}

impl LegacyChannel {
    /// A channel for a delivered legacy job.
    pub fn new(http: HttpClient, legacy: LegacyClient, job: JobRef, timings: Timings) -> Self {
        LegacyChannel {
            http,
            legacy,
            job,
            timings,
        }
    }
}

impl JobChannel for LegacyChannel {
    async fn renew(&self) -> Result<Option<DateTime<Utc>>, ChannelError> {
        let answer = self
            .legacy
            .renew_job_request(self.job.request_id, self.timings.timeouts.short_call)
            .await
            .map_err(classify_client)?;
        Ok(answer.locked_until.as_deref().and_then(parse_vss_datetime))
    }

    async fn complete(&self, outcome: &JobOutcome) -> Result<(), ChannelError> {
        let timeout = self.timings.timeouts.short_call;
        if self.job.plan_version < PLAN_VERSION_JOB_COMPLETED_EVENT {
            return self
                .legacy
                .finish_job_request(self.job.request_id, outcome.result, timeout)
                .await
                .map(drop)
                .map_err(classify_client);
        }
        let event = JobCompletedEvent {
            name: JobCompletedEvent::NAME.to_owned(),
            job_id: self.job.job_id.clone(),
            request_id: self.job.request_id,
            result: outcome.result,
            outputs: outcome.outputs.clone(),
            actions_environment: self.job.actions_environment.clone(),
        };
        let plan = PlanLocation {
            scope_identifier: self.job.scope_identifier.clone(),
            plan_type: self.job.plan_type.clone(),
            plan_id: self.job.plan_id.clone(),
        };
        post_job_completed(
            &self.http,
            &self.job.system_url,
            self.job.job_token.expose(),
            &plan,
            &event,
            timeout,
        )
        .await
        .map_err(classify_client)
    }
}

/// Acquires a broker job from the run service: retriable errors up to
/// [`Timings::acquire_attempts`]; 404/409/422 give up at once. `throttle` slows down
/// acquisition after errors. `Err` when the job could not be acquired, with the last error
/// (`None` if there was none to report).
pub async fn acquire(
    http: &HttpClient,
    tokens: &Arc<TokenProvider>,
    job: &RunnerJobRequestRef,
    throttle: &mut ErrorThrottle,
    timings: &Timings,
) -> Result<serde_json::Value, Option<ServiceError>> {
    let body = AcquireJobRequest {
        job_message_id: job.runner_request_id.clone(),
        runner_os: runner_os().to_owned(),
        billing_owner_id: job.billing_owner_id.clone(),
    };
    for attempt in 1..=timings.acquire_attempts {
        match broker::acquire_job(
            http,
            tokens,
            &job.run_service_url,
            &body,
            timings.timeouts.short_call,
        )
        .await
        {
            Ok(message) => {
                throttle.on_success();
                return Ok(message);
            }
            Err(err) => {
                let delay = throttle.on_error(timings);
                let retry = err.is_retryable() && attempt < timings.acquire_attempts;
                tracing::warn!(attempt, error = %err, retry, "acquirejob failed");
                if !retry {
                    tokio::time::sleep(delay).await;
                    return Err(Some(err));
                }
                let delay = timings.acquire_retry.sample(&mut rand::thread_rng());
                tokio::time::sleep(delay).await;
            }
        }
    }
    Err(None)
}

/// The `runnerOS` word of this host.
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "windows" => "Windows",
        "macos" => "macOS",
        _ => "Linux",
    }
}
