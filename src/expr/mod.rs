//! The `${{ }}` expression language: lexer, parser, evaluator and functions, with the official
//! runner's coercion, comparison, truthiness and number-formatting rules.
//!
//! The entry point is [`evaluate`]; values are [`Value`]s, and named contexts (`github`, `env`,
//! `steps`, …) come from an [`Object`] in the [`EvalContext`]. A name that is not a key of the
//! contexts is a parse error (`Unrecognized named-value`), as in the official runner, so callers
//! pass every context that is allowed where the expression appears (`Value::Null` if empty).
//!
//! Decisions where the official engines differ or are unclear (protocol-jobs.md §5):
//! - numbers print in .NET `G15` form but negative zero prints `0` (newer engine, corpus);
//! - `fromJSON` is strict JSON (no comments or trailing text), as the newer engine's strict mode;
//! - `case` is always available; `success()`/`failure()`/`cancelled()`/`always()` need
//!   [`EvalContext::job_status`] and `hashFiles` needs [`EvalContext::hash_files`], else they are
//!   evaluation errors (they still parse, so `expr` can explain why);
//! - positions in messages count UTF-16 units, 1-based, as the official messages do.
//!
//! # Layout
//! - `lexer`: tokens, each checked against the previous one.
//! - `parser`: shunting-yard parser to an [`Expr`] tree (`ast`), with the length/depth limits.
//! - `eval`: evaluation, coercion, comparison, member access, memory limit.
//! - `functions`: the built-in functions.
//! - `number`: string <-> number conversions (.NET `G15` formatting).
//! - `value`: [`Value`] and [`Object`], truthiness, string and JSON forms.

pub mod ast;
pub mod composite;
mod eval;
mod functions;
mod lexer;
pub mod number;
mod parser;
pub mod value;

pub use ast::{CompareOp, Expr, Function};
pub use value::{Object, Value};

/// Longest expression accepted, in UTF-16 units (the official limit).
pub const MAX_LENGTH: usize = 21_000;
/// Deepest expression tree accepted (the root counts as 1; the official limit).
pub const MAX_DEPTH: usize = 50;
/// Memory the results of one evaluation may hold at once, as the runner counts it (1 MiB).
pub const MAX_MEMORY_BYTES: usize = 1024 * 1024;

/// Which stage of evaluation an error comes from (the corpus's `err.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text could not be split into tokens.
    Lexing,
    /// The tokens do not form an expression.
    Parsing,
    /// The expression failed while being evaluated.
    Evaluation,
}

impl ErrorKind {
    /// The corpus's name of the kind: `lexing`, `parsing` or `evaluation`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Lexing => "lexing",
            ErrorKind::Parsing => "parsing",
            ErrorKind::Evaluation => "evaluation",
        }
    }
}

/// An expression error, with the position (character offset) where it was found if known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// The stage.
    pub kind: ErrorKind,
    /// The message, e.g. `Unexpected symbol: '='. Located at position 3 within expression: a = b`.
    pub message: String,
    /// Character offset in the expression, if known.
    pub position: Option<usize>,
}

/// The job status that `success()`, `failure()` and `cancelled()` compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// No step has failed.
    Success,
    /// A step failed.
    Failure,
    /// The job was cancelled.
    Cancelled,
}

/// Computes `hashFiles(patterns…)` in the job's workspace, or says why it cannot.
pub type HashFilesFn<'a> = &'a (dyn Fn(&[String]) -> Result<String, String> + Send + Sync);

/// What an expression can see.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    /// Named values (`github`, `env`, `steps`, `matrix`, …); looked up case-insensitively.
    pub contexts: &'a Object,
    /// Job status for the status functions; `None` makes them an error (e.g. in `expr`).
    pub job_status: Option<JobStatus>,
    /// `hashFiles` implementation; `None` makes `hashFiles` an evaluation error.
    pub hash_files: Option<HashFilesFn<'a>>,
}

impl<'a> EvalContext<'a> {
    /// A context with only named values: no status functions, no `hashFiles`.
    pub fn new(contexts: &'a Object) -> Self {
        EvalContext {
            contexts,
            job_status: None,
            hash_files: None,
        }
    }
}

/// Parses `source` accepting any named value (functions must still exist). An empty expression
/// parses to the literal `null`.
pub fn parse(source: &str) -> Result<Expr, ExprError> {
    parse_with_names(source, &|_| true)
}

/// Parses `source`; `is_known_name` says which named values (contexts) exist, compared however
/// the caller likes (the runner ignores case).
pub fn parse_with_names(
    source: &str,
    is_known_name: &dyn Fn(&str) -> bool,
) -> Result<Expr, ExprError> {
    Ok(parser::parse_expression(source, is_known_name)?.unwrap_or(Expr::Literal(Value::Null)))
}

/// Parses and evaluates `source` (the text inside `${{ }}`). An empty expression is `null`.
pub fn evaluate(source: &str, ctx: &EvalContext<'_>) -> Result<Value, ExprError> {
    let known = |name: &str| eval::lookup_context(ctx.contexts, name).is_some();
    let expr = parse_with_names(source, &known)?;
    evaluate_expr(&expr, ctx)
}

