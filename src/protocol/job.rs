//! `AgentJobRequestMessage`: the job the service hands to a runner (protocol-jobs §1–2).
//!
//! Plain serde structs. Every field accepts its camelCase and PascalCase name (Newtonsoft
//! producers emit either), unknown fields are ignored, `null` collections read as empty, and
//! dictionaries (variables, endpoint data, authorization parameters) keep their keys verbatim and
//! are looked up case-insensitively. Steps of kinds other than `action` are kept as raw JSON and
//! marked unsupported; action steps whose reference is not a script are decoded but the planner
//! refuses them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::context_data::PipelineContextData;
use super::template_token::TemplateToken;
use super::wire::{
    get_ci, get_int, lenient_string_map, lookup_ci, null_default, opt_text, serialize_string_map,
};

/// Name of the endpoint that carries the job's access token and service URLs.
pub const SYSTEM_VSS_CONNECTION: &str = "SystemVssConnection";

/// The job message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentJobRequestMessage {
    /// `PipelineAgentJobRequest` (legacy path) or similar.
    #[serde(
        default,
        alias = "MessageType",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_type: Option<String>,
    /// The orchestration plan the job belongs to.
    #[serde(alias = "Plan")]
    pub plan: PlanReference,
    /// The timeline that records the job's progress.
    #[serde(default, alias = "Timeline", skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineReference>,
    /// The job's timeline-record id.
    #[serde(default, alias = "JobId")]
    pub job_id: Uuid,
    /// Display name, e.g. `build (3.12)`.
    #[serde(default, alias = "JobDisplayName", deserialize_with = "null_default")]
    pub job_display_name: String,
    /// Job name (the workflow's job key).
    #[serde(default, alias = "JobName", deserialize_with = "null_default")]
    pub job_name: String,
    /// The request id used to renew and finish the job.
    #[serde(default, alias = "RequestId", deserialize_with = "null_default")]
    pub request_id: i64,
    /// Lock expiry (ISO 8601 text, kept verbatim).
    #[serde(
        default,
        alias = "LockedUntil",
        skip_serializing_if = "Option::is_none"
    )]
    pub locked_until: Option<String>,
    /// Endpoints, containers, repositories.
    #[serde(default, alias = "Resources", deserialize_with = "null_default")]
    pub resources: JobResources,
    /// Variables, name → value; names compare case-insensitively.
    #[serde(default, alias = "Variables")]
    pub variables: Variables,
    /// Mask hints.
    #[serde(default, alias = "Mask", deserialize_with = "null_default")]
    pub mask: Vec<MaskHint>,
    /// Expression contexts from the service (`github`, `matrix`, `needs`, …), in order.
    #[serde(
        default,
        alias = "ContextData",
        deserialize_with = "context_map",
        serialize_with = "serialize_context_map"
    )]
    pub context_data: Vec<(String, PipelineContextData)>,
    /// Workspace options.
    #[serde(default, alias = "Workspace", skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceOptions>,
    /// The steps, in order.
    #[serde(default, alias = "Steps", deserialize_with = "null_default")]
    pub steps: Vec<JobStep>,
    /// Files that token `file` ids (1-based) refer to.
    #[serde(default, alias = "FileTable", deserialize_with = "null_default")]
    pub file_table: Vec<String>,
    /// Workflow env then job env (later wins per key).
    #[serde(
        default,
        alias = "EnvironmentVariables",
        deserialize_with = "null_default"
    )]
    pub environment_variables: Vec<TemplateToken>,
    /// `defaults` mappings (`run: {shell, working-directory}`).
    #[serde(default, alias = "Defaults", deserialize_with = "null_default")]
    pub defaults: Vec<TemplateToken>,
    /// Job outputs: name → string expression, evaluated at job end.
    #[serde(default, alias = "JobOutputs", skip_serializing_if = "Option::is_none")]
    pub job_outputs: Option<TemplateToken>,
    /// Job container (kept as a token; containers are not supported in VMs yet).
    #[serde(
        default,
        alias = "JobContainer",
        skip_serializing_if = "Option::is_none"
    )]
    pub job_container: Option<TemplateToken>,
    /// Service containers (kept as a token).
    #[serde(
        default,
        alias = "JobServiceContainers",
        skip_serializing_if = "Option::is_none"
    )]
    pub job_service_containers: Option<TemplateToken>,
    /// Deployment environment.
    #[serde(
        default,
        alias = "ActionsEnvironment",
        skip_serializing_if = "Option::is_none"
    )]
    pub actions_environment: Option<ActionsEnvironmentReference>,
    /// The DAP debugger is requested (actions/runner 2.334.0; accepted, not supported).
    #[serde(
        default,
        alias = "EnableDebugger",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub enable_debugger: bool,
    /// Where the debugger is reached (`tunnelId`, `clusterId`, `hostToken`, `port`; kept raw,
    /// never logged: the host token is a secret).
    #[serde(
        default,
        alias = "DebuggerTunnel",
        skip_serializing_if = "Option::is_none"
    )]
    pub debugger_tunnel: Option<Json>,
    /// `snapshot:` (image name or mapping; accepted, not supported).
    #[serde(default, alias = "Snapshot", skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<TemplateToken>,
    /// Who is billed for the job (run service), echoed when the job is completed.
    #[serde(
        default,
        alias = "BillingOwnerId",
        deserialize_with = "opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub billing_owner_id: Option<String>,
}

