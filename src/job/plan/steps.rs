//! Planning one step: its names (context name, `github.action`, display name), condition,
//! env/`continue-on-error`/timeout tokens, and what it runs ([`StepKind`]): a `run:` script's
//! input tokens, the action a `uses:` step names ([`ActionReference`]), or the reason the
//! runner cannot run it. The step runtime picks a handler by the kind.

use uuid::Uuid;

use crate::job::template::TemplateEvaluator;
use crate::protocol::step::{ActionStep, StepReference};
use crate::protocol::template_token::TemplateToken;

/// Prefix of names generated for steps without a context name (never recorded in `steps`).
pub const GENERATED_NAME_PREFIX: &str = "__";

/// Prefix the runner gives a script step's generated display name.
pub const RUN_DISPLAY_PREFIX: &str = "Run ";

/// Display name of a step whose generated name is empty (the runner's fallback).
pub const DISPLAY_NAME_FALLBACK: &str = "run";

/// Condition of a step that has none.
pub const DEFAULT_CONDITION: &str = "success()";

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

/// The action a `uses:` step names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionReference {
    /// `uses: owner/repo[/path]@ref`: an action from a repository.
    Repository {
        /// `owner/repo`.
        name: String,
        /// The git ref (tag, branch or SHA).
        git_ref: String,
        /// The directory of the action inside the repository (empty: its root).
        path: String,
        /// The reference's `repositoryType` (`GitHub`, or what the server sent).
        repository_type: String,
    },
    /// `uses: ./path`: an action in the job's workspace.
    Local {
        /// The path as written (`./path`), relative to the workspace.
        path: String,
    },
    /// `uses: docker://image`: a container image run as the step.
    Docker {
        /// The image reference.
        image: String,
    },
}

impl std::fmt::Display for ActionReference {
    /// As the step names it: `owner/repo/path@ref`, `./path` or `docker://image`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionReference::Repository {
                name,
                git_ref,
                path,
                ..
            } => {
                let path = match (name.is_empty(), path.is_empty()) {
                    (_, true) => String::new(),
                    (true, false) => path.clone(),
                    (false, false) => format!("/{path}"),
                };
                if git_ref.is_empty() {
                    write!(f, "{name}{path}")
                } else {
                    write!(f, "{name}{path}@{git_ref}")
                }
            }
            ActionReference::Local { path } => f.write_str(path),
            ActionReference::Docker { image } => write!(f, "docker://{image}"),
        }
    }
}

impl ActionReference {
    /// The action a step reference names; `None` for scripts and unknown reference types. A
    /// `self` repository without a name or ref is a local action.
    pub fn of(reference: &StepReference) -> Option<Self> {
        match reference {
            StepReference::Repository {
                name,
                r#ref,
                repository_type,
                path,
            } => Some(
                if repository_type.eq_ignore_ascii_case("self")
                    && name.is_empty()
                    && r#ref.is_empty()
                {
                    ActionReference::Local { path: path.clone() }
                } else {
                    ActionReference::Repository {
                        name: name.clone(),
                        git_ref: r#ref.clone(),
                        path: path.clone(),
                        repository_type: repository_type.clone(),
                    }
                },
            ),
            StepReference::ContainerRegistry { image } => Some(ActionReference::Docker {
                image: image.clone(),
            }),
            StepReference::Script | StepReference::Unknown(_) => None,
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A `run:` script.
    Script(ScriptInputs),
    /// A `uses:` step: the action it names.
    Action(ActionReference),
    /// A step this runner cannot run; the runtime fails it with `reason`.
    Unrunnable {
        /// E.g. `the script step has no script input`.
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

/// Plans step `number` of the job (`earlier`: the steps planned before it).
pub(super) fn plan_step(step: &ActionStep, number: u32, earlier: &[PlannedStep]) -> PlannedStep {
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
    match (&step.reference, ActionReference::of(&step.reference)) {
        (_, Some(action)) => action.to_string(),
        (StepReference::Script, None) => "script".to_owned(),
        (_, None) => "an unknown action".to_owned(),
    }
}

fn step_kind(step: &ActionStep) -> StepKind {
    if let Some(action) = ActionReference::of(&step.reference) {
        return StepKind::Action(action);
    }
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
