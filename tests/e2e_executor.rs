//! End to end in a real VM: the demo workflow (examples/hello.yml) compiled by the local
//! service's compiler → `VmJobExecutor<Qemu>` → the tiny image booted under QEMU (TCG) →
//! steps over SSH → report events → outcome. Needs qemu-system-x86, qemu-utils, passt and what
//! the tiny recipe needs (tests/install-deps.sh installs them); fails naming what is missing.

mod support;
use support::reports;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ghrunner_vm::job::events::JobEvent;
use ghrunner_vm::job::executor::{
    ExecutorConfig, ImageCatalog, RunnerIdentity, VmDefaults, VmJobExecutor,
};
use ghrunner_vm::job::lifecycle::JobExecutor;
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use ghrunner_vm::vm::NetworkPolicy;
use ghrunner_vm::vm::qemu::accel::AccelMode;
use ghrunner_vm::vm::qemu::{Qemu, QemuConfig};
use ghrunner_vm::workflow::{WorkflowJob, compile_workflow_job};
use reports::CollectingReports;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "e2e-Demo-Secret-4711";
const HELLO: &str = include_str!("../examples/hello.yml");

fn message() -> AgentJobRequestMessage {
    let secrets = vec![("DEMO_TOKEN".to_owned(), SECRET.to_owned())];
    let workflow = WorkflowJob {
        yaml: HELLO,
        file_name: ".github/workflows/hello.yml",
        job: Some("hello"),
        workflow_name: "hello",
        secrets: &secrets,
    };
    // Reports go to a collector: the service URLs are never contacted.
    let compiled = compile_workflow_job(&workflow, "http://127.0.0.1:1", "http://127.0.0.1:1/", 1)
        .expect("the demo workflow compiles");
    compiled.message
}

fn qemu_processes_of(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("qemu-system") && text.contains(&needle) {
            found.push(text);
        }
    }
    found
}

/// The production executor on QEMU (TCG: KVM hangs on hosts with broken nested
/// virtualisation) with the tiny image for the label `tiny`, small VMs without a network, and
/// its runner directory `runner_dir`; with the reports it collects.
fn tiny_executor(runner_dir: &Path) -> (VmJobExecutor<Qemu, CollectingReports>, CollectingReports) {
    let image = support::image::tiny_image();
    let mut qemu_config = QemuConfig::new(runner_dir);
    qemu_config.accel = AccelMode::Tcg;
    let qemu = Qemu::new(qemu_config).expect("qemu backend");
    let reports = CollectingReports::default();
    let config = ExecutorConfig {
        runner: RunnerIdentity {
            name: "e2e-runner".into(),
            labels: vec!["self-hosted".into(), "tiny".into()],
        },
        catalog: ImageCatalog {
            images: [("tiny".to_owned(), image)].into(),
            default_image: None,
            config_path: runner_dir.join("config.yaml"),
        },
        vm: VmDefaults {
            cpus: 1,
            memory_mib: 256,
            network: NetworkPolicy::None,
            boot_timeout: Duration::from_secs(120),
        },
        ..ExecutorConfig::default()
    };
    let executor = VmJobExecutor::new(Arc::new(qemu), reports.clone(), config);
    (executor, reports)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_workflow_runs_in_a_real_vm_and_leaves_nothing_behind() {
    let runner_dir = tempfile::tempdir().expect("runner dir");
    let (executor, reports) = tiny_executor(runner_dir.path());

    let outcome = executor
        .execute(message(), CancellationToken::new())
        .await
        .expect("the executor runs the job");
    let events = reports.take();
    let all: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    let log = all.join("\n");

    assert_eq!(outcome.result, TaskResult::Succeeded, "job log:\n{log}");
    let steps: Vec<(&str, Option<TaskResult>)> = outcome
        .step_results
        .iter()
        .map(|s| (s.name.as_str(), s.conclusion))
        .collect();
    assert_eq!(
        steps,
        [
            ("Greet from the guest", Some(TaskResult::Succeeded)),
            ("Compute an answer", Some(TaskResult::Succeeded)),
            ("Use the secret", Some(TaskResult::Succeeded)),
            ("Only on failure", Some(TaskResult::Skipped)),
        ],
        "job log:\n{log}"
    );
    assert_eq!(outcome.outputs["answer"].value, "42");
    assert!(log.contains("Hello, world from Linux"), "{log}");
    assert!(
        log.contains("the secret is *** (masked in the log)"),
        "{log}"
    );
    assert!(log.contains("stage is computed, answer is 42"), "{log}");
    assert!(
        !log.contains(SECRET),
        "the secret leaked into the log:\n{log}"
    );
    for event in &events {
        if let JobEvent::Annotation { annotation, .. } = event {
            assert!(!annotation.message.contains(SECRET));
        }
    }
    let processes = qemu_processes_of(runner_dir.path());
    assert!(processes.is_empty(), "QEMU left running: {processes:?}");
    let vms = runner_dir.path().join("vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left under {}: {left:?}",
        vms.display()
    );
}

/// A QEMU that stops making progress (SIGSTOP) fails the job instead of hanging it: the running
/// step ends with an error naming the stopped VM, the job completes as failed, and the VM (the
/// stopped QEMU included) is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_qemu_fails_the_job_and_the_vm_is_destroyed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ghrunner_vm=debug")
        .with_test_writer()
        .try_init();
    let runner_dir = tempfile::tempdir().expect("runner dir");
    let (executor, reports) = tiny_executor(runner_dir.path());
    let executor = Arc::new(executor);
    let workflow = WorkflowJob {
        yaml: "on: push\njobs:\n  hang:\n    runs-on: [self-hosted, tiny]\n    steps:\n      - run: echo started; sleep 600\n",
        file_name: ".github/workflows/hang.yml",
        job: None,
        workflow_name: "hang",
        secrets: &[],
    };
    let compiled = compile_workflow_job(&workflow, "http://127.0.0.1:1", "http://127.0.0.1:1/", 1)
        .expect("compiles");
    let message = compiled.message;
    let job = {
        let executor = Arc::clone(&executor);
        tokio::spawn(async move { executor.execute(message, CancellationToken::new()).await })
    };
    let qemu_pid = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            if let Some(pid) = qemu_pid_of(runner_dir.path()) {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("QEMU starts");
    // Let the step start before the VM is frozen.
    tokio::time::sleep(Duration::from_secs(20)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu_pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(120), job)
        .await
        .expect("the job ends instead of hanging")
        .unwrap()
        .expect("the executor reports the job");
    assert_eq!(outcome.result, TaskResult::Failed);
    let log: Vec<String> = reports
        .take()
        .into_iter()
        .filter_map(|e| match e {
            JobEvent::Log { line, .. } => Some(line),
            _ => None,
        })
        .collect();
    let log = log.join("\n");
    assert!(log.contains("has been stopped"), "job log:\n{log}");
    assert!(
        qemu_processes_of(runner_dir.path()).is_empty(),
        "the stopped QEMU was killed"
    );
    let vms = runner_dir.path().join("vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left under {}: {left:?}",
        vms.display()
    );
}

/// The pid of the QEMU process whose command line names `dir`.
fn qemu_pid_of(dir: &Path) -> Option<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // QEMU itself, not its guard shell (whose arguments name QEMU too).
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            (String::from_utf8_lossy(argv0).contains("qemu-system") && text.contains(&needle))
                .then_some(pid)
        })
}
