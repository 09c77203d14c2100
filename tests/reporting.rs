//! The reporters against the local service's reporting endpoints: scripted job events in, what
//! GitHub would show out (records, exact log text, console lines, annotations, summaries), on
//! both paths, with huge output and injected upload faults.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use ghrunner_vm::job::events::{Annotation, AnnotationLevel, JobEvent};
use ghrunner_vm::job::report::{ReportOptions, ReportOutcome, ReportTarget, Reporter, RetryPolicy};
use ghrunner_vm::localsvc::reporting::{RESULTS_PATH, ReportingStore, routes, store, with_store};
use ghrunner_vm::localsvc::{Fault, LocalService, LocalServiceConfig, Shared, State};
use ghrunner_vm::protocol::TaskResult;
use url::Url;
use uuid::Uuid;

const TOKEN: &str = "job-token-123";
const JOB: Uuid = Uuid::from_u128(0x10b);
const S1: Uuid = Uuid::from_u128(0x51);
const S2: Uuid = Uuid::from_u128(0x52);
/// Upper bound for a whole scenario; hitting it means the reporter stalled.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// The local service (or, for the stuck-service test, its reporting routes behind a gate).
struct Service {
    base: String,
    shared: Shared,
    _service: Option<LocalService>,
}

impl Service {
    async fn start() -> Service {
        let service = LocalService::start(LocalServiceConfig::default())
            .await
            .unwrap();
        let shared = service.state();
        with_store(&shared, |store| store.job_token = Some(TOKEN.into()));
        Service {
            base: service.url(),
            shared,
            _service: Some(service),
        }
    }

    /// Only the reporting routes; every request waits while `gate` is write-locked.
    async fn gated(gate: Arc<tokio::sync::RwLock<()>>) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared::new(State::new(LocalServiceConfig::default(), base.clone()));
        let app = routes()
            .layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let gate = Arc::clone(&gate);
                    async move { wait_at(gate, request, next).await }
                },
            ))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service {
            base,
            shared,
            _service: None,
        }
    }

    /// Only the reporting routes, behind a proxy that answers 413 to every timeline PATCH that
    /// carries an issue (as GitHub does to a body over its size limit).
    async fn refusing_issues() -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared::new(State::new(LocalServiceConfig::default(), base.clone()));
        with_store(&shared, |store| store.job_token = Some(TOKEN.into()));
        let app = routes()
            .layer(axum::middleware::from_fn(refuse_issues))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service {
            base,
            shared,
            _service: None,
        }
    }

    fn fail(&self, method: &str, path_contains: &str, times: u32) {
        let rule = Fault::respond(method, path_contains, 503, "{}")
            .times(times)
            .into_rule();
        self.shared.lock().faults.push(rule);
    }

    fn all_faults_hit(&self) -> bool {
        self.shared
            .lock()
            .faults
            .iter()
            .all(|rule| rule.remaining == 0)
    }

    fn store(&self) -> ReportingStore {
        store(&self.shared)
    }

    fn target(&self) -> ReportTarget {
        ReportTarget {
            server_url: Url::parse(&format!("{}/_services/pipelines/", self.base)).unwrap(),
            access_token: TOKEN.into(),
            scope_identifier: Uuid::from_u128(0x5c0),
            hub_name: "actions".into(),
            plan_id: Uuid::from_u128(0x91a),
            timeline_id: Uuid::from_u128(0x71e),
            job_id: JOB,
            job_name: "build".into(),
            worker_name: "vm-runner".into(),
            results_url: Some(Url::parse(&format!("{}/{RESULTS_PATH}", self.base)).unwrap()),
        }
    }
}

