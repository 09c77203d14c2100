//! One script step through the whole output pipeline (exec → line assembly → workflow commands
//! → masking → events, then file commands), on the local test guest (host processes).

mod support;
use support::local_vm;

use std::time::{Duration, Instant};

use ghrunner_vm::job::commands::CommandConfig;
use ghrunner_vm::job::events::{AnnotationLevel, JobEvent};
use ghrunner_vm::job::mask::SecretMasker;
use ghrunner_vm::job::stepexec::{StepExec, StepExecOutcome, execute_step, file_command_paths};
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::vm::GuestCommand;
use local_vm::LocalVm;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The guest work directory the steps see (mapped to a temp dir by the local VM).
const WORK: &str = "/guest/work";

fn vm() -> LocalVm {
    let vm = LocalVm::new(WORK).expect("local vm");
    std::fs::create_dir_all(vm.host_dir().join("_temp/_runner_file_commands")).unwrap();
    vm
}

fn step(script: &str) -> StepExec {
    let files = file_command_paths(&format!("{WORK}/_temp/_runner_file_commands"));
    let script_path = format!("{WORK}/_temp/{}.sh", Uuid::new_v4());
    let env = files
        .iter()
        .map(|(kind, path)| (kind.env_var().to_owned(), path.clone()))
        .collect();
    StepExec {
        step_id: Uuid::new_v4(),
        display_name: "Run test".into(),
        command: GuestCommand {
            argv: ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail"]
                .iter()
                .map(|s| s.to_string())
                .chain([script_path.clone()])
                .collect(),
            env,
            cwd: None,
            stdin: None,
        },
        script_path,
        script: script.to_owned(),
        files,
        timeout: None,
        keep_running_on_cancel: false,
        commands: CommandConfig {
            enhanced_annotations: true,
            ..CommandConfig::default()
        },
    }
}

struct Run {
    outcome: StepExecOutcome,
    events: Vec<JobEvent>,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log { line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }
}

async fn run_with(
    vm: &LocalVm,
    step: StepExec,
    masker: &mut SecretMasker,
    cancel: &CancellationToken,
) -> Run {
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = execute_step(vm, step, masker, &tx, cancel).await;
    drop(tx);
    Run {
        outcome,
        events: collector.await.unwrap(),
    }
}

