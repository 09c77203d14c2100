//! Registration options and the other commands: labels, runner groups, `--image`, `remove`
//! on both flows and `status --json`.

use super::*;

#[tokio::test]
async fn no_default_labels_needs_a_label() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = svc.repo_url("o", "r");
    let err = register(dir.path(), &url, "x", &["--no-default-labels"])
        .await
        .unwrap_err();
    assert!(
        chain(&err).contains("--no-default-labels needs at least one label"),
        "{err:#}"
    );
    register(
        dir.path(),
        &url,
        "x",
        &["--no-default-labels", "--labels", "only"],
    )
    .await
    .unwrap();
    let reg = Registration::load(&reg_dir(dir.path(), "x")).unwrap();
    assert_eq!(reg.runner.labels, ["only"]);
}

#[tokio::test]
async fn runner_group_by_name_and_unknown_group() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = svc.repo_url("o", "r");
    let err = register(dir.path(), &url, "x", &["--runner-group", "nope"])
        .await
        .unwrap_err();
    assert!(
        chain(&err).contains("no runner group named \"nope\""),
        "{err:#}"
    );
    register(dir.path(), &url, "x", &["--runner-group", "GPU-runners"])
        .await
        .unwrap();
    let reg = Registration::load(&reg_dir(dir.path(), "x")).unwrap();
    assert_eq!(reg.runner.pool_id, 2);
}

#[tokio::test]
async fn image_label_is_added_to_labels_and_settings() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    std::fs::write(image.path().join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(
        image.path().join("manifest.json"),
        br#"{"name":"tiny","arch":"x86_64","kernel":"vmlinuz","user":"root","shell":"sh","work_dir":"/work"}"#,
    )
    .unwrap();
    let spec = format!("tiny={}", image.path().display());
    register(
        dir.path(),
        &svc.repo_url("o", "r"),
        "x",
        &["--image", &spec],
    )
    .await
    .unwrap();
    let reg = Registration::load(&reg_dir(dir.path(), "x")).unwrap();
    assert!(reg.runner.labels.contains(&"tiny".to_owned()));
    let settings = Settings::load(dir.path()).unwrap();
    assert_eq!(settings.images["tiny"], image.path());

    let err = register(
        dir.path(),
        &svc.repo_url("o", "r"),
        "y",
        &["--image", "bad=/nonexistent"],
    )
    .await
    .unwrap_err();
    assert!(
        chain(&err).contains("not a runner image directory"),
        "{err:#}"
    );
}

async fn remove_flow(v2: bool) {
    let svc = service(v2).await;
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &svc.org_url("octo"), "gone", &[])
        .await
        .unwrap();
    assert_eq!(svc.agents().len(), 1);

    let err = cli(dir.path(), &["remove", "--token", "WRONG", "--unattended"])
        .await
        .unwrap_err();
    assert!(!chain(&err).contains("WRONG"), "{err:#}");
    assert!(
        reg_dir(dir.path(), "gone").join(".credentials").exists(),
        "files kept on failure"
    );

    cli(
        dir.path(),
        &["remove", "--token", DEFAULT_REMOVE_TOKEN, "--unattended"],
    )
    .await
    .unwrap();
    assert!(svc.agents().is_empty());
    assert!(!reg_dir(dir.path(), "gone").join(".runner").exists());
    assert!(
        !reg_dir(dir.path(), "gone")
            .join(".credentials_rsaparams")
            .exists()
    );
}

#[tokio::test]
async fn remove_deletes_on_the_server_then_locally_legacy() {
    remove_flow(false).await;
}

#[tokio::test]
async fn remove_deletes_on_the_server_then_locally_runner_admin() {
    remove_flow(true).await;
}

#[tokio::test]
async fn status_json_lists_runners_without_secrets() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &svc.repo_url("o", "r"), "s1", &[])
        .await
        .unwrap();
    let report = ghrunner_vm::agent::status::collect(dir.path()).unwrap();
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(report.runners.len(), 1);
    assert_eq!(report.runners[0].name, "s1");
    assert_eq!(report.runners[0].credentials, "ok");
    let reg = Registration::load(&reg_dir(dir.path(), "s1")).unwrap();
    let params = reg.key.to_params();
    for secret in [
        &params.d,
        &params.p,
        &params.q,
        &reg.credentials.data.client_id,
    ] {
        assert!(!json.contains(secret.as_str()));
    }
    let text = ghrunner_vm::cli::status::render(&report);
    assert!(
        text.contains("Runner s1") && text.contains("Credentials:  ok"),
        "{text}"
    );
}
