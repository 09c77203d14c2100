//! Workflow YAML → the local service's compiler → `JobPlan` → `run_steps` on the local test
//! guest: the whole path a job takes, minus the network and the VM.

mod support;
use support::local_vm;

use std::path::PathBuf;

use ghrunner_vm::job::events::{AnnotationLevel, JobEvent};
use ghrunner_vm::job::plan::{JobPlan, RunnerFacts};
use ghrunner_vm::job::runtime::{JobOutcome, run_steps};
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::workflow::{CompileRequest, JobIds, compile_job};
use local_vm::LocalVm;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WORK: &str = "/guest/work";
const SECRET: &str = "demo-s3cret-value";

async fn run_workflow(yaml: &str, job: &str) -> (JobOutcome, Vec<JobEvent>) {
    let github = json!({
        "repository": "octo-org/hello", "repository_owner": "octo-org", "run_id": "1",
        "run_number": "1", "sha": "0000000000000000000000000000000000000001",
        "ref": "refs/heads/main", "event_name": "push", "workflow": "hello",
        "event": {"ref": "refs/heads/main"}
    });
    let secrets = vec![("DEMO_TOKEN".to_owned(), SECRET.to_owned())];
    let compiled = compile_job(&CompileRequest {
        yaml,
        file_name: ".github/workflows/test.yml",
        job,
        github: &github,
        secrets: &secrets,
        vars: &[],
        github_token: "ghs_LOCALFAKE_TOKEN",
        service_url: "http://127.0.0.1:1/",
        access_token: "eyJhbGciOiJub25lIn0.eyJsb2NhbCI6dHJ1ZX0.",
        ids: JobIds {
            plan_id: uuid::Uuid::new_v4(),
            timeline_id: uuid::Uuid::new_v4(),
            job_id: uuid::Uuid::new_v4(),
            request_id: 1,
        },
    })
    .unwrap_or_else(|e| panic!("workflow does not compile: {e}"));
    let facts = RunnerFacts {
        runner_name: "local".into(),
        os: "Linux".into(),
        arch: "X64".into(),
        work_dir: WORK.into(),
        has_bash: true,
        guest: None,
    };
    let plan = JobPlan::new(&compiled.message, &facts).expect("plans");
    let vm = LocalVm::new(WORK).unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = run_steps(&vm, &plan, tx, CancellationToken::new()).await;
    (outcome, collector.await.unwrap())
}

fn step_lines<'a>(outcome: &JobOutcome, events: &'a [JobEvent], number: u32) -> Vec<&'a str> {
    let id = outcome
        .steps
        .iter()
        .find(|s| s.number == number)
        .map(|s| s.id);
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Log { step_id, line } if *step_id == id => Some(line.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_demo_workflow_runs_end_to_end() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello.yml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    let (outcome, events) = run_workflow(&yaml, "hello").await;
    assert_eq!(outcome.result, TaskResult::Succeeded, "{events:#?}");
    assert_eq!(outcome.outputs, [("answer".into(), "42".into())]);
    let greet = step_lines(&outcome, &events, 1);
    assert!(greet[0].starts_with("Hello, world from "), "{greet:?}");
    assert_eq!(greet[1], "##[notice]running in a fresh VM");
    let notice = outcome
        .annotations
        .iter()
        .find(|a| a.level == AnnotationLevel::Notice)
        .expect("notice annotation");
    assert_eq!(notice.title.as_deref(), Some("Demo"));
    assert_eq!(
        step_lines(&outcome, &events, 3),
        [
            "the secret is *** (masked in the log)",
            "stage is computed, answer is 42"
        ]
    );
    let last = outcome.steps.last().unwrap();
    assert_eq!(last.conclusion, TaskResult::Skipped);
    for event in &events {
        assert!(!format!("{event:?}").contains(SECRET));
    }
}

#[tokio::test]
async fn conditions_continue_on_error_and_timeouts_from_yaml() {
    let yaml = r#"
on: push
jobs:
  build:
    runs-on: self-hosted
    outputs:
      flaky: ${{ steps.flaky.outcome }}/${{ steps.flaky.conclusion }}
    steps:
      - id: flaky
        run: exit 4
        continue-on-error: true
      - id: gated
        if: steps.flaky.outcome == 'failure'
        run: echo "gated ran"
      - id: slow
        timeout-minutes: 0.05
        run: sleep 30
      - id: skipped
        run: echo "not after a failure"
      - id: report
        if: failure()
        run: echo "slow was ${{ steps.slow.conclusion }}"
"#;
    let (outcome, events) = run_workflow(yaml, "build").await;
    assert_eq!(outcome.result, TaskResult::Failed);
    assert_eq!(
        outcome.outputs,
        [("flaky".into(), "failure/success".into())]
    );
    let conclusions: Vec<_> = outcome.steps.iter().map(|s| s.conclusion).collect();
    assert_eq!(
        conclusions,
        [
            TaskResult::Succeeded,
            TaskResult::Succeeded,
            TaskResult::Failed,
            TaskResult::Skipped,
            TaskResult::Succeeded
        ]
    );
    assert_eq!(step_lines(&outcome, &events, 2), ["gated ran"]);
    assert_eq!(
        step_lines(&outcome, &events, 3),
        ["##[error]The action 'Run sleep 30' has timed out after 0.05 minutes."]
    );
    assert_eq!(step_lines(&outcome, &events, 5), ["slow was failure"]);
}

/// actions/runner 2.336.0 (#4527, `src/Runner.Worker/CreateArtifactsFileCommand.cs`,
/// `ArtifactsListFileCommand.cs`): every step gets `GITHUB_ARTIFACTS` and
/// `GITHUB_ARTIFACTS_LIST`; writes are accepted and ignored (as the official runner does when
/// the feature is off). #4243 (`Handlers/OutputManager.cs`): output cannot forge the runner's
/// composite-action markers.
#[tokio::test]
async fn artifacts_files_exist_and_runner_markers_are_escaped() {
    let yaml = r###"
on: push
jobs:
  build:
    runs-on: self-hosted
    steps:
      - run: |
          test -f "$GITHUB_ARTIFACTS" && test -f "$GITHUB_ARTIFACTS_LIST"
          echo "file://does-not-matter" >> "$GITHUB_ARTIFACTS"
          echo "artifacts=${{ github.artifacts != '' }}"
          echo "##[start-action display=fake;id=x]"
          echo "##[end-action id=x;outcome=success]"
"###;
    let (outcome, events) = run_workflow(yaml, "build").await;
    assert_eq!(outcome.result, TaskResult::Succeeded, "{events:#?}");
    assert_eq!(
        step_lines(&outcome, &events, 1),
        [
            "artifacts=true",
            "##[\\start-action display=fake;id=x]",
            "##[\\end-action id=x;outcome=success]"
        ]
    );
}
