//! Why an action manifest cannot be used: [`ManifestError`], each message starting with the
//! action's display name and naming the problem.

use std::path::PathBuf;

use super::manifest::MAX_MANIFEST_BYTES;
use super::runs::SUPPORTED_USING;
use super::slots::Problem;

/// Why a manifest cannot be used. Each message starts with the action's display name.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The directory has neither `action.yml` nor `action.yaml`.
    #[error("action `{action}`: neither action.yml nor action.yaml is in {}", dir.display())]
    NotFound {
        /// The action.
        action: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// The manifest could not be read.
    #[error("action `{action}`: cannot read {}", path.display())]
    Read {
        /// The action.
        action: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is larger than [`MAX_MANIFEST_BYTES`].
    #[error("action `{action}`: {} is larger than {MAX_MANIFEST_BYTES} bytes", path.display())]
    TooLarge {
        /// The action.
        action: String,
        /// The file.
        path: PathBuf,
    },
    /// The text is not YAML.
    #[error("action `{action}`: {file}{} is not valid YAML: {message}", line_col(*line, *col))]
    NotYaml {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
        /// 1-based line, if known.
        line: Option<usize>,
        /// 1-based column, if known.
        col: Option<usize>,
        /// The YAML reader's message.
        message: String,
    },
    /// The document is not a mapping.
    #[error("action `{action}`: {file} must be a mapping, not {found}")]
    NotMapping {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
        /// What it is (`a sequence`, `an empty document`, …).
        found: String,
    },
    /// No top-level `runs:`.
    #[error("action `{action}`: the top-level `runs:` section is missing from {file}")]
    MissingRuns {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
    },
    /// `runs` has neither `using` nor `plugin`.
    #[error("action `{action}`: `runs.using` is missing from {file}; it must be one of: {}", SUPPORTED_USING.join(", "))]
    MissingUsing {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
    },
    /// `runs.using` names no supported kind.
    #[error("action `{action}`: `runs.using: {using}` is not supported; use one of: {}", SUPPORTED_USING.join(", "))]
    UnknownUsing {
        /// The action.
        action: String,
        /// The value given.
        using: String,
    },
    /// A JavaScript action without `runs.main`.
    #[error(
        "action `{action}`: a JavaScript action (`using: {using}`) needs `runs.main`, its entry file, in {file}"
    )]
    MissingMain {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
        /// The `using` value.
        using: String,
    },
    /// A composite action without `runs.steps`.
    #[error("action `{action}`: a composite action needs `runs.steps` in {file}")]
    MissingSteps {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
    },
    /// A Docker action without `runs.image`.
    #[error(
        "action `{action}`: a Docker action needs `runs.image` (a Dockerfile or docker://image) in {file}"
    )]
    MissingImage {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
    },
    /// `runs.image` is neither a Dockerfile path nor `docker://…`.
    #[error(
        "action `{action}`: `runs.image: {image}` should be either `[path]/Dockerfile` or `docker://image[:tag]`"
    )]
    InvalidImage {
        /// The action.
        action: String,
        /// The value given.
        image: String,
    },
    /// A value does not have the shape the schema asks for (wrong type, unexpected key, an
    /// expression where none is allowed or naming an unknown context, a bad step id, …).
    #[error("action `{action}`: {file} (Line: {line}, Col: {col}): {message}")]
    Invalid {
        /// The action.
        action: String,
        /// The manifest's file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

fn line_col(line: Option<usize>, col: Option<usize>) -> String {
    match (line, col) {
        (Some(line), Some(col)) => format!(" (Line: {line}, Col: {col})"),
        (Some(line), None) => format!(" (Line: {line})"),
        _ => String::new(),
    }
}

/// Who and where, for errors: the action's display name and the manifest's file name.
pub(super) struct Source<'a> {
    /// The action (`actions/checkout@v4`).
    pub(super) action: &'a str,
    /// `action.yml` or `action.yaml`.
    pub(super) file: &'a str,
}

impl Source<'_> {
    /// A [`ManifestError::Invalid`] for `problem`.
    pub(super) fn invalid(&self, problem: Problem) -> ManifestError {
        ManifestError::Invalid {
            action: self.action.to_owned(),
            file: self.file.to_owned(),
            line: problem.mark.line,
            col: problem.mark.col,
            message: problem.message,
        }
    }
}
