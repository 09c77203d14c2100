//! Template evaluation: turns a [`TemplateToken`] into values for the slot it fills, with the
//! official slot rules (protocol-jobs §3).
//!
//! Expressions are evaluated with [`crate::expr::evaluate`]; their results are then validated
//! for the slot:
//!
//! | slot | accepts | conversion |
//! |---|---|---|
//! | string (env values, inputs, display names, job outputs) | scalars | null → `""`, bool → `true`/`false`, number → G15 |
//! | boolean (`continue-on-error`) | booleans only | the string `"true"` is an error |
//! | number (`timeout-minutes`) | numbers only | truncated to int32 |
//! | mapping of strings (`env`, `inputs`, `outputs`) | a mapping | each value as a string slot |
//! | any (`if` results) | everything | truthiness |
//!
//! Errors carry the token's `file`/`line`/`col` (file resolved through the message's
//! `fileTable`) when it has them.

use std::fmt;

use crate::expr::{EvalContext, ExprError, Object, Value};
use crate::protocol::template_token::{TemplateToken, TokenKind};

/// Deepest nesting of tokens evaluated (the service's template depth limit).
pub const MAX_TEMPLATE_DEPTH: usize = 50;

/// Where a token came from: `file (Line: 9, Col: 14)`, or nothing if unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceLocation {
    /// The workflow file (from the file table), if known.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<i32>,
    /// 1-based column.
    pub col: Option<i32>,
}

impl SourceLocation {
    /// True if nothing is known.
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.line.is_none() && self.col.is_none()
    }
}

impl fmt::Display for SourceLocation {
    /// Official style: `.github/workflows/ci.yml (Line: 9, Col: 14): ` (empty when unknown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            write!(f, "{file} ")?;
        }
        match (self.line, self.col) {
            (Some(line), Some(col)) => write!(f, "(Line: {line}, Col: {col}): "),
            (Some(line), None) => write!(f, "(Line: {line}): "),
            _ => write!(f, ": "),
        }
    }
}

/// Why a template could not be evaluated for its slot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// An expression failed to parse or evaluate.
    #[error("{location}cannot evaluate expression `{expression}`")]
    Expression {
        /// Where.
        location: SourceLocation,
        /// The expression text.
        expression: String,
        /// The engine's error.
        #[source]
        source: ExprError,
    },
    /// A value of the wrong kind for the slot.
    #[error("{location}expected a {expected}, got a {found}")]
    WrongType {
        /// Where.
        location: SourceLocation,
        /// What the slot accepts.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A mapping key that is not a string.
    #[error("{location}a mapping key must be a string, got a {found}")]
    KeyNotString {
        /// Where.
        location: SourceLocation,
        /// What was found.
        found: &'static str,
    },
    /// An `${{ insert }}` whose value is not a mapping, or an insert outside a mapping key.
    #[error("{location}an insert directive must be a mapping key whose value is a mapping")]
    BadInsert {
        /// Where.
        location: SourceLocation,
    },
    /// The template nests deeper than [`MAX_TEMPLATE_DEPTH`].
    #[error("{location}template nests deeper than {MAX_TEMPLATE_DEPTH} levels")]
    TooDeep {
        /// Where.
        location: SourceLocation,
    },
}

impl TemplateError {
    /// Where the error is.
    pub fn location(&self) -> &SourceLocation {
        match self {
            TemplateError::Expression { location, .. }
            | TemplateError::WrongType { location, .. }
            | TemplateError::KeyNotString { location, .. }
            | TemplateError::BadInsert { location }
            | TemplateError::TooDeep { location } => location,
        }
    }

    /// The full text to show a user in a step's log, including the expression engine's
    /// message, e.g. `ci.yml (Line: 3, Col: 9): Unrecognized named-value: 'foo'. …`.
    pub fn user_message(&self) -> String {
        match self {
            TemplateError::Expression {
                location, source, ..
            } => format!("{location}{}", source.message),
            other => other.to_string(),
        }
    }
}

/// Evaluates tokens against one set of contexts.
#[derive(Clone, Copy)]
pub struct TemplateEvaluator<'a> {
    ctx: &'a EvalContext<'a>,
    file_table: &'a [String],
}

impl<'a> TemplateEvaluator<'a> {
    /// An evaluator; `file_table` resolves the tokens' 1-based `file` ids.
    pub fn new(ctx: &'a EvalContext<'a>, file_table: &'a [String]) -> Self {
        TemplateEvaluator { ctx, file_table }
    }

    /// The location of a token, with its file resolved.
    pub fn location(&self, token: &TemplateToken) -> SourceLocation {
        let file = token.file.and_then(|id| {
            usize::try_from(id)
                .ok()
                .and_then(|id| id.checked_sub(1))
                .and_then(|i| self.file_table.get(i))
                .cloned()
        });
        SourceLocation {
            file,
            line: token.line,
            col: token.col,
        }
    }

    /// Evaluates a token to a value (any slot): literals as-is, expressions evaluated,
    /// sequences and mappings recursively (a sequence result of an item expression is spliced;
    /// an insert key splices its mapping).
    pub fn evaluate(&self, token: &TemplateToken) -> Result<Value, TemplateError> {
        self.evaluate_at(token, 0)
    }

    /// Evaluates a string slot.
    pub fn evaluate_string(&self, token: &TemplateToken) -> Result<String, TemplateError> {
        let value = self.evaluate(token)?;
        scalar_to_string(value).map_err(|found| TemplateError::WrongType {
            location: self.location(token),
            expected: "string",
            found,
        })
    }

