use serde_json::json;

use uuid::Uuid;

use super::*;
use crate::expr::{EvalContext, Object, Value};
use crate::job::plan::{JobPlan, RunnerFacts, StepKind};
use crate::job::script::{ScriptRequest, render_step};
use crate::job::template::TemplateEvaluator;
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::step::ActionStep;
use crate::protocol::template_token::{TemplateToken, TokenKind};

const WORKFLOW: &str = r#"name: CI
on: push
env:
  LEVEL: workflow
  SHA: ${{ github.sha }}
defaults:
  run:
    shell: bash
jobs:
  build:
    name: Build it
    runs-on: [self-hosted, tiny]
    env:
      LEVEL: job
    outputs:
      version: ${{ steps.ver.outputs.v }}
    steps:
      - run: echo "hello ${{ github.repository }}"
      - id: ver
        name: Compute ${{ github.ref }}
        if: github.event_name == 'push'
        run: |
          echo "v=1.2" >> "$GITHUB_OUTPUT"
        shell: sh
        working-directory: sub
        env:
          TOKEN: ${{ secrets.API_KEY }}
        continue-on-error: true
        timeout-minutes: 5
      - if: ${{ always() }}
        run: echo done
  other:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
"#;

fn github() -> serde_json::Value {
    json!({"repository": "octo/hello", "run_id": "42", "sha": "abc123", "ref": "refs/heads/main",
           "event_name": "push", "workflow": "CI", "server_url": "http://127.0.0.1:1",
           "api_url": "http://127.0.0.1:1/api/v3", "event": {"after": "abc123"}})
}

fn compile(yaml: &str, job: &str) -> Result<CompiledJob, WorkflowError> {
    let github = github();
    let secrets = vec![("API_KEY".to_owned(), "k3y".to_owned())];
    compile_job(&CompileRequest {
        yaml,
        file_name: ".github/workflows/ci.yml",
        job,
        github: &github,
        secrets: &secrets,
        vars: &[("V".to_owned(), "1".to_owned())],
        github_token: "ghs_local",
        service_url: "http://127.0.0.1:1/",
        access_token: "eyJ.local",
        ids: JobIds {
            plan_id: Uuid::from_u128(1),
            timeline_id: Uuid::from_u128(2),
            job_id: Uuid::from_u128(3),
            request_id: 4,
        },
    })
}

fn step(job: &CompiledJob, i: usize) -> &ActionStep {
    job.message.steps[i].as_action().expect("action step")
}

#[test]
fn lists_jobs_in_order() {
    assert_eq!(
        job_ids(WORKFLOW, "ci.yml").expect("jobs"),
        ["build", "other"]
    );
}

