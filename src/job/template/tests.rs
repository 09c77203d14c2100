use serde_json::json;

use super::*;
use crate::expr::EvalContext;

fn token(json: serde_json::Value) -> TemplateToken {
    TemplateToken::from_json(&json).expect("valid token")
}

fn with_evaluator<R>(f: impl FnOnce(&TemplateEvaluator<'_>) -> R) -> R {
    let contexts = Object::new();
    let ctx = EvalContext::new(&contexts);
    let files = vec![".github/workflows/ci.yml".to_owned()];
    let evaluator = TemplateEvaluator::new(&ctx, &files);
    f(&evaluator)
}

#[test]
fn string_slot_converts_scalars_and_rejects_collections() {
    with_evaluator(|e| {
        assert_eq!(e.evaluate_string(&token(json!("x"))).as_deref(), Ok("x"));
        assert_eq!(e.evaluate_string(&token(json!(null))).as_deref(), Ok(""));
        assert_eq!(
            e.evaluate_string(&token(json!(true))).as_deref(),
            Ok("true")
        );
        assert_eq!(e.evaluate_string(&token(json!(1.5))).as_deref(), Ok("1.5"));
        let err = e
            .evaluate_string(&token(
                json!({"type": 1, "seq": ["a"], "file": 1, "line": 3, "col": 7}),
            ))
            .expect_err("sequence in a string slot");
        assert_eq!(
            err.to_string(),
            ".github/workflows/ci.yml (Line: 3, Col: 7): expected a string, got a sequence"
        );
    });
}

#[test]
fn boolean_and_number_slots_are_strict() {
    with_evaluator(|e| {
        assert_eq!(e.evaluate_bool(&token(json!(true))), Ok(true));
        assert!(matches!(
            e.evaluate_bool(&token(json!("true"))),
            Err(TemplateError::WrongType {
                expected: "boolean",
                found: "string",
                ..
            })
        ));
        assert_eq!(e.evaluate_number(&token(json!(7.9))), Ok(7));
        assert_eq!(e.evaluate_number(&token(json!(-2.5))), Ok(-2));
        assert!(e.evaluate_number(&token(json!("5"))).is_err());
    });
}

#[test]
fn string_maps_keep_order_and_later_duplicates_win() {
    with_evaluator(|e| {
        let env = e
            .evaluate_string_map(&token(json!({"type": 2, "map": [
                {"Key": "B", "Value": "1"}, {"Key": "A", "Value": 2}, {"Key": "B", "Value": null}]})))
            .expect("env");
        assert_eq!(
            env,
            vec![
                ("B".to_owned(), String::new()),
                ("A".to_owned(), "2".to_owned())
            ]
        );
        assert!(e.evaluate_string_map(&token(json!("not a map"))).is_err());
        let nested = token(json!({"type": 2, "map": [{"Key": "X", "Value": {"type": 2}}]}));
        assert!(matches!(
            e.evaluate_string_map(&nested),
            Err(TemplateError::WrongType {
                found: "mapping",
                ..
            })
        ));
    });
}

#[test]
fn non_string_mapping_keys_and_stray_inserts_are_errors() {
    with_evaluator(|e| {
        let key = token(
            json!({"type": 2, "map": [{"Key": {"type": 5, "bool": true, "line": 2, "col": 1}, "Value": "x"}]}),
        );
        let err = e.evaluate(&key).expect_err("boolean key");
        assert!(matches!(
            err,
            TemplateError::KeyNotString {
                found: "boolean",
                ..
            }
        ));
        assert_eq!(err.location().line, Some(2));
        let insert = token(json!({"type": 4, "directive": "insert"}));
        assert!(matches!(
            e.evaluate(&insert),
            Err(TemplateError::BadInsert { .. })
        ));
    });
}

#[test]
fn expression_errors_carry_location_and_source() {
    // Holds for any engine: `(` alone is not a valid expression.
    with_evaluator(|e| {
        let err = e
            .evaluate_string(&token(
                json!({"type": 3, "expr": "(", "file": 1, "line": 9, "col": 14}),
            ))
            .expect_err("invalid expression");
        let TemplateError::Expression {
            location,
            expression,
            ..
        } = &err
        else {
            panic!("not an expression error: {err:?}")
        };
        assert_eq!(expression, "(");
        assert_eq!(location.file.as_deref(), Some(".github/workflows/ci.yml"));
        assert!(
            err.user_message()
                .starts_with(".github/workflows/ci.yml (Line: 9, Col: 14): ")
        );
        assert!(std::error::Error::source(&err).is_some());
    });
}

#[test]
fn deep_templates_are_rejected() {
    let mut json = json!("leaf");
    for _ in 0..(MAX_TEMPLATE_DEPTH + 2) {
        json = json!({"type": 1, "seq": [json]});
    }
    with_evaluator(|e| {
        assert!(matches!(
            e.evaluate(&token(json)),
            Err(TemplateError::TooDeep { .. })
        ));
    });
}

fn contexts() -> Object {
    let Value::Object(contexts) = Value::from(json!({
        "github": {"sha": "abc", "event_name": "push"},
        "matrix": {"timeout": 7.9, "flags": ["-a", "-b"], "extra": {"X": "1", "Y": 2}},
        "vars": {"on": true, "num": 1e15, "nothing": null, "list": [1]}
    })) else {
        panic!("contexts are an object")
    };
    contexts
}

fn with_contexts<R>(f: impl FnOnce(&TemplateEvaluator<'_>) -> R) -> R {
    let contexts = contexts();
    let ctx = EvalContext::new(&contexts);
    let files = vec!["ci.yml".to_owned()];
    f(&TemplateEvaluator::new(&ctx, &files))
}

#[test]
fn expressions_fill_string_slots_with_the_official_conversions() {
    with_contexts(|e| {
        let expr = |x: &str| TemplateToken::expression(x);
        assert_eq!(
            e.evaluate_string(&expr("format('echo {0}', github.sha)"))
                .as_deref(),
            Ok("echo abc")
        );
        assert_eq!(e.evaluate_string(&expr("vars.on")).as_deref(), Ok("true"));
        assert_eq!(e.evaluate_string(&expr("vars.num")).as_deref(), Ok("1E+15"));
        assert_eq!(e.evaluate_string(&expr("vars.nothing")).as_deref(), Ok(""));
        assert!(matches!(
            e.evaluate_string(&expr("vars.list").at(Some(1), 4, 5)),
            Err(TemplateError::WrongType { expected: "string", found: "sequence", ref location })
                if location.line == Some(4) && location.file.as_deref() == Some("ci.yml")
        ));
    });
}

#[test]
fn expressions_fill_boolean_and_number_slots_strictly() {
    with_contexts(|e| {
        assert_eq!(
            e.evaluate_bool(&TemplateToken::expression("github.event_name == 'PUSH'")),
            Ok(true)
        );
        assert!(
            e.evaluate_bool(&TemplateToken::expression("'true'"))
                .is_err()
        );
        assert_eq!(
            e.evaluate_number(&TemplateToken::expression("matrix.timeout")),
            Ok(7)
        );
        assert!(
            e.evaluate_number(&TemplateToken::expression("github.sha"))
                .is_err()
        );
        assert_eq!(
            e.evaluate_condition("success() || always()").ok(),
            None,
            "no job status given"
        );
        assert_eq!(e.evaluate_condition("github.sha").ok(), Some(true));
        assert_eq!(e.evaluate_condition("vars.nothing").ok(), Some(false));
    });
}

#[test]
fn sequences_splice_item_expressions_and_inserts_splice_mappings() {
    with_contexts(|e| {
        let seq = token(json!({"type": 1, "seq": ["x", {"type": 3, "expr": "matrix.flags"}, "y"]}));
        assert_eq!(
            e.evaluate(&seq),
            Ok(Value::Array(vec![
                "x".into(),
                "-a".into(),
                "-b".into(),
                "y".into()
            ]))
        );
        let map = token(json!({"type": 2, "map": [
            {"Key": "A", "Value": "1"},
            {"Key": {"type": 4, "directive": "insert"}, "Value": {"type": 3, "expr": "matrix.extra"}},
            {"Key": {"type": 3, "expr": "format('K{0}', 1)"}, "Value": {"type": 3, "expr": "github.sha"}}]}));
        let env = e.evaluate_string_map(&map).expect("env");
        let keys: Vec<_> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(keys, ["A=1", "X=1", "Y=2", "K1=abc"]);
        let bad_key = token(
            json!({"type": 2, "map": [{"Key": {"type": 3, "expr": "vars.on"}, "Value": "v"}]}),
        );
        assert!(matches!(
            e.evaluate(&bad_key),
            Err(TemplateError::KeyNotString {
                found: "boolean",
                ..
            })
        ));
        let bad_insert = token(json!({"type": 2, "map": [
            {"Key": {"type": 4, "directive": "insert"}, "Value": "not a mapping"}]}));
        assert!(matches!(
            e.evaluate(&bad_insert),
            Err(TemplateError::BadInsert { .. })
        ));
    });
}

#[test]
fn unknown_contexts_report_the_engine_message_with_location() {
    with_contexts(|e| {
        let err = e
            .evaluate_string(&TemplateToken::expression("nope.x").at(Some(1), 3, 9))
            .expect_err("unknown context");
        let message = err.user_message();
        assert!(
            message.starts_with("ci.yml (Line: 3, Col: 9): "),
            "{message}"
        );
        assert!(message.to_lowercase().contains("nope"), "{message}");
    });
}

#[test]
fn string_map_errors_point_at_the_offending_value() {
    with_evaluator(|e| {
        let env = token(json!({"type": 2, "map": [
            {"Key": "OK", "Value": "x"},
            {"Key": "BAD", "Value": {"type": 1, "seq": [], "file": 1, "line": 14, "col": 17}}]}));
        let err = e.evaluate_string_map(&env).expect_err("sequence value");
        assert_eq!(err.location().line, Some(14));
        assert_eq!(err.location().col, Some(17));
    });
}
