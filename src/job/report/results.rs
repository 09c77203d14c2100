//! The results-service sink (Twirp JSON, protocol-transport.md §7.2), with the job token as
//! `Bearer`.
//!
//! * step records → `WorkflowStepsUpdate` (only `Task` records; status and conclusion as integer
//!   codes; `change_order` counts requests from 1);
//! * log chunks (2 MiB blocks) → a signed URL per block (`GetStepLogsSignedBlobURL`, or
//!   `GetJobLogsSignedBlobURL` for the job record), the first block creates an append blob,
//!   each block is appended, the last one seals it, then `Create*LogsMetadata` carries the
//!   cumulative line count;
//! * summaries → `GetStepSummarySignedBlobURL`, one PUT, `CreateStepSummaryMetadata`.
//!
//! Every request goes through the shared [`HttpClient`] (one attempt each; the operation is
//! retried per the reporter's [`RetryPolicy`]). Signed blob URLs get no `Authorization`: the
//! signature in their query is the credential. Azure blobs get the `x-ms-*` headers;
//! `BLOB_STORAGE_TYPE_UNSPECIFIED` gets the same PUTs without them. Wire types live in
//! [`crate::protocol::results`]. The results path has no REST live feed (the official runner uses a websocket,
//! not implemented here): console batches are counted and dropped, the full logs carry every
//! line.

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::batch::LogChunk;
use super::record::{RECORD_TYPE_TASK, TimelineRecord, results_timestamp};
use super::routes::{WORKFLOW_STEPS_UPDATE, append_block_url, results_receiver_url, results_url};
use super::state::{Drain, PendingSummary};
use super::{ReportError, ReportTarget, Shared, Sink, lock, read_json, send};
use crate::client::{HttpClient, RetryPolicy, Timeouts};
pub use crate::protocol::results::{
    BLOB_STORAGE_AZURE, OkAnswer, SignedUrl, WorkflowStep, conclusion_code, status_code,
};

/// Sends drains to the results service.
pub struct ResultsSink {
    http: HttpClient,
    base: Url,
    token: String,
    plan_id: Uuid,
    job_id: Uuid,
    change_order: i64,
    retry: RetryPolicy,
    broken: std::collections::HashSet<Uuid>,
    console_dropped: u64,
    failures: Vec<ReportError>,
}

impl ResultsSink {
    /// A sink for `target`; fails when the job names no results endpoint.
    pub fn new(
        target: ReportTarget,
        http: HttpClient,
        retry: RetryPolicy,
    ) -> Result<Self, ReportError> {
        let base = target.results_url.ok_or(ReportError::NoResultsEndpoint)?;
        Ok(ResultsSink {
            http,
            base,
            token: target.access_token,
            plan_id: target.plan_id,
            job_id: target.job_id,
            change_order: 0,
            retry,
            broken: Default::default(),
            console_dropped: 0,
            failures: Vec::new(),
        })
    }