#[test]
fn compiles_steps_like_the_service() {
    let job = compile(WORKFLOW, "build").expect("compiles");
    assert_eq!(job.runs_on, ["self-hosted", "tiny"]);
    assert_eq!(job.message.job_display_name, "Build it");
    assert_eq!(job.message.file_table, [".github/workflows/ci.yml"]);
    assert_eq!(job.message.steps.len(), 3);

    let first = step(&job, 0);
    assert_eq!(first.context_name.as_deref(), Some("__run"));
    assert_eq!(first.condition.as_deref(), Some("success()"));
    let script = first
        .inputs
        .as_ref()
        .and_then(|i| i.mapping_get("script"))
        .expect("script");
    assert_eq!(
        script.kind,
        TokenKind::BasicExpression("format('echo \"hello {0}\"', github.repository)".into())
    );
    assert_eq!(
        (script.file, script.line, script.col),
        (Some(1), Some(18), Some(14))
    );

    let second = step(&job, 1);
    assert_eq!(second.context_name.as_deref(), Some("ver"));
    assert_eq!(
        second.condition.as_deref(),
        Some("success() && (github.event_name == 'push')")
    );
    assert_eq!(
        second.display_name_token.as_ref().map(|t| &t.kind),
        Some(&TokenKind::BasicExpression(
            "format('Compute {0}', github.ref)".into()
        ))
    );
    let inputs = second.inputs.as_ref().expect("inputs");
    assert_eq!(
        inputs.mapping_get("script").and_then(TemplateToken::as_str),
        Some("echo \"v=1.2\" >> \"$GITHUB_OUTPUT\"\n")
    );
    assert_eq!(
        inputs.mapping_get("shell").and_then(TemplateToken::as_str),
        Some("sh")
    );
    assert_eq!(
        inputs
            .mapping_get("workingDirectory")
            .and_then(TemplateToken::as_str),
        Some("sub")
    );
    assert_eq!(
        second.continue_on_error.as_ref().map(|t| &t.kind),
        Some(&TokenKind::Boolean(true))
    );
    assert_eq!(
        second.timeout_in_minutes.as_ref().map(|t| &t.kind),
        Some(&TokenKind::Number(5.0))
    );

    assert_eq!(step(&job, 2).condition.as_deref(), Some("always()"));
    assert_eq!(job.message.environment_variables.len(), 2);
    assert_eq!(job.message.defaults.len(), 1);
    assert!(job.message.job_outputs.is_some());
    assert!(
        job.message
            .variables
            .get("API_KEY")
            .is_some_and(|v| v.is_secret)
    );
    assert_eq!(
        job.message.system_connection().map(|c| c.access_token),
        Ok("eyJ.local")
    );
}

#[test]
fn compiled_message_survives_json_and_plans() {
    let job = compile(WORKFLOW, "build").expect("compiles");
    let json = serde_json::to_string(&job.message).expect("serializes");
    let message = AgentJobRequestMessage::from_json_str(&json).expect("parses back");
    assert_eq!(message, job.message);
    let facts = RunnerFacts {
        runner_name: "r".into(),
        os: "Linux".into(),
        arch: "X64".into(),
        work_dir: "/work".into(),
        has_bash: true,
        guest: None,
    };
    let plan = JobPlan::new(&message, &facts).expect("plans");
    assert_eq!(plan.steps.len(), 3);
    assert_eq!(plan.steps[1].context_name, "ver");

    let ctx = EvalContext::new(&plan.contexts);
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let env = plan.evaluate_job_env(&evaluator).expect("job env");
    assert_eq!(
        env,
        [
            ("LEVEL".to_owned(), "job".to_owned()),
            ("SHA".to_owned(), "abc123".to_owned())
        ]
    );
    let defaults = plan.evaluate_run_defaults(&evaluator).expect("defaults");
    assert_eq!(defaults.shell.as_deref(), Some("bash"));
    assert_eq!(
        plan.steps[1].display_name(Some(&evaluator)),
        "Compute refs/heads/main"
    );
    assert_eq!(
        plan.steps[0].display_name(Some(&evaluator)),
        "Run echo \"hello octo/hello\""
    );

    let StepKind::Script(inputs) = &plan.steps[0].kind else {
        panic!("script step")
    };
    let script = evaluator.evaluate_string(&inputs.script).expect("script");
    let step_env = plan.steps[1]
        .env
        .as_ref()
        .map(|e| evaluator.evaluate_string_map(e));
    assert_eq!(
        step_env,
        Some(Ok(vec![("TOKEN".to_owned(), "k3y".to_owned())]))
    );
    let mut contexts: Object = plan.contexts.clone();
    if let Some(Value::Object(github)) = contexts.get_mut("github") {
        github.insert("action", Value::from("__run"));
    }
    let rendered = render_step(
        &plan,
        &ScriptRequest {
            script: &script,
            shell: None,
            working_directory: None,
            defaults: &defaults,
            env: &env,
            path_prepends: &[],
            guest_path: None,
            contexts: &contexts,
            script_id: Uuid::from_u128(9),
        },
    )
    .expect("renders");
    assert_eq!(rendered.script, "echo \"hello octo/hello\"");
    assert_eq!(
        rendered.argv[..6],
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail"]
    );
    assert!(
        rendered
            .env
            .contains(&("GITHUB_ACTION".to_owned(), "__run".to_owned()))
    );
}

