//! The local service's reporting endpoints: legacy timeline records, logs, live feed and
//! attachments, and the results service's Twirp calls with signed blob URLs. Everything that
//! arrives is stored in a [`ReportingStore`] for tests to assert on (records merged by id, full
//! log text per log id and per step, console lines, summaries).
//!
//! Legacy routes live under the tenant (`{url}/_services/pipelines/`, the SystemVssConnection
//! url), the results service under `{url}/_services/results/` ([`RESULTS_PATH`]). The store is
//! kept in the service state's extensions; [`store`] copies it out. Faults and the request
//! recorder are the service-wide ones. Blob URLs handed out point at
//! `{url}/_services/results/blob/...` and carry a fake SAS query
//! (`sv=...&sig=...`) that uploads must keep. With `BLOB_STORAGE_TYPE_AZURE` the blob routes
//! check the Azure headers the way the real service needs them (`x-ms-blob-type` on create,
//! `x-ms-blob-sealed` on append) and refuse appends to sealed blobs.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post, put};
use serde_json::{Value, json};

use super::recorder::MAX_BODY_BYTES;
use super::{Shared, TENANT_PATH};

/// Path of the results service under the base URL (ends in `/`).
pub const RESULTS_PATH: &str = "_services/results/";

/// Fake SAS query on every signed URL.
pub const FAKE_SAS: &str = "sv=2026-01-01&sig=local";
/// `blob_storage_type` answered by default.
pub const DEFAULT_BLOB_STORAGE: &str = "BLOB_STORAGE_TYPE_AZURE";
/// `soft_size_limit` answered for summaries by default (1 MiB, as on github.com).
pub const DEFAULT_SUMMARY_LIMIT: u64 = 1024 * 1024;

/// One live-console message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMessage {
    /// Record id in the URL (the job record).
    pub record_id: String,
    /// `stepId` of the body.
    pub step_id: String,
    /// `startLine` of the body.
    pub start_line: u64,
    /// The lines.
    pub lines: Vec<String>,
}

/// One uploaded blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob {
    /// Bytes so far.
    pub content: Vec<u8>,
    /// Created as an append blob.
    pub append: bool,
    /// Sealed (no more appends).
    pub sealed: bool,
}

/// What the reporting endpoints received.
#[derive(Debug, Clone)]
pub struct ReportingStore {
    /// Bearer token the endpoints accept (the job token); `None` accepts any bearer token.
    pub job_token: Option<String>,
    /// `blob_storage_type` handed out with signed URLs.
    pub blob_storage_type: String,
    /// `soft_size_limit` of summary URLs.
    pub summary_limit: u64,
    /// Timeline records by id, PATCHes merged field by field (null = unchanged).
    pub records: BTreeMap<String, Value>,
    /// Every PATCH body, in order.
    pub record_patches: Vec<Value>,
    /// Logs by id: (path, content).
    pub logs: BTreeMap<i64, (String, Vec<u8>)>,
    /// Live console messages, in order.
    pub feed: Vec<FeedMessage>,
    /// Attachments by (record id, type, name).
    pub attachments: BTreeMap<(String, String, String), Vec<u8>>,
    /// `WorkflowStepsUpdate` bodies, in order.
    pub step_updates: Vec<Value>,
    /// Blobs by key (`logs/<job>/<step|job>`, `summaries/<job>/<step>`).
    pub blobs: BTreeMap<String, Blob>,
    /// `Create*Metadata` bodies by blob key.
    pub metadata: HashMap<String, Value>,
}

impl Default for ReportingStore {
    fn default() -> Self {
        ReportingStore {
            job_token: None,
            blob_storage_type: DEFAULT_BLOB_STORAGE.to_owned(),
            summary_limit: DEFAULT_SUMMARY_LIMIT,
            records: BTreeMap::new(),
            record_patches: Vec::new(),
            logs: BTreeMap::new(),
            feed: Vec::new(),
            attachments: BTreeMap::new(),
            step_updates: Vec::new(),
            blobs: BTreeMap::new(),
            metadata: HashMap::new(),
        }
    }
}

impl ReportingStore {
    /// The full text of the log attached to a record (legacy path).
    pub fn record_log(&self, record_id: &str) -> Option<String> {
        let id = self
            .records
            .get(record_id)?
            .get("log")?
            .get("id")?
            .as_i64()?;
        let (_, content) = self.logs.get(&id)?;
        Some(String::from_utf8_lossy(content).into_owned())
    }

