//! A job request that reaches a runner while its previous job is still being torn down (the
//! server already handed out the next job after a cancellation): the listener keeps it, the
//! job is acknowledged/acquired at once and runs after the teardown, and both jobs complete
//! on the server. On both protocol paths, and with two registrations in one process.
//!
//! The real listener and the real VM executor run against the local service; the hypervisor
//! is a test one whose VMs run nothing but whose teardown is slow and whose calls are recorded
//! with their instants, so the order "previous VM gone → next job's first command" is checked
//! on the recorded events, not on timing.

mod support;
use support::reports;
use support::wait;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghrunner_vm::job::executor::{
    ExecutorConfig, ImageCatalog, RunnerIdentity, VmDefaults, VmJobExecutor,
};
use ghrunner_vm::localsvc::protocol::{Delivery, ProtocolEvent, ProtocolState, protocol_state};
use ghrunner_vm::localsvc::{LocalService, LocalServiceConfig};
use ghrunner_vm::vm::{
    ExecOutcome, GuestCommand, Hypervisor, NetworkPolicy, OutputChunk, Vm, VmError, VmSpec,
};
use ghrunner_vm::workflow::{WorkflowJob, compile_workflow_job};
use reports::CollectingReports;
use serde_json::Value;
use support::fake_image::{TWO_STEPS as WORKFLOW, fake_image};
use support::listener::{attach, stop};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wait::eventually;

use support::wait::PATIENCE;
/// How long tearing a VM down takes.
const TEARDOWN: Duration = Duration::from_secs(3);

/// What the test hypervisor did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Exec,
    DestroyStarted,
    DestroyEnded,
}

#[derive(Default)]
struct Record {
    /// (instant, the job the VM was launched for, call)
    calls: Mutex<Vec<(Instant, String, Call)>>,
    /// Jobs whose VMs' commands run until cancelled.
    slow: Mutex<HashSet<String>>,
}

impl Record {
    fn push(&self, job: &str, call: Call) {
        let entry = (Instant::now(), job.to_owned(), call);
        self.calls.lock().unwrap().push(entry);
    }

    fn first(&self, job_id: &str, call: &Call) -> Option<Instant> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .find(|(_, job, c)| *job == job_id && c == call)
            .map(|(at, _, _)| *at)
    }
}

/// VMs that run nothing; commands of a "slow" job run until cancelled, teardown is slow.
#[derive(Clone, Default)]
struct SlowTeardown {
    record: Arc<Record>,
}

struct TestVm {
    name: String,
    /// The job it was launched for (`VmSpec::job`).
    job: String,
    slow: bool,
    record: Arc<Record>,
}

impl Hypervisor for SlowTeardown {
    type Vm = TestVm;

    async fn launch(&self, spec: VmSpec) -> Result<TestVm, VmError> {
        let job = spec.job.expect("the executor names the job of each VM");
        assert_ne!(spec.name, job, "a VM is not named after its job");
        let slow = self.record.slow.lock().unwrap().contains(&job);
        Ok(TestVm {
            job,
            name: spec.name,
            slow,
            record: Arc::clone(&self.record),
        })
    }
}

impl Vm for TestVm {
    fn id(&self) -> &str {
        &self.name
    }

    async fn exec(
        &self,
        _cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        self.record.push(&self.job, Call::Exec);
        let work = if self.slow {
            PATIENCE
        } else {
            Duration::from_millis(20)
        };
        let cancelled = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep(work) => false,
        };
        let _ = output.send(OutputChunk::Stdout(b"ran\n".to_vec())).await;
        Ok(ExecOutcome {
            exit_code: if cancelled { 130 } else { 0 },
            cancelled,
        })
    }

    async fn upload(&self, _path: &str, _contents: Vec<u8>, _mode: u32) -> Result<(), VmError> {
        Ok(())
    }

    async fn download(&self, _path: &str) -> Result<Vec<u8>, VmError> {
        Ok(Vec::new())
    }

    async fn write_files(
        &self,
        _dirs: Vec<String>,
        _files: Vec<ghrunner_vm::vm::GuestFile>,
    ) -> Result<(), VmError> {
        Ok(())
    }

    async fn read_files(
        &self,
        paths: Vec<String>,
        _max_bytes: u64,
    ) -> Result<Vec<ghrunner_vm::vm::GuestRead>, VmError> {
        Ok(paths
            .iter()
            .map(|_| ghrunner_vm::vm::GuestRead::Missing)
            .collect())
    }

    async fn destroy(self) -> Result<(), VmError> {
        self.record.push(&self.job, Call::DestroyStarted);
        tokio::time::sleep(TEARDOWN).await;
        self.record.push(&self.job, Call::DestroyEnded);
        Ok(())
    }
}

fn executor(
    hypervisor: &SlowTeardown,
    image: &Path,
    name: &str,
) -> Arc<VmJobExecutor<SlowTeardown, CollectingReports>> {
    let config = ExecutorConfig {
        runner: RunnerIdentity {
            name: name.to_owned(),
            labels: vec!["self-hosted".into(), "tiny".into()],
        },
        catalog: ImageCatalog {
            images: [("tiny".to_owned(), image.to_owned())].into(),
            default_image: None,
            config_path: image.join("config.yaml"),
        },
        vm: VmDefaults {
            cpus: 1,
            memory_mib: 256,
            network: NetworkPolicy::None,
            boot_timeout: Duration::from_secs(30),
        },
        ..ExecutorConfig::default()
    };
    let reports = CollectingReports::default();
    Arc::new(VmJobExecutor::new(
        Arc::new(hypervisor.clone()),
        reports,
        config,
    ))
}

