//! The `${{ }}` expression language: lexer, parser, evaluator and functions, with the official
//! runner's coercion, comparison, truthiness and number-formatting rules.
//!
//! The entry point is [`evaluate`]; values are [`Value`]s, and named contexts (`github`, `env`,
//! `steps`, …) come from an [`Object`] in the [`EvalContext`].

pub mod value;

pub use value::{Object, Value};

/// Which stage of evaluation an error comes from (the corpus's `err.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text could not be split into tokens.
    Lexing,
    /// The tokens do not form an expression.
    Parsing,
    /// The expression failed while being evaluated.
    Evaluation,
}

impl ErrorKind {
    /// The corpus's name of the kind: `lexing`, `parsing` or `evaluation`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Lexing => "lexing",
            ErrorKind::Parsing => "parsing",
            ErrorKind::Evaluation => "evaluation",
        }
    }
}

/// An expression error, with the position (character offset) where it was found if known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// The stage.
    pub kind: ErrorKind,
    /// The message, e.g. `Unexpected symbol: '='. Located at position 3 within expression: a = b`.
    pub message: String,
    /// Character offset in the expression, if known.
    pub position: Option<usize>,
}

/// The job status that `success()`, `failure()` and `cancelled()` compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// No step has failed.
    Success,
    /// A step failed.
    Failure,
    /// The job was cancelled.
    Cancelled,
}

/// Computes `hashFiles(patterns…)` in the job's workspace, or says why it cannot.
pub type HashFilesFn<'a> = &'a (dyn Fn(&[String]) -> Result<String, String> + Send + Sync);

/// What an expression can see.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    /// Named values (`github`, `env`, `steps`, `matrix`, …); looked up case-insensitively.
    pub contexts: &'a Object,
    /// Job status for the status functions; `None` makes them an error (e.g. in `expr`).
    pub job_status: Option<JobStatus>,
    /// `hashFiles` implementation; `None` makes `hashFiles` an evaluation error.
    pub hash_files: Option<HashFilesFn<'a>>,
}

impl<'a> EvalContext<'a> {
    /// A context with only named values: no status functions, no `hashFiles`.
    pub fn new(contexts: &'a Object) -> Self {
        EvalContext {
            contexts,
            job_status: None,
            hash_files: None,
        }
    }
}

/// Parses and evaluates `source` (the text inside `${{ }}`).
pub fn evaluate(source: &str, ctx: &EvalContext<'_>) -> Result<Value, ExprError> {
    let _ = ctx;
    Err(ExprError {
        kind: ErrorKind::Evaluation,
        message: format!("the expression engine is not built yet: {source}"),
        position: None,
    })
}
