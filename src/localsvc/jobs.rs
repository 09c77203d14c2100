//! Local service: the run service (`acquirejob`, `renewjob`, `completejob`) and the legacy
//! job-request renew / finish PATCH and plan events. Every call is recorded in the job's
//! [`JobRecord`](super::protocol::JobRecord).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};

use super::protocol::ProtocolEvent;
use chrono::Utc;
use serde_json::{Value, json};

use super::oauth::require_access_token;
use super::protocol::{ProtocolState, broker_error, has_job_token};
use super::state::Shared;
use super::vss_error;
use crate::protocol::lifecycle::format_timestamp;

type St = State<Arc<ProtocolState>>;

const RUN_SOURCE: &str = "actions-run-service";

/// How long a renewal locks the job.
const LOCK_DURATION: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Job routes (run service and legacy).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/_services/run/acquirejob", post(acquire))
        .route("/_services/run/renewjob", post(renew))
        .route("/_services/run/completejob", post(complete))
        .route(
            "/_services/pipelines/_apis/distributedtask/pools/{pool}/jobrequests/{request}",
            patch(legacy_job_request).get(read_job_request),
        )
        .route(
            "/_services/pipelines/{scope}/_apis/distributedtask/hubs/{hub}/plans/{plan}/events",
            post(plan_event),
        )
        .route(
            "/_services/pipelines/_apis/distributedtask/hubs/{hub}/plans/{plan}/events",
            post(plan_event_unscoped),
        )
}

fn parse(body: &Bytes) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn not_found(what: &str) -> Response {
    broker_error(StatusCode::NOT_FOUND, RUN_SOURCE, "", what)
}

async fn acquire(
    State(shared): State<Shared>,
    State(s): St,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let Some(id) = parse(&body).and_then(|v| field(&v, "jobMessageId").map(str::to_owned)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut inner = s.inner();
    let Some(job) = inner.pending_acquire.remove(&id) else {
        return not_found("job message not found or already acquired");
    };
    let job_id = field(&job, "jobId").unwrap_or_default().to_owned();
    inner.jobs.entry(job_id).or_default().acquired = true;
    (StatusCode::OK, axum::Json(job)).into_response()
}

async fn renew(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    if !has_job_token(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(job_id) = parse(&body).and_then(|v| field(&v, "jobId").map(str::to_owned)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut inner = s.inner();
    match inner.jobs.get_mut(&job_id) {
        Some(record) if record.acquired && record.completion.is_none() => {
            record.renewals += 1;
            let until = format_timestamp(Utc::now() + LOCK_DURATION);
            (StatusCode::OK, axum::Json(json!({"lockedUntil": until}))).into_response()
        }
        _ => not_found("job not found"),
    }
}

async fn complete(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    if !has_job_token(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(v) = parse(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let job_id = field(&v, "jobId").unwrap_or_default().to_owned();
    let mut inner = s.inner();
    match inner.jobs.get_mut(&job_id) {
        Some(record) if record.acquired => {
            record.complete(v);
            StatusCode::OK.into_response()
        }
        _ => not_found("job not found"),
    }
}

async fn legacy_job_request(
    State(shared): State<Shared>,
    State(s): St,
    Path((_pool, request_id)): Path<(u64, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let Some(v) = parse(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut inner = s.inner();
    let Some(job_id) = inner.request_to_job.get(&request_id).cloned() else {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentJobNotFoundException",
            "no such job request",
        );
    };
    let record = inner.jobs.entry(job_id).or_default();
    let finishing = v.get("result").is_some() || v.get("finishTime").is_some();
    if record.completion.is_some() {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentJobNotFoundException",
            "job request finished",
        );
    }
    if finishing {
        record.complete(v.clone());
    } else {
        record.renewals += 1;
    }
    let answer = json!({
        "requestId": request_id,
        "lockedUntil": format_timestamp(Utc::now() + LOCK_DURATION),
        "reservedAgent": {"id": 0, "name": "local"},
        "result": v.get("result"),
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `GET .../jobrequests/{id}`: the request with `result` once the job is finished (by the
/// runner's completion or on the server, [`ProtocolState::finish_on_server`]).
async fn read_job_request(
    State(shared): State<Shared>,
    State(s): St,
    Path((_pool, request_id)): Path<(u64, i64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    s.record(ProtocolEvent::JobRequestRead { request_id });
    let inner = s.inner();
    let record = inner
        .request_to_job
        .get(&request_id)
        .and_then(|job| inner.jobs.get(job));
    let Some(record) = record else {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentJobNotFoundException",
            "no such job request",
        );
    };
    let completed = record.completion.as_ref().map(|c| {
        c.get("result")
            .and_then(Value::as_str)
            .unwrap_or("succeeded")
            .to_owned()
    });
    let answer = json!({
        "requestId": request_id,
        "lockedUntil": format_timestamp(Utc::now() + LOCK_DURATION),
        "reservedAgent": {"id": 0, "name": "local"},
        "result": record.server_result.clone().or(completed),
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn plan_event(
    state: St,
    Path((_scope, _hub, _plan)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_event(state, headers, body)
}

async fn plan_event_unscoped(
    state: St,
    Path((_hub, _plan)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_event(state, headers, body)
}

fn record_event(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    if !has_job_token(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(v) = parse(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if field(&v, "name") != Some("JobCompleted") {
        return StatusCode::OK.into_response();
    }
    let job_id = field(&v, "jobId").unwrap_or_default().to_owned();
    let mut inner = s.inner();
    match inner.jobs.get_mut(&job_id) {
        Some(record) => {
            record.complete(v);
            StatusCode::OK.into_response()
        }
        None => vss_error(
            StatusCode::NOT_FOUND,
            "TaskOrchestrationPlanNotFoundException",
            "no such job",
        ),
    }
}
