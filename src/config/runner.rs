//! One registration on disk: `.runner` ([`RunnerSettings`]), `.credentials` ([`Credentials`])
//! and `.credentials_rsaparams` (the RSA key), in the official runner's formats
//! (`src/Runner.Common/ConfigurationStore.cs`, `src/Runner.Listener/Configuration/
//! RSAFileKeyManager.cs`, `CredentialManager.cs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConfigError, fs};
use crate::crypto::rsa::{RsaParams, RunnerKey};
use crate::protocol::lenient;

/// File name of the runner settings.
pub const RUNNER_FILE: &str = ".runner";
/// File name of the OAuth credentials.
pub const CREDENTIALS_FILE: &str = ".credentials";
/// File name of the RSA key.
pub const RSA_PARAMS_FILE: &str = ".credentials_rsaparams";
/// Files the official runner may leave besides ours; `remove` deletes them too.
pub const MIGRATED_FILES: &[&str] = &[".runner_migrated", ".credentials_migrated"];
/// Subdirectory of the runner directory holding one directory per registration.
pub const RUNNERS_DIR: &str = "runners";
/// Credential scheme of a runner registration.
pub const SCHEME_OAUTH: &str = "OAuth";

/// `.runner`: where and as what this runner is registered. Defaults are omitted on write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSettings {
    /// Agent (runner) id.
    #[serde(deserialize_with = "lenient::u64")]
    pub agent_id: u64,
    /// Runner name.
    pub agent_name: String,
    /// Pool (runner group) id.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub pool_id: u64,
    /// Pool (runner group) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_name: Option<String>,
    /// Legacy Actions service ("tenant") URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_url: String,
    /// The repository or organisation URL registered with.
    #[serde(default)]
    pub git_hub_url: String,
    /// Work folder name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_folder: Option<String>,
    /// Listen through the broker.
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub use_v2_flow: bool,
    /// Broker URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url_v2: Option<String>,
    /// Registered through the runner-admin REST flow.
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub use_runner_admin_flow: bool,
    /// One job, then the server deletes the runner.
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub ephemeral: bool,
    /// The server does not offer updates.
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub disable_update: bool,
    /// Do not recover a previous session.
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub skip_session_recover: bool,
    /// `false` for GHES (written only when false).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_hosted_server: Option<bool>,
    /// Labels the runner registered with (ghrunner-vm extension; the official file has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl RunnerSettings {
    /// Keys of the file, for case-insensitive reading.
    pub const FIELDS: &'static [&'static str] = &[
        "agentId",
        "agentName",
        "poolId",
        "poolName",
        "serverUrl",
        "gitHubUrl",
        "workFolder",
        "useV2Flow",
        "serverUrlV2",
        "useRunnerAdminFlow",
        "ephemeral",
        "disableUpdate",
        "skipSessionRecover",
        "isHostedServer",
        "labels",
    ];
}

/// `.credentials`: the OAuth credential of the registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// `OAuth` for runner registrations.
    pub scheme: String,
    /// Scheme data (all values are strings on disk).
    pub data: CredentialData,
}

/// `.credentials.data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialData {
    /// OAuth client id (GUID).
    #[serde(default, deserialize_with = "lenient::string")]
    pub client_id: String,
    /// Token endpoint and JWT audience.
    #[serde(default, deserialize_with = "lenient::string")]
    pub authorization_url: String,
    /// `"True"` / `"False"`: sign the client assertion with PS256.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_fips_cryptography: Option<String>,
    /// `"true"` when auth migration is on by default (runner-admin flow).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_auth_migration_by_default: Option<String>,
    /// Token endpoint used while migrating.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_url_v2: Option<String>,
    /// Overrides the POST target of the token request (the audience stays `authorizationUrl`).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_endpoint_url: Option<String>,
}

impl CredentialData {
    /// Keys of `data`, for case-insensitive reading.
    pub const FIELDS: &'static [&'static str] = &[
        "clientId",
        "authorizationUrl",
        "requireFipsCryptography",
        "enableAuthMigrationByDefault",
        "authorizationUrlV2",
        "oauthEndpointUrl",
    ];

    /// Whether the client assertion must be signed with PS256.
    pub fn require_fips(&self) -> bool {
        self.require_fips_cryptography
            .as_deref()
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Where to POST the token request.
    pub fn token_endpoint(&self) -> &str {
        self.oauth_endpoint_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.authorization_url)
    }
}

/// One registration: its directory, `.runner`, `.credentials` and key.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `<dir>/runners/<name>`.
    pub dir: PathBuf,
    /// `.runner`.
    pub runner: RunnerSettings,
    /// `.credentials`.
    pub credentials: Credentials,
    /// `.credentials_rsaparams`.
    pub key: RunnerKey,
}

impl Registration {
    /// Loads the three files of a registration directory.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let runner = load_runner_settings(&dir.join(RUNNER_FILE))?;
        let credentials = load_credentials(&dir.join(CREDENTIALS_FILE))?;
        let key = load_key(&dir.join(RSA_PARAMS_FILE))?;
        Ok(Registration {
            dir: dir.to_owned(),
            runner,
            credentials,
            key,
        })
    }

    /// Writes the three files atomically with mode 0600 (the key first, `.runner` last, so
    /// a registration without `.runner` is never mistaken for a complete one).
    pub fn save(&self) -> Result<(), ConfigError> {
        fs::create_private_dir(&self.dir)?;
        write_json(&self.dir.join(RSA_PARAMS_FILE), &self.key.to_params())?;
        write_json(&self.dir.join(CREDENTIALS_FILE), &self.credentials)?;
        write_json(&self.dir.join(RUNNER_FILE), &self.runner)
    }

    /// Deletes the registration's files (and the official runner's `_migrated` files), then
    /// the directory if it is empty.
    pub fn delete_files(dir: &Path) -> Result<(), ConfigError> {
        for name in [RUNNER_FILE, CREDENTIALS_FILE, RSA_PARAMS_FILE]
            .iter()
            .chain(MIGRATED_FILES)
        {
            fs::remove_if_exists(&dir.join(name))?;
        }
        // Other files (e.g. the user's own) keep the directory alive; that is fine.
        let _ = std::fs::remove_dir(dir);
        Ok(())
    }
}

