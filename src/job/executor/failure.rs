//! Ending a job that cannot run its steps: why set-up failed ([`SetUpError`]), shown as a
//! job-level log line and error annotation, and cancellation while the VM is awaited; either
//! way the reporter gets `JobStarted` … `JobCompleted` so the job shows in the GitHub UI.

use chrono::Utc;
use tokio::sync::mpsc;

use super::ImageSelectError;
use crate::errors::ErrorChain;
use crate::job::budget::BudgetError;
use crate::job::events::JobEvent;
use crate::job::hooks::HookError;
use crate::job::plan::PlanError;
use crate::job::runtime;
use crate::job::stepexec::runner_error;
use crate::protocol::TaskResult;
use crate::vm::VmError;

/// Why a job failed before its steps ran (shown in the job log).
#[derive(Debug, thiserror::Error)]
pub(super) enum SetUpError {
    #[error(transparent)]
    Image(#[from] ImageSelectError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error("the job cannot run in a VM")]
    Plan(#[source] PlanError),
    #[error("the VM failed to boot")]
    Boot(#[source] VmError),
    #[error("the job_started hook failed")]
    Hook(#[source] HookError),
}

/// Ends a job that failed before or instead of its steps: a job-level error line and
/// annotation, then `JobCompleted(failed)`.
pub(super) async fn fail_job(
    events: &mpsc::Sender<JobEvent>,
    error: impl Into<SetUpFailure>,
) -> runtime::JobOutcome {
    let SetUpFailure(message) = error.into();
    tracing::warn!(reason = %message, "job failed before its steps ran");
    end_job(events, TaskResult::Failed, message).await
}

pub(super) async fn cancelled_job(
    events: &mpsc::Sender<JobEvent>,
    during: &str,
) -> runtime::JobOutcome {
    let message = format!("The job was cancelled while {during}.");
    let now = Utc::now();
    let _ = events.send(JobEvent::JobStarted { at: now }).await;
    let _ = events
        .send(JobEvent::Log {
            step_id: None,
            line: message,
        })
        .await;
    let _ = events
        .send(JobEvent::JobCompleted {
            result: TaskResult::Canceled,
            outputs: Vec::new(),
            at: Utc::now(),
        })
        .await;
    empty_outcome(TaskResult::Canceled, Vec::new())
}

async fn end_job(
    events: &mpsc::Sender<JobEvent>,
    result: TaskResult,
    message: String,
) -> runtime::JobOutcome {
    let annotation = runner_error(message);
    let _ = events.send(JobEvent::JobStarted { at: Utc::now() }).await;
    for line in crate::job::commands::annotation_log_line(&annotation).lines() {
        let line = line.to_owned();
        let _ = events
            .send(JobEvent::Log {
                step_id: None,
                line,
            })
            .await;
    }
    let _ = events
        .send(JobEvent::Annotation {
            step_id: None,
            annotation: annotation.clone(),
        })
        .await;
    let _ = events
        .send(JobEvent::JobCompleted {
            result,
            outputs: Vec::new(),
            at: Utc::now(),
        })
        .await;
    empty_outcome(result, vec![annotation])
}

fn empty_outcome(
    result: TaskResult,
    annotations: Vec<crate::job::events::Annotation>,
) -> runtime::JobOutcome {
    runtime::JobOutcome {
        result,
        outputs: Vec::new(),
        steps: Vec::new(),
        annotations,
    }
}

/// A set-up failure rendered for the job log (the error and its causes, as one message).
pub(super) struct SetUpFailure(pub(super) String);

impl From<SetUpError> for SetUpFailure {
    fn from(err: SetUpError) -> Self {
        SetUpFailure(ErrorChain(&err).to_string())
    }
}

impl From<&str> for SetUpFailure {
    fn from(text: &str) -> Self {
        SetUpFailure(text.to_owned())
    }
}
