//! The local service's workflow compiler: a workflow YAML file → the
//! [`AgentJobRequestMessage`] GitHub's service would send for one of its jobs.
//!
//! ```text
//! YAML ──yaml::parse──► marked nodes ──compile_job──► AgentJobRequestMessage + runs-on labels
//!        (line/col)        scalars ──scalar::scalar_token──► TemplateTokens (${{ }} → format())
//! ```
//!
//! Supported: workflow and job `env`, `defaults.run`, job `outputs`, `runs-on`, and `run:`
//! steps with `name`, `id`, `if`, `env`, `shell`, `working-directory`, `continue-on-error`,
//! `timeout-minutes`. Step conditions are normalised as the service does (§2): empty →
//! `success()`, no status function → `success() && (<expr>)`. `uses:` steps, matrices,
//! containers and services are refused with a clear error. Secrets and the `github` context come
//! from the caller (the local service knows the run).

use uuid::Uuid;

use crate::expr::{Expr, Function};
use crate::job::template::SourceLocation;
use crate::protocol::context_data::PipelineContextData;
use crate::protocol::job::{
    AgentJobRequestMessage, EndpointAuthorization, JobResources, PlanReference, ServiceEndpoint,
    TimelineReference, VariableValue, Variables,
};
use crate::protocol::step::{ActionStep, JobStep};
use crate::protocol::template_token::{TemplateToken, TokenKind};

pub mod scalar;
pub mod yaml;

use scalar::{ScalarError, scalar_token};
use yaml::{Node, YamlError};

/// File-table id of the workflow file in the compiled message.
const WORKFLOW_FILE_ID: i32 = 1;

/// Step keys this compiler understands.
pub(crate) const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "run",
    "shell",
    "working-directory",
    "env",
    "continue-on-error",
    "timeout-minutes",
];

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

/// What the caller (the local service) supplies besides the YAML.
#[derive(Debug, Clone)]
pub struct CompileRequest<'a> {
    /// The workflow text.
    pub yaml: &'a str,
    /// Its path, e.g. `.github/workflows/ci.yml` (the message's file table).
    pub file_name: &'a str,
    /// The job id (key under `jobs:`).
    pub job: &'a str,
    /// The `github` context (plain JSON object: repository, run_id, sha, ref, event_name,
    /// workflow, server_url, api_url, event, …); `job` is added when missing.
    pub github: &'a serde_json::Value,
    /// Secrets, sent as secret variables.
    pub secrets: &'a [(String, String)],
    /// The `vars` context.
    pub vars: &'a [(String, String)],
    /// The job token (`system.github.token` and `GITHUB_TOKEN`).
    pub github_token: &'a str,
    /// The service URL and job access token of the `SystemVssConnection` endpoint.
    pub service_url: &'a str,
    /// The job access token (JWT) for the endpoint.
    pub access_token: &'a str,
    /// Plan, timeline and job ids (step ids are derived from the job id).
    pub ids: JobIds,
}

/// The ids of one job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIds {
    /// Plan id.
    pub plan_id: Uuid,
    /// Timeline id.
    pub timeline_id: Uuid,
    /// Job (timeline record) id.
    pub job_id: Uuid,
    /// Request id.
    pub request_id: i64,
}

/// A compiled job.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledJob {
    /// The job's key under `jobs:`.
    pub job: String,
    /// The message to hand to a runner.
    pub message: AgentJobRequestMessage,
    /// `runs-on` labels, in order.
    pub runs_on: Vec<String>,
}

/// A workflow job to compile with [`compile_workflow_job`] (or queue with
/// [`LocalService::queue_workflow_job`](super::LocalService::queue_workflow_job)).
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
    let github = serde_json::json!({
        "repository": "octo-org/hello", "repository_owner": "octo-org",
        "run_id": run_id.to_string(), "run_number": run_id.to_string(), "run_attempt": "1",
        "sha": "0000000000000000000000000000000000000001", "ref": "refs/heads/main",
        "ref_name": "main", "event_name": "push", "actor": "octocat",
        "workflow": workflow.workflow_name, "server_url": base_url,
        "api_url": format!("{base_url}/api/v3"), "event": {"ref": "refs/heads/main"}
    });
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

