//! The VM job executor through the job lifecycle, on the local test guest: job message →
//! image choice → launch → plan → steps → report events → completion, plus the failure paths
//! (no image, unusable image, boot failure, cancellation) and VM clean-up on every path.

mod support;
use support::local_vm;
use support::reports;
use support::wait;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghrunner_vm::client::backoff::Timings;
use ghrunner_vm::job::budget::VmBudget;
use ghrunner_vm::job::events::JobEvent;
use ghrunner_vm::job::executor::{
    ExecutorConfig, ImageCatalog, RunnerIdentity, VmDefaults, VmJobExecutor,
};
use ghrunner_vm::job::lifecycle::{
    ChannelError, JobChannel, JobControl, JobExecutor as _, JobOutcome, run_job,
};
use ghrunner_vm::metrics::Metrics;
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use ghrunner_vm::vm::{
    ExecOutcome, GuestCommand, Hypervisor, NetworkPolicy, OutputChunk, Vm, VmError, VmSpec,
};
use local_vm::{LocalHypervisor, LocalVm};
use reports::CollectingReports;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wait::eventually;

const SECRET: &str = "demo-Secret-value-123";
const WORK: &str = "/guest/work";

// ---- a hypervisor that counts its VMs and can fail boots -------------------------------------

#[derive(Default)]
struct Counters {
    launches: AtomicUsize,
    live: AtomicUsize,
    destroyed: AtomicUsize,
    fail_next_boots: AtomicUsize,
}

#[derive(Clone, Default)]
struct TrackingHypervisor {
    inner: LocalHypervisor,
    counters: Arc<Counters>,
}

struct TrackedVm {
    vm: Option<LocalVm>,
    counters: Arc<Counters>,
}

impl Drop for TrackedVm {
    fn drop(&mut self) {
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hypervisor for TrackingHypervisor {
    type Vm = TrackedVm;

    async fn launch(&self, spec: VmSpec) -> Result<TrackedVm, VmError> {
        self.counters.launches.fetch_add(1, Ordering::SeqCst);
        let failing = self.counters.fail_next_boots.load(Ordering::SeqCst);
        if failing > 0 {
            self.counters
                .fail_next_boots
                .store(failing - 1, Ordering::SeqCst);
            return Err(VmError::BootTimeout {
                name: spec.name,
                timeout: spec.boot_timeout,
                console_tail: "Kernel panic - not syncing: VFS".into(),
            });
        }
        let vm = self.inner.launch(spec).await?;
        self.counters.live.fetch_add(1, Ordering::SeqCst);
        Ok(TrackedVm {
            vm: Some(vm),
            counters: Arc::clone(&self.counters),
        })
    }
}

impl TrackedVm {
    fn vm(&self) -> &LocalVm {
        self.vm.as_ref().expect("present until destroyed")
    }
}

impl Vm for TrackedVm {
    fn id(&self) -> &str {
        self.vm().id()
    }
    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        self.vm().exec(cmd, output, cancel).await
    }
    async fn upload(&self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        self.vm().upload(path, contents, mode).await
    }
    async fn download(&self, path: &str) -> Result<Vec<u8>, VmError> {
        self.vm().download(path).await
    }
    async fn destroy(mut self) -> Result<(), VmError> {
        self.counters.destroyed.fetch_add(1, Ordering::SeqCst);
        let vm = self.vm.take().expect("destroyed once");
        vm.destroy().await
    }
}

// ---- a channel that records the completion ---------------------------------------------------

#[derive(Default)]
struct RecordingChannel {
    completed: Mutex<Vec<JobOutcome>>,
}

impl JobChannel for RecordingChannel {
    async fn renew(&self) -> Result<Option<DateTime<Utc>>, ChannelError> {
        Ok(Some(Utc::now() + chrono::Duration::seconds(600)))
    }
    async fn complete(&self, outcome: &JobOutcome) -> Result<(), ChannelError> {
        self.completed.lock().unwrap().push(outcome.clone());
        Ok(())
    }
}

// ---- fixtures --------------------------------------------------------------------------------

fn write_image(dir: &Path) -> PathBuf {
    let image = dir.join("tiny");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join("vmlinuz"), b"not a kernel").unwrap();
    let manifest = json!({
        "name": "tiny", "arch": "x86_64", "kernel": "vmlinuz",
        "user": "runner", "shell": "sh", "work_dir": WORK
    });
    std::fs::write(image.join("manifest.json"), manifest.to_string()).unwrap();
    image
}

