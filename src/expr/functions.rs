//! The built-in functions: `contains`, `startsWith`, `endsWith`, `format`, `join`, `toJSON`,
//! `fromJSON`, `case`, the job-status functions and `hashFiles`. Each evaluates only the
//! arguments it needs, in the order the official runner does.

use std::borrow::Cow;

use super::ast::{Expr, Function};
use super::composite::{self, CompositeError, Segment};
use super::eval::{Evaluator, Scalar, Val, fold, loose_equal, string_bytes};
use super::{ErrorKind, ExprError, JobStatus, MAX_MEMORY_BYTES, Value};

/// Runs `function` on unevaluated `args`, which sit at tree `level`.
pub(crate) fn call<'v>(
    ev: &mut Evaluator<'v, '_>,
    function: Function,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    // Parsed trees are checked already; this guards trees built by hand.
    let (min, max) = function.arity();
    if args.len() < min || args.len() > max {
        return Err(evaluation_error(format!(
            "{}() takes {min} to {max} parameters, not {}",
            function.name(),
            args.len()
        )));
    }
    match function {
        Function::Contains => contains(ev, args, level),
        Function::StartsWith | Function::EndsWith => affix(ev, function, args, level),
        Function::Format => format(ev, args, level),
        Function::Join => join(ev, args, level),
        Function::ToJson => {
            let text = ev.eval(arg(args, 0)?, level)?.into_value().to_json_string();
            check_size(ev, &text)?;
            Ok(Val::Str(Cow::Owned(text)))
        }
        Function::FromJson => from_json(ev, args, level),
        Function::Case => case(ev, args, level),
        Function::Success | Function::Always | Function::Cancelled | Function::Failure => {
            status(ev, function)
        }
        Function::HashFiles => hash_files(ev, args, level),
    }
}

fn arg(args: &[Expr], index: usize) -> Result<&Expr, ExprError> {
    args.get(index)
        .ok_or_else(|| evaluation_error(format!("missing parameter {index}")))
}

pub(crate) fn evaluation_error(message: String) -> ExprError {
    ExprError {
        kind: ErrorKind::Evaluation,
        message,
        position: None,
    }
}

fn check_size(ev: &Evaluator<'_, '_>, text: &str) -> Result<(), ExprError> {
    if string_bytes(text) > MAX_MEMORY_BYTES {
        return Err(ev.memory_error());
    }
    Ok(())
}

/// Substring test for a primitive haystack; equality test against each item of an array.
fn contains<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let haystack = ev.eval(arg(args, 0)?, level)?;
    if haystack.is_primitive() {
        let needle = ev.eval(arg(args, 1)?, level)?;
        if needle.is_primitive() {
            let found = fold(&haystack.to_text()).contains(&fold(&needle.to_text()));
            return Ok(Val::Bool(found));
        }
    } else if let Some(items) = haystack.array_items().filter(|items| !items.is_empty()) {
        let needle = ev.eval(arg(args, 1)?, level)?;
        let needle = needle.scalar();
        return Ok(Val::Bool(
            items.into_iter().any(|item| loose_equal(item, needle)),
        ));
    }
    Ok(Val::Bool(false))
}

/// `startsWith` / `endsWith`: case-insensitive, both sides primitive, else false.
fn affix<'v>(
    ev: &mut Evaluator<'v, '_>,
    function: Function,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let text = ev.eval(arg(args, 0)?, level)?;
    if !text.is_primitive() {
        return Ok(Val::Bool(false));
    }
    let part = ev.eval(arg(args, 1)?, level)?;
    if !part.is_primitive() {
        return Ok(Val::Bool(false));
    }
    let (text, part) = (fold(&text.to_text()), fold(&part.to_text()));
    Ok(Val::Bool(if function == Function::StartsWith {
        text.starts_with(&part)
    } else {
        text.ends_with(&part)
    }))
}

fn invalid_format(format: &str) -> ExprError {
    evaluation_error(format!("The following format string is invalid: {format}"))
}

/// [`composite::parse`] with the official error messages.
fn parse_format(format: &str, arg_count: usize) -> Result<Vec<Segment<'_>>, ExprError> {
    composite::parse(format, arg_count).map_err(|err| match err {
        CompositeError::Invalid => invalid_format(format),
        CompositeError::MissingArgument => evaluation_error(format!(
            "The following format string references more arguments than were supplied: {format}"
        )),
    })
}

