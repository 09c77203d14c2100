//! Benchmark: a job message handed to the VM executor → the first line its step prints in the
//! guest, with QEMU and a real image, split into its phases; median, min and max of 10 jobs.
//!
//! ```text
//! cargo run --release --example bench_first_line -- <image dir> [--runs 10]
//! ```
//!
//! The executor is the production `VmJobExecutor` on the QEMU backend (TCG unless
//! `GHRUNNER_VM_ACCEL` says otherwise; KVM hangs on this project's machines), wrapped to time
//! each launch and teardown; the image gets a blank qcow2 disk so every job clones an overlay.
//! Phases: set-up (parse, report start, image, budget), clone (qcow2 overlay + SSH key), boot
//! (passt, QEMU → QMP, kernel → guest ready), SSH (connect + authenticate), step (VM ready →
//! first output line: plan already done during boot, script upload, exec), and teardown (after
//! the job, reported separately since it follows the first line).

#[path = "../tests/support/mod.rs"]
mod support;
use support::disk;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ghrunner_vm::job::events::JobEvent;
use ghrunner_vm::job::executor::{
    ExecutorConfig, ImageCatalog, JobReport, ReportFactory, RunnerIdentity, VmDefaults,
    VmJobExecutor,
};
use ghrunner_vm::job::lifecycle::{BoxError, JobExecutor as _};
use ghrunner_vm::job::report::ReportOutcome;
use ghrunner_vm::protocol::TaskResult;
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use ghrunner_vm::vm::qemu::accel::AccelMode;
use ghrunner_vm::vm::qemu::{BootTimings, Qemu, QemuConfig, QemuVm};
use ghrunner_vm::vm::{
    ExecOutcome, GuestCommand, GuestFile, Hypervisor, NetworkPolicy, OutputChunk, Vm, VmError,
    VmSpec,
};
use ghrunner_vm::workflow::{WorkflowJob, compile_workflow_job};
use support::bench::{machine, ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WORKFLOW: &str = r#"
on: push
jobs:
  first:
    runs-on: [self-hosted, tiny]
    steps:
      - run: printf 'first-%s\n' output
"#;
const MARKER: &str = "first-output";

/// What one job's wrappers saw.
#[derive(Default)]
struct Marks {
    launch_called: Option<Instant>,
    launched: Option<Instant>,
    boot: Option<BootTimings>,
    first_line: Option<Instant>,
    teardown: Option<Duration>,
    /// The job log, shown if the job fails.
    log: Vec<String>,
}

type Shared = Arc<Mutex<Marks>>;

/// The QEMU backend, timing each launch.
struct TimedQemu {
    qemu: Qemu,
    marks: Shared,
}

struct TimedVm {
    vm: QemuVm,
    marks: Shared,
}

impl Hypervisor for TimedQemu {
    type Vm = TimedVm;

    async fn launch(&self, spec: VmSpec) -> Result<TimedVm, VmError> {
        self.marks.lock().unwrap().launch_called = Some(Instant::now());
        let vm = self.qemu.launch(spec).await?;
        let mut marks = self.marks.lock().unwrap();
        marks.launched = Some(Instant::now());
        marks.boot = Some(vm.timings());
        drop(marks);
        Ok(TimedVm {
            vm,
            marks: Arc::clone(&self.marks),
        })
    }
}

impl Vm for TimedVm {
    fn id(&self) -> &str {
        self.vm.id()
    }

    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        self.vm.exec(cmd, output, cancel).await
    }

    async fn upload(&self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        self.vm.upload(path, contents, mode).await
    }

    async fn download(&self, path: &str) -> Result<Vec<u8>, VmError> {
        self.vm.download(path).await
    }

    async fn write_files(&self, dirs: Vec<String>, files: Vec<GuestFile>) -> Result<(), VmError> {
        self.vm.write_files(dirs, files).await
    }

    async fn read_files(
        &self,
        paths: Vec<String>,
        max_bytes: u64,
    ) -> Result<Vec<ghrunner_vm::vm::GuestRead>, VmError> {
        self.vm.read_files(paths, max_bytes).await
    }

    async fn destroy(self) -> Result<(), VmError> {
        let started = Instant::now();
        let result = self.vm.destroy().await;
        self.marks.lock().unwrap().teardown = Some(started.elapsed());
        result
    }
}

/// A reporter that notes when the marker line arrives and keeps nothing else.
struct TimedReports {
    marks: Shared,
}