    /// The live console lines of one step, in arrival order.
    pub fn console_lines(&self, step_id: &str) -> Vec<String> {
        self.feed
            .iter()
            .filter(|m| m.step_id == step_id)
            .flat_map(|m| m.lines.clone())
            .collect()
    }

    /// The results log blob of a step (or `"job"` for the job log).
    pub fn results_log(&self, job_id: &str, step: &str) -> Option<&Blob> {
        self.blobs.get(&format!("logs/{job_id}/{step}"))
    }

    /// The latest `WorkflowStepsUpdate` entry for a step.
    pub fn latest_step(&self, step_id: &str) -> Option<&Value> {
        self.step_updates
            .iter()
            .flat_map(|u| u["steps"].as_array().into_iter().flatten())
            .rfind(|s| s["external_id"] == step_id)
    }
}

/// Runs `f` on the reporting store inside the service state (created empty on first use).
pub fn with_store<R>(shared: &Shared, f: impl FnOnce(&mut ReportingStore) -> R) -> R {
    f(shared
        .lock()
        .extensions
        .get_or_insert_default::<ReportingStore>())
}

/// A copy of what the reporting endpoints received so far.
pub fn store(shared: &Shared) -> ReportingStore {
    with_store(shared, |store| store.clone())
}

/// The reporting routes: legacy plan-scoped routes under the tenant, Twirp and blobs under
/// [`RESULTS_PATH`].
pub fn routes() -> Router<Shared> {
    let plan = format!("/{TENANT_PATH}{{scope}}/_apis/distributedtask/hubs/{{hub}}/plans/{{plan}}");
    let results = format!("/{RESULTS_PATH}");
    Router::new()
        .route(&format!("{plan}/timelines/{{timeline}}/records"), patch(patch_records))
        .route(&format!("{plan}/logs"), post(create_log))
        .route(&format!("{plan}/logs/{{log}}"), post(append_log))
        .route(&format!("{plan}/timelines/{{timeline}}/records/{{record}}/feed"), post(feed))
        .route(
            &format!("{plan}/timelines/{{timeline}}/records/{{record}}/attachments/{{kind}}/{{name}}"),
            put(attachment),
        )
        .route(&format!("{results}twirp/results.services.receiver.Receiver/{{method}}"), post(receiver))
        .route(
            &format!("{results}twirp/github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate"),
            post(steps_update),
        )
        .route(&format!("{results}blob/{{*key}}"), put(blob))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn authorized(store: &ReportingStore, headers: &HeaderMap) -> bool {
    let Some(expected) = &store.job_token else {
        return true;
    };
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == expected)
}

fn deny() -> Response {
    (StatusCode::UNAUTHORIZED, "missing or wrong job token").into_response()
}

fn bad(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

/// Overlays the non-null fields of `update` on `record`.
fn merge_record(record: &mut Value, update: &Value) {
    if let (Some(record), Some(update)) = (record.as_object_mut(), update.as_object()) {
        for (key, value) in update {
            if !value.is_null() {
                record.insert(key.clone(), value.clone());
            }
        }
    }
}

async fn patch_records(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad("records body is not JSON");
    };
    let Some(records) = body["value"].as_array() else {
        return bad("records body has no value array");
    };
    if body["count"].as_u64() != Some(records.len() as u64) {
        return bad("records count does not match value");
    }
    for record in records {
        let Some(id) = record["id"].as_str() else {
            return bad("record without id");
        };
        let entry = store
            .records
            .entry(id.to_owned())
            .or_insert_with(|| json!({}));
        merge_record(entry, record);
    }
    store.record_patches.push(body.clone());
    Json(json!({"count": records.len(), "value": records})).into_response()
}

async fn create_log(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad("log body is not JSON");
    };
    let path = body["path"].as_str().unwrap_or_default().to_owned();
    let id = store.logs.keys().next_back().map_or(1, |last| last + 1);
    store.logs.insert(id, (path.clone(), Vec::new()));
    Json(json!({"id": id, "path": path, "lineCount": 0, "location": null})).into_response()
}

async fn append_log(
    State(shared): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/octet-stream")
    {
        return bad("log content must be application/octet-stream");
    }
    let id: i64 = params.get("log").and_then(|l| l.parse().ok()).unwrap_or(-1);
    let Some((path, content)) = store.logs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such log").into_response();
    };
    content.extend_from_slice(&body);
    let lines = content.iter().filter(|b| **b == b'\n').count();
    Json(json!({"id": id, "path": path.clone(), "lineCount": lines})).into_response()
}

