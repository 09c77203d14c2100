//! The jobs a listener has dispatched: spawning each job's task (after the previous job of the
//! runner has ended), tracking them until they end, and stopping them at shutdown.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Listener;
use super::handover::{NextJob, Previous, wait_for_previous};
use super::jobref::ReceivedJob;
use crate::client::session::PollStatus;
use crate::job::lifecycle::{JobChannel, JobControl, JobExecutor, fail_unusable_job, run_job};
use crate::protocol::TaskResult;

/// A job this listener dispatched that has not ended yet.
pub(super) struct Running {
    pub(super) job_id: String,
    /// The legacy job request id (`None` on the run-service path).
    request_id: Option<i64>,
    pub(super) cancel: CancellationToken,
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
pub(super) struct Jobs {
    pub(super) running: Vec<Running>,
    pub(super) taken: bool,
}

impl Jobs {
    pub(super) fn status(&self) -> PollStatus {
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

impl<E: JobExecutor> Listener<E> {
    /// Spawns the job's task: it waits for the previous job of this runner (if one is still
    /// finishing), then runs the job's lifecycle (a job whose message did not validate is
    /// completed as failed instead of running).
    pub(super) fn spawn_job<C: JobChannel>(
        &self,
        channel: C,
        received: ReceivedJob,
        next: NextJob,
        jobs: &mut Jobs,
    ) {
        let ReceivedJob {
            job_ref: job,
            message,
        } = received;
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
                wait_for_previous(previous, &next, timings.timeouts.short_call).await;
                let channel = Arc::new(channel);
                let result = match message {
                    Ok(message) => {
                        run_job(channel, executor.as_ref(), message, control, &timings).await
                    }
                    Err(invalid) => fail_unusable_job(channel, &invalid, control, &timings).await,
                };
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
    pub(super) async fn stop_jobs(&self, mut running: Vec<Running>) {
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

/// Resolves when the oldest running job ends (never, when none runs). Each job waits for the
/// one before it, so the oldest always ends first.
pub(super) async fn job_done(running: &mut [Running]) -> TaskResult {
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
