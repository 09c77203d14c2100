//! YAML scalars → template tokens, as the service's template reader does (protocol-jobs §3):
//! plain scalars resolve to null/boolean/number/string; strings containing `${{ }}` become a
//! BasicExpression (a lone expression as-is, a lone string literal folded to a string, mixed
//! text as `format('…{0}…', e0, …)`).

use crate::expr::{Expr, Value};
use crate::protocol::template_token::{TemplateToken, TokenKind};

use super::yaml::Node;

/// Named values an expression in a workflow may use.
pub const KNOWN_CONTEXTS: &[&str] = &[
    "github", "needs", "strategy", "matrix", "secrets", "steps", "job", "runner", "env", "vars",
    "inputs",
];

/// A piece of a scalar: literal text or the text inside `${{ }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// An expression (trimmed).
    Expression(String),
}

/// Why a scalar's expressions are invalid (the message is the official wording where one
/// exists; `source` is the engine's error for syntax problems).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarError {
    /// What is wrong.
    pub message: String,
    /// The expression at fault, if any.
    pub expression: Option<String>,
    /// The engine's error, if it is a syntax error.
    pub source: Option<crate::expr::ExprError>,
}

/// Splits text at `${{ … }}` (a `'` toggles string state while looking for `}}`).
pub fn split_segments(raw: &str) -> Result<Vec<Segment>, ScalarError> {
    let mut segments = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            segments.push(Segment::Literal(rest[..start].to_owned()));
        }
        let body = &rest[start + 3..];
        let bytes = body.as_bytes();
        let mut in_string = false;
        let mut end = None;
        for i in 0..bytes.len() {
            match bytes[i] {
                b'\'' => in_string = !in_string,
                b'}' if !in_string && i > 0 && bytes[i - 1] == b'}' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(ScalarError {
                message: "The expression is not closed. An unescaped ${{ sequence was found, but the closing }} sequence was not found.".to_owned(),
                expression: None,
                source: None,
            });
        };
        let expression = body[..end - 1].trim();
        if expression.is_empty() {
            return Err(ScalarError {
                message: "An expression was expected".to_owned(),
                expression: None,
                source: None,
            });
        }
        segments.push(Segment::Expression(expression.to_owned()));
        rest = &body[end + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

/// Parses an expression, accepting only [`KNOWN_CONTEXTS`] as named values.
pub fn parse_expression(expression: &str) -> Result<Expr, ScalarError> {
    parse_expression_in(expression, KNOWN_CONTEXTS)
}

/// Parses an expression, accepting only `contexts` as named values (an action manifest allows
/// fewer than a workflow, and a different set in each place).
pub fn parse_expression_in(expression: &str, contexts: &[&str]) -> Result<Expr, ScalarError> {
    let known = |name: &str| contexts.iter().any(|k| k.eq_ignore_ascii_case(name));
    crate::expr::parse_with_names(expression, &known).map_err(|source| ScalarError {
        message: source.message.clone(),
        expression: Some(expression.to_owned()),
        source: Some(source),
    })
}

/// The token for a string that may hold `${{ }}`.
pub fn string_token(raw: &str) -> Result<TokenKind, ScalarError> {
    string_token_in(raw, KNOWN_CONTEXTS)
}

/// The token for a string that may hold `${{ }}` whose expressions may name only `contexts`.
pub fn string_token_in(raw: &str, contexts: &[&str]) -> Result<TokenKind, ScalarError> {
    if !raw.contains("${{") {
        return Ok(TokenKind::String(raw.to_owned()));
    }
    let segments = split_segments(raw)?;
    for segment in &segments {
        if let Segment::Expression(e) = segment {
            parse_expression_in(e, contexts)?;
        }
    }
    if let [Segment::Expression(expression)] = segments.as_slice() {
        if let Ok(Expr::Literal(Value::String(s))) = parse_expression_in(expression, contexts) {
            return Ok(TokenKind::String(s));
        }
        return Ok(TokenKind::BasicExpression(expression.clone()));
    }
    let mut format = String::from("format('");
    let mut args = Vec::new();
    for segment in &segments {
        match segment {
            Segment::Literal(text) => {
                for c in text.chars() {
                    match c {
                        '\'' => format.push_str("''"),
                        '{' => format.push_str("{{"),
                        '}' => format.push_str("}}"),
                        c => format.push(c),
                    }
                }
            }
            Segment::Expression(e) => {
                format.push_str(&format!("{{{}}}", args.len()));
                args.push(e.as_str());
            }
        }
    }
    format.push('\'');
    for arg in args {
        format.push_str(", ");
        format.push_str(arg);
    }
    format.push(')');
    Ok(TokenKind::BasicExpression(format))
}

/// Resolves a plain scalar's type (YAML 1.2 core schema, as the service's reader does).
pub fn plain_scalar(text: &str) -> Option<TokenKind> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(TokenKind::Null),
        "true" | "True" | "TRUE" => return Some(TokenKind::Boolean(true)),
        "false" | "False" | "FALSE" => return Some(TokenKind::Boolean(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(TokenKind::Number(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(TokenKind::Number(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(TokenKind::Number(f64::NAN)),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16)
            .ok()
            .map(|n| TokenKind::Number(n as f64));
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return i64::from_str_radix(octal, 8)
            .ok()
            .map(|n| TokenKind::Number(n as f64));
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let numeric = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if numeric {
        return text.parse::<f64>().ok().map(TokenKind::Number);
    }
    None
}

/// The token for a scalar node (`file` is the file-table id).
pub fn scalar_token(node: &Node, file: i32) -> Result<TemplateToken, ScalarError> {
    let Node::Scalar { text, plain, mark } = node else {
        return Err(ScalarError {
            message: format!("a scalar was expected, got a {}", node.kind()),
            expression: None,
            source: None,
        });
    };
    let kind = match plain.then(|| plain_scalar(text)).flatten() {
        Some(kind) => kind,
        None => string_token(text)?,
    };
    Ok(TemplateToken::from(kind).at(Some(file), mark.line as i32, mark.col as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(raw: &str) -> TokenKind {
        string_token(raw).expect("valid")
    }

    #[test]
    fn lone_expressions_are_basic_expressions() {
        assert_eq!(
            expr("${{ github.sha }}"),
            TokenKind::BasicExpression("github.sha".into())
        );
        assert_eq!(expr("plain"), TokenKind::String("plain".into()));
    }

    #[test]
    fn mixed_text_becomes_a_format_call_with_escaping() {
        assert_eq!(
            expr("echo ${{ github.sha }}"),
            TokenKind::BasicExpression("format('echo {0}', github.sha)".into())
        );
        assert_eq!(
            expr("it's {x} ${{ github.b }}-${{ 'q}}' }}!"),
            TokenKind::BasicExpression("format('it''s {{x}} {0}-{1}!', github.b, 'q}}')".into())
        );
        assert_eq!(
            expr(" ${{ github.sha }}"),
            TokenKind::BasicExpression("format(' {0}', github.sha)".into())
        );
    }

    #[test]
    fn string_literal_expressions_fold_to_strings() {
        assert_eq!(
            expr("${{ '${{ x }}' }}"),
            TokenKind::String("${{ x }}".into())
        );
        assert_eq!(expr("${{ 'it''s' }}"), TokenKind::String("it's".into()));
    }

    #[test]
    fn unclosed_empty_and_invalid_expressions_are_errors() {
        let err = string_token("echo ${{ github.sha").expect_err("unclosed");
        assert!(err.message.starts_with("The expression is not closed"));
        assert_eq!(
            string_token("${{ }}").expect_err("empty").message,
            "An expression was expected"
        );
        let err = string_token("${{ nosuch.ctx }}").expect_err("unknown context");
        assert_eq!(err.expression.as_deref(), Some("nosuch.ctx"));
        assert!(err.source.is_some());
        assert!(string_token("${{ github. }}").is_err());
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_core() {
        assert_eq!(plain_scalar("true"), Some(TokenKind::Boolean(true)));
        assert_eq!(plain_scalar("~"), Some(TokenKind::Null));
        assert_eq!(plain_scalar("10"), Some(TokenKind::Number(10.0)));
        assert_eq!(plain_scalar("-1.5e2"), Some(TokenKind::Number(-150.0)));
        assert_eq!(plain_scalar("0x1F"), Some(TokenKind::Number(31.0)));
        assert_eq!(plain_scalar("yes"), None, "YAML 1.1 booleans are strings");
        assert_eq!(plain_scalar("1.2.3"), None);
        assert_eq!(plain_scalar("3.12"), Some(TokenKind::Number(3.12)));
    }
}
