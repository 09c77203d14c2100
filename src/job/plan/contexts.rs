//! The job-start expression contexts, secrets, mask values and the `GITHUB_*`/`RUNNER_*`
//! environment (protocol-jobs §1 variables, §7.3, §9).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{PlanError, RunnerFacts, WorkspaceLayout};
use crate::expr::{Object, Value};
use crate::protocol::context_data::PipelineContextData;
use crate::protocol::job::AgentJobRequestMessage;

/// `github` context keys exported as `GITHUB_<KEY>` when present as a string or boolean, in
/// the order they are exported.
pub const GITHUB_ENV_KEYS: &[&str] = &[
    "action",
    "action_path",
    "action_ref",
    "action_repository",
    "actor",
    "actor_id",
    "api_url",
    "artifacts",
    "artifacts_list",
    "base_ref",
    "env",
    "event_name",
    "event_path",
    "graphql_url",
    "head_ref",
    "job",
    "output",
    "path",
    "ref",
    "ref_name",
    "ref_protected",
    "ref_type",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "retention_days",
    "run_attempt",
    "run_id",
    "run_number",
    "server_url",
    "sha",
    "state",
    "step_summary",
    "triggering_actor",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "workspace",
];

/// `runner` context keys exported as `RUNNER_<KEY>`, in order.
pub const RUNNER_ENV_KEYS: &[&str] = &[
    "os",
    "arch",
    "name",
    "environment",
    "tool_cache",
    "temp",
    "workspace",
    "debug",
];

/// Variables that are never secrets-context entries.
const NOT_IN_SECRETS: &[&str] = &["system.accessToken", "system.github.token"];

/// Secret variables that are not masked (their values are `true`/`false`).
const NOT_MASKED: &[&str] = &["ACTIONS_STEP_DEBUG", "ACTIONS_RUNNER_DEBUG"];

/// Contexts copied from `contextData` (null when the service did not send them).
const SERVICE_CONTEXTS: &[&str] = &["vars", "needs", "strategy", "matrix", "inputs"];

pub(super) struct Built {
    pub layout: WorkspaceLayout,
    pub contexts: Object,
    pub secrets: Vec<(String, String)>,
    pub step_debug: bool,
    pub runner_debug: bool,
    pub event_json: String,
}

