//! The built `ghrunner-vm` binary: register, status and remove against the local service,
//! exit codes and messages of usage errors.

use std::process::{Command, Output};

use ghrunner_vm::localsvc::{
    DEFAULT_REGISTRATION_TOKEN, DEFAULT_REMOVE_TOKEN, LocalService, LocalServiceConfig,
};

async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"));
    cmd.arg("--dir").arg(dir).args(args);
    for var in ["GHRUNNER_VM_TOKEN", "GHRUNNER_VM_DIR", "GHRUNNER_VM_LOG"] {
        cmd.env_remove(var);
    }
    // The latest runner release is read from nowhere (refused at once): only 127.0.0.1.
    cmd.env(
        "GHRUNNER_VM_RUNNER_RELEASES_URL",
        "http://127.0.0.1:9/releases/latest",
    );
    tokio::task::spawn_blocking(move || cmd.output().expect("run the binary"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_status_remove_through_the_binary() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = svc.repo_url("octo", "hello");
    let out = run(
        dir.path(),
        &[
            "register",
            "--url",
            &url,
            "--token",
            DEFAULT_REGISTRATION_TOKEN,
            "--unattended",
            "--name",
            "bin-1",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Exchanging the registration token"),
        "progress lines: {stdout}"
    );
    assert!(stdout.contains("Runner bin-1 registered"), "{stdout}");
    assert!(
        !stdout.contains(DEFAULT_REGISTRATION_TOKEN)
            && !text(&out.stderr).contains(DEFAULT_REGISTRATION_TOKEN)
    );

    let out = run(dir.path(), &["status", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runners"][0]["name"], "bin-1");
    assert_eq!(report["runners"][0]["credentials"], "ok");
    let out = run(dir.path(), &["status"]).await;
    assert!(
        text(&out.stdout).contains("Runner bin-1 (id "),
        "{}",
        text(&out.stdout)
    );

    let out = run(
        dir.path(),
        &["remove", "--token", DEFAULT_REMOVE_TOKEN, "--unattended"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(svc.agents().is_empty());
}

#[tokio::test]
async fn missing_url_in_unattended_mode_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["register", "--unattended", "--token", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--url is required"),
        "{}",
        text(&out.stderr)
    );

    let out = run(dir.path(), &["remove", "--unattended", "--token", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no runner is registered"),
        "{}",
        text(&out.stderr)
    );
}
