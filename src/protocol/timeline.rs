//! The legacy (VSS) timeline's wire types (protocol-transport.md §7.1): the records PATCHed to
//! `.../timelines/{timelineId}/records` (camelCase), their issues (annotations on this path),
//! their log references, and the log-create answer. No I/O; the reporter fills them
//! (`job::report::record`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::TaskResult;

/// `TimelineRecord.type` of the job's own record.
pub const RECORD_TYPE_JOB: &str = "Job";
/// `TimelineRecord.type` of a step's record.
pub const RECORD_TYPE_TASK: &str = "Task";

/// `TimelineRecordState` (wire: camelCase strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordState {
    /// Not started yet.
    Pending,
    /// Running.
    InProgress,
    /// Finished (see `result`).
    Completed,
}

impl RecordState {
    /// The wire word (`pending`, `inProgress`, `completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::InProgress => "inProgress",
            RecordState::Completed => "completed",
        }
    }
}

/// `TaskLogReference`: the log attached to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRef {
    /// The log id returned by the log-create call.
    pub id: i64,
}

/// The answer to a log create (`TaskLog`); only the id matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TaskLog {
    /// The new log's id.
    #[serde(alias = "Id")]
    pub id: i64,
}

/// A timeline issue (an annotation on the legacy path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// `error`, `warning` or `notice`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `General` for workflow-command annotations.
    pub category: String,
    /// The message.
    pub message: String,
    /// Raised by the runner itself, not by the workflow.
    pub is_infrastructure_issue: bool,
    /// `file`, `line`, `endLine`, `col`, `endColumn`, `title`, `logFileLineNumber` (strings).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// One timeline record as PATCHed to `.../timelines/{timelineId}/records` (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineRecord {
    /// Record id (the step id, or the job id for the job record).
    pub id: Uuid,
    /// The job record's id for steps; none for the job record.
    pub parent_id: Option<Uuid>,
    /// `Job` or `Task`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Display name.
    pub name: String,
    /// 1-based step number (the job record has none).
    pub order: Option<u32>,
    /// Pending, in progress or completed.
    pub state: RecordState,
    /// Final result, once completed.
    pub result: Option<TaskResult>,
    /// When it started (ISO-8601).
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished (ISO-8601).
    pub finish_time: Option<DateTime<Utc>>,
    /// The log holding this record's output, once created.
    pub log: Option<LogRef>,
    /// Number of error issues.
    pub error_count: u32,
    /// Number of warning issues.
    pub warning_count: u32,
    /// Number of notice issues.
    pub notice_count: u32,
    /// Issues raised while this record ran.
    pub issues: Vec<Issue>,
    /// The runner's name.
    pub worker_name: Option<String>,
    /// Attempt number (always 1: we never retry a step).
    pub attempt: u32,
}

impl TimelineRecord {
    /// A record in the `pending` state.
    pub fn new(id: Uuid, parent_id: Option<Uuid>, record_type: &str, name: &str) -> Self {
        TimelineRecord {
            id,
            parent_id,
            record_type: record_type.to_owned(),
            name: name.to_owned(),
            order: None,
            state: RecordState::Pending,
            result: None,
            start_time: None,
            finish_time: None,
            log: None,
            error_count: 0,
            warning_count: 0,
            notice_count: 0,
            issues: Vec::new(),
            worker_name: None,
            attempt: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_serializes_camel_case_with_type_and_state() {
        let mut record =
            TimelineRecord::new(Uuid::nil(), Some(Uuid::max()), RECORD_TYPE_TASK, "Run make");
        record.state = RecordState::InProgress;
        record.log = Some(LogRef { id: 7 });
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["type"], "Task");
        assert_eq!(json["state"], "inProgress");
        assert_eq!(json["parentId"], "ffffffff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(json["log"]["id"], 7);
        assert_eq!(json["errorCount"], 0);
    }

    #[test]
    fn task_log_reads_either_casing() {
        let log: TaskLog = serde_json::from_str(r#"{"Id":3,"path":"logs\\x"}"#).unwrap();
        assert_eq!(log.id, 3);
        let log: TaskLog = serde_json::from_str(r#"{"id":4}"#).unwrap();
        assert_eq!(log.id, 4);
    }
}
