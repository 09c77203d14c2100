//! Annotations from `::error`, `::warning` and `::notice`: level, title, a workspace-relative
//! file, and the official line/column normalisation; and the `##[error]…` line that logs one.

use super::{CommandConfig, CommandEffect, WorkflowCommand};
use crate::job::events::{Annotation, AnnotationLevel};

/// The log line the official runner writes for an annotation: `##[error]message`.
pub fn annotation_log_line(annotation: &Annotation) -> String {
    let tag = match annotation.level {
        AnnotationLevel::Error => "error",
        AnnotationLevel::Warning => "warning",
        AnnotationLevel::Notice => "notice",
    };
    format!("##[{tag}]{}", annotation.message)
}

/// Builds an annotation from `::error|warning|notice` and applies the official line/column
/// normalisation, noting each correction as debug text.
pub(super) fn build_annotation(
    name: &str,
    command: &WorkflowCommand,
    config: &CommandConfig,
    out: &mut Vec<CommandEffect>,
) -> Annotation {
    let level = match name {
        "error" => AnnotationLevel::Error,
        "warning" => AnnotationLevel::Warning,
        _ => AnnotationLevel::Notice,
    };
    let number = |key: &str| {
        command
            .property(key)
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    let mut pos = Positions {
        line: number("line"),
        end_line: number("endLine"),
        col: number("col"),
        end_col: number("endColumn"),
    };
    for note in pos.normalise() {
        out.push(CommandEffect::Debug(format!(
            "Invalid {name} command value. {note}"
        )));
    }
    let file = command
        .property("file")
        .filter(|f| !f.is_empty())
        .map(|f| workspace_relative(f, config.workspace.as_deref()));
    Annotation {
        level,
        message: command.data.clone(),
        title: command.property("title").map(str::to_owned),
        file,
        line: pos.line,
        end_line: pos.end_line,
        col: pos.col,
        end_col: pos.end_col,
    }
}

/// Line and column properties of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Positions {
    line: Option<u32>,
    end_line: Option<u32>,
    col: Option<u32>,
    end_col: Option<u32>,
}

impl Positions {
    /// The official `ValidateLinesAndColumns` rules; returns a note per correction.
    fn normalise(&mut self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        let had_column = self.col.is_some() || self.end_col.is_some();
        if self.end_line.is_some() && self.line.is_none() {
            notes.push("'endLine' can only be set if 'line' is provided");
            self.line = self.end_line;
        }
        if self.end_col.is_some() && self.col.is_none() {
            notes.push("'endColumn' can only be set if 'col' is provided");
            self.col = self.end_col;
        }
        if self.line.is_none() && had_column {
            notes.push("'col' and 'endColumn' can only be set if 'line' value is provided.");
            (self.col, self.end_col) = (None, None);
        }
        if self.end_line.is_some() && self.line != self.end_line && had_column {
            notes.push(
                "'col' and 'endColumn' cannot be set if 'line' and 'endLine' are different values.",
            );
            (self.col, self.end_col) = (None, None);
        }
        if let (Some(line), Some(end)) = (self.line, self.end_line) {
            if end < line {
                notes.push("'endLine' cannot be less than 'line'.");
                (self.line, self.end_line) = (None, None);
            }
        }
        if let (Some(col), Some(end)) = (self.col, self.end_col) {
            if end < col {
                notes.push("'endColumn' cannot be less than 'col'.");
                (self.col, self.end_col) = (None, None);
            }
        }
        notes
    }
}

/// `file` relative to the workspace with `/` separators, if it lies inside it.
fn workspace_relative(file: &str, workspace: Option<&str>) -> String {
    let Some(workspace) = workspace.map(|w| w.trim_end_matches('/')) else {
        return file.to_owned();
    };
    match file
        .strip_prefix(workspace)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(relative) if !relative.is_empty() && !workspace.is_empty() => relative.to_owned(),
        _ => file.to_owned(),
    }
}
