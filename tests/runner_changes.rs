//! The official runner's changes after 2.330.0 that ghrunner-vm implements
//! (protocol-fixtures/RUNNER-VERSIONS.md), each driven by a fixture of
//! `protocol-fixtures/runner-versions/` whose provenance names the official source file:
//! the service answers the fixture (fault injection on the local service) or the planner reads
//! it, and the test checks what ghrunner-vm does with it.

mod support;
use support::wait;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ghrunner_vm::agent::SleepExecutor;
use ghrunner_vm::client::HttpClient;
use ghrunner_vm::client::http::RetryPolicy;
use ghrunner_vm::exit::ExitStatus;
use ghrunner_vm::job::plan::{JobPlan, PlanError, RunDefaults, RunnerFacts};
use ghrunner_vm::job::script::{ScriptRequest, render_step};
use ghrunner_vm::listener::ListenerError;
use ghrunner_vm::localsvc::protocol::{ProtocolEvent, ProtocolState, protocol_state};
use ghrunner_vm::localsvc::{Fault, LocalService, LocalServiceConfig};
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use ghrunner_vm::protocol::lifecycle::TaskAgentJobRequest;
use ghrunner_vm::version::{Version, VersionPolicy, fetch_latest};
use serde_json::{Value, json};
use support::listener::{Attached, job, listen_with, seed};
use wait::eventually;

const PATIENCE: Duration = Duration::from_secs(60);

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("protocol-fixtures/runner-versions")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("fixture exists")
}

fn job_message(name: &str) -> AgentJobRequestMessage {
    serde_json::from_str(&fixture(name)).expect("job fixture parses")
}

fn facts() -> RunnerFacts {
    RunnerFacts {
        runner_name: "r".into(),
        os: "Linux".into(),
        arch: "X64".into(),
        work_dir: "/work".into(),
        has_bash: true,
        guest: None,
    }
}

/// A listener advertising a pinned version, with a fast sleep executor.
fn listener(svc: &LocalService, broker: bool, ephemeral: bool) -> Attached {
    let versions = Arc::new(VersionPolicy::pinned(Version::new(2, 331, 0)));
    let executor = Arc::new(SleepExecutor {
        duration: Duration::from_millis(50),
    });
    let mut seeded = seed(svc);
    seeded.ephemeral = ephemeral;
    listen_with(svc, seeded, broker, executor, versions)
}

async fn finished(attached: Attached) -> Result<(), ListenerError> {
    tokio::time::timeout(PATIENCE, attached.task)
        .await
        .expect("the listener stops by itself")
        .unwrap()
}

async fn start() -> (LocalService, Arc<ProtocolState>) {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let proto = protocol_state(&svc.state());
    (svc, proto)
}

async fn completed(proto: &ProtocolState, job_id: &str) -> Value {
    eventually("job completion", PATIENCE, || {
        proto.job(job_id).and_then(|r| r.completion)
    })
    .await
}

/// `src/Sdk/WebApi/WebApi/BrokerHttpClient.cs` (GetRunnerMessageAsync, `RunnerVersionTooOld` →
/// `AccessDeniedException{ErrorCode=1}`), `src/Runner.Listener/Program.cs` (exit 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_runner_version_too_old_stops_a_pinned_runner_with_exit_7() {
    let (svc, _proto) = start().await;
    svc.inject(
        Fault::respond(
            "GET",
            "/broker/message",
            403,
            &fixture("broker-error-version-too-old.json"),
        )
        .times(100),
    );
    let err = finished(listener(&svc, true, false)).await.unwrap_err();
    assert!(
        matches!(err, ListenerError::VersionRejected { .. }),
        "{err}"
    );
    assert_eq!(err.exit_status(), ExitStatus::VersionRejected);
    let text = ghrunner_vm::errors::error_chain(&err);
    assert!(
        text.contains("deprecated and cannot receive messages"),
        "{text}"
    );
}

/// `src/Runner.Listener/MessageListener.cs` (`AccessDeniedException` with `ErrorCode == 1`),
/// `src/Sdk/DTWebApi/WebApi/Exceptions.cs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_access_denied_code_1_is_a_version_rejection() {
    let (svc, _proto) = start().await;
    svc.inject(
        Fault::respond(
            "GET",
            "/messages",
            403,
            &fixture("vss-access-denied-version.json"),
        )
        .times(100),
    );
    let err = finished(listener(&svc, false, false)).await.unwrap_err();
    assert!(
        matches!(err, ListenerError::VersionRejected { .. }),
        "{err}"
    );
}