    /// Evaluates a boolean slot (only a real boolean is accepted).
    pub fn evaluate_bool(&self, token: &TemplateToken) -> Result<bool, TemplateError> {
        match self.evaluate(token)? {
            Value::Boolean(b) => Ok(b),
            other => Err(self.wrong_type(token, "boolean", &other)),
        }
    }

    /// Evaluates a number slot, truncated to int32 (saturating, NaN → 0).
    pub fn evaluate_number(&self, token: &TemplateToken) -> Result<i32, TemplateError> {
        match self.evaluate(token)? {
            Value::Number(n) => Ok(n.trunc() as i32),
            other => Err(self.wrong_type(token, "number", &other)),
        }
    }

    /// Evaluates a mapping whose values are string slots (`env`, `inputs`, job outputs). Keys
    /// keep their casing; a repeated key (compared exactly) keeps its first position and takes
    /// the later value.
    pub fn evaluate_string_map(
        &self,
        token: &TemplateToken,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (key, value, at) in self.mapping_pairs(token, 0)? {
            let value = scalar_to_string(value).map_err(|found| TemplateError::WrongType {
                location: self.location(at),
                expected: "string",
                found,
            })?;
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(entries)
    }

    /// Evaluates a bare condition expression (`if:`) to its truthiness.
    pub fn evaluate_condition(&self, condition: &str) -> Result<bool, ExprError> {
        crate::expr::evaluate(condition, self.ctx).map(|v| v.is_truthy())
    }

    fn wrong_type(
        &self,
        token: &TemplateToken,
        expected: &'static str,
        found: &Value,
    ) -> TemplateError {
        TemplateError::WrongType {
            location: self.location(token),
            expected,
            found: value_kind(found),
        }
    }

    fn evaluate_at(&self, token: &TemplateToken, depth: usize) -> Result<Value, TemplateError> {
        if depth > MAX_TEMPLATE_DEPTH {
            return Err(TemplateError::TooDeep {
                location: self.location(token),
            });
        }
        Ok(match &token.kind {
            TokenKind::String(s) => Value::String(s.clone()),
            TokenKind::Boolean(b) => Value::Boolean(*b),
            TokenKind::Number(n) => Value::Number(*n),
            TokenKind::Null => Value::Null,
            TokenKind::BasicExpression(expr) => self.expression(token, expr)?,
            TokenKind::InsertExpression(_) => {
                return Err(TemplateError::BadInsert {
                    location: self.location(token),
                });
            }
            TokenKind::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let value = self.evaluate_at(item, depth + 1)?;
                    match (&item.kind, value) {
                        (TokenKind::BasicExpression(_), Value::Array(spliced)) => {
                            out.extend(spliced)
                        }
                        (_, value) => out.push(value),
                    }
                }
                Value::Array(out)
            }
            TokenKind::Mapping(_) => {
                let mut object = Object::new();
                for (k, v, _) in self.mapping_pairs(token, depth)? {
                    object.insert(k, v);
                }
                Value::Object(object)
            }
        })
    }

    /// The evaluated pairs of a mapping token (or of an expression yielding an object), in
    /// order, with inserts spliced; each with the token its value came from (for locations).
    fn mapping_pairs<'t>(
        &self,
        token: &'t TemplateToken,
        depth: usize,
    ) -> Result<Vec<(String, Value, &'t TemplateToken)>, TemplateError> {
        let pairs = match &token.kind {
            TokenKind::Mapping(pairs) => pairs,
            TokenKind::BasicExpression(expr) => {
                return match self.expression(token, expr)? {
                    Value::Object(object) => Ok(object
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.clone(), token))
                        .collect()),
                    other => Err(self.wrong_type(token, "mapping", &other)),
                };
            }
            other => {
                return Err(TemplateError::WrongType {
                    location: self.location(token),
                    expected: "mapping",
                    found: other.name(),
                });
            }
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            if let TokenKind::InsertExpression(_) = key.kind {
                match self.evaluate_at(value, depth + 1)? {
                    Value::Object(object) => {
                        out.extend(object.iter().map(|(k, v)| (k.to_owned(), v.clone(), value)))
                    }
                    _ => {
                        return Err(TemplateError::BadInsert {
                            location: self.location(key),
                        });
                    }
                }
                continue;
            }
            let key_text = match &key.kind {
                TokenKind::String(s) => s.clone(),
                TokenKind::BasicExpression(expr) => match self.expression(key, expr)? {
                    Value::String(s) => s,
                    other => {
                        return Err(TemplateError::KeyNotString {
                            location: self.location(key),
                            found: value_kind(&other),
                        });
                    }
                },
                other => {
                    return Err(TemplateError::KeyNotString {
                        location: self.location(key),
                        found: other.name(),
                    });
                }
            };
            out.push((key_text, self.evaluate_at(value, depth + 1)?, value));
        }
        Ok(out)
    }

    fn expression(&self, token: &TemplateToken, expr: &str) -> Result<Value, TemplateError> {
        crate::expr::evaluate(expr, self.ctx).map_err(|source| TemplateError::Expression {
            location: self.location(token),
            expression: expr.to_owned(),
            source,
        })
    }
}

/// The kind name of a value, for messages.
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

/// The string-slot conversion of a value; `Err(kind)` for sequences and mappings.
pub fn scalar_to_string(value: Value) -> Result<String, &'static str> {
    match &value {
        Value::Null => Ok(String::new()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Number(_) => Ok(value.to_display_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(value_kind(other)),
    }
}

#[cfg(test)]
mod tests;
