//! Filling timeline records, issues and the per-step results of `completejob` (pure, no I/O).
//! The wire types themselves live with the protocol ([`crate::protocol::timeline`],
//! [`crate::protocol::completion`]); this module maps the runtime's annotations onto them and
//! queues changed records.
//!
//! A job has one `Job` record and one `Task` record per step (parent = the job record). Records
//! travel whole: the reporter keeps the current state of each one and sends a snapshot of every
//! record that changed since the last send (a [`RecordQueue`] merges repeated changes of one
//! record into a single entry). Annotations become timeline `issues` on the legacy path and
//! `annotations` of `completejob` on the run-service path.

use std::collections::HashSet;

use uuid::Uuid;

use crate::job::events::{Annotation, AnnotationLevel};
pub use crate::protocol::completion::{Completion, CompletionAnnotation, StepResult};
pub use crate::protocol::timeline::{
    Issue, LogRef, RECORD_TYPE_JOB, RECORD_TYPE_TASK, RecordState, TaskLog, TimelineRecord,
};

impl TimelineRecord {
    /// Counts an annotation and, while fewer than [`MAX_ISSUES_PER_TYPE`] of its type are on the
    /// record, adds it as an issue; returns whether it was added. The official runner keeps the
    /// same number of issues (`ExecutionContext.AddIssue`) but stops counting there; the counters
    /// here keep the true totals.
    pub fn add_issue(&mut self, annotation: &Annotation, log_line: Option<u64>) -> bool {
        let count = match annotation.level {
            AnnotationLevel::Error => &mut self.error_count,
            AnnotationLevel::Warning => &mut self.warning_count,
            AnnotationLevel::Notice => &mut self.notice_count,
        };
        *count = count.saturating_add(1);
        if *count as usize > MAX_ISSUES_PER_TYPE {
            return false;
        }
        self.issues
            .push(issue_from_annotation(annotation, log_line));
        true
    }
}

/// Issues of one type a record keeps (the official runner's `_maxCountPerIssueType`).
pub const MAX_ISSUES_PER_TYPE: usize = 10;

/// Changed record ids, in first-change order, each at most once.
///
/// The reporter owns the records; the queue only remembers which ones to send. A failed send is
/// put back with [`RecordQueue::requeue`], which merges it with changes made meanwhile (the
/// snapshot sent next is always the newest state).
#[derive(Debug, Default)]
pub struct RecordQueue {
    order: Vec<Uuid>,
    seen: HashSet<Uuid>,
}

impl RecordQueue {
    /// Marks a record changed.
    pub fn push(&mut self, id: Uuid) {
        if self.seen.insert(id) {
            self.order.push(id);
        }
    }

    /// Takes every changed id, oldest first.
    pub fn take(&mut self) -> Vec<Uuid> {
        self.seen.clear();
        std::mem::take(&mut self.order)
    }

    /// Puts back ids whose send failed, ahead of the ones changed meanwhile.
    pub fn requeue(&mut self, ids: &[Uuid]) {
        let newer = self.take();
        for id in ids.iter().chain(newer.iter()) {
            self.push(*id);
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The wire word of an annotation level on the legacy path (`Issue.type`).
pub fn issue_type(level: AnnotationLevel) -> &'static str {
    match level {
        AnnotationLevel::Error => "error",
        AnnotationLevel::Warning => "warning",
        AnnotationLevel::Notice => "notice",
    }
}

/// The wire word of an annotation level for `completejob` (error → `failure`).
pub fn annotation_level(level: AnnotationLevel) -> &'static str {
    match level {
        AnnotationLevel::Error => "failure",
        AnnotationLevel::Warning => "warning",
        AnnotationLevel::Notice => "notice",
    }
}

/// Maps an annotation to a timeline issue; `log_line` is the 1-based log line it follows.
pub fn issue_from_annotation(annotation: &Annotation, log_line: Option<u64>) -> Issue {
    let mut data = serde_json::Map::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            data.insert(key.to_owned(), serde_json::Value::String(value));
        }
    };
    put("title", annotation.title.clone());
    put("file", annotation.file.clone());
    put("line", annotation.line.map(|v| v.to_string()));
    put("endLine", annotation.end_line.map(|v| v.to_string()));
    put("col", annotation.col.map(|v| v.to_string()));
    put("endColumn", annotation.end_col.map(|v| v.to_string()));
    put("logFileLineNumber", log_line.map(|v| v.to_string()));
    Issue {
        kind: issue_type(annotation.level).to_owned(),
        category: "General".to_owned(),
        message: annotation.message.clone(),
        is_infrastructure_issue: false,
        data,
    }
}