/// actions/runner #4556: `src/Runner.Listener/BrokerMessageListener.cs`,
/// `src/Sdk/RSWebApi/Contracts/BrokerErrorKind.cs` (`RunnerSessionInvalid` → a new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_runner_session_invalid_recreates_the_session() {
    let (svc, proto) = start().await;
    let runner = listener(&svc, true, false);
    let session = eventually("a session", PATIENCE, || proto.sessions().pop()).await;
    // The service drops the session; its next answer to the poll is the fixture's document.
    let answer: ghrunner_vm::protocol::message::BrokerErrorBody =
        serde_json::from_str(&fixture("broker-error-session-invalid.json")).unwrap();
    proto.expire_session(&session);
    eventually("the RunnerSessionInvalid answer", PATIENCE, || {
        svc.requests()
            .iter()
            .any(|r| {
                r.path.ends_with("/broker/message")
                    && r.query.as_deref().is_some_and(|q| q.contains(&session))
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        answer.kind(),
        ghrunner_vm::protocol::message::BrokerErrorKind::RunnerSessionInvalid
    );
    let job_id = proto.enqueue_broker_job(job("after-invalid-session"));
    let body = completed(&proto, &job_id).await;
    assert_eq!(body["conclusion"], "succeeded");
    let created = proto
        .events()
        .iter()
        .filter(|e| matches!(e, ProtocolEvent::SessionCreated { .. }))
        .count();
    assert_eq!(
        created, 2,
        "one session, then a new one after RunnerSessionInvalid"
    );
    runner.shutdown.cancel();
    finished(runner).await.unwrap();
}

/// actions/runner #4633: `src/Sdk/WebApi/WebApi/BrokerHttpClient.cs` (a bare 403 on the message
/// poll is no longer read as "version too old": it is retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_bare_403_on_the_poll_is_retried() {
    let (svc, proto) = start().await;
    svc.inject(Fault::respond("GET", "/broker/message", 403, "forbidden").times(2));
    let runner = listener(&svc, true, false);
    let job_id = proto.enqueue_broker_job(job("after-403"));
    assert_eq!(completed(&proto, &job_id).await["conclusion"], "succeeded");
    runner.shutdown.cancel();
    finished(runner).await.unwrap();
}

/// actions/runner #4540: `src/Runner.Listener/Runner.cs` (an ephemeral runner whose acknowledge
/// answers `AcknowledgeJobNotFound` exits without acquiring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_runner_stops_on_acknowledge_job_not_found() {
    let (svc, proto) = start().await;
    svc.inject(Fault::respond(
        "POST",
        "/broker/acknowledge",
        404,
        &fixture("broker-error-acknowledge-job-not-found.json"),
    ));
    let runner = listener(&svc, true, true);
    let job_id = proto.enqueue_broker_job(job("gone"));
    finished(runner).await.expect("a clean stop");
    assert!(!proto.job(&job_id).unwrap().acquired, "not acquired");
}

/// The same answer to a runner that is not ephemeral is logged and the job is acquired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_runner_acquires_after_acknowledge_job_not_found() {
    let (svc, proto) = start().await;
    svc.inject(Fault::respond(
        "POST",
        "/broker/acknowledge",
        404,
        &fixture("broker-error-acknowledge-job-not-found.json"),
    ));
    let runner = listener(&svc, true, false);
    let job_id = proto.enqueue_broker_job(job("still-here"));
    assert_eq!(completed(&proto, &job_id).await["conclusion"], "succeeded");
    runner.shutdown.cancel();
    finished(runner).await.unwrap();
}

/// The GitHub REST "latest release" document (docs: `GET /repos/{owner}/{repo}/releases/latest`)
/// as `auto` reads it.
#[tokio::test]
async fn the_latest_release_document_is_read() {
    let (svc, _proto) = start().await;
    svc.inject(Fault::respond(
        "GET",
        "/repos/actions/runner/releases/latest",
        200,
        &fixture("latest-release.json"),
    ));
    let http = HttpClient::with_retry(RetryPolicy::NONE).unwrap();
    let latest = fetch_latest(&http, &svc.releases_url()).await.unwrap();
    assert_eq!(latest.version, Version::new(2, 340, 1));
    assert_eq!(
        latest.published_at.unwrap().to_rfc3339(),
        "2026-11-30T12:00:00+00:00"
    );
    // A draft or prerelease is not a release to advertise.
    let mut draft: Value = serde_json::from_str(&fixture("latest-release.json")).unwrap();
    draft["prerelease"] = json!(true);
    svc.inject(Fault::respond(
        "GET",
        "/repos/actions/runner/releases/latest",
        200,
        &draft.to_string(),
    ));
    assert!(fetch_latest(&http, &svc.releases_url()).await.is_err());
}