async fn refuse_issues(request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::PATCH {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let records = value["value"].as_array().cloned().unwrap_or_default();
    if records
        .iter()
        .any(|r| r["issues"].as_array().is_some_and(|i| !i.is_empty()))
    {
        return Response::builder()
            .status(413)
            .body(axum::body::Body::from("request entity too large"))
            .unwrap();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn wait_at(gate: Arc<tokio::sync::RwLock<()>>, request: Request, next: Next) -> Response {
    let _open = gate.read().await;
    next.run(request).await
}

fn options() -> ReportOptions {
    ReportOptions {
        retry: RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        },
        flush_interval: Duration::from_millis(20),
    }
}

fn at(sec: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-07-01T12:00:{sec:02}.250Z"))
        .unwrap()
        .with_timezone(&Utc)
}

fn log(step: Uuid, line: &str) -> JobEvent {
    JobEvent::Log {
        step_id: Some(step),
        line: line.into(),
    }
}

/// Job started, two steps with output, an annotation, a summary, completion.
fn script() -> Vec<JobEvent> {
    vec![
        JobEvent::JobStarted { at: at(0) },
        JobEvent::Log {
            step_id: None,
            line: "Set up job".into(),
        },
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Build".into(),
            at: at(1),
        },
        log(S1, "hello"),
        log(S1, "world"),
        JobEvent::Annotation {
            step_id: Some(S1),
            annotation: Annotation {
                level: AnnotationLevel::Error,
                message: "compile failed".into(),
                title: Some("cc".into()),
                file: Some("src/a.c".into()),
                line: Some(3),
                end_line: None,
                col: Some(2),
                end_col: None,
            },
        },
        JobEvent::StepCompleted {
            step_id: S1,
            result: TaskResult::Failed,
            at: at(2),
        },
        JobEvent::StepStarted {
            step_id: S2,
            number: 2,
            name: "Report".into(),
            at: at(3),
        },
        log(S2, "summary written"),
        JobEvent::StepSummary {
            step_id: S2,
            markdown: "# Summary\n\nall good\n".into(),
        },
        JobEvent::StepCompleted {
            step_id: S2,
            result: TaskResult::Succeeded,
            at: at(4),
        },
        JobEvent::JobCompleted {
            result: TaskResult::Failed,
            outputs: vec![("v".into(), "1".into())],
            at: at(5),
        },
    ]
}

async fn run(reporter: Reporter, events: impl IntoIterator<Item = JobEvent>) -> ReportOutcome {
    let work = async {
        let sender = reporter.events();
        for event in events {
            sender.send(event).await.expect("reporter stopped early");
        }
        drop(sender);
        reporter.finish().await
    };
    tokio::time::timeout(SCENARIO_LIMIT, work)
        .await
        .expect("reporting stalled")
}

/// Log text without the `<timestamp> ` prefixes; checks every prefix's format.
fn strip_timestamps(log: &str) -> Vec<String> {
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ").unwrap();
    log.lines()
        .map(|line| {
            let m = stamp
                .find(line)
                .unwrap_or_else(|| panic!("line without timestamp: {line:.80}"));
            line[m.end()..].to_owned()
        })
        .collect()
}

fn id(uuid: Uuid) -> String {
    uuid.to_string()
}

#[tokio::test]
async fn legacy_reports_records_logs_feed_annotations_and_summary() {
    let service = Service::start().await;
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    let job = &store.records[&id(JOB)];
    assert_eq!(
        (
            job["type"].as_str(),
            job["state"].as_str(),
            job["result"].as_str()
        ),
        (Some("Job"), Some("completed"), Some("failed"))
    );
    assert_eq!(job["workerName"], "vm-runner");
    let s1 = &store.records[&id(S1)];
    assert_eq!(s1["type"], "Task");
    assert_eq!(s1["parentId"], id(JOB));
    assert_eq!(
        (s1["order"].as_u64(), s1["name"].as_str()),
        (Some(1), Some("Build"))
    );
    assert_eq!(
        (s1["state"].as_str(), s1["result"].as_str()),
        (Some("completed"), Some("failed"))
    );
    assert_eq!(s1["startTime"], "2026-07-01T12:00:01.250Z");
    assert_eq!(s1["errorCount"], 1);
    assert_eq!(s1["issues"][0]["type"], "error");
    assert_eq!(s1["issues"][0]["message"], "compile failed");
    assert_eq!(s1["issues"][0]["data"]["file"], "src/a.c");
    assert_eq!(s1["issues"][0]["data"]["line"], "3");
    assert_eq!(store.records[&id(S2)]["result"], "succeeded");

    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S2)).unwrap()),
        ["summary written"]
    );
    assert_eq!(
        strip_timestamps(&store.record_log(&id(JOB)).unwrap()),
        ["Set up job"]
    );
    let (path, _) = &store.logs[&store.records[&id(S1)]["log"]["id"].as_i64().unwrap()];
    assert_eq!(path, &format!("logs\\{S1}"));

    assert_eq!(store.console_lines(&id(S1)), ["hello", "world"]);
    assert!(store.feed.iter().all(|m| m.record_id == id(JOB)));
    assert_eq!(
        store
            .feed
            .iter()
            .find(|m| m.step_id == id(S2))
            .unwrap()
            .start_line,
        1
    );

    let summary = &store.attachments[&(id(JOB), "Checks.Step.Summary".to_owned(), id(S2))];
    assert_eq!(summary, b"# Summary\n\nall good\n");

    let completion = serde_json::to_value(&outcome.completion).unwrap();
    assert_eq!(completion["stepResults"][0]["external_id"], id(S1));
    assert_eq!(completion["stepResults"][0]["conclusion"], "failed");
    assert_eq!(completion["stepResults"][0]["completed_log_lines"], 2);
    assert_eq!(
        completion["stepResults"][0]["annotations"][0]["level"],
        "failure"
    );
    assert_eq!(completion["annotations"][0]["path"], "src/a.c");
    assert_eq!(completion["annotations"][0]["stepNumber"], 1);
    assert_eq!(
        outcome.job_result,
        Some((TaskResult::Failed, vec![("v".into(), "1".into())]))
    );
}

