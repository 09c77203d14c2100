//! A composite action's `runs.steps` → [`ActionStep`]s, the step shape of a job message, so the
//! runtime plans and runs them like workflow steps. As the official runner's
//! `PipelineTemplateConverter.ConvertToSteps` (`src/Sdk/DTPipelines/Pipelines/ObjectTemplating/`)
//! does for `action.yml`:
//!
//! - a step is a run step (`run` and `shell` required; `name`, `id`, `if`, `env`,
//!   `working-directory`, `continue-on-error`) or a uses step (`uses` required; `name`, `id`,
//!   `if`, `with`, `env`, `continue-on-error`); any other key is an error (no
//!   `timeout-minutes`);
//! - a run step's inputs are `script`, `workingDirectory`, `shell`; a uses step's are its `with`;
//! - `uses: docker://image`, `./path` (repository type `self`), `$/path` (`selfRepository`) or
//!   `owner/repo[/path]@ref` (`GitHub`);
//! - `if:` is normalised like a workflow step's (empty → `success()`, no status function →
//!   `success() && (…)`);
//! - `id`s are validated and unique ignoring case; steps without one get a generated context
//!   name (`__run`, `__actions_checkout`, `__run_2`, …) after all ids are known
//!   (`ReferenceNameBuilder.cs`).
//!
//! Step ids (`ActionStep::id`) are left nil: the official `ActionManager` gives each composite
//! step a fresh id when it prepares the action, and so will the runtime here.

use uuid::Uuid;

use super::slots::{self, Problem, STEP, STEP_IF, problem};
use crate::protocol::step::{ActionStep, StepReference};
use crate::protocol::template_token::{TemplateToken, TokenKind};
use crate::workflow::step::normalize_condition_in;
use crate::workflow::yaml::Node;

/// Keys of a run step.
const RUN_KEYS: &[&str] = &[
    "name",
    "id",
    "if",
    "run",
    "env",
    "continue-on-error",
    "working-directory",
    "shell",
];

/// Keys of a uses step.
const USES_KEYS: &[&str] = &[
    "name",
    "id",
    "if",
    "uses",
    "continue-on-error",
    "with",
    "env",
];

/// Longest step id (`PipelineConstants.MaxNodeNameLength`); generated names are cut to it.
const MAX_NAME_LENGTH: usize = 100;

/// Most numbered variants of one generated name (`ReferenceNameBuilder.Build`).
const MAX_NAME_ATTEMPTS: usize = 1000;

