//! Wire types of runner registration: the `actions/runner-registration` token exchange
//! (snake_case REST), `connectionData`, pools and `TaskAgent` of the legacy VSS service
//! (camelCase, PascalCase accepted), and the runner-admin ("v2") REST calls (snake_case).
//!
//! Provenance: `src/Sdk/DTWebApi/WebApi/TaskAgent.cs`, `TaskAgentReference.cs`,
//! `TaskAgentPool.cs`, `TaskAgentAuthorization.cs`, `TaskAgentPublicKey.cs`, `AgentLabel.cs`,
//! `Runner.cs`, `RunnerGroup.cs`, `ListRunnersResponse.cs`, `src/Sdk/WebApi/WebApi/Contracts/
//! Location/ConnectionData.cs`, `src/Runner.Listener/Configuration/CredentialManager.cs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;
use super::secret::Secret;
use super::vss::Properties;

/// Body of `POST /actions/runner-registration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerRegistrationRequest {
    /// The repository or organisation URL the runner registers with.
    pub url: String,
    /// `register` or `remove`.
    pub runner_event: String,
}

/// Answer of `POST /actions/runner-registration` ("GitHubAuthResult").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantCredential {
    /// The legacy Actions service ("tenant", `serverUrl`).
    pub url: String,
    /// Token schema; only `OAuthAccessToken` is supported.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub token_schema: Option<String>,
    /// Short-lived bearer token for the tenant.
    pub token: Secret,
    /// Whether to register through the runner-admin REST flow.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub use_v2_flow: Option<bool>,
}

/// `GET {tenant}_apis/connectionData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionData {
    /// Instance id of the service.
    #[serde(default, alias = "InstanceId", skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Location service data (service definitions).
    #[serde(
        default,
        alias = "LocationServiceData",
        skip_serializing_if = "Option::is_none"
    )]
    pub location_service_data: Option<LocationServiceData>,
}

/// `connectionData.locationServiceData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationServiceData {
    /// Owner id of the service.
    #[serde(
        default,
        alias = "ServiceOwner",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_owner: Option<String>,
    /// Service definitions (route discovery).
    #[serde(default, alias = "ServiceDefinitions")]
    pub service_definitions: Vec<ServiceDefinition>,
}

/// One entry of `serviceDefinitions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDefinition {
    /// Service type, e.g. `distributedtask`.
    #[serde(
        default,
        alias = "ServiceType",
        deserialize_with = "lenient::opt_string"
    )]
    pub service_type: Option<String>,
    /// Location id (GUID).
    #[serde(
        default,
        alias = "Identifier",
        deserialize_with = "lenient::opt_string"
    )]
    pub identifier: Option<String>,
    /// Display name.
    #[serde(
        default,
        alias = "DisplayName",
        deserialize_with = "lenient::opt_string"
    )]
    pub display_name: Option<String>,
    /// Route template relative to the service.
    #[serde(
        default,
        alias = "RelativePath",
        deserialize_with = "lenient::opt_string"
    )]
    pub relative_path: Option<String>,
}

/// A runner group of the legacy service (`TaskAgentPool`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentPool {
    /// Pool id.
    #[serde(alias = "Id", deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Pool (runner group) name.
    #[serde(alias = "Name")]
    pub name: String,
    /// Hosted pools cannot take self-hosted runners.
    #[serde(default, alias = "IsHosted", deserialize_with = "lenient::bool")]
    pub is_hosted: bool,
    /// The default group is the internal one.
    #[serde(default, alias = "IsInternal", deserialize_with = "lenient::bool")]
    pub is_internal: bool,
    /// `automation` for runner groups (string or integer on the wire).
    #[serde(default, alias = "PoolType", skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<Value>,
    /// Number of runners.
    #[serde(default, alias = "Size", deserialize_with = "lenient::opt_u64")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Label kinds: system labels (`self-hosted`, OS, architecture) and user labels.
pub const LABEL_TYPE_SYSTEM: &str = "system";
/// A label chosen by the user.
pub const LABEL_TYPE_USER: &str = "user";

/// A runner label (`AgentLabel`), also used by the runner-admin flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLabel {
    /// Label id (0 when adding).
    #[serde(default, alias = "Id", deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Label text.
    #[serde(alias = "Name")]
    pub name: String,
    /// [`LABEL_TYPE_SYSTEM`] or [`LABEL_TYPE_USER`].
    #[serde(rename = "type", alias = "Type", default = "user_label_type")]
    pub label_type: String,
}

fn user_label_type() -> String {
    LABEL_TYPE_USER.to_owned()
}

impl AgentLabel {
    /// A system label.
    pub fn system(name: &str) -> Self {
        AgentLabel {
            id: 0,
            name: name.to_owned(),
            label_type: LABEL_TYPE_SYSTEM.to_owned(),
        }
    }

    /// A user label.
    pub fn user(name: &str) -> Self {
        AgentLabel {
            id: 0,
            name: name.to_owned(),
            label_type: LABEL_TYPE_USER.to_owned(),
        }
    }
}

/// The runner's RSA public key: big-endian base64 of the exponent and modulus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentPublicKey {
    /// Public exponent (`AQAB` for 65537).
    #[serde(alias = "Exponent")]
    pub exponent: String,
    /// Modulus (256 bytes for RSA-2048).
    #[serde(alias = "Modulus")]
    pub modulus: String,
}

/// `TaskAgent.authorization`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentAuthorization {
    /// OAuth token endpoint (and JWT audience); set by the server.
    #[serde(
        default,
        alias = "AuthorizationUrl",
        skip_serializing_if = "Option::is_none"
    )]
    pub authorization_url: Option<String>,
    /// OAuth client id (GUID); set by the server.
    #[serde(default, alias = "ClientId", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The runner's public key.
    #[serde(default, alias = "PublicKey", skip_serializing_if = "Option::is_none")]
    pub public_key: Option<TaskAgentPublicKey>,
}

