//! The legacy (VSS) sink: timeline records, logs, live feed lines and step-summary attachments,
//! all with the job token as `Bearer` (protocol-transport.md §7.1).
//!
//! Order within one drain: records (PATCH, wrapped `{"count","value"}`), log chunks, console
//! lines, summaries. A record's log is created on its first chunk (`POST .../logs`), every chunk
//! is appended to that same log (`POST .../logs/{id}`, octet-stream), and the log id is set on
//! the record, which goes out with the next PATCH. (The official runner creates one log per
//! 8 MiB page and points the record at the last one; appending keeps the whole output under one
//! log id.) Summaries are attached to the job record as `Checks.Step.Summary`, named by step id.
//!
//! Every request goes through the shared [`HttpClient`] (one attempt each; the operation is
//! retried per the reporter's [`RetryPolicy`]). Wire types live in [`crate::protocol::timeline`].

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::batch::{FeedBatch, LogChunk};
use super::record::{TaskLog, TimelineRecord};
use super::routes::{LEGACY_API_VERSION, LegacyRoute, PlanScope, legacy_url};
use super::state::{Drain, PendingSummary};
use super::{ReportError, ReportTarget, Shared, Sink, lock, read_json, send};
use crate::client::{HttpClient, RetryPolicy, Timeouts};

/// Attachment type of a step summary.
pub const STEP_SUMMARY_ATTACHMENT: &str = "Checks.Step.Summary";

/// Sends drains to the legacy service.
pub struct LegacySink {
    http: HttpClient,
    base: Url,
    scope: PlanScope,
    token: String,
    job_id: Uuid,
    retry: RetryPolicy,
    logs: HashMap<Uuid, i64>,
    broken: HashSet<Uuid>,
    /// Records whose issues the server refused (413 and the like): sent without them.
    issues_refused: HashSet<Uuid>,
    failures: Vec<ReportError>,
}

impl LegacySink {
    /// A sink for `target`'s plan.
    pub fn new(target: ReportTarget, http: HttpClient, retry: RetryPolicy) -> Self {
        LegacySink {
            scope: target.scope(),
            base: target.server_url,
            token: target.access_token,
            job_id: target.job_id,
            http,
            retry,
            logs: HashMap::new(),
            broken: HashSet::new(),
            issues_refused: HashSet::new(),
            failures: Vec::new(),
        }
    }

