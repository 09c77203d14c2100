use serde_json::json;

use super::*;
use crate::expr::EvalContext;

/// A realistic message (constructed; values fake) shared with the script tests.
pub(crate) fn sample_message() -> AgentJobRequestMessage {
    serde_json::from_value(json!({
        "messageType": "PipelineAgentJobRequest",
        "plan": {"planId": "6f1a0000-0000-0000-0000-000000000001", "planType": "actions", "version": 1},
        "timeline": {"id": "2b3c0000-0000-0000-0000-000000000002"},
        "jobId": "9d5e0000-0000-0000-0000-000000000003",
        "jobDisplayName": "build", "jobName": "build", "requestId": 7,
        "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "https://pipelines.example/x/",
            "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "eyJjob.token"}},
            "data": {"GenerateIdTokenUrl": "https://id.example/token"}}]},
        "variables": {
            "system.github.token": {"value": "ghs_secret", "isSecret": true},
            "system.accessToken": {"value": "eyJjob.token", "isSecret": true},
            "system.github.job": {"value": "build"},
            "DEPLOY_KEY": {"value": "line1\n  line2  \n", "isSecret": true},
            "ACTIONS_STEP_DEBUG": {"value": "True", "isSecret": true},
            "plain": {"value": "p"}
        },
        "mask": [{"type": "regex", "value": "tok_[a-z]+"}],
        "contextData": {
            "github": {"t": 2, "d": [
                {"k": "repository", "v": "octo/hello"}, {"k": "sha", "v": "abc123"},
                {"k": "ref_protected", "v": false}, {"k": "run_id", "v": "42"},
                {"k": "event", "v": {"t": 2, "d": [{"k": "number", "v": 5}]}}]},
            "matrix": {"t": 2, "d": [{"k": "py", "v": "3.12"}]},
            "vars": {"t": 2}
        },
        "fileTable": [".github/workflows/ci.yml"],
        "environmentVariables": [
            {"type": 2, "map": [{"Key": "LEVEL", "Value": "workflow"}, {"Key": "KEEP", "Value": "1"}]},
            {"type": 2, "map": [{"Key": "LEVEL", "Value": "job"}]}],
        "defaults": [
            {"type": 2, "map": [{"Key": "run", "Value": {"type": 2, "map": [
                {"Key": "shell", "Value": "sh"}, {"Key": "working-directory", "Value": "old"}]}}]},
            {"type": 2, "map": [{"Key": "run", "Value": {"type": 2, "map": [
                {"Key": "shell", "Value": "bash"}, {"Key": "working-directory", "Value": ""}]}}]}],
        "jobOutputs": {"type": 2, "map": [{"Key": "a", "Value": "x"}, {"Key": "empty", "Value": ""}]},
        "steps": [
            {"type": "action", "id": "d6a50000-0000-0000-0000-000000000004", "name": "first",
             "contextName": "first", "reference": {"type": "script"},
             "inputs": {"type": 2, "map": [{"Key": "script", "Value": "\n  echo hi\necho two\n"}]}},
            {"type": 4, "id": "d6a50000-0000-0000-0000-000000000005", "displayName": "Named",
             "reference": {"type": 3}, "condition": "always()",
             "environment": {"type": 2, "map": [{"Key": "A", "Value": "1"}]},
             "continueOnError": true, "timeoutInMinutes": 5,
             "inputs": {"type": 2, "map": [{"Key": "Script", "Value": "true"},
                {"Key": "shell", "Value": "python"}, {"Key": "WorkingDirectory", "Value": "sub"}]}},
            {"type": "action", "id": "d6a50000-0000-0000-0000-000000000006",
             "reference": {"type": "repository", "name": "actions/checkout", "ref": "v4", "repositoryType": "GitHub"}},
            {"type": 9, "futureField": "a step kind this runner does not know"}
        ]
    }))
    .expect("sample message decodes")
}

pub(crate) fn facts() -> RunnerFacts {
    RunnerFacts {
        runner_name: "vm-runner".into(),
        os: "Linux".into(),
        arch: RunnerFacts::arch_from_image("x86_64").into(),
        work_dir: "/work".into(),
        has_bash: true,
        guest: None,
    }
}

