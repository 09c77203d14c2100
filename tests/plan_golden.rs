//! Golden tests of the job planner and script renderer.
//!
//! For every job message in `protocol-fixtures/jobs/*.json` this plans the job for a fixed
//! runner, evaluates each step as the step runtime would at job start (job status `success`,
//! `env` = job env + step env, `github.action` = the step's name) and renders its script. The
//! result (layout, contexts' env exports, secrets, masks, per-step condition, display name,
//! script, argv, env, cwd, or the error) is compared with `tests/golden/<fixture>.json`.
//!
//! Regenerate after an intended change with `GHRUNNER_VM_BLESS=1 cargo test --test plan_golden`
//! and review the diff. Fixture names containing `sh-only` are planned for an image without bash.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use ghrunner_vm::expr::{EvalContext, JobStatus, Object, Value};
use ghrunner_vm::job::plan::{JobPlan, RunnerFacts, StepKind, github_runner_env, set_env};
use ghrunner_vm::job::script::{ScriptRequest, render_step};
use ghrunner_vm::job::template::TemplateEvaluator;
use ghrunner_vm::protocol::AgentJobRequestMessage;
use ghrunner_vm::workflow::{CompileRequest, JobIds, compile_job};

/// Environment variable that rewrites the golden files instead of comparing.
const BLESS_VAR: &str = "GHRUNNER_VM_BLESS";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    let dir = root().join("protocol-fixtures/jobs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture folder {} is missing: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the job fixtures in {}",
        dir.display()
    );
    files
}

fn facts(fixture: &Path) -> RunnerFacts {
    let name = fixture
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    RunnerFacts {
        runner_name: "golden-runner".into(),
        os: "Linux".into(),
        arch: RunnerFacts::arch_from_image("x86_64").into(),
        work_dir: "/home/runner/_work".into(),
        has_bash: !name.contains("sh-only"),
        guest: None,
    }
}

fn pairs(entries: &[(String, String)]) -> Json {
    Json::Array(entries.iter().map(|(k, v)| json!([k, v])).collect())
}

fn with_env(contexts: &Object, env: &[(String, String)], action: &str) -> Object {
    let mut contexts = contexts.clone();
    let mut env_object = Object::new_case_sensitive();
    for (k, v) in env {
        env_object.insert(k.clone(), Value::from(v.as_str()));
    }
    contexts.insert("env", Value::Object(env_object));
    if let Some(Value::Object(github)) = contexts.get_mut("github") {
        github.insert("action", Value::from(action));
    }
    contexts
}

/// Evaluates and renders one step as the runtime would at job start; errors become text.
fn step_report(
    plan: &JobPlan,
    index: usize,
    job_env: &[(String, String)],
    defaults: &ghrunner_vm::job::plan::RunDefaults,
) -> Json {
    let step = &plan.steps[index];
    let base = with_env(&plan.contexts, job_env, &step.name);
    let ctx = EvalContext {
        contexts: &base,
        job_status: Some(JobStatus::Success),
        hash_files: None,
    };
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let mut report = json!({
        "number": step.number,
        "id": step.id,
        "name": step.name,
        "context_name": step.context_name,
        "records_outputs": step.records_outputs(),
        "display_name": step.display_name(Some(&evaluator)),
        "condition": step.condition,
        "condition_result": match evaluator.evaluate_condition(&step.condition) {
            Ok(b) => json!(b),
            Err(e) => json!(format!("error: {}", e.message)),
        },
        "continue_on_error": step.continue_on_error.as_ref().map(|t| match evaluator.evaluate_bool(t) {
            Ok(b) => json!(b),
            Err(e) => json!(format!("error: {}", e.user_message())),
        }),
        "timeout_minutes": step.timeout_minutes.as_ref().map(|t| match evaluator.evaluate_number(t) {
            Ok(n) => json!(n),
            Err(e) => json!(format!("error: {}", e.user_message())),
        }),
    });
    let mut env = job_env.to_vec();
    if let Some(token) = &step.env {
        match evaluator.evaluate_string_map(token) {
            Ok(step_env) => step_env
                .into_iter()
                .for_each(|(k, v)| set_env(&mut env, k, v)),
            Err(e) => {
                report["error"] = json!(e.user_message());
                return report;
            }
        }
    }
    let inputs = match &step.kind {
        StepKind::Unrunnable { reason } => {
            report["error"] = json!(reason);
            return report;
        }
        StepKind::Action(action) => {
            report["error"] = json!(ghrunner_vm::job::runtime::action_not_supported(action));
            return report;
        }
        StepKind::Script(inputs) => inputs,
    };
    let contexts = with_env(&plan.contexts, &env, &step.name);
    let ctx = EvalContext {
        contexts: &contexts,
        job_status: Some(JobStatus::Success),
        hash_files: None,
    };
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let text = |t: &Option<ghrunner_vm::protocol::TemplateToken>| {
        t.as_ref().map(|t| evaluator.evaluate_string(t)).transpose()
    };
    let evaluated = evaluator
        .evaluate_string(&inputs.script)
        .and_then(|script| {
            Ok((
                script,
                text(&inputs.shell)?,
                text(&inputs.working_directory)?,
            ))
        });
    let (script, shell, dir) = match evaluated {
        Ok(v) => v,
        Err(e) => {
            report["error"] = json!(e.user_message());
            return report;
        }
    };
    let request = ScriptRequest {
        script: &script,
        shell: shell.as_deref(),
        working_directory: dir.as_deref(),
        defaults,
        env: &env,
        path_prepends: &[],
        guest_path: None,
        contexts: &contexts,
        // Deterministic: the step id names the script file.
        script_id: step.id,
    };
    match render_step(plan, &request) {
        Ok(rendered) => {
            report["rendered"] = json!({
                "script_path": rendered.script_path,
                "script": rendered.script,
                "argv": rendered.argv,
                "cwd": rendered.cwd,
                "env": pairs(&rendered.env),
            });
        }
        Err(e) => report["error"] = json!(e.to_string()),
    }
    report
}