#[tokio::test]
async fn results_reports_steps_logs_and_summary() {
    let service = Service::start().await;
    let reporter = Reporter::results(service.target(), reqwest::Client::new(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    let orders: Vec<i64> = store
        .step_updates
        .iter()
        .map(|u| u["change_order"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, (1..=orders.len() as i64).collect::<Vec<_>>());
    assert!(
        store
            .step_updates
            .iter()
            .all(|u| u["workflow_job_run_backend_id"] == id(JOB))
    );
    let s1 = store.latest_step(&id(S1)).unwrap();
    assert_eq!(
        (s1["status"].as_i64(), s1["conclusion"].as_i64()),
        (Some(6), Some(3))
    );
    assert_eq!(s1["started_at"], "2026-07-01T12:00:01.250Z");
    assert_eq!(s1["completed_at"], "2026-07-01T12:00:02.250Z");
    let s2 = store.latest_step(&id(S2)).unwrap();
    assert_eq!(
        (
            s2["status"].as_i64(),
            s2["conclusion"].as_i64(),
            s2["number"].as_i64()
        ),
        (Some(6), Some(2), Some(2))
    );
    assert!(
        store.latest_step(&id(JOB)).is_none(),
        "the job record is not a step"
    );

    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert!(blob.append && blob.sealed);
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["hello", "world"]
    );
    let meta = &store.metadata[&format!("logs/{JOB}/{S1}")];
    assert_eq!(meta["line_count"], 2);
    let job_log = store.results_log(&id(JOB), "job").unwrap();
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&job_log.content)),
        ["Set up job"]
    );
    assert_eq!(store.metadata[&format!("logs/{JOB}/job")]["line_count"], 1);

    let summary_key = format!("summaries/{JOB}/{S2}");
    assert_eq!(
        store.blobs[&summary_key].content,
        b"# Summary\n\nall good\n"
    );
    assert_eq!(store.metadata[&summary_key]["size"], 20);
    assert_eq!(outcome.completion.step_results.len(), 2);
}

