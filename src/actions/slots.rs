//! One value of an action manifest → a template token, typed and checked as the official
//! template reader does with the action schema (`src/Runner.Worker/action_yaml.json`,
//! `src/Sdk/DTObjectTemplating/ObjectTemplating/TemplateReader.cs`):
//!
//! - a `string` place turns other scalars into their text (null → `""`, `true` → `"true"`,
//!   numbers in .NET `G15` form) and `${{ }}` into an expression token;
//! - each place allows expressions over its own named values and functions ([`Contexts`]);
//!   where it allows none, an expression is an error (only `${{ 'literal' }}` folds to text);
//! - mapping keys are scalars and unique ignoring case.
//!
//! Tokens keep their line and column; their file is left unset (the job's file table assigns
//! the manifest an id only when a job loads it).

use crate::expr::{Expr, Function};
use crate::protocol::template_token::{TemplateToken, TokenKind};
use crate::workflow::scalar::{ScalarError, plain_scalar, string_token_in};
use crate::workflow::yaml::{Mark, Node};

/// What an expression may use at one place of the manifest: named values and, beyond the
/// built-in functions, the status functions and `hashFiles`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Contexts {
    /// Named values (`github`, `inputs`, …).
    pub(super) names: &'static [&'static str],
    /// `success()`, `failure()`, `cancelled()`, `always()` (only step conditions).
    pub(super) status_functions: bool,
    /// `hashFiles(…)`.
    pub(super) hash_files: bool,
}

impl Contexts {
    fn allow_expressions(self) -> bool {
        !self.names.is_empty() || self.status_functions || self.hash_files
    }
}

/// Places without a `context` in the schema: no expressions.
pub(super) const LITERAL: Contexts = Contexts {
    names: &[],
    status_functions: false,
    hash_files: false,
};

/// `input-default-context`: an input's `default`.
pub(super) const INPUT_DEFAULT: Contexts = Contexts {
    names: &["github", "strategy", "matrix", "job", "runner"],
    status_functions: false,
    hash_files: true,
};

/// `output-value`: a composite output's `value`.
pub(super) const OUTPUT_VALUE: Contexts = Contexts {
    names: &[
        "github", "strategy", "matrix", "steps", "inputs", "job", "runner", "env",
    ],
    status_functions: false,
    hash_files: false,
};

/// Named values of a composite step's fields.
const STEP_NAMES: &[&str] = &[
    "github", "inputs", "strategy", "matrix", "steps", "job", "runner", "env",
];

/// `string-steps-context`, `boolean-steps-context`, `step-env`, `step-with`.
pub(super) const STEP: Contexts = Contexts {
    names: STEP_NAMES,
    status_functions: false,
    hash_files: true,
};

/// `step-if`: a composite step's condition.
pub(super) const STEP_IF: Contexts = Contexts {
    names: STEP_NAMES,
    status_functions: true,
    hash_files: true,
};

/// `container-runs-context`, `container-runs-env`: a Docker action's `args` and `env`.
pub(super) const CONTAINER: Contexts = Contexts {
    names: &["inputs"],
    status_functions: false,
    hash_files: false,
};

/// What is wrong with one value, and where.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Problem {
    /// Where the value starts.
    pub(super) mark: Mark,
    /// What is wrong.
    pub(super) message: String,
}

/// A [`Problem`] at `node`.
pub(super) fn problem(node: &Node, message: impl Into<String>) -> Problem {
    Problem {
        mark: node.mark(),
        message: message.into(),
    }
}

fn at(kind: TokenKind, node: &Node) -> TemplateToken {
    let mark = node.mark();
    TemplateToken::from(kind).at(None, mark.line as i32, mark.col as i32)
}

/// The pairs of the mapping `node` (`what` names it in messages): keys are non-empty strings,
/// unique ignoring case.
pub(super) fn pairs<'a>(node: &'a Node, what: &str) -> Result<&'a [(Node, Node)], Problem> {
    pairs_in(node, LITERAL, what)
}

