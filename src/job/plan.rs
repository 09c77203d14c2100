//! The job plan: what a job message means for this runner, worked out before any VM exists.
//!
//! [`JobPlan::new`] turns an [`AgentJobRequestMessage`] plus the [`RunnerFacts`] of the image
//! into per-step data (ids, names, conditions, unevaluated env/input/timeout tokens), job-level
//! tokens (env, `defaults.run`, outputs), secrets and mask values, the expression contexts, and
//! the guest workspace layout. It is pure: nothing here evaluates expressions that depend on
//! the job's progress. The step runtime evaluates the tokens with
//! [`crate::job::template::TemplateEvaluator`] as steps run, and renders scripts with
//! [`crate::job::script::render_step`].
//!
//! ```text
//! AgentJobRequestMessage ─┐
//! RunnerFacts (image) ────┴─► JobPlan { layout, contexts, secrets, masks, job tokens,
//!                                       steps: [PlannedStep { condition, env, inputs, … }] }
//! ```
//!
//! A message the runner cannot work with (no repository in `github`, a context that is not a
//! dictionary, a job container) is a [`PlanError`]. A single step the runner cannot run (a
//! script step without a script, an unknown reference type) is planned as
//! [`StepKind::Unrunnable`]; a `uses:` step is planned as [`StepKind::Action`] and the
//! runtime's action handler decides (today it refuses). Either way the runtime fails that step
//! with the reason and the job's remaining steps follow the usual condition rules.

use uuid::Uuid;

use crate::expr::{Object, Value};
use crate::job::template::{TemplateError, TemplateEvaluator};
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::step::JobStep;
use crate::protocol::template_token::{TemplateToken, TokenKind};

mod contexts;
mod facts;
mod steps;

pub use contexts::{github_runner_env, mask_values, secrets_context};
pub use facts::RunnerFacts;
use steps::plan_step;
pub use steps::{
    ActionReference, DEFAULT_CONDITION, DISPLAY_NAME_FALLBACK, DisplayName, GENERATED_NAME_PREFIX,
    PlannedStep, RUN_DISPLAY_PREFIX, ScriptInputs, StepKind,
};

/// Why a message cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `github.repository` is missing or not `owner/name`.
    #[error("the job message's github context has no repository")]
    NoRepository,
    /// A context the runner reads has the wrong shape.
    #[error("context data `{name}` must be {expected}")]
    BadContext {
        /// The context name.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The guest work folder is not an absolute path.
    #[error("the guest work folder {work_dir:?} is not an absolute path")]
    BadWorkDir {
        /// The value given.
        work_dir: String,
    },
    /// The job needs something VMs do not provide.
    #[error("{feature} are not supported by ghrunner-vm")]
    Unsupported {
        /// E.g. `job containers`.
        feature: &'static str,
    },
}

/// `system.orchestrationId` if `actions_set_orchestration_id_env_for_actions` is true.
fn orchestration_id(message: &AgentJobRequestMessage) -> Option<String> {
    let enabled = message
        .variables
        .value("actions_set_orchestration_id_env_for_actions")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let id = message.variables.value("system.orchestrationId")?;
    (enabled && !id.is_empty()).then(|| id.to_owned())
}

/// Job-message features of newer official runners that ghrunner-vm accepts and does not act
/// on (protocol-fixtures/RUNNER-VERSIONS.md): the DAP debugger (`enableDebugger`,
/// `debuggerTunnel`, `debuggerWelcomeMessage`) and `snapshot` (turn the VM into an image after
/// the job). Logged at debug level, values never (the tunnel carries a host token).
fn log_ignored_features(message: &AgentJobRequestMessage) {
    if message.enable_debugger || message.debugger_tunnel.is_some() {
        tracing::debug!(
            enable_debugger = message.enable_debugger,
            tunnel = message.debugger_tunnel.is_some(),
            "the job asks for the Actions debugger; ghrunner-vm does not provide it, ignored"
        );
    }
    if message.snapshot.is_some() {
        tracing::debug!("the job asks for a snapshot (custom image); not supported, ignored");
    }
}

/// The guest paths of one job (all absolute, `/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkspaceLayout {
    /// The work folder (`RUNNER_WORKSPACE`'s parent).
    pub work: String,
    /// `<work>/_temp` (`RUNNER_TEMP`; scripts live here).
    pub temp: String,
    /// `<work>/_temp/_runner_file_commands`.
    pub file_commands: String,
    /// `<work>/_temp/_github_workflow`.
    pub workflow: String,
    /// `<work>/_temp/_github_workflow/event.json` (`GITHUB_EVENT_PATH`).
    pub event_path: String,
    /// `<work>/_tool` (`RUNNER_TOOL_CACHE`).
    pub tool_cache: String,
    /// `<work>/<repo>` (`RUNNER_WORKSPACE`).
    pub runner_workspace: String,
    /// `<work>/<repo>/<repo>` (`GITHUB_WORKSPACE`, the default working directory).
    pub workspace: String,
}

