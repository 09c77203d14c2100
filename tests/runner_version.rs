//! The advertised runner version against a service that enforces a minimum, on both protocol
//! paths: a pinned version below the minimum stops `run` with exit code 7 and the fix after a
//! bounded number of requests; `auto` advertises the newest official release (from a mock
//! releases endpoint) in registration, sessions, polls and the User-Agent, caches it, and falls
//! back to the cache and then the baseline; a `RunnerVersionTooOld` followed by a newer
//! release reconnects and runs the next job; `RunnerRefresh`/`AgentRefresh` changes the
//! version of the next session.

mod support;
use support::cli;
use support::wait;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ghrunner_vm::agent::SleepExecutor;
use ghrunner_vm::client::HttpClient;
use ghrunner_vm::client::http::RetryPolicy;
use ghrunner_vm::config::Settings;
use ghrunner_vm::localsvc::protocol::{ProtocolEvent, ProtocolState, protocol_state};
use ghrunner_vm::localsvc::{LocalService, RecordedRequest};
use ghrunner_vm::version::{
    BASELINE, RELEASE_CACHE_FILE, Version, VersionConfig, VersionPolicy, VersionSetting,
    VersionSource,
};
use serde_json::{Value, json};
use support::listener::{Attached, job, listen_with, seed, stop};
use wait::eventually;

use support::wait::PATIENCE;

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

/// A version newer than the baseline by `minor` minors.
fn after_baseline(minor: u32) -> Version {
    Version::new(BASELINE.major, BASELINE.minor + minor, 0)
}

fn enqueue(proto: &ProtocolState, broker: bool, name: &str) -> String {
    if broker {
        proto.enqueue_broker_job(job(name))
    } else {
        proto.enqueue_legacy_job(job(name))
    }
}

async fn completed(proto: &ProtocolState, job_id: &str) {
    eventually("job completion", PATIENCE, || {
        proto.job(job_id).and_then(|r| r.completion)
    })
    .await;
}

fn is_poll(r: &RecordedRequest) -> bool {
    r.method == "GET" && (r.path.ends_with("/messages") || r.path.ends_with("/broker/message"))
}

fn is_session_create(r: &RecordedRequest) -> bool {
    r.method == "POST" && (r.path.ends_with("/sessions") || r.path.ends_with("/broker/session"))
}

fn query_param(r: &RecordedRequest, name: &str) -> Option<String> {
    let query = r.query.as_deref()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The version in a session-create body (`agent.version`).
fn session_version(r: &RecordedRequest) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    body["agent"]["version"].as_str().map(str::to_owned)
}

/// Writes `runner_version` and the service's releases URL into `<dir>/config.yaml`.
fn configure(dir: &Path, svc: &LocalService, setting: VersionSetting) {
    let mut settings = Settings::load(dir).unwrap();
    settings.runner_version = setting;
    settings.runner_releases_url = Some(svc.releases_url());
    std::fs::create_dir_all(dir).unwrap();
    settings.save(dir).unwrap();
}

async fn run_binary(dir: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
        .arg("--dir")
        .arg(dir)
        .arg("run")
        .env("GHRUNNER_VM_TEST_EXECUTOR", "sleep:200")
        .env("GHRUNNER_VM_TEST_TIMING_SCALE", "0.01")
        .env("GHRUNNER_VM_LOG", "ghrunner_vm=info")
        .env_remove("GHRUNNER_VM_RUNNER_VERSION")
        .env_remove("GHRUNNER_VM_RUNNER_RELEASES_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run starts")
}

