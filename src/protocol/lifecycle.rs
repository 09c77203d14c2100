//! Job lifecycle bodies: the run service's `acquirejob` / `renewjob` / `completejob`
//! (protocol-transport.md §6.1: camelCase top level, snake_case `StepResult`) and the legacy
//! job-request renew / finish and `JobCompleted` plan event (§6.2). No I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::TaskResult;
use crate::protocol::completion::{CompletionAnnotation, StepResult};
use crate::protocol::job::ActionsEnvironmentReference;

/// The lock token of legacy job-request calls: always the empty GUID.
pub const EMPTY_LOCK_TOKEN: &str = "00000000-0000-0000-0000-000000000000";

/// Formats a timestamp as the official runner does (`yyyy-MM-ddTHH:mm:ss.fffZ`).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a VSS date-time: RFC 3339, or without offset (read as UTC). `0001-01-01T00:00:00`
/// means "unset" and yields `None`.
pub fn parse_vss_datetime(text: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })?;
    (parsed.year() > 1).then_some(parsed)
}

/// `POST {run_service_url}acquirejob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquireJobRequest {
    /// The `runner_request_id` of the `RunnerJobRequest`.
    #[serde(alias = "JobMessageId")]
    pub job_message_id: String,
    /// `Linux`, `Windows` or `macOS`.
    #[serde(rename = "runnerOS", alias = "RunnerOS", alias = "runnerOs")]
    pub runner_os: String,
    /// Echo of the message's billing owner.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "BillingOwnerId"
    )]
    pub billing_owner_id: Option<String>,
}

/// `POST {systemVssUrl}renewjob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewJobRequest {
    /// `plan.planId`.
    #[serde(alias = "PlanId")]
    pub plan_id: String,
    /// `jobId`.
    #[serde(alias = "JobId")]
    pub job_id: String,
}

/// Answer to `renewjob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RenewJobResponse {
    /// Until when the job is ours.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "LockedUntil"
    )]
    pub locked_until: Option<String>,
}

/// A job output (`{"value": "...", "isSecret": false}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariableValue {
    /// The value.
    #[serde(default, alias = "Value")]
    pub value: String,
    /// Whether it is secret.
    #[serde(default, alias = "IsSecret")]
    pub is_secret: bool,
}

/// `POST {systemVssUrl}completejob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteJobRequest {
    /// `plan.planId`.
    pub plan_id: String,
    /// `jobId`.
    pub job_id: String,
    /// The job's result.
    pub conclusion: TaskResult,
    /// Job outputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, VariableValue>,
    /// Per-step results (snake_case keys; built by the reporter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_results: Vec<StepResult>,
    /// Every annotation of the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<CompletionAnnotation>,
    /// Deployment environment URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// Echo of the billing owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_owner_id: Option<String>,
    /// Set when the runner itself failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_failure_category: Option<String>,
}

/// Legacy `PATCH .../jobrequests/{requestId}` renew body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequestRenew {
    /// The request id.
    #[serde(alias = "RequestId")]
    pub request_id: i64,
}

/// Legacy finish body (plan version < 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequestFinish {
    /// The request id.
    #[serde(alias = "RequestId")]
    pub request_id: i64,
    /// When it finished.
    #[serde(alias = "FinishTime")]
    pub finish_time: String,
    /// The job's result.
    #[serde(alias = "Result")]
    pub result: TaskResult,
}

/// The runner a legacy job request is reserved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReservedAgent {
    /// Runner id.
    #[serde(default, alias = "Id")]
    pub id: u64,
    /// Runner name.
    #[serde(default, alias = "Name")]
    pub name: String,
}

/// Legacy `TaskAgentJobRequest` (answer to renew/finish).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentJobRequest {
    /// The request id.
    #[serde(default, alias = "RequestId")]
    pub request_id: i64,
    /// Until when the job is ours.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "LockedUntil"
    )]
    pub locked_until: Option<String>,
    /// The runner holding it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "ReservedAgent"
    )]
    pub reserved_agent: Option<ReservedAgent>,
    /// Set once finished.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Result")]
    pub result: Option<TaskResult>,
}

/// The `JobCompleted` plan event (plan version ≥ 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCompletedEvent {
    /// Always [`JobCompletedEvent::NAME`].
    pub name: String,
    /// The job.
    pub job_id: String,
    /// The request id.
    pub request_id: i64,
    /// The job's result.
    pub result: TaskResult,
    /// Job outputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, VariableValue>,
    /// Deployment environment, as the job message gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_environment: Option<ActionsEnvironmentReference>,
}

impl JobCompletedEvent {
    /// The event name.
    pub const NAME: &'static str = "JobCompleted";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_job_mixes_camel_and_snake_case() {
        let body = CompleteJobRequest {
            plan_id: "p".into(),
            job_id: "j".into(),
            conclusion: TaskResult::Succeeded,
            outputs: BTreeMap::from([(
                "result".to_owned(),
                VariableValue {
                    value: "42".into(),
                    is_secret: false,
                },
            )]),
            step_results: vec![StepResult {
                external_id: uuid::Uuid::nil(),
                number: 1,
                name: "Run make".into(),
                status: "completed".into(),
                conclusion: Some(TaskResult::Failed),
                started_at: Some("2026-07-01T12:00:01.123Z".into()),
                completed_at: None,
                completed_log_lines: 3,
                annotations: vec![],
            }],
            annotations: vec![],
            environment_url: None,
            billing_owner_id: None,
            infrastructure_failure_category: None,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["planId"], "p");
        assert_eq!(v["conclusion"], "succeeded");
        assert_eq!(v["outputs"]["result"]["isSecret"], false);
        assert_eq!(v["stepResults"][0]["completed_log_lines"], 3);
        assert_eq!(v["stepResults"][0]["conclusion"], "failed");
        assert!(v.get("annotations").is_none());
        assert!(v.get("billingOwnerId").is_none());
    }

    #[test]
    fn vss_datetimes() {
        assert!(parse_vss_datetime("0001-01-01T00:00:00").is_none());
        let t = parse_vss_datetime("2026-07-01T12:10:00Z").unwrap();
        assert_eq!(format_timestamp(t), "2026-07-01T12:10:00.000Z");
        let t = parse_vss_datetime("2026-07-01T12:10:00.5").unwrap();
        assert_eq!(format_timestamp(t), "2026-07-01T12:10:00.500Z");
        assert!(parse_vss_datetime("yesterday").is_none());
    }

    #[test]
    fn legacy_job_request_reads_pascal_case() {
        let r: TaskAgentJobRequest = serde_json::from_str(
            r#"{"RequestId":1234,"LockedUntil":"2026-01-01T00:10:00Z","ReservedAgent":{"Id":42,"Name":"b"},"x":1}"#,
        )
        .unwrap();
        assert_eq!(r.request_id, 1234);
        assert_eq!(r.reserved_agent.unwrap().name, "b");
    }
}
