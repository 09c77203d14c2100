//! `uses:` actions, host side (#13 item 1): resolve on both paths against the local service,
//! download the real tarballs of `GHRUNNER_VM_ACTIONS_DIR`, unpack and cache them, and fail
//! cleanly (no cache entry left) on 404, 403, corrupt and oversized tarballs.

mod support;
use support::action_tarballs::actions_dir;

use std::path::Path;

use ghrunner_vm::actions::cache::{ActionCache, CacheLimits, FetchProblem};
use ghrunner_vm::client::actions::{LegacyPlan, resolve_legacy, resolve_run_service};
use ghrunner_vm::client::{HttpClient, RetryPolicy};
use ghrunner_vm::errors::error_chain;
use ghrunner_vm::localsvc::actions::{ActionIndex, TarballAnswer};
use ghrunner_vm::localsvc::protocol::JOB_TOKEN;
use ghrunner_vm::localsvc::{Fault, LocalService, LocalServiceConfig};
use ghrunner_vm::protocol::actions::{
    ActionDownloadInfo, ActionReference, ActionReferenceList, lookup_key,
};
use uuid::Uuid;

const CHECKOUT_SHA: &str = "11d5960a326750d5838078e36cf38b85af677262";
const HELLO_SHA: &str = "79ac0da13ee392da3fdd151813d5ce4658cb7e27";
const COPY_SHA: &str = "00000000000000000000000000000000000000c0";
const NO_LIMITS: CacheLimits = CacheLimits {
    max_bytes: 0,
    max_tarball_bytes: 100 * 1024 * 1024,
};

/// A service serving the conformance actions, `actions/checkout@v4`, and failing actions.
async fn service() -> LocalService {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let dir = actions_dir();
    let mut index = ActionIndex::from_source_file(&dir).unwrap();
    assert!(index.alias("actions/checkout", "v4", "v4.4.0"));
    let checkout = TarballAnswer::File(dir.join("actions-checkout-v4.4.0.tar.gz"));
    index.insert("test/copy", "v1", COPY_SHA, checkout);
    let failing = [
        ("test/missing", TarballAnswer::Status(404)),
        ("test/denied", TarballAnswer::Status(403)),
        (
            "test/corrupt",
            TarballAnswer::Bytes(b"\x1f\x8b not really gzip".to_vec()),
        ),
    ];
    for (i, (name, answer)) in failing.into_iter().enumerate() {
        index.insert(name, "v1", &format!("{:040x}", i + 1), answer);
    }
    svc.serve_actions(index);
    svc
}

fn plan(svc: &LocalService) -> LegacyPlan {
    LegacyPlan {
        server_url: url::Url::parse(&svc.tenant_url()).unwrap(),
        scope_identifier: Uuid::from_u128(1),
        hub_name: "actions".into(),
        plan_id: Uuid::from_u128(2),
        job_id: Uuid::from_u128(3),
    }
}

fn refs(actions: &[(&str, &str)]) -> ActionReferenceList {
    ActionReferenceList {
        actions: actions
            .iter()
            .map(|(name, git_ref)| ActionReference {
                name_with_owner: (*name).into(),
                git_ref: (*git_ref).into(),
                path: None,
            })
            .collect(),
    }
}

async fn resolve_one(svc: &LocalService, name: &str, git_ref: &str) -> ActionDownloadInfo {
    let http = HttpClient::new().unwrap();
    let mut answer = resolve_legacy(
        &http,
        RetryPolicy::NONE,
        &plan(svc),
        JOB_TOKEN,
        &refs(&[(name, git_ref)]),
    )
    .await
    .unwrap();
    answer.actions.remove(&lookup_key(name, git_ref)).unwrap()
}

fn tarball_requests(svc: &LocalService) -> usize {
    svc.requests()
        .iter()
        .filter(|r| r.path.contains("/tarball/") || r.path.starts_with("/_codeload/"))
        .count()
}

