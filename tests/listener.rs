//! The listener and job lifecycle against the local service, on both protocol paths, with a
//! fake executor and shortened timings (`Timings::fast`). Waits are generous upper bounds,
//! never timing asserts.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use ghrunner_vm::crypto::rsa::RunnerKey;
use ghrunner_vm::exit::ExitStatus;
use ghrunner_vm::job::lifecycle::{ExecutorError, JobExecutor, JobOutcome};
use ghrunner_vm::listener::ListenerError;
use ghrunner_vm::localsvc::protocol::{
    JobRecord, ProtocolEvent, ProtocolState, Tamper, protocol_state,
};
use ghrunner_vm::localsvc::{Fault, LocalService, LocalServiceConfig};
use ghrunner_vm::metrics::Metrics;
use ghrunner_vm::protocol::lifecycle::VariableValue;
use ghrunner_vm::protocol::{AgentJobRequestMessage, TaskResult};
use serde_json::{Value, json};
use support::listener::{VERSION, listen, seed, seed_agent};
use tokio_util::sync::CancellationToken;

/// Upper bound for anything the tests wait for.
const PATIENCE: Duration = Duration::from_secs(60);

/// Sleeps `work` (or stops at cancellation) and reports success with an output.
struct FakeExecutor {
    work: Duration,
    saw_cancel: AtomicBool,
    started: AtomicUsize,
}

impl FakeExecutor {
    fn new(work: Duration) -> Arc<FakeExecutor> {
        Arc::new(FakeExecutor {
            work,
            saw_cancel: AtomicBool::new(false),
            started: AtomicUsize::new(0),
        })
    }
}

impl JobExecutor for FakeExecutor {
    async fn execute(
        &self,
        message: AgentJobRequestMessage,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            _ = cancel.cancelled() => {
                self.saw_cancel.store(true, Ordering::SeqCst);
                Ok(JobOutcome::with_result(TaskResult::Canceled))
            }
            _ = tokio::time::sleep(self.work) => {
                let mut outcome = JobOutcome::with_result(TaskResult::Succeeded);
                let job_name = message.job_name;
                outcome.outputs.insert("answer".into(), VariableValue { value: format!("42-{job_name}"), is_secret: false });
                Ok(outcome)
            }
        }
    }
}