/// The job ids of a workflow, in document order.
pub fn job_ids(yaml: &str, file_name: &str) -> Result<Vec<String>, WorkflowError> {
    let root = parse_root(yaml, file_name)?;
    let jobs = jobs_node(&root, file_name)?;
    Ok(mapping_pairs(jobs, file_name, "jobs")?
        .iter()
        .filter_map(|(k, _)| k.as_scalar().map(str::to_owned))
        .collect())
}

/// Compiles one job of a workflow.
pub fn compile_job(request: &CompileRequest<'_>) -> Result<CompiledJob, WorkflowError> {
    let file = request.file_name;
    let root = parse_root(request.yaml, file)?;
    let jobs = jobs_node(&root, file)?;
    let job = jobs
        .get(request.job)
        .ok_or_else(|| WorkflowError::NoSuchJob {
            job: request.job.to_owned(),
            available: mapping_pairs(jobs, file, "jobs")
                .map(|pairs| {
                    pairs
                        .iter()
                        .filter_map(|(k, _)| k.as_scalar().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })?;
    if !matches!(job, Node::Mapping { .. }) {
        return Err(invalid(
            job,
            file,
            format!("job `{}` must be a mapping", request.job),
        ));
    }
    for unsupported in ["strategy", "container", "services", "uses"] {
        if let Some(node) = job.get(unsupported) {
            return Err(invalid(
                node,
                file,
                format!("`{unsupported}` is not supported by the local service"),
            ));
        }
    }
    let runs_on = runs_on(job, file)?;
    let mut environment_variables = Vec::new();
    let mut defaults = Vec::new();
    for level in [&root, job] {
        if let Some(env) = level.get("env") {
            environment_variables.push(mapping_token(env, file, "env")?);
        }
        if let Some(node) = level.get("defaults") {
            defaults.push(mapping_token(node, file, "defaults")?);
        }
    }
    let job_outputs = job
        .get("outputs")
        .map(|o| mapping_token(o, file, "outputs"))
        .transpose()?;
    let steps_node = job
        .get("steps")
        .ok_or_else(|| invalid(job, file, format!("job `{}` has no steps", request.job)))?;
    let Node::Sequence { items, .. } = steps_node else {
        return Err(invalid(
            steps_node,
            file,
            "`steps` must be a sequence".into(),
        ));
    };
    let mut steps: Vec<ActionStep> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let id = step_id(request.ids.job_id, index);
        steps.push(compile_step(item, file, id, &steps)?);
    }
    let display_name = job
        .get("name")
        .and_then(Node::as_scalar)
        .unwrap_or(request.job)
        .to_owned();
    Ok(CompiledJob {
        job: request.job.to_owned(),
        message: AgentJobRequestMessage {
            message_type: Some("PipelineAgentJobRequest".into()),
            plan: PlanReference {
                plan_id: request.ids.plan_id,
                plan_type: "actions".into(),
                version: 12,
                ..PlanReference::default()
            },
            timeline: Some(TimelineReference {
                id: request.ids.timeline_id,
                change_id: 1,
                location: None,
            }),
            job_id: request.ids.job_id,
            job_display_name: display_name,
            job_name: request.job.to_owned(),
            request_id: request.ids.request_id,
            locked_until: None,
            resources: resources(request),
            variables: variables(request),
            mask: Vec::new(),
            context_data: context_data(request),
            workspace: None,
            steps: steps
                .into_iter()
                .map(|s| JobStep::Action(Box::new(s)))
                .collect(),
            file_table: vec![file.to_owned()],
            environment_variables,
            defaults,
            job_outputs,
            job_container: None,
            job_service_containers: None,
            actions_environment: None,
            enable_debugger: false,
            debugger_tunnel: None,
            snapshot: None,
        },
        runs_on,
    })
}

/// Step ids derived from the job id, so a compiled job is reproducible.
fn step_id(job_id: Uuid, index: usize) -> Uuid {
    Uuid::from_u128(job_id.as_u128() ^ ((index as u128 + 1) << 64))
}

fn parse_root(yaml: &str, file: &str) -> Result<Node, WorkflowError> {
    let root = yaml::parse(yaml).map_err(|e| match e {
        YamlError::Syntax { mark, message } => WorkflowError::Yaml {
            location: location(file, mark),
            message,
        },
        YamlError::Empty => WorkflowError::in_file(file, "the workflow is empty"),
        YamlError::Structure { mark, message } => WorkflowError::Yaml {
            location: location(file, mark),
            message: message.into(),
        },
    })?;
    if !matches!(root, Node::Mapping { .. }) {
        return Err(invalid(&root, file, "a workflow must be a mapping".into()));
    }
    Ok(root)
}

fn jobs_node<'a>(root: &'a Node, file: &str) -> Result<&'a Node, WorkflowError> {
    let jobs = root
        .get("jobs")
        .ok_or_else(|| invalid(root, file, "the workflow has no `jobs`".into()))?;
    mapping_pairs(jobs, file, "jobs")?;
    Ok(jobs)
}

