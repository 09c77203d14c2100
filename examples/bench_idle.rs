//! Idle cost of `ghrunner-vm run`, worst case: the local service answers every long poll at
//! once with "no message", so only the listener's empty-poll guard keeps it from spinning.
//!
//! ```text
//! cargo build --features test-hooks && cargo run --example bench_idle -- [SECONDS] [PATH-TO-ghrunner-vm]
//! ```
//!
//! Starts the local service in this process, registers a runner in a temp dir, spawns the
//! binary (`run`, official timings, the hidden sleep executor since no job arrives), and reads
//! the child's utime+stime from `/proc/<pid>/stat` over the window (after a 5 s warm-up).
//! Prints CPU seconds, % of one core, and the number of polls the service saw.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ghrunner_vm::config::{Registration, RunnerSettings};
use ghrunner_vm::crypto::rsa::RunnerKey;
use ghrunner_vm::localsvc::protocol::protocol_state;
use ghrunner_vm::localsvc::{LocalService, LocalServiceConfig};

/// Warm-up before measuring (session creation, first token).
const WARM_UP: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let binary = args
        .next()
        .unwrap_or_else(|| "target/debug/ghrunner-vm".into());
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let proto = protocol_state(&svc.state());
    proto.set_poll_hold(Duration::ZERO);
    let key = RunnerKey::generate().unwrap();
    let (agent_id, credentials) = svc.seed_runner(&key, Some("bench"), "2.330.0", false);
    let root = tempfile::tempdir().unwrap();
    Registration {
        dir: root.path().join("runners/bench"),
        runner: RunnerSettings {
            agent_id,
            agent_name: "bench".into(),
            pool_id: 1,
            server_url: svc.tenant_url(),
            ..Default::default()
        },
        credentials,
        key,
    }
    .save()
    .unwrap();
    let mut child = tokio::process::Command::new(&binary)
        .arg("--dir")
        .arg(root.path())
        .arg("run")
        .env("GHRUNNER_VM_TEST_EXECUTOR", "sleep:1000")
        .env("GHRUNNER_VM_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e} (run `cargo build` first)"));
    let pid = child.id().unwrap();
    tokio::time::sleep(WARM_UP).await;
    let polls = || {
        svc.requests()
            .iter()
            .filter(|r| r.path.contains("/messages"))
            .count()
    };
    let (t0, p0, start) = (support::bench::cpu_time(pid), polls(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (t1, p1, elapsed) = (support::bench::cpu_time(pid), polls(), start.elapsed());
    let cpu = (t1 - t0).as_secs_f64();
    println!(
        "idle run, polls answered empty at once: {:.2} s CPU in {:.1} s = {:.3} % of one core; {} polls",
        cpu,
        elapsed.as_secs_f64(),
        100.0 * cpu / elapsed.as_secs_f64(),
        p1 - p0
    );
    let _ = child.kill().await;
}