/// `format(fmt, args…)`: arguments are evaluated lazily, each at most once.
fn format<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let format = ev.eval(arg(args, 0)?, level)?.to_text().into_owned();
    let segments = parse_format(&format, args.len() - 1)?;
    let mut cache: Vec<Option<(String, &'static str)>> = vec![None; args.len() - 1];
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Arg { index, specifiers } => {
                if cache[index].is_none() {
                    let value = ev.eval(&args[index + 1], level)?;
                    let kind = value_kind(&value);
                    cache[index] = Some((value.to_text().into_owned(), kind));
                }
                let Some((text, kind)) = &cache[index] else {
                    continue;
                };
                if !specifiers.is_empty() {
                    return Err(evaluation_error(format!(
                        "The format specifiers '{specifiers}' are not valid for objects of type '{kind}'"
                    )));
                }
                out.push_str(text);
            }
        }
        check_size(ev, &out)?;
    }
    Ok(Val::Str(Cow::Owned(out)))
}

fn value_kind(value: &Val<'_>) -> &'static str {
    match value.scalar() {
        Scalar::Null => "Null",
        Scalar::Bool(_) => "Boolean",
        Scalar::Number(_) => "Number",
        Scalar::Str(_) => "String",
        Scalar::Array(_) => "Array",
        Scalar::Object(_) => "Object",
    }
}

/// `join(items, sep)`: array items as strings joined by `sep` (`,` by default; used only when
/// primitive); a primitive is its string; anything else is `''`.
fn join<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let items = ev.eval(arg(args, 0)?, level)?;
    if let Some(scalars) = items.array_items().filter(|items| !items.is_empty()) {
        let texts: Vec<String> = scalars.into_iter().map(super::eval::scalar_text).collect();
        let mut separator = Cow::Borrowed(",");
        if texts.len() > 1 {
            if let Some(expr) = args.get(1) {
                let value = ev.eval(expr, level)?;
                if value.is_primitive() {
                    separator = Cow::Owned(value.to_text().into_owned());
                }
            }
        }
        let mut out = String::new();
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                out.push_str(&separator);
            }
            out.push_str(text);
            check_size(ev, &out)?;
        }
        return Ok(Val::Str(Cow::Owned(out)));
    }
    if items.is_primitive() {
        return Ok(Val::Str(Cow::Owned(items.to_text().into_owned())));
    }
    Ok(Val::Str(Cow::Borrowed("")))
}

/// `fromJSON(text)`: strict JSON; objects become case-insensitive objects.
fn from_json<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let text = ev.eval(arg(args, 0)?, level)?;
    let text = text.to_text();
    if text.trim().is_empty() {
        return Err(evaluation_error(
            "Error reading JToken from JsonReader: fromJSON was given an empty string".to_owned(),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => Ok(Val::from_owned(Value::from(json))),
        Err(error) => Err(evaluation_error(format!(
            "Error parsing fromJSON input: {error}"
        ))),
    }
}

/// `case(p1, v1, …, default)`: the value after the first predicate that is `true`.
fn case<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    if args.len() % 2 == 0 {
        return Err(evaluation_error(
            "case requires an odd number of arguments".to_owned(),
        ));
    }
    for pair in args[..args.len() - 1].chunks(2) {
        match ev.eval(&pair[0], level)? {
            Val::Bool(true) => return ev.eval(&pair[1], level),
            Val::Bool(false) => {}
            _ => {
                return Err(evaluation_error(
                    "case predicate must evaluate to a boolean value".to_owned(),
                ));
            }
        }
    }
    ev.eval(&args[args.len() - 1], level)
}

/// `success()`, `failure()`, `cancelled()`, `always()` against the job status.
fn status<'v>(ev: &mut Evaluator<'v, '_>, function: Function) -> Result<Val<'v>, ExprError> {
    let Some(status) = ev.ctx.job_status else {
        return Err(evaluation_error(format!(
            "Function '{}' is not allowed here: there is no job status to check (status functions work in step and job `if:` conditions)",
            function.name()
        )));
    };
    Ok(Val::Bool(match function {
        Function::Success => status == JobStatus::Success,
        Function::Failure => status == JobStatus::Failure,
        Function::Cancelled => status == JobStatus::Cancelled,
        _ => true,
    }))
}

/// `hashFiles(patterns…)` through the context's implementation.
fn hash_files<'v>(
    ev: &mut Evaluator<'v, '_>,
    args: &'v [Expr],
    level: usize,
) -> Result<Val<'v>, ExprError> {
    let mut patterns = Vec::with_capacity(args.len());
    for expr in args {
        patterns.push(ev.eval(expr, level)?.to_text().into_owned());
    }
    let Some(hash_files) = ev.ctx.hash_files else {
        return Err(evaluation_error(
            "Function 'hashFiles' is not allowed here: it needs a job workspace".to_owned(),
        ));
    };
    match hash_files(&patterns) {
        Ok(hash) => Ok(Val::Str(Cow::Owned(hash))),
        Err(reason) => Err(evaluation_error(format!(
            "hashFiles('{}') failed: {reason}",
            patterns.join("', '")
        ))),
    }
}
