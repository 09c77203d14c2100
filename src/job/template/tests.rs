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

#[test]
fn g15_matches_dotnet_formatting() {
    for (n, text) in [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-2.5, "-2.5"),
        (0.1 + 0.2, "0.3"),
        (0.0001, "0.0001"),
        (0.00001, "1E-05"),
        (123456789012345.0, "123456789012345"),
        (1e15, "1E+15"),
        (123456789012345678.0, "1.23456789012346E+17"),
        (1.5e-7, "1.5E-07"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ] {
        assert_eq!(format_g15(n), text, "{n}");
    }
}

#[test]
fn truthiness_follows_the_official_rules() {
    for (value, truthy) in [
        (Value::Null, false),
        (Value::Boolean(false), false),
        (Value::Number(0.0), false),
        (Value::Number(f64::NAN), false),
        (Value::from(""), false),
        (Value::from("false"), true),
        (Value::Array(vec![]), true),
        (Value::Object(Object::new()), true),
        (Value::Number(-1.0), true),
    ] {
        assert_eq!(is_truthy(&value), truthy, "{value:?}");
    }
}