/// `src/Runner.Listener/JobDispatcher.cs` (EnsureDispatchFinished reads the previous job
/// request: `result` set means finished on the server).
#[test]
fn the_job_request_answer_carries_its_result() {
    let request: TaskAgentJobRequest =
        serde_json::from_str(&fixture("jobrequest-get-response.json")).unwrap();
    assert_eq!(request.result, Some(TaskResult::Canceled));
    assert_eq!(request.request_id, 1000);
}

/// actions/runner #4472: `src/Sdk/DTPipelines/Pipelines/BackgroundStepControl.cs`,
/// `ActionStep.cs` (`background`), `StepConverter.cs` (type 5). Not supported: the job fails
/// in "Set up job" naming the feature, never runs the steps in another order.
#[test]
fn background_steps_are_refused_by_name() {
    let message = job_message("job-background-steps.json");
    let err = JobPlan::new(&message, &facts()).expect_err("refused");
    assert!(matches!(err, PlanError::Unsupported { .. }));
    let text = err.to_string();
    assert!(text.contains("background steps"), "{text}");
    assert!(text.contains("not supported by ghrunner-vm"), "{text}");
    // Only the control step, or only the flag, is enough.
    let mut only_control: Value =
        serde_json::from_str(&fixture("job-background-steps.json")).unwrap();
    only_control["steps"][0]["background"] = json!(false);
    let message: AgentJobRequestMessage = serde_json::from_value(only_control).unwrap();
    assert!(JobPlan::new(&message, &facts()).is_err());
}

/// actions/runner #4298/#4317/#4419 (`src/Sdk/DTPipelines/Pipelines/AgentJobRequestMessage.cs`,
/// `DebuggerTunnelInfo.cs`) and `Snapshot.cs`: accepted and ignored; the job plans as usual.
#[test]
fn debugger_and_snapshot_fields_are_accepted_and_ignored() {
    let message = job_message("job-debugger-snapshot.json");
    assert!(message.enable_debugger);
    assert!(message.debugger_tunnel.is_some());
    assert!(message.snapshot.is_some());
    let plan = JobPlan::new(&message, &facts()).expect("plans");
    assert_eq!(plan.steps.len(), 1);
}

/// actions/runner #4178: `src/Runner.Worker/Handlers/ScriptHandler.cs`
/// (`ACTIONS_ORCHESTRATION_ID` = `system.orchestrationId` when
/// `actions_set_orchestration_id_env_for_actions` is true).
#[test]
fn the_orchestration_id_reaches_run_steps_when_enabled() {
    let env_of = |message: &AgentJobRequestMessage| {
        let plan = JobPlan::new(message, &facts()).unwrap();
        let defaults = RunDefaults::default();
        let contexts = ghrunner_vm::expr::Object::default();
        let request = ScriptRequest {
            script: "true",
            shell: None,
            working_directory: None,
            defaults: &defaults,
            env: &[],
            path_prepends: &[],
            guest_path: None,
            contexts: &contexts,
            script_id: uuid::Uuid::new_v4(),
        };
        render_step(&plan, &request).unwrap().env
    };
    let enabled = job_message("job-orchestration-id.json");
    let env = env_of(&enabled);
    let id = env
        .iter()
        .find(|(k, _)| k == "ACTIONS_ORCHESTRATION_ID")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        id,
        Some("0f4d2bf8-1111-4222-8333-444455556666.build.__default")
    );
    let mut disabled: Value = serde_json::from_str(&fixture("job-orchestration-id.json")).unwrap();
    disabled["variables"]["actions_set_orchestration_id_env_for_actions"]["value"] = json!("false");
    let disabled: AgentJobRequestMessage = serde_json::from_value(disabled).unwrap();
    assert!(
        !env_of(&disabled)
            .iter()
            .any(|(k, _)| k == "ACTIONS_ORCHESTRATION_ID")
    );
}