/// Evaluates an already parsed expression (its named values should exist in `ctx.contexts`;
/// missing ones evaluate to `null`).
pub fn evaluate_expr(expr: &Expr, ctx: &EvalContext<'_>) -> Result<Value, ExprError> {
    eval::Evaluator::new(ctx, ctx.contexts, expr).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contexts() -> Object {
        match Value::from(serde_json::json!({
            "foo": {"list": [{"n": 1}, {"n": 2}, {"m": 3}], "big": "x"},
            "arr": [1, "two", null]
        })) {
            Value::Object(object) => object,
            _ => unreachable!("a JSON object literal"),
        }
    }

    fn eval(source: &str) -> Result<Value, ExprError> {
        let contexts = contexts();
        evaluate(source, &EvalContext::new(&contexts))
    }

    #[test]
    fn filtered_arrays_apply_members_to_each_element() {
        assert_eq!(
            eval("foo.list.*.n").map(|v| v.to_json()),
            Ok(serde_json::json!([1, 2]))
        );
        assert_eq!(
            eval("toJSON(foo.*.*.m)")
                .map(|v| v.to_display_string())
                .as_deref(),
            Ok("[\n  3\n]")
        );
        assert_eq!(eval("arr[1.9]"), Ok(Value::from("two")));
        assert_eq!(eval("arr[-1]"), Ok(Value::Null));
        assert_eq!(eval("fromJSON('{\"A\":[5]}').a[0]"), Ok(Value::Number(5.0)));
    }

    #[test]
    fn collections_compare_by_identity() {
        assert_eq!(eval("foo.list == foo.list"), Ok(Value::Boolean(true)));
        assert_eq!(eval("foo.list == foo['LIST']"), Ok(Value::Boolean(true)));
        assert_eq!(
            eval("fromJSON('[]') == fromJSON('[]')"),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            eval("contains(foo.list, foo.list[1])"),
            Ok(Value::Boolean(true))
        );
    }

    #[test]
    fn and_or_return_operands_and_short_circuit() {
        assert_eq!(eval("arr[2] || 'fallback'"), Ok(Value::from("fallback")));
        assert_eq!(eval("0 && fromJSON('not json')"), Ok(Value::Number(0.0)));
        assert_eq!(
            eval("format('{0}', 'x', fromJSON('bad'))"),
            Ok(Value::from("x"))
        );
    }

    #[test]
    fn status_functions_need_a_job_status() {
        let contexts = Object::new();
        let error = evaluate("success()", &EvalContext::new(&contexts)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Evaluation);
        assert!(
            error.message.contains("not allowed here"),
            "{}",
            error.message
        );
        let ctx = EvalContext {
            job_status: Some(JobStatus::Failure),
            ..EvalContext::new(&contexts)
        };
        assert_eq!(
            evaluate("failure() && always()", &ctx),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            evaluate("SUCCESS() || cancelled()", &ctx),
            Ok(Value::Boolean(false))
        );
    }

    #[test]
    fn hash_files_calls_the_workspace_hasher() {
        let contexts = Object::new();
        let error = evaluate("hashFiles('**/*.rs')", &EvalContext::new(&contexts)).unwrap_err();
        assert!(
            error.message.contains("needs a job workspace"),
            "{}",
            error.message
        );
        let hasher = |patterns: &[String]| -> Result<String, String> {
            if patterns.len() == 2 {
                Ok(patterns.join("+"))
            } else {
                Err("timed out".to_owned())
            }
        };
        let ctx = EvalContext {
            hash_files: Some(&hasher),
            ..EvalContext::new(&contexts)
        };
        assert_eq!(evaluate("hashFiles('a', 1)", &ctx), Ok(Value::from("a+1")));
        let error = evaluate("hashFiles('a')", &ctx).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Evaluation);
        assert!(error.message.contains("timed out"), "{}", error.message);
    }

    #[test]
    fn memory_limit_stops_huge_results() {
        let mut contexts = Object::new();
        contexts.insert("s", Value::from("x".repeat(100_000)));
        let ctx = EvalContext::new(&contexts);
        // 2 bytes per character: four copies (800 kB) fit in 1 MiB, six do not.
        let four = "{0}".repeat(4);
        assert!(evaluate(&format!("format('{four}', s)"), &ctx).is_ok());
        let six = "{0}".repeat(6);
        let error = evaluate(&format!("format('{six}', s)"), &ctx).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Evaluation);
        assert!(
            error.message.contains("maximum allowed memory size"),
            "{}",
            error.message
        );
    }

    #[test]
    fn hand_built_trees_are_checked_too() {
        let contexts = Object::new();
        let ctx = EvalContext::new(&contexts);
        let call = Expr::Call {
            function: Function::Format,
            args: Vec::new(),
        };
        assert_eq!(
            evaluate_expr(&call, &ctx).unwrap_err().kind,
            ErrorKind::Evaluation
        );
        let mut deep = Expr::Literal(Value::Boolean(true));
        for _ in 0..MAX_DEPTH {
            deep = Expr::Not(Box::new(deep));
        }
        assert!(
            evaluate_expr(&deep, &ctx)
                .unwrap_err()
                .message
                .contains("depth")
        );
    }

    #[test]
    fn format_errors_name_the_format_string() {
        let error = eval("format('{0:x}', 1)").unwrap_err();
        assert!(
            error.message.contains("format specifiers 'x'"),
            "{}",
            error.message
        );
        assert!(
            eval("format('{256}', 1)")
                .unwrap_err()
                .message
                .contains("is invalid")
        );
    }
}
