//! The step runtime end to end on the local test guest: job messages (constructed here, values
//! fake) → `JobPlan` → `run_steps` → events and outcome.

mod support;
use support::local_vm;

use std::time::Duration;

use ghrunner_vm::image::{Image, ImageManifest};
use ghrunner_vm::job::events::{AnnotationLevel, JobEvent};
use ghrunner_vm::job::plan::{JobPlan, RunnerFacts};
use ghrunner_vm::job::runtime::{JobOutcome, run_steps};
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use ghrunner_vm::vm::{Hypervisor, LaunchSource, NetworkPolicy, Vm, VmSpec};
use local_vm::{LocalHypervisor, LocalVm};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Guest work folder (mapped to a temp dir by the local VM).
const WORK: &str = "/guest/work";

const SECRET: &str = "hunter2-Secret!";
const MULTI_LINE_SECRET: &str = "first-secret-line\nsecond-secret-line";

fn expr(text: &str) -> Json {
    json!({"type": 3, "expr": text})
}

fn mapping(pairs: &[(&str, Json)]) -> Json {
    json!({"type": 2, "map": pairs.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
}

/// A script step; `extra` adds or overrides fields (condition, continueOnError, …).
fn script_step(name: &str, script: Json, extra: Json) -> Json {
    let mut step = json!({
        "type": "action",
        "id": Uuid::new_v4(),
        "name": name,
        "contextName": name,
        "reference": {"type": "script"},
        "inputs": mapping(&[("script", script)]),
    });
    if let (Json::Object(step), Json::Object(extra)) = (&mut step, extra) {
        step.extend(extra);
    }
    step
}

fn message(steps: Vec<Json>, job_outputs: Option<Json>) -> AgentJobRequestMessage {
    message_with(steps, job_outputs, json!({}))
}

/// A job message; `variables` adds job variables.
fn message_with(
    steps: Vec<Json>,
    job_outputs: Option<Json>,
    variables: Json,
) -> AgentJobRequestMessage {
    let mut message = json!({
        "messageType": "PipelineAgentJobRequest",
        "plan": {"planId": Uuid::new_v4(), "planType": "actions", "version": 1},
        "timeline": {"id": Uuid::new_v4()},
        "jobId": Uuid::new_v4(),
        "jobDisplayName": "test", "jobName": "test", "requestId": 1,
        "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "http://127.0.0.1:1/",
            "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "job-token-value"}}}]},
        "variables": {
            "MY_SECRET": {"value": SECRET, "isSecret": true},
            "MULTI": {"value": MULTI_LINE_SECRET, "isSecret": true},
            "system.github.job": {"value": "test"}
        },
        "contextData": {
            "github": {"t": 2, "d": [{"k": "repository", "v": "octo/hello"}, {"k": "sha", "v": "abc"}]}
        },
        "environmentVariables": [mapping(&[("JOB_LEVEL", json!("from-job"))])],
        "steps": steps,
    });
    if let Some(outputs) = job_outputs {
        message["jobOutputs"] = outputs;
    }
    if let (Some(vars), Json::Object(extra)) = (message["variables"].as_object_mut(), variables) {
        vars.extend(extra);
    }
    serde_json::from_value(message).expect("message decodes")
}

fn facts() -> RunnerFacts {
    RunnerFacts {
        runner_name: "local".into(),
        os: "Linux".into(),
        arch: "X64".into(),
        work_dir: WORK.into(),
        has_bash: true,
        guest: None,
    }
}

struct Run {
    outcome: JobOutcome,
    events: Vec<JobEvent>,
}

impl Run {
    /// Log lines of the step with this context name.
    fn lines(&self, step: &str) -> Vec<&str> {
        let id = self
            .outcome
            .steps
            .iter()
            .find(|s| s.context_name == step)
            .map(|s| s.id);
        self.events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log { step_id, line } if *step_id == id => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    fn step(&self, name: &str) -> (TaskResult, TaskResult) {
        let s = self
            .outcome
            .steps
            .iter()
            .find(|s| s.context_name == name)
            .unwrap_or_else(|| panic!("no step {name}"));
        (s.outcome, s.conclusion)
    }
}

async fn run_on(vm: &LocalVm, message: AgentJobRequestMessage, cancel: CancellationToken) -> Run {
    let plan = JobPlan::new(&message, &facts()).expect("plans");
    let (tx, mut rx) = mpsc::channel(4096);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = run_steps(vm, &plan, tx, cancel).await;
    Run {
        outcome,
        events: collector.await.unwrap(),
    }
}

async fn run(message: AgentJobRequestMessage) -> Run {
    run_on(
        &LocalVm::new(WORK).unwrap(),
        message,
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn github_output_becomes_a_job_output() {
    let r = run(message(
        vec![script_step(
            "produce",
            json!("echo \"answer=42\" >> \"$GITHUB_OUTPUT\""),
            json!({}),
        )],
        Some(mapping(&[
            ("answer", expr("steps.produce.outputs.answer")),
            ("missing", expr("steps.produce.outputs.nope")),
        ])),
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded);
    assert_eq!(r.outcome.outputs, [("answer".into(), "42".into())]);
    let Some(JobEvent::JobCompleted {
        result, outputs, ..
    }) = r.events.last()
    else {
        panic!("last event is not JobCompleted: {:?}", r.events.last());
    };
    assert_eq!(*result, TaskResult::Succeeded);
    assert_eq!(outputs, &r.outcome.outputs);
    assert!(matches!(r.events[0], JobEvent::JobStarted { .. }));
}

#[tokio::test]
async fn github_env_and_path_reach_later_steps() {
    let r = run(message(
        vec![
            script_step(
                "set",
                json!("echo FOO=bar >> \"$GITHUB_ENV\"\necho /opt/extra-tools >> \"$GITHUB_PATH\""),
                json!({}),
            ),
            script_step(
                "use",
                json!("echo \"FOO=$FOO JOB=$JOB_LEVEL STEP=$STEP_LEVEL\"\necho \"PATH=$PATH\""),
                json!({
                    "condition": "success() && env.FOO == 'bar'",
                    "environment": mapping(&[("STEP_LEVEL", expr("format('{0}-step', env.FOO)"))]),
                }),
            ),
        ],
        None,
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded);
    let lines = r.lines("use");
    assert_eq!(lines[0], "FOO=bar JOB=from-job STEP=bar-step");
    assert!(
        lines[1].starts_with("PATH=/opt/extra-tools:"),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn failure_and_always_steps_run_after_a_failure() {
    let r = run(message(
        vec![
            script_step("fails", json!("echo failing\nexit 2"), json!({})),
            script_step("normal", json!("echo should not run"), json!({})),
            script_step(
                "on_failure",
                expr("format('echo previous={0}', steps.fails.outcome)"),
                json!({"condition": "failure()"}),
            ),
            script_step(
                "always",
                json!("echo always ran"),
                json!({"condition": "always()"}),
            ),
        ],
        None,
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Failed);
    assert_eq!(r.step("fails"), (TaskResult::Failed, TaskResult::Failed));
    assert_eq!(r.step("normal"), (TaskResult::Skipped, TaskResult::Skipped));
    assert_eq!(r.step("on_failure").1, TaskResult::Succeeded);
    assert_eq!(r.step("always").1, TaskResult::Succeeded);
    assert_eq!(
        r.lines("fails"),
        ["failing", "##[error]Process completed with exit code 2."]
    );
    assert!(r.lines("normal").is_empty());
    assert_eq!(r.lines("on_failure"), ["previous=failure"]);
    assert_eq!(r.lines("always"), ["always ran"]);
    // Skipped steps still get a record: started, then completed as skipped.
    let normal = r.outcome.steps[1].id;
    let completed: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            JobEvent::StepCompleted {
                step_id, result, ..
            } if *step_id == normal => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(completed, [TaskResult::Skipped]);
}

#[tokio::test]
async fn continue_on_error_keeps_the_job_green() {
    let r = run(message(
        vec![
            script_step("flaky", json!("exit 1"), json!({"continueOnError": true})),
            script_step(
                "after",
                expr("format('echo {0} {1}', steps.flaky.outcome, steps.flaky.conclusion)"),
                json!({}),
            ),
        ],
        None,
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded);
    assert_eq!(r.step("flaky"), (TaskResult::Failed, TaskResult::Succeeded));
    assert_eq!(r.lines("after"), ["failure success"]);
}

#[tokio::test]
async fn timeout_minutes_fails_the_step_and_later_always_steps_run() {
    let r = run(message(
        vec![
            script_step(
                "slow",
                json!("echo start\nsleep 30\necho never"),
                json!({"timeoutInMinutes": 0.05, "displayName": "Slow step"}),
            ),
            script_step(
                "cleanup",
                json!("echo cleanup"),
                json!({"condition": "always()"}),
            ),
        ],
        None,
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Failed);
    assert_eq!(r.step("slow").1, TaskResult::Failed);
    assert_eq!(
        r.lines("slow"),
        [
            "start",
            "##[error]The action 'Slow step' has timed out after 0.05 minutes."
        ]
    );
    assert_eq!(r.lines("cleanup"), ["cleanup"]);
}

#[tokio::test]
async fn cancellation_mid_step_cancels_it_and_runs_only_always_steps() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        trigger.cancel();
    });
    let vm = LocalVm::new(WORK).unwrap();
    let r = run_on(
        &vm,
        message(
            vec![
                script_step("long", json!("echo begin\nsleep 30\necho never"), json!({})),
                script_step("next", json!("echo next"), json!({})),
                script_step(
                    "always",
                    json!("echo always"),
                    json!({"condition": "always()"}),
                ),
            ],
            None,
        ),
        cancel,
    )
    .await;
    assert_eq!(r.outcome.result, TaskResult::Canceled);
    assert_eq!(r.step("long").1, TaskResult::Canceled);
    assert_eq!(r.lines("long"), ["begin"]);
    assert_eq!(r.step("next").1, TaskResult::Skipped);
    assert_eq!(r.lines("always"), ["always"]);
}

#[tokio::test]
async fn secrets_are_masked_plain_in_json_split_and_line_by_line() {
    let mut vm = LocalVm::new(WORK).unwrap();
    // Output arrives in 2-byte chunks, so every secret is split across chunks.
    vm.max_chunk = Some(2);
    let script = "echo \"plain: $S\"\n\
        printf '{\"k\":\"%s\"}\\n' \"$S\"\n\
        printf 'hunter2-'; sleep 0.2; printf 'Secret! tail\\n'\n\
        echo \"$M\"\n\
        echo \"one: first-secret-line\"\n";
    let r = run_on(
        &vm,
        message(
            vec![script_step(
                "leak",
                json!(script),
                json!({"environment": mapping(&[
                    ("S", expr("secrets.MY_SECRET")),
                    ("M", expr("secrets.MULTI")),
                ])}),
            )],
            Some(mapping(&[
                ("leaky", expr("secrets.MY_SECRET")),
                ("fine", json!("public")),
            ])),
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded);
    assert_eq!(
        r.lines("leak"),
        [
            "plain: ***",
            r#"{"k":"***"}"#,
            "*** tail",
            "***",
            "***",
            "one: ***"
        ]
    );
    for event in &r.events {
        let text = format!("{event:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("first-secret-line"), "{text}");
    }
    // The job output that would reveal the secret is dropped with a warning.
    assert_eq!(r.outcome.outputs, [("fine".into(), "public".into())]);
    let warning = r
        .outcome
        .annotations
        .iter()
        .find(|a| a.level == AnnotationLevel::Warning)
        .expect("warning");
    assert_eq!(
        warning.message,
        "Skip output 'leaky' since it may contain secret."
    );
}

#[tokio::test]
async fn every_line_of_a_100k_line_step_arrives_as_an_event() {
    const LINES: usize = 100_000;
    let r = run(message(
        vec![script_step(
            "many",
            json!(format!("seq 1 {LINES}")),
            json!({}),
        )],
        None,
    ))
    .await;
    let lines = r.lines("many");
    assert_eq!(lines.len(), LINES);
    assert_eq!(lines[LINES - 1], LINES.to_string());
}

#[tokio::test]
async fn runs_on_a_vm_launched_through_the_hypervisor_trait() {
    let image = Image {
        dir: std::env::temp_dir(),
        manifest: ImageManifest {
            name: "local".into(),
            arch: "x86_64".into(),
            user: "runner".into(),
            shell: "bash".into(),
            work_dir: WORK.into(),
            ..ImageManifest::default()
        },
    };
    let spec = VmSpec {
        name: "vm-1".into(),
        job: Some("job-1".into()),
        source: LaunchSource::ColdBoot,
        image,
        cpus: 1,
        memory_mib: 256,
        disk_gib: None,
        network: NetworkPolicy::None,
        boot_timeout: Duration::from_secs(5),
        console_log: None,
    };
    let vm = LocalHypervisor::default()
        .launch(spec)
        .await
        .expect("launch");
    let host_dir = vm.host_dir().to_path_buf();
    let r = run_on(
        &vm,
        message(
            vec![script_step(
                "where",
                json!("echo \"$GITHUB_WORKSPACE\"; test -f \"$GITHUB_EVENT_PATH\" && echo event"),
                json!({}),
            )],
            None,
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded);
    let workspace = host_dir.join("hello/hello");
    assert_eq!(r.lines("where"), [workspace.to_str().unwrap(), "event"]);
    vm.destroy().await.expect("destroy");
    assert!(!host_dir.exists(), "the local guest dir is removed");
}

#[tokio::test]
async fn step_debug_shows_debug_lines_and_echoes_commands() {
    let r = run(message_with(
        vec![script_step(
            "dbg",
            json!("echo '::debug::looking closely'\necho '::set-output name=a::b'\necho '::add-mask::masked-value'"),
            json!({}),
        )],
        None,
        json!({"ACTIONS_STEP_DEBUG": {"value": "true"}}),
    ))
    .await;
    assert_eq!(
        r.lines("dbg"),
        [
            "##[debug]looking closely",
            "::set-output name=a::b",
            "::add-mask::***"
        ]
    );
}

#[tokio::test]
async fn shell_working_directory_and_stdin_inputs() {
    let mut step = script_step("in_sub", json!("pwd\ncat"), json!({}));
    step["inputs"] = mapping(&[
        ("script", json!("pwd\ncat")),
        ("shell", json!("sh")),
        ("workingDirectory", json!("sub")),
        ("standardInInput", json!("piped text")),
    ]);
    let vm = LocalVm::new(WORK).unwrap();
    let r = run_on(
        &vm,
        message(
            vec![
                script_step("mk", json!("mkdir -p \"$GITHUB_WORKSPACE/sub\""), json!({})),
                step,
            ],
            None,
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.outcome.result, TaskResult::Succeeded, "{:?}", r.events);
    let sub = vm.host_dir().join("hello/hello/sub");
    assert_eq!(r.lines("in_sub"), [sub.to_str().unwrap(), "piped text"]);
}

#[tokio::test]
async fn set_env_and_add_path_commands_work_only_when_opted_in() {
    let r = run(message(
        vec![
            script_step(
                "refused",
                json!("echo '::set-env name=EARLY::no'"),
                json!({"continueOnError": true}),
            ),
            script_step(
                "allowed",
                json!("echo '::set-env name=LATE::yes'\necho '::add-path::/opt/old-style'"),
                json!({"environment": mapping(&[("ACTIONS_ALLOW_UNSECURE_COMMANDS", json!("true"))])}),
            ),
            script_step("check", json!("echo \"EARLY=${EARLY:-unset} LATE=$LATE\"\necho \"$PATH\""), json!({})),
        ],
        None,
    ))
    .await;
    assert_eq!(
        r.step("refused"),
        (TaskResult::Failed, TaskResult::Succeeded)
    );
    let refused = r.lines("refused");
    assert_eq!(
        refused[0],
        "##[error]Unable to process command '::set-env name=EARLY::no' successfully."
    );
    assert!(
        refused[1].contains("The `set-env` command is disabled"),
        "{}",
        refused[1]
    );
    assert_eq!(r.step("allowed").1, TaskResult::Succeeded);
    let check = r.lines("check");
    assert_eq!(check[0], "EARLY=unset LATE=yes");
    assert!(check[1].starts_with("/opt/old-style:"), "{}", check[1]);
}

#[tokio::test]
async fn a_condition_that_cannot_be_evaluated_fails_the_step() {
    let r = run(message(
        vec![
            script_step(
                "bad_if",
                json!("echo never"),
                json!({"condition": "success() && fromJSON('{')"}),
            ),
            script_step(
                "after",
                json!("echo after"),
                json!({"condition": "always()"}),
            ),
        ],
        None,
    ))
    .await;
    assert_eq!(r.outcome.result, TaskResult::Failed);
    assert_eq!(r.step("bad_if").1, TaskResult::Failed);
    let lines = r.lines("bad_if");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("##[error]"), "{lines:?}");
    assert_eq!(r.lines("after"), ["after"]);
}
