//! `action.yml` of real actions (the tarballs in `$GHRUNNER_VM_ACTIONS_DIR`, unpacked as GitHub
//! serves them), and the parser's robustness: on any text it returns a manifest or an error
//! naming the action, and never panics (property tests over structured YAML, mutated real
//! manifests and arbitrary text).

mod support;

use std::sync::OnceLock;

use ghrunner_vm::actions::{ActionManifest, NodeVersion, Runs, SUPPORTED_USING};
use ghrunner_vm::protocol::template_token::TokenKind;
use proptest::prelude::*;
use support::action_tarballs::{CHECKOUT_V4, HELLO_WORLD, unpack};

fn load(tarball: &str, action: &str) -> ActionManifest {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unpack(tarball, dir.path());
    ActionManifest::load(&root, action).unwrap_or_else(|e| panic!("{e}"))
}

fn default_of(manifest: &ActionManifest, input: &str) -> Option<TokenKind> {
    manifest
        .input(input)
        .unwrap_or_else(|| panic!("input {input} is declared"))
        .default
        .as_ref()
        .map(|t| t.kind.clone())
}

#[test]
fn checkout_v4_is_a_node20_action_with_main_and_post() {
    let manifest = load(CHECKOUT_V4, "actions/checkout@v4.4.0");
    assert_eq!(manifest.name.as_deref(), Some("Checkout"));
    let Runs::Node(node) = &manifest.runs else {
        panic!("checkout is a JavaScript action: {:?}", manifest.runs)
    };
    assert_eq!(node.using, NodeVersion::Node20);
    assert_eq!(node.main, "dist/index.js");
    assert_eq!(node.post.as_deref(), Some("dist/index.js"));
    assert_eq!(node.pre, None);
    assert_eq!(node.post_if, "always()", "post-if defaults to always()");
    assert_eq!(
        default_of(&manifest, "repository"),
        Some(TokenKind::BasicExpression("github.repository".into()))
    );
    assert_eq!(
        default_of(&manifest, "token"),
        Some(TokenKind::BasicExpression("github.token".into()))
    );
    // Plain YAML scalars are the strings the action's getInput sees; `null` is empty.
    assert_eq!(
        default_of(&manifest, "fetch-depth"),
        Some(TokenKind::String("1".into()))
    );
    assert_eq!(
        default_of(&manifest, "persist-credentials"),
        Some(TokenKind::String("true".into()))
    );
    assert_eq!(
        default_of(&manifest, "filter"),
        Some(TokenKind::String(String::new()))
    );
    assert_eq!(default_of(&manifest, "ref"), None, "no default: empty");
    let github_server_url = manifest.input("github-server-url").expect("declared");
    assert!(!github_server_url.required);
    let outputs: Vec<_> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["ref", "commit"]);
}

#[test]
fn hello_world_is_a_node24_action_with_an_input_and_an_output() {
    let manifest = load(HELLO_WORLD, "actions/hello-world-javascript-action@main");
    assert_eq!(manifest.name.as_deref(), Some("Hello, World!"));
    assert_eq!(manifest.author.as_deref(), Some("GitHub Actions"));
    let Runs::Node(node) = &manifest.runs else {
        panic!("a JavaScript action: {:?}", manifest.runs)
    };
    assert_eq!(node.using, NodeVersion::Node24);
    assert_eq!(node.using.runtime(), NodeVersion::Node24);
    assert_eq!(node.main, "dist/index.js");
    assert_eq!((node.pre.as_deref(), node.post.as_deref()), (None, None));
    let [input] = manifest.inputs.as_slice() else {
        panic!("one input: {:?}", manifest.inputs)
    };
    assert_eq!(input.name, "who-to-greet");
    assert!(input.required, "declared required (not enforced)");
    assert_eq!(
        input.default.as_ref().map(|t| &t.kind),
        Some(&TokenKind::String("World".into()))
    );
    let [output] = manifest.outputs.as_slice() else {
        panic!("one output: {:?}", manifest.outputs)
    };
    assert_eq!(output.name, "time");
    assert_eq!(
        output.description.as_deref(),
        Some("The time we greeted you")
    );
}

const ACTION: &str = "fuzz/action@v0";

/// Parses `text`; the result is a manifest of a supported kind or an error naming the action.
fn parses_or_explains(text: &str) -> Result<(), TestCaseError> {
    match ActionManifest::parse(text, ACTION, "action.yml") {
        Ok(manifest) => {
            let using = manifest.runs.using().to_ascii_lowercase();
            prop_assert!(
                SUPPORTED_USING.contains(&using.as_str()) || using == "plugin",
                "unexpected kind {using}"
            );
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(
                message.starts_with(&format!("action `{ACTION}`: ")),
                "{message}"
            );
        }
    }
    Ok(())
}

