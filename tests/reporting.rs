//! The reporters against the local service's reporting endpoints: scripted job events in, what
//! GitHub would show out (records, exact log text, console lines, annotations, summaries), on
//! both paths, with huge output and injected upload faults.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use ghrunner_vm::client::{HttpClient, RetryPolicy};
use ghrunner_vm::job::events::{Annotation, AnnotationLevel, JobEvent};
use ghrunner_vm::job::report::{ReportOptions, ReportOutcome, ReportTarget, Reporter};
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

    /// Only the reporting routes, wrapped by `wrap` (a middleware layer); the job token is
    /// checked when `token` is set.
    async fn reporting_only(
        token: bool,
        wrap: impl FnOnce(axum::Router<Shared>) -> axum::Router<Shared>,
    ) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared::new(State::new(LocalServiceConfig::default(), base.clone()));
        if token {
            with_store(&shared, |store| store.job_token = Some(TOKEN.into()));
        }
        let app = wrap(routes()).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service {
            base,
            shared,
            _service: None,
        }
    }

    /// Only the reporting routes; every request waits while `gate` is write-locked.
    async fn gated(gate: Arc<tokio::sync::RwLock<()>>) -> Service {
        Service::reporting_only(false, |routes| {
            routes.layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let gate = Arc::clone(&gate);
                    async move { wait_at(gate, request, next).await }
                },
            ))
        })
        .await
    }

    /// Only the reporting routes, behind a proxy that answers 413 to every timeline PATCH that
    /// carries an issue (as GitHub does to a body over its size limit).
    async fn refusing_issues() -> Service {
        Service::reporting_only(true, |routes| {
            routes.layer(axum::middleware::from_fn(refuse_issues))
        })
        .await
    }

    /// Only the reporting routes, behind a layer that records every request's headers.
    async fn capturing(seen: Arc<std::sync::Mutex<Vec<Seen>>>) -> Service {
        Service::reporting_only(true, |routes| {
            routes.layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let header = |name| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    seen.lock().unwrap().push(Seen {
                        method: request.method().to_string(),
                        path: request.uri().path().to_owned(),
                        user_agent: header(axum::http::header::USER_AGENT),
                        authorization: header(axum::http::header::AUTHORIZATION),
                    });
                    next.run(request)
                },
            ))
        })
        .await
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

/// One request as a capturing service saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    user_agent: Option<String>,
    authorization: Option<String>,
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
        retry: RetryPolicy::doubling(5, Duration::from_millis(5), Duration::from_millis(40)),
        flush_interval: Duration::from_millis(20),
    }
}

/// The runner's shared client, as the reporters get it.
fn http() -> HttpClient {
    HttpClient::new().unwrap()
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

#[path = "reporting/faults.rs"]
mod faults;
#[path = "reporting/floods.rs"]
mod floods;
#[path = "reporting/paths.rs"]
mod paths;
#[path = "reporting/wire.rs"]
mod wire;