fn mapping_pairs<'a>(
    node: &'a Node,
    file: &str,
    what: &str,
) -> Result<&'a [(Node, Node)], WorkflowError> {
    match node {
        Node::Mapping { pairs, .. } => {
            for (i, (key, _)) in pairs.iter().enumerate() {
                let Some(name) = key.as_scalar() else {
                    return Err(invalid(key, file, format!("`{what}` keys must be scalars")));
                };
                if pairs[..i].iter().any(|(k, _)| k.as_scalar() == Some(name)) {
                    return Err(invalid(key, file, format!("`{name}` is already defined")));
                }
            }
            Ok(pairs)
        }
        other => Err(invalid(other, file, format!("`{what}` must be a mapping"))),
    }
}

fn location(file: &str, mark: yaml::Mark) -> SourceLocation {
    SourceLocation {
        file: Some(file.to_owned()),
        line: Some(mark.line as i32),
        col: Some(mark.col as i32),
    }
}

fn invalid(node: &Node, file: &str, message: String) -> WorkflowError {
    WorkflowError::Invalid {
        location: location(file, node.mark()),
        message,
    }
}

fn scalar_error(node: &Node, file: &str, error: ScalarError) -> WorkflowError {
    match error.expression {
        Some(expression) => WorkflowError::Expression {
            location: location(file, node.mark()),
            expression,
            message: error.message,
        },
        None => invalid(node, file, error.message),
    }
}

/// Any node → token (mappings and sequences recursively; scalars with `${{ }}` handling).
fn token(node: &Node, file: &str) -> Result<TemplateToken, WorkflowError> {
    let mark = node.mark();
    let at = |kind: TokenKind| {
        TemplateToken::from(kind).at(Some(WORKFLOW_FILE_ID), mark.line as i32, mark.col as i32)
    };
    match node {
        Node::Scalar { .. } => {
            scalar_token(node, WORKFLOW_FILE_ID).map_err(|e| scalar_error(node, file, e))
        }
        Node::Sequence { items, .. } => Ok(at(TokenKind::Sequence(
            items
                .iter()
                .map(|i| token(i, file))
                .collect::<Result<_, _>>()?,
        ))),
        Node::Mapping { pairs, .. } => {
            let mut out = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let Some(key) = k.as_scalar() else {
                    return Err(invalid(k, file, "mapping keys must be scalars".into()));
                };
                let km = k.mark();
                let key = TemplateToken::string(key).at(
                    Some(WORKFLOW_FILE_ID),
                    km.line as i32,
                    km.col as i32,
                );
                out.push((key, token(v, file)?));
            }
            Ok(at(TokenKind::Mapping(out)))
        }
    }
}

fn mapping_token(node: &Node, file: &str, what: &str) -> Result<TemplateToken, WorkflowError> {
    mapping_pairs(node, file, what)?;
    token(node, file)
}