/// `plan`: which orchestration plan the job is part of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReference {
    /// Scope (project) id.
    #[serde(default, alias = "ScopeIdentifier")]
    pub scope_identifier: Uuid,
    /// `actions`, `Build`, …
    #[serde(default, alias = "PlanType", deserialize_with = "null_default")]
    pub plan_type: String,
    /// Plan version.
    #[serde(default, alias = "Version", deserialize_with = "null_default")]
    pub version: i32,
    /// Plan id.
    #[serde(default, alias = "PlanId")]
    pub plan_id: Uuid,
    /// Plan group.
    #[serde(default, alias = "PlanGroup", skip_serializing_if = "Option::is_none")]
    pub plan_group: Option<String>,
    /// Artifact URI.
    #[serde(
        default,
        alias = "ArtifactUri",
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_uri: Option<String>,
    /// Artifact location.
    #[serde(
        default,
        alias = "ArtifactLocation",
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_location: Option<String>,
    /// `{id, name}` of the definition (kept raw).
    #[serde(default, alias = "Definition", skip_serializing_if = "Option::is_none")]
    pub definition: Option<Json>,
    /// `{id, name}` of the owner (kept raw).
    #[serde(default, alias = "Owner", skip_serializing_if = "Option::is_none")]
    pub owner: Option<Json>,
}

/// `timeline`: where the job's records go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineReference {
    /// Timeline id.
    #[serde(default, alias = "Id")]
    pub id: Uuid,
    /// Change id.
    #[serde(default, alias = "ChangeId", deserialize_with = "null_default")]
    pub change_id: i32,
    /// Location (usually null).
    #[serde(default, alias = "Location", skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResources {
    /// Service endpoints; one is `SystemVssConnection`.
    #[serde(default, alias = "Endpoints", deserialize_with = "null_default")]
    pub endpoints: Vec<ServiceEndpoint>,
    /// Legacy container resources (raw).
    #[serde(
        default,
        alias = "Containers",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub containers: Vec<Json>,
    /// Repository resources (raw).
    #[serde(
        default,
        alias = "Repositories",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub repositories: Vec<Json>,
}

impl JobResources {
    /// The endpoint with this name (case-insensitive).
    pub fn endpoint(&self, name: &str) -> Option<&ServiceEndpoint> {
        self.endpoints
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
    }
}