/// A runner as the legacy service sees it (`TaskAgent`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgent {
    /// Agent id (0 when adding).
    #[serde(default, alias = "Id", deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Runner name.
    #[serde(default, alias = "Name")]
    pub name: String,
    /// Runner version reported to the server.
    #[serde(default, alias = "Version")]
    pub version: String,
    /// Host OS description.
    #[serde(
        default,
        alias = "OsDescription",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_description: Option<String>,
    /// Jobs at a time (always 1).
    #[serde(
        default,
        alias = "MaxParallelism",
        deserialize_with = "lenient::opt_u64"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u64>,
    /// One job, then the server deletes the runner.
    #[serde(default, alias = "Ephemeral", deserialize_with = "lenient::opt_bool")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    /// Do not offer updates.
    #[serde(
        default,
        alias = "DisableUpdate",
        deserialize_with = "lenient::opt_bool"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_update: Option<bool>,
    /// Labels.
    #[serde(default, alias = "Labels")]
    pub labels: Vec<AgentLabel>,
    /// Credentials.
    #[serde(
        default,
        alias = "Authorization",
        skip_serializing_if = "Option::is_none"
    )]
    pub authorization: Option<TaskAgentAuthorization>,
    /// Creation time (`0001-01-01T00:00:00` = unset).
    #[serde(default, alias = "CreatedOn", skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    /// Status (`online`/`offline` or an integer).
    #[serde(default, alias = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Provisioning state.
    #[serde(
        default,
        alias = "ProvisioningState",
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioning_state: Option<String>,
    /// Server-set properties (`ServerUrlV2`, `UseV2Flow`, `RequireFipsCryptography`).
    #[serde(
        default,
        alias = "Properties",
        skip_serializing_if = "Properties::is_empty"
    )]
    pub properties: Properties,
}

/// Agent property: broker URL that forces the v2 listener.
pub const PROP_SERVER_URL_V2: &str = "ServerUrlV2";
/// Agent property: listen through the broker.
pub const PROP_USE_V2_FLOW: &str = "UseV2Flow";
/// Agent property: sign the client assertion with PS256.
pub const PROP_REQUIRE_FIPS: &str = "RequireFipsCryptography";

/// A runner group of the runner-admin REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerGroup {
    /// Group id.
    #[serde(deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Group name.
    pub name: String,
    /// Whether this is the default group.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub default: bool,
    /// Hosted groups cannot take self-hosted runners.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub is_hosted: bool,
}

/// `GET {entity}/runner-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerGroupList {
    /// Total number of groups.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub total_count: u64,
    /// The groups.
    #[serde(default)]
    pub runner_groups: Vec<RunnerGroup>,
}

/// A runner of the runner-admin REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerSummary {
    /// Runner id.
    #[serde(deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Runner name.
    pub name: String,
    /// `online` / `offline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `GET {entity}/runners?name=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListRunnersResponse {
    /// Total number of runners.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub total_count: u64,
    /// The runners.
    #[serde(default)]
    pub runners: Vec<RunnerSummary>,
}

/// Body of `POST /actions/runners/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerAdminRegisterRequest {
    /// Repository or organisation URL.
    pub url: String,
    /// Runner group id.
    #[serde(deserialize_with = "lenient::u64")]
    pub group_id: u64,
    /// Runner name.
    pub name: String,
    /// Runner version.
    pub version: String,
    /// Do not offer updates.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub updates_disabled: bool,
    /// One job, then deleted.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub ephemeral: bool,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<AgentLabel>,
    /// `<RSAKeyValue><Modulus>..</Modulus><Exponent>..</Exponent></RSAKeyValue>`.
    pub public_key: String,
    /// Id of the runner being replaced.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<u64>,
    /// Replace the runner named by `runner_id`.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
}

/// `authorization` of the runner-admin register answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerAdminAuthorization {
    /// OAuth token endpoint.
    pub authorization_url: String,
    /// Legacy token endpoint during auth migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_authorization_url: Option<String>,
    /// Broker URL (`ServerUrlV2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// OAuth client id.
    pub client_id: String,
}

/// Answer of `POST /actions/runners/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerAdminRegisterResponse {
    /// Runner id.
    #[serde(deserialize_with = "lenient::u64")]
    pub id: u64,
    /// Runner name.
    pub name: String,
    /// OAuth credential details.
    pub authorization: RunnerAdminAuthorization,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_agent_accepts_pascal_case_and_string_scalars() {
        let agent: TaskAgent = serde_json::from_str(
            r#"{"Id":"7","Name":"r","Version":"2.330.0","Ephemeral":"True",
                "Labels":[{"Id":0,"Name":"self-hosted","Type":"system"}],
                "Authorization":{"ClientId":"c","AuthorizationUrl":"u"},"Extra":1}"#,
        )
        .unwrap();
        assert_eq!(agent.id, 7);
        assert_eq!(agent.ephemeral, Some(true));
        assert_eq!(agent.labels, vec![AgentLabel::system("self-hosted")]);
        let auth = agent.authorization.unwrap();
        assert_eq!(auth.client_id.as_deref(), Some("c"));
    }

    #[test]
    fn tenant_credential_debug_hides_token() {
        let t: TenantCredential = serde_json::from_str(
            r#"{"url":"u","token":"sekrit","token_schema":"OAuthAccessToken"}"#,
        )
        .unwrap();
        assert_eq!(t.use_v2_flow, None);
        assert!(!format!("{t:?}").contains("sekrit"));
    }
}
