//! Benchmarks of the agent process itself (`ghrunner-vm run`, spawned as a child), against the
//! local service running in this process on 127.0.0.1:
//!
//! 1. **Host overhead per job** on the null hypervisor (VMs that boot instantly and run nothing,
//!    `GHRUNNER_VM_TEST_HYPERVISOR=null`): from the service handing the job message to a poll to
//!    the first step's start (the agent's timeline timestamp), and from the last step's finish
//!    to the completion arriving at the service; p50/p99 over `--jobs` sequential jobs. Also the
//!    agent's idle RSS and its peak RSS (`VmHWM`) over those jobs.
//! 2. **Fleet**: `--fleet-jobs` jobs queued at once through `--registrations` registrations of
//!    one `run` process (null hypervisor, every command takes `--exec-ms`): the agent's total CPU
//!    seconds (utime + stime from `/proc`).
//! 3. With `--vm-image DIR` (e.g. the tiny image): the agent's idle RSS and peak RSS while it runs
//!    examples/hello.yml in a real QEMU VM (`GHRUNNER_VM_ACCEL`, default `tcg` here).
//!
//! ```text
//! cargo build --release --features test-hooks && cargo run --release --features test-hooks --example bench_agent -- \
//!     [--jobs 200] [--fleet-jobs 20] [--registrations 4] [--exec-ms 100] \
//!     [--vm-image DIR] [--agent target/release/ghrunner-vm]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Parser as _;
use ghrunner_vm::cli::Cli;
use ghrunner_vm::config::Settings;
use ghrunner_vm::localsvc::protocol::{ProtocolState, protocol_state};
use ghrunner_vm::localsvc::reporting::store;
use ghrunner_vm::localsvc::{
    DEFAULT_REGISTRATION_TOKEN, LocalService, LocalServiceConfig, WorkflowJob,
};
use serde_json::{Value, json};
use support::bench::{agent_binary, cpu_time, machine, ms, percentile, rss_mib};
use tokio::process::{Child, Command};

/// Three `run:` steps with an env and an output: the planner, expression engine and reporter
/// all do their usual work.
const WORKFLOW: &str = r#"
name: bench
on: push
jobs:
  bench:
    runs-on: [self-hosted, tiny]
    env:
      GREETING: hello
    outputs:
      greeting: ${{ steps.greet.outputs.text }}
    steps:
      - id: greet
        run: echo "text=$GREETING" >> "$GITHUB_OUTPUT"
      - run: echo "second step in ${{ runner.os }}"
      - if: ${{ success() }}
        run: echo third
"#;
/// The demo workflow, for the real-VM memory figure.
const HELLO: &str = include_str!("hello.yml");
/// Time allowed for any one wait.
const LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Options {
    jobs: usize,
    fleet_jobs: usize,
    registrations: usize,
    exec_ms: u64,
    vm_image: Option<String>,
    agent: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        jobs: 200,
        fleet_jobs: 20,
        registrations: 4,
        exec_ms: 100,
        vm_image: None,
        agent: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--jobs" => o.jobs = value()?.parse()?,
            "--fleet-jobs" => o.fleet_jobs = value()?.parse()?,
            "--registrations" => o.registrations = value()?.parse()?,
            "--exec-ms" => o.exec_ms = value()?.parse()?,
            "--vm-image" => o.vm_image = Some(value()?),
            "--agent" => o.agent = Some(value()?),
            other => {
                anyhow::bail!("unknown argument {other:?} (see the doc comment of bench_agent.rs)")
            }
        }
    }
    anyhow::ensure!(
        o.jobs > 0 && o.fleet_jobs > 0 && o.registrations > 0,
        "counts must be > 0"
    );
    Ok(o)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let binary = agent_binary(o.agent.clone())?;
    println!("machine: {}", machine());
    println!("agent:   {}", binary.display());
    overhead(&binary, o.jobs).await?;
    fleet(&binary, &o).await?;
    if let Some(image) = &o.vm_image {
        real_vm_memory(&binary, Path::new(image)).await?;
    }
    Ok(())
}

