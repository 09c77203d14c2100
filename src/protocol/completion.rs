//! What `completejob` carries about the job's steps (protocol-transport.md §6.1): per-step
//! results (snake_case keys) and annotations (camelCase). The reporting side fills them; the
//! lifecycle bodies in [`super::lifecycle`] send them. No I/O.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::TaskResult;

/// One annotation of `completejob` (camelCase; absent optionals omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionAnnotation {
    /// `failure`, `warning` or `notice`.
    pub level: String,
    /// The message.
    pub message: String,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// File path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Raised by the runner itself.
    pub is_infrastructure_issue: bool,
    /// Start line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    /// End line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    /// Start column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_column: Option<u32>,
    /// End column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u32>,
    /// The step that raised it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_number: Option<u32>,
}

/// One entry of `completejob.stepResults` (snake_case keys, §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's record id.
    pub external_id: Uuid,
    /// 1-based step number.
    pub number: u32,
    /// Display name.
    pub name: String,
    /// `pending`, `inProgress` or `completed`.
    pub status: String,
    /// `succeeded`, `failed`, ... (absent while unknown).
    pub conclusion: Option<TaskResult>,
    /// Start (`yyyy-MM-ddTHH:mm:ss.fffZ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End (`yyyy-MM-ddTHH:mm:ss.fffZ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Lines in the step's log.
    pub completed_log_lines: u64,
    /// Annotations the step raised.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub annotations: Vec<CompletionAnnotation>,
}

/// What `completejob` needs from the reporting side: `stepResults` and `annotations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    /// Per-step results, in step order.
    pub step_results: Vec<StepResult>,
    /// Every annotation of the job (step ones carry `stepNumber`).
    pub annotations: Vec<CompletionAnnotation>,
}
