//! A job request that arrives while the previous job of the same runner is still finishing
//! (typically: it was cancelled and its VM is being torn down). Nothing is dropped: the new job
//! is taken (acknowledged, acquired, its VM may boot), and it starts once the previous one has
//! ended, as the official runner's `JobDispatcher.EnsureDispatchFinished` does
//! (`src/Runner.Listener/JobDispatcher.cs`):
//!
//! ```text
//!  previous job already ended ───────────────────────────────► run the new job
//!  new job from the run service (broker path) ─► cancel the previous job, wait for it ─► run
//!  new job on the legacy path ─► GET the previous job request
//!     ├─ finished on the server (result set), gone (404) or unreadable
//!     │        ─► cancel the previous job, wait for it ─► run
//!     └─ still running on the server ─► wait for it to end by itself ─► run
//! ```
//!
//! The official runner throws in the last case (the server sent two jobs at once) and the new
//! job is never run; here it waits instead, and the new job's first renewal decides whether it
//! is still ours. Either way the previous job is completed on the server before the next
//! one's VM runs a step, so two jobs of one runner never run at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::VssErrorKind;
use crate::client::session::LegacyClient;

/// What a new job knows about the job dispatched before it.
#[derive(Debug, Clone)]
pub(crate) struct Previous {
    /// Its job id (for logs).
    pub job_id: String,
    /// Its legacy job request id (`None` for run-service jobs).
    pub request_id: Option<i64>,
    /// Fires its cancellation.
    pub cancel: CancellationToken,
    /// Fired once its task has ended (completed on the server, VM gone).
    pub finished: CancellationToken,
}

/// Which path the new job came by.
#[derive(Debug, Clone)]
pub(crate) enum NextJob {
    /// A `RunnerJobRequest` acquired from the run service.
    RunService,
    /// A `PipelineAgentJobRequest`; the client reads the previous job request.
    Legacy(LegacyClient),
}

/// Returns once the previous job (if any) has ended, cancelling it first where the official
/// runner does.
pub(crate) async fn wait_for_previous(
    previous: Option<Previous>,
    next: &NextJob,
    timeout: Duration,
) {
    let Some(previous) = previous else {
        return;
    };
    if previous.finished.is_cancelled() {
        return;
    }
    let job = previous.job_id.as_str();
    if should_cancel(&previous, next, timeout).await {
        previous.cancel.cancel();
    }
    previous.finished.cancelled().await;
    tracing::info!(
        previous = job,
        "the previous job has ended; starting the next one"
    );
}

async fn should_cancel(previous: &Previous, next: &NextJob, timeout: Duration) -> bool {
    let job = previous.job_id.as_str();
    let (client, request_id) = match (next, previous.request_id) {
        (NextJob::RunService, _) => {
            tracing::info!(
                previous = job,
                "a new run-service job arrived while the previous job is still finishing: \
                 cancelling what is left of it, the new job starts when it has ended"
            );
            return true;
        }
        (NextJob::Legacy(_), None) => {
            tracing::info!(
                previous = job,
                "a new job arrived while the previous (run-service) job is still finishing: \
                 cancelling what is left of it"
            );
            return true;
        }
        (NextJob::Legacy(client), Some(id)) => (client, id),
    };
    match client.get_job_request(request_id, timeout).await {
        Ok(request) => match request.result {
            Some(result) => {
                tracing::info!(
                    previous = job,
                    result = result.as_str(),
                    "the server already finished the previous job; cancelling what is left of it"
                );
                true
            }
            None => {
                tracing::warn!(
                    previous = job,
                    "the server sent a new job while the previous one is still running there; \
                     the new job starts when the previous one has ended"
                );
                false
            }
        },
        Err(err) => {
            let gone = matches!(err.vss_kind(), Some(VssErrorKind::JobNotFound))
                || err.status() == Some(reqwest::StatusCode::NOT_FOUND);
            if gone {
                tracing::info!(
                    previous = job,
                    "the previous job request is gone on the server; cancelling what is left of it"
                );
            } else {
                tracing::warn!(previous = job, error = %err, "cannot read the previous job request; cancelling it");
            }
            true
        }
    }
}