/// A service endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    /// Endpoint id (text; often the nil guid).
    #[serde(default, alias = "Id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name, e.g. `SystemVssConnection`.
    #[serde(default, alias = "Name", deserialize_with = "null_default")]
    pub name: String,
    /// Type, e.g. `ExternalTfs`.
    #[serde(default, alias = "Type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Owner.
    #[serde(default, alias = "Owner", skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Base URL of the service.
    #[serde(default, alias = "Url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Description.
    #[serde(
        default,
        alias = "Description",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    /// `{scheme, parameters}`.
    #[serde(
        default,
        alias = "Authorization",
        skip_serializing_if = "Option::is_none"
    )]
    pub authorization: Option<EndpointAuthorization>,
    /// Data keys (`CacheServerUrl`, `GenerateIdTokenUrl`, …), verbatim.
    #[serde(
        default,
        alias = "Data",
        deserialize_with = "lenient_string_map",
        serialize_with = "serialize_string_map"
    )]
    pub data: Vec<(String, String)>,
    /// Shared endpoint.
    #[serde(default, alias = "IsShared", deserialize_with = "null_default")]
    pub is_shared: bool,
    /// Ready.
    #[serde(default, alias = "IsReady", deserialize_with = "null_default")]
    pub is_ready: bool,
}

impl ServiceEndpoint {
    /// A data value by key (case-insensitive).
    pub fn data_value(&self, key: &str) -> Option<&str> {
        lookup_ci(&self.data, key)
    }

    /// An authorization parameter by key (case-insensitive).
    pub fn auth_parameter(&self, key: &str) -> Option<&str> {
        lookup_ci(&self.authorization.as_ref()?.parameters, key)
    }
}

/// `authorization` of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAuthorization {
    /// `OAuth` for the system connection.
    #[serde(default, alias = "Scheme", deserialize_with = "null_default")]
    pub scheme: String,
    /// Parameters (`AccessToken`), verbatim.
    #[serde(
        default,
        alias = "Parameters",
        deserialize_with = "lenient_string_map",
        serialize_with = "serialize_string_map"
    )]
    pub parameters: Vec<(String, String)>,
}

/// What the runner needs from the `SystemVssConnection` endpoint.
#[derive(Debug, Clone, Copy)]
pub struct SystemConnection<'a> {
    /// The endpoint's URL.
    pub url: &'a str,
    /// The job access token (a JWT; never log it).
    pub access_token: &'a str,
    /// The endpoint itself, for its data keys ([`ServiceEndpoint::data_value`]).
    pub endpoint: &'a ServiceEndpoint,
}

/// Why the `SystemVssConnection` endpoint is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemConnectionError {
    /// No endpoint of that name.
    #[error("the job message has no SystemVssConnection endpoint")]
    Missing,
    /// The endpoint has no URL.
    #[error("the SystemVssConnection endpoint has no url")]
    NoUrl,
    /// The endpoint has no `AccessToken` parameter.
    #[error("the SystemVssConnection endpoint has no access token")]
    NoAccessToken,
}

impl AgentJobRequestMessage {
    /// Parses a message from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The `SystemVssConnection` endpoint's URL and access token.
    pub fn system_connection(&self) -> Result<SystemConnection<'_>, SystemConnectionError> {
        let endpoint = self
            .resources
            .endpoint(SYSTEM_VSS_CONNECTION)
            .ok_or(SystemConnectionError::Missing)?;
        let url = endpoint
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or(SystemConnectionError::NoUrl)?;
        let access_token = endpoint
            .auth_parameter("AccessToken")
            .filter(|t| !t.is_empty())
            .ok_or(SystemConnectionError::NoAccessToken)?;
        Ok(SystemConnection {
            url,
            access_token,
            endpoint,
        })
    }

    /// A context from `contextData` by name (case-insensitive).
    pub fn context(&self, name: &str) -> Option<&PipelineContextData> {
        self.context_data
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// A variable's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariableValue {
    /// The value (null reads as empty).
    #[serde(default, alias = "Value", deserialize_with = "null_default")]
    pub value: String,
    /// Whether it is a secret (absent = false).
    #[serde(default, alias = "IsSecret", deserialize_with = "null_default")]
    pub is_secret: bool,
    /// Whether it is read-only.
    #[serde(
        default,
        alias = "IsReadOnly",
        deserialize_with = "null_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_read_only: bool,
}