fn cache(root: &Path, limits: CacheLimits) -> ActionCache {
    ActionCache::at(root.to_owned(), limits, HttpClient::new().unwrap())
        .with_retry(RetryPolicy::NONE)
}

/// Entries and leftovers under `<root>/<owner>/<repo>`.
fn listing(root: &Path, name: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(name))
        .map(|read| {
            read.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| match e.file_type().unwrap() {
            t if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().unwrap().len(),
        })
        .sum()
}

#[tokio::test]
async fn checkout_is_resolved_downloaded_unpacked_and_then_served_from_the_cache() {
    let svc = service().await;
    let info = resolve_one(&svc, "actions/checkout", "v4").await;
    assert_eq!(info.resolved_sha, CHECKOUT_SHA);
    assert_eq!(info.name_with_owner, "actions/checkout");
    assert_eq!(info.git_ref, "v4");

    // The route is the one location discovery lists, not the fixed fallback.
    let requests = svc.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "OPTIONS" && r.path == "/_services/pipelines/_apis/")
    );
    let resolve = requests
        .into_iter()
        .find(|r| r.method == "POST" && r.path.contains("ActionDownloadInfo"))
        .unwrap();
    assert_eq!(
        resolve.path,
        format!(
            "/_services/pipelines/_apis/v1/ActionDownloadInfo/{}/actions/{}",
            Uuid::from_u128(1),
            Uuid::from_u128(2)
        )
    );
    assert_eq!(
        resolve.query_param("api-version").as_deref(),
        Some("6.0-preview.1")
    );
    assert_eq!(
        resolve.query_param("jobId"),
        Some(Uuid::from_u128(3).to_string())
    );
    assert_eq!(
        resolve.header("authorization"),
        Some(format!("Bearer {JOB_TOKEN}").as_str())
    );
    assert_eq!(
        resolve.body_json().unwrap(),
        serde_json::json!({"actions": [{"nameWithOwner": "actions/checkout", "ref": "v4", "path": null}]})
    );

    let root = tempfile::tempdir().unwrap();
    let first = cache(root.path(), NO_LIMITS)
        .fetch(&info, None, false)
        .await
        .unwrap();
    assert!(first.downloaded);
    assert_eq!(
        first.path,
        root.path().join("actions/checkout").join(CHECKOUT_SHA)
    );
    let manifest = std::fs::read_to_string(first.path.join("action.yml")).unwrap();
    assert!(manifest.contains("using: node20"), "{manifest}");
    assert!(first.path.join("dist/index.js").is_file());
    assert!(!first.path.join("actions-checkout-11d5960").exists());
    // The download went to the REST URL with the per-action token, then followed a redirect.
    let downloads = tarball_requests(&svc);
    assert_eq!(downloads, 2, "API request + redirected codeload request");

    let again = resolve_one(&svc, "actions/checkout", "v4.4.0").await;
    let second = cache(root.path(), NO_LIMITS)
        .fetch(&again, None, false)
        .await
        .unwrap();
    assert!(!second.downloaded);
    assert_eq!(second.path, first.path);
    assert_eq!(
        tarball_requests(&svc),
        downloads,
        "a cached commit downloads nothing"
    );
    assert_eq!(
        listing(root.path(), "actions/checkout"),
        vec![CHECKOUT_SHA.to_owned(), format!("{CHECKOUT_SHA}.used")]
    );
}

#[tokio::test]
async fn without_a_discovered_location_the_fixed_legacy_route_is_used() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let mut index = ActionIndex::from_source_file(&actions_dir()).unwrap();
    index.list_location = false;
    svc.serve_actions(index);
    let info = resolve_one(&svc, "actions/checkout", "v4.4.0").await;
    assert_eq!(info.resolved_sha, CHECKOUT_SHA);
    let expected = format!(
        "/_services/pipelines/{}/_apis/distributedtask/hubs/actions/plans/{}/actiondownloadinfo",
        Uuid::from_u128(1),
        Uuid::from_u128(2)
    );
    assert!(
        svc.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == expected)
    );
}

