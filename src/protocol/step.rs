//! Step entries of a job message (protocol-jobs §2).
//!
//! `type` 4 / `"action"` is an [`ActionStep`]; anything else (background-step control, future
//! kinds) is kept verbatim as [`JobStep::Unsupported`] so nothing is lost and the planner can
//! say what it refused.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::job::enum_code;
use super::template_token::TemplateToken;
use super::wire::get_ci;

/// One entry of `steps`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStep {
    /// An action step (scripts are action steps with a `script` reference).
    Action(Box<ActionStep>),
    /// Any other step kind, kept as its raw JSON.
    Unsupported {
        /// The raw `type` (e.g. `5` or `"backgroundStepControl"`), `null` if absent.
        kind: Json,
        /// The whole entry.
        raw: Json,
    },
}

impl JobStep {
    /// A background step or a background-step control (`type: 5`, `BackgroundStepControl`:
    /// wait, wait-all, cancel), actions/runner 2.335.0.
    pub fn is_background(&self) -> bool {
        match self {
            JobStep::Action(action) => action.background,
            JobStep::Unsupported { kind, .. } => {
                kind.as_i64() == Some(5)
                    || kind
                        .as_str()
                        .is_some_and(|k| k.eq_ignore_ascii_case("backgroundStepControl"))
            }
        }
    }
}

/// An action step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionStep {
    /// Timeline-record id.
    #[serde(default, alias = "Id")]
    pub id: Uuid,
    /// Name (`github.action`).
    #[serde(default, alias = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Display name; wins when non-empty.
    #[serde(
        default,
        alias = "DisplayName",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    /// Display-name token (string slot), used when `displayName` is empty.
    #[serde(
        default,
        alias = "DisplayNameToken",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name_token: Option<TemplateToken>,
    /// Enabled (default true; the runner ignores it).
    #[serde(
        default = "default_true",
        alias = "Enabled",
        deserialize_with = "bool_or_true"
    )]
    pub enabled: bool,
    /// Key in the `steps` context; `__`-prefixed names are generated.
    #[serde(
        default,
        alias = "ContextName",
        skip_serializing_if = "Option::is_none"
    )]
    pub context_name: Option<String>,
    /// What the step runs.
    #[serde(default, alias = "Reference")]
    pub reference: StepReference,
    /// Condition expression (bare, without `${{ }}`); absent = `success()`.
    #[serde(default, alias = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Boolean slot.
    #[serde(
        default,
        alias = "ContinueOnError",
        skip_serializing_if = "Option::is_none"
    )]
    pub continue_on_error: Option<TemplateToken>,
    /// Number slot (minutes).
    #[serde(
        default,
        alias = "TimeoutInMinutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_in_minutes: Option<TemplateToken>,
    /// `env:` mapping.
    #[serde(
        default,
        alias = "Environment",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment: Option<TemplateToken>,
    /// Inputs mapping (`script`, `shell`, `workingDirectory`, …).
    #[serde(default, alias = "Inputs", skip_serializing_if = "Option::is_none")]
    pub inputs: Option<TemplateToken>,
    /// A background step (actions/runner 2.335.0, `ActionStep.Background`): it starts without
    /// blocking the next one. Not supported; the planner refuses such jobs.
    #[serde(
        default,
        alias = "Background",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub background: bool,
}

fn default_true() -> bool {
    true
}

fn bool_or_true<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

/// `reference` of an action step.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StepReference {
    /// 3 / `script`: a `run:` step.
    #[default]
    Script,
    /// 1 / `repository`: `uses: owner/repo@ref` or `./path`.
    Repository {
        /// `owner/repo` (empty for local actions).
        name: String,
        /// Git ref.
        r#ref: String,
        /// `GitHub` or `self`.
        repository_type: String,
        /// Path inside the repository.
        path: String,
    },
    /// 2 / `containerRegistry`: `uses: docker://image`.
    ContainerRegistry {
        /// The image.
        image: String,
    },
    /// Anything else, kept raw.
    Unknown(Json),
}

const REFERENCE_TYPES: &[(&str, i64)] =
    &[("repository", 1), ("containerRegistry", 2), ("script", 3)];
const STEP_TYPES: &[(&str, i64)] = &[("action", 4), ("backgroundStepControl", 5)];

impl Serialize for StepReference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = match self {
            StepReference::Script => serde_json::json!({"type": "script"}),
            StepReference::Repository {
                name,
                r#ref,
                repository_type,
                path,
            } => serde_json::json!({"type": "repository", "name": name, "ref": r#ref,
                "repositoryType": repository_type, "path": path}),
            StepReference::ContainerRegistry { image } => {
                serde_json::json!({"type": "containerRegistry", "image": image})
            }
            StepReference::Unknown(raw) => raw.clone(),
        };
        json.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StepReference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        let Json::Object(object) = &json else {
            return Ok(StepReference::Unknown(json));
        };
        let text = |key: &str| match get_ci(object, key) {
            Some(Json::String(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(match enum_code(object, "type", REFERENCE_TYPES) {
            Some(3) => StepReference::Script,
            Some(1) => StepReference::Repository {
                name: text("name"),
                r#ref: text("ref"),
                repository_type: text("repositoryType"),
                path: text("path"),
            },
            Some(2) => StepReference::ContainerRegistry {
                image: text("image"),
            },
            _ => StepReference::Unknown(json),
        })
    }
}

impl Serialize for JobStep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JobStep::Action(step) => {
                let mut json = serde_json::to_value(step).map_err(serde::ser::Error::custom)?;
                if let Json::Object(object) = &mut json {
                    let mut with_type = Map::new();
                    with_type.insert("type".into(), Json::from("action"));
                    with_type.extend(std::mem::take(object));
                    *object = with_type;
                }
                json.serialize(serializer)
            }
            JobStep::Unsupported { raw, .. } => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for JobStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        let Json::Object(object) = &json else {
            return Ok(JobStep::Unsupported {
                kind: Json::Null,
                raw: json,
            });
        };
        if enum_code(object, "type", STEP_TYPES) == Some(4) {
            let step: ActionStep =
                serde_json::from_value(json).map_err(serde::de::Error::custom)?;
            return Ok(JobStep::Action(Box::new(step)));
        }
        Ok(JobStep::Unsupported {
            kind: get_ci(object, "type").cloned().unwrap_or(Json::Null),
            raw: json,
        })
    }
}

impl JobStep {
    /// The action step, if this is one.
    pub fn as_action(&self) -> Option<&ActionStep> {
        match self {
            JobStep::Action(step) => Some(step),
            JobStep::Unsupported { .. } => None,
        }
    }
}
