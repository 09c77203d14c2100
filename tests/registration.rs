//! `register`, `remove` and `status` against the local service: both flows with repo and org
//! URLs, --replace, --count, --jitconfig, --image, labels, and the error cases.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ghrunner_vm::client::{HttpClient, TokenProvider};
use ghrunner_vm::config::runner::Registration;
use ghrunner_vm::config::{Settings, jit};
use ghrunner_vm::crypto::jwt::JwtAlgorithm;
use ghrunner_vm::localsvc::{DEFAULT_REMOVE_TOKEN, Fault, LocalService};
use support::cli::{chain, cli, reg_dir, register, service};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Registers through `url` and checks the files, the server's record and a token exchange.
async fn register_and_check(svc: &LocalService, url: &str, v2: bool) {
    let dir = tempfile::tempdir().unwrap();
    register(
        dir.path(),
        url,
        "build-01",
        &["--labels", "gpu,big", "--ephemeral", "--disable-update"],
    )
    .await
    .unwrap();
    let rd = reg_dir(dir.path(), "build-01");
    for file in [".runner", ".credentials", ".credentials_rsaparams"] {
        assert_eq!(mode(&rd.join(file)), 0o600, "{file}");
    }
    let reg = Registration::load(&rd).unwrap();
    assert_eq!(reg.runner.agent_name, "build-01");
    assert_eq!(reg.runner.git_hub_url, url);
    assert!(reg.runner.ephemeral && reg.runner.disable_update);
    assert_eq!(reg.runner.use_runner_admin_flow, v2);
    assert_eq!(reg.runner.use_v2_flow, v2);
    assert_eq!(
        reg.runner.labels,
        ["self-hosted", "Linux", "X64", "gpu", "big"]
    );
    assert_eq!(reg.runner.pool_name.as_deref(), Some("Default"));

    // The server holds the runner with our public key and the same labels.
    let agent = svc
        .state()
        .lock()
        .agents
        .get(&reg.runner.agent_id)
        .cloned()
        .unwrap();
    assert_eq!(agent.name, "build-01");
    assert_eq!(agent.public_key, reg.key.task_agent_public_key());
    assert_eq!(agent.runner_admin, v2);
    assert!(agent.ephemeral && agent.disable_update);
    let label_names: Vec<_> = agent.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(label_names, ["self-hosted", "Linux", "X64", "gpu", "big"]);

    // Every request carried a User-Agent; the exchange used RemoteAuth.
    let requests = svc.requests();
    assert!(requests.iter().all(|r| {
        r.header("user-agent")
            .is_some_and(|ua| ua.contains("ghrunner-vm/"))
    }));
    let exchange = requests
        .iter()
        .find(|r| r.path == "/api/v3/actions/runner-registration")
        .unwrap();
    assert!(
        exchange
            .header("authorization")
            .unwrap()
            .starts_with("RemoteAuth ")
    );
    assert_eq!(exchange.body_json().unwrap()["runner_event"], "register");

    // The stored credential obtains a token (RS256 legacy with FIPS off; PS256 runner-admin).
    let tokens = TokenProvider::for_registration(HttpClient::new().unwrap(), &reg).unwrap();
    let alg = if v2 {
        JwtAlgorithm::PS256
    } else {
        JwtAlgorithm::RS256
    };
    assert_eq!(tokens.algorithm(), alg);
    tokens.token().await.unwrap();
}

#[tokio::test]
async fn legacy_flow_with_a_repository_url() {
    let svc = service(false).await;
    register_and_check(&svc, &svc.repo_url("octo", "hello"), false).await;
    let paths: Vec<_> = svc
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for expected in [
        "GET /_services/pipelines/_apis/connectionData",
        "GET /_services/pipelines/_apis/distributedtask/pools",
        "GET /_services/pipelines/_apis/distributedtask/pools/0/agents",
        "POST /_services/pipelines/_apis/distributedtask/pools/1/agents",
        "POST /_services/pipelines/_apis/oauth2/token",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
}

#[tokio::test]
async fn legacy_flow_with_an_organisation_url() {
    let svc = service(false).await;
    register_and_check(&svc, &svc.org_url("octo"), false).await;
}

#[tokio::test]
async fn runner_admin_flow_with_a_repository_url() {
    let svc = service(true).await;
    register_and_check(&svc, &svc.repo_url("octo", "hello"), true).await;
    let requests = svc.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/api/v3/repos/octo/hello/actions/runner-groups")
    );
    let reg = requests
        .iter()
        .find(|r| r.path == "/api/v3/actions/runners/register")
        .unwrap();
    let body = reg.body_json().unwrap();
    assert!(
        body["public_key"]
            .as_str()
            .unwrap()
            .starts_with("<RSAKeyValue><Modulus>")
    );
    assert_eq!(body["group_id"], 1);
    assert!(
        !requests
            .iter()
            .any(|r| r.path.contains("distributedtask/pools/1/agents"))
    );
}

#[tokio::test]
async fn runner_admin_flow_with_an_organisation_url() {
    let svc = service(true).await;
    register_and_check(&svc, &svc.org_url("octo"), true).await;
    assert!(
        svc.requests()
            .iter()
            .any(|r| r.path == "/api/v3/orgs/octo/actions/runner-groups")
    );
}

