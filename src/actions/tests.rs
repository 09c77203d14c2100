//! Manifest parsing: the top level, inputs, outputs, each kind of `runs`, and every error.
//! Composite steps are tested in `steps_tests.rs`.

use super::*;
use crate::protocol::template_token::{TemplateToken, TokenKind};

const ACTION: &str = "octo/act@v1";

fn parse(yaml: &str) -> Result<ActionManifest, ManifestError> {
    ActionManifest::parse(yaml, ACTION, "action.yml")
}

fn ok(yaml: &str) -> ActionManifest {
    parse(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn err(yaml: &str) -> ManifestError {
    let error = parse(yaml).expect_err("the manifest is invalid");
    assert!(
        error
            .to_string()
            .starts_with(&format!("action `{ACTION}`: ")),
        "the message names the action: {error}"
    );
    error
}

/// The message of an [`ManifestError::Invalid`] and its line.
fn invalid(yaml: &str) -> (String, usize) {
    match err(yaml) {
        ManifestError::Invalid { message, line, .. } => (message, line),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn kind(token: &Option<TemplateToken>) -> Option<&TokenKind> {
    token.as_ref().map(|t| &t.kind)
}

fn string(s: &str) -> TokenKind {
    TokenKind::String(s.into())
}

const NODE: &str = "runs:\n  using: node20\n  main: dist/index.js\n";

#[test]
fn a_javascript_action_keeps_names_inputs_outputs_and_runs() {
    let manifest = ok(r#"
name: 'Checkout'
description: Check out a repository
author: GitHub
branding: {icon: check, color: blue}
inputs:
  repository:
    description: 'Repository name with owner'
    default: ${{ github.repository }}
  fetch-depth:
    default: 1
  clean:
    default: true
  filter:
    default: null
  who-to-greet:
    description: Who to greet
    required: true
  old:
    deprecationMessage: use `new`
    required: false
  mixed:
    default: "v-${{ github.sha }}"
outputs:
  time:
    description: The time
runs:
  using: node20
  main: dist/index.js
  pre: dist/setup.js
  post: dist/index.js
  post-if: success()
"#);
    assert_eq!(manifest.name.as_deref(), Some("Checkout"));
    assert_eq!(
        manifest.description.as_deref(),
        Some("Check out a repository")
    );
    assert_eq!(manifest.author.as_deref(), Some("GitHub"));
    let names: Vec<_> = manifest.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "repository",
            "fetch-depth",
            "clean",
            "filter",
            "who-to-greet",
            "old",
            "mixed"
        ]
    );
    let input = |name: &str| manifest.input(name).expect("declared");
    assert_eq!(
        kind(&input("repository").default),
        Some(&TokenKind::BasicExpression("github.repository".into())),
        "a default stays an unevaluated expression"
    );
    assert_eq!(
        input("repository").description.as_deref(),
        Some("Repository name with owner")
    );
    // Non-string scalars become their text, as the official reader converts them.
    assert_eq!(kind(&input("fetch-depth").default), Some(&string("1")));
    assert_eq!(kind(&input("clean").default), Some(&string("true")));
    assert_eq!(kind(&input("filter").default), Some(&string("")));
    assert_eq!(
        kind(&input("mixed").default),
        Some(&TokenKind::BasicExpression(
            "format('v-{0}', github.sha)".into()
        ))
    );
    assert!(input("who-to-greet").required && input("who-to-greet").default.is_none());
    assert!(!input("old").required);
    assert_eq!(
        input("old").deprecation_message.as_deref(),
        Some("use `new`")
    );
    assert_eq!(
        manifest.input("WHO-TO-GREET").map(|i| i.name.as_str()),
        Some("who-to-greet"),
        "inputs match ignoring case"
    );
    assert_eq!(manifest.outputs.len(), 1);
    assert_eq!(manifest.outputs[0].name, "time");
    assert_eq!(manifest.outputs[0].description.as_deref(), Some("The time"));
    assert_eq!(manifest.outputs[0].value, None);
    let Runs::Node(node) = &manifest.runs else {
        panic!("a JavaScript action: {:?}", manifest.runs)
    };
    assert_eq!(
        node,
        &NodeRuns {
            using: NodeVersion::Node20,
            main: "dist/index.js".into(),
            pre: Some("dist/setup.js".into()),
            pre_if: "always()".into(),
            post: Some("dist/index.js".into()),
            post_if: "success()".into(),
        },
        "pre-if defaults to always(); post-if is kept as written"
    );
    assert_eq!(manifest.runs.using(), "node20");
}

#[test]
fn node_versions_are_case_insensitive_and_old_ones_run_on_node20() {
    for (using, declared, runtime) in [
        ("node12", NodeVersion::Node12, NodeVersion::Node20),
        ("Node16", NodeVersion::Node16, NodeVersion::Node20),
        ("NODE20", NodeVersion::Node20, NodeVersion::Node20),
        ("node24", NodeVersion::Node24, NodeVersion::Node24),
    ] {
        let manifest = ok(&format!("runs:\n  using: {using}\n  main: a.js\n"));
        let Runs::Node(node) = manifest.runs else {
            panic!("node")
        };
        assert_eq!(node.using, declared, "{using}");
        assert_eq!(node.using.runtime(), runtime, "{using}");
        assert_eq!(node.pre, None);
        assert_eq!(node.post_if, "always()");
    }
    assert_eq!(NodeVersion::parse("node18"), None);
}

#[test]
fn text_that_is_not_yaml_is_refused_with_its_position() {
    let error = err("name: [unclosed\nruns:\n  using: node20\n");
    let ManifestError::NotYaml { line, message, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(line.is_some() && !message.is_empty());
    assert!(error.to_string().contains("is not valid YAML"), "{error}");
}

#[test]
fn a_manifest_must_be_a_mapping() {
    for (yaml, found) in [
        ("- a\n- b\n", "a sequence"),
        ("just text\n", "a scalar"),
        ("", "an empty document"),
        ("# only a comment\n", "an empty document"),
    ] {
        match err(yaml) {
            ManifestError::NotMapping { found: f, .. } => assert_eq!(f, found, "{yaml:?}"),
            other => panic!("{yaml:?}: {other:?}"),
        }
    }
}

#[test]
fn runs_is_required() {
    let error = err("name: x\ndescription: y\n");
    assert!(
        matches!(error, ManifestError::MissingRuns { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("`runs:`"), "{error}");
    // Keys are case-sensitive: `Runs` is some other (ignored) key.
    assert!(matches!(
        err("Runs:\n  using: node20\n  main: a.js\n"),
        ManifestError::MissingRuns { .. }
    ));
}

#[test]
fn an_unknown_using_lists_the_supported_ones() {
    let error = err("runs:\n  using: node18\n  main: a.js\n");
    assert!(
        matches!(&error, ManifestError::UnknownUsing { using, .. } if using == "node18"),
        "{error:?}"
    );
    let message = error.to_string();
    for allowed in SUPPORTED_USING {
        assert!(message.contains(allowed), "{message}");
    }
    let error = err("runs:\n  main: a.js\n");
    assert!(
        matches!(error, ManifestError::MissingUsing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("node24"));
}

#[test]
fn a_javascript_action_needs_main() {
    for yaml in [
        "runs:\n  using: node20\n",
        "runs:\n  using: node24\n  main: ''\n  post: b.js\n",
    ] {
        let error = err(yaml);
        assert!(
            matches!(error, ManifestError::MissingMain { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("runs.main"), "{error}");
    }
}

#[test]
fn a_composite_action_needs_steps() {
    let error = err("runs:\n  using: composite\n");
    assert!(
        matches!(error, ManifestError::MissingSteps { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("runs.steps"));
}

#[test]
fn a_docker_action_needs_an_image_of_a_known_form() {
    let error = err("runs:\n  using: docker\n  args: [a]\n");
    assert!(
        matches!(error, ManifestError::MissingImage { .. }),
        "{error:?}"
    );
    let error = err("runs:\n  using: docker\n  image: ubuntu:22.04\n");
    assert!(
        matches!(&error, ManifestError::InvalidImage { image, .. } if image == "ubuntu:22.04"),
        "{error:?}"
    );
    assert!(error.to_string().contains("docker://image[:tag]"));
}

#[test]
fn docker_actions_keep_image_entrypoints_args_and_env() {
    let manifest = ok(r#"
inputs:
  who: {default: you}
runs:
  using: Docker
  image: build/Dockerfile.dev
  entrypoint: /entry.sh
  pre-entrypoint: /pre.sh
  post-entrypoint: /post.sh
  post-if: failure()
  args:
    - --who
    - ${{ inputs.who }}
    - 3
  env:
    WHO: ${{ inputs.who }}
    PLAIN: yes
"#);
    let Runs::Docker(docker) = &manifest.runs else {
        panic!("{:?}", manifest.runs)
    };
    assert_eq!(
        docker.image,
        DockerImage::Dockerfile("build/Dockerfile.dev".into())
    );
    assert_eq!(docker.entrypoint.as_deref(), Some("/entry.sh"));
    assert_eq!(docker.pre_entrypoint.as_deref(), Some("/pre.sh"));
    assert_eq!(docker.post_entrypoint.as_deref(), Some("/post.sh"));
    assert_eq!(docker.pre_if, "always()");
    assert_eq!(docker.post_if, "failure()");
    let Some(TokenKind::Sequence(args)) = kind(&docker.args) else {
        panic!("args: {:?}", docker.args)
    };
    let args: Vec<_> = args.iter().map(|a| a.kind.clone()).collect();
    assert_eq!(
        args,
        [
            string("--who"),
            TokenKind::BasicExpression("inputs.who".into()),
            string("3")
        ]
    );
    let env = docker.env.as_ref().expect("env");
    assert_eq!(
        env.mapping_get("WHO").map(|t| &t.kind),
        Some(&TokenKind::BasicExpression("inputs.who".into()))
    );
    assert_eq!(
        env.mapping_get("PLAIN").map(|t| &t.kind),
        Some(&string("yes"))
    );
    assert_eq!(manifest.runs.using(), "docker");
}

#[test]
fn docker_images_are_a_dockerfile_or_a_registry_reference() {
    for (image, expected) in [
        (
            "Dockerfile",
            Some(DockerImage::Dockerfile("Dockerfile".into())),
        ),
        (
            "sub/dockerfile",
            Some(DockerImage::Dockerfile("sub/dockerfile".into())),
        ),
        (
            "Dockerfile.ci",
            Some(DockerImage::Dockerfile("Dockerfile.ci".into())),
        ),
        (
            "docker://alpine:3.20",
            Some(DockerImage::Registry("alpine:3.20".into())),
        ),
        (
            "DOCKER://ghcr.io/o/i@sha256:ab",
            Some(DockerImage::Registry("ghcr.io/o/i@sha256:ab".into())),
        ),
        ("alpine", None),
        ("Dockerfile/other", None),
        ("", None),
    ] {
        assert_eq!(DockerImage::parse(image), expected, "{image}");
    }
}

#[test]
fn runs_keys_must_belong_to_the_kind() {
    let (message, line) = invalid("runs:\n  using: docker\n  image: Dockerfile\n  main: a.js\n");
    assert!(message.contains("unexpected key `main`"), "{message}");
    assert!(
        message.contains("entrypoint"),
        "lists the allowed keys: {message}"
    );
    assert_eq!(line, 4);
    let (message, _) = invalid("runs:\n  using: node20\n  main: a.js\n  steps: []\n");
    assert!(message.contains("unexpected key `steps`"), "{message}");
    let (message, _) = invalid("runs:\n  using: node20\n  main: [a.js]\n");
    assert!(
        message.contains("`runs.main` must be a string"),
        "{message}"
    );
    let (message, _) = invalid("runs: node20\n");
    assert!(message.contains("`runs` must be a mapping"), "{message}");
}

#[test]
fn a_plugin_without_using_is_kept_as_a_plugin() {
    let manifest = ok("runs:\n  plugin: checkout\n");
    assert_eq!(
        manifest.runs,
        Runs::Plugin {
            plugin: "checkout".into()
        }
    );
}

#[test]
fn expressions_are_checked_against_the_contexts_of_their_place() {
    // Allowed: input defaults see github, job, runner, … and hashFiles; composite output
    // values see steps and inputs; container args and env see inputs.
    ok(&format!(
        "inputs:\n  a:\n    default: ${{{{ hashFiles('**/x') }}}}-${{{{ runner.os }}}}\n{NODE}"
    ));
    let manifest = ok(
        "outputs:\n  o:\n    value: ${{ steps.s.outputs.v }}\nruns:\n  using: composite\n  steps: []\n",
    );
    assert_eq!(
        kind(&manifest.outputs[0].value),
        Some(&TokenKind::BasicExpression("steps.s.outputs.v".into()))
    );
    // Refused, each naming the problem.
    for (yaml, expected) in [
        (
            format!("name: ${{{{ github.repository }}}}\n{NODE}"),
            "Unrecognized named-value: 'github'",
        ),
        (
            format!("name: ${{{{ 'x' == 'x' }}}}\n{NODE}"),
            "not allowed here",
        ),
        (
            format!("inputs:\n  a:\n    description: uses ${{{{ github.token }}}}\n{NODE}"),
            "Unrecognized named-value: 'github'",
        ),
        (
            format!("inputs:\n  a:\n    default: ${{{{ secrets.TOKEN }}}}\n{NODE}"),
            "Unrecognized named-value: 'secrets'",
        ),
        (
            format!("inputs:\n  a:\n    default: ${{{{ steps.x.outputs.y }}}}\n{NODE}"),
            "Unrecognized named-value: 'steps'",
        ),
        (
            format!("inputs:\n  a:\n    default: ${{{{ success() }}}}\n{NODE}"),
            "Unrecognized function: 'success'",
        ),
        (
            format!("outputs:\n  o:\n    value: ${{{{ hashFiles('x') }}}}\n{NODE}"),
            "Unrecognized function: 'hashFiles'",
        ),
        (
            "runs:\n  using: docker\n  image: Dockerfile\n  args: ['${{ github.sha }}']\n"
                .to_owned(),
            "Unrecognized named-value: 'github'",
        ),
        (
            format!("inputs:\n  a:\n    default: ${{{{ github. }}}}\n{NODE}"),
            "invalid expression",
        ),
        (
            format!("inputs:\n  a:\n    default: ${{{{ github.sha\n{NODE}"),
            "not closed",
        ),
        (
            "runs:\n  using: node20\n  main: ${{ github.sha }}\n".to_owned(),
            "Unrecognized named-value",
        ),
        (
            "runs:\n  using: node20\n  main: a.js\n  post-if: ${{ always() }}\n".to_owned(),
            "not allowed here",
        ),
        (
            format!("branding:\n  icon: ${{{{ github.sha }}}}\n{NODE}"),
            "Unrecognized named-value",
        ),
    ] {
        let (message, _) = invalid(&yaml);
        assert!(message.contains(expected), "{yaml:?}: {message}");
    }
    // A string literal expression folds to text even where expressions are not allowed.
    let manifest = ok(&format!("name: \"${{{{ '${{{{ not }}}}' }}}}\"\n{NODE}"));
    assert_eq!(manifest.name.as_deref(), Some("${{ not }}"));
}

#[test]
fn inputs_and_outputs_have_the_schema_shape() {
    for (yaml, expected, line) in [
        (
            format!("inputs:\n  a: {{}}\n  A: {{}}\n{NODE}"),
            "`A` is already defined in `inputs`",
            3,
        ),
        (
            format!("inputs:\n  a: just text\n{NODE}"),
            "`inputs.a` must be a mapping",
            2,
        ),
        (
            format!("inputs:\n  a: ~\n{NODE}"),
            "`inputs.a` must be a mapping, not null",
            2,
        ),
        (
            format!("inputs: [a]\n{NODE}"),
            "`inputs` must be a mapping",
            1,
        ),
        (
            format!("inputs:\n  a:\n    default: [x]\n{NODE}"),
            "must be a string, not a sequence",
            3,
        ),
        (
            format!("outputs:\n  o:\n    description: d\n    extra: e\n{NODE}"),
            "unexpected key `extra`",
            4,
        ),
        (
            format!("outputs:\n  o: text\n{NODE}"),
            "`outputs.o` must be a mapping",
            2,
        ),
        (format!("name: [a]\n{NODE}"), "`name` must be a string", 1),
        (format!("? [a, b]\n: x\n{NODE}"), "keys must be strings", 1),
        (format!("'': x\n{NODE}"), "keys must not be empty", 1),
        (
            format!("name: a\nname: b\n{NODE}"),
            "`name` is already defined",
            2,
        ),
    ] {
        let (message, at) = invalid(&yaml);
        assert!(message.contains(expected), "{yaml:?}: {message}");
        assert_eq!(at, line, "{yaml:?}: {message}");
    }
}

#[test]
fn errors_name_the_action_and_the_file() {
    let error = ActionManifest::parse(
        "runs:\n  using: node20\n",
        "actions/checkout@v4",
        "action.yaml",
    )
    .expect_err("no main");
    let message = error.to_string();
    assert!(
        message.starts_with("action `actions/checkout@v4`: "),
        "{message}"
    );
    assert!(message.contains("action.yaml"), "{message}");
    let error = ActionManifest::parse(
        "runs:\n  using: node20\n  main: [x]\n",
        "o/r@v1",
        "action.yml",
    )
    .expect_err("bad main");
    assert!(
        error
            .to_string()
            .starts_with("action `o/r@v1`: action.yml (Line: 3, Col: 9): "),
        "{error}"
    );
}

#[test]
fn load_prefers_action_yml_then_action_yaml_and_names_both_when_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = ActionManifest::load(dir.path(), ACTION).expect_err("no manifest");
    let message = error.to_string();
    assert!(matches!(error, ManifestError::NotFound { .. }), "{error:?}");
    assert!(
        message.contains("action.yml")
            && message.contains("action.yaml")
            && message.contains(ACTION),
        "{message}"
    );
    std::fs::write(
        dir.path().join("action.yaml"),
        "name: yaml\nruns:\n  using: node20\n  main: a.js\n",
    )
    .expect("write");
    let manifest = ActionManifest::load(dir.path(), ACTION).expect("action.yaml");
    assert_eq!(manifest.name.as_deref(), Some("yaml"));
    std::fs::write(
        dir.path().join("action.yml"),
        "\u{feff}name: yml\nruns:\n  using: node24\n  main: b.js\n",
    )
    .expect("write");
    let manifest = ActionManifest::load(dir.path(), ACTION).expect("action.yml, BOM dropped");
    assert_eq!(manifest.name.as_deref(), Some("yml"), "action.yml wins");
    std::fs::write(dir.path().join("action.yml"), "runs: [\n").expect("write");
    assert!(matches!(
        ActionManifest::load(dir.path(), ACTION),
        Err(ManifestError::NotYaml { file, .. }) if file == "action.yml"
    ));
}

#[test]
fn load_refuses_oversized_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(dir.path().join("action.yml")).expect("create");
    file.set_len(MAX_MANIFEST_BYTES + 1).expect("sparse file");
    let error = ActionManifest::load(dir.path(), ACTION).expect_err("too large");
    assert!(matches!(error, ManifestError::TooLarge { .. }), "{error:?}");
}
