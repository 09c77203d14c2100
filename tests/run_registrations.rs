//! `register --count N` then one `ghrunner-vm run` process serving every registration: each
//! runner takes one job at a time, the jobs run in parallel, and the host's VM budget
//! (`limits:` in config.yaml) bounds how many VMs exist at once. The binary runs with the
//! hidden null hypervisor (`GHRUNNER_VM_TEST_HYPERVISOR=null:<ms>`): everything but the guest is
//! real (registration, sessions, encrypted messages, the executor with its image choice, budget,
//! planning and reporting, completion, metrics).

mod support;
use support::cli;
use support::wait;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghrunner_vm::config::Settings;
use ghrunner_vm::localsvc::protocol::protocol_state;
use ghrunner_vm::localsvc::reporting::store;
use ghrunner_vm::localsvc::{LocalService, WorkflowJob};
use serde_json::Value;
use support::fake_image::{TWO_STEPS as WORKFLOW, fake_image};
use wait::eventually;

fn time(record: &Value, field: &str) -> Option<DateTime<Utc>> {
    record.get(field)?.as_str()?.parse().ok()
}

/// Per job: the runner that ran it and the span from its first step's start to its last
/// step's finish (timeline records as the agent reported them).
fn job_spans(svc: &LocalService, jobs: &[String]) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let store = store(&svc.state());
    jobs.iter()
        .map(|job| {
            let record = &store.records[job];
            let worker = record["workerName"].as_str().unwrap_or_default().to_owned();
            let steps: Vec<&Value> = store
                .records
                .values()
                .filter(|r| r["parentId"].as_str() == Some(job.as_str()))
                .collect();
            assert!(steps.len() >= 2, "job {job} has step records: {steps:?}");
            let start = steps.iter().filter_map(|r| time(r, "startTime")).min();
            let finish = steps.iter().filter_map(|r| time(r, "finishTime")).max();
            (
                worker,
                start.expect("a step started"),
                finish.expect("a step finished"),
            )
        })
        .collect()
}

/// The most spans covering one instant.
fn max_overlap(spans: &[(String, DateTime<Utc>, DateTime<Utc>)]) -> usize {
    spans
        .iter()
        .map(|(_, at, _)| spans.iter().filter(|(_, s, f)| s <= at && at < f).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_process_serves_every_registration_in_parallel_within_the_vm_budget() {
    let svc = cli::service(false).await;
    let root = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let spec = fake_image(image.path());
    cli::register(
        root.path(),
        &svc.repo_url("octo-org", "hello"),
        "fleet",
        &["--count", "3", "--image", &spec],
    )
    .await
    .expect("register --count 3");
    for n in 1..=3 {
        assert!(
            cli::reg_dir(root.path(), &format!("fleet-{n}"))
                .join(".runner")
                .is_file()
        );
    }
    // Room for two 1-CPU VMs at a time.
    let mut settings = Settings::load(root.path()).unwrap();
    settings.vm.cpus = 1;
    settings.vm.memory_mib = 256;
    settings.limits.max_vm_cpus = 2;
    settings.limits.max_vm_memory_mib = 4096;
    settings.save(root.path()).unwrap();

    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
        .arg("--dir")
        .arg(root.path())
        .arg("run")
        .env("GHRUNNER_VM_TEST_HYPERVISOR", "null:700")
        .env("GHRUNNER_VM_LOG", "ghrunner_vm=info")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let proto = protocol_state(&svc.state());
    eventually("three sessions", Duration::from_secs(30), || {
        (proto.sessions().len() == 3).then_some(())
    })
    .await;
    let jobs: Vec<String> = (0..3)
        .map(|_| {
            svc.queue_workflow_job(&WorkflowJob {
                yaml: WORKFLOW,
                file_name: ".github/workflows/fleet.yml",
                job: None,
                workflow_name: "fleet",
                secrets: &[],
            })
            .expect("the workflow compiles")
            .job_id
        })
        .collect();
    for job in &jobs {
        let completion = eventually("every job completed", Duration::from_secs(60), || {
            proto.job(job).and_then(|r| r.completion)
        })
        .await;
        assert_eq!(completion["result"], "succeeded", "{completion}");
    }

    let spans = job_spans(&svc, &jobs);
    let workers: BTreeSet<&str> = spans.iter().map(|(w, _, _)| w.as_str()).collect();
    assert_eq!(
        workers,
        BTreeSet::from(["fleet-1", "fleet-2", "fleet-3"]),
        "each registration runs one of the jobs: {spans:?}"
    );
    assert_eq!(
        max_overlap(&spans),
        2,
        "two jobs run at once (budget: two 1-CPU VMs): {spans:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), agent.wait())
        .await
        .expect("the agent stops after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(proto.sessions().is_empty(), "every session deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_broker_path_the_vm_boots_while_the_job_is_acquired() {
    let svc = cli::service(true).await;
    let root = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let spec = fake_image(image.path());
    cli::register(
        root.path(),
        &svc.repo_url("octo-org", "hello"),
        "broker",
        &["--image", &spec],
    )
    .await
    .expect("register (runner-admin flow)");
    let agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
        .arg("--dir")
        .arg(root.path())
        .args(["run", "--once"])
        .env("GHRUNNER_VM_TEST_HYPERVISOR", "null")
        .env("GHRUNNER_VM_LOG", "ghrunner_vm=debug")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let proto = protocol_state(&svc.state());
    eventually("the broker session", Duration::from_secs(30), || {
        (proto.sessions().len() == 1).then_some(())
    })
    .await;
    let job = svc
        .queue_workflow_job_on_broker(&WorkflowJob {
            yaml: WORKFLOW,
            file_name: ".github/workflows/fleet.yml",
            job: None,
            workflow_name: "fleet",
            secrets: &[],
        })
        .expect("the workflow compiles")
        .job_id;
    let output = tokio::time::timeout(Duration::from_secs(60), agent.wait_with_output())
        .await
        .expect("`run --once` ends after the job")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let record = proto.job(&job).expect("job record");
    assert!(record.acquired, "acquired through the run service");
    assert_eq!(
        record.completion.expect("completed")["conclusion"],
        "succeeded"
    );
    let prepared = log
        .find("booting the VM while the job is acquired")
        .unwrap_or_else(|| panic!("the VM was not prepared during acquire:\n{log}"));
    let booted = log.find("VM booted").expect("the job ran");
    assert!(prepared < booted, "{log}");
}