async fn pinned_below_the_minimum_exits_7(broker: bool) {
    let svc = cli::service(broker).await;
    let root = tempfile::tempdir().unwrap();
    let pinned = v("2.331.0");
    configure(root.path(), &svc, VersionSetting::Pinned(pinned));
    cli::register(root.path(), &svc.repo_url("octo-org", "hello"), "old", &[])
        .await
        .expect("2.331.0 may still register");
    svc.set_min_runner_version(Some(after_baseline(1)));
    let child = run_binary(root.path()).await;
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("run stops by itself")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr:\n{stderr}");
    for needle in [
        "refuses runner version 2.331.0",
        "runner_version pinned to 2.331.0",
        "Runner version v2.331.0 is deprecated and cannot receive messages",
        "set `runner_version: auto`",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    let polls = svc.requests().iter().filter(|r| is_poll(r)).count();
    assert!(
        (1..=3).contains(&polls),
        "a rejected runner stops at once, it does not retry: {polls} polls"
    );
    assert!(
        !root.path().join(RELEASE_CACHE_FILE).exists(),
        "a pinned version never asks for releases"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_a_pinned_version_below_the_minimum_exits_7_with_the_fix() {
    pinned_below_the_minimum_exits_7(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_a_pinned_version_below_the_minimum_exits_7_with_the_fix() {
    pinned_below_the_minimum_exits_7(true).await;
}

async fn auto_advertises_the_newest_release(broker: bool) {
    let svc = cli::service(broker).await;
    let proto = protocol_state(&svc.state());
    let newest = after_baseline(3);
    svc.set_latest_runner_release(Some((newest, Utc::now() - chrono::TimeDelta::days(2))));
    svc.set_min_runner_version(Some(after_baseline(2)));
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), &svc, VersionSetting::Auto);
    cli::register(root.path(), &svc.repo_url("octo-org", "hello"), "new", &[])
        .await
        .expect("register");
    let newest_text = newest.to_string();
    // Registration.
    let registered = svc.agents().into_iter().next().unwrap();
    assert_eq!(registered.version, newest_text);
    let cached: Value = serde_json::from_slice(
        &std::fs::read(root.path().join(RELEASE_CACHE_FILE)).expect("release cached"),
    )
    .unwrap();
    assert_eq!(cached["version"], newest_text);

    let mut child = run_binary(root.path()).await;
    let job_id = enqueue(&proto, broker, "current");
    completed(&proto, &job_id).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let requests = svc.requests();
    let sessions: Vec<_> = requests.iter().filter(|r| is_session_create(r)).collect();
    assert!(!sessions.is_empty());
    for s in &sessions {
        assert_eq!(session_version(s).as_deref(), Some(newest_text.as_str()));
    }
    let polls: Vec<_> = requests.iter().filter(|r| is_poll(r)).collect();
    assert!(!polls.is_empty());
    for p in &polls {
        assert_eq!(
            query_param(p, "runnerVersion").as_deref(),
            Some(newest_text.as_str())
        );
    }
    let ua = format!("/{newest_text} ghrunner-vm/");
    for r in sessions.iter().chain(&polls) {
        let agent = r.header("user-agent").unwrap_or_default();
        assert!(agent.contains(&ua), "{} {}: {agent}", r.method, r.path);
    }
    // The day-old rule: the release was fetched once, by `register`; `run` used the cache.
    let fetches = requests
        .iter()
        .filter(|r| r.path.ends_with("/releases/latest"))
        .count();
    assert_eq!(fetches, 1, "fetched at most once a day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_auto_advertises_the_newest_release_everywhere() {
    auto_advertises_the_newest_release(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_auto_advertises_the_newest_release_everywhere() {
    auto_advertises_the_newest_release(true).await;
}

#[tokio::test]
async fn auto_falls_back_to_the_cache_then_to_the_baseline() {
    let svc = LocalService::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let newest = after_baseline(4);
    svc.set_latest_runner_release(Some((newest, Utc::now())));
    let config = || VersionConfig {
        setting: VersionSetting::Auto,
        releases_url: svc.releases_url(),
        cache_dir: Some(dir.path().to_owned()),
    };
    let http = HttpClient::with_retry(RetryPolicy::NONE).unwrap();
    let fetches = || {
        svc.requests()
            .iter()
            .filter(|r| r.path.ends_with("/releases/latest"))
            .count()
    };
    let fetched = VersionPolicy::resolve(config(), Some(http.clone())).await;
    assert_eq!(fetched.current().version, newest);
    assert_eq!(fetched.current().source, VersionSource::LatestRelease);
    assert_eq!(fetches(), 1);
    // Within a day: the cache, no request.
    let again = VersionPolicy::resolve(config(), Some(http.clone())).await;
    assert_eq!(again.current().source, VersionSource::Cache);
    assert_eq!(fetches(), 1);
    // The endpoint is down and the cache is stale: the cache, after one attempt.
    svc.set_latest_runner_release(None);
    let file = dir.path().join(RELEASE_CACHE_FILE);
    let mut cached: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    cached["fetched_at"] = json!((Utc::now() - chrono::TimeDelta::days(3)).to_rfc3339());
    std::fs::write(&file, cached.to_string()).unwrap();
    let offline = VersionPolicy::resolve(config(), Some(http.clone())).await;
    assert_eq!(offline.current().version, newest);
    assert_eq!(offline.current().source, VersionSource::Cache);
    assert_eq!(fetches(), 2);
    // No cache either: the baseline.
    std::fs::remove_file(&file).unwrap();
    let bare = VersionPolicy::resolve(config(), Some(http)).await;
    assert_eq!(bare.current().version, BASELINE);
    assert_eq!(bare.current().source, VersionSource::Baseline);
}

/// A listener in this process with an `auto` policy reading the service's releases.
async fn auto_listener(svc: &LocalService, broker: bool, cache: &Path) -> Attached {
    let config = VersionConfig {
        setting: VersionSetting::Auto,
        releases_url: svc.releases_url(),
        cache_dir: Some(cache.to_owned()),
    };
    let http = HttpClient::with_retry(RetryPolicy::NONE).unwrap();
    let versions = Arc::new(VersionPolicy::resolve(config, Some(http)).await);
    let executor = Arc::new(SleepExecutor {
        duration: Duration::from_millis(100),
    });
    listen_with(svc, seed(svc), broker, executor, versions)
}

fn session_versions(svc: &LocalService) -> Vec<String> {
    svc.requests()
        .iter()
        .filter(|r| is_session_create(r))
        .filter_map(session_version)
        .collect()
}

async fn rejection_then_newer_release(broker: bool) {
    let svc = cli::service(broker).await;
    let proto = protocol_state(&svc.state());
    let (first, second) = (
        after_baseline(1),
        Version::new(BASELINE.major, BASELINE.minor + 2, 1),
    );
    svc.set_latest_runner_release(Some((first, Utc::now())));
    let cache = tempfile::tempdir().unwrap();
    let runner = auto_listener(&svc, broker, cache.path()).await;
    let one = enqueue(&proto, broker, "before");
    completed(&proto, &one).await;
    assert_eq!(session_versions(&svc), [first.to_string()]);
    // GitHub moves on: the current version is refused, a newer release is out.
    svc.set_latest_runner_release(Some((second, Utc::now())));
    svc.set_min_runner_version(Some(Version::new(BASELINE.major, BASELINE.minor + 2, 0)));
    let two = enqueue(&proto, broker, "after");
    completed(&proto, &two).await;
    assert_eq!(
        session_versions(&svc),
        [first.to_string(), second.to_string()],
        "one new session with the newer version"
    );
    let last_poll = svc.requests().into_iter().rfind(is_poll).unwrap();
    assert_eq!(
        query_param(&last_poll, "runnerVersion").as_deref(),
        Some(second.to_string().as_str())
    );
    stop(runner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_a_rejection_followed_by_a_newer_release_reconnects_and_runs_the_next_job() {
    rejection_then_newer_release(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_a_rejection_followed_by_a_newer_release_reconnects_and_runs_the_next_job() {
    rejection_then_newer_release(true).await;
}

async fn refresh_changes_the_next_session(broker: bool) {
    let svc = cli::service(broker).await;
    let proto = protocol_state(&svc.state());
    let current = after_baseline(1);
    svc.set_latest_runner_release(Some((current, Utc::now())));
    let cache = tempfile::tempdir().unwrap();
    let runner = auto_listener(&svc, broker, cache.path()).await;
    let session = eventually("a session", PATIENCE, || {
        proto.events().iter().find_map(|e| match e {
            ProtocolEvent::SessionCreated { session_id, .. } => Some(session_id.clone()),
            _ => None,
        })
    })
    .await;
    let target = after_baseline(5);
    if broker {
        proto.enqueue_runner_refresh(&target.to_string());
    } else {
        proto.enqueue_agent_refresh(runner.agent_id, &target.to_string());
    }
    eventually("the refresh delivered", PATIENCE, || {
        (proto.queued() == 0).then_some(())
    })
    .await;
    // The session in use keeps its version; the next one advertises the target.
    assert_eq!(session_versions(&svc), [current.to_string()]);
    proto.expire_session(&session);
    eventually("a second session", PATIENCE, || {
        (session_versions(&svc).len() == 2).then_some(())
    })
    .await;
    assert_eq!(session_versions(&svc)[1], target.to_string());
    let job = enqueue(&proto, broker, "after-refresh");
    completed(&proto, &job).await;
    let last_poll = svc.requests().into_iter().rfind(is_poll).unwrap();
    assert_eq!(
        query_param(&last_poll, "runnerVersion").as_deref(),
        Some(target.to_string().as_str())
    );
    stop(runner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_agent_refresh_changes_the_version_of_the_next_session() {
    refresh_changes_the_next_session(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_runner_refresh_changes_the_version_of_the_next_session() {
    refresh_changes_the_next_session(true).await;
}

#[tokio::test]
async fn registering_below_the_registration_minimum_is_refused_clearly() {
    let svc = {
        let config = ghrunner_vm::localsvc::LocalServiceConfig {
            min_registration_version: Some(v("2.329.0")),
            ..Default::default()
        };
        LocalService::start(config).await.unwrap()
    };
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), &svc, VersionSetting::Pinned(v("2.328.0")));
    let err = cli::register(
        root.path(),
        &svc.repo_url("octo-org", "hello"),
        "ancient",
        &[],
    )
    .await
    .expect_err("refused");
    let text = cli::chain(&err);
    assert!(
        text.contains("as official runner version 2.328.0"),
        "{text}"
    );
    assert!(text.contains("too old to register"), "{text}");
}
