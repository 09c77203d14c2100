//! A real `ghrunner-vm run` process serving jobs of a local service in VMs from the tiny image,
//! with what /proc says about it (resident memory, its peak, CPU time). Shared by
//! `tests/hostile` and `examples/bench_hostile.rs`; the /proc readings are the benchmarks'
//! ([`super::bench`]).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ghrunner_vm::config::Settings;
use ghrunner_vm::localsvc::protocol::protocol_state;
use ghrunner_vm::localsvc::reporting::store;
use ghrunner_vm::localsvc::{LocalService, WorkflowJob};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::bench;
use super::cli;
use super::wait::eventually;

/// Generous: VMs boot under TCG on a loaded 2-core machine, and a flood takes its time.
pub const JOB_LIMIT: Duration = Duration::from_secs(600);

/// An agent process registered with `svc`, serving jobs labelled `tiny`.
pub struct Agent {
    pub child: Child,
    pub pid: u32,
    pub root: tempfile::TempDir,
}

impl Agent {
    /// Registers a runner in a fresh directory (1 CPU, 512 MiB VMs from the image `tiny`) and
    /// starts `binary run`; its log goes to `<root>/agent.log`.
    pub async fn start(svc: &LocalService, binary: &Path, tiny: &Path) -> Agent {
        let root = tempfile::tempdir().unwrap();
        register_small(svc, root.path(), "hostile", tiny).await;
        let log = std::fs::File::create(root.path().join("agent.log")).unwrap();
        let child = spawn_run(binary, root.path(), log.into());
        let pid = child.id().unwrap();
        Agent { child, pid, root }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("agent.log")).unwrap_or_default()
    }

    /// Resident memory in MiB: (current `VmRSS`, `VmHWM`: the peak since the last
    /// [`Agent::reset_peak`]).
    pub fn rss_mib(&self) -> (f64, f64) {
        bench::rss_mib(self.pid)
    }

    /// Resets `VmHWM` to the current resident size (`/proc/PID/clear_refs`, value 5).
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .expect("reset the peak RSS through /proc/PID/clear_refs");
    }

    /// User plus system CPU time the agent used so far.
    pub fn cpu(&self) -> Duration {
        bench::cpu_time(self.pid)
    }

    /// The directories of the VMs running now.
    pub fn vm_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.path().join("vms"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Registers runner `name` of `svc` in `root` with `image` for the label `tiny`, its VMs made
/// small (1 CPU, 512 MiB) for a loaded test machine.
pub async fn register_small(svc: &LocalService, root: &Path, name: &str, image: &Path) {
    let spec = format!("tiny={}", image.display());
    cli::register(
        root,
        &svc.repo_url("octo-org", "hello"),
        name,
        &["--image", &spec],
    )
    .await
    .expect("register");
    let mut settings = Settings::load(root).unwrap();
    settings.vm.cpus = 1;
    settings.vm.memory_mib = 512;
    settings.save(root).unwrap();
}

/// Starts `binary --dir root run` (TCG unless `GHRUNNER_VM_ACCEL` says otherwise, info logs to
/// `stderr`), killed when dropped.
pub fn spawn_run(binary: &Path, root: &Path, stderr: Stdio) -> Child {
    Command::new(binary)
        .arg("--dir")
        .arg(root)
        .arg("run")
        .env("GHRUNNER_VM_ACCEL", super::image::accel())
        .env("GHRUNNER_VM_LOG", "ghrunner_vm=info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("ghrunner-vm starts")
}

/// Queues `yaml`'s only job; returns its id.
pub fn queue(svc: &LocalService, yaml: &str) -> String {
    svc.queue_workflow_job(&WorkflowJob {
        yaml,
        file_name: ".github/workflows/hostile.yml",
        job: None,
        workflow_name: "hostile",
        secrets: &[],
    })
    .expect("the workflow compiles")
    .job_id
}

/// Waits for the job's completion on the server; returns its body.
pub async fn completion(svc: &LocalService, job: &str) -> Value {
    let proto = protocol_state(&svc.state());
    eventually("the job to be completed on the server", JOB_LIMIT, || {
        proto.job(job).and_then(|r| r.completion)
    })
    .await
}

/// What the server holds of a job's steps: their records (in order) and, for each, its issues'
/// messages and its log.
pub struct StepReport {
    pub record: Value,
    pub issues: Vec<String>,
    pub log: String,
}

/// The step records of `job` (the job record's children), in step order.
pub fn steps(svc: &LocalService, job: &str) -> Vec<StepReport> {
    let store = store(&svc.state());
    let mut steps: Vec<StepReport> = store
        .records
        .iter()
        .filter(|(_, r)| r["parentId"].as_str() == Some(job))
        .map(|(id, r)| {
            let mut log = store.record_log(id).unwrap_or_default();
            if log.is_empty() {
                log = store.console_lines(id).join("\n");
            }
            StepReport {
                record: r.clone(),
                issues: r["issues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["message"].as_str().map(str::to_owned))
                    .collect(),
                log,
            }
        })
        .collect();
    steps.sort_by_key(|s| s.record["order"].as_u64());
    steps
}

/// The step named `name` (the record's display name starts with it).
pub fn step<'a>(steps: &'a [StepReport], name: &str) -> &'a StepReport {
    steps
        .iter()
        .find(|s| {
            s.record["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(name))
        })
        .unwrap_or_else(|| {
            let names: Vec<_> = steps.iter().map(|s| s.record["name"].clone()).collect();
            panic!("no step {name:?} among {names:?}")
        })
}