impl CompletionAnnotation {
    /// Maps an event annotation (error → `failure`; the end line defaults to the start line as
    /// the official runner does for single-line annotations).
    pub fn from_annotation(annotation: &Annotation, step_number: Option<u32>) -> Self {
        CompletionAnnotation {
            level: annotation_level(annotation.level).to_owned(),
            message: annotation.message.clone(),
            title: annotation.title.clone(),
            path: annotation.file.clone(),
            is_infrastructure_issue: false,
            start_line: annotation.line,
            end_line: annotation.end_line.or(annotation.line),
            start_column: annotation.col,
            end_column: annotation.end_col,
            step_number,
        }
    }
}

/// Formats a timestamp as the results and run services want it (`yyyy-MM-ddTHH:mm:ss.fffZ`):
/// the protocol's one formatter.
pub use crate::protocol::lifecycle::format_timestamp as results_timestamp;

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn annotation(level: AnnotationLevel) -> Annotation {
        Annotation {
            level,
            message: "boom".into(),
            title: Some("Build".into()),
            file: Some("src/a.c".into()),
            line: Some(3),
            end_line: None,
            col: Some(1),
            end_col: Some(4),
        }
    }

    #[test]
    fn annotation_becomes_issue_with_string_data_and_counter() {
        let mut record = TimelineRecord::new(Uuid::nil(), None, RECORD_TYPE_TASK, "s");
        record.add_issue(&annotation(AnnotationLevel::Error), Some(7));
        record.add_issue(&annotation(AnnotationLevel::Notice), None);
        assert_eq!(
            (
                record.error_count,
                record.warning_count,
                record.notice_count
            ),
            (1, 0, 1)
        );
        let json = serde_json::to_value(&record.issues[0]).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["category"], "General");
        assert_eq!(json["data"]["line"], "3");
        assert_eq!(json["data"]["endColumn"], "4");
        assert_eq!(json["data"]["logFileLineNumber"], "7");
        assert!(json["data"].get("endLine").is_none());
        assert_eq!(record.issues[1].kind, "notice");
    }

    #[test]
    fn completion_annotation_maps_error_to_failure_and_omits_absent_fields() {
        let mut source = annotation(AnnotationLevel::Error);
        source.title = None;
        let json =
            serde_json::to_value(CompletionAnnotation::from_annotation(&source, Some(2))).unwrap();
        assert_eq!(json["level"], "failure");
        assert_eq!(json["path"], "src/a.c");
        assert_eq!(json["startLine"], 3);
        assert_eq!(json["endLine"], 3);
        assert_eq!(json["stepNumber"], 2);
        assert!(json.get("title").is_none());
        let warning =
            CompletionAnnotation::from_annotation(&annotation(AnnotationLevel::Warning), None);
        assert_eq!(warning.level, "warning");
    }

    #[test]
    fn record_queue_merges_per_id_and_requeues_failed_first() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut queue = RecordQueue::default();
        queue.push(a);
        queue.push(b);
        queue.push(a);
        let sent = queue.take();
        assert_eq!(sent, vec![a, b]);
        assert!(queue.is_empty());
        queue.push(c);
        queue.push(b);
        queue.requeue(&sent);
        assert_eq!(queue.take(), vec![a, b, c]);
    }

    #[test]
    fn results_timestamp_has_milliseconds_and_z() {
        let at = DateTime::parse_from_rfc3339("2026-07-01T12:00:09.456789Z").unwrap();
        assert_eq!(
            results_timestamp(at.with_timezone(&Utc)),
            "2026-07-01T12:00:09.456Z"
        );
    }
}