async fn run(step: StepExec) -> Run {
    run_with(
        &vm(),
        step,
        &mut SecretMasker::new(),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn output_env_path_and_state_files_are_collected() {
    let r = run(step(
        r#"echo "greeting=hello" >> "$GITHUB_OUTPUT"
{ echo 'multi<<EOF'; echo 'line 1'; echo 'line 2'; echo 'EOF'; } >> "$GITHUB_OUTPUT"
echo "FOO=bar" >> "$GITHUB_ENV"
echo "NODE_OPTIONS=--require evil.js" >> "$GITHUB_ENV"
echo "/opt/tools/bin" >> "$GITHUB_PATH"
echo "s=1" >> "$GITHUB_STATE"
"#,
    ))
    .await;
    assert_eq!(r.outcome.task_result(), TaskResult::Succeeded);
    assert_eq!(
        r.outcome.outputs,
        [
            ("greeting".into(), "hello".into()),
            ("multi".into(), "line 1\nline 2".into())
        ]
    );
    assert_eq!(r.outcome.env, [("FOO".into(), "bar".into())]);
    assert_eq!(r.outcome.path, ["/opt/tools/bin"]);
    assert_eq!(r.outcome.state, [("s".into(), "1".into())]);
    assert!(r.lines().contains(
        &"##[error]Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command."
    ));
}

#[tokio::test]
async fn malformed_output_file_fails_the_step() {
    let r = run(step(r#"echo "just-a-name" >> "$GITHUB_OUTPUT""#)).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Failed);
    let lines = r.lines();
    assert!(lines.contains(&"##[error]Unable to process file command 'output' successfully."));
    assert!(lines.contains(&"##[error]Invalid format 'just-a-name'"));
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_official_message() {
    let r = run(step("echo before\nexit 3\n")).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Failed);
    assert_eq!(
        r.lines(),
        ["before", "##[error]Process completed with exit code 3."]
    );
    let JobEvent::Annotation { annotation, .. } = r.events.last().unwrap() else {
        panic!("no annotation: {:?}", r.events);
    };
    assert_eq!(annotation.level, AnnotationLevel::Error);
}

#[tokio::test]
async fn workflow_commands_on_stdout_and_stderr() {
    let r = run(step(
        r#"echo "::add-mask::hush-hush-value"
echo "value is hush-hush-value"
echo "::warning file=x.rs,line=2::careful" >&2
echo "::group::G"
echo "::endgroup::"
echo "::set-output name=old::style"
echo "::unknown::stays"
"#,
    ))
    .await;
    assert_eq!(r.outcome.task_result(), TaskResult::Succeeded);
    // stdout and stderr are separate pipes: only the order within each is defined.
    let mut lines = r.lines();
    let warning = lines.iter().position(|l| *l == "##[warning]careful");
    assert!(warning.is_some(), "{lines:?}");
    lines.remove(warning.unwrap());
    assert_eq!(
        lines,
        [
            "value is ***",
            "##[group]G",
            "##[endgroup]",
            "::unknown::stays"
        ]
    );
    assert_eq!(r.outcome.outputs, [("old".into(), "style".into())]);
    assert_eq!(r.outcome.annotations[0].line, Some(2));
}

#[tokio::test]
async fn step_summary_is_sent_masked() {
    let mut masker = SecretMasker::new();
    masker.add_value("topsecret");
    let r = run_with(
        &vm(),
        step(r#"printf '# Title\nkey: topsecret\n' >> "$GITHUB_STEP_SUMMARY""#),
        &mut masker,
        &CancellationToken::new(),
    )
    .await;
    let summary = r.events.iter().find_map(|e| match e {
        JobEvent::StepSummary { markdown, .. } => Some(markdown.as_str()),
        _ => None,
    });
    assert_eq!(summary, Some("# Title\nkey: ***\n"));
}

#[tokio::test]
async fn secrets_are_masked_plain_in_json_and_split_across_chunks() {
    let secret = "s3cr3t-P@ss";
    let mut masker = SecretMasker::new();
    masker.add_value(secret);
    let mut vm = vm();
    // Every read is cut into 3-byte chunks, so the secret always straddles chunks.
    vm.max_chunk = Some(3);
    let script = format!(
        r#"echo "plain {secret} end"
printf '{{"k":"%s"}}\n' '{secret}'
printf 's3cr'; sleep 0.2; printf '3t-P@ss tail\n'
printf '%s' '{secret}' | base64
"#
    );
    let r = run_with(&vm, step(&script), &mut masker, &CancellationToken::new()).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Succeeded);
    assert_eq!(
        r.lines(),
        ["plain *** end", r#"{"k":"***"}"#, "*** tail", "***"]
    );
    for line in r.lines() {
        assert!(!line.contains(secret), "{line}");
    }
}

#[tokio::test]
async fn multi_line_secret_is_masked_line_by_line() {
    let mut masker = SecretMasker::new();
    masker.add_value("first-line-secret\nsecond-line-secret\n");
    let r = run_with(
        &vm(),
        step("echo 'a first-line-secret b'\necho 'second-line-secret'\necho fine\n"),
        &mut masker,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(r.lines(), ["a *** b", "***", "fine"]);
}

#[tokio::test]
async fn every_line_of_a_long_output_arrives() {
    const LINES: usize = 100_000;
    let started = Instant::now();
    let r = run(step(&format!("seq 1 {LINES}\n"))).await;
    let lines = r.lines();
    assert_eq!(lines.len(), LINES);
    assert_eq!(lines[0], "1");
    assert_eq!(lines[LINES - 1], LINES.to_string());
    println!(
        "{LINES} lines through the pipeline in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn timeout_fails_the_step_with_the_official_message() {
    let mut s = step("echo started\nsleep 30\necho never\n");
    s.timeout = Some((0.05, Duration::from_secs_f64(0.05 * 60.0)));
    let r = run(s).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Failed);
    assert_eq!(
        r.lines(),
        [
            "started",
            "##[error]The action 'Run test' has timed out after 0.05 minutes."
        ]
    );
}

#[tokio::test]
async fn job_cancellation_cancels_the_running_step() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let s = step("echo started\nsleep 30\necho never\n");
    let r = run_with(&vm(), s, &mut SecretMasker::new(), &cancel).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Canceled);
    assert_eq!(r.lines(), ["started"]);
}

#[tokio::test]
async fn a_step_that_keeps_running_on_cancel_completes() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let mut s = step("sleep 0.3\necho done\n");
    s.keep_running_on_cancel = true;
    let r = run_with(&vm(), s, &mut SecretMasker::new(), &cancel).await;
    assert_eq!(r.outcome.task_result(), TaskResult::Succeeded);
    assert_eq!(r.lines(), ["done"]);
}
