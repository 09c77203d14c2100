//! `ghrunner-vm expr`: evaluates expressions outside a job (no job status, no workspace, so the
//! status functions and `hashFiles` are errors) and prints results in the conformance corpus's
//! form, one JSON object per line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value as Json;

use super::GlobalArgs;
use crate::exit::ExitStatus;
use crate::expr::{EvalContext, ExprError, Object, Value, evaluate};

/// Evaluate a `${{ }}` expression (without the braces), for debugging `if:` conditions.
///
/// Prints `{"kind": "Boolean|Number|String|Null|Array|Object", "value": ...}`, or
/// `{"err": {"kind": "lexing|parsing|evaluation", "value": "message"}}` with a non-zero exit.
#[derive(Debug, Args)]
pub struct ExprArgs {
    /// The expression, e.g. `github.event_name == 'push' && success()` (may start with `-`).
    #[arg(required_unless_present = "batch", allow_hyphen_values = true)]
    pub expression: Option<String>,
    /// JSON file with the contexts, e.g. `{"github": {"event_name": "push"}}`.
    #[arg(long, value_name = "FILE.json")]
    pub contexts: Option<PathBuf>,
    /// Read JSON lines `{"expr": ..., "contexts": {...}}` on stdin; write one result per line.
    #[arg(long, conflicts_with_all = ["expression", "contexts"])]
    pub batch: bool,
}

/// Runs `expr`.
pub async fn run(args: ExprArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = global;
    if args.batch {
        return tokio::task::spawn_blocking(run_batch)
            .await
            .context("the batch evaluation thread failed")?;
    }
    let expression = args
        .expression
        .context("an expression is required unless --batch is given")?;
    let contexts = match &args.contexts {
        Some(path) => read_contexts_file(path)?,
        None => Object::new(),
    };
    let result = evaluate(&expression, &EvalContext::new(&contexts));
    let failed = result.is_err();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", render_result(&result)).context("cannot write to stdout")?;
    Ok(if failed {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}

fn read_contexts_file(path: &std::path::Path) -> anyhow::Result<Object> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the contexts file {}", path.display()))?;
    let json: Json = serde_json::from_str(&text)
        .with_context(|| format!("the contexts file {} is not valid JSON", path.display()))?;
    contexts_from_json(json).with_context(|| format!("in the contexts file {}", path.display()))
}

/// Contexts are a JSON object of named values; its objects become case-insensitive.
fn contexts_from_json(json: Json) -> anyhow::Result<Object> {
    match Value::from(json) {
        Value::Object(object) => Ok(object),
        other => anyhow::bail!(
            "contexts must be a JSON object of named values, not {}",
            other.kind_name()
        ),
    }
}

/// Evaluates JSON lines from stdin; every input line gets exactly one output line. Exits 0 once
/// all lines are answered, whatever the results (errors are data here).
fn run_batch() -> anyhow::Result<ExitStatus> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (number, line) in stdin.lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        let output = match parse_batch_line(&line) {
            Ok((expression, contexts)) => {
                render_result(&evaluate(&expression, &EvalContext::new(&contexts)))
            }
            Err(reason) => render_input_error(&format!("line {}: {reason}", number + 1)),
        };
        writeln!(stdout, "{output}").context("cannot write to stdout")?;
    }
    stdout.flush().context("cannot write to stdout")?;
    Ok(ExitStatus::Success)
}

/// A batch line: `{"expr": "...", "contexts": {...}}` (`contexts` optional).
fn parse_batch_line(line: &str) -> Result<(String, Object), String> {
    let json: Json = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Json::Object(mut fields) = json else {
        return Err("expected a JSON object with `expr` and optional `contexts`".to_owned());
    };
    let expression = match fields.remove("expr") {
        Some(Json::String(expression)) => expression,
        _ => return Err("`expr` must be a string".to_owned()),
    };
    let contexts = match fields.remove("contexts") {
        None | Some(Json::Null) => Object::new(),
        Some(json) => contexts_from_json(json).map_err(|e| e.to_string())?,
    };
    Ok((expression, contexts))
}

/// One output line in the corpus's form.
pub fn render_result(result: &Result<Value, ExprError>) -> String {
    match result {
        Ok(value) => format!(
            "{{\"kind\": {}, \"value\": {}}}",
            Json::from(value.kind_name()),
            value_json(value)
        ),
        Err(error) => render_error(error.kind.as_str(), &error.message),
    }
}

fn render_input_error(message: &str) -> String {
    render_error("input", message)
}

fn render_error(kind: &str, message: &str) -> String {
    format!(
        "{{\"err\": {{\"kind\": {}, \"value\": {}}}}}",
        Json::from(kind),
        Json::from(message)
    )
}

/// The value as JSON; numbers JSON cannot hold (NaN, ±Infinity) are written as their names in a
/// string, since JSON has no token for them.
fn value_json(value: &Value) -> Json {
    match value {
        Value::Number(n) if !n.is_finite() => Json::from(crate::expr::number::format_number(*n)),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Object(object) => Json::Object(
            object
                .iter()
                .map(|(k, v)| (k.to_owned(), value_json(v)))
                .collect(),
        ),
        other => other.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_results_and_errors() {
        assert_eq!(
            render_result(&Ok(Value::Number(2.0))),
            r#"{"kind": "Number", "value": 2}"#
        );
        assert_eq!(
            render_result(&Ok(Value::Number(f64::NAN))),
            r#"{"kind": "Number", "value": "NaN"}"#
        );
        let error = ExprError {
            kind: crate::expr::ErrorKind::Parsing,
            message: "Unexpected \"x\"".to_owned(),
            position: Some(0),
        };
        assert_eq!(
            render_result(&Err(error)),
            r#"{"err": {"kind": "parsing", "value": "Unexpected \"x\""}}"#
        );
    }

    #[test]
    fn batch_lines_need_an_expression() {
        assert!(parse_batch_line(r#"{"expr": "1"}"#).is_ok());
        assert!(parse_batch_line(r#"{"expr": 1}"#).is_err());
        assert!(parse_batch_line(r#"{"expr": "1", "contexts": [1]}"#).is_err());
        assert!(parse_batch_line("not json").is_err());
    }
}