/// Reads `runs.steps`.
pub(super) fn composite_steps(node: &Node) -> Result<Vec<ActionStep>, Problem> {
    let Node::Sequence { items, .. } = node else {
        return Err(problem(
            node,
            format!("`runs.steps` must be a sequence, not a {}", node.kind()),
        ));
    };
    let mut names = NameBuilder::default();
    let mut steps = items
        .iter()
        .map(|item| step(item, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    for (item, step) in items.iter().zip(&mut steps) {
        if step.context_name.is_none() {
            let base = generated_base(&step.reference);
            step.context_name = Some(names.build(&format!("__{base}")).ok_or_else(|| {
                problem(
                    item,
                    format!("cannot generate a unique name for `__{base}`"),
                )
            })?);
        }
    }
    Ok(steps)
}

/// What a generated context name is made of (`ConvertToSteps`).
fn generated_base(reference: &StepReference) -> &str {
    match reference {
        StepReference::ContainerRegistry { image } if !image.is_empty() => image,
        StepReference::Repository { name, .. } if !name.is_empty() => name,
        StepReference::Repository {
            repository_type, ..
        } if repository_type == SELF_REPOSITORY => SELF_REPOSITORY,
        StepReference::Repository { .. } => SELF,
        _ => "run",
    }
}

/// Repository type of `uses: ./path`.
const SELF: &str = "self";
/// Repository type of `uses: $/path`.
const SELF_REPOSITORY: &str = "selfRepository";
/// Repository type of `uses: owner/repo@ref`.
const GITHUB: &str = "GitHub";

fn step(item: &Node, names: &mut NameBuilder) -> Result<ActionStep, Problem> {
    let what = "runs.steps item";
    let pairs = slots::pairs(item, what)?;
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    };
    let (kind, allowed) = match (get("run"), get("uses")) {
        (Some(_), Some(_)) => {
            return Err(problem(
                item,
                "a composite step has both `run` and `uses`; it takes one of them",
            ));
        }
        (Some(_), None) => ("run", RUN_KEYS),
        (None, Some(_)) => ("uses", USES_KEYS),
        (None, None) => {
            return Err(problem(
                item,
                "a composite step needs `run` (with `shell`) or `uses`",
            ));
        }
    };
    for (key, _) in pairs {
        let name = slots::key_text(key, what)?;
        if !allowed.contains(&name.as_str()) {
            return Err(problem(
                key,
                format!(
                    "unexpected key `{name}` in a composite `{kind}` step (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let context_name = match get("id") {
        Some(id) => {
            let id_text = slots::non_empty(id, "id")?;
            names
                .add_known(&id_text)
                .map_err(|message| problem(id, message))?;
            Some(id_text)
        }
        None => None,
    };
    let string = |key: &str| get(key).map(|v| slots::string(v, STEP, key)).transpose();
    let (reference, inputs) = if let Some(run) = get("run") {
        let shell = get("shell").ok_or_else(|| {
            problem(
                item,
                "a composite `run` step needs `shell` (e.g. `shell: bash`)",
            )
        })?;
        let mut inputs = vec![(
            TemplateToken::string("script"),
            slots::string(run, STEP, "run")?,
        )];
        if let Some(dir) = string("working-directory")? {
            inputs.push((TemplateToken::string("workingDirectory"), dir));
        }
        inputs.push((
            TemplateToken::string("shell"),
            slots::string(shell, STEP, "shell")?,
        ));
        (StepReference::Script, Some(TemplateToken::mapping(inputs)))
    } else {
        let uses = get("uses").ok_or_else(|| problem(item, "a step needs `uses`"))?;
        let text = slots::non_empty(uses, "uses")?;
        let reference = parse_uses(&text).ok_or_else(|| {
            problem(
                uses,
                format!("Expected format {{org}}/{{repo}}[/path]@ref. Actual '{text}'"),
            )
        })?;
        let with = get("with")
            .map(|w| slots::string_mapping(w, STEP, "with"))
            .transpose()?;
        (reference, with)
    };
    Ok(ActionStep {
        id: Uuid::nil(),
        name: None,
        display_name: None,
        display_name_token: string("name")?,
        enabled: true,
        context_name,
        reference,
        condition: Some(condition(get("if"))?),
        continue_on_error: get("continue-on-error")
            .map(|v| slots::boolean(v, STEP, "continue-on-error"))
            .transpose()?,
        timeout_in_minutes: None,
        environment: get("env")
            .map(|v| slots::string_mapping(v, STEP, "env"))
            .transpose()?,
        inputs,
        background: false,
    })
}

/// The step's condition, normalised (`ConvertToIfCondition`).
fn condition(node: Option<&Node>) -> Result<String, Problem> {
    let Some(node) = node else {
        return Ok("success()".to_owned());
    };
    let text = match slots::string(node, STEP_IF, "if")?.kind {
        TokenKind::BasicExpression(expression) | TokenKind::String(expression) => expression,
        _ => String::new(),
    };
    let normalized = normalize_condition_in(&text, STEP_IF.names).map_err(|e| {
        problem(
            node,
            format!("`if`: invalid expression `{text}`: {}", e.message),
        )
    })?;
    slots::check_functions(node, &normalized, STEP_IF, "if")?;
    Ok(normalized)
}

/// A `uses:` value → its reference; `None` if it has none of the accepted forms.
fn parse_uses(uses: &str) -> Option<StepReference> {
    if let Some(image) = uses.strip_prefix("docker://") {
        return Some(StepReference::ContainerRegistry {
            image: image.to_owned(),
        });
    }
    let repository = |repository_type: &str, name: String, r#ref: String, path: String| {
        StepReference::Repository {
            name,
            r#ref,
            repository_type: repository_type.to_owned(),
            path,
        }
    };
    if uses.starts_with("./") || uses.starts_with(".\\") {
        return Some(repository(SELF, String::new(), String::new(), uses.into()));
    }
    if let Some(path) = uses.strip_prefix("$/").map(|p| p.trim_start_matches('/'))
        && !path.is_empty()
    {
        return Some(repository(
            SELF_REPOSITORY,
            String::new(),
            String::new(),
            path.into(),
        ));
    }
    let (path, git_ref) = match uses.split('@').collect::<Vec<_>>().as_slice() {
        [path, git_ref] if !git_ref.is_empty() => (*path, *git_ref),
        _ => return None,
    };
    let segments: Vec<&str> = path.split(['/', '\\']).filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return None;
    }
    Some(repository(
        GITHUB,
        format!("{}/{}", segments[0], segments[1]),
        git_ref.to_owned(),
        segments[2..].join("/"),
    ))
}

/// Step ids and generated context names of one composite action (`ReferenceNameBuilder.cs`):
/// unique ignoring case.
#[derive(Default)]
struct NameBuilder {
    taken: Vec<String>,
}

impl NameBuilder {
    fn is_taken(&self, name: &str) -> bool {
        self.taken.iter().any(|t| t.eq_ignore_ascii_case(name))
    }

    /// Records a step's `id`. The official check skips ids of 100 characters or more (its
    /// length test is inverted); here they are refused, as its message says.
    fn add_known(&mut self, id: &str) -> Result<(), String> {
        let valid = id.char_indices().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || (i > 0 && (c.is_ascii_digit() || c == '-'))
        });
        if !valid || id.len() >= MAX_NAME_LENGTH {
            return Err(format!(
                "The identifier '{id}' is invalid. IDs may only contain alphanumeric characters, '_', and '-'. IDs must start with a letter or '_' and must be less than {MAX_NAME_LENGTH} characters."
            ));
        }
        if self.is_taken(id) {
            return Err(format!(
                "The identifier '{id}' may not be used more than once within the same scope."
            ));
        }
        self.taken.push(id.to_owned());
        Ok(())
    }

    /// A unique name made of `segment` (illegal characters become `_`; a leading digit or `-`
    /// gets a `_` before it), suffixed `_2`, `_3`, … when taken.
    fn build(&mut self, segment: &str) -> Option<String> {
        let mut base = String::with_capacity(segment.len() + 1);
        if segment.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            base.push('_');
        }
        base.extend(segment.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        }));
        for attempt in 1..MAX_NAME_ATTEMPTS {
            let suffix = if attempt == 1 {
                String::new()
            } else {
                format!("_{attempt}")
            };
            let keep = base
                .char_indices()
                .nth(MAX_NAME_LENGTH - suffix.len())
                .map_or(base.len(), |(i, _)| i);
            let candidate = format!("{}{suffix}", &base[..keep]);
            if !self.is_taken(&candidate) {
                self.taken.push(candidate.clone());
                return Some(candidate);
            }
        }
        None
    }
}
