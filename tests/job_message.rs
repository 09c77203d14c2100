//! A job message is typed once, where the listener receives it, on both protocol paths and
//! against the local service. A body that does not validate but whose ids can be read is still
//! acquired, renewed and completed as failed, with the validation error (naming the field)
//! logged, and the executor never sees it; a body without usable ids is skipped. Either way
//! the next job runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod support;

use ghrunner_vm::job::lifecycle::{ExecutorError, JobExecutor, JobOutcome};
use ghrunner_vm::localsvc::protocol::{JobRecord, ProtocolState, protocol_state};
use ghrunner_vm::localsvc::{LocalService, LocalServiceConfig};
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use serde_json::{Value, json};
use support::listener::{Attached, attach, job, stop};
use support::logs::Buffer;
use support::wait::{PATIENCE, eventually};
use tokio_util::sync::CancellationToken;

/// Succeeds at once, counting the jobs it was given.
#[derive(Default)]
struct CountingExecutor {
    started: AtomicUsize,
}

impl JobExecutor for CountingExecutor {
    async fn execute(
        &self,
        message: AgentJobRequestMessage,
        _cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        assert_eq!(
            message.job_name, "good",
            "only the valid job reaches the executor"
        );
        self.started.fetch_add(1, Ordering::SeqCst);
        Ok(JobOutcome::with_result(TaskResult::Succeeded))
    }
}

/// Captures the runner's log lines while the returned guard lives. The test runtimes are
/// single-threaded, so every task (listener, job, local service) logs through this default.
fn capture_logs() -> (Buffer, tracing::subscriber::DefaultGuard) {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("ghrunner_vm=info"))
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// A local service, a listener on `broker`'s path with a [`CountingExecutor`], and the
/// captured log.
struct Rig {
    logs: Buffer,
    _guard: tracing::subscriber::DefaultGuard,
    _svc: LocalService,
    proto: Arc<ProtocolState>,
    exec: Arc<CountingExecutor>,
    runner: Attached,
}

async fn rig(broker: bool) -> Rig {
    let (logs, _guard) = capture_logs();
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let proto = protocol_state(&svc.state());
    let exec = Arc::new(CountingExecutor::default());
    let runner = attach(&svc, broker, Arc::clone(&exec));
    Rig {
        logs,
        _guard,
        _svc: svc,
        proto,
        exec,
        runner,
    }
}

fn enqueue(proto: &ProtocolState, broker: bool, job: Value) -> String {
    if broker {
        proto.enqueue_broker_job(job)
    } else {
        proto.enqueue_legacy_job(job)
    }
}

async fn completed(proto: &ProtocolState, job_id: &str) -> JobRecord {
    eventually("the job's completion", PATIENCE, || {
        proto.job(job_id).filter(|r| r.completion.is_some())
    })
    .await
}

/// The result a completion body reports (`completejob` or the `JobCompleted` event).
fn result_of(record: &JobRecord, broker: bool) -> String {
    let body = record.completion.as_ref().expect("completed");
    let key = if broker { "conclusion" } else { "result" };
    body[key].as_str().unwrap_or_default().to_owned()
}

/// Runs one listener on `broker`'s path through two invalid jobs and a valid one.
async fn invalid_bodies_fail_their_jobs(broker: bool) {
    let Rig {
        logs,
        _guard,
        _svc,
        proto,
        exec,
        runner,
    } = rig(broker).await;

    let mut malformed = job("malformed");
    malformed["steps"] = json!("make all");
    let malformed = enqueue(&proto, broker, malformed);
    let mut incomplete = job("incomplete");
    incomplete.as_object_mut().unwrap().remove("timeline");
    let incomplete = enqueue(&proto, broker, incomplete);
    let good = enqueue(&proto, broker, job("good"));

    for (job_id, field) in [
        (&malformed, "the job message's `steps` is malformed"),
        (&incomplete, "the job message has no `timeline`"),
    ] {
        let record = completed(&proto, job_id).await;
        assert!(record.acquired, "{field}: acquired");
        assert!(record.renewals >= 1, "{field}: renewed before completing");
        assert_eq!(result_of(&record, broker), "failed", "{field}");
        let log = logs.text();
        let line = log
            .lines()
            .find(|l| l.contains(field))
            .unwrap_or_else(|| panic!("the error names the field ({field}): {log}"));
        assert!(
            line.contains("completing the job as failed"),
            "logged as a failed job: {line}"
        );
    }
    let record = completed(&proto, &good).await;
    assert_eq!(result_of(&record, broker), "succeeded");
    assert_eq!(
        exec.started.load(Ordering::SeqCst),
        1,
        "only the valid job ran"
    );

    stop(runner).await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_invalid_legacy_job_body_is_completed_failed_naming_the_field() {
    invalid_bodies_fail_their_jobs(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_invalid_acquired_job_body_is_completed_failed_naming_the_field() {
    invalid_bodies_fail_their_jobs(true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_body_without_usable_ids_is_skipped_on_both_paths() {
    for broker in [false, true] {
        let Rig {
            logs,
            _guard,
            _svc,
            proto,
            exec,
            runner,
        } = rig(broker).await;
        let mut no_plan = job("no-plan");
        no_plan["plan"] = json!("p-1");
        let skipped = enqueue(&proto, broker, no_plan);
        let good = enqueue(&proto, broker, job("good"));
        let record = completed(&proto, &good).await;
        assert_eq!(result_of(&record, broker), "succeeded", "broker: {broker}");
        let record = proto.job(&skipped).expect("the job is known");
        assert!(record.completion.is_none(), "broker: {broker}");
        assert_eq!(record.renewals, 0, "broker: {broker}");
        let log = logs.text();
        let line = log
            .lines()
            .find(|l| l.contains("job message unusable, skipped"))
            .unwrap_or_else(|| panic!("the skip is logged (broker: {broker}): {log}"));
        assert!(line.contains("job message has no plan"), "{line}");
        assert_eq!(exec.started.load(Ordering::SeqCst), 1);
        stop(runner).await;
    }
}