#[tokio::test]
async fn run_service_path_resolves_with_snake_case_and_maps_onto_the_same_info() {
    let svc = service().await;
    let http = HttpClient::new().unwrap();
    let launch = url::Url::parse(&format!("{}/some/path", svc.url())).unwrap();
    let actions = refs(&[
        ("actions/hello-world-javascript-action", "HEAD"),
        ("actions/checkout", "v4"),
    ]);
    let pins = vec!["actions/checkout@v4".to_owned()];
    let ids = (Uuid::from_u128(2), Uuid::from_u128(3));
    let answer = resolve_run_service(
        &http,
        RetryPolicy::NONE,
        &launch,
        ids,
        JOB_TOKEN,
        &actions,
        &pins,
    )
    .await
    .unwrap();
    let hello = &answer.actions[&lookup_key("actions/hello-world-javascript-action", "HEAD")];
    assert_eq!(hello.resolved_sha, HELLO_SHA);
    assert!(hello.token().is_some());
    let request = svc
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/runnerresolve/actions"))
        .unwrap();
    assert_eq!(
        request.path,
        format!(
            "/actions/build/{}/jobs/{}/runnerresolve/actions",
            ids.0, ids.1
        )
    );
    let body = request.body_json().unwrap();
    assert_eq!(
        body["actions"][1],
        serde_json::json!({"action": "actions/checkout", "version": "v4"})
    );
    assert_eq!(body["actions_dependencies"], serde_json::json!(pins));

    let root = tempfile::tempdir().unwrap();
    let got = cache(root.path(), NO_LIMITS)
        .fetch(hello, None, false)
        .await
        .unwrap();
    assert!(got.path.join("action.yml").is_file());
}

#[tokio::test]
async fn unknown_actions_are_unresolvable_naming_the_action() {
    let svc = service().await;
    let http = HttpClient::new().unwrap();
    let err = resolve_legacy(
        &http,
        RetryPolicy::NONE,
        &plan(&svc),
        JOB_TOKEN,
        &refs(&[("no/such", "v9")]),
    )
    .await
    .unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("no/such@v9"), "{text}");
}

async fn failing_fetch(name: &str, limits: CacheLimits) -> (String, FetchProblemKind, Vec<String>) {
    let svc = service().await;
    let info = resolve_one(&svc, name, "v1").await;
    let root = tempfile::tempdir().unwrap();
    let err = cache(root.path(), limits)
        .fetch(&info, None, false)
        .await
        .unwrap_err();
    let kind = match err.problem() {
        FetchProblem::Download(e) => FetchProblemKind::Download(e.to_string()),
        FetchProblem::Unpack(_) => FetchProblemKind::Unpack,
        other => panic!("unexpected problem {other}"),
    };
    (error_chain(&err), kind, listing(root.path(), name))
}

#[derive(Debug, PartialEq)]
enum FetchProblemKind {
    Download(String),
    Unpack,
}