/// [`pairs`] of a mapping whose keys may be expressions where `contexts` allows (expression
/// keys are not checked for uniqueness, as the reader does not).
fn pairs_in<'a>(
    node: &'a Node,
    contexts: Contexts,
    what: &str,
) -> Result<&'a [(Node, Node)], Problem> {
    let Node::Mapping { pairs, .. } = node else {
        return Err(problem(
            node,
            format!("`{what}` must be a mapping, not {}", describe(node)),
        ));
    };
    let mut seen: Vec<String> = Vec::with_capacity(pairs.len());
    for (key, _) in pairs {
        if let TokenKind::String(name) = key_token(key, contexts, what)? {
            if seen.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
                return Err(problem(
                    key,
                    format!("`{name}` is already defined in `{what}`"),
                ));
            }
            seen.push(name);
        }
    }
    Ok(pairs)
}

/// A mapping key: a non-empty string, or an expression where `contexts` allows.
fn key_token(key: &Node, contexts: Contexts, what: &str) -> Result<TokenKind, Problem> {
    if !matches!(key, Node::Scalar { .. }) {
        return Err(problem(key, format!("`{what}` keys must be strings")));
    }
    match as_text(scalar(key, contexts, what)?) {
        TokenKind::String(name) if name.is_empty() => {
            Err(problem(key, format!("`{what}` keys must not be empty")))
        }
        kind => Ok(kind),
    }
}

/// A mapping key as text (non-empty; no expressions).
pub(super) fn key_text(key: &Node, what: &str) -> Result<String, Problem> {
    match key_token(key, LITERAL, what)? {
        TokenKind::String(name) => Ok(name),
        other => Err(problem(
            key,
            format!("`{what}` keys must be strings, not a {}", other.name()),
        )),
    }
}

/// `node` for messages: `a mapping`, `a sequence`, `null` or the scalar's text in quotes.
fn describe(node: &Node) -> String {
    match node {
        _ if node.is_null() => "null".to_owned(),
        Node::Scalar { text, .. } => format!("'{text}'"),
        other => format!("a {}", other.kind()),
    }
}

/// A scalar's token in a place allowing `contexts` (non-string scalars keep their type).
fn scalar(node: &Node, contexts: Contexts, what: &str) -> Result<TokenKind, Problem> {
    let Node::Scalar { text, plain, .. } = node else {
        return Err(problem(
            node,
            format!("`{what}` must be a string, not a {}", node.kind()),
        ));
    };
    if let Some(kind) = plain.then(|| plain_scalar(text)).flatten() {
        return Ok(kind);
    }
    if !text.contains("${{") {
        return Ok(TokenKind::String(text.clone()));
    }
    let kind = string_token_in(text, contexts.names).map_err(|e| expression(node, what, e))?;
    if let TokenKind::BasicExpression(source) = &kind {
        if !contexts.allow_expressions() {
            return Err(problem(
                node,
                format!("`{what}`: a template expression is not allowed here"),
            ));
        }
        check_functions(node, source, contexts, what)?;
    }
    Ok(kind)
}

fn expression(node: &Node, what: &str, error: ScalarError) -> Problem {
    match error.expression {
        Some(e) => problem(
            node,
            format!("`{what}`: invalid expression `{e}`: {}", error.message),
        ),
        None => problem(node, format!("`{what}`: {}", error.message)),
    }
}

/// Refuses status functions and `hashFiles` where `contexts` does not allow them (the parser
/// knows every function; the schema limits them per place).
pub(super) fn check_functions(
    node: &Node,
    source: &str,
    contexts: Contexts,
    what: &str,
) -> Result<(), Problem> {
    let Ok(expr) = crate::expr::parse(source) else {
        // Already parsed once with the place's names; nothing more to check.
        return Ok(());
    };
    match first_disallowed(&expr, contexts) {
        None => Ok(()),
        Some(function) => Err(problem(
            node,
            format!(
                "`{what}`: invalid expression `{source}`: Unrecognized function: '{}'",
                function.name()
            ),
        )),
    }
}

fn first_disallowed(expr: &Expr, contexts: Contexts) -> Option<Function> {
    match expr {
        Expr::Call { function, args } => {
            let allowed = match function {
                Function::Success | Function::Failure | Function::Cancelled | Function::Always => {
                    contexts.status_functions
                }
                Function::HashFiles => contexts.hash_files,
                _ => true,
            };
            if allowed {
                args.iter().find_map(|a| first_disallowed(a, contexts))
            } else {
                Some(*function)
            }
        }
        Expr::Index { target, index } => {
            first_disallowed(target, contexts).or_else(|| first_disallowed(index, contexts))
        }
        Expr::Not(inner) => first_disallowed(inner, contexts),
        Expr::And(items) | Expr::Or(items) => {
            items.iter().find_map(|i| first_disallowed(i, contexts))
        }
        Expr::Compare { left, right, .. } => {
            first_disallowed(left, contexts).or_else(|| first_disallowed(right, contexts))
        }
        Expr::Literal(_) | Expr::NamedValue(_) | Expr::Wildcard => None,
    }
}