/// Words the manifest schema knows, so random documents reach deep into the parser.
const WORDS: &[&str] = &[
    "name",
    "description",
    "author",
    "inputs",
    "outputs",
    "runs",
    "using",
    "main",
    "pre",
    "post",
    "pre-if",
    "post-if",
    "steps",
    "run",
    "uses",
    "shell",
    "with",
    "env",
    "id",
    "if",
    "image",
    "args",
    "entrypoint",
    "pre-entrypoint",
    "post-entrypoint",
    "default",
    "value",
    "required",
    "deprecationMessage",
    "continue-on-error",
    "working-directory",
    "plugin",
    "node12",
    "node20",
    "Node24",
    "composite",
    "docker",
    "Dockerfile",
    "docker://alpine",
    "a/b@v1",
    "a/b/c@v1",
    "./local",
    "$/x",
    "a/b",
    "__run",
    "bash",
    "true",
    "1",
    "~",
    "",
    "${{ github.sha }}",
    "${{ inputs.x }}",
    "${{ success() }}",
    "${{ hashFiles('x') }}",
    "${{ steps.a.outputs.b }}",
    "${{",
    "}}",
    "x ${{ 'y' }} z",
    "${{ secrets.s }}",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(|w| format!("'{}'", w.replace('\'', "''"))),
        prop::sample::select(WORDS).prop_map(str::to_owned),
        "[a-zA-Z0-9 ._/@$:-]{0,12}".prop_map(|s| format!("'{s}'")),
    ]
}

/// A YAML document in flow style built from [`WORDS`].
fn document() -> impl Strategy<Value = String> {
    let leaf = scalar();
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((prop::sample::select(WORDS), inner), 0..8).prop_map(|pairs| {
                let pairs: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| format!("'{}': {v}", k.replace('\'', "''")))
                    .collect();
                format!("{{{}}}", pairs.join(", "))
            }),
        ]
    })
}

/// Keys of `runs` and of composite steps.
const RUNS_KEYS: &[&str] = &[
    "using",
    "main",
    "pre",
    "post",
    "pre-if",
    "post-if",
    "steps",
    "image",
    "args",
    "env",
    "entrypoint",
    "plugin",
];
const STEP_KEYS: &[&str] = &[
    "run",
    "uses",
    "shell",
    "with",
    "env",
    "id",
    "if",
    "name",
    "continue-on-error",
    "working-directory",
    "timeout-minutes",
];

/// A flow mapping of some of `keys`, each with a value from `value`.
fn mapping_of(
    keys: &'static [&'static str],
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(keys), value), 0..8).prop_map(|pairs| {
        let pairs: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    })
}

/// A `runs` section close to valid: schema keys with scalar values, composite steps made of
/// step keys.
fn runs_section() -> impl Strategy<Value = String> {
    let step = mapping_of(
        STEP_KEYS,
        prop_oneof![scalar(), mapping_of(STEP_KEYS, scalar())],
    );
    let steps = prop::collection::vec(step, 0..4).prop_map(|s| format!("[{}]", s.join(", ")));
    mapping_of(RUNS_KEYS, prop_oneof![3 => scalar(), 1 => steps])
}

/// The checkout manifest's text, read once.
fn checkout_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = unpack(CHECKOUT_V4, dir.path());
        std::fs::read_to_string(root.join("action.yml")).expect("checkout's action.yml")
    })
}

proptest! {
    #[test]
    fn structured_documents_never_panic(doc in document()) {
        parses_or_explains(&doc)?;
    }

    #[test]
    fn documents_with_a_runs_section_never_panic(
        top in document(),
        runs in prop::collection::vec((prop::sample::select(WORDS), document()), 0..6),
    ) {
        let runs: Vec<String> = runs
            .into_iter()
            .map(|(k, v)| format!("'{}': {v}", k.replace('\'', "''")))
            .collect();
        let doc = format!("top: {top}\nruns: {{{}}}\n", runs.join(", "));
        parses_or_explains(&doc)?;
    }

    #[test]
    fn nearly_valid_runs_sections_never_panic(runs in runs_section(), inputs in document()) {
        parses_or_explains(&format!("inputs: {inputs}\nruns: {runs}\n"))?;
    }

    #[test]
    fn mutated_real_manifests_never_panic(
        at in 0usize..6000,
        len in 0usize..64,
        insert in prop::sample::select(WORDS),
    ) {
        let text = checkout_text();
        let at = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= at).last().unwrap_or(0);
        let end = text[at..].char_indices().nth(len).map_or(text.len(), |(i, _)| at + i);
        let mutated = format!("{}{insert}{}", &text[..at], &text[end..]);
        parses_or_explains(&mutated)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        parses_or_explains(&text)?;
    }
}
