//! `runs:` of an action manifest: a JavaScript ([`NodeRuns`]), composite ([`CompositeRuns`]) or
//! Docker ([`DockerRuns`]) action, or a runner plugin, chosen by `using` as
//! `ActionManifestManagerLegacy.ConvertRuns` does; each kind takes only its own keys (the
//! schema's `node-runs`, `composite-runs`, `container-runs`, `plugin-runs`).

use super::error::{ManifestError, Source};
use super::slots::{self, CONTAINER, Problem};
use super::steps::composite_steps;
use crate::protocol::step::ActionStep;
use crate::protocol::template_token::TemplateToken;
use crate::workflow::yaml::Node;

/// The `runs.using` values accepted, as the official error message lists them (plus
/// `composite`, which it forgets).
pub const SUPPORTED_USING: [&str; 6] = [
    "composite",
    "docker",
    "node12",
    "node16",
    "node20",
    "node24",
];

/// The condition of `pre`/`post` when `pre-if`/`post-if` is absent.
pub const DEFAULT_PRE_POST_IF: &str = "always()";

/// What `runs` describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Runs {
    /// `using: node12|node16|node20|node24`.
    Node(NodeRuns),
    /// `using: composite`.
    Composite(CompositeRuns),
    /// `using: docker`.
    Docker(DockerRuns),
    /// `plugin:` without `using`: a runner-internal plugin (`actions/checkout` on old GHES);
    /// no handler here runs it.
    Plugin {
        /// The plugin's name.
        plugin: String,
    },
}

impl Runs {
    /// The kind as `runs.using` names it (`node20`, `composite`, `docker`), or `plugin`.
    pub fn using(&self) -> &str {
        match self {
            Runs::Node(node) => node.using.as_str(),
            Runs::Composite(_) => "composite",
            Runs::Docker(_) => "docker",
            Runs::Plugin { .. } => "plugin",
        }
    }
}

/// The Node.js versions an action may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeVersion {
    /// `node12`.
    Node12,
    /// `node16`.
    Node16,
    /// `node20`.
    Node20,
    /// `node24`.
    Node24,
}

impl NodeVersion {
    /// Every version, oldest first.
    pub const ALL: [NodeVersion; 4] = [Self::Node12, Self::Node16, Self::Node20, Self::Node24];

    /// The version a `runs.using` value names, ignoring case.
    pub fn parse(using: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(using))
    }

    /// `node12`, `node16`, `node20` or `node24`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node12 => "node12",
            Self::Node16 => "node16",
            Self::Node20 => "node20",
            Self::Node24 => "node24",
        }
    }

    /// The Node.js an action declaring this version runs on: node12 and node16 run on node20
    /// (they are past end of life), as in the official runner's
    /// `src/Runner.Worker/Handlers/HandlerFactory.cs` (`Create`, actions/runner 2.336.0).
    /// Its further node20 → node24 switches (job variables and `FORCE_JAVASCRIPT_ACTIONS_TO_NODE24`
    /// / `ACTIONS_ALLOW_USE_UNSECURE_NODE_VERSION`, `src/Runner.Common/Util/NodeUtil.cs`)
    /// depend on the job and belong to the step's handler.
    pub fn runtime(self) -> Self {
        match self {
            Self::Node12 | Self::Node16 | Self::Node20 => Self::Node20,
            Self::Node24 => Self::Node24,
        }
    }
}

impl std::fmt::Display for NodeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JavaScript action's `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRuns {
    /// `using`, as declared (see [`NodeVersion::runtime`] for the one it runs on).
    pub using: NodeVersion,
    /// `main`: the entry file, relative to the action's directory.
    pub main: String,
    /// `pre`: run before the job's steps (top-level repository actions only).
    pub pre: Option<String>,
    /// `pre-if`, as written (evaluated unwrapped; default `always()`).
    pub pre_if: String,
    /// `post`: run after the job's steps.
    pub post: Option<String>,
    /// `post-if`, as written (default `always()`).
    pub post_if: String,
}

/// A composite action's `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeRuns {
    /// Its steps, in the job message's step shape: context names assigned, conditions
    /// normalised, ids nil (the runtime assigns them).
    pub steps: Vec<ActionStep>,
}

/// Where a Docker action's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerImage {
    /// A Dockerfile to build, relative to the action's directory (its last path segment ends
    /// with `Dockerfile` or starts with `Dockerfile.`, ignoring case).
    Dockerfile(String),
    /// `docker://<image>`: an image to pull (the prefix removed).
    Registry(String),
}

impl DockerImage {
    /// Classifies `runs.image` as the official runner does (`DockerUtil.IsDockerfile`,
    /// `ActionManager.cs`); `None` if it is neither form.
    pub fn parse(image: &str) -> Option<Self> {
        const PREFIX: &str = "docker://";
        if image.len() >= PREFIX.len()
            && image.is_char_boundary(PREFIX.len())
            && image[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        {
            return Some(Self::Registry(image[PREFIX.len()..].to_owned()));
        }
        let last = image
            .rsplit('/')
            .next()
            .unwrap_or(image)
            .to_ascii_lowercase();
        (last.starts_with("dockerfile.") || last.ends_with("dockerfile"))
            .then(|| Self::Dockerfile(image.to_owned()))
    }
}

/// A Docker action's `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerRuns {
    /// `image`.
    pub image: DockerImage,
    /// `entrypoint`: overrides the image's.
    pub entrypoint: Option<String>,
    /// `args`: a sequence of strings that may use `inputs`, unevaluated.
    pub args: Option<TemplateToken>,
    /// `env`: a mapping of strings that may use `inputs`, unevaluated.
    pub env: Option<TemplateToken>,
    /// `pre-entrypoint`.
    pub pre_entrypoint: Option<String>,
    /// `pre-if`, as written (default `always()`).
    pub pre_if: String,
    /// `post-entrypoint`.
    pub post_entrypoint: Option<String>,
    /// `post-if`, as written (default `always()`).
    pub post_if: String,
}

