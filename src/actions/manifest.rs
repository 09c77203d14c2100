//! An action's manifest, `action.yml` (or `action.yaml`), read as the official runner reads it
//! (`src/Runner.Worker/ActionManifestManagerLegacy.cs`, the manager that runs; schema
//! `src/Runner.Worker/action_yaml.json`):
//!
//! - top level: `name`, `description`, `inputs`, `outputs`, `runs`; other keys (`author`,
//!   `branding`, …) are accepted (`author` is kept) but may hold no expression;
//! - `inputs.<id>`: `default` (an unevaluated token: the caller evaluates it with `github`,
//!   `strategy`, `matrix`, `job`, `runner` and `hashFiles`), `deprecationMessage`,
//!   `description`, `required` (kept, never enforced: the action's own `getInput` checks it);
//! - `outputs.<id>`: `description`, `value` (a composite's, evaluated after its steps);
//! - `runs`: see [`super::runs`].
//!
//! Every error names the action (as the caller displays it, e.g. `actions/checkout@v4`) and
//! the problem; nothing here panics on any input.

use std::io::Read;
use std::path::Path;

use super::error::{ManifestError, Source};
use super::runs::{Runs, parse_runs};
use super::slots::{self, INPUT_DEFAULT, LITERAL, OUTPUT_VALUE, Problem};
use crate::protocol::template_token::TemplateToken;
use crate::workflow::yaml::{self, Node, YamlError};

/// The manifest's file names, in the order an action directory is searched.
pub const MANIFEST_FILE_NAMES: [&str; 2] = ["action.yml", "action.yaml"];

/// Largest manifest read (the official template reader's memory limit,
/// `TemplateMemory(maxBytes: 10 MiB)`).
pub const MAX_MANIFEST_BYTES: u64 = 10 * 1024 * 1024;

/// A parsed `action.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionManifest {
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `author` (not part of the official schema's named properties; kept when a string).
    pub author: Option<String>,
    /// `inputs`, in document order.
    pub inputs: Vec<ActionInput>,
    /// `outputs`, in document order.
    pub outputs: Vec<ActionOutput>,
    /// `runs`.
    pub runs: Runs,
}

/// One of `inputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionInput {
    /// The input's id (`who-to-greet`); inputs match case-insensitively.
    pub name: String,
    /// `description`, when a scalar.
    pub description: Option<String>,
    /// `default`, unevaluated: a string token, or an expression over `github`, `strategy`,
    /// `matrix`, `job`, `runner` and `hashFiles`. `None`: the default is the empty string.
    pub default: Option<TemplateToken>,
    /// `required: true` (or `'true'`). Informational only: like the official runner, nothing
    /// enforces it.
    pub required: bool,
    /// `deprecationMessage`: warned about when a step supplies the input.
    pub deprecation_message: Option<String>,
}

/// One of `outputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutput {
    /// The output's id.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `value` (composite actions), unevaluated: it sees `github`, `strategy`, `matrix`,
    /// `steps`, `inputs`, `job`, `runner` and `env`.
    pub value: Option<TemplateToken>,
}