struct Runner {
    svc: LocalService,
    proto: Arc<ProtocolState>,
    agent_id: u64,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ListenerError>>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

/// Seeds a runner on a fresh service and starts a listener for it.
async fn start<E: JobExecutor>(
    broker: bool,
    executor: Arc<E>,
    prepare: impl FnOnce(&LocalService, u64),
) -> Runner {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let proto = protocol_state(&svc.state());
    let seeded = seed(&svc);
    prepare(&svc, seeded.agent_id);
    let attached = listen(&svc, seeded, broker, executor);
    Runner {
        agent_id: attached.agent_id,
        svc,
        proto,
        shutdown: attached.shutdown,
        task: attached.task,
        metrics: attached.metrics,
        _dir: attached.dir,
    }
}

fn job(name: &str, plan_version: i64) -> Value {
    json!({
        "jobId": uuid::Uuid::new_v4().to_string(),
        "jobName": name,
        "plan": {"planId": uuid::Uuid::new_v4().to_string(), "scopeIdentifier": uuid::Uuid::new_v4().to_string(),
                 "planType": "actions", "version": plan_version},
        "timeline": {"id": uuid::Uuid::new_v4().to_string()},
        "variables": {}, "steps": []
    })
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn completed(proto: &ProtocolState, job_id: &str) -> JobRecord {
    eventually("job completion", || {
        proto.job(job_id).filter(|r| r.completion.is_some())
    })
    .await
}

async fn stop(runner: Runner) -> (Result<(), ListenerError>, Vec<ProtocolEvent>) {
    runner.shutdown.cancel();
    let result = tokio::time::timeout(PATIENCE, runner.task)
        .await
        .expect("listener stops")
        .unwrap();
    let events = runner.proto.events();
    drop(runner.svc);
    (result, events)
}

fn session_deleted(events: &[ProtocolEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ProtocolEvent::SessionDeleted { .. }))
}

async fn with_timeout<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("operation finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_job_is_renewed_and_completed_with_the_executors_outputs() {
    let exec = FakeExecutor::new(Duration::from_millis(2500));
    let runner = start(false, exec.clone(), |_, _| {}).await;
    // Plan version 12: completion is the JobCompleted plan event.
    let job_id = runner.proto.enqueue_legacy_job(job("build", 12));
    let record = completed(&runner.proto, &job_id).await;
    assert!(record.renewals >= 2, "renewals: {}", record.renewals);
    let event = record.completion.unwrap();
    assert_eq!(event["name"], "JobCompleted");
    assert_eq!(event["result"], "succeeded");
    assert_eq!(event["outputs"]["answer"]["value"], "42-build");
    // Plan version 7: the finish PATCH.
    let old = runner.proto.enqueue_legacy_job(job("old", 7));
    let finish = completed(&runner.proto, &old).await.completion.unwrap();
    assert_eq!(finish["result"], "succeeded");
    assert!(finish["finishTime"].is_string());
    let (result, events) = stop(runner).await;
    result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::MessageDeleted { .. }))
    );
    assert!(session_deleted(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_job_is_acknowledged_acquired_renewed_and_completed() {
    let exec = FakeExecutor::new(Duration::from_millis(2500));
    let runner = start(true, exec.clone(), |_, _| {}).await;
    let job_id = runner.proto.enqueue_broker_job(job("test", 12));
    let record = completed(&runner.proto, &job_id).await;
    assert!(record.acquired);
    assert!(record.renewals >= 2, "renewals: {}", record.renewals);
    let body = record.completion.unwrap();
    assert_eq!(body["conclusion"], "succeeded");
    assert_eq!(body["outputs"]["answer"]["value"], "42-test");
    assert_eq!(body["billingOwnerId"], "O_local");
    let (result, events) = stop(runner).await;
    result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::Acknowledged { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::SessionCreated { broker: true, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::Poll { broker: true, status } if status == "Busy"))
    );
    assert!(session_deleted(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_migration_mid_run_keeps_serving_jobs() {
    let exec = FakeExecutor::new(Duration::from_millis(300));
    let runner = start(false, exec.clone(), |_, _| {}).await;
    let first = runner.proto.enqueue_legacy_job(job("before", 12));
    completed(&runner.proto, &first).await;
    runner.proto.migrate_to_broker();
    let second = runner.proto.enqueue_broker_job(job("after", 12));
    let body = completed(&runner.proto, &second).await.completion.unwrap();
    assert_eq!(body["conclusion"], "succeeded");
    assert_eq!(body["outputs"]["answer"]["value"], "42-after");
    let (result, events) = stop(runner).await;
    result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::Poll { broker: true, .. }))
    );
    // The job reference that came through the migration was acknowledged on the broker, with
    // the legacy session's id and the official query parameters (Runner.cs →
    // BrokerHttpClient.AcknowledgeRunnerRequestAsync).
    let legacy_session = events
        .iter()
        .find_map(|e| match e {
            ProtocolEvent::SessionCreated {
                session_id,
                broker: false,
            } => Some(session_id.clone()),
            _ => None,
        })
        .expect("a legacy session");
    let acks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProtocolEvent::Acknowledged {
                session_id, query, ..
            } => Some((session_id, query)),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1, "one acknowledge: {events:?}");
    let (session_id, query) = &acks[0];
    assert_eq!(**session_id, legacy_session);
    assert_eq!(query.get("status").map(String::as_str), Some("Online"));
    assert_eq!(
        query.get("runnerVersion").map(String::as_str),
        Some(VERSION)
    );
    assert_eq!(query.get("os").map(String::as_str), Some("Linux"));
    assert_eq!(query.get("architecture").map(String::as_str), Some("X64"));
    assert!(
        !query.contains_key("disableUpdate"),
        "the acknowledge sends the poll's parameters without disableUpdate"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_acknowledge_is_logged_and_the_job_still_runs() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (layer, failures) = LogCount::new("acknowledge failed");
    let subscriber = tracing_subscriber::registry().with(layer);
    let _guard = tracing::subscriber::set_default(subscriber);

    let exec = FakeExecutor::new(Duration::from_millis(200));
    let runner = start(true, exec.clone(), |svc, _| {
        let body = r#"{"source":"actions-broker-listener","errorKind":"","statusCode":500,"errorMessage":"boom"}"#;
        svc.inject(Fault::respond("POST", "/broker/acknowledge", 500, body));
    })
    .await;
    let job_id = runner.proto.enqueue_broker_job(job("unacknowledged", 12));
    let body = completed(&runner.proto, &job_id).await.completion.unwrap();
    assert_eq!(body["conclusion"], "succeeded");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        1,
        "the failure is logged once"
    );
    let (result, events) = stop(runner).await;
    result.unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::Acknowledged { .. })),
        "the fault answered instead of the broker"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_completion_refused_for_its_size_is_sent_again_smaller() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (layer, reductions) = LogCount::new("job completion refused; retrying without");
    let subscriber = tracing_subscriber::registry().with(layer);
    let _guard = tracing::subscriber::set_default(subscriber);

    let exec = FakeExecutor::new(Duration::from_millis(100));
    let runner = start(true, exec.clone(), |svc, _| {
        // A 413 is not retryable as such: only a smaller body can succeed.
        svc.inject(Fault::respond("POST", "/completejob", 413, "").times(2));
    })
    .await;
    let job_id = runner.proto.enqueue_broker_job(job("oversized", 12));
    let body = completed(&runner.proto, &job_id).await.completion.unwrap();
    assert_eq!(body["conclusion"], "succeeded");
    assert_eq!(
        reductions.load(Ordering::SeqCst),
        2,
        "two refusals, two smaller bodies"
    );
    assert_eq!(
        body["outputs"]["answer"]["value"], "42-oversized",
        "outputs go last"
    );
    stop(runner).await.0.unwrap();
}