/// A fresh job message of the workflow.
fn job_message(proto: &ProtocolState) -> Value {
    let workflow = WorkflowJob {
        yaml: WORKFLOW,
        file_name: ".github/workflows/handover.yml",
        job: None,
        workflow_name: "handover",
        secrets: &[],
    };
    let compiled = compile_workflow_job(
        &workflow,
        &proto.base_url(),
        &proto.tenant_url(),
        proto.next_run_id(),
    )
    .expect("the workflow compiles");
    serde_json::to_value(&compiled.message).unwrap()
}

fn enqueue(proto: &ProtocolState, broker: bool, delivery: Delivery) -> String {
    let message = job_message(proto);
    if broker {
        proto.enqueue_broker_job_with(message, delivery)
    } else {
        proto.enqueue_legacy_job_with(message, delivery)
    }
}

/// The completion's result on either path.
fn result_of(proto: &ProtocolState, job_id: &str) -> Option<String> {
    let completion = proto.job(job_id)?.completion?;
    let result = completion
        .get("conclusion")
        .or_else(|| completion.get("result"))?;
    result.as_str().map(str::to_owned)
}

async fn completed(proto: &ProtocolState, job_id: &str) -> String {
    eventually("job completion", PATIENCE, || result_of(proto, job_id)).await
}

/// Runs job A until its first command, cancels it, and once its VM teardown has begun hands
/// job B to the same (still busy) runner; returns B's id after checking the whole handover.
async fn cancel_then_hand_over(
    proto: &ProtocolState,
    record: &Record,
    broker: bool,
    agent_id: u64,
) -> (String, String) {
    let only_this_runner = Delivery {
        agent_id: Some(agent_id),
        even_if_busy: false,
    };
    let first = enqueue(proto, broker, only_this_runner);
    record.slow.lock().unwrap().insert(first.clone());
    eventually("the first job's step running", PATIENCE, || {
        record.first(&first, &Call::Exec)
    })
    .await;
    proto.enqueue_cancellation(&first);
    eventually("the first job's VM teardown", PATIENCE, || {
        record.first(&first, &Call::DestroyStarted)
    })
    .await;
    // The server considers the first job done and hands the runner its next job.
    proto.finish_on_server(&first, "canceled");
    let second = enqueue(
        proto,
        broker,
        Delivery {
            agent_id: Some(agent_id),
            even_if_busy: true,
        },
    );
    (first, second)
}

/// Checks the handover of `second` after `first` on one runner.
async fn check_handover(
    proto: &ProtocolState,
    record: &Record,
    broker: bool,
    agent_id: u64,
    (first, second): (String, String),
) {
    assert_eq!(completed(proto, &second).await, "succeeded");
    assert_eq!(completed(proto, &first).await, "canceled");
    let second_record = proto.job(&second).unwrap();
    assert_eq!(second_record.delivered_to, Some(agent_id), "its own runner");
    assert!(second_record.acquired);
    let torn_down = record
        .first(&first, &Call::DestroyEnded)
        .expect("the first VM was destroyed");
    let delivered_during_teardown = record
        .first(&first, &Call::DestroyStarted)
        .expect("teardown began");
    let second_ran = record
        .first(&second, &Call::Exec)
        .expect("the second job ran a command");
    assert!(
        second_ran > torn_down,
        "the second job ran before the first VM was gone"
    );
    assert!(delivered_during_teardown < torn_down);
    if !broker {
        // The legacy path asks the server about the previous job request first.
        let reads = proto
            .events()
            .iter()
            .filter(|e| matches!(e, ProtocolEvent::JobRequestRead { .. }))
            .count();
        assert!(reads >= 1, "the previous job request was read");
    }
}

/// A service, a fake image and the test hypervisor (logs go to the test's output).
async fn setup() -> (
    LocalService,
    Arc<ProtocolState>,
    tempfile::TempDir,
    SlowTeardown,
) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ghrunner_vm=debug")
        .with_test_writer()
        .try_init();
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let proto = protocol_state(&svc.state());
    let image = tempfile::tempdir().unwrap();
    fake_image(image.path());
    (svc, proto, image, SlowTeardown::default())
}

async fn one_registration(broker: bool) {
    let (svc, proto, image, hypervisor) = setup().await;
    let attached = attach(&svc, broker, executor(&hypervisor, image.path(), "r1"));
    let agent = attached.agent_id;
    let jobs = cancel_then_hand_over(&proto, &hypervisor.record, broker, agent).await;
    check_handover(&proto, &hypervisor.record, broker, agent, jobs).await;
    assert_eq!(proto.queued(), 0, "nothing left undelivered");
    stop(attached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_a_job_delivered_during_teardown_runs_after_it() {
    one_registration(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_a_job_delivered_during_teardown_runs_after_it() {
    one_registration(true).await;
}

async fn two_registrations(broker: bool) {
    let (svc, proto, image, hypervisor) = setup().await;
    let one = attach(&svc, broker, executor(&hypervisor, image.path(), "r1"));
    let two = attach(&svc, broker, executor(&hypervisor, image.path(), "r2"));
    let record = &hypervisor.record;
    let (a, b) = tokio::join!(
        cancel_then_hand_over(&proto, record, broker, one.agent_id),
        cancel_then_hand_over(&proto, record, broker, two.agent_id),
    );
    tokio::join!(
        check_handover(&proto, record, broker, one.agent_id, a),
        check_handover(&proto, record, broker, two.agent_id, b),
    );
    assert_eq!(proto.queued(), 0, "nothing left undelivered");
    stop(one).await;
    stop(two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_two_registrations_each_hold_their_own_next_job() {
    two_registrations(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_two_registrations_each_hold_their_own_next_job() {
    two_registrations(true).await;
}