/// Keys of each kind of `runs` (the schema's `node-runs`, `composite-runs`, `container-runs`,
/// `plugin-runs`).
const NODE_KEYS: &[&str] = &["using", "main", "pre", "pre-if", "post", "post-if"];
const COMPOSITE_KEYS: &[&str] = &["using", "steps"];
const DOCKER_KEYS: &[&str] = &[
    "using",
    "image",
    "entrypoint",
    "args",
    "env",
    "pre-entrypoint",
    "pre-if",
    "post-entrypoint",
    "post-if",
];
const PLUGIN_KEYS: &[&str] = &["plugin"];

/// The kind `runs.using` (or `plugin`) names, and the keys that kind takes.
enum Kind {
    Node(NodeVersion),
    Composite,
    Docker,
    Plugin,
}

pub(super) fn parse_runs(node: &Node, source: &Source<'_>) -> Result<Runs, ManifestError> {
    let invalid = |p: Problem| source.invalid(p);
    let pairs = slots::pairs(node, "runs").map_err(invalid)?;
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    };
    // The schema's `non-empty-string`s; an empty one counts as absent, so `main: ''` is a
    // JavaScript action without `main`.
    let text = |key: &str| {
        get(key)
            .map(|v| slots::literal(v, &format!("runs.{key}")))
            .transpose()
            .map(|v| v.filter(|v| !v.is_empty()))
            .map_err(invalid)
    };
    let using = text("using")?;
    let (kind, allowed) = match using.as_deref() {
        Some(u) if u.eq_ignore_ascii_case("docker") => (Kind::Docker, DOCKER_KEYS),
        Some(u) if u.eq_ignore_ascii_case("composite") => (Kind::Composite, COMPOSITE_KEYS),
        Some(u) => match NodeVersion::parse(u) {
            Some(version) => (Kind::Node(version), NODE_KEYS),
            None => {
                return Err(ManifestError::UnknownUsing {
                    action: source.action.to_owned(),
                    using: u.to_owned(),
                });
            }
        },
        None if get("plugin").is_some() => (Kind::Plugin, PLUGIN_KEYS),
        None => {
            return Err(ManifestError::MissingUsing {
                action: source.action.to_owned(),
                file: source.file.to_owned(),
            });
        }
    };
    for (key, _) in pairs {
        let name = slots::key_text(key, "runs").map_err(invalid)?;
        if !allowed.contains(&name.as_str()) {
            return Err(invalid(slots::problem(
                key,
                format!(
                    "unexpected key `{name}` in `runs` of a `{}` action (allowed: {})",
                    using.as_deref().unwrap_or("plugin"),
                    allowed.join(", ")
                ),
            )));
        }
    }
    let condition = |key: &str| {
        Ok::<_, ManifestError>(text(key)?.unwrap_or_else(|| DEFAULT_PRE_POST_IF.to_owned()))
    };
    Ok(match kind {
        Kind::Node(version) => Runs::Node(NodeRuns {
            using: version,
            main: text("main")?.ok_or_else(|| ManifestError::MissingMain {
                action: source.action.to_owned(),
                file: source.file.to_owned(),
                using: using.clone().unwrap_or_default(),
            })?,
            pre: text("pre")?,
            pre_if: condition("pre-if")?,
            post: text("post")?,
            post_if: condition("post-if")?,
        }),
        Kind::Composite => {
            let steps = get("steps").ok_or_else(|| ManifestError::MissingSteps {
                action: source.action.to_owned(),
                file: source.file.to_owned(),
            })?;
            Runs::Composite(CompositeRuns {
                steps: composite_steps(steps).map_err(invalid)?,
            })
        }
        Kind::Docker => {
            let image = text("image")?.ok_or_else(|| ManifestError::MissingImage {
                action: source.action.to_owned(),
                file: source.file.to_owned(),
            })?;
            Runs::Docker(DockerRuns {
                image: DockerImage::parse(&image).ok_or_else(|| ManifestError::InvalidImage {
                    action: source.action.to_owned(),
                    image: image.clone(),
                })?,
                entrypoint: text("entrypoint")?,
                args: get("args")
                    .map(|v| slots::string_sequence(v, CONTAINER, "runs.args"))
                    .transpose()
                    .map_err(invalid)?,
                env: get("env")
                    .map(|v| slots::string_mapping(v, CONTAINER, "runs.env"))
                    .transpose()
                    .map_err(invalid)?,
                pre_entrypoint: text("pre-entrypoint")?,
                pre_if: condition("pre-if")?,
                post_entrypoint: text("post-entrypoint")?,
                post_if: condition("post-if")?,
            })
        }
        Kind::Plugin => Runs::Plugin {
            plugin: text("plugin")?.unwrap_or_default(),
        },
    })
}
