//! Composite steps: their step shape, references, generated names, conditions and errors.

use super::*;
use crate::protocol::step::{ActionStep, JobStep, StepReference};
use crate::protocol::template_token::TokenKind;

fn steps(body: &str) -> Result<Vec<ActionStep>, ManifestError> {
    let yaml = format!("runs:\n  using: composite\n  steps:\n{body}");
    ActionManifest::parse(&yaml, "octo/composite@v2", "action.yml").map(|m| match m.runs {
        Runs::Composite(c) => c.steps,
        other => panic!("composite: {other:?}"),
    })
}

fn ok(body: &str) -> Vec<ActionStep> {
    steps(body).unwrap_or_else(|e| panic!("{e}"))
}

fn invalid(body: &str) -> String {
    match steps(body) {
        Err(ManifestError::Invalid {
            action, message, ..
        }) => {
            assert_eq!(action, "octo/composite@v2");
            message
        }
        other => panic!("expected an Invalid error for {body:?}, got {other:?}"),
    }
}

fn input<'a>(step: &'a ActionStep, key: &str) -> Option<&'a TokenKind> {
    step.inputs
        .as_ref()
        .and_then(|i| i.mapping_get(key))
        .map(|t| &t.kind)
}

#[test]
fn run_steps_become_script_steps_with_their_inputs() {
    let steps = ok(r#"
    - name: Greet ${{ inputs.who }}
      id: greet
      run: echo "hi ${{ inputs.who }}"
      shell: bash
      working-directory: sub
      env:
        WHO: ${{ inputs.who }}
        N: 1
      continue-on-error: true
"#);
    let [step] = steps.as_slice() else {
        panic!("one step: {steps:?}")
    };
    assert_eq!(step.reference, StepReference::Script);
    assert_eq!(step.context_name.as_deref(), Some("greet"));
    assert_eq!(step.condition.as_deref(), Some("success()"));
    assert!(step.enabled && step.name.is_none() && step.id.is_nil());
    assert_eq!(
        step.display_name_token.as_ref().map(|t| &t.kind),
        Some(&TokenKind::BasicExpression(
            "format('Greet {0}', inputs.who)".into()
        ))
    );
    assert_eq!(
        input(step, "script"),
        Some(&TokenKind::BasicExpression(
            "format('echo \"hi {0}\"', inputs.who)".into()
        ))
    );
    assert_eq!(
        input(step, "shell"),
        Some(&TokenKind::String("bash".into()))
    );
    assert_eq!(
        input(step, "workingDirectory"),
        Some(&TokenKind::String("sub".into()))
    );
    let keys: Vec<_> = step
        .inputs
        .as_ref()
        .and_then(|i| i.as_mapping())
        .map(|pairs| pairs.iter().filter_map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["script", "workingDirectory", "shell"],
        "the official order"
    );
    let env = step.environment.as_ref().expect("env");
    assert_eq!(
        env.mapping_get("N").map(|t| &t.kind),
        Some(&TokenKind::String("1".into()))
    );
    assert_eq!(
        step.continue_on_error.as_ref().map(|t| &t.kind),
        Some(&TokenKind::Boolean(true))
    );
    assert_eq!(step.timeout_in_minutes, None);
}

#[test]
fn uses_steps_name_their_action_as_a_job_message_would() {
    let steps = ok(r#"
    - uses: actions/checkout@v4
      with:
        fetch-depth: 0
        ref: ${{ inputs.ref }}
    - uses: octo/mono/tools/lint@main
    - uses: ./local/action
    - uses: docker://alpine:3.20
    - uses: $/.github/actions/x
"#);
    let references: Vec<_> = steps.iter().map(|s| s.reference.clone()).collect();
    let repo = |name: &str, r: &str, t: &str, path: &str| StepReference::Repository {
        name: name.into(),
        r#ref: r.into(),
        repository_type: t.into(),
        path: path.into(),
    };
    assert_eq!(
        references,
        [
            repo("actions/checkout", "v4", "GitHub", ""),
            repo("octo/mono", "main", "GitHub", "tools/lint"),
            repo("", "", "self", "./local/action"),
            StepReference::ContainerRegistry {
                image: "alpine:3.20".into()
            },
            repo("", "", "selfRepository", ".github/actions/x"),
        ]
    );
    assert_eq!(
        input(&steps[0], "fetch-depth"),
        Some(&TokenKind::String("0".into()))
    );
    assert_eq!(
        input(&steps[0], "ref"),
        Some(&TokenKind::BasicExpression("inputs.ref".into()))
    );
    assert_eq!(steps[1].inputs, None);
    let names: Vec<_> = steps
        .iter()
        .filter_map(|s| s.context_name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "__actions_checkout",
            "__octo_mono",
            "__self",
            "__alpine_3_20",
            "__selfRepository"
        ]
    );
}

#[test]
fn generated_names_are_unique_and_known_ids_win() {
    let steps = ok(r#"
    - run: a
      shell: bash
    - run: b
      shell: bash
      id: __run
    - run: c
      shell: bash
    - uses: actions/checkout@v4
    - uses: actions/checkout@v3
    - id: Step-2
      run: d
      shell: sh
"#);
    let names: Vec<_> = steps
        .iter()
        .filter_map(|s| s.context_name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "__run_2",
            "__run",
            "__run_3",
            "__actions_checkout",
            "__actions_checkout_2",
            "Step-2"
        ]
    );
}

#[test]
fn conditions_are_normalised_like_workflow_steps() {
    let steps = ok(r#"
    - run: a
      shell: bash
      if: ${{ inputs.flag == 'yes' }}
    - run: b
      shell: bash
      if: failure() && steps.a.outcome == 'failure'
    - run: c
      shell: bash
      if: ''
    - run: d
      shell: bash
      if: true
    - run: e
      shell: bash
      if: ${{ always() }}
    - run: f
      shell: bash
      if: hashFiles('x') != ''
"#);
    let conditions: Vec<_> = steps
        .iter()
        .filter_map(|s| s.condition.as_deref())
        .collect();
    assert_eq!(
        conditions,
        [
            "success() && (inputs.flag == 'yes')",
            "failure() && steps.a.outcome == 'failure'",
            "success()",
            "success() && (true)",
            "always()",
            "success() && (hashFiles('x') != '')",
        ]
    );
}

#[test]
fn composite_steps_are_the_job_message_step_shape() {
    let steps = ok("    - uses: actions/checkout@v4\n      with: {path: x}\n      if: always()\n");
    let job_step = JobStep::Action(Box::new(steps[0].clone()));
    let json = serde_json::to_value(&job_step).expect("serialises");
    assert_eq!(json["reference"]["type"], "repository");
    assert_eq!(json["reference"]["name"], "actions/checkout");
    assert_eq!(json["contextName"], "__actions_checkout");
    assert_eq!(json["condition"], "always()");
    let back: JobStep = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back.as_action(), Some(&steps[0]), "round trip");
}

#[test]
fn malformed_steps_are_refused_with_the_reason() {
    for (body, expected) in [
        ("    - run: echo\n", "needs `shell`"),
        (
            "    - run: echo\n      shell: bash\n      uses: a/b@v1\n",
            "both `run` and `uses`",
        ),
        (
            "    - name: nothing\n",
            "needs `run` (with `shell`) or `uses`",
        ),
        (
            "    - run: a\n      shell: bash\n      timeout-minutes: 5\n",
            "unexpected key `timeout-minutes`",
        ),
        (
            "    - run: a\n      shell: bash\n      with: {x: y}\n",
            "unexpected key `with`",
        ),
        (
            "    - uses: a/b@v1\n      shell: bash\n",
            "unexpected key `shell`",
        ),
        (
            "    - uses: a/b@v1\n      working-directory: x\n",
            "unexpected key `working-directory`",
        ),
        (
            "    - uses: a/b@v1\n      id: 1st\n",
            "The identifier '1st' is invalid",
        ),
        (
            "    - uses: a/b@v1\n      id: a b\n",
            "The identifier 'a b' is invalid",
        ),
        (
            "    - uses: a/b@v1\n      id: x\n    - uses: a/b@v1\n      id: X\n",
            "may not be used more than once",
        ),
        (
            "    - uses: a/b@v1\n      id: ''\n",
            "`id` must not be empty",
        ),
        (
            "    - uses: actions/checkout\n",
            "Expected format {org}/{repo}[/path]@ref. Actual 'actions/checkout'",
        ),
        ("    - uses: checkout@v4\n", "Actual 'checkout@v4'"),
        ("    - uses: a/b@v1@v2\n", "Actual 'a/b@v1@v2'"),
        ("    - uses: a/b@\n", "Actual 'a/b@'"),
        ("    - uses: $/\n", "Actual '$/'"),
        (
            "    - uses: ${{ inputs.action }}\n",
            "Unrecognized named-value: 'inputs'",
        ),
        (
            "    - uses: a/b@v1\n      continue-on-error: 'yes'\n",
            "must be a boolean",
        ),
        (
            "    - uses: a/b@v1\n      with: [x]\n",
            "`with` must be a mapping",
        ),
        (
            "    - uses: a/b@v1\n      env: {A: [x]}\n",
            "`env.A` must be a string",
        ),
        (
            "    - run: ${{ success() }}\n      shell: bash\n",
            "Unrecognized function: 'success'",
        ),
        (
            "    - run: a\n      shell: bash\n      if: secrets.x\n",
            "Unrecognized named-value: 'secrets'",
        ),
        (
            "    - run: a\n      shell: bash\n      if: ${{ needs.x }}\n",
            "Unrecognized named-value: 'needs'",
        ),
        (
            "    - run: a\n      shell: bash\n      if: a ==\n",
            "invalid expression",
        ),
        ("    - just text\n", "must be a mapping"),
    ] {
        let message = invalid(body);
        assert!(message.contains(expected), "{body:?}: {message}");
    }
    let (message, line) = match steps("    - uses: a/b@v1\n    - run: x\n") {
        Err(ManifestError::Invalid { message, line, .. }) => (message, line),
        other => panic!("{other:?}"),
    };
    assert!(message.contains("needs `shell`"), "{message}");
    assert_eq!(line, 5, "the failing step's line");
    let message = match ActionManifest::parse(
        "runs:\n  using: composite\n  steps: run\n",
        "a/b@v1",
        "action.yml",
    ) {
        Err(e) => e.to_string(),
        Ok(m) => panic!("{m:?}"),
    };
    assert!(
        message.contains("`runs.steps` must be a sequence"),
        "{message}"
    );
}

#[test]
fn continue_on_error_takes_a_boolean_or_an_expression() {
    let steps = ok(
        "    - uses: a/b@v1\n      continue-on-error: ${{ inputs.soft == 'true' }}\n    - uses: a/b@v1\n      continue-on-error: false\n",
    );
    assert_eq!(
        steps[0].continue_on_error.as_ref().map(|t| &t.kind),
        Some(&TokenKind::BasicExpression("inputs.soft == 'true'".into()))
    );
    assert_eq!(
        steps[1].continue_on_error.as_ref().map(|t| &t.kind),
        Some(&TokenKind::Boolean(false))
    );
}