fn report(fixture: &Path) -> Json {
    let text = std::fs::read_to_string(fixture).expect("fixture readable");
    let message = AgentJobRequestMessage::from_json_str(&text)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", fixture.display()));
    report_message(&message, &facts(fixture))
}

fn report_message(message: &AgentJobRequestMessage, facts: &RunnerFacts) -> Json {
    let plan = match JobPlan::new(message, facts) {
        Ok(plan) => plan,
        Err(e) => return json!({ "plan_error": e.to_string() }),
    };
    let ctx = EvalContext {
        contexts: &plan.contexts,
        job_status: Some(JobStatus::Success),
        hash_files: None,
    };
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let job_env = plan.evaluate_job_env(&evaluator);
    let defaults = plan.evaluate_run_defaults(&evaluator).unwrap_or_default();
    let job_env_json = match &job_env {
        Ok(env) => pairs(env),
        Err(e) => json!(format!("error: {}", e.user_message())),
    };
    let job_env = job_env.unwrap_or_default();
    let steps: Vec<Json> = (0..plan.steps.len())
        .map(|i| step_report(&plan, i, &job_env, &defaults))
        .collect();
    json!({
        "job": {"id": plan.job_id, "name": plan.job_name, "display_name": plan.job_display_name,
                "ignored_steps": plan.ignored_steps},
        "layout": plan.layout,
        "layout_directories": plan.layout.directories(),
        "job_env": job_env_json,
        "run_defaults": defaults,
        "secrets": pairs(&plan.secrets),
        "mask_values": plan.mask_values,
        "mask_regexes": plan.mask_regexes,
        "step_debug": plan.step_debug,
        "runner_debug": plan.runner_debug,
        "exported_env": pairs(&github_runner_env(&plan.contexts)),
        "event_json": plan.event_json,
        "steps": steps,
    })
}

/// Compares `actual` with the golden file `name` (or rewrites it when blessing); returns a
/// mismatch description.
fn check_golden(name: &str, actual: &Json) -> Option<String> {
    let golden = root().join("tests/golden").join(format!("{name}.json"));
    let actual = serde_json::to_string_pretty(actual).expect("report serializes") + "\n";
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::create_dir_all(golden.parent().expect("golden folder")).expect("golden folder");
        std::fs::write(&golden, &actual).expect("golden written");
        return None;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "golden {} is missing; run with {BLESS_VAR}=1 and review it",
            golden.display()
        )
    });
    if expected == actual {
        return None;
    }
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(expected.lines().count().min(actual.lines().count()))
        + 1;
    Some(format!(
        "{} differs at line {line}:\n  golden: {}\n  actual: {}",
        golden.display(),
        expected.lines().nth(line - 1).unwrap_or("<end>"),
        actual.lines().nth(line - 1).unwrap_or("<end>")
    ))
}

#[test]
fn job_fixtures_round_trip_through_serialization() {
    for fixture in fixtures() {
        let text = std::fs::read_to_string(&fixture).expect("fixture readable");
        let message = AgentJobRequestMessage::from_json_str(&text)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", fixture.display()));
        let written = serde_json::to_string(&message).expect("encodes");
        let again = AgentJobRequestMessage::from_json_str(&written).expect("re-decodes");
        assert_eq!(
            message,
            again,
            "{} changes on a round trip",
            fixture.display()
        );
    }
}