    fn url(&self, route: &LegacyRoute) -> Url {
        legacy_url(&self.base, &self.scope, route)
    }

    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url.clone())
            .timeout(Timeouts::OFFICIAL.report_request)
            .bearer_auth(&self.token)
            .header(
                ACCEPT,
                format!("application/json; api-version={LEGACY_API_VERSION}"),
            )
    }

    fn json_request(
        &self,
        method: Method,
        url: &Url,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.request(method, url)
            .header(
                CONTENT_TYPE,
                format!("application/json; charset=utf-8; api-version={LEGACY_API_VERSION}"),
            )
            .body(body.to_string())
    }

    /// PATCHes the drain's records. Records whose issues the server once refused go without
    /// them; a body refused now (413, 400, 422) is sent again without issues, and those records
    /// stay without them (the step log keeps every annotation line).
    async fn patch_records(&mut self, drain: &Drain) -> Result<(), ReportError> {
        let records: Vec<TimelineRecord> = drain
            .records
            .iter()
            .map(|r| self.without_refused_issues(r))
            .collect();
        match self.patch(&records).await {
            Err(error)
                if error.is_body_rejected() && records.iter().any(|r| !r.issues.is_empty()) =>
            {
                tracing::warn!(
                    error = %error,
                    "timeline update refused; sending the records again without their annotations"
                );
                self.issues_refused.extend(records.iter().map(|r| r.id));
                let bare: Vec<TimelineRecord> = records
                    .iter()
                    .map(|r| self.without_refused_issues(r))
                    .collect();
                self.patch(&bare).await
            }
            other => other,
        }
    }

    fn without_refused_issues(&self, record: &TimelineRecord) -> TimelineRecord {
        let mut record = record.clone();
        if self.issues_refused.contains(&record.id) {
            record.issues.clear();
        }
        record
    }

    async fn patch(&self, records: &[TimelineRecord]) -> Result<(), ReportError> {
        let url = self.url(&LegacyRoute::Records);
        let body = json!({"count": records.len(), "value": records});
        self.retry
            .run(|| {
                send(
                    &self.http,
                    self.json_request(Method::PATCH, &url, &body),
                    "timeline records",
                )
            })
            .await
            .map(drop)
    }

    async fn create_log(&self, record_id: Uuid) -> Result<i64, ReportError> {
        let url = self.url(&LegacyRoute::CreateLog);
        let now = Utc::now();
        let body =
            json!({"path": format!("logs\\{record_id}"), "createdOn": now, "lastChangedOn": now});
        let log: TaskLog = self
            .retry
            .run(|| async {
                let response = send(
                    &self.http,
                    self.json_request(Method::POST, &url, &body),
                    "log create",
                )
                .await?;
                read_json(response, "log create").await
            })
            .await?;
        Ok(log.id)
    }

    async fn append_log(&self, log_id: i64, data: &[u8]) -> Result<(), ReportError> {
        let url = self.url(&LegacyRoute::AppendLog { log_id });
        self.retry
            .run(|| {
                let request = self
                    .request(Method::POST, &url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.to_vec());
                send(&self.http, request, "log append")
            })
            .await
            .map(drop)
    }

    async fn upload_chunk(&mut self, chunk: &LogChunk, state: &Shared) -> Result<(), ReportError> {
        if self.broken.contains(&chunk.record_id) {
            return Err(ReportError::LogBroken {
                record_id: chunk.record_id,
                index: chunk.index,
            });
        }
        let log_id = match self.logs.get(&chunk.record_id) {
            Some(id) => *id,
            None => {
                let id = self.create_log(chunk.record_id).await.inspect_err(|_| {
                    self.broken.insert(chunk.record_id);
                })?;
                self.logs.insert(chunk.record_id, id);
                lock(state).set_log_ref(chunk.record_id, id);
                id
            }
        };
        if !chunk.data.is_empty() {
            self.append_log(log_id, &chunk.data).await?;
        }
        tracing::debug!(record_id = %chunk.record_id, log_id, index = chunk.index, bytes = chunk.data.len(), "log chunk uploaded");
        Ok(())
    }

    async fn send_feed(&self, batch: &FeedBatch) -> Result<(), ReportError> {
        let url = self.url(&LegacyRoute::Feed {
            record_id: self.job_id,
        });
        let body = json!({
            "count": batch.lines.len(),
            "value": batch.lines,
            "stepId": batch.step_id,
            "startLine": batch.start_line,
        });
        self.retry
            .run(|| {
                send(
                    &self.http,
                    self.json_request(Method::POST, &url, &body),
                    "feed lines",
                )
            })
            .await
            .map(drop)
    }

    async fn attach_summary(&self, summary: &PendingSummary) -> Result<(), ReportError> {
        let url = self.url(&LegacyRoute::Attachment {
            record_id: self.job_id,
            kind: STEP_SUMMARY_ATTACHMENT.to_owned(),
            name: summary.step_id.to_string(),
        });
        self.retry
            .run(|| {
                let request = self
                    .request(Method::PUT, &url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(summary.markdown.clone().into_bytes());
                send(&self.http, request, "summary attachment")
            })
            .await
            .map(drop)
    }

    fn record_failure(&mut self, error: ReportError) {
        tracing::warn!(error = %error, "legacy report request failed");
        self.failures.push(error);
    }
}

impl Sink for LegacySink {
    async fn send(&mut self, drain: Drain, state: &Shared) -> bool {
        let mut ok = true;
        if !drain.records.is_empty() {
            if let Err(error) = self.patch_records(&drain).await {
                // Records are state, not history: the newest snapshot goes out next round.
                tracing::warn!(error = %error, "timeline update failed, will resend");
                let ids: Vec<Uuid> = drain.records.iter().map(|r| r.id).collect();
                lock(state).requeue_records(&ids);
                ok = false;
            }
        }
        for chunk in &drain.chunks {
            if let Err(error) = self.upload_chunk(chunk, state).await {
                self.record_failure(error);
                ok = false;
            }
        }
        for batch in &drain.console {
            if let Err(error) = self.send_feed(batch).await {
                // Live lines are best effort: the full log carries them.
                tracing::debug!(error = %error, "feed lines dropped");
            }
        }
        for summary in &drain.summaries {
            if let Err(error) = self.attach_summary(summary).await {
                self.record_failure(error);
                ok = false;
            }
        }
        ok
    }

    fn take_failures(&mut self) -> Vec<ReportError> {
        std::mem::take(&mut self.failures)
    }
}
