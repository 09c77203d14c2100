//! Benchmark: the agent's CPU time for the two floods of issue "Hostile guest" that cost CPU
//! rather than memory: 20,000 `::add-mask::` values each followed by a line printing it, and
//! 150,000 `::warning::` lines. Each runs as a job of a real `ghrunner-vm run` process, against
//! the embedded service, in a VM from the tiny image (TCG unless `GHRUNNER_VM_ACCEL` says
//! otherwise); the figure is the agent process's user + system CPU from /proc while the job is
//! served (the VM's boot and the guest's own work are QEMU's, not counted). Target: each under
//! 5 s.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_hostile -- <tiny image dir> [--runs 3] [--agent PATH]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;
use support::agent_proc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ghrunner_vm::localsvc::{LocalService, LocalServiceConfig};

const MASKS: &str =
    "seq 20000 | awk '{print \"::add-mask::hostile-value-\" $1; print \"line hostile-value-\" $1}'";
const WARNINGS: &str = "seq 150000 | sed 's/^/::warning::flood /'";
const TARGET: Duration = Duration::from_secs(5);

fn job(script: &str) -> String {
    format!(
        "on: push\njobs:\n  flood:\n    runs-on: [self-hosted, tiny]\n    steps:\n      - run: {script:?}\n"
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut image = None;
    let mut runs = 3usize;
    let mut agent_path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--agent" => agent_path = Some(args.next().context("--agent PATH")?),
            "-h" | "--help" => {
                println!(
                    "usage: bench_hostile <tiny image dir> [--runs N] [--agent PATH to ghrunner-vm]"
                );
                return Ok(());
            }
            other => image = Some(PathBuf::from(other)),
        }
    }
    let image = image.context(
        "usage: bench_hostile <tiny image dir> (build one with `ghrunner-vm image build tiny`)",
    )?;
    let binary = support::bench::agent_binary(agent_path)?;
    println!("bench_hostile: {}", support::bench::machine());
    println!(
        "agent {}, image {}, accel {}",
        binary.display(),
        image.display(),
        std::env::var("GHRUNNER_VM_ACCEL").unwrap_or_else(|_| "auto".into())
    );

    let svc = LocalService::start(LocalServiceConfig::default()).await?;
    let agent = agent_proc::Agent::start(&svc, &binary, &image).await;
    let warm = agent_proc::queue(&svc, &job("echo warm"));
    let done = agent_proc::completion(&svc, &warm).await;
    anyhow::ensure!(done["result"] == "succeeded", "warm-up job: {done}");

    for (name, script) in [
        ("20k add-mask + lines", MASKS),
        ("150k ::warning::", WARNINGS),
    ] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let before = agent.cpu();
            let id = agent_proc::queue(&svc, &job(script));
            let done = agent_proc::completion(&svc, &id).await;
            anyhow::ensure!(done["result"] == "succeeded", "{name}: {done}");
            samples.push(agent.cpu() - before);
        }
        let max = *samples.iter().max().unwrap();
        let min = *samples.iter().min().unwrap();
        let median = support::bench::percentile(&mut samples, 50.0);
        println!(
            "{name:<22} agent CPU per job: median {:.2} s, min {:.2} s, max {:.2} s over {runs} runs (target < {} s): {}",
            median.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64(),
            TARGET.as_secs(),
            if max < TARGET { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