    async fn twirp<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        body: &serde_json::Value,
        what: &'static str,
    ) -> Result<T, ReportError> {
        self.retry
            .run(|| async {
                let request = self
                    .http
                    .request(Method::POST, url.clone())
                    .timeout(Timeouts::OFFICIAL.report_request)
                    .bearer_auth(&self.token)
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string());
                let response = send(&self.http, request, what).await?;
                read_json(response, what).await
            })
            .await
    }

    async fn twirp_ok(
        &self,
        url: &Url,
        body: &serde_json::Value,
        what: &'static str,
    ) -> Result<(), ReportError> {
        let answer: OkAnswer = self.twirp(url, body, what).await?;
        answer.ok.then_some(()).ok_or(ReportError::Refused { what })
    }

    fn ids(&self) -> serde_json::Value {
        json!({
            "workflow_run_backend_id": self.plan_id.to_string(),
            "workflow_job_run_backend_id": self.job_id.to_string(),
        })
    }

    fn ids_with(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut body = self.ids();
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    async fn update_steps(&mut self, records: &[TimelineRecord]) -> Result<(), ReportError> {
        let steps: Vec<WorkflowStep> = records
            .iter()
            .filter(|r| r.record_type == RECORD_TYPE_TASK)
            .map(WorkflowStep::from_record)
            .collect();
        if steps.is_empty() {
            return Ok(());
        }
        self.change_order += 1;
        let body = self.ids_with(json!({"steps": steps, "change_order": self.change_order}));
        let url = results_url(&self.base, WORKFLOW_STEPS_UPDATE);
        self.twirp_ok(&url, &body, "steps update").await
    }

    async fn upload_chunk(&self, chunk: &LogChunk) -> Result<(), ReportError> {
        let job_level = chunk.record_id == self.job_id;
        let (get, create) = if job_level {
            ("GetJobLogsSignedBlobURL", "CreateJobLogsMetadata")
        } else {
            ("GetStepLogsSignedBlobURL", "CreateStepLogsMetadata")
        };
        let step = if job_level {
            json!({})
        } else {
            json!({"step_backend_id": chunk.record_id.to_string()})
        };
        let signed: SignedUrl = self
            .twirp(
                &results_receiver_url(&self.base, get),
                &self.ids_with(step.clone()),
                "log url",
            )
            .await?;
        let url = parse_signed(signed.logs_url.as_deref(), "log url")?;
        let azure = signed.is_azure();
        if chunk.index == 1 {
            self.put_blob(&url, azure, BlobWrite::CreateAppend).await?;
        }
        self.put_blob(
            &append_block_url(&url, chunk.last),
            azure,
            BlobWrite::Append {
                data: &chunk.data,
                seal: chunk.last,
            },
        )
        .await?;
        if chunk.last {
            let meta = self.ids_with(json!({
                "uploaded_at": results_timestamp(chunk_time()),
                "line_count": chunk.total_lines,
            }));
            let meta = merge(meta, step);
            self.twirp_ok(
                &results_receiver_url(&self.base, create),
                &meta,
                "log metadata",
            )
            .await?;
        }
        Ok(())
    }

    async fn upload_summary(&self, summary: &PendingSummary) -> Result<(), ReportError> {
        let step = json!({"step_backend_id": summary.step_id.to_string()});
        let url = results_receiver_url(&self.base, "GetStepSummarySignedBlobURL");
        let signed: SignedUrl = self
            .twirp(&url, &self.ids_with(step.clone()), "summary url")
            .await?;
        let size = summary.markdown.len() as u64;
        if let Some(limit) = signed.soft_size_limit.filter(|limit| size > *limit) {
            return Err(ReportError::SummaryTooLarge {
                step_id: summary.step_id,
                size,
                limit,
            });
        }
        let blob = parse_signed(signed.summary_url.as_deref(), "summary url")?;
        self.put_blob(
            &blob,
            signed.is_azure(),
            BlobWrite::Block {
                data: summary.markdown.as_bytes(),
            },
        )
        .await?;
        let meta = merge(
            self.ids_with(step),
            json!({"size": size, "uploaded_at": results_timestamp(chunk_time())}),
        );
        self.twirp_ok(
            &results_receiver_url(&self.base, "CreateStepSummaryMetadata"),
            &meta,
            "summary metadata",
        )
        .await
    }

    async fn put_blob(
        &self,
        url: &Url,
        azure: bool,
        write: BlobWrite<'_>,
    ) -> Result<(), ReportError> {
        self.retry
            .run(|| {
                // No Authorization: the signed URL is the credential.
                let mut request = self
                    .http
                    .request(Method::PUT, url.clone())
                    .timeout(Timeouts::OFFICIAL.blob_upload)
                    .header(CONTENT_TYPE, "text/plain");
                let body: Vec<u8> = match write {
                    BlobWrite::CreateAppend => {
                        if azure {
                            request = request.header("x-ms-blob-type", "AppendBlob");
                        }
                        Vec::new()
                    }
                    BlobWrite::Append { data, seal } => {
                        if azure {
                            request = request
                                .header("x-ms-blob-sealed", if seal { "true" } else { "false" });
                        }
                        data.to_vec()
                    }
                    BlobWrite::Block { data } => {
                        if azure {
                            request = request.header("x-ms-blob-type", "BlockBlob");
                        }
                        data.to_vec()
                    }
                };
                let request = request.header(CONTENT_LENGTH, body.len()).body(body);
                send(&self.http, request, write.what())
            })
            .await
            .map(drop)
    }

    fn record_failure(&mut self, error: ReportError) {
        tracing::warn!(error = %error, "results report request failed");
        self.failures.push(error);
    }
}

/// One blob write.
#[derive(Debug, Clone, Copy)]
enum BlobWrite<'a> {
    /// Create an empty append blob.
    CreateAppend,
    /// Append a block (sealing the blob if last).
    Append { data: &'a [u8], seal: bool },
    /// Write a whole block blob.
    Block { data: &'a [u8] },
}

impl BlobWrite<'_> {
    fn what(&self) -> &'static str {
        match self {
            BlobWrite::CreateAppend => "blob create",
            BlobWrite::Append { .. } => "blob append",
            BlobWrite::Block { .. } => "blob upload",
        }
    }
}

fn chunk_time() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn parse_signed(url: Option<&str>, what: &'static str) -> Result<Url, ReportError> {
    let raw = url.unwrap_or_default();
    Url::parse(raw).map_err(|_| ReportError::Refused { what })
}

impl Sink for ResultsSink {
    async fn send(&mut self, drain: Drain, state: &Shared) -> bool {
        let mut ok = true;
        if let Err(error) = self.update_steps(&drain.records).await {
            tracing::warn!(error = %error, "steps update failed, will resend");
            let ids: Vec<Uuid> = drain.records.iter().map(|r| r.id).collect();
            lock(state).requeue_records(&ids);
            ok = false;
        }
        for chunk in &drain.chunks {
            if self.broken.contains(&chunk.record_id) {
                let error = ReportError::LogBroken {
                    record_id: chunk.record_id,
                    index: chunk.index,
                };
                self.record_failure(error);
                continue;
            }
            if let Err(error) = self.upload_chunk(chunk).await {
                // A lost block would leave a hole in an append blob: stop this log here.
                self.broken.insert(chunk.record_id);
                self.record_failure(error);
                ok = false;
            }
        }
        let console: usize = drain.console.iter().map(|b| b.lines.len()).sum();
        self.console_dropped += console as u64;
        for summary in &drain.summaries {
            if let Err(error) = self.upload_summary(summary).await {
                self.record_failure(error);
                ok = false;
            }
        }
        ok
    }

    fn take_failures(&mut self) -> Vec<ReportError> {
        if self.console_dropped > 0 {
            tracing::debug!(
                lines = self.console_dropped,
                "live console lines not streamed (no websocket)"
            );
        }
        std::mem::take(&mut self.failures)
    }
}