impl ReportFactory for TimedReports {
    fn start(&self, _: &AgentJobRequestMessage, _: &str) -> Result<JobReport, BoxError> {
        let (events, mut rx) = mpsc::channel(1024);
        let marks = Arc::clone(&self.marks);
        let collector = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let JobEvent::Log { step_id, line } = event {
                    let mut marks = marks.lock().unwrap();
                    if step_id.is_some() && line.trim() == MARKER {
                        marks.first_line.get_or_insert_with(Instant::now);
                    }
                    marks.log.push(line);
                }
            }
        });
        let finish = async move {
            let _ = collector.await;
            ReportOutcome {
                completion: Default::default(),
                job_result: None,
                failures: Vec::new(),
                console_lines_omitted: 0,
            }
        };
        Ok(JobReport {
            events,
            finish: Box::pin(finish),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(
        args.next()
            .context("usage: bench_first_line <image dir> [--runs N]")?,
    );
    let runs: usize = match (args.next().as_deref(), args.next()) {
        (Some("--runs"), Some(n)) => n.parse()?,
        _ => 10,
    };
    let work = tempfile::tempdir()?;
    let image_dir = work.path().join("image");
    std::fs::create_dir(&image_dir)?;
    let image = disk::with_blank_disk(&image, &image_dir);
    let accel = match std::env::var("GHRUNNER_VM_ACCEL").as_deref() {
        Ok("kvm") => AccelMode::Kvm,
        Ok("auto") => AccelMode::Auto,
        _ => AccelMode::Tcg,
    };
    println!("machine: {}", machine());
    println!(
        "image: {} + blank 16 MiB qcow2 disk, accel {accel:?}, 1 vCPU, 512 MiB, network user, {runs} jobs",
        image.display()
    );
    let mut config = QemuConfig::new(work.path().join("runner"));
    config.accel = accel;
    let marks: Shared = Arc::default();
    let hypervisor = TimedQemu {
        qemu: Qemu::new(config)?,
        marks: Arc::clone(&marks),
    };
    let executor = VmJobExecutor::new(
        Arc::new(hypervisor),
        TimedReports {
            marks: Arc::clone(&marks),
        },
        ExecutorConfig {
            runner: RunnerIdentity {
                name: "bench".into(),
                labels: vec!["self-hosted".into(), "tiny".into()],
            },
            catalog: ImageCatalog {
                images: [("tiny".to_owned(), image.clone())].into(),
                default_image: None,
                config_path: work.path().join("config.yaml"),
            },
            vm: VmDefaults {
                cpus: 1,
                memory_mib: 512,
                network: NetworkPolicy::User,
                boot_timeout: Duration::from_secs(120),
            },
            ..ExecutorConfig::default()
        },
    );

    let phases = [
        "set-up (message -> launch)",
        "clone (qcow2 overlay + key)",
        "boot (passt, QEMU, kernel -> ready)",
        "SSH (connect + authenticate)",
        "step (VM ready -> first output line)",
        "= message -> first output line",
        "teardown (after the job)",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); phases.len()];
    for run in 0..runs {
        let compiled = compile_workflow_job(
            &WorkflowJob {
                yaml: WORKFLOW,
                file_name: ".github/workflows/first.yml",
                job: None,
                workflow_name: "first",
                secrets: &[],
            },
            "http://127.0.0.1:1",
            "http://127.0.0.1:1/_services/pipelines/",
            run as u64 + 1,
        )?;
        let message = compiled.message;
        *marks.lock().unwrap() = Marks::default();
        let received = Instant::now();
        let outcome = executor.execute(message, CancellationToken::new()).await?;
        anyhow::ensure!(
            outcome.result == TaskResult::Succeeded,
            "job {run} did not succeed ({:?}); its log:\n{}",
            outcome.result,
            marks.lock().unwrap().log.join("\n")
        );
        let m = marks.lock().unwrap();
        let (Some(called), Some(launched), Some(boot), Some(first), Some(teardown)) = (
            m.launch_called,
            m.launched,
            m.boot,
            m.first_line,
            m.teardown,
        ) else {
            anyhow::bail!("job {run}: a phase was not observed");
        };
        let row = [
            called - received,
            boot.overlay,
            boot.network + boot.qmp_ready + boot.guest_ready,
            boot.ssh_ready,
            first - launched,
            first - received,
            teardown,
        ];
        eprintln!(
            "job {}: message -> first line {:.0} ms",
            run + 1,
            ms(row[5])
        );
        for (column, value) in samples.iter_mut().zip(row) {
            column.push(value);
        }
    }
    println!(
        "\n{:<40} {:>9} {:>9} {:>9}",
        "phase (ms)", "median", "min", "max"
    );
    for (name, column) in phases.iter().zip(&mut samples) {
        column.sort();
        println!(
            "{name:<40} {:>9.1} {:>9.1} {:>9.1}",
            ms(column[column.len() / 2]),
            ms(column[0]),
            ms(column[column.len() - 1])
        );
    }
    Ok(())
}