/// 100,000 lines then one 1 MiB line in one step.
fn flood() -> Vec<JobEvent> {
    let mut events = vec![
        JobEvent::JobStarted { at: at(0) },
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Flood".into(),
            at: at(1),
        },
    ];
    events.extend((0..100_000).map(|i| log(S1, &format!("line {i:06}"))));
    events.push(log(S1, &"x".repeat(1024 * 1024)));
    events.push(JobEvent::StepCompleted {
        step_id: S1,
        result: TaskResult::Succeeded,
        at: at(2),
    });
    events.push(JobEvent::JobCompleted {
        result: TaskResult::Succeeded,
        outputs: vec![],
        at: at(3),
    });
    events
}

fn check_flood_log(lines: &[String]) {
    assert_eq!(lines.len(), 100_001);
    for i in [0usize, 1, 4_095, 50_000, 99_999] {
        assert_eq!(lines[i], format!("line {i:06}"));
    }
    assert_eq!(lines[100_000].len(), 1024 * 1024);
    assert!(lines[100_000].bytes().all(|b| b == b'x'));
}

#[tokio::test]
async fn legacy_flood_arrives_complete_and_the_live_view_marks_what_it_left_out() {
    let service = Service::start().await;
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, flood()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    check_flood_log(&strip_timestamps(&store.record_log(&id(S1)).unwrap()));

    let console = store.console_lines(&id(S1));
    let marker = regex::Regex::new(r"^\.\.\. \((\d+) lines omitted\)$").unwrap();
    let omitted: u64 = console
        .iter()
        .filter_map(|l| marker.captures(l))
        .map(|c| c[1].parse::<u64>().unwrap())
        .sum();
    let shown = console.iter().filter(|l| !marker.is_match(l)).count() as u64;
    assert_eq!(
        shown + omitted,
        100_001,
        "every line is shown or counted as omitted"
    );
    assert_eq!(omitted, outcome.console_lines_omitted);
    assert!(console.iter().all(|l| l.chars().count() <= 1027));
    if let Some(big) = console.iter().find(|l| l.starts_with("xxx")) {
        assert_eq!(big, &format!("{}...", "x".repeat(1024)));
    }
    assert!(store.feed.iter().all(|m| m.lines.len() <= 100));
}

