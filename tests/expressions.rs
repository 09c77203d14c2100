//! Conformance of the expression engine against the actions/languageservices corpus
//! (`expressions/*.json`: `{group: [{expr, contexts?, result: {kind, value} | err: {kind, value},
//! options?}]}`).
//!
//! How cases are judged:
//! - results: the kind must match and the value must be equal (numbers numerically, so `1.0`
//!   equals `1`; objects key by key);
//! - errors: the kind (`lexing`, `parsing`, `evaluation`) must match and our message must
//!   *contain* the corpus's text, the rule of the corpus's own harness (its texts are prefixes
//!   such as `Too few parameters supplied: ` or full official messages with the position);
//! - `options.skip: ["typescript"]` marks cases the TypeScript port cannot pass (absolute positions
//!   in multi-line expressions, the memory limit); they describe the official runner, so they run.
//!
//! The corpus is found at `$GHRUNNER_VM_CONFORMANCE_DIR/expressions`, by default
//! `<crate>/../shared/conformance/actions-languageservices/expressions` (or `<crate>/../../shared/…`
//! for a worktree). A missing corpus fails the test. Below 99% passing fails the test.

use std::path::{Path, PathBuf};

use ghrunner_vm::expr::{EvalContext, Object, Value, evaluate};
use serde_json::Value as Json;

/// Share of cases that must pass.
const REQUIRED_PASS_RATE: f64 = 0.99;
const CORPUS_ENV: &str = "GHRUNNER_VM_CONFORMANCE_DIR";
const CORPUS_SUBDIR: &str = "shared/conformance/actions-languageservices";

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CORPUS_ENV) {
        let dir = PathBuf::from(dir).join("expressions");
        assert!(
            dir.is_dir(),
            "expression corpus not found at {} (from ${CORPUS_ENV})",
            dir.display()
        );
        return dir;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("..").join(CORPUS_SUBDIR).join("expressions"),
        manifest
            .join("../..")
            .join(CORPUS_SUBDIR)
            .join("expressions"),
    ];
    candidates
        .iter()
        .find(|dir| dir.is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "expression corpus not found at {} or {}; set ${CORPUS_ENV} to the directory \
                 holding expressions/*.json (actions/languageservices testdata)",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// Deep equality of an expected JSON value and our result.
fn same_value(expected: &Json, got: &Value) -> bool {
    match (expected, got) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(e), Value::Boolean(g)) => e == g,
        (Json::Number(e), Value::Number(g)) => e.as_f64() == Some(*g),
        (Json::String(e), Value::String(g)) => e == g,
        (Json::Array(e), Value::Array(g)) => {
            e.len() == g.len() && e.iter().zip(g).all(|(e, g)| same_value(e, g))
        }
        (Json::Object(e), Value::Object(g)) => {
            e.len() == g.len()
                && e.iter()
                    .zip(g.iter())
                    .all(|((ek, ev), (gk, gv))| ek == gk && same_value(ev, gv))
        }
        _ => false,
    }
}

/// Runs one case; `Err` describes the mismatch.
fn run_case(case: &Json) -> Result<(), String> {
    let expr = case["expr"].as_str().ok_or("case has no string `expr`")?;
    let contexts = match case.get("contexts") {
        Some(json) => match Value::from(json.clone()) {
            Value::Object(object) => object,
            _ => return Err("`contexts` is not an object".to_owned()),
        },
        None => Object::new(),
    };
    let got = evaluate(expr, &EvalContext::new(&contexts));
    if let Some(expected) = case.get("result") {
        let kind = expected["kind"].as_str().unwrap_or("?");
        return match got {
            Ok(value) if value.kind_name() == kind && same_value(&expected["value"], &value) => {
                Ok(())
            }
            Ok(value) => Err(format!(
                "expected {kind} {}, got {} {}",
                expected["value"],
                value.kind_name(),
                value.to_json()
            )),
            Err(error) => Err(format!(
                "expected {kind} {}, got {} error: {}",
                expected["value"],
                error.kind.as_str(),
                error.message
            )),
        };
    }
    let expected = case
        .get("err")
        .ok_or("case has neither `result` nor `err`")?;
    let kind = expected["kind"].as_str().unwrap_or("?");
    let text = expected["value"].as_str().unwrap_or("");
    match got {
        Err(error) if error.kind.as_str() == kind && error.message.contains(text) => Ok(()),
        Err(error) => Err(format!(
            "expected {kind} error containing {text:?}, got {} error: {}",
            error.kind.as_str(),
            error.message
        )),
        Ok(value) => Err(format!(
            "expected {kind} error containing {text:?}, got {} {}",
            value.kind_name(),
            value.to_json()
        )),
    }
}

#[test]
fn expression_corpus_conforms() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let (mut passed, mut total) = (0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable corpus file");
        let groups: serde_json::Map<String, Json> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a JSON object: {e}", file.display()));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        for (group, cases) in &groups {
            for (i, case) in cases.as_array().into_iter().flatten().enumerate() {
                total += 1;
                match run_case(case) {
                    Ok(()) => passed += 1,
                    Err(why) => {
                        println!("FAIL {name} / {group} #{i}: {}\n     {why}", case["expr"])
                    }
                }
            }
        }
    }
    assert!(total > 0, "no cases found in {}", dir.display());
    let rate = passed as f64 / total as f64;
    println!(
        "expression corpus: {passed}/{total} passed ({:.2}%) from {} files in {}",
        rate * 100.0,
        files.len(),
        dir.display()
    );
    assert!(
        rate >= REQUIRED_PASS_RATE,
        "only {passed}/{total} cases passed (need {:.0}%)",
        REQUIRED_PASS_RATE * 100.0
    );
}