pub(super) fn build(
    message: &AgentJobRequestMessage,
    facts: &RunnerFacts,
) -> Result<Built, PlanError> {
    let github = match message.context("github") {
        Some(data @ PipelineContextData::Dictionary(_)) => data,
        None => return Err(PlanError::NoRepository),
        Some(_) => {
            return Err(PlanError::BadContext {
                name: "github",
                expected: "a dictionary",
            });
        }
    };
    let repository = github
        .get("repository")
        .and_then(PipelineContextData::as_str)
        .filter(|r| !r.trim_matches('/').is_empty())
        .ok_or(PlanError::NoRepository)?;
    let layout = WorkspaceLayout::new(&facts.work_dir, repository.trim_end_matches('/'));

    let debug = |name: &str| {
        message
            .variables
            .value(name)
            .map(str::to_owned)
            .or_else(|| {
                message
                    .context("vars")
                    .and_then(|v| v.get(name))
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    let step_debug = debug("ACTIONS_STEP_DEBUG");
    let runner_debug = debug("ACTIONS_RUNNER_DEBUG");

    let secrets = secrets_context(message);
    let mut contexts = Object::new();
    contexts.insert("github", github_context(message, github, &layout));
    contexts.insert("env", Value::Object(Object::new_case_sensitive()));
    for name in SERVICE_CONTEXTS {
        let value = message.context(name).map_or(Value::Null, |d| d.to_value());
        contexts.insert(*name, value);
    }
    contexts.insert(
        "secrets",
        Value::Object(
            secrets
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect(),
        ),
    );
    contexts.insert("steps", Value::Object(Object::new()));
    contexts.insert(
        "runner",
        runner_context(message, facts, &layout, step_debug),
    );
    contexts.insert("job", job_context(message));

    let event = github
        .get("event")
        .map_or(serde_json::json!({}), PipelineContextData::to_plain_json);
    // Invariant: a serde_json::Value always serializes.
    let event_json = serde_json::to_string_pretty(&event).unwrap_or_else(|_| "{}".to_owned());
    Ok(Built {
        layout,
        contexts,
        secrets,
        step_debug,
        runner_debug,
        event_json,
    })
}

fn github_context(
    message: &AgentJobRequestMessage,
    github: &PipelineContextData,
    layout: &WorkspaceLayout,
) -> Value {
    let Value::Object(mut object) = github.to_value() else {
        return Value::Object(Object::new());
    };
    if object.get("job").is_none()
        && let Some(job) = message.variables.value("system.github.job")
    {
        object.insert("job", Value::from(job));
    }
    if let Some(token) = message.variables.value("system.github.token") {
        object.insert("token", Value::from(token));
    }
    if object.get("event").is_none() {
        object.insert("event", Value::Object(Object::new()));
    }
    object.insert("workspace", Value::from(layout.workspace.as_str()));
    object.insert("event_path", Value::from(layout.event_path.as_str()));
    Value::Object(object)
}

fn runner_context(
    message: &AgentJobRequestMessage,
    facts: &RunnerFacts,
    layout: &WorkspaceLayout,
    step_debug: bool,
) -> Value {
    let environment = message
        .variables
        .value("system.runnerEnvironment")
        .filter(|e| !e.is_empty())
        .unwrap_or("self-hosted");
    let mut runner = Object::new();
    for (key, value) in [
        ("os", facts.os.as_str()),
        ("arch", facts.arch.as_str()),
        ("name", facts.runner_name.as_str()),
        ("environment", environment),
        ("tool_cache", layout.tool_cache.as_str()),
        ("temp", layout.temp.as_str()),
        ("workspace", layout.runner_workspace.as_str()),
    ] {
        runner.insert(key, Value::from(value));
    }
    if step_debug {
        runner.insert("debug", Value::from("1"));
    }
    Value::Object(runner)
}

fn job_context(message: &AgentJobRequestMessage) -> Value {
    let mut job = match message.context("job").map(PipelineContextData::to_value) {
        Some(Value::Object(o)) => o,
        _ => Object::new(),
    };
    job.insert("status", Value::from("success"));
    Value::Object(job)
}

/// The `secrets` context: every secret variable except `system.accessToken` and
/// `system.github.token`, plus `GITHUB_TOKEN` (the job's token) unless a secret of that name
/// exists.
pub fn secrets_context(message: &AgentJobRequestMessage) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = message
        .variables
        .iter()
        .filter(|(name, v)| {
            v.is_secret && !NOT_IN_SECRETS.iter().any(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|(name, v)| (name.to_owned(), v.value.clone()))
        .collect();
    if let Some(token) = message.variables.value("system.github.token")
        && !secrets
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("GITHUB_TOKEN"))
    {
        secrets.push(("GITHUB_TOKEN".to_owned(), token.to_owned()));
    }
    secrets
}

/// Literal values to mask: secret variables (except the debug switches) trimmed and per
/// non-empty line, regex hints' text, endpoint authorization parameters, and
/// `base64("x-access-token:<github token>")`. Empty values are left out; order is stable and
/// duplicates removed.
pub fn mask_values(message: &AgentJobRequestMessage) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    let mut add = |value: &str| {
        let value = value.trim();
        if !value.is_empty() && !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
        }
    };
    for (name, variable) in message.variables.iter() {
        if !variable.is_secret || NOT_MASKED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        add(&variable.value);
        if variable.value.contains('\n') {
            variable.value.split('\n').for_each(&mut add);
        }
    }
    for hint in &message.mask {
        add(&hint.value);
    }
    for endpoint in &message.resources.endpoints {
        if let Some(auth) = &endpoint.authorization {
            auth.parameters.iter().for_each(|(_, v)| add(v));
        }
    }
    if let Some(token) = message.variables.value("system.github.token")
        && !token.is_empty()
    {
        add(&STANDARD.encode(format!("x-access-token:{token}")));
    }
    values
}

/// `GITHUB_*` from the `github` context (string or boolean values of [`GITHUB_ENV_KEYS`]) and
/// `RUNNER_*` from the `runner` context, in that order.
pub fn github_runner_env(contexts: &Object) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut export = |prefix: &str, context: &str, keys: &[&str]| {
        let Some(Value::Object(object)) = contexts.get(context) else {
            return;
        };
        for key in keys {
            let value = match object.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Boolean(b)) => b.to_string(),
                _ => continue,
            };
            env.push((format!("{prefix}{}", key.to_ascii_uppercase()), value));
        }
    };
    export("GITHUB_", "github", GITHUB_ENV_KEYS);
    export("RUNNER_", "runner", RUNNER_ENV_KEYS);
    env
}
