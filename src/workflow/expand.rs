//! A workflow job of a run → the concrete job to compile: which job (the first when none is
//! named), the run's `github` context and fresh plan, timeline and job ids.
//!
//! Today a job expands to exactly one compiled job: [`parse`](super::parse) refuses matrices
//! (`strategy`) and `needs` is not read. Their expansion, and the job graph a future `exec`
//! command needs, belong in this file.

use uuid::Uuid;

use super::WorkflowError;
use super::compile::{CompileRequest, CompiledJob, JobIds, compile_job};
use super::parse::job_ids;

/// A workflow job to compile with [`compile_workflow_job`] (the embedded local service's
/// `queue_workflow_job` compiles it the same way and queues the message).
#[derive(Debug, Clone, Copy)]
pub struct WorkflowJob<'a> {
    /// The workflow YAML.
    pub yaml: &'a str,
    /// Its path in the repository, e.g. `.github/workflows/ci.yml` (named in errors).
    pub file_name: &'a str,
    /// The job id (`None`: the first job).
    pub job: Option<&'a str>,
    /// `github.workflow`.
    pub workflow_name: &'a str,
    /// Secrets by name.
    pub secrets: &'a [(String, String)],
}

/// Compiles `workflow.job` (the first job when `None`) as GitHub's service would, for the
/// repository `octo-org/hello` on the service at `base_url` (legacy service at `tenant_url`),
/// as run number `run_id`, with fresh plan, timeline and job ids.
pub fn compile_workflow_job(
    workflow: &WorkflowJob<'_>,
    base_url: &str,
    tenant_url: &str,
    run_id: u64,
) -> Result<CompiledJob, WorkflowError> {
    let job = match workflow.job {
        Some(job) => job.to_owned(),
        None => job_ids(workflow.yaml, workflow.file_name)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                WorkflowError::in_file(workflow.file_name, "the workflow has no jobs")
            })?,
    };
    let github = github_context(workflow.workflow_name, base_url, run_id);
    compile_job(&CompileRequest {
        yaml: workflow.yaml,
        file_name: workflow.file_name,
        job: &job,
        github: &github,
        secrets: workflow.secrets,
        vars: &[],
        github_token: "ghs_LOCAL_TOKEN",
        service_url: tenant_url,
        access_token: "unused-the-service-sets-the-job-token",
        ids: JobIds {
            plan_id: Uuid::new_v4(),
            timeline_id: Uuid::new_v4(),
            job_id: Uuid::new_v4(),
            request_id: 1,
        },
    })
}

/// The `github` context of run `run_id` of workflow `workflow_name`: a push to `main` of
/// `octo-org/hello` by `octocat` on the server at `base_url`.
fn github_context(workflow_name: &str, base_url: &str, run_id: u64) -> serde_json::Value {
    serde_json::json!({
        "repository": "octo-org/hello", "repository_owner": "octo-org",
        "run_id": run_id.to_string(), "run_number": run_id.to_string(), "run_attempt": "1",
        "sha": "0000000000000000000000000000000000000001", "ref": "refs/heads/main",
        "ref_name": "main", "event_name": "push", "actor": "octocat",
        "workflow": workflow_name, "server_url": base_url,
        "api_url": format!("{base_url}/api/v3"), "event": {"ref": "refs/heads/main"}
    })
}
