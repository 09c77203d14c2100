//! The workflow library: a workflow YAML file → the [`AgentJobRequestMessage`] GitHub's service
//! would send a runner for one of its jobs. Pure (no I/O, no HTTP): the embedded local service
//! (`crate::localsvc`) queues what this compiles, and tests and benchmarks compile jobs directly.
//!
//! ```text
//! YAML ──yaml──► marked nodes ──parse──► jobs, one job, runs-on (errors with line/col)
//! WorkflowJob + run ──expand──► CompileRequest (which job, `github` context, fresh ids)
//! CompileRequest ──compile──► AgentJobRequestMessage + runs-on labels
//!   steps ──step──► ActionSteps (conditions normalised)
//!   scalars ──scalar──► TemplateTokens (${{ }} → format())
//! ```
//!
//! Files, one per responsibility:
//!
//! - [`yaml`]: YAML text → a tree of nodes that remember their line and column.
//! - [`parse`]: the workflow's shape: the root mapping, `jobs`, looking a job up, `runs-on`.
//! - [`expand`]: a [`WorkflowJob`] of a run → the concrete job to compile (which job, the
//!   `github` context, fresh ids). Matrix and `needs` expansion, and the job graph a future
//!   `exec` command needs, belong here.
//! - [`compile`]: one job → [`AgentJobRequestMessage`] (env, defaults, outputs, endpoints,
//!   variables, contexts).
//! - [`step`]: one `run:` step → an [`ActionStep`](crate::protocol::step::ActionStep), and
//!   step condition normalisation.
//! - [`scalar`]: YAML scalars → template tokens.
//!
//! Supported: workflow and job `env`, `defaults.run`, job `outputs`, `runs-on`, and `run:`
//! steps with `name`, `id`, `if`, `env`, `shell`, `working-directory`, `continue-on-error`,
//! `timeout-minutes`. Step conditions are normalised as the service does (§2): empty →
//! `success()`, no status function → `success() && (<expr>)`. `uses:` steps, matrices,
//! containers and services are refused with a clear error. Secrets and the `github` context come
//! from the caller (who knows the run).

use crate::job::template::SourceLocation;
#[cfg(doc)]
use crate::protocol::job::AgentJobRequestMessage;

pub mod compile;
pub mod expand;
pub mod parse;
pub mod scalar;
pub mod step;
pub mod yaml;

pub use compile::{CompileRequest, CompiledJob, JobIds, compile_job};
pub use expand::{WorkflowJob, compile_workflow_job};
pub use parse::job_ids;
pub use step::normalize_condition;

/// Why a workflow cannot be compiled. Every variant names the file and, where known, the line
/// and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    /// The YAML itself is malformed.
    #[error("{location}invalid YAML: {message}")]
    Yaml {
        /// Where.
        location: SourceLocation,
        /// The parser's message.
        message: String,
    },
    /// The workflow is well-formed YAML but not a valid workflow for this compiler.
    #[error("{location}{message}")]
    Invalid {
        /// Where.
        location: SourceLocation,
        /// What is wrong.
        message: String,
    },
    /// An expression is malformed.
    #[error("{location}invalid expression `{expression}`: {message}")]
    Expression {
        /// Where (the scalar holding it).
        location: SourceLocation,
        /// The expression.
        expression: String,
        /// The engine's message.
        message: String,
    },
    /// The requested job is not in the workflow.
    #[error("job `{job}` is not in the workflow (jobs: {})", available.join(", "))]
    NoSuchJob {
        /// The job asked for.
        job: String,
        /// The jobs there are.
        available: Vec<String>,
    },
}

impl WorkflowError {
    /// An error about the whole file `file`.
    pub fn in_file(file: &str, message: impl Into<String>) -> Self {
        WorkflowError::Invalid {
            location: SourceLocation {
                file: Some(file.to_owned()),
                ..SourceLocation::default()
            },
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