#[test]
fn job_fixtures_pass_the_listeners_validation_given_a_timeline() {
    for fixture in fixtures() {
        let text = std::fs::read_to_string(&fixture).expect("fixture readable");
        let mut json: Json = serde_json::from_str(&text).expect("fixture is JSON");
        // The planner's fixtures leave out the timeline (reporting needs it, planning does not);
        // without one the listener completes the job as failed, naming the field.
        let object = json.as_object_mut().expect("an object");
        if !object.keys().any(|k| k.eq_ignore_ascii_case("timeline")) {
            let err = AgentJobRequestMessage::from_delivered(&Json::Object(object.clone()))
                .expect_err("no timeline");
            assert_eq!(err.field(), Some("timeline"), "{}", fixture.display());
            let id = "00000000-0000-0000-0000-0000000000a3";
            object.insert("timeline".into(), json!({ "id": id }));
        }
        let typed = AgentJobRequestMessage::from_delivered(&json)
            .unwrap_or_else(|e| panic!("{} does not validate: {e}", fixture.display()));
        let decoded = AgentJobRequestMessage::from_json_str(&text).expect("decodes");
        assert_eq!(typed.steps, decoded.steps, "{}", fixture.display());
    }
}

#[test]
fn plans_match_the_reviewed_goldens() {
    let mismatches: Vec<String> = fixtures()
        .iter()
        .filter_map(|fixture| {
            let stem = fixture
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("fixture");
            check_golden(stem, &report(fixture))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{}\n(rerun with {BLESS_VAR}=1 if the change is intended, and review the diff)",
        mismatches.join("\n")
    );
}

/// The demo workflow (`examples/hello.yml`) compiled by the local service's compiler, planned
/// and rendered: the whole YAML → message → plan → script path.
#[test]
fn demo_workflow_compiles_plans_and_matches_its_golden() {
    let path = root().join("examples/hello.yml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    let github = json!({
        "repository": "octo-org/hello", "repository_owner": "octo-org", "run_id": "1",
        "run_number": "1", "sha": "0000000000000000000000000000000000000001",
        "ref": "refs/heads/main", "event_name": "push", "workflow": "hello",
        "server_url": "http://127.0.0.1:8080", "api_url": "http://127.0.0.1:8080/api/v3",
        "event": {"ref": "refs/heads/main"}
    });
    let secrets = vec![("DEMO_TOKEN".to_owned(), "demo-s3cret-value".to_owned())];
    let compiled = compile_job(&CompileRequest {
        yaml: &yaml,
        file_name: ".github/workflows/hello.yml",
        job: "hello",
        github: &github,
        secrets: &secrets,
        vars: &[],
        github_token: "ghs_LOCALFAKE",
        service_url: "http://127.0.0.1:8080/",
        access_token: "eyJhbGciOiJub25lIn0.eyJsb2NhbCI6dHJ1ZX0.",
        ids: JobIds {
            plan_id: uuid::Uuid::from_u128(0x11),
            timeline_id: uuid::Uuid::from_u128(0x22),
            job_id: uuid::Uuid::from_u128(0x33),
            request_id: 1,
        },
    })
    .unwrap_or_else(|e| panic!("the demo workflow does not compile: {e}"));
    assert_eq!(compiled.runs_on, ["self-hosted", "tiny"]);
    let facts = RunnerFacts {
        runner_name: "golden-runner".into(),
        os: "Linux".into(),
        arch: "X64".into(),
        work_dir: "/work".into(),
        has_bash: false,
        guest: None,
    };
    let report = json!({
        "runs_on": compiled.runs_on,
        "message": compiled.message,
        "plan": report_message(&compiled.message, &facts),
    });
    if let Some(mismatch) = check_golden("workflow-hello", &report) {
        panic!(
            "{mismatch}\n(rerun with {BLESS_VAR}=1 if the change is intended, and review the diff)"
        );
    }
}

#[test]
fn pascal_case_fixture_plans_like_its_content() {
    let fixture = root().join("protocol-fixtures/jobs/sh-only-pascal.json");
    let report = report(&fixture);
    assert_eq!(
        report["layout"]["workspace"],
        "/home/runner/_work/portable/portable"
    );
    assert_eq!(
        report["steps"][0]["rendered"]["argv"][0], "sh",
        "no bash in this image"
    );
    assert_eq!(report["steps"][0]["display_name"], "Run set -u");
}