#[tokio::test]
async fn results_flood_arrives_in_sealed_blocks_with_the_full_line_count() {
    let service = Service::start().await;
    let reporter = Reporter::results(service.target(), reqwest::Client::new(), options()).unwrap();
    let outcome = run(reporter, flood()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert!(blob.sealed);
    check_flood_log(&strip_timestamps(&String::from_utf8_lossy(&blob.content)));
    assert_eq!(
        store.metadata[&format!("logs/{JOB}/{S1}")]["line_count"],
        100_001
    );
}

#[tokio::test]
async fn the_runtime_is_not_held_up_by_a_stuck_service() {
    let gate: Arc<tokio::sync::RwLock<()>> = Arc::default();
    let blocked = Arc::clone(&gate).write_owned().await;
    let service = Service::gated(gate).await;
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let sender = reporter.events();
    let send_all = async {
        for event in flood() {
            sender.send(event).await.expect("reporter stopped early");
        }
    };
    tokio::time::timeout(SCENARIO_LIMIT, send_all)
        .await
        .expect("sending blocked on a stuck service");
    drop(sender);
    drop(blocked);
    let outcome = tokio::time::timeout(SCENARIO_LIMIT, reporter.finish())
        .await
        .expect("finish stalled");
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    check_flood_log(&strip_timestamps(
        &service.store().record_log(&id(S1)).unwrap(),
    ));
}

#[tokio::test]
async fn a_timeline_update_refused_for_its_size_is_sent_again_without_the_annotations() {
    let service = Service::refusing_issues().await;
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let s1 = &store.records[&id(S1)];
    assert_eq!(
        (s1["state"].as_str(), s1["result"].as_str()),
        (Some("completed"), Some("failed")),
        "the step is complete on the server"
    );
    assert_eq!(s1["issues"].as_array().map(Vec::len), Some(0));
    assert_eq!(s1["errorCount"], 1, "the count is kept");
    assert_eq!(store.records[&id(JOB)]["result"], "failed");
    let log = strip_timestamps(&store.record_log(&id(S1)).unwrap());
    assert_eq!(log, ["hello", "world"]);
    let completion = serde_json::to_value(&outcome.completion).unwrap();
    assert_eq!(
        completion["annotations"][0]["path"], "src/a.c",
        "completejob still carries the annotation (its own fallback drops it if refused)"
    );
}

#[tokio::test]
async fn legacy_upload_faults_are_retried() {
    let service = Service::start().await;
    service.fail("PATCH", "/records", 3);
    service.fail("POST", "/logs", 4);
    service.fail("POST", "/feed", 3);
    service.fail("PUT", "/attachments/", 3);
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(service.all_faults_hit(), "every fault was hit");
    let store = service.store();
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
    assert_eq!(store.records[&id(S1)]["result"], "failed");
    assert_eq!(store.console_lines(&id(S1)), ["hello", "world"]);
    assert_eq!(store.attachments.len(), 1);
}

#[tokio::test]
async fn results_upload_faults_are_retried() {
    let service = Service::start().await;
    service.fail("POST", "WorkflowStepsUpdate", 3);
    service.fail("POST", "GetStepLogsSignedBlobURL", 3);
    service.fail("PUT", "/blob/logs/", 3);
    service.fail("POST", "CreateJobLogsMetadata", 3);
    service.fail("PUT", "/blob/summaries/", 3);
    let reporter = Reporter::results(service.target(), reqwest::Client::new(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(service.all_faults_hit(), "every fault was hit");
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["hello", "world"]
    );
    assert_eq!(store.latest_step(&id(S1)).unwrap()["conclusion"], 3);
    assert_eq!(store.metadata[&format!("logs/{JOB}/job")]["line_count"], 1);
}

#[tokio::test]
async fn a_persistent_failure_is_reported_but_never_fails_the_job() {
    let service = Service::start().await;
    service.fail("PUT", "/attachments/", 1000);
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, script()).await;
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0]
            .to_string()
            .contains("summary attachment"),
        "{}",
        outcome.failures[0]
    );
    assert_eq!(outcome.completion.step_results.len(), 2);
    let store = service.store();
    assert_eq!(store.records[&id(JOB)]["state"], "completed");
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
}

#[tokio::test]
async fn plain_blob_storage_gets_the_same_uploads_without_azure_headers() {
    let service = Service::start().await;
    with_store(&service.shared, |store| {
        store.blob_storage_type = "BLOB_STORAGE_TYPE_UNSPECIFIED".into()
    });
    let reporter = Reporter::results(service.target(), reqwest::Client::new(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S2)).unwrap();
    assert!(blob.sealed);
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["summary written"]
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_reported() {
    let service = Service::start().await;
    let mut target = service.target();
    target.access_token = "wrong".into();
    let reporter = Reporter::legacy(target, reqwest::Client::new(), options());
    let outcome = run(reporter, script()).await;
    let refused = outcome
        .failures
        .iter()
        .filter(|f| f.to_string().contains("answered 401"))
        .count();
    assert!(refused > 0, "{:?}", outcome.failures);
    assert!(service.store().records.is_empty());
}

#[tokio::test]
async fn a_one_mib_line_is_whole_in_the_log_and_cut_in_the_live_view() {
    let service = Service::start().await;
    let big = "y".repeat(1024 * 1024);
    let events = vec![
        JobEvent::JobStarted { at: at(0) },
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Big".into(),
            at: at(1),
        },
        log(S1, "before"),
        log(S1, &big),
        log(S1, "after"),
        JobEvent::StepCompleted {
            step_id: S1,
            result: TaskResult::Succeeded,
            at: at(2),
        },
        JobEvent::JobCompleted {
            result: TaskResult::Succeeded,
            outputs: vec![],
            at: at(3),
        },
    ];
    let reporter = Reporter::legacy(service.target(), reqwest::Client::new(), options());
    let outcome = run(reporter, events).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["before", big.as_str(), "after"]
    );
    let cut = format!("{}...", "y".repeat(1024));
    assert_eq!(
        store.console_lines(&id(S1)),
        ["before", cut.as_str(), "after"]
    );
}