impl WorkspaceLayout {
    /// The layout for `repository` (`owner/name`; the text after the last `/` names the
    /// folders) under the guest work folder.
    pub fn new(work: &str, repository: &str) -> Self {
        let work = work.trim_end_matches('/');
        let work = if work.is_empty() { "/" } else { work };
        let join = |a: &str, b: &str| {
            if a.ends_with('/') {
                format!("{a}{b}")
            } else {
                format!("{a}/{b}")
            }
        };
        let repo = repository.rsplit('/').next().unwrap_or(repository);
        let temp = join(work, "_temp");
        let workflow = join(&temp, "_github_workflow");
        let runner_workspace = join(work, repo);
        WorkspaceLayout {
            work: work.to_owned(),
            file_commands: join(&temp, "_runner_file_commands"),
            event_path: join(&workflow, "event.json"),
            workflow,
            tool_cache: join(work, "_tool"),
            workspace: join(&runner_workspace, repo),
            runner_workspace,
            temp,
        }
    }

    /// Directories to create (in order, parents first) before the first step.
    pub fn directories(&self) -> [&str; 6] {
        [
            &self.temp,
            &self.file_commands,
            &self.workflow,
            &self.tool_cache,
            &self.runner_workspace,
            &self.workspace,
        ]
    }
}

/// `defaults.run`, evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunDefaults {
    /// `shell`.
    pub shell: Option<String>,
    /// `working-directory`.
    pub working_directory: Option<String>,
}

/// Everything the step runtime needs to run a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The job's timeline-record id.
    pub job_id: Uuid,
    /// Job name.
    pub job_name: String,
    /// Job display name.
    pub job_display_name: String,
    /// Runner facts used.
    pub facts: RunnerFacts,
    /// Guest paths.
    pub layout: WorkspaceLayout,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Raw entries of `steps` that are not action steps (ignored, as the runner does).
    pub ignored_steps: usize,
    /// `environmentVariables` tokens (workflow env, then job env; later wins per key).
    pub job_env: Vec<TemplateToken>,
    /// `defaults` tokens.
    pub defaults: Vec<TemplateToken>,
    /// `jobOutputs` token.
    pub job_outputs: Option<TemplateToken>,
    /// The message's file table (for error locations).
    pub file_table: Vec<String>,
    /// The `secrets` context entries.
    pub secrets: Vec<(String, String)>,
    /// Literal values to mask (secrets, their lines, endpoint credentials, the token's
    /// basic-auth form); the masker adds encoded variants.
    pub mask_values: Vec<String>,
    /// Regular-expression mask hints (also masked literally).
    pub mask_regexes: Vec<String>,
    /// The expression contexts at job start: github, env (empty, case-sensitive), vars, needs,
    /// strategy, matrix, inputs, secrets, steps (empty), runner, job.
    pub contexts: Object,
    /// `ACTIONS_STEP_DEBUG` is on.
    pub step_debug: bool,
    /// `ACTIONS_RUNNER_DEBUG` is on.
    pub runner_debug: bool,
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (the system connection's `GenerateIdTokenUrl`), if any.
    pub id_token_url: Option<String>,
    /// The job access token for `ACTIONS_ID_TOKEN_REQUEST_TOKEN` (secret; never log).
    pub id_token_request_token: Option<String>,
    /// The `github.event` payload as written to `event.json` (indented JSON).
    pub event_json: String,
    /// `ACTIONS_ORCHESTRATION_ID` for every step: `system.orchestrationId`, when the job
    /// variable `actions_set_orchestration_id_env_for_actions` is true (actions/runner #4178,
    /// `src/Runner.Worker/Handlers/ScriptHandler.cs`).
    pub orchestration_id: Option<String>,
}

