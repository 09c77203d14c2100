//! Crash recovery with real VMs: `ghrunner-vm run` is killed with SIGKILL while a job runs in a
//! QEMU VM (TCG) whose disk is a qcow2 overlay. QEMU and passt die with the agent within 2 s
//! (parent-death signal); the overlay stays on disk, and the restarted agent reaps it before
//! serving, reconnects (deleting the dead session it recorded) and runs the next job. Needs
//! qemu-system-x86_64, qemu-utils, passt and what the tiny recipe needs
//! (tests/install-deps.sh installs them); fails naming what is missing.

mod support;
use support::agent_proc;
use support::cli;
use support::disk;
use support::wait;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ghrunner_vm::localsvc::LocalService;
use ghrunner_vm::localsvc::protocol::{ProtocolState, protocol_state};
use ghrunner_vm::localsvc::reporting::store;
use tokio::process::Child;
use wait::eventually;

const LONG_JOB: &str = r#"
on: push
jobs:
  long:
    runs-on: [self-hosted, tiny]
    steps:
      - run: echo long-job-started; sleep 600
"#;

const NEXT_JOB: &str = r#"
on: push
jobs:
  next:
    runs-on: [self-hosted, tiny]
    steps:
      - run: echo next-job-ran-in-$(uname -s)
"#;

/// Generous: VMs boot under TCG on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(240);

fn agent(root: &Path) -> Child {
    agent_proc::spawn_run(
        Path::new(env!("CARGO_BIN_EXE_ghrunner-vm")),
        root,
        Stdio::inherit(),
    )
}

/// Live (non-zombie) qemu processes whose command line names `dir`.
fn qemu_pids(dir: &Path) -> Vec<u32> {
    helper_pids(dir, "qemu-system")
}

/// Live (non-zombie) processes whose command line names `program` and `dir`.
fn helper_pids(dir: &Path, program: &str) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let name = String::from_utf8_lossy(argv0);
        let name = name.rsplit('/').next().unwrap_or_default();
        if name.starts_with(program) && text.contains(&needle) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Live processes named `program` among the descendants of `root` (passt's command line names
/// no VM directory: it talks to QEMU over an inherited socket).
fn descendants(root: u32, program: &str) -> Vec<u32> {
    let mut parents = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.first() != Some(&"Z") {
                if let Some(ppid) = fields.get(1).and_then(|p| p.parse::<u32>().ok()) {
                    parents.insert(pid, ppid);
                }
            }
        }
    }
    let descends = |mut pid: u32| {
        while let Some(&parent) = parents.get(&pid) {
            if parent == root {
                return true;
            }
            pid = parent;
        }
        false
    };
    parents
        .keys()
        .copied()
        .filter(|&pid| descends(pid) && is_named(pid, program))
        .collect()
}

fn is_named(pid: u32, program: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(argv0)
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(program))
}

/// Whether `pid` is alive (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Files named `disk.qcow2` under `dir` (the VMs' overlays).
fn overlays(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join("disk.qcow2"))
        .filter(|p| p.exists())
        .collect()
}

fn step_log_contains(svc: &LocalService, job: &str, text: &str) -> bool {
    let store = store(&svc.state());
    store
        .records
        .iter()
        .filter(|(_, r)| r["parentId"].as_str() == Some(job))
        .any(|(id, _)| store.record_log(id).is_some_and(|log| log.contains(text)))
        || store
            .feed
            .iter()
            .any(|m| m.lines.iter().any(|l| l.contains(text)))
}

fn session_count(proto: &ProtocolState) -> usize {
    proto.sessions().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_a_vm_that_the_restarted_agent_reaps_before_serving_again() {
    let tiny = support::image::tiny_image();
    let image_dir = tempfile::tempdir().unwrap();
    let image = disk::with_blank_disk(&tiny, image_dir.path());
    let svc = cli::service(false).await;
    let root = tempfile::tempdir().unwrap();
    agent_proc::register_small(&svc, root.path(), "crashy", &image).await;
    let vms = root.path().join("vms");
    let proto = protocol_state(&svc.state());

    // 1. A long job runs in a VM; the agent dies with SIGKILL.
    let mut first = agent(root.path());
    let long = agent_proc::queue(&svc, LONG_JOB);
    eventually("the long job's step to print", LIMIT, || {
        step_log_contains(&svc, &long, "long-job-started").then_some(())
    })
    .await;
    let running_qemu = qemu_pids(root.path());
    assert_eq!(
        running_qemu.len(),
        1,
        "one VM runs the job: {running_qemu:?}"
    );
    let agent_pid = first.id().expect("the agent runs");
    let running_passt = descendants(agent_pid, "passt");
    assert_eq!(running_passt.len(), 1, "its passt: {running_passt:?}");
    // Run as root, the agent runs its helpers as an unprivileged user.
    if nix::unistd::geteuid().is_root() {
        for pid in running_qemu.iter().chain(&running_passt) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap();
            assert_ne!(uid, "0", "helper {pid} runs as root");
        }
    }
    first.kill().await.expect("SIGKILL the agent");
    first.wait().await.unwrap();
    // The VM dies with its agent (parent-death signal): no QEMU or passt keeps the job's
    // network and tokens alive. Polled up to 2 s, as the issue asks.
    let gone = tokio::time::timeout(Duration::from_secs(2), async {
        while !qemu_pids(root.path()).is_empty() || running_passt.iter().any(|&p| alive(p)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "QEMU {:?} / passt {:?} outlived the killed agent by 2 s",
        qemu_pids(root.path()),
        running_passt
            .iter()
            .filter(|&&p| alive(p))
            .collect::<Vec<_>>()
    );
    let orphan_overlays = overlays(&vms);
    assert_eq!(orphan_overlays.len(), 1, "its overlay is still on disk");
    assert!(proto.job(&long).unwrap().completion.is_none());

    // 2. The restarted agent reaps the orphan's files before it serves, and reconnects.
    let mut second = agent(root.path());
    eventually("the orphaned VM to be reaped", LIMIT, || {
        (qemu_pids(root.path()).is_empty() && overlays(&vms).is_empty()).then_some(())
    })
    .await;
    assert!(
        !orphan_overlays[0].exists() && !orphan_overlays[0].parent().unwrap().exists(),
        "the orphan's directory is removed"
    );
    eventually("one session again", LIMIT, || {
        (session_count(&proto) == 1).then_some(())
    })
    .await;

    // 3. The next job runs to success in a fresh VM.
    let next = agent_proc::queue(&svc, NEXT_JOB);
    let completion = eventually("the next job to complete", LIMIT, || {
        proto.job(&next).and_then(|r| r.completion)
    })
    .await;
    assert_eq!(completion["result"], "succeeded", "{completion}");
    assert!(step_log_contains(&svc, &next, "next-job-ran-in-Linux"));

    // 4. A clean stop leaves nothing behind.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .expect("the agent stops after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(qemu_pids(root.path()).is_empty());
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left: {left:?}");
    assert_eq!(session_count(&proto), 0);
}
