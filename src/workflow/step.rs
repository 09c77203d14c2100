//! One `run:` step of a workflow → an [`ActionStep`], with its condition normalised as the
//! service does.

use uuid::Uuid;

use super::WorkflowError;
use super::compile::token;
use super::parse::{invalid, location, mapping_pairs};
use super::scalar::{self, ScalarError};
use super::yaml::Node;
use crate::expr::{Expr, Function};
use crate::protocol::step::{ActionStep, StepReference};
use crate::protocol::template_token::TemplateToken;

/// Step keys this compiler understands.
const STEP_KEYS: &[&str] = &[
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

/// Prefix of generated context names.
const GENERATED_PREFIX: &str = "__";

pub(super) fn compile_step(
    node: &Node,
    file: &str,
    id: Uuid,
    earlier: &[ActionStep],
) -> Result<ActionStep, WorkflowError> {
    let pairs = mapping_pairs(node, file, "steps item")?;
    if let Some(uses) = node.get("uses") {
        let what = uses.as_scalar().unwrap_or("an action");
        return Err(invalid(
            uses,
            file,
            format!("only run: steps are supported (this step uses {what})"),
        ));
    }
    for (key, _) in pairs {
        let name = key.as_scalar().unwrap_or_default();
        if !STEP_KEYS.contains(&name) {
            return Err(invalid(key, file, format!("unexpected step key `{name}`")));
        }
    }
    let run = node
        .get("run")
        .ok_or_else(|| invalid(node, file, "a step needs `run`".into()))?;
    let context_name = context_name(node, file, earlier)?;
    let condition = match node.get("if") {
        None => "success()".to_owned(),
        Some(cond) => {
            let text = match cond {
                Node::Scalar { text, .. } => text.clone(),
                other => return Err(invalid(other, file, "`if` must be a scalar".into())),
            };
            normalize_condition(&text).map_err(|e| WorkflowError::Expression {
                location: location(file, cond.mark()),
                expression: e.expression.unwrap_or(text),
                message: e.message,
            })?
        }
    };
    let mut inputs = vec![(TemplateToken::string("script"), token(run, file)?)];
    for (yaml_key, input) in [
        ("shell", "shell"),
        ("working-directory", "workingDirectory"),
    ] {
        if let Some(value) = node.get(yaml_key) {
            inputs.push((TemplateToken::string(input), token(value, file)?));
        }
    }
    let optional = |key: &str| node.get(key).map(|n| token(n, file)).transpose();
    Ok(ActionStep {
        id,
        name: Some(context_name.clone()),
        display_name: None,
        display_name_token: optional("name")?,
        enabled: true,
        context_name: Some(context_name),
        reference: StepReference::Script,
        condition: Some(condition),
        continue_on_error: optional("continue-on-error")?,
        timeout_in_minutes: optional("timeout-minutes")?,
        environment: match node.get("env") {
            Some(env) => {
                mapping_pairs(env, file, "env")?;
                Some(token(env, file)?)
            }
            None => None,
        },
        inputs: Some(TemplateToken::mapping(inputs)),
        // `background: true` (a literal) marks a background step; the runner refuses the job.
        background: node
            .get("background")
            .and_then(Node::as_scalar)
            .is_some_and(|v| v.trim() == "true"),
    })
}

fn context_name(node: &Node, file: &str, earlier: &[ActionStep]) -> Result<String, WorkflowError> {
    let taken = |name: &str| {
        earlier
            .iter()
            .filter_map(|s| s.context_name.as_deref())
            .any(|n| n.eq_ignore_ascii_case(name))
    };
    if let Some(id_node) = node.get("id") {
        let id = id_node.as_scalar().unwrap_or_default();
        let valid = id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid || id.starts_with(GENERATED_PREFIX) {
            return Err(invalid(
                id_node,
                file,
                format!(
                    "the identifier '{id}' is invalid: ids start with a letter or '_', contain only letters, digits, '-' and '_', and do not start with '__'"
                ),
            ));
        }
        if taken(id) {
            return Err(invalid(
                id_node,
                file,
                format!(
                    "the identifier '{id}' may not be used more than once within the same scope"
                ),
            ));
        }
        return Ok(id.to_owned());
    }
    let base = format!("{GENERATED_PREFIX}run");
    if !taken(&base) {
        return Ok(base);
    }
    Ok((2..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or(base))
}

/// Normalises a step condition as the service does (§2): empty → `success()`; a condition that
/// calls no status function → `success() && (<expr>)`.
pub fn normalize_condition(condition: &str) -> Result<String, ScalarError> {
    normalize_condition_in(condition, scalar::KNOWN_CONTEXTS)
}

/// [`normalize_condition`] for a condition whose expression may name only `contexts` (a
/// composite action's step conditions see fewer contexts than a workflow's).
pub fn normalize_condition_in(condition: &str, contexts: &[&str]) -> Result<String, ScalarError> {
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
    let expr = scalar::parse_expression_in(inner, contexts)?;
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
