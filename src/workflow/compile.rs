//! One job → the [`AgentJobRequestMessage`] GitHub's service would send for it: display name,
//! workflow and job `env` and `defaults`, job `outputs`, steps (see [`step`](super::step)), the
//! `SystemVssConnection` endpoint, variables (token, secrets) and the expression contexts.

use uuid::Uuid;

use super::WorkflowError;
use super::parse::{invalid, job_node, jobs_node, location, mapping_pairs, parse_root, runs_on};
use super::scalar::{ScalarError, scalar_token};
use super::step::compile_step;
use super::yaml::Node;
use crate::protocol::context_data::PipelineContextData;
use crate::protocol::job::{
    AgentJobRequestMessage, EndpointAuthorization, JobResources, PlanReference, ServiceEndpoint,
    TimelineReference, VariableValue, Variables,
};
use crate::protocol::step::{ActionStep, JobStep};
use crate::protocol::template_token::{TemplateToken, TokenKind};

/// File-table id of the workflow file in the compiled message.
const WORKFLOW_FILE_ID: i32 = 1;

/// What the caller (who knows the run: the local service, [`super::expand`], a test) supplies
/// besides the YAML.
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

/// Compiles one job of a workflow.
pub fn compile_job(request: &CompileRequest<'_>) -> Result<CompiledJob, WorkflowError> {
    let file = request.file_name;
    let root = parse_root(request.yaml, file)?;
    let jobs = jobs_node(&root, file)?;
    let job = job_node(jobs, request.job, file)?;
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
            billing_owner_id: None,
        },
        runs_on,
    })
}

/// Step ids derived from the job id, so a compiled job is reproducible.
fn step_id(job_id: Uuid, index: usize) -> Uuid {
    Uuid::from_u128(job_id.as_u128() ^ ((index as u128 + 1) << 64))
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
pub(super) fn token(node: &Node, file: &str) -> Result<TemplateToken, WorkflowError> {
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