fn plan() -> JobPlan {
    JobPlan::new(&sample_message(), &facts()).expect("plans")
}

fn context_str<'a>(plan: &'a JobPlan, context: &str, key: &str) -> Option<&'a str> {
    match plan.contexts.get(context)? {
        Value::Object(o) => match o.get(key)? {
            Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn layout_follows_the_official_folders() {
    let layout = WorkspaceLayout::new("/work/", "octo/hello");
    assert_eq!(layout.temp, "/work/_temp");
    assert_eq!(layout.file_commands, "/work/_temp/_runner_file_commands");
    assert_eq!(layout.event_path, "/work/_temp/_github_workflow/event.json");
    assert_eq!(layout.tool_cache, "/work/_tool");
    assert_eq!(layout.runner_workspace, "/work/hello");
    assert_eq!(layout.workspace, "/work/hello/hello");
    assert_eq!(WorkspaceLayout::new("/", "o/r").workspace, "/r/r");
}

#[test]
fn steps_get_names_conditions_and_inputs() {
    let plan = plan();
    assert_eq!(plan.steps.len(), 3);
    assert_eq!(plan.ignored_steps, 1);
    let first = &plan.steps[0];
    assert_eq!(
        (first.number, first.name.as_str(), first.condition.as_str()),
        (1, "first", "success()")
    );
    assert_eq!(first.display_name(None), "Run echo hi");
    let StepKind::Script(inputs) = &first.kind else {
        panic!("first step is a script")
    };
    assert_eq!(inputs.script.as_str(), Some("\n  echo hi\necho two\n"));
    assert!(inputs.shell.is_none());

    let second = &plan.steps[1];
    assert_eq!(second.display_name(None), "Named");
    assert_eq!(second.condition, "always()");
    assert!(
        second.context_name.starts_with("__run"),
        "generated: {}",
        second.context_name
    );
    assert!(!second.records_outputs());
    let StepKind::Script(inputs) = &second.kind else {
        panic!("second step is a script")
    };
    assert_eq!(
        inputs.shell.as_ref().and_then(TemplateToken::as_str),
        Some("python")
    );
    assert_eq!(
        inputs
            .working_directory
            .as_ref()
            .and_then(TemplateToken::as_str),
        Some("sub")
    );
    assert_eq!(second.timeout_minutes, Some(TokenKind::Number(5.0).into()));

    let third = &plan.steps[2];
    assert_ne!(
        third.context_name, second.context_name,
        "generated names are unique"
    );
    assert_eq!(third.display_name(None), "Run actions/checkout@v4");
    let StepKind::Action(action) = &third.kind else {
        panic!("third step uses an action: {:?}", third.kind)
    };
    assert_eq!(
        action,
        &ActionReference::Repository {
            name: "actions/checkout".into(),
            git_ref: "v4".into(),
            path: String::new(),
            repository_type: "GitHub".into(),
        }
    );
    assert!(
        crate::job::runtime::action_not_supported(action).contains("only run: steps"),
        "the runtime refuses it"
    );
}

#[test]
fn contexts_carry_github_runner_secrets_and_service_contexts() {
    let plan = plan();
    assert_eq!(context_str(&plan, "github", "token"), Some("ghs_secret"));
    assert_eq!(context_str(&plan, "github", "job"), Some("build"));
    assert_eq!(
        context_str(&plan, "github", "workspace"),
        Some("/work/hello/hello")
    );
    assert_eq!(
        context_str(&plan, "github", "event_path"),
        Some("/work/_temp/_github_workflow/event.json")
    );
    assert_eq!(context_str(&plan, "runner", "os"), Some("Linux"));
    assert_eq!(context_str(&plan, "runner", "arch"), Some("X64"));
    assert_eq!(context_str(&plan, "runner", "name"), Some("vm-runner"));
    assert_eq!(
        context_str(&plan, "runner", "workspace"),
        Some("/work/hello")
    );
    assert_eq!(
        context_str(&plan, "runner", "environment"),
        Some("self-hosted")
    );
    assert_eq!(context_str(&plan, "runner", "debug"), Some("1"));
    assert_eq!(context_str(&plan, "matrix", "PY"), Some("3.12"));
    assert_eq!(context_str(&plan, "job", "status"), Some("success"));
    assert_eq!(plan.contexts.get("needs"), Some(&Value::Null));
    let Some(Value::Object(env)) = plan.contexts.get("env") else {
        panic!("env context")
    };
    assert!(env.is_case_sensitive());
    assert!(plan.step_debug && !plan.runner_debug);

    let names: Vec<_> = plan.secrets.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["DEPLOY_KEY", "ACTIONS_STEP_DEBUG", "GITHUB_TOKEN"]);
    assert_eq!(
        context_str(&plan, "secrets", "github_token"),
        Some("ghs_secret")
    );
    assert_eq!(plan.event_json, "{\n  \"number\": 5\n}");
    assert_eq!(
        plan.id_token_url.as_deref(),
        Some("https://id.example/token")
    );
    assert_eq!(plan.id_token_request_token.as_deref(), Some("eyJjob.token"));
}

#[test]
fn mask_values_cover_secrets_lines_hints_endpoints_and_basic_auth() {
    let plan = plan();
    for value in [
        "ghs_secret",
        "eyJjob.token",
        "line1\n  line2",
        "line1",
        "line2",
        "tok_[a-z]+",
        "eC1hY2Nlc3MtdG9rZW46Z2hzX3NlY3JldA==",
    ] {
        assert!(
            plan.mask_values.iter().any(|v| v == value),
            "{value:?} in {:?}",
            plan.mask_values
        );
    }
    assert!(
        !plan.mask_values.iter().any(|v| v == "True"),
        "debug switches are not masked"
    );
    assert_eq!(plan.mask_regexes, ["tok_[a-z]+"]);
}

#[test]
fn job_env_defaults_and_outputs_evaluate_with_official_merging() {
    let plan = plan();
    let ctx = EvalContext::new(&plan.contexts);
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let env = plan.evaluate_job_env(&evaluator).expect("env");
    assert_eq!(
        env,
        vec![
            ("LEVEL".to_owned(), "job".to_owned()),
            ("KEEP".to_owned(), "1".to_owned())
        ]
    );
    let defaults = plan.evaluate_run_defaults(&evaluator).expect("defaults");
    assert_eq!(
        defaults,
        RunDefaults {
            shell: Some("bash".into()),
            working_directory: None
        }
    );
    let outputs = plan.evaluate_job_outputs(&evaluator).expect("outputs");
    assert_eq!(outputs, vec![("a".to_owned(), "x".to_owned())]);
}

#[test]
fn github_and_runner_env_exports_strings_and_booleans() {
    let plan = plan();
    let env = github_runner_env(&plan.contexts);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("GITHUB_REPOSITORY"), Some("octo/hello"));
    assert_eq!(get("GITHUB_REF_PROTECTED"), Some("false"));
    assert_eq!(get("GITHUB_WORKSPACE"), Some("/work/hello/hello"));
    assert_eq!(get("GITHUB_TOKEN"), None, "token is never exported");
    assert_eq!(get("GITHUB_EVENT"), None);
    assert_eq!(get("RUNNER_TEMP"), Some("/work/_temp"));
    assert_eq!(get("RUNNER_DEBUG"), Some("1"));
    let first_runner = env.iter().position(|(k, _)| k.starts_with("RUNNER_"));
    let last_github = env.iter().rposition(|(k, _)| k.starts_with("GITHUB_"));
    assert!(last_github < first_runner);
}

