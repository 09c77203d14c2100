//! The hidden test switches of `run` (`GHRUNNER_VM_TEST_EXECUTOR`,
//! `GHRUNNER_VM_TEST_HYPERVISOR`, `GHRUNNER_VM_TEST_TIMING_SCALE`) exist only in builds with the
//! `test-hooks` cargo feature. A binary built without it, as every release binary is, refuses to
//! start when one is set: it never fakes a job's success. The test suite itself is built with
//! the feature, so this test builds the binary once more without it (into
//! `target/no-test-hooks`).

mod support;
use support::cli;

use std::path::{Path, PathBuf};
use std::process::Command;

use ghrunner_vm::localsvc::protocol::protocol_state;
use serde_json::json;

/// A `ghrunner-vm` binary built without the `test-hooks` feature.
fn binary_without_test_hooks() -> PathBuf {
    if !cfg!(feature = "test-hooks") {
        return PathBuf::from(env!("CARGO_BIN_EXE_ghrunner-vm"));
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let main = tmp.parent().unwrap_or(tmp);
    let target = main.join("no-test-hooks");
    // The dependencies are the same with and without the feature: seed the second target
    // directory with hard links to the first one's artifacts, so that only this crate is
    // compiled again (seconds instead of minutes). Cargo writes new files for the crate (its
    // hashes differ with the feature) and never writes into the linked ones.
    if !target.join("debug").exists() {
        link_tree(&main.join("debug"), &target.join("debug"));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--bin", "ghrunner-vm", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building ghrunner-vm without test hooks failed"
    );
    target.join("debug").join("ghrunner-vm")
}

/// Mirrors `from` into `to` with hard links, leaving out cargo's lock file and the incremental
/// caches (both are written in place).
fn link_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).expect("create the target directory");
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == ".cargo-lock" || name == "incremental" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        match entry.file_type() {
            Ok(t) if t.is_dir() => link_tree(&src, &dst),
            Ok(t) if t.is_file() => {
                let _ = std::fs::hard_link(&src, &dst);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_without_test_hooks_refuses_them_and_fakes_nothing() {
    let binary = tokio::task::spawn_blocking(binary_without_test_hooks)
        .await
        .unwrap();
    let svc = cli::service(false).await;
    let proto = protocol_state(&svc.state());
    let root = tempfile::tempdir().unwrap();
    cli::register(
        root.path(),
        &svc.repo_url("octo-org", "hello"),
        "plain",
        &[],
    )
    .await
    .expect("register");
    let job_id = proto.enqueue_legacy_job(json!({
        "jobId": uuid::Uuid::new_v4().to_string(), "jobName": "must-not-fake",
        "plan": {"planId": uuid::Uuid::new_v4().to_string(), "scopeIdentifier": uuid::Uuid::new_v4().to_string(),
                 "planType": "actions", "version": 12},
        "timeline": {"id": uuid::Uuid::new_v4().to_string()}, "variables": {}, "steps": []
    }));
    for (hook, value) in [
        ("GHRUNNER_VM_TEST_EXECUTOR", "sleep:10"),
        ("GHRUNNER_VM_TEST_HYPERVISOR", "null"),
        ("GHRUNNER_VM_TEST_TIMING_SCALE", "0.01"),
    ] {
        let out = Command::new(&binary)
            .arg("--dir")
            .arg(root.path())
            .args(["run", "--once"])
            .env(hook, value)
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{hook}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{hook} is set, but this ghrunner-vm has no test hooks"
            )),
            "{hook}: {stderr}"
        );
    }
    let record = proto.job(&job_id).unwrap();
    assert!(
        record.completion.is_none() && record.delivered_at.is_none(),
        "no job was taken, let alone reported: {record:?}"
    );
}