impl ActionManifest {
    /// Loads the manifest of the unpacked action in `dir`: `action.yml`, else `action.yaml`.
    /// `action` names the action in errors (`actions/checkout@v4`).
    pub fn load(dir: &Path, action: &str) -> Result<Self, ManifestError> {
        let Some((file, path)) = MANIFEST_FILE_NAMES
            .iter()
            .map(|name| (*name, dir.join(name)))
            .find(|(_, path)| path.is_file())
        else {
            return Err(ManifestError::NotFound {
                action: action.to_owned(),
                dir: dir.to_owned(),
            });
        };
        let read_error = |source| ManifestError::Read {
            action: action.to_owned(),
            path: path.clone(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                action: action.to_owned(),
                path,
            });
        }
        // Like .NET's File.ReadAllText: a BOM is dropped, invalid UTF-8 becomes U+FFFD.
        let text = String::from_utf8_lossy(&bytes);
        Self::parse(text.trim_start_matches('\u{feff}'), action, file)
    }

    /// Parses manifest text; `file` is its file name (`action.yml`) for messages.
    pub fn parse(text: &str, action: &str, file: &str) -> Result<Self, ManifestError> {
        let source = Source { action, file };
        let root = yaml::parse(text).map_err(|e| match e {
            YamlError::Syntax { mark, message } => ManifestError::NotYaml {
                action: action.to_owned(),
                file: file.to_owned(),
                line: Some(mark.line),
                col: Some(mark.col),
                message,
            },
            YamlError::Structure { mark, message } => ManifestError::NotYaml {
                action: action.to_owned(),
                file: file.to_owned(),
                line: Some(mark.line),
                col: Some(mark.col),
                message: message.to_owned(),
            },
            YamlError::Empty => ManifestError::NotMapping {
                action: action.to_owned(),
                file: file.to_owned(),
                found: "an empty document".to_owned(),
            },
        })?;
        if !matches!(root, Node::Mapping { .. }) {
            return Err(ManifestError::NotMapping {
                action: action.to_owned(),
                file: file.to_owned(),
                found: format!("a {}", root.kind()),
            });
        }
        let mut manifest = ActionManifest {
            name: None,
            description: None,
            author: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            runs: Runs::Plugin {
                plugin: String::new(),
            },
        };
        let mut runs = None;
        let top = slots::pairs(&root, "action.yml").map_err(|p| source.invalid(p))?;
        for (key, value) in top {
            let key = slots::key_text(key, "action.yml").map_err(|p| source.invalid(p))?;
            let read = match key.as_str() {
                "name" => slots::literal(value, "name").map(|v| manifest.name = Some(v)),
                "description" => {
                    slots::literal(value, "description").map(|v| manifest.description = Some(v))
                }
                "inputs" => parse_inputs(value).map(|v| manifest.inputs = v),
                "outputs" => parse_outputs(value).map(|v| manifest.outputs = v),
                "runs" => {
                    runs = Some(value);
                    Ok(())
                }
                "author" => slots::loose(value, "author").map(|()| {
                    manifest.author = scalar_text(value);
                }),
                other => slots::loose(value, other),
            };
            read.map_err(|p| source.invalid(p))?;
        }
        let runs = runs.ok_or_else(|| ManifestError::MissingRuns {
            action: action.to_owned(),
            file: file.to_owned(),
        })?;
        manifest.runs = parse_runs(runs, &source)?;
        Ok(manifest)
    }

    /// The input named `name`, ignoring case (as inputs are matched).
    pub fn input(&self, name: &str) -> Option<&ActionInput> {
        self.inputs
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }
}

/// The text of a non-null scalar.
fn scalar_text(node: &Node) -> Option<String> {
    node.as_scalar()
        .filter(|_| !node.is_null())
        .map(str::to_owned)
}

fn parse_inputs(node: &Node) -> Result<Vec<ActionInput>, Problem> {
    let mut inputs = Vec::new();
    for (key, value) in slots::pairs(node, "inputs")? {
        let name = slots::key_text(key, "inputs")?;
        let what = format!("inputs.{name}");
        let mut input = ActionInput {
            name,
            description: None,
            default: None,
            required: false,
            deprecation_message: None,
        };
        for (meta_key, meta) in slots::pairs(value, &what)? {
            let meta_name = slots::key_text(meta_key, &what)?;
            let what = format!("{what}.{meta_name}");
            match meta_name.as_str() {
                "default" => input.default = Some(slots::string(meta, INPUT_DEFAULT, &what)?),
                // Used case-insensitively (`ConvertInputs`), but only `default` is typed by the
                // schema: other spellings are loose values without expressions.
                m if m.eq_ignore_ascii_case("default") => {
                    input.default = Some(slots::string(meta, LITERAL, &what)?)
                }
                m if m.eq_ignore_ascii_case("deprecationMessage") => {
                    input.deprecation_message = Some(slots::literal(meta, &what)?)
                }
                "description" => {
                    slots::loose(meta, &what)?;
                    input.description = scalar_text(meta);
                }
                "required" => {
                    slots::loose(meta, &what)?;
                    input.required = meta
                        .as_scalar()
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
                }
                _ => slots::loose(meta, &what)?,
            }
        }
        inputs.push(input);
    }
    Ok(inputs)
}

fn parse_outputs(node: &Node) -> Result<Vec<ActionOutput>, Problem> {
    let mut outputs = Vec::new();
    for (key, value) in slots::pairs(node, "outputs")? {
        let name = slots::key_text(key, "outputs")?;
        let what = format!("outputs.{name}");
        let mut output = ActionOutput {
            name,
            description: None,
            value: None,
        };
        for (meta_key, meta) in slots::pairs(value, &what)? {
            let meta_name = slots::key_text(meta_key, &what)?;
            match meta_name.as_str() {
                "description" => output.description = Some(slots::literal(meta, &what)?),
                "value" => output.value = Some(slots::string(meta, OUTPUT_VALUE, &what)?),
                other => {
                    return Err(slots::problem(
                        meta_key,
                        format!(
                            "unexpected key `{other}` in `{what}` (allowed: description, value)"
                        ),
                    ));
                }
            }
        }
        outputs.push(output);
    }
    Ok(outputs)
}