async fn feed(
    State(shared): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad("feed body is not JSON");
    };
    let lines: Vec<String> = body["value"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if body["count"].as_u64() != Some(lines.len() as u64) {
        return bad("feed count does not match value");
    }
    store.feed.push(FeedMessage {
        record_id: params.get("record").cloned().unwrap_or_default(),
        step_id: body["stepId"].as_str().unwrap_or_default().to_owned(),
        start_line: body["startLine"].as_u64().unwrap_or(0),
        lines,
    });
    StatusCode::OK.into_response()
}

async fn attachment(
    State(shared): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let key = |name: &str| params.get(name).cloned().unwrap_or_default();
    let id = (key("record"), key("kind"), key("name"));
    store.attachments.insert(id.clone(), body.to_vec());
    Json(json!({"type": id.1, "name": id.2})).into_response()
}

fn text(body: &Value, key: &str) -> String {
    body[key].as_str().unwrap_or_default().to_owned()
}

async fn receiver(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared.lock();
    let base_url = guard.base_url.clone();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad("twirp body is not JSON");
    };
    let job = text(&body, "workflow_job_run_backend_id");
    if job.is_empty() || text(&body, "workflow_run_backend_id").is_empty() {
        return bad("missing workflow ids");
    }
    let step = text(&body, "step_backend_id");
    let key = match method.as_str() {
        "GetStepLogsSignedBlobURL" | "CreateStepLogsMetadata" => format!("logs/{job}/{step}"),
        "GetJobLogsSignedBlobURL" | "CreateJobLogsMetadata" => format!("logs/{job}/job"),
        "GetStepSummarySignedBlobURL" | "CreateStepSummaryMetadata" => {
            format!("summaries/{job}/{step}")
        }
        _ => return (StatusCode::NOT_FOUND, "unknown twirp method").into_response(),
    };
    if method.starts_with("Create") {
        store.metadata.insert(key, body);
        return Json(json!({"ok": true})).into_response();
    }
    let url = format!("{base_url}/{RESULTS_PATH}blob/{key}?{FAKE_SAS}");
    let field = if method.contains("Summary") {
        "summary_url"
    } else {
        "logs_url"
    };
    Json(json!({
        field: url,
        "blob_storage_type": store.blob_storage_type,
        "soft_size_limit": store.summary_limit.to_string(),
    }))
    .into_response()
}

async fn steps_update(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if !authorized(store, &headers) {
        return deny();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad("steps update body is not JSON");
    };
    if !body["steps"].is_array() || body["change_order"].as_i64().is_none() {
        return bad("steps update needs steps and change_order");
    }
    store.step_updates.push(body);
    Json(json!({"ok": true})).into_response()
}

async fn blob(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared.lock();
    let store = guard.extensions.get_or_insert_default::<ReportingStore>();
    if query.get("sig").map(String::as_str) != Some("local") {
        return (StatusCode::FORBIDDEN, "signature missing").into_response();
    }
    let azure = store.blob_storage_type == DEFAULT_BLOB_STORAGE;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if query.get("comp").map(String::as_str) == Some("appendblock") {
        let seal = query.get("seal").map(String::as_str) == Some("true");
        if azure && header("x-ms-blob-sealed").is_none() {
            return bad("append without x-ms-blob-sealed");
        }
        let Some(blob) = store.blobs.get_mut(&key) else {
            return (StatusCode::NOT_FOUND, "blob not created").into_response();
        };
        if blob.sealed || !blob.append {
            return (StatusCode::CONFLICT, "blob is sealed or not an append blob").into_response();
        }
        blob.content.extend_from_slice(&body);
        blob.sealed = seal;
        return StatusCode::CREATED.into_response();
    }
    let kind = header("x-ms-blob-type");
    if azure && kind.is_none() {
        return bad("create without x-ms-blob-type");
    }
    let append = kind.as_deref() == Some("AppendBlob") || (!azure && body.is_empty());
    if append && !body.is_empty() {
        return bad("append blob create must be empty");
    }
    store.blobs.insert(
        key,
        Blob {
            content: body.to_vec(),
            append,
            sealed: false,
        },
    );
    StatusCode::CREATED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_fields_a_later_patch_leaves_null() {
        let mut record = json!({"id": "a", "state": "inProgress", "log": null});
        merge_record(
            &mut record,
            &json!({"id": "a", "state": null, "log": {"id": 3}}),
        );
        assert_eq!(
            record,
            json!({"id": "a", "state": "inProgress", "log": {"id": 3}})
        );
    }
}