async fn replace_flow(v2: bool) {
    let svc = service(v2).await;
    let url = svc.repo_url("octo", "hello");
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &url, "r1", &[]).await.unwrap();
    let first = Registration::load(&reg_dir(dir.path(), "r1")).unwrap();

    // Locally registered already: refused without --replace, naming the remedy.
    let err = register(dir.path(), &url, "r1", &[]).await.unwrap_err();
    assert!(
        chain(&err).contains("already registered") && chain(&err).contains("--replace"),
        "{err:#}"
    );

    // Registered on the server only (another machine): refused by the server check.
    let other = tempfile::tempdir().unwrap();
    let err = register(other.path(), &url, "r1", &[]).await.unwrap_err();
    assert!(
        chain(&err).contains("already exists") && chain(&err).contains("--replace"),
        "{err:#}"
    );
    assert!(
        !reg_dir(other.path(), "r1").join(".runner").exists(),
        "nothing written on failure"
    );

    register(dir.path(), &url, "r1", &["--replace", "--labels", "new"])
        .await
        .unwrap();
    let second = Registration::load(&reg_dir(dir.path(), "r1")).unwrap();
    assert_eq!(
        second.runner.agent_id, first.runner.agent_id,
        "the same runner is replaced"
    );
    assert_ne!(second.key, first.key, "with a new key");
    let state = svc.state();
    let state = state.lock();
    assert_eq!(state.agents.len(), 1);
    let agent = &state.agents[&first.runner.agent_id];
    assert_eq!(agent.public_key, second.key.task_agent_public_key());
    assert!(agent.labels.iter().any(|l| l.name == "new"));
}

#[tokio::test]
async fn replace_in_the_legacy_flow_puts_the_existing_agent() {
    replace_flow(false).await;
}

#[tokio::test]
async fn replace_in_the_runner_admin_flow() {
    replace_flow(true).await;
}

#[tokio::test]
async fn count_registers_numbered_runners() {
    let svc = service(false).await;
    let dir = tempfile::tempdir().unwrap();
    register(
        dir.path(),
        &svc.repo_url("o", "r"),
        "pool",
        &["--count", "3"],
    )
    .await
    .unwrap();
    for i in 1..=3 {
        let reg = Registration::load(&reg_dir(dir.path(), &format!("pool-{i}"))).unwrap();
        assert_eq!(reg.runner.agent_name, format!("pool-{i}"));
    }
    let names: Vec<_> = svc
        .state()
        .lock()
        .agents
        .values()
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(names, ["pool-1", "pool-2", "pool-3"]);
}

#[tokio::test]
async fn jitconfig_is_written_without_contacting_the_server_and_works() {
    // Make a real registration on the service, then hand it over as a JIT blob.
    let svc = service(false).await;
    let staging = tempfile::tempdir().unwrap();
    register(
        staging.path(),
        &svc.repo_url("o", "r"),
        "jit-1",
        &["--ephemeral"],
    )
    .await
    .unwrap();
    let reg = Registration::load(&reg_dir(staging.path(), "jit-1")).unwrap();
    let blob = jit::encode(&reg.runner, &reg.credentials, &reg.key);
    let before = svc.requests().len();

    let dir = tempfile::tempdir().unwrap();
    cli(
        dir.path(),
        &["register", "--jitconfig", &blob, "--unattended"],
    )
    .await
    .unwrap();
    assert_eq!(
        svc.requests().len(),
        before,
        "JIT configuration makes no registration calls"
    );
    let rd = reg_dir(dir.path(), "jit-1");
    assert_eq!(mode(&rd.join(".credentials_rsaparams")), 0o600);
    let loaded = Registration::load(&rd).unwrap();
    assert_eq!(loaded.runner, reg.runner);
    assert_eq!(loaded.key, reg.key);
    TokenProvider::for_registration(HttpClient::new().unwrap(), &loaded)
        .unwrap()
        .token()
        .await
        .unwrap();

    let err = cli(
        dir.path(),
        &["register", "--jitconfig", "bm90IGpzb24=", "--unattended"],
    )
    .await
    .unwrap_err();
    assert!(chain(&err).contains("--jitconfig"), "{err:#}");

    // The blob holds the private key: it can also come from a file, stdin or the environment,
    // out of the process list.
    let file = dir.path().join("jit.txt");
    std::fs::write(&file, format!("{blob}\n")).unwrap();
    let binary = |args: &[&str], stdin: Option<&str>, env: Option<&str>| {
        let target = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"));
        command
            .arg("--dir")
            .arg(target.path())
            .args(args)
            .env_remove("GHRUNNER_VM_JITCONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(value) = env {
            command.env("GHRUNNER_VM_JITCONFIG", value);
        }
        let mut child = command.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let loaded = Registration::load(&reg_dir(target.path(), "jit-1")).unwrap();
        assert_eq!(loaded.key, reg.key, "{args:?}");
    };
    let at_file = format!("@{}", file.display());
    binary(
        &["register", "--jitconfig", &at_file, "--unattended"],
        None,
        None,
    );
    binary(
        &["register", "--jitconfig", "-", "--unattended"],
        Some(&blob),
        None,
    );
    binary(&["register", "--unattended"], None, Some(&blob));
}

#[path = "registration/errors.rs"]
mod errors;
#[path = "registration/options.rs"]
mod options;