/// Counts the log events whose message contains a needle.
struct LogCount {
    needle: &'static str,
    count: Arc<AtomicUsize>,
}

impl LogCount {
    /// A layer counting `needle`, and its counter.
    fn new(needle: &'static str) -> (LogCount, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let layer = LogCount {
            needle,
            count: Arc::clone(&count),
        };
        (layer, count)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCount {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Msg<'a>(&'a str, bool);
        impl tracing::field::Visit for Msg<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").contains(self.0) {
                    self.1 = true;
                }
            }
        }
        let mut msg = Msg(self.needle, false);
        event.record(&mut msg);
        if msg.1 {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_thirty_second_outage_is_survived_with_bounded_requests() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (layer, failures) = LogCount::new("poll failed");
    let subscriber = tracing_subscriber::registry().with(layer);
    let _guard = tracing::subscriber::set_default(subscriber);

    let exec = FakeExecutor::new(Duration::from_millis(200));
    let mut runner = start(false, exec.clone(), |_, _| {}).await;
    eventually("first poll", || {
        runner
            .proto
            .events()
            .iter()
            .any(|e| matches!(e, ProtocolEvent::Poll { .. }))
            .then_some(())
    })
    .await;
    runner.svc.stop_listening().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = failures.load(Ordering::SeqCst);
    let counted = poll_errors_metric(&runner.metrics);
    eprintln!("failed polls during a 30 s outage (fast timings): {during}, metric {counted}");
    // The metric counts the same failures the log reports (one more may land in between).
    assert!(
        (during..=during + 1).contains(&counted),
        "ghrunner_vm_poll_errors_total {counted}, logged failures {during}"
    );
    runner.svc.resume_listening().await.unwrap();
    // Fast timings back off 150–300 ms, then 300–600 ms: about 60–100 attempts in 30 s. A
    // busy loop would make thousands; giving up would make a handful.
    assert!(
        (20..=250).contains(&during),
        "failed polls during the outage: {during}"
    );
    let job_id = runner.proto.enqueue_legacy_job(job("after-outage", 12));
    let body = completed(&runner.proto, &job_id).await.completion.unwrap();
    assert_eq!(body["result"], "succeeded");
    stop(runner).await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_burst_and_a_revoked_token_are_survived() {
    let exec = FakeExecutor::new(Duration::from_millis(200));
    let runner = start(false, exec.clone(), |svc, _| {
        svc.inject(Fault::respond("GET", "/messages", 503, "{}").times(8));
    })
    .await;
    let job_id = runner.proto.enqueue_legacy_job(job("after-503", 12));
    completed(&runner.proto, &job_id).await;
    let tokens_before = token_requests(&runner.svc);
    runner.svc.revoke_access_tokens();
    let job_id = runner.proto.enqueue_legacy_job(job("after-401", 12));
    let body = completed(&runner.proto, &job_id).await.completion.unwrap();
    assert_eq!(body["result"], "succeeded");
    assert!(
        token_requests(&runner.svc) > tokens_before,
        "token refreshed after the 401"
    );
    let polls = runner
        .svc
        .requests()
        .iter()
        .filter(|r| r.path.contains("/messages"))
        .count();
    assert!(polls > 8, "polled through the 503 burst: {polls}");
    stop(runner).await.0.unwrap();
}

/// The value of `ghrunner_vm_poll_errors_total` in the Prometheus exposition.
fn poll_errors_metric(metrics: &Metrics) -> usize {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("ghrunner_vm_poll_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("the poll error counter is exposed")
}

fn token_requests(svc: &LocalService) -> usize {
    svc.requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/token"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_session_ends_in_the_session_conflict_exit() {
    let exec = FakeExecutor::new(Duration::from_millis(200));
    let runner = start(false, exec, |svc, agent| {
        protocol_state(&svc.state()).hold_session(agent);
    })
    .await;
    let err = with_timeout(runner.task).await.unwrap().unwrap_err();
    assert!(matches!(err, ListenerError::SessionConflict), "{err}");
    assert_eq!(err.exit_status(), ExitStatus::SessionConflict);
    let conflicts = runner
        .proto
        .events()
        .iter()
        .filter(|e| **e == ProtocolEvent::SessionConflict)
        .count();
    assert!(conflicts >= 2, "retried before giving up: {conflicts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_clears_is_retried_into_a_session() {
    let exec = FakeExecutor::new(Duration::from_millis(200));
    let held = Arc::new(Mutex::new(String::new()));
    let h = held.clone();
    let runner = start(false, exec, move |svc, agent| {
        *h.lock().unwrap() = protocol_state(&svc.state()).hold_session(agent);
    })
    .await;
    eventually("a conflict", || {
        runner
            .proto
            .events()
            .contains(&ProtocolEvent::SessionConflict)
            .then_some(())
    })
    .await;
    let id = held.lock().unwrap().clone();
    runner.proto.expire_session(&id);
    let job_id = runner.proto.enqueue_legacy_job(job("after-conflict", 12));
    completed(&runner.proto, &job_id).await;
    let agent = runner.agent_id;
    assert!(agent > 0);
    stop(runner).await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_cancellation_reaches_the_executor_and_completes_canceled() {
    let exec = FakeExecutor::new(Duration::from_secs(120));
    let runner = start(true, exec.clone(), |_, _| {}).await;
    let job_id = runner.proto.enqueue_broker_job(job("long", 12));
    eventually("job running", || {
        runner.proto.job(&job_id).filter(|r| r.renewals >= 1)
    })
    .await;
    runner.proto.enqueue_cancellation(&job_id);
    let body = completed(&runner.proto, &job_id).await.completion.unwrap();
    assert_eq!(body["conclusion"], "canceled");
    assert!(exec.saw_cancel.load(Ordering::SeqCst));
    stop(runner).await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_messages_are_skipped_and_the_loop_continues() {
    let exec = FakeExecutor::new(Duration::from_millis(200));
    let runner = start(false, exec.clone(), |_, _| {}).await;
    let mut bad_ids = vec![];
    for tamper in [Tamper::WrongIv, Tamper::BadPadding, Tamper::Garbage] {
        let bad = job("bad", 12);
        bad_ids.push(bad["jobId"].as_str().unwrap().to_owned());
        runner
            .proto
            .enqueue_tampered("PipelineAgentJobRequest", &bad.to_string(), tamper);
    }
    let good = runner.proto.enqueue_legacy_job(job("good", 12));
    let body = completed(&runner.proto, &good).await.completion.unwrap();
    assert_eq!(body["result"], "succeeded");
    assert_eq!(
        exec.started.load(Ordering::SeqCst),
        1,
        "only the intact job ran"
    );
    let (result, events) = stop(runner).await;
    result.unwrap();
    let deletes = events
        .iter()
        .filter(|e| matches!(e, ProtocolEvent::MessageDeleted { .. }))
        .count();
    assert!(deletes >= 4, "tampered messages are deleted too: {deletes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_job_reports_it_deletes_the_session_and_exits_0() {
    use ghrunner_vm::config::{Registration, RunnerSettings};
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let (agent_id, credentials) = seed_agent(&svc, &key);
    let proto = protocol_state(&svc.state());
    let root = tempfile::tempdir().unwrap();
    let registration = Registration {
        dir: root.path().join("runners").join("r1"),
        runner: RunnerSettings {
            agent_id,
            agent_name: "r1".into(),
            pool_id: 1,
            server_url: svc.tenant_url(),
            git_hub_url: svc.repo_url("o", "r"),
            disable_update: true,
            ..Default::default()
        },
        credentials,
        key,
    };
    registration.save().unwrap();
    // The VM executor is not wired into `run` yet: the hidden test executor stands in.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
        .arg("--dir")
        .arg(root.path())
        .arg("run")
        .env("GHRUNNER_VM_TEST_EXECUTOR", "sleep:600000")
        .env("GHRUNNER_VM_RUNNER_RELEASES_URL", svc.releases_url())
        .env("GHRUNNER_VM_TEST_TIMING_SCALE", "0.01")
        .env("GHRUNNER_VM_LOG", "ghrunner_vm=debug")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let job_id = proto.enqueue_legacy_job(job("term", 12));
    eventually("job running", || {
        proto.job(&job_id).filter(|r| r.renewals >= 1)
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = with_timeout(child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    let body = proto
        .job(&job_id)
        .unwrap()
        .completion
        .expect("job reported");
    assert_eq!(body["result"], "canceled");
    assert!(session_deleted(&proto.events()));
    assert!(proto.sessions().is_empty());
}