#[tokio::test]
async fn not_found_denied_corrupt_and_oversized_tarballs_fail_and_leave_nothing() {
    let (text, kind, left) = failing_fetch("test/missing", NO_LIMITS).await;
    assert!(
        text.contains("test/missing@v1") && text.contains("404"),
        "{text}"
    );
    assert!(matches!(kind, FetchProblemKind::Download(_)));
    assert!(left.is_empty(), "{left:?}");

    let (text, _, left) = failing_fetch("test/denied", NO_LIMITS).await;
    assert!(
        text.contains("test/denied@v1") && text.contains("403"),
        "{text}"
    );
    assert!(left.is_empty(), "{left:?}");

    let (text, kind, left) = failing_fetch("test/corrupt", NO_LIMITS).await;
    assert!(
        text.contains("test/corrupt@v1") && text.contains("not a valid gzip tar"),
        "{text}"
    );
    assert_eq!(kind, FetchProblemKind::Unpack);
    assert!(left.is_empty(), "{left:?}");

    let small = CacheLimits {
        max_bytes: 0,
        max_tarball_bytes: 64 * 1024,
    };
    let (text, _, left) = failing_fetch("test/copy", small).await;
    assert!(
        text.contains("test/copy@v1") && text.contains("larger than the limit of 65536"),
        "{text}"
    );
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn two_concurrent_fetches_of_one_commit_both_succeed_with_one_entry() {
    let svc = service().await;
    let info = resolve_one(&svc, "actions/checkout", "v4").await;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (cache(root.path(), NO_LIMITS), cache(root.path(), NO_LIMITS));
    let (one, two) = tokio::join!(a.fetch(&info, None, false), b.fetch(&info, None, false));
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.path, two.path);
    assert!(one.path.join("dist/index.js").is_file());
    assert_eq!(
        listing(root.path(), "actions/checkout"),
        vec![CHECKOUT_SHA.to_owned(), format!("{CHECKOUT_SHA}.used")],
        "one entry, no temporary directory left"
    );
}

#[tokio::test]
async fn the_least_recently_used_commit_is_evicted_beyond_the_limit() {
    let svc = service().await;
    let checkout = resolve_one(&svc, "actions/checkout", "v4").await;
    let hello = resolve_one(&svc, "actions/hello-world-javascript-action", "HEAD").await;
    let copy = resolve_one(&svc, "test/copy", "v1").await;
    let root = tempfile::tempdir().unwrap();
    let unlimited = cache(root.path(), NO_LIMITS);
    let a = unlimited.fetch(&checkout, None, false).await.unwrap();
    let b = unlimited.fetch(&hello, None, false).await.unwrap();
    // Marker mtimes order the entries; keep them apart on coarse file systems.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    unlimited.fetch(&checkout, None, false).await.unwrap(); // checkout is now the newer
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (size_a, size_b) = (tree_bytes(&a.path), tree_bytes(&b.path));
    // Room for two checkouts and half of hello: adding the copy must evict hello only.
    let limited = cache(
        root.path(),
        CacheLimits {
            max_bytes: 2 * size_a + size_b / 2,
            ..NO_LIMITS
        },
    );
    let c = limited.fetch(&copy, None, false).await.unwrap();
    assert!(c.downloaded && c.path.is_dir());
    assert!(
        a.path.join("action.yml").is_file(),
        "recently used entry kept"
    );
    assert!(!b.path.exists(), "least recently used entry evicted");
    assert!(listing(root.path(), "actions/hello-world-javascript-action").is_empty());
}

#[tokio::test]
async fn a_failed_download_is_retried_but_a_404_is_final() {
    let svc = service().await;
    let codeload = |svc: &LocalService| {
        svc.requests()
            .iter()
            .filter(|r| r.path.starts_with("/_codeload/"))
            .count()
    };
    let retrying = |root: &Path| {
        cache(root, NO_LIMITS).with_retry(RetryPolicy::jittered(
            3,
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
        ))
    };
    svc.inject(Fault::respond("GET", "/_codeload/actions/checkout/", 502, "").times(1));
    let info = resolve_one(&svc, "actions/checkout", "v4").await;
    let root = tempfile::tempdir().unwrap();
    let got = retrying(root.path())
        .fetch(&info, None, false)
        .await
        .unwrap();
    assert!(got.path.join("action.yml").is_file());
    assert_eq!(codeload(&svc), 2, "one 502, then the tarball");

    let missing = resolve_one(&svc, "test/missing", "v1").await;
    let before = codeload(&svc);
    let err = retrying(root.path())
        .fetch(&missing, None, false)
        .await
        .unwrap_err();
    assert!(error_chain(&err).contains("404"), "{}", error_chain(&err));
    assert_eq!(codeload(&svc), before + 1, "a 404 is not retried");
}
