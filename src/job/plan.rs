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
//! dictionary, a job container) is a [`PlanError`]. A single step the runner cannot run (an
//! action from a repository, a script step without a script) is planned as
//! [`StepKind::Unrunnable`], so the runtime fails that step with the reason and the job's
//! remaining steps follow the usual condition rules.

use uuid::Uuid;

use crate::expr::{Object, Value};
use crate::job::template::{TemplateError, TemplateEvaluator};
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::step::{ActionStep, JobStep, StepReference};
use crate::protocol::template_token::{TemplateToken, TokenKind};

mod contexts;

pub use contexts::{github_runner_env, mask_values, secrets_context};

/// Prefix of names generated for steps without a context name (never recorded in `steps`).
pub const GENERATED_NAME_PREFIX: &str = "__";

/// Prefix the runner gives a script step's generated display name.
pub const RUN_DISPLAY_PREFIX: &str = "Run ";

/// Display name of a step whose generated name is empty (the runner's fallback).
pub const DISPLAY_NAME_FALLBACK: &str = "run";

/// Condition of a step that has none.
pub const DEFAULT_CONDITION: &str = "success()";

/// What the runner knows about itself and the guest image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerFacts {
    /// The runner's registered name (`runner.name`).
    pub runner_name: String,
    /// `runner.os`: `Linux`, `macOS` or `Windows`.
    pub os: String,
    /// `runner.arch`: `X86`, `X64`, `ARM` or `ARM64`.
    pub arch: String,
    /// The guest work folder (the image manifest's `work_dir`), e.g. `/work`.
    pub work_dir: String,
    /// Whether the image has bash (default shell `bash -e {0}`, else `sh -e {0}`).
    pub has_bash: bool,
}

impl RunnerFacts {
    /// `runner.arch` for an image architecture such as `x86_64` or `aarch64`.
    pub fn arch_from_image(arch: &str) -> &'static str {
        match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x64" => "X64",
            "i386" | "i686" | "x86" => "X86",
            "aarch64" | "arm64" => "ARM64",
            "arm" | "armv7" | "armv7l" | "armhf" => "ARM",
            _ => "X64",
        }
    }
}

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

/// How the runtime gets a step's display name.
#[derive(Debug, Clone, PartialEq)]
pub enum DisplayName {
    /// Fixed (the step's non-empty `displayName`).
    Literal(String),
    /// Evaluated when the step starts (string slot); shown as `prefix` + its first line.
    Token {
        /// `displayNameToken`, or the script for unnamed `run:` steps.
        token: TemplateToken,
        /// `Run ` for scripts, empty otherwise.
        prefix: &'static str,
    },
}

/// The inputs of a `run:` step (tokens, evaluated as string slots when the step runs).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptInputs {
    /// `script` (the `run:` text).
    pub script: TemplateToken,
    /// `shell`, if given.
    pub shell: Option<TemplateToken>,
    /// `workingDirectory`, if given.
    pub working_directory: Option<TemplateToken>,
    /// `standardInInput`, if given: text piped to the script's stdin.
    pub stdin: Option<TemplateToken>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A `run:` script.
    Script(ScriptInputs),
    /// A step this runner cannot run; the runtime fails it with `reason`.
    Unrunnable {
        /// E.g. `only run: steps are supported (uses: actions/checkout@v4)`.
        reason: String,
    },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// Timeline-record id.
    pub id: Uuid,
    /// 1-based position among the job's steps.
    pub number: u32,
    /// `github.action` / `GITHUB_ACTION`.
    pub name: String,
    /// Key in the `steps` context.
    pub context_name: String,
    /// How to name the step.
    pub display_name: DisplayName,
    /// The condition expression (never empty; `success()` when the message has none).
    pub condition: String,
    /// `env:` mapping token.
    pub env: Option<TemplateToken>,
    /// `continue-on-error` (boolean slot); absent = false.
    pub continue_on_error: Option<TemplateToken>,
    /// `timeout-minutes` (number slot); absent or <= 0 = none.
    pub timeout_minutes: Option<TemplateToken>,
    /// What to run.
    pub kind: StepKind,
}

