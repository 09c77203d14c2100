//! Property tests: the expression engine never panics, whatever the input, and its errors are
//! well-formed. Inputs are arbitrary strings, strings over the expression alphabet, and
//! generated near-valid expressions (valid ones with a random edit).

use ghrunner_vm::expr::{
    ErrorKind, EvalContext, JobStatus, Object, Value, evaluate, parse, parse_with_names,
};
use proptest::prelude::*;

fn contexts() -> Object {
    let json = serde_json::json!({
        "a": [{"p": 1, "q": [1, 2]}, {"p": "x"}, 3, null],
        "b": {"c": {"d": true}, "e": "text", "f": 0.5},
        "ctx": "value",
        "n": null
    });
    match Value::from(json) {
        Value::Object(object) => object,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Checks the invariants of one evaluation.
fn check(source: &str) {
    let contexts = contexts();
    let hash = |patterns: &[String]| -> Result<String, String> {
        if patterns.iter().any(|p| p.contains("fail")) {
            Err("no such file".to_owned())
        } else {
            Ok("00".repeat(32))
        }
    };
    let plain = EvalContext::new(&contexts);
    let in_job = EvalContext {
        contexts: &contexts,
        job_status: Some(JobStatus::Failure),
        hash_files: Some(&hash),
    };
    let _ = parse(source);
    let known = |name: &str| contexts.get(name).is_some();
    let parsed = parse_with_names(source, &known);
    for ctx in [&plain, &in_job] {
        let result = evaluate(source, ctx);
        match (&parsed, &result) {
            (Ok(_), Err(e)) => assert_eq!(e.kind, ErrorKind::Evaluation, "{source:?}: {e:?}"),
            (Err(p), Err(e)) => assert_eq!(p, e, "{source:?}"),
            (Err(p), Ok(v)) => panic!("{source:?} parsed with {p:?} but evaluated to {v:?}"),
            (Ok(_), Ok(_)) => {}
        }
        if let Err(e) = &result {
            assert!(!e.message.is_empty());
            if let Some(position) = e.position {
                assert!(position < source.encode_utf16().count().max(1), "{e:?}");
            }
        }
    }
}

/// Leaves of generated expressions.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("NaN".to_owned()),
        Just("-Infinity".to_owned()),
        Just("0x1F".to_owned()),
        Just("0o17".to_owned()),
        Just(".5".to_owned()),
        Just("1e3".to_owned()),
        (-1000i32..1000).prop_map(|n| n.to_string()),
        "[a-z{}0-9 ']{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("'{0}{1}{{}}'".to_owned()),
        prop_oneof![Just("a"), Just("B"), Just("ctx"), Just("n"), Just("nope")]
            .prop_map(str::to_owned),
    ]
}

const FUNCTIONS: &[&str] = &[
    "contains",
    "startsWith",
    "endsWith",
    "format",
    "join",
    "toJSON",
    "fromJSON",
    "case",
    "success",
    "always",
    "cancelled",
    "failure",
    "hashFiles",
    "unknown",
];

const OPERATORS: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "&&", "||"];

/// Syntactically valid expressions (names and arities may still be wrong).
fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("!{e}")),
            inner.clone().prop_map(|e| format!("({e})")),
            (
                inner.clone(),
                prop::sample::select(OPERATORS),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
            (inner.clone(), "[a-zA-Z_][a-z0-9_-]{0,4}").prop_map(|(e, p)| format!("({e}).{p}")),
            inner.clone().prop_map(|e| format!("({e})[*]")),
            inner.clone().prop_map(|e| format!("({e}).*")),
            (inner.clone(), inner.clone()).prop_map(|(e, i)| format!("({e})[{i}]")),
            (
                prop::sample::select(FUNCTIONS),
                prop::collection::vec(inner, 0..4)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
        ]
    })
}

/// A valid expression with one random character inserted, removed or replaced.
fn near_valid() -> impl Strategy<Value = String> {
    let edit_chars = prop::sample::select(vec![
        '(', ')', '[', ']', '.', ',', '*', '\'', '!', '=', '<', '&', '|', ' ', '1', 'x', '{', '}',
        '-', 'é', '😊',
    ]);
    (
        expression(),
        any::<prop::sample::Index>(),
        0..3u8,
        edit_chars,
    )
        .prop_map(|(source, at, edit, c)| {
            let mut chars: Vec<char> = source.chars().collect();
            let i = at.index(chars.len() + 1);
            match edit {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        check(&source);
    }

    #[test]
    fn expression_alphabet_never_panics(source in "[a-c0-9 ().,\\[\\]*'!=<>&|{}_x-]{0,40}") {
        check(&source);
    }

    #[test]
    fn generated_expressions_never_panic(source in expression()) {
        check(&source);
    }

    #[test]
    fn near_valid_expressions_never_panic(source in near_valid()) {
        check(&source);
    }
}

#[test]
fn the_generator_produces_valid_expressions() {
    // Guards against a generator that only ever yields errors (which would make the properties
    // above weak): a fixed sample must contain successful evaluations.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let contexts = contexts();
    let ctx = EvalContext::new(&contexts);
    let mut runner = TestRunner::deterministic();
    let strategy = expression();
    let ok = (0..200)
        .filter(|_| {
            let source = strategy
                .new_tree(&mut runner)
                .expect("a generated value")
                .current();
            evaluate(&source, &ctx).is_ok()
        })
        .count();
    assert!(ok >= 20, "only {ok} of 200 generated expressions evaluated");
}