fn config(images: &[(&str, PathBuf)], labels: &[&str]) -> ExecutorConfig {
    ExecutorConfig {
        runner: RunnerIdentity {
            name: "vm-runner-1".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        },
        catalog: ImageCatalog {
            images: images
                .iter()
                .map(|(l, d)| (l.to_string(), d.clone()))
                .collect(),
            default_image: None,
            config_path: PathBuf::from("/runner/config.yaml"),
        },
        vm: VmDefaults {
            cpus: 1,
            memory_mib: 256,
            network: NetworkPolicy::None,
            boot_timeout: Duration::from_secs(5),
        },
        ..ExecutorConfig::default()
    }
}

fn expr(text: &str) -> Json {
    json!({"type": 3, "expr": text})
}

fn mapping(pairs: &[(&str, Json)]) -> Json {
    json!({"type": 2, "map": pairs.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
}

fn step(name: &str, script: &str) -> Json {
    json!({
        "type": "action", "id": Uuid::new_v4(), "name": name, "displayName": name,
        "contextName": name,
        "reference": {"type": "script"},
        "inputs": mapping(&[("script", json!(script))]),
    })
}

fn message(steps: Vec<Json>) -> Json {
    json!({
        "messageType": "PipelineAgentJobRequest",
        "plan": {"planId": Uuid::new_v4(), "planType": "actions", "version": 1},
        "timeline": {"id": Uuid::new_v4()},
        "jobId": Uuid::new_v4(),
        "jobDisplayName": "hello", "jobName": "hello", "requestId": 7,
        "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "http://127.0.0.1:1/",
            "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "job-token"}}}]},
        "variables": {"DEMO_TOKEN": {"value": SECRET, "isSecret": true}},
        "contextData": {
            "github": {"t": 2, "d": [{"k": "repository", "v": "octo/hello"}, {"k": "run_id", "v": "5"}]},
            "secrets": {"t": 2, "d": [{"k": "DEMO_TOKEN", "v": SECRET}]}
        },
        "jobOutputs": mapping(&[("answer", expr("steps.compute.outputs.answer"))]),
        "steps": steps,
    })
}

fn hello_steps() -> Vec<Json> {
    vec![
        step("greet", "echo hello from the VM"),
        step(
            "compute",
            "echo \"answer=$((6 * 7))\" >> \"$GITHUB_OUTPUT\"",
        ),
        {
            let mut s = step("secret", "echo \"token is $DEMO_TOKEN\"");
            s["environment"] = mapping(&[("DEMO_TOKEN", expr("secrets.DEMO_TOKEN"))]);
            s
        },
    ]
}

async fn run(
    executor: &VmJobExecutor<TrackingHypervisor, CollectingReports>,
    message: Json,
    cancel: CancellationToken,
) -> (TaskResult, JobOutcome) {
    let channel = Arc::new(RecordingChannel::default());
    let control = JobControl {
        cancel,
        kill_after: Duration::from_secs(20),
    };
    let message = AgentJobRequestMessage::from_delivered(&message).expect("a valid job message");
    let result = run_job(
        Arc::clone(&channel),
        executor,
        message,
        control,
        &Timings::fast(),
    )
    .await;
    let completed = channel.completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 1, "the job is completed exactly once");
    (result, completed.into_iter().next().unwrap())
}

fn job_lines(events: &[JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Log {
                step_id: None,
                line,
            } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn all_lines(events: &[JobEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_runs_in_a_fresh_vm_and_completes_with_steps_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let metrics = Arc::new(Metrics::default());
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", image)], &["self-hosted", "tiny"]),
    )
    .with_metrics(Arc::clone(&metrics));

    let (result, outcome) = run(&executor, message(hello_steps()), CancellationToken::new()).await;

    assert_eq!(result, TaskResult::Succeeded);
    assert_eq!(outcome.result, TaskResult::Succeeded);
    assert_eq!(outcome.outputs["answer"].value, "42");
    let steps: Vec<(&str, Option<TaskResult>)> = outcome
        .step_results
        .iter()
        .map(|s| (s.name.as_str(), s.conclusion))
        .collect();
    assert_eq!(
        steps,
        [
            ("greet", Some(TaskResult::Succeeded)),
            ("compute", Some(TaskResult::Succeeded)),
            ("secret", Some(TaskResult::Succeeded)),
        ]
    );
    let events = reports.take();
    let text = all_lines(&events);
    assert!(text.contains("hello from the VM"), "{text}");
    assert!(text.contains("token is ***"), "{text}");
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    let setup = job_lines(&events).join("\n");
    assert!(setup.contains("VM image: 'tiny'"), "{setup}");
    assert!(setup.contains("booted in"), "{setup}");
    let c = &hypervisor.counters;
    assert_eq!(c.launches.load(Ordering::SeqCst), 1);
    assert_eq!(
        c.destroyed.load(Ordering::SeqCst),
        1,
        "destroyed explicitly"
    );
    assert_eq!(c.live.load(Ordering::SeqCst), 0, "no VM left");
    let exposition = metrics.render();
    assert!(exposition.contains("ghrunner_vm_jobs_succeeded_total 1\n"));
    assert!(exposition.contains("ghrunner_vm_vm_boot_seconds_count 1\n"));
    assert!(exposition.contains("ghrunner_vm_active_vms 0\n"));
}

#[tokio::test]
async fn no_image_for_the_labels_fails_the_job_with_the_fix_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", image)], &["self-hosted", "gpu"]),
    );

    let (result, outcome) = run(&executor, message(hello_steps()), CancellationToken::new()).await;

    assert_eq!(result, TaskResult::Failed);
    let events = reports.take();
    let log = job_lines(&events).join("\n");
    assert!(
        log.contains("##[error]no VM image for this runner"),
        "{log}"
    );
    assert!(log.contains("/runner/config.yaml"), "{log}");
    assert!(log.contains("default_image"), "{log}");
    assert_eq!(outcome.annotations.len(), 1, "{:?}", outcome.annotations);
    assert!(outcome.step_results.is_empty());
    assert_eq!(hypervisor.counters.launches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unusable_image_directory_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", dir.path().join("missing"))], &["tiny"]),
    );

    let (result, _) = run(&executor, message(hello_steps()), CancellationToken::new()).await;

    assert_eq!(result, TaskResult::Failed);
    let log = job_lines(&reports.take()).join("\n");
    assert!(log.contains("the VM image \"tiny\""), "{log}");
    assert!(log.contains("manifest.json"), "{log}");
}

#[tokio::test]
async fn a_boot_failure_fails_the_job_and_the_next_job_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    hypervisor
        .counters
        .fail_next_boots
        .store(1, Ordering::SeqCst);
    let reports = CollectingReports::default();
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", image)], &["tiny"]),
    );

    let (first, _) = run(&executor, message(hello_steps()), CancellationToken::new()).await;
    assert_eq!(first, TaskResult::Failed);
    let log = job_lines(&reports.take()).join("\n");
    assert!(log.contains("the VM failed to boot"), "{log}");
    assert!(
        log.contains("Kernel panic"),
        "the console tail is shown: {log}"
    );

    let (second, outcome) = run(&executor, message(hello_steps()), CancellationToken::new()).await;
    assert_eq!(second, TaskResult::Succeeded);
    assert_eq!(outcome.outputs["answer"].value, "42");
    let c = &hypervisor.counters;
    assert_eq!(c.launches.load(Ordering::SeqCst), 2);
    assert_eq!(c.live.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_step_or_a_cancellation_still_destroys_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", image)], &["tiny"]),
    );

    let (failed, outcome) = run(
        &executor,
        message(vec![step("boom", "exit 3"), step("never", "echo no")]),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(failed, TaskResult::Failed);
    assert_eq!(outcome.step_results[0].conclusion, Some(TaskResult::Failed));
    assert_eq!(
        outcome.step_results[1].conclusion,
        Some(TaskResult::Skipped)
    );

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let (cancelled, _) = run(&executor, message(vec![step("long", "sleep 30")]), cancel).await;
    assert_eq!(cancelled, TaskResult::Canceled);
    let c = &hypervisor.counters;
    assert_eq!(c.launches.load(Ordering::SeqCst), 2);
    assert_eq!(c.destroyed.load(Ordering::SeqCst), 2);
    assert_eq!(c.live.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_job_started_hook_fails_the_job_before_any_vm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hook = dir.path().join("started.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let mut config = config(&[("tiny", image)], &["tiny"]);
    config.hooks.job_started = Some(hook);
    let executor = VmJobExecutor::new(Arc::new(hypervisor.clone()), reports.clone(), config);

    let (result, _) = run(&executor, message(hello_steps()), CancellationToken::new()).await;

    assert_eq!(result, TaskResult::Failed);
    let log = job_lines(&reports.take()).join("\n");
    assert!(log.contains("the job_started hook failed"), "{log}");
    assert_eq!(hypervisor.counters.launches.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_prepared_while_the_job_is_acquired_runs_that_job() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let reports = CollectingReports::default();
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports.clone(),
        config(&[("tiny", image)], &["self-hosted", "tiny"]),
    );
    let c = Arc::clone(&hypervisor.counters);
    let job = message(hello_steps());
    executor.prepare(job["jobId"].as_str().unwrap());
    eventually("the prepared VM to boot", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let (result, outcome) = run(&executor, job, CancellationToken::new()).await;
    assert_eq!(result, TaskResult::Succeeded);
    assert_eq!(outcome.outputs["answer"].value, "42");
    assert_eq!(
        c.launches.load(Ordering::SeqCst),
        1,
        "the prepared VM was used"
    );
    assert_eq!(c.destroyed.load(Ordering::SeqCst), 1);
    assert_eq!(c.live.load(Ordering::SeqCst), 0);
    let setup = job_lines(&reports.take()).join("\n");
    assert!(
        setup.contains("started while the job was being acquired"),
        "{setup}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_vm_for_a_job_that_does_not_come_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let budget = VmBudget::new(1, 1024);
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        CollectingReports::default(),
        config(&[("tiny", image)], &["self-hosted", "tiny"]),
    )
    .with_budget(budget.clone());
    let c = Arc::clone(&hypervisor.counters);

    // Acquiring failed: the listener discards what it prepared.
    executor.prepare(&Uuid::new_v4().to_string());
    eventually("the prepared VM to boot", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    executor.discard_prepared();
    eventually("the discarded VM to die", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;

    // A VM prepared for one job is not used for another; its budget is given back.
    executor.prepare(&Uuid::new_v4().to_string());
    eventually("the prepared VM to boot", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let (result, _) = run(&executor, message(hello_steps()), CancellationToken::new()).await;
    assert_eq!(
        result,
        TaskResult::Succeeded,
        "the budget of one VM was released"
    );
    assert_eq!(c.launches.load(Ordering::SeqCst), 3);
    assert_eq!(c.live.load(Ordering::SeqCst), 0, "no VM left");

    // A prepared launch never exceeds the budget: with it used up, prepare does nothing.
    let held = budget
        .try_acquire(1, 256)
        .expect("the budget is free again");
    executor.prepare(&Uuid::new_v4().to_string());
    executor.prepare("not-a-uuid");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.launches.load(Ordering::SeqCst), 3, "nothing prepared");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_vm_of_a_job_that_ended_before_running_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let hypervisor = TrackingHypervisor::default();
    let budget = VmBudget::new(1, 1024);
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        CollectingReports::default(),
        config(&[("tiny", image)], &["self-hosted", "tiny"]),
    )
    .with_budget(budget.clone());
    let c = Arc::clone(&hypervisor.counters);
    let job = Uuid::new_v4().to_string();
    executor.prepare(&job);
    eventually("the prepared VM to boot", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Another job's end leaves it alone.
    executor.release_prepared(&Uuid::new_v4().to_string());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.live.load(Ordering::SeqCst), 1);
    // The acquired job was cancelled before it ran: the listener releases what it prepared.
    executor.release_prepared(&job);
    eventually("the prepared VM to die", Duration::from_secs(5), || {
        (c.live.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    assert!(
        budget.try_acquire(1, 1024).is_some(),
        "its budget is given back"
    );
}
