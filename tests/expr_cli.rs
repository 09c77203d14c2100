//! `ghrunner-vm expr` through the built binary: result and error lines, exit codes, contexts
//! files, and `--batch` JSON lines (including malformed lines).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value as Json, json};

fn ghrunner() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"));
    command.env("GHRUNNER_VM_LOG", "error");
    command
}

fn run(args: &[&str]) -> Output {
    ghrunner()
        .arg("expr")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout_json(output: &Output) -> Json {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {text:?}"))
}

#[test]
fn prints_the_result_kind_and_value() {
    let output = run(&["format('{0}-{1}', 1.50, true) == '1.5-TRUE'"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_json(&output),
        json!({"kind": "Boolean", "value": true})
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"kind\": \"Boolean\", \"value\": true}\n"
    );
}

#[test]
fn reads_contexts_from_a_file_case_insensitively() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("contexts.json");
    std::fs::write(
        &path,
        r#"{"github": {"Event": {"labels": [{"name": "bug"}, {"name": "docs"}]}}}"#,
    )
    .expect("write contexts");
    let output = run(&[
        "--contexts",
        path.to_str().expect("utf-8 path"),
        "join(GITHUB.event.LABELS.*.name, ' ')",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_json(&output),
        json!({"kind": "String", "value": "bug docs"})
    );
}

#[test]
fn errors_print_an_err_line_and_exit_non_zero() {
    let output = run(&["1 =2"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let got = stdout_json(&output);
    assert_eq!(got["err"]["kind"], "lexing");
    assert_eq!(
        got["err"]["value"],
        "Unexpected symbol: '=2'. Located at position 3 within expression: 1 =2"
    );

    let output = run(&["success()"]);
    assert_eq!(output.status.code(), Some(1));
    let got = stdout_json(&output);
    assert_eq!(got["err"]["kind"], "evaluation");
    assert!(
        got["err"]["value"]
            .as_str()
            .is_some_and(|m| m.contains("not allowed here")),
        "{got}"
    );
}

#[test]
fn a_bad_contexts_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("contexts.json");
    std::fs::write(&path, "[1, 2]").expect("write contexts");
    let output = run(&["--contexts", path.to_str().expect("utf-8 path"), "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("contexts must be a JSON object"),
        "{stderr}"
    );
}

#[test]
fn batch_answers_every_line_in_order() {
    let input = [
        r#"{"expr": "a.b", "contexts": {"A": {"B": 3}}}"#,
        r#"{"expr": "fromJSON('[1, 2]')"}"#,
        "this is not json",
        r#"{"expr": "nope"}"#,
        r#"{"expr": "1 / 0"}"#,
    ]
    .join("\n");
    let mut child = ghrunner()
        .args(["expr", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("the binary finishes");
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Json> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], json!({"kind": "Number", "value": 3}));
    assert_eq!(lines[1], json!({"kind": "Array", "value": [1, 2]}));
    assert_eq!(lines[2]["err"]["kind"], "input");
    assert!(
        lines[2]["err"]["value"]
            .as_str()
            .is_some_and(|m| m.starts_with("line 3:")),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["err"]["kind"], "parsing");
    assert_eq!(lines[4]["err"]["kind"], "lexing");
}

#[test]
fn an_expression_may_start_with_a_hyphen() {
    let output = run(&["-Infinity"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_json(&output),
        json!({"kind": "Number", "value": "-Infinity"})
    );
    let output = run(&["-1 < 0"]);
    assert_eq!(
        stdout_json(&output),
        json!({"kind": "Boolean", "value": true})
    );
}