#[test]
fn bad_messages_are_plan_errors() {
    let mut message = sample_message();
    message.context_data.retain(|(k, _)| k != "github");
    assert_eq!(
        JobPlan::new(&message, &facts()),
        Err(PlanError::NoRepository)
    );

    let mut message = sample_message();
    message.context_data[0].1 = crate::protocol::PipelineContextData::String("x".into());
    assert!(matches!(
        JobPlan::new(&message, &facts()),
        Err(PlanError::BadContext { name: "github", .. })
    ));

    let mut message = sample_message();
    message.job_container = Some(TemplateToken::string("ubuntu:24.04"));
    assert_eq!(
        JobPlan::new(&message, &facts()),
        Err(PlanError::Unsupported {
            feature: "job containers"
        })
    );
    message.job_container = Some(TemplateToken::string(""));
    assert!(
        JobPlan::new(&message, &facts()).is_ok(),
        "an empty container is none"
    );

    let relative = RunnerFacts {
        work_dir: "work".into(),
        ..facts()
    };
    assert!(matches!(
        JobPlan::new(&sample_message(), &relative),
        Err(PlanError::BadWorkDir { .. })
    ));
}

#[test]
fn display_names_follow_the_runner_rules() {
    let step = |display_name: DisplayName| PlannedStep {
        id: Uuid::nil(),
        number: 1,
        name: "fallback".into(),
        context_name: "fallback".into(),
        display_name,
        condition: DEFAULT_CONDITION.into(),
        env: None,
        continue_on_error: None,
        timeout_minutes: None,
        kind: StepKind::Unrunnable {
            reason: String::new(),
        },
    };
    let token = |t: TemplateToken, prefix| DisplayName::Token { token: t, prefix };
    assert_eq!(
        step(token(
            TemplateToken::string("  \r\n\tmake all\nmore"),
            "Run "
        ))
        .display_name(None),
        "Run make all"
    );
    assert_eq!(
        step(token(TemplateToken::string("\n \n"), "Run ")).display_name(None),
        "run"
    );
    // Without an evaluator the expression is shown as the user wrote it.
    assert_eq!(
        step(token(
            TemplateToken::expression("format('echo {0}', github.sha)"),
            "Run "
        ))
        .display_name(None),
        "Run echo ${{ github.sha }}"
    );
}

