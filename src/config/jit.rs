//! Decoding a just-in-time configuration (`encoded_jit_config` of the `generate-jitconfig`
//! REST API, protocol §1.7): base64 of a JSON object mapping file names (`.runner`,
//! `.credentials`, `.credentials_rsaparams`) to the base64 of each file's bytes. The files are
//! parsed with the same lenient readers as files on disk (PascalCase keys, string scalars, BOM).
//!
//! Provenance: `src/Runner.Listener/Runner.cs` (`--jitconfig`),
//! `github-act-runner:runnerconfiguration/compat/actions_runner_compat.go`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::ConfigError;
use super::runner::{
    CREDENTIALS_FILE, Credentials, RSA_PARAMS_FILE, RUNNER_FILE, RunnerSettings, parse_credentials,
    parse_rsa_params, parse_runner_settings,
};
use crate::crypto::rsa::RunnerKey;
use crate::protocol::lenient;

/// The registration carried by a JIT configuration.
#[derive(Debug, Clone)]
pub struct JitConfig {
    /// `.runner`.
    pub runner: RunnerSettings,
    /// `.credentials`.
    pub credentials: Credentials,
    /// `.credentials_rsaparams`.
    pub key: RunnerKey,
}

/// Decodes and validates a JIT configuration blob. Unknown file names are ignored; the three
/// credential files are required.
pub fn decode(blob: &str) -> Result<JitConfig, ConfigError> {
    let outer =
        decode_b64(blob.trim()).ok_or_else(|| invalid("the blob is not base64".to_owned()))?;
    let files: BTreeMap<String, serde_json::Value> = lenient::from_slice(&outer)
        .map_err(|_| invalid("the decoded blob is not a JSON object of files".to_owned()))?;
    let file = |name: &str| -> Result<Vec<u8>, ConfigError> {
        let value = files
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .ok_or_else(|| invalid(format!("it has no {name} file")))?;
        let text = value
            .as_str()
            .ok_or_else(|| invalid(format!("{name} is not a base64 string")))?;
        decode_b64(text).ok_or_else(|| invalid(format!("{name} is not valid base64")))
    };
    let runner = parse_runner_settings(&file(RUNNER_FILE)?)
        .map_err(|e| invalid(format!("{RUNNER_FILE} is not valid: {e}")))?;
    let credentials = parse_credentials(&file(CREDENTIALS_FILE)?)
        .map_err(|e| invalid(format!("{CREDENTIALS_FILE} is not valid: {e}")))?;
    let params = parse_rsa_params(&file(RSA_PARAMS_FILE)?)
        .map_err(|e| invalid(format!("{RSA_PARAMS_FILE} is not valid: {e}")))?;
    let key = RunnerKey::from_params(&params)
        .map_err(|e| invalid(format!("{RSA_PARAMS_FILE} holds no valid RSA key: {e}")))?;
    if runner.agent_name.is_empty() {
        return Err(invalid(format!("{RUNNER_FILE} has no agentName")));
    }
    Ok(JitConfig {
        runner,
        credentials,
        key,
    })
}

/// Encodes a registration as a JIT configuration blob (used by tests and the local service).
pub fn encode(runner: &RunnerSettings, credentials: &Credentials, key: &RunnerKey) -> String {
    let files = serde_json::json!({
        RUNNER_FILE: json_b64(runner),
        CREDENTIALS_FILE: json_b64(credentials),
        RSA_PARAMS_FILE: json_b64(&key.to_params()),
    });
    STANDARD.encode(files.to_string())
}

fn json_b64<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail (string keys only).
    STANDARD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::InvalidJit { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::runner::CredentialData;

    #[test]
    fn encode_then_decode_round_trips() {
        let key = RunnerKey::generate().unwrap();
        let runner = RunnerSettings {
            agent_id: 9,
            agent_name: "jit-1".into(),
            ephemeral: true,
            ..Default::default()
        };
        let credentials = Credentials {
            scheme: "OAuth".into(),
            data: CredentialData {
                client_id: "c".into(),
                ..Default::default()
            },
        };
        let jit = decode(&encode(&runner, &credentials, &key)).unwrap();
        assert_eq!(jit.runner, runner);
        assert_eq!(jit.credentials, credentials);
        assert_eq!(jit.key, key);
    }

    #[test]
    fn pascal_case_string_typed_files_are_accepted() {
        let key = RunnerKey::generate().unwrap();
        let runner = br#"{"AgentId":"12","AgentName":"jit","PoolId":"1","Ephemeral":"True"}"#;
        let creds = br#"{"Scheme":"OAuth","Data":{"ClientId":"c","AuthorizationUrl":"u"}}"#;
        let params = serde_json::to_vec(&key.to_params()).unwrap();
        let blob = STANDARD.encode(
            serde_json::json!({
                ".runner": STANDARD.encode(runner),
                ".credentials": STANDARD.encode(creds),
                ".credentials_rsaparams": STANDARD.encode(params),
            })
            .to_string(),
        );
        let jit = decode(&blob).unwrap();
        assert_eq!(jit.runner.agent_id, 12);
        assert!(jit.runner.ephemeral);
        assert_eq!(jit.credentials.data.client_id, "c");
    }

    #[test]
    fn malformed_blobs_are_rejected_with_a_reason() {
        assert!(
            decode("%%%")
                .unwrap_err()
                .to_string()
                .contains("not base64")
        );
        let no_files = STANDARD.encode(r#"{".runner":"e30="}"#);
        let err = decode(&no_files).unwrap_err().to_string();
        assert!(err.contains("--jitconfig"), "{err}");
    }
}