#[test]
fn uses_steps_are_refused_with_their_position() {
    let yaml = "jobs:\n  j:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n";
    let err = compile(yaml, "j").expect_err("uses");
    assert_eq!(
        err.to_string(),
        ".github/workflows/ci.yml (Line: 5, Col: 15): only run: steps are supported (this step uses actions/checkout@v4)"
    );
}

#[test]
fn invalid_yaml_and_expressions_report_line_and_column() {
    let err = compile("jobs:\n  j: [unclosed\n", "j").expect_err("bad yaml");
    assert!(
        matches!(&err, WorkflowError::Yaml { location, .. } if location.line.is_some()),
        "{err}"
    );

    let yaml = "jobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.sha\n";
    let err = compile(yaml, "j").expect_err("unclosed expression");
    assert!(err.to_string().contains("(Line: 5, Col: 14)"), "{err}");
    assert!(
        err.to_string().contains("The expression is not closed"),
        "{err}"
    );

    let yaml =
        "jobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo\n        if: nosuch.x == 1\n";
    let err = compile(yaml, "j").expect_err("unknown context");
    let WorkflowError::Expression {
        location,
        expression,
        ..
    } = &err
    else {
        panic!("expression error: {err}")
    };
    assert_eq!((location.line, location.col), (Some(6), Some(13)));
    assert_eq!(expression, "nosuch.x == 1");
}

#[test]
fn structural_mistakes_are_clear_errors() {
    let cases = [
        (
            "jobs:\n  j:\n    runs-on: x\n    steps:\n      - name: x\n",
            "a step needs `run`",
        ),
        (
            "jobs:\n  j:\n    runs-on: x\n    steps:\n      - run: a\n        with: {a: 1}\n",
            "unexpected step key `with`",
        ),
        (
            "jobs:\n  j:\n    runs-on: x\n    strategy: {matrix: {a: [1]}}\n    steps: []\n",
            "`strategy` is not supported",
        ),
        ("jobs:\n  j:\n    steps: []\n", "no `runs-on`"),
        (
            "jobs:\n  j:\n    runs-on: x\n    steps:\n      - {id: a, run: x}\n      - {id: A, run: y}\n",
            "more than once",
        ),
        (
            "jobs:\n  j:\n    runs-on: x\n    steps:\n      - {id: __x, run: x}\n",
            "is invalid",
        ),
        ("- a\n", "must be a mapping"),
        ("name: x\n", "no `jobs`"),
    ];
    for (yaml, expected) in cases {
        let err = compile(yaml, "j").expect_err(yaml);
        assert!(err.to_string().contains(expected), "{yaml:?}: {err}");
    }
    let err = compile(WORKFLOW, "missing").expect_err("no such job");
    assert_eq!(
        err.to_string(),
        "job `missing` is not in the workflow (jobs: build, other)"
    );
}

#[test]
fn conditions_are_normalised_like_the_service() {
    for (condition, expected) in [
        ("", "success()"),
        ("${{ failure() }}", "failure()"),
        ("github.ref == 'x'", "success() && (github.ref == 'x')"),
        (
            "${{ github.ref == 'x' }}",
            "success() && (github.ref == 'x')",
        ),
        ("!cancelled() && true", "!cancelled() && true"),
        (
            "contains(github.ref, 'x') || ALWAYS()",
            "contains(github.ref, 'x') || ALWAYS()",
        ),
    ] {
        assert_eq!(
            normalize_condition(condition).ok().as_deref(),
            Some(expected),
            "{condition:?}"
        );
    }
    assert!(normalize_condition("a ==").is_err());
}
