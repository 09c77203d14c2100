//! The step-handler dispatch on the null VM (`uses:` steps never reach the guest; the script
//! step after them runs on the null VM, which runs nothing and exits 0).

use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::image::{Image, ImageManifest};
use crate::job::plan::tests::{facts, sample_message};
use crate::protocol::step::JobStep;
use crate::vm::null::NullHypervisor;
use crate::vm::{Hypervisor, LaunchSource, NetworkPolicy, VmSpec};

/// A step named `name` with `reference`, always run.
fn step(name: &str, reference: Json) -> Json {
    json!({"type": "action", "id": Uuid::new_v4(), "name": name, "contextName": name,
           "condition": "always()", "reference": reference,
           "inputs": {"type": 2, "map": [{"Key": "script", "Value": "echo hi"}]}})
}

/// Runs `steps` on a null VM: the outcome and the log lines of each step by context name.
async fn run(steps: Vec<Json>) -> (JobOutcome, impl Fn(&str) -> Vec<String>) {
    let mut message = sample_message();
    message.steps = steps
        .into_iter()
        .map(|s| serde_json::from_value::<JobStep>(s).unwrap())
        .collect();
    let plan = JobPlan::new(&message, &facts()).unwrap();
    let spec = VmSpec {
        name: "vm-test".into(),
        job: None,
        source: LaunchSource::ColdBoot,
        image: Image {
            dir: "/img".into(),
            manifest: ImageManifest::default(),
        },
        cpus: 1,
        memory_mib: 256,
        disk_gib: None,
        network: NetworkPolicy::None,
        boot_timeout: Duration::from_secs(1),
        console_log: None,
    };
    let vm = NullHypervisor::default().launch(spec).await.unwrap();
    let (tx, mut rx) = mpsc::channel(4096);
    let outcome = run_steps(&vm, &plan, tx, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    let ids: Vec<(String, Uuid)> = outcome
        .steps
        .iter()
        .map(|s| (s.context_name.clone(), s.id))
        .collect();
    let lines = move |name: &str| {
        let id = ids.iter().find(|(n, _)| n == name).map(|(_, id)| *id);
        events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log { step_id, line } if *step_id == id => Some(line.clone()),
                _ => None,
            })
            .collect()
    };
    (outcome, lines)
}

// Moved from tests/job_runtime.rs (the `uses:` refusal now comes from the action handler).
#[tokio::test]
async fn an_unrunnable_step_fails_with_its_reason() {
    let (outcome, lines) = run(vec![step(
        "uses",
        json!({"type": "repository", "name": "actions/checkout", "ref": "v4"}),
    )])
    .await;
    assert_eq!(outcome.result, TaskResult::Failed);
    let lines = lines("uses");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("##[error]only run: steps are supported"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn every_kind_of_uses_step_goes_to_the_action_handler_and_is_refused() {
    let (outcome, lines) = run(vec![
        step(
            "local",
            json!({"type": "repository", "repositoryType": "self", "path": "./.github/hello"}),
        ),
        step(
            "docker",
            json!({"type": "containerRegistry", "image": "alpine:3.20"}),
        ),
        step(
            "nested",
            json!({"type": "repository", "repositoryType": "GitHub", "name": "o/r",
                   "ref": "v1", "path": "sub"}),
        ),
        step("odd", json!({"type": "somethingNew"})),
        step("after", json!({"type": "script"})),
    ])
    .await;
    assert_eq!(outcome.result, TaskResult::Failed);
    for (name, what) in [
        ("local", "./.github/hello"),
        ("docker", "docker://alpine:3.20"),
        ("nested", "o/r/sub@v1"),
        ("odd", "an unknown action"),
    ] {
        assert_eq!(
            lines(name),
            [format!(
                "##[error]only run: steps are supported; this step uses {what}"
            )],
            "{name}"
        );
        let step = outcome.steps.iter().find(|s| s.context_name == name);
        assert_eq!(
            step.map(|s| s.conclusion),
            Some(TaskResult::Failed),
            "{name}"
        );
    }
    let after = outcome.steps.iter().find(|s| s.context_name == "after");
    assert_eq!(
        after.map(|s| s.conclusion),
        Some(TaskResult::Succeeded),
        "the script handler still runs the next step"
    );
    assert!(
        lines("after").iter().any(|l| l.contains("null VM:")),
        "{:?}",
        lines("after")
    );
}