/// The text a non-string scalar stands for in a `string` place (the reader's conversion).
fn as_text(kind: TokenKind) -> TokenKind {
    match kind {
        TokenKind::Null => TokenKind::String(String::new()),
        TokenKind::Boolean(b) => TokenKind::String(b.to_string()),
        TokenKind::Number(n) => TokenKind::String(crate::expr::number::format_number(n)),
        other => other,
    }
}

/// A `string` value: a string token, or an expression token where `contexts` allows.
pub(super) fn string(
    node: &Node,
    contexts: Contexts,
    what: &str,
) -> Result<TemplateToken, Problem> {
    Ok(at(as_text(scalar(node, contexts, what)?), node))
}

/// A string that may hold no expression (`${{ 'text' }}` folds to text).
pub(super) fn literal(node: &Node, what: &str) -> Result<String, Problem> {
    match as_text(scalar(node, LITERAL, what)?) {
        TokenKind::String(text) => Ok(text),
        // `scalar` refuses expressions under LITERAL, and `as_text` leaves only strings.
        other => Err(problem(
            node,
            format!("`{what}` must be a string, not a {}", other.name()),
        )),
    }
}

/// A `non-empty-string` value without expressions.
pub(super) fn non_empty(node: &Node, what: &str) -> Result<String, Problem> {
    let text = literal(node, what)?;
    if text.is_empty() {
        return Err(problem(node, format!("`{what}` must not be empty")));
    }
    Ok(text)
}

/// A `boolean` value: a YAML boolean, or an expression where `contexts` allows.
pub(super) fn boolean(
    node: &Node,
    contexts: Contexts,
    what: &str,
) -> Result<TemplateToken, Problem> {
    match scalar(node, contexts, what)? {
        kind @ (TokenKind::Boolean(_) | TokenKind::BasicExpression(_)) => Ok(at(kind, node)),
        _ => Err(problem(
            node,
            format!(
                "`{what}` must be a boolean (true or false) or an expression, not {}",
                describe(node)
            ),
        )),
    }
}

/// A mapping of strings (`env`, `with`): keys are non-empty strings (or expressions where
/// `contexts` allows), values are [`string`]s.
pub(super) fn string_mapping(
    node: &Node,
    contexts: Contexts,
    what: &str,
) -> Result<TemplateToken, Problem> {
    let mut out = Vec::new();
    for (key, value) in pairs_in(node, contexts, what)? {
        let key_kind = key_token(key, contexts, what)?;
        let value = match &key_kind {
            TokenKind::String(name) => string(value, contexts, &format!("{what}.{name}"))?,
            _ => string(value, contexts, what)?,
        };
        out.push((at(key_kind, key), value));
    }
    Ok(at(TokenKind::Mapping(out), node))
}

/// A sequence of [`string`]s (a Docker action's `args`).
pub(super) fn string_sequence(
    node: &Node,
    contexts: Contexts,
    what: &str,
) -> Result<TemplateToken, Problem> {
    let Node::Sequence { items, .. } = node else {
        return Err(problem(
            node,
            format!("`{what}` must be a sequence, not {}", describe(node)),
        ));
    };
    let items = items
        .iter()
        .map(|item| string(item, contexts, what))
        .collect::<Result<_, _>>()?;
    Ok(at(TokenKind::Sequence(items), node))
}

/// A loose value (`any` in the schema, e.g. `branding`): any shape, but no expressions
/// anywhere in it.
pub(super) fn loose(node: &Node, what: &str) -> Result<(), Problem> {
    match node {
        Node::Scalar { .. } => scalar(node, LITERAL, what).map(drop),
        Node::Sequence { items, .. } => items.iter().try_for_each(|i| loose(i, what)),
        Node::Mapping { pairs: kv, .. } => {
            pairs(node, what)?;
            kv.iter().try_for_each(|(_, v)| loose(v, what))
        }
    }
}