/// The message's variables, in order, looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Variables(pub Vec<(String, VariableValue)>);

impl Variables {
    /// A variable by name (exact match first, then any casing).
    pub fn get(&self, name: &str) -> Option<&VariableValue> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    }

    /// A variable's value by name.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.value.as_str())
    }

    /// All variables in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &VariableValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Serialize for Variables {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Variables {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Option::<Map<String, Json>>::deserialize(deserializer)?.unwrap_or_default();
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let value = match v {
                // A bare string is accepted as a non-secret value.
                Json::String(s) => VariableValue {
                    value: s,
                    ..VariableValue::default()
                },
                Json::Null => VariableValue::default(),
                other => serde_json::from_value(other).map_err(serde::de::Error::custom)?,
            };
            entries.push((k, value));
        }
        Ok(Variables(entries))
    }
}

/// How a mask hint's value is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskType {
    /// 1: a variable name (unused by the runner).
    Variable,
    /// 2: a regular expression (also masked literally).
    Regex,
    /// Anything else.
    Unknown,
}

/// A mask hint.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskHint {
    /// The kind.
    pub r#type: MaskType,
    /// The value.
    pub value: String,
}

impl Serialize for MaskHint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kind = match self.r#type {
            MaskType::Variable => Json::from("variable"),
            MaskType::Regex => Json::from("regex"),
            MaskType::Unknown => Json::from(0),
        };
        serde_json::json!({"type": kind, "value": self.value}).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MaskHint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Json>::deserialize(deserializer)?;
        let r#type = match enum_code(&object, "type", &[("variable", 1), ("regex", 2)]) {
            Some(1) => MaskType::Variable,
            Some(2) => MaskType::Regex,
            _ => MaskType::Unknown,
        };
        let value = match get_ci(&object, "value") {
            Some(Json::String(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(MaskHint { r#type, value })
    }
}

/// Reads an enum property written either as an int or as a case-insensitive name.
pub(crate) fn enum_code(
    object: &Map<String, Json>,
    key: &str,
    names: &[(&str, i64)],
) -> Option<i64> {
    match get_ci(object, key)? {
        Json::String(s) => names
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map(|(_, code)| *code)
            .or_else(|| s.trim().parse().ok()),
        _ => get_int(object, key),
    }
}

/// `workspace`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceOptions {
    /// `outputs` / `resources` / `all`, or absent.
    #[serde(default, alias = "Clean", skip_serializing_if = "Option::is_none")]
    pub clean: Option<String>,
}

/// `actionsEnvironment`: the deployment environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionsEnvironmentReference {
    /// Environment name.
    #[serde(default, alias = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Environment URL (string slot).
    #[serde(default, alias = "Url", skip_serializing_if = "Option::is_none")]
    pub url: Option<TemplateToken>,
}

fn context_map<'de, D>(deserializer: D) -> Result<Vec<(String, PipelineContextData)>, D::Error>
where
    D: Deserializer<'de>,
{
    let map = Option::<Map<String, Json>>::deserialize(deserializer)?.unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| {
            PipelineContextData::from_json(&v)
                .map(|d| (k, d))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

fn serialize_context_map<S: Serializer>(
    entries: &[(String, PipelineContextData)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

pub use super::step::{ActionStep, JobStep, StepReference};
pub use validate::JobMessageError;

#[cfg(test)]
mod tests;
mod validate;