fn runs_on(job: &Node, file: &str) -> Result<Vec<String>, WorkflowError> {
    let node = job
        .get("runs-on")
        .ok_or_else(|| invalid(job, file, "the job has no `runs-on`".into()))?;
    let labels: Vec<String> = match node {
        Node::Scalar { text, .. } => vec![text.clone()],
        Node::Sequence { items, .. } => items
            .iter()
            .map(|i| {
                i.as_scalar()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(i, file, "`runs-on` labels must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Node::Mapping { .. } => match node.get("labels") {
            Some(Node::Scalar { text, .. }) => vec![text.clone()],
            Some(Node::Sequence { items, .. }) => items
                .iter()
                .filter_map(|i| i.as_scalar().map(str::to_owned))
                .collect(),
            _ => return Err(invalid(node, file, "`runs-on` needs `labels`".into())),
        },
    };
    if let Some(label) = labels.iter().find(|l| l.contains("${{")) {
        return Err(invalid(
            node,
            file,
            format!("`runs-on` expressions are not supported by the local service: {label}"),
        ));
    }
    Ok(labels)
}

mod step;

use step::compile_step;

/// Normalises a step condition as the service does (§2): empty → `success()`; a condition that
/// calls no status function → `success() && (<expr>)`.
pub fn normalize_condition(condition: &str) -> Result<String, ScalarError> {
    let trimmed = condition.trim();
    let inner = match trimmed
        .strip_prefix("${{")
        .and_then(|r| r.strip_suffix("}}"))
    {
        Some(inner) if !inner.contains("${{") => inner.trim(),
        _ => trimmed,
    };
    if inner.is_empty() {
        return Ok("success()".into());
    }
    let expr = scalar::parse_expression(inner)?;
    if calls_status_function(&expr) {
        Ok(inner.to_owned())
    } else {
        Ok(format!("success() && ({inner})"))
    }
}

fn calls_status_function(expr: &Expr) -> bool {
    match expr {
        Expr::Call { function, args } => {
            matches!(
                function,
                Function::Success | Function::Failure | Function::Cancelled | Function::Always
            ) || args.iter().any(calls_status_function)
        }
        Expr::Index { target, index } => {
            calls_status_function(target) || calls_status_function(index)
        }
        Expr::Not(inner) => calls_status_function(inner),
        Expr::And(items) | Expr::Or(items) => items.iter().any(calls_status_function),
        Expr::Compare { left, right, .. } => {
            calls_status_function(left) || calls_status_function(right)
        }
        Expr::Literal(_) | Expr::NamedValue(_) | Expr::Wildcard => false,
    }
}

fn resources(request: &CompileRequest<'_>) -> JobResources {
    JobResources {
        endpoints: vec![ServiceEndpoint {
            name: crate::protocol::job::SYSTEM_VSS_CONNECTION.into(),
            r#type: Some("ExternalTfs".into()),
            url: Some(request.service_url.to_owned()),
            authorization: Some(EndpointAuthorization {
                scheme: "OAuth".into(),
                parameters: vec![("AccessToken".into(), request.access_token.to_owned())],
            }),
            is_ready: true,
            ..ServiceEndpoint::default()
        }],
        ..JobResources::default()
    }
}

fn variables(request: &CompileRequest<'_>) -> Variables {
    let secret = |value: &str| VariableValue {
        value: value.to_owned(),
        is_secret: true,
        is_read_only: false,
    };
    let mut variables = vec![
        (
            "system.github.token".to_owned(),
            secret(request.github_token),
        ),
        (
            "system.accessToken".to_owned(),
            secret(request.access_token),
        ),
        (
            "system.github.job".to_owned(),
            VariableValue {
                value: request.job.to_owned(),
                ..VariableValue::default()
            },
        ),
    ];
    variables.extend(request.secrets.iter().map(|(k, v)| (k.clone(), secret(v))));
    Variables(variables)
}

fn context_data(request: &CompileRequest<'_>) -> Vec<(String, PipelineContextData)> {
    let mut github = PipelineContextData::from_plain_json(request.github);
    if let PipelineContextData::Dictionary(entries) = &mut github
        && !entries.iter().any(|(k, _)| k.eq_ignore_ascii_case("job"))
    {
        entries.push((
            "job".into(),
            PipelineContextData::String(request.job.into()),
        ));
    }
    let vars = PipelineContextData::Dictionary(
        request
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), PipelineContextData::String(v.clone())))
            .collect(),
    );
    vec![
        ("github".into(), github),
        ("needs".into(), PipelineContextData::Dictionary(Vec::new())),
        (
            "strategy".into(),
            PipelineContextData::Dictionary(Vec::new()),
        ),
        ("matrix".into(), PipelineContextData::Null),
        ("inputs".into(), PipelineContextData::Dictionary(Vec::new())),
        ("vars".into(), vars),
    ]
}

#[cfg(test)]
mod tests;