/// A runner directory with `count` registrations (`NAME` or `NAME-1…`) on `svc`, whose `tiny`
/// label maps to `image`.
async fn registered(
    svc: &LocalService,
    image: &Path,
    count: usize,
) -> anyhow::Result<tempfile::TempDir> {
    let root = tempfile::tempdir()?;
    let argv = [
        "ghrunner-vm".to_owned(),
        "--dir".into(),
        root.path().display().to_string(),
        "register".into(),
        "--url".into(),
        svc.repo_url("octo-org", "hello"),
        "--token".into(),
        DEFAULT_REGISTRATION_TOKEN.into(),
        "--unattended".into(),
        "--name".into(),
        "bench".into(),
        "--count".into(),
        count.to_string(),
        "--image".into(),
        format!("tiny={}", image.display()),
    ];
    ghrunner_vm::cli::run(Cli::try_parse_from(argv)?).await?;
    Ok(root)
}

/// An image directory the null hypervisor accepts (it never boots it).
fn null_image() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("vmlinuz"), b"never booted")?;
    let manifest = json!({
        "name": "null", "arch": "x86_64", "kernel": "vmlinuz",
        "user": "root", "shell": "sh", "work_dir": "/work"
    });
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string())?;
    Ok(dir)
}

fn spawn_agent(binary: &Path, root: &Path, hypervisor: Option<&str>) -> anyhow::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.arg("--dir")
        .arg(root)
        .arg("run")
        .env("GHRUNNER_VM_LOG", "error")
        .env("GHRUNNER_VM_ACCEL", support::image::accel())
        .kill_on_drop(true);
    if let Some(spec) = hypervisor {
        cmd.env("GHRUNNER_VM_TEST_HYPERVISOR", spec);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn queue(svc: &LocalService, yaml: &str, secrets: &[(String, String)]) -> anyhow::Result<String> {
    let queued = svc.queue_workflow_job(&WorkflowJob {
        yaml,
        file_name: ".github/workflows/bench.yml",
        job: None,
        workflow_name: "bench",
        secrets,
    })?;
    Ok(queued.job_id)
}

fn completed(proto: &ProtocolState, job: &str) -> bool {
    proto.job(job).is_some_and(|r| r.completion.is_some())
}

fn result_of(proto: &ProtocolState, job: &str) -> String {
    proto
        .job(job)
        .and_then(|r| r.completion)
        .and_then(|c| c.get("result").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

async fn stop(mut agent: Child) {
    if let Some(pid) = agent.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), agent.wait()).await;
}

fn time(record: &Value, field: &str) -> Option<DateTime<Utc>> {
    record.get(field)?.as_str()?.parse().ok()
}

fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

async fn overhead(binary: &Path, jobs: usize) -> anyhow::Result<()> {
    println!("\n## 1. host overhead per job (null hypervisor, {jobs} sequential jobs of 3 steps)");
    let svc = LocalService::start(LocalServiceConfig::default()).await?;
    let proto = protocol_state(&svc.state());
    let image = null_image()?;
    let root = registered(&svc, image.path(), 1).await?;
    let agent = spawn_agent(binary, root.path(), Some("null"))?;
    let pid = agent.id().context("agent pid")?;
    wait_for("the session", || proto.sessions().len() == 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_rss, _) = rss_mib(pid);

    let mut ids = Vec::with_capacity(jobs);
    let started = Instant::now();
    for _ in 0..jobs {
        let job = queue(&svc, WORKFLOW, &[])?;
        wait_for("the job's completion", || completed(&proto, &job)).await?;
        anyhow::ensure!(
            result_of(&proto, &job) == "succeeded",
            "job {job} did not succeed"
        );
        ids.push(job);
    }
    let wall = started.elapsed();
    let (_, peak_rss) = rss_mib(pid);
    stop(agent).await;

    let store = store(&svc.state());
    let (mut to_first_step, mut to_completion) = (Vec::new(), Vec::new());
    for job in &ids {
        let record = proto.job(job).context("job record")?;
        let steps: Vec<&Value> = store
            .records
            .values()
            .filter(|r| r["parentId"].as_str() == Some(job.as_str()))
            .collect();
        let first = steps.iter().filter_map(|r| time(r, "startTime")).min();
        let last = steps.iter().filter_map(|r| time(r, "finishTime")).max();
        let (Some(delivered), Some(first), Some(last), Some(done)) =
            (record.delivered_at, first, last, record.completed_at)
        else {
            anyhow::bail!("job {job} lacks a timestamp");
        };
        to_first_step.push(between(delivered, first));
        to_completion.push(between(last, done));
    }
    println!("{:<52} {:>8} {:>8}", "interval (ms)", "p50", "p99");
    for (name, samples) in [
        (
            "message handed to the agent -> first step started",
            &mut to_first_step,
        ),
        (
            "last step finished -> completion at the service",
            &mut to_completion,
        ),
    ] {
        println!(
            "{name:<52} {:>8.1} {:>8.1}",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0))
        );
    }
    println!(
        "wall time {:.1} s ({:.1} ms per job incl. the service); agent RSS idle {idle_rss:.1} MiB, \
         peak {peak_rss:.1} MiB",
        wall.as_secs_f64(),
        ms(wall) / jobs as f64
    );
    Ok(())
}