impl PlannedStep {
    /// True if outputs and outcome of this step are recorded in the `steps` context.
    pub fn records_outputs(&self) -> bool {
        !self.context_name.starts_with(GENERATED_NAME_PREFIX)
    }

    /// The display name, evaluated against `evaluator` when it is an expression (official
    /// rules: on failure the token's text is shown; leading whitespace dropped, cut at the first
    /// line break, prefixed; empty falls back to `run`).
    pub fn display_name(&self, evaluator: Option<&TemplateEvaluator<'_>>) -> String {
        let (token, prefix) = match &self.display_name {
            DisplayName::Literal(name) => return name.clone(),
            DisplayName::Token { token, prefix } => (token, *prefix),
        };
        let text = if token.has_expression() {
            evaluator
                .and_then(|e| e.evaluate_string(token).ok())
                .unwrap_or_else(|| token.to_display_string())
        } else {
            token.to_display_string()
        };
        let text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        let first_line = text.split(['\r', '\n']).next().unwrap_or_default();
        if first_line.is_empty() {
            DISPLAY_NAME_FALLBACK.to_owned()
        } else {
            format!("{prefix}{first_line}")
        }
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

fn plan_step(step: &ActionStep, number: u32, earlier: &[PlannedStep]) -> PlannedStep {
    let context_name = step
        .context_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| step.name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| generated_name(earlier));
    let name = step
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| context_name.clone());
    let condition = step
        .condition
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CONDITION)
        .to_owned();
    let kind = step_kind(step);
    let display_name = match (&step.display_name, &step.display_name_token, &kind) {
        (Some(name), _, _) if !name.is_empty() => DisplayName::Literal(name.clone()),
        (_, Some(token), _) => DisplayName::Token {
            token: token.clone(),
            prefix: "",
        },
        (_, None, StepKind::Script(inputs)) => DisplayName::Token {
            token: inputs.script.clone(),
            prefix: RUN_DISPLAY_PREFIX,
        },
        _ => DisplayName::Literal(format!("{RUN_DISPLAY_PREFIX}{}", reference_text(step))),
    };
    PlannedStep {
        id: step.id,
        number,
        name,
        context_name,
        display_name,
        condition,
        env: step.environment.clone(),
        continue_on_error: step.continue_on_error.clone(),
        timeout_minutes: step.timeout_in_minutes.clone(),
        kind,
    }
}

fn generated_name(earlier: &[PlannedStep]) -> String {
    let base = format!("{GENERATED_NAME_PREFIX}run");
    let taken = |n: &str| {
        earlier
            .iter()
            .any(|s| s.context_name.eq_ignore_ascii_case(n))
    };
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

fn reference_text(step: &ActionStep) -> String {
    match &step.reference {
        StepReference::Script => "script".to_owned(),
        StepReference::Repository {
            name, r#ref, path, ..
        } => {
            let path = match (name.is_empty(), path.is_empty()) {
                (_, true) => String::new(),
                (true, false) => path.clone(),
                (false, false) => format!("/{path}"),
            };
            if r#ref.is_empty() {
                format!("{name}{path}")
            } else {
                format!("{name}{path}@{}", r#ref)
            }
        }
        StepReference::ContainerRegistry { image } => format!("docker://{image}"),
        StepReference::Unknown(_) => "an unknown action".to_owned(),
    }
}

fn step_kind(step: &ActionStep) -> StepKind {
    if step.reference != StepReference::Script {
        return StepKind::Unrunnable {
            reason: format!(
                "only run: steps are supported; this step uses {}",
                reference_text(step)
            ),
        };
    }
    let Some(inputs) = &step.inputs else {
        return StepKind::Unrunnable {
            reason: "the script step has no inputs".to_owned(),
        };
    };
    let Some(script) = inputs.mapping_get("script") else {
        return StepKind::Unrunnable {
            reason: "the script step has no script input".to_owned(),
        };
    };
    StepKind::Script(ScriptInputs {
        script: script.clone(),
        shell: inputs.mapping_get("shell").cloned(),
        working_directory: inputs.mapping_get("workingDirectory").cloned(),
        stdin: inputs.mapping_get("standardInInput").cloned(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