#[test]
fn display_names_and_job_env_evaluate_expressions_against_the_plan_contexts() {
    let mut message = sample_message();
    message
        .environment_variables
        .push(TemplateToken::mapping(vec![(
            TemplateToken::string("TOKEN_LEN"),
            TemplateToken::expression("format('{0}-{1}', matrix.py, secrets.GITHUB_TOKEN)"),
        )]));
    let plan = JobPlan::new(&message, &facts()).expect("plans");
    let ctx = EvalContext::new(&plan.contexts);
    let evaluator = TemplateEvaluator::new(&ctx, &plan.file_table);
    let env = plan.evaluate_job_env(&evaluator).expect("env");
    assert_eq!(
        env.last(),
        Some(&("TOKEN_LEN".to_owned(), "3.12-ghs_secret".to_owned()))
    );

    let mut step = plan.steps[0].clone();
    step.display_name = DisplayName::Token {
        token: TemplateToken::expression("format('test {0}\nsecond', matrix.py)"),
        prefix: RUN_DISPLAY_PREFIX,
    };
    assert_eq!(step.display_name(Some(&evaluator)), "Run test 3.12");
    step.display_name = DisplayName::Token {
        token: TemplateToken::expression("unknown_ctx.x"),
        prefix: "",
    };
    assert_eq!(
        step.display_name(Some(&evaluator)),
        "${{ unknown_ctx.x }}",
        "errors show the text"
    );
}

#[test]
fn uses_steps_are_planned_as_the_action_they_name() {
    let reference = |json: serde_json::Value| -> crate::protocol::step::StepReference {
        serde_json::from_value(json).unwrap()
    };
    let local = reference(
        json!({"type": "repository", "repositoryType": "self", "path": "./.github/actions/hello"}),
    );
    let action = ActionReference::of(&local).unwrap();
    assert_eq!(
        action,
        ActionReference::Local {
            path: "./.github/actions/hello".into()
        }
    );
    assert_eq!(action.to_string(), "./.github/actions/hello");
    let docker = reference(json!({"type": "containerRegistry", "image": "alpine:3.20"}));
    let action = ActionReference::of(&docker).unwrap();
    assert_eq!(action.to_string(), "docker://alpine:3.20");
    let nested = reference(json!({"type": "repository", "repositoryType": "GitHub",
        "name": "octo/tools", "ref": "main", "path": "lint"}));
    let action = ActionReference::of(&nested).unwrap();
    assert!(matches!(&action, ActionReference::Repository { path, .. } if path == "lint"));
    assert_eq!(action.to_string(), "octo/tools/lint@main");
    assert_eq!(
        crate::job::runtime::action_not_supported(&action),
        "only run: steps are supported; this step uses octo/tools/lint@main"
    );
    let script = reference(json!({"type": "script"}));
    assert_eq!(ActionReference::of(&script), None);
}