async fn fleet(binary: &Path, o: &Options) -> anyhow::Result<()> {
    let (jobs, regs) = (o.fleet_jobs, o.registrations);
    println!(
        "\n## 2. {jobs} jobs through {regs} registrations of one `run` (null hypervisor, \
         {} ms per command, budget {regs} one-CPU VMs)",
        o.exec_ms
    );
    let svc = LocalService::start(LocalServiceConfig::default()).await?;
    let proto = protocol_state(&svc.state());
    let image = null_image()?;
    let root = registered(&svc, image.path(), regs).await?;
    let mut settings = Settings::load(root.path())?;
    settings.vm.cpus = 1;
    settings.vm.memory_mib = 256;
    settings.limits.max_vm_cpus = u32::try_from(regs)?;
    settings.limits.max_vm_memory_mib = 256 * regs as u64;
    settings.save(root.path())?;
    let spec = format!("null:{}", o.exec_ms);
    let agent = spawn_agent(binary, root.path(), Some(&spec))?;
    let pid = agent.id().context("agent pid")?;
    wait_for("every session", || proto.sessions().len() == regs).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu_before, started) = (cpu_time(pid), Instant::now());
    let ids = (0..jobs)
        .map(|_| queue(&svc, WORKFLOW, &[]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    wait_for("every job's completion", || {
        ids.iter().all(|j| completed(&proto, j))
    })
    .await?;
    let (cpu, wall) = (cpu_time(pid) - cpu_before, started.elapsed());
    let total = cpu_time(pid);
    let (_, peak_rss) = rss_mib(pid);
    stop(agent).await;
    let succeeded = ids
        .iter()
        .filter(|j| result_of(&proto, j) == "succeeded")
        .count();
    anyhow::ensure!(
        succeeded == jobs,
        "only {succeeded} of {jobs} jobs succeeded"
    );
    let store = store(&svc.state());
    let workers: std::collections::BTreeSet<&str> = ids
        .iter()
        .filter_map(|j| store.records.get(j)?.get("workerName")?.as_str())
        .collect();
    println!(
        "agent CPU for the {jobs} jobs: {:.2} s ({:.1} ms per job); wall {:.1} s; runners used: {}; \
         agent CPU since start {:.2} s; peak RSS {peak_rss:.1} MiB",
        cpu.as_secs_f64(),
        ms(cpu) / jobs as f64,
        wall.as_secs_f64(),
        workers.len(),
        total.as_secs_f64()
    );
    Ok(())
}

async fn real_vm_memory(binary: &Path, image: &Path) -> anyhow::Result<()> {
    println!(
        "\n## 3. agent memory with a real VM (examples/hello.yml, image {})",
        image.display()
    );
    let svc = LocalService::start(LocalServiceConfig::default()).await?;
    let proto = protocol_state(&svc.state());
    let root = registered(&svc, image, 1).await?;
    let mut settings = Settings::load(root.path())?;
    settings.vm.cpus = 1;
    settings.vm.memory_mib = 512;
    settings.save(root.path())?;
    let agent = spawn_agent(binary, root.path(), None)?;
    let pid = agent.id().context("agent pid")?;
    wait_for("the session", || proto.sessions().len() == 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_rss, _) = rss_mib(pid);
    let secrets = [("DEMO_TOKEN".to_owned(), "bench-secret-value".to_owned())];
    let started = Instant::now();
    let job = queue(&svc, HELLO, &secrets)?;
    let mut sampled_peak: f64 = 0.0;
    wait_for("the job's completion", || {
        sampled_peak = sampled_peak.max(rss_mib(pid).0);
        completed(&proto, &job)
    })
    .await?;
    let wall = started.elapsed();
    let (_, hwm) = rss_mib(pid);
    stop(agent).await;
    println!(
        "job {} in {:.1} s; agent RSS idle {idle_rss:.1} MiB, during the job max sampled \
         {sampled_peak:.1} MiB, VmHWM {hwm:.1} MiB",
        result_of(&proto, &job),
        wall.as_secs_f64()
    );
    Ok(())
}
