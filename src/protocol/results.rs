//! The results service's wire types (Twirp JSON, protocol-transport.md §7.2): the steps of
//! `WorkflowStepsUpdate` with their integer status and conclusion codes, the answers of the
//! `Get*SignedBlobURL` calls, and the `{"ok"}` answer of the metadata calls. No I/O; the
//! reporter sends them (`job::report::results`).

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::protocol::TaskResult;
use crate::protocol::lifecycle::format_timestamp;
use crate::protocol::timeline::{RecordState, TimelineRecord};

/// `blob_storage_type` of Azure blob storage.
pub const BLOB_STORAGE_AZURE: &str = "BLOB_STORAGE_TYPE_AZURE";

/// `Status` code of a step (`0` unknown, `3` in progress, `5` pending, `6` completed).
pub fn status_code(state: RecordState) -> i32 {
    match state {
        RecordState::InProgress => 3,
        RecordState::Pending => 5,
        RecordState::Completed => 6,
    }
}

/// `Conclusion` code of a step (`0` unknown, `2` success, `3` failure, `4` cancelled,
/// `7` skipped).
pub fn conclusion_code(result: Option<TaskResult>) -> i32 {
    match result {
        Some(TaskResult::Succeeded | TaskResult::SucceededWithIssues) => 2,
        Some(TaskResult::Failed) => 3,
        Some(TaskResult::Canceled) => 4,
        Some(TaskResult::Skipped) => 7,
        Some(TaskResult::Abandoned) | None => 0,
    }
}

/// One step of `WorkflowStepsUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowStep {
    /// The step's record id.
    pub external_id: Uuid,
    /// 1-based number.
    pub number: u32,
    /// Display name.
    pub name: String,
    /// Status code.
    pub status: i32,
    /// Start (`yyyy-MM-ddTHH:mm:ss.fffZ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Conclusion code.
    pub conclusion: i32,
}

impl WorkflowStep {
    /// Maps a `Task` record.
    pub fn from_record(record: &TimelineRecord) -> Self {
        WorkflowStep {
            external_id: record.id,
            number: record.order.unwrap_or(0),
            name: record.name.clone(),
            status: status_code(record.state),
            started_at: record.start_time.map(format_timestamp),
            completed_at: record.finish_time.map(format_timestamp),
            conclusion: conclusion_code(record.result),
        }
    }
}

/// Answer of the `Get*SignedBlobURL` calls (`logs_url` or `summary_url`).
#[derive(Debug, Clone, Deserialize)]
pub struct SignedUrl {
    /// Log upload URL.
    #[serde(default)]
    pub logs_url: Option<String>,
    /// Summary upload URL.
    #[serde(default)]
    pub summary_url: Option<String>,
    /// `BLOB_STORAGE_TYPE_AZURE`, `BLOB_STORAGE_TYPE_UNSPECIFIED` (or their integer codes).
    #[serde(default)]
    pub blob_storage_type: Option<serde_json::Value>,
    /// Largest accepted size (int64: number or string).
    #[serde(default, deserialize_with = "int64")]
    pub soft_size_limit: Option<u64>,
}

impl SignedUrl {
    /// Whether uploads use the Azure blob protocol headers.
    pub fn is_azure(&self) -> bool {
        match &self.blob_storage_type {
            Some(serde_json::Value::String(kind)) => kind.eq_ignore_ascii_case(BLOB_STORAGE_AZURE),
            Some(serde_json::Value::Number(code)) => code.as_i64() == Some(1),
            _ => false,
        }
    }
}

/// Reads a protobuf int64 given as a number or a string.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let raw = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match raw {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Answer of the metadata and step-update calls.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct OkAnswer {
    /// Whether the service took the call.
    #[serde(default)]
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::timeline::RECORD_TYPE_TASK;

    #[test]
    fn status_and_conclusion_codes_follow_the_official_runner() {
        assert_eq!(
            [
                RecordState::Pending,
                RecordState::InProgress,
                RecordState::Completed
            ]
            .map(status_code),
            [5, 3, 6]
        );
        let results = [
            Some(TaskResult::Succeeded),
            Some(TaskResult::SucceededWithIssues),
            Some(TaskResult::Failed),
            Some(TaskResult::Canceled),
            Some(TaskResult::Skipped),
            Some(TaskResult::Abandoned),
            None,
        ];
        assert_eq!(results.map(conclusion_code), [2, 2, 3, 4, 7, 0, 0]);
    }

    #[test]
    fn step_is_snake_case_with_integer_enums() {
        let mut record = TimelineRecord::new(
            Uuid::from_u128(5),
            Some(Uuid::nil()),
            RECORD_TYPE_TASK,
            "Run",
        );
        record.order = Some(2);
        record.state = RecordState::Completed;
        record.result = Some(TaskResult::Failed);
        let json = serde_json::to_value(WorkflowStep::from_record(&record)).unwrap();
        assert_eq!(json["external_id"], "00000000-0000-0000-0000-000000000005");
        assert_eq!(
            (json["status"].as_i64(), json["conclusion"].as_i64()),
            (Some(6), Some(3))
        );
        assert_eq!(json["number"], 2);
        assert!(json.get("started_at").is_none());
    }

    #[test]
    fn signed_url_accepts_int64_as_string_and_enum_as_name_or_code() {
        let named: SignedUrl = serde_json::from_str(
            r#"{"logs_url":"http://b/x?sig=1","blob_storage_type":"BLOB_STORAGE_TYPE_AZURE","soft_size_limit":"1024"}"#,
        )
        .unwrap();
        assert!(named.is_azure());
        assert_eq!(named.soft_size_limit, Some(1024));
        let coded: SignedUrl = serde_json::from_str(
            r#"{"summary_url":"u","blob_storage_type":1,"soft_size_limit":5,"extra":true}"#,
        )
        .unwrap();
        assert!(coded.is_azure());
        assert_eq!(coded.soft_size_limit, Some(5));
        let plain: SignedUrl = serde_json::from_str(
            r#"{"logs_url":"u","blob_storage_type":"BLOB_STORAGE_TYPE_UNSPECIFIED"}"#,
        )
        .unwrap();
        assert!(!plain.is_azure());
    }
}