/// `<root>/runners`.
pub fn runners_dir(root: &Path) -> PathBuf {
    root.join(RUNNERS_DIR)
}

/// `<root>/runners/<name>`, after checking the name is a safe directory name.
pub fn registration_dir(root: &Path, name: &str) -> Result<PathBuf, ConfigError> {
    validate_name(name)?;
    Ok(runners_dir(root).join(name))
}

/// Whether a registration of this name exists (its `.runner` file does).
pub fn registration_exists(root: &Path, name: &str) -> Result<bool, ConfigError> {
    Ok(registration_dir(root, name)?.join(RUNNER_FILE).exists())
}

/// Directories of every registration under `root`, sorted by name.
pub fn list_registration_dirs(root: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = runners_dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        if entry.path().join(RUNNER_FILE).is_file() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Checks a runner name can be a directory name: non-empty, at most 64 characters of
/// letters, digits, `.`, `_` and `-`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    /// Longest runner name GitHub accepts.
    const MAX_NAME_LEN: usize = 64;
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Parses `.runner` bytes (any key casing, BOM, string scalars).
pub fn parse_runner_settings(bytes: &[u8]) -> serde_json::Result<RunnerSettings> {
    let mut value: Value = lenient::from_slice(bytes)?;
    if let Value::Object(map) = &mut value {
        lenient::normalize_keys(map, RunnerSettings::FIELDS);
    }
    serde_json::from_value(value)
}

/// Parses `.credentials` bytes (any key casing, BOM).
pub fn parse_credentials(bytes: &[u8]) -> serde_json::Result<Credentials> {
    let mut value: Value = lenient::from_slice(bytes)?;
    if let Value::Object(map) = &mut value {
        lenient::normalize_keys(map, &["scheme", "data"]);
        if let Some(Value::Object(data)) = map.get_mut("data") {
            lenient::normalize_keys(data, CredentialData::FIELDS);
        }
    }
    serde_json::from_value(value)
}

/// Parses `.credentials_rsaparams` bytes (any key casing, BOM).
pub fn parse_rsa_params(bytes: &[u8]) -> serde_json::Result<RsaParams> {
    let mut value: Value = lenient::from_slice(bytes)?;
    if let Value::Object(map) = &mut value {
        lenient::normalize_keys(map, RsaParams::FIELDS);
    }
    serde_json::from_value(value)
}

/// Loads `.runner` (not secret: no permission check).
pub fn load_runner_settings(path: &Path) -> Result<RunnerSettings, ConfigError> {
    let bytes = fs::read_required(path)?;
    parse_runner_settings(&bytes).map_err(|source| corrupt(path, "runner settings", source))
}

fn load_credentials(path: &Path) -> Result<Credentials, ConfigError> {
    let bytes = fs::read_secret(path)?;
    parse_credentials(&bytes).map_err(|source| corrupt(path, "credentials", source))
}

fn load_key(path: &Path) -> Result<RunnerKey, ConfigError> {
    let bytes = fs::read_secret(path)?;
    let params = parse_rsa_params(&bytes).map_err(|source| corrupt(path, "RSA key", source))?;
    RunnerKey::from_params(&params).map_err(|source| ConfigError::InvalidKey {
        path: path.to_owned(),
        source,
    })
}

fn corrupt(path: &Path, what: &'static str, source: serde_json::Error) -> ConfigError {
    ConfigError::Corrupt {
        path: path.to_owned(),
        what,
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ConfigError> {
    // Serialising these plain structs cannot fail (string keys, no non-finite floats).
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| ConfigError::Corrupt {
        path: path.to_owned(),
        what: "JSON",
        source,
    })?;
    bytes.push(b'\n');
    fs::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_settings_accept_pascal_case_string_scalars_and_bom() {
        let text = "\u{feff}{\"AgentId\":\"42\",\"AGENTNAME\":\"r1\",\"PoolId\":\"1\",\
                    \"ServerUrl\":\"https://t/\",\"GitHubUrl\":\"https://g/o/r\",\
                    \"Ephemeral\":\"True\",\"UseV2Flow\":true,\"Unknown\":1}";
        let s = parse_runner_settings(text.as_bytes()).unwrap();
        assert_eq!(s.agent_id, 42);
        assert_eq!(s.agent_name, "r1");
        assert_eq!(s.pool_id, 1);
        assert!(s.ephemeral && s.use_v2_flow);
        let out = serde_json::to_value(&s).unwrap();
        assert_eq!(out["agentId"], 42);
        assert!(out.get("disableUpdate").is_none(), "defaults are omitted");
    }

    #[test]
    fn credentials_accept_any_casing() {
        let c = parse_credentials(
            br#"{"Scheme":"OAuth","Data":{"ClientId":"c","AuthorizationURL":"https://a/",
                 "RequireFipsCryptography":"True","oauthEndpointUrl":"https://o/"}}"#,
        )
        .unwrap();
        assert_eq!(c.scheme, "OAuth");
        assert_eq!(c.data.client_id, "c");
        assert!(c.data.require_fips());
        assert_eq!(c.data.token_endpoint(), "https://o/");
    }

    #[test]
    fn names_must_be_safe_directory_names() {
        assert!(validate_name("build-01.x_y").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
