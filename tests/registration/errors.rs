//! Registration errors: a wrong token, an unreachable server, a URL that is neither a
//! repository nor an organisation, transient server errors (retried), and credentials that are
//! corrupt or readable by others.

use super::*;

#[tokio::test]
async fn wrong_token_is_refused_with_a_clear_message() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = svc.repo_url("o", "r");
    let err = cli(
        dir.path(),
        &[
            "register",
            "--url",
            &url,
            "--token",
            "WRONG",
            "--unattended",
            "--name",
            "x",
        ],
    )
    .await
    .unwrap_err();
    let msg = chain(&err);
    assert!(
        msg.contains("token was refused") && msg.contains("404"),
        "{msg}"
    );
    assert!(!msg.contains("WRONG"), "the token is not echoed: {msg}");
    // Not retried: 404 means a bad token.
    let exchanges = svc
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("runner-registration"))
        .count();
    assert_eq!(exchanges, 1);

    svc.inject(Fault::respond(
        "POST",
        "runner-registration",
        401,
        r#"{"message":"Bad credentials"}"#,
    ));
    let err = register(dir.path(), &url, "x", &[]).await.unwrap_err();
    assert!(chain(&err).contains("401"), "{err:#}");
    assert!(!reg_dir(dir.path(), "x").exists());
}

#[tokio::test]
async fn unreachable_server_error_contains_the_url() {
    let svc = service(false).await;
    let url = svc.repo_url("o", "r");
    let api = format!("{}/api/v3/actions/runner-registration", svc.url());
    svc.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let err = register(dir.path(), &url, "x", &[]).await.unwrap_err();
    assert!(chain(&err).contains(&api), "{err:#}");
}

#[tokio::test]
async fn url_that_is_neither_repo_nor_org_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = register(dir.path(), "http://127.0.0.1:9/a/b/c", "x", &[])
        .await
        .unwrap_err();
    assert!(chain(&err).contains("expected a repository URL"), "{err:#}");
}

#[tokio::test]
async fn transient_server_errors_are_retried() {
    let svc = service(false).await;
    svc.inject(Fault::respond("POST", "/agents", 503, "{}"));
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &svc.repo_url("o", "r"), "x", &[])
        .await
        .unwrap();
    let adds = svc
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/agents"))
        .count();
    assert_eq!(adds, 2);
}

#[tokio::test]
async fn corrupt_or_exposed_credentials_are_refused_by_name() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &svc.repo_url("o", "r"), "x", &[])
        .await
        .unwrap();
    let rd = reg_dir(dir.path(), "x");

    let creds = rd.join(".credentials");
    let saved = std::fs::read(&creds).unwrap();
    std::fs::write(&creds, b"{ not json").unwrap();
    let err = Registration::load(&rd).unwrap_err();
    assert!(
        err.to_string().contains(&creds.display().to_string())
            && err.to_string().contains("corrupt"),
        "{err}"
    );
    std::fs::write(&creds, saved).unwrap();

    let key = rd.join(".credentials_rsaparams");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Registration::load(&rd).unwrap_err();
    assert!(
        err.to_string().contains(&key.display().to_string())
            && err.to_string().contains("chmod 600"),
        "{err}"
    );
    // status reports the problem instead of failing.
    let report = ghrunner_vm::agent::status::collect(dir.path()).unwrap();
    assert!(
        report.runners[0]
            .credentials
            .contains("readable by group or others")
    );
}
