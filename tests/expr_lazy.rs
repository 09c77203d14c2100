//! Regression tests for the lazy argument evaluation of GitHub's expression engine, as the
//! official runner implements it. `format('{5}')` fails whenever it is evaluated (it references
//! an argument it does not have), so it stands for "an argument that must not be evaluated":
//! where the official engine skips an argument, the result is a value; where it evaluates it,
//! an error. (The npm `@actions/expressions` port evaluates every argument first, so a
//! differential test against it shows false differences exactly here.)

use ghrunner_vm::expr::{EvalContext, Object, Value, evaluate};

/// An argument that fails when evaluated.
const POISON: &str = "format('{5}')";

fn eval(expr: &str) -> Result<Value, String> {
    let contexts = Object::default();
    evaluate(expr, &EvalContext::new(&contexts)).map_err(|e| e.to_string())
}

fn text(expr: &str) -> String {
    match eval(expr) {
        Ok(Value::String(s)) => s,
        other => panic!("{expr}: expected a string, got {other:?}"),
    }
}

fn fails(expr: &str) {
    let result = eval(expr);
    assert!(
        result.is_err(),
        "{expr}: evaluated to {result:?}, expected the poison's error"
    );
}

/// `src/Sdk/DTExpressions2/Expressions2/Sdk/Functions/Format.cs`: only the arguments the
/// format string references are evaluated (`Parameters[argIndex + 1].Evaluate` inside the
/// segment loop).
#[test]
fn format_evaluates_only_referenced_arguments() {
    fails(POISON);
    assert_eq!(text(&format!("format('{{0}}', 1, {POISON})")), "1");
    assert_eq!(text(&format!("format('{{1}}', {POISON}, 'b')")), "b");
    assert_eq!(
        text(&format!("format('no references', {POISON})")),
        "no references"
    );
    // A referenced poison is evaluated.
    fails(&format!("format('{{0}} {{1}}', 1, {POISON})"));
}

/// `src/Sdk/DTExpressions2/Expressions2/Sdk/Functions/Join.cs`: the separator
/// (`Parameters[1]`) is evaluated only for an array of two or more items.
#[test]
fn join_evaluates_the_separator_only_between_items() {
    assert_eq!(text(&format!("join(fromJSON('[]'), {POISON})")), "");
    assert_eq!(text(&format!("join(fromJSON('[1]'), {POISON})")), "1");
    assert_eq!(text(&format!("join('a string', {POISON})")), "a string");
    assert_eq!(text("join(fromJSON('[1, 2]'), '-')"), "1-2");
    fails(&format!("join(fromJSON('[1, 2]'), {POISON})"));
}

/// `src/Sdk/DTExpressions2/Expressions2/Sdk/Functions/Case.cs`: predicates are evaluated in
/// order up to the first `true`; only that predicate's result (or the default) is evaluated.
#[test]
fn case_evaluates_up_to_the_first_true_predicate() {
    assert_eq!(text(&format!("case(true, 'a', {POISON})")), "a");
    assert_eq!(
        text(&format!("case(true, 'a', {POISON}, {POISON}, {POISON})")),
        "a"
    );
    assert_eq!(
        text(&format!("case(false, {POISON}, 'default')")),
        "default"
    );
    assert_eq!(
        text(&format!("case(false, {POISON}, true, 'b', {POISON})")),
        "b"
    );
    // Predicates before the first true one, and the chosen result, are evaluated.
    fails(&format!("case(false, 'a', {POISON}, 'b', 'default')"));
    fails(&format!("case(true, {POISON}, 'default')"));
    fails(&format!("case(false, 'a', {POISON})"));
}
