//! What happens during a job, as the step runtime reports it to a reporter. Every text here is
//! already masked: reporters never see secret values.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::protocol::TaskResult;

/// Severity of an annotation (`::error`, `::warning`, `::notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationLevel {
    /// `::error::` (wire: `failure`).
    Error,
    /// `::warning::`.
    Warning,
    /// `::notice::`.
    Notice,
}

/// An annotation raised by a step or by the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Severity.
    pub level: AnnotationLevel,
    /// The message (masked).
    pub message: String,
    /// Optional title.
    pub title: Option<String>,
    /// Workspace-relative file, with `/` separators.
    pub file: Option<String>,
    /// Start line.
    pub line: Option<u32>,
    /// End line.
    pub end_line: Option<u32>,
    /// Start column.
    pub col: Option<u32>,
    /// End column.
    pub end_col: Option<u32>,
}

/// Longest annotation message, in characters: the official runner cuts a (masked) message to
/// 4096 UTF-16 units (`ExecutionContext._maxIssueMessageLength`); here the unit is a `char`, so
/// no character is split.
pub const MAX_ANNOTATION_MESSAGE_CHARS: usize = 4096;

/// Longest title or file of an annotation, in characters. The official runner leaves them
/// uncut; a 4 MiB `title=` on 30 kept annotations would make every timeline update 120 MB, so
/// they are cut here too (a limit of this runner).
pub const MAX_ANNOTATION_PROPERTY_CHARS: usize = 1024;

impl Annotation {
    /// An annotation the runner raises itself: a level and a message, no position.
    pub fn runner(level: AnnotationLevel, message: String) -> Self {
        Annotation {
            level,
            message,
            title: None,
            file: None,
            line: None,
            end_line: None,
            col: None,
            end_col: None,
        }
    }

    /// The annotation with its message, title and file cut to the limits above. Apply after
    /// masking, as the official runner does, so that a cut cannot expose part of a secret.
    pub fn truncated(mut self) -> Self {
        cut_chars(&mut self.message, MAX_ANNOTATION_MESSAGE_CHARS);
        for property in [&mut self.title, &mut self.file].into_iter().flatten() {
            cut_chars(property, MAX_ANNOTATION_PROPERTY_CHARS);
        }
        self
    }
}

fn cut_chars(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
    }
}

/// One event of a running job, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job started (the job's own timeline record).
    JobStarted {
        /// When.
        at: DateTime<Utc>,
    },
    /// A step started.
    StepStarted {
        /// The step's timeline record id.
        step_id: Uuid,
        /// 1-based step number.
        number: u32,
        /// Display name.
        name: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A line of output for a step's log (or for the job's own log if `step_id` is `None`).
    Log {
        /// The step, or `None` for job-level lines (set-up, tear-down).
        step_id: Option<Uuid>,
        /// The line without its newline, masked.
        line: String,
    },
    /// An annotation.
    Annotation {
        /// The step that raised it, if any.
        step_id: Option<Uuid>,
        /// The annotation.
        annotation: Annotation,
    },
    /// A step's `GITHUB_STEP_SUMMARY` content (masked).
    StepSummary {
        /// The step.
        step_id: Uuid,
        /// Markdown.
        markdown: String,
    },
    /// A step finished (or was skipped).
    StepCompleted {
        /// The step.
        step_id: Uuid,
        /// Final result (after continue-on-error).
        result: TaskResult,
        /// When.
        at: DateTime<Utc>,
    },
    /// The job finished; no more events follow.
    JobCompleted {
        /// The job's result.
        result: TaskResult,
        /// Job outputs (name → value), evaluated at the end.
        outputs: Vec<(String, String)>,
        /// When.
        at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_cut_at_character_boundaries() {
        let annotation = Annotation {
            level: AnnotationLevel::Warning,
            message: "é".repeat(MAX_ANNOTATION_MESSAGE_CHARS + 5),
            title: Some("t".repeat(MAX_ANNOTATION_PROPERTY_CHARS * 3)),
            file: Some("short.rs".into()),
            line: Some(1),
            end_line: None,
            col: None,
            end_col: None,
        }
        .truncated();
        assert_eq!(
            annotation.message.chars().count(),
            MAX_ANNOTATION_MESSAGE_CHARS
        );
        assert!(annotation.message.chars().all(|c| c == 'é'));
        assert_eq!(
            annotation.title.as_deref().map(str::len),
            Some(MAX_ANNOTATION_PROPERTY_CHARS)
        );
        assert_eq!(annotation.file.as_deref(), Some("short.rs"));
    }
}