impl JobPlan {
    /// Plans a job.
    pub fn new(message: &AgentJobRequestMessage, facts: &RunnerFacts) -> Result<Self, PlanError> {
        if !facts.work_dir.starts_with('/') {
            return Err(PlanError::BadWorkDir {
                work_dir: facts.work_dir.clone(),
            });
        }
        if let Some(container) = &message.job_container
            && !is_empty_container(container)
        {
            return Err(PlanError::Unsupported {
                feature: "job containers",
            });
        }
        if let Some(services) = &message.job_service_containers
            && !is_empty_container(services)
        {
            return Err(PlanError::Unsupported {
                feature: "service containers",
            });
        }
        let built = contexts::build(message, facts)?;
        let mut steps = Vec::new();
        let mut ignored_steps = 0;
        if message.steps.iter().any(JobStep::is_background) {
            // Running them in order would change what the workflow means: refuse instead.
            return Err(PlanError::Unsupported {
                feature: "background steps (`background: true` and their wait, wait-all and \
                          cancel steps, actions/runner 2.335.0)",
            });
        }
        for step in &message.steps {
            match step {
                JobStep::Action(action) => {
                    let number = steps.len() as u32 + 1;
                    steps.push(plan_step(action, number, &steps));
                }
                JobStep::Unsupported { kind, .. } => {
                    tracing::warn!(%kind, "a step of an unknown type is skipped");
                    ignored_steps += 1;
                }
            }
        }
        log_ignored_features(message);
        let connection = message.system_connection().ok();
        let id_token_url = connection
            .and_then(|c| c.endpoint.data_value("GenerateIdTokenUrl"))
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        let id_token_request_token = id_token_url
            .as_ref()
            .and(connection.map(|c| c.access_token.to_owned()));
        Ok(JobPlan {
            job_id: message.job_id,
            job_name: message.job_name.clone(),
            job_display_name: message.job_display_name.clone(),
            facts: facts.clone(),
            layout: built.layout,
            steps,
            ignored_steps,
            job_env: message.environment_variables.clone(),
            defaults: message.defaults.clone(),
            job_outputs: message.job_outputs.clone(),
            file_table: message.file_table.clone(),
            secrets: built.secrets,
            mask_values: mask_values(message),
            mask_regexes: message
                .mask
                .iter()
                .filter(|m| m.r#type == crate::protocol::job::MaskType::Regex)
                .map(|m| m.value.clone())
                .collect(),
            contexts: built.contexts,
            step_debug: built.step_debug,
            runner_debug: built.runner_debug,
            id_token_url,
            id_token_request_token,
            event_json: built.event_json,
            orchestration_id: orchestration_id(message),
        })
    }

    /// Evaluates the job env (`environmentVariables`, later wins per key).
    pub fn evaluate_job_env(
        &self,
        evaluator: &TemplateEvaluator<'_>,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        let mut env: Vec<(String, String)> = Vec::new();
        for token in &self.job_env {
            merge_env(&mut env, evaluator.evaluate_string_map(token)?);
        }
        Ok(env)
    }

    /// Evaluates `defaults.run`: each `defaults` token holding `run` replaces the whole
    /// dictionary (the runner's rule); empty values are skipped.
    pub fn evaluate_run_defaults(
        &self,
        evaluator: &TemplateEvaluator<'_>,
    ) -> Result<RunDefaults, TemplateError> {
        let mut defaults = RunDefaults::default();
        for token in &self.defaults {
            let Some(run) = token.mapping_get("run") else {
                continue;
            };
            defaults = RunDefaults::default();
            for (key, value) in evaluator.evaluate_string_map(run)? {
                if value.is_empty() {
                    continue;
                }
                if key.eq_ignore_ascii_case("shell") {
                    defaults.shell = Some(value);
                } else if key.eq_ignore_ascii_case("working-directory") {
                    defaults.working_directory = Some(value);
                }
            }
        }
        Ok(defaults)
    }

    /// Evaluates the job outputs (empty values dropped, as the runner does).
    pub fn evaluate_job_outputs(
        &self,
        evaluator: &TemplateEvaluator<'_>,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        let Some(token) = &self.job_outputs else {
            return Ok(Vec::new());
        };
        let mut outputs = evaluator.evaluate_string_map(token)?;
        outputs.retain(|(_, v)| !v.is_empty());
        Ok(outputs)
    }

    /// The `github` context object (for the runtime to set `action`, file-command paths, …).
    pub fn github(&self) -> Option<&Object> {
        match self.contexts.get("github") {
            Some(Value::Object(o)) => Some(o),
            _ => None,
        }
    }
}

/// Sets `key` in an ordered env list (exact key comparison; keeps the first position).
/// Sets every pair of `pairs` in `env` as [`set_env`] would, in O(len(env) + len(pairs)): a job
/// controls how many variables it sets, so merging must stay linear.
pub fn merge_env(
    env: &mut Vec<(String, String)>,
    pairs: impl IntoIterator<Item = (String, String)>,
) {
    let mut index: std::collections::HashMap<String, usize> = env
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    for (key, value) in pairs {
        match index.get(&key) {
            Some(&at) => env[at].1 = value,
            None => {
                index.insert(key.clone(), env.len());
                env.push((key, value));
            }
        }
    }
}

/// Sets `key` in `env` (replacing its value in place, else appending).
pub fn set_env(env: &mut Vec<(String, String)>, key: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => env.push((key, value)),
    }
}

fn is_empty_container(token: &TemplateToken) -> bool {
    match &token.kind {
        TokenKind::Null => true,
        TokenKind::String(s) => s.trim().is_empty(),
        TokenKind::Mapping(pairs) => pairs.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests;
