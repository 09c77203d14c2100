//! Every fixture under `protocol-fixtures/` round-trips through its wire type
//! (deserialize → serialize → deserialize gives the same value), tolerates unknown fields, and,
//! for camelCase (VSS) types, PascalCase keys.
//!
//! To add a fixture: put the file under `protocol-fixtures/` and add one row to [`FIXTURES`]
//! (path, checker, casing). A file that is in no row and not under a folder of
//! [`COVERED_ELSEWHERE`] fails [`every_fixture_file_is_listed`].

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use ghrunner_vm::config::jit;
use ghrunner_vm::config::runner::{parse_credentials, parse_rsa_params, parse_runner_settings};
use ghrunner_vm::crypto::rsa::RunnerKey;
use ghrunner_vm::protocol::oauth::{TokenErrorResponse, TokenResponse};
use ghrunner_vm::protocol::registration::{
    ConnectionData, ListRunnersResponse, RunnerAdminRegisterRequest, RunnerAdminRegisterResponse,
    RunnerGroupList, RunnerRegistrationRequest, TaskAgent, TaskAgentPool, TenantCredential,
};
use ghrunner_vm::protocol::vss::{VssList, WrappedException};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Key casing of a fixture's wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Casing {
    /// VSS camelCase: PascalCase must be accepted too.
    Camel,
    /// GitHub REST / OAuth snake_case.
    Snake,
    /// Not JSON (checked by its own function).
    Other,
}

/// Parses bytes into a value, serialises it back, and compares after a second parse.
type Checker = fn(&[u8]) -> Result<(), String>;

/// path (relative to `protocol-fixtures/`) → checker, casing.
const FIXTURES: &[(&str, Checker, Casing)] = &[
    (
        "registration/runner-registration-request.json",
        roundtrip::<RunnerRegistrationRequest>,
        Casing::Snake,
    ),
    (
        "registration/runner-registration-response.json",
        roundtrip::<TenantCredential>,
        Casing::Snake,
    ),
    (
        "registration/connection-data.json",
        roundtrip::<ConnectionData>,
        Casing::Camel,
    ),
    (
        "registration/pools.json",
        roundtrip::<VssList<TaskAgentPool>>,
        Casing::Camel,
    ),
    (
        "registration/agent-add-request.json",
        roundtrip::<TaskAgent>,
        Casing::Camel,
    ),
    (
        "registration/agent-add-response.json",
        agent_response,
        Casing::Camel,
    ),
    (
        "registration/agents-list.json",
        roundtrip::<VssList<TaskAgent>>,
        Casing::Camel,
    ),
    (
        "registration/runner-admin-register-request.json",
        roundtrip::<RunnerAdminRegisterRequest>,
        Casing::Snake,
    ),
    (
        "registration/runner-admin-register-response.json",
        roundtrip::<RunnerAdminRegisterResponse>,
        Casing::Snake,
    ),
    (
        "registration/runner-groups.json",
        roundtrip::<RunnerGroupList>,
        Casing::Snake,
    ),
    (
        "registration/runners-list.json",
        roundtrip::<ListRunnersResponse>,
        Casing::Snake,
    ),
    (
        "registration/wrapped-exception.json",
        roundtrip::<WrappedException>,
        Casing::Camel,
    ),
    (
        "oauth/token-response.json",
        roundtrip::<TokenResponse>,
        Casing::Snake,
    ),
    (
        "oauth/token-error.json",
        roundtrip::<TokenErrorResponse>,
        Casing::Snake,
    ),
    ("credentials/runner.json", runner_file, Casing::Camel),
    (
        "credentials/runner-jit-pascal.json",
        runner_file,
        Casing::Camel,
    ),
    (
        "credentials/credentials.json",
        credentials_file,
        Casing::Camel,
    ),
    (
        "credentials/credentials_rsaparams.json",
        rsaparams_file,
        Casing::Camel,
    ),
    ("credentials/jitconfig.txt", jitconfig_file, Casing::Other),
];

/// Folders whose fixtures other test files check (folder → test).
const COVERED_ELSEWHERE: &[(&str, &str)] = &[
    ("actions/", "tests/protocol_fixtures.rs (action resolution)"),
    ("jobs/", "tests/plan_golden.rs"),
    ("jobs-lifecycle/", "lifecycle wire-type tests"),
    ("messages/", "message wire-type tests"),
    ("runner-versions/", "tests/runner_changes.rs"),
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures")
}

fn roundtrip<T: DeserializeOwned + Serialize + PartialEq + Debug>(
    bytes: &[u8],
) -> Result<(), String> {
    let first: T = ghrunner_vm::protocol::lenient::from_slice(bytes).map_err(|e| e.to_string())?;
    let text = serde_json::to_vec(&first).map_err(|e| e.to_string())?;
    let second: T = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if first == second {
        Ok(())
    } else {
        Err(format!("{first:?} != {second:?}"))
    }
}

fn agent_response(bytes: &[u8]) -> Result<(), String> {
    roundtrip::<TaskAgent>(bytes)?;
    let agent: TaskAgent = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    // The properties the runner acts on are readable.
    let props = &agent.properties;
    if props.get_string("serverurlv2").is_none() || props.get_bool("UseV2Flow") != Some(true) {
        return Err("properties not readable".into());
    }
    let auth = agent.authorization.ok_or("no authorization")?;
    auth.client_id.ok_or("no clientId")?;
    Ok(())
}

fn runner_file(bytes: &[u8]) -> Result<(), String> {
    let first = parse_runner_settings(bytes).map_err(|e| e.to_string())?;
    let second =
        parse_runner_settings(&serde_json::to_vec(&first).unwrap()).map_err(|e| e.to_string())?;
    if first.agent_id == 0 || first.agent_name.is_empty() {
        return Err("agentId/agentName not read".into());
    }
    if first == second {
        Ok(())
    } else {
        Err(format!("{first:?} != {second:?}"))
    }
}

fn credentials_file(bytes: &[u8]) -> Result<(), String> {
    let first = parse_credentials(bytes).map_err(|e| e.to_string())?;
    let second =
        parse_credentials(&serde_json::to_vec(&first).unwrap()).map_err(|e| e.to_string())?;
    if first.data.client_id.is_empty() {
        return Err("clientId not read".into());
    }
    if first == second {
        Ok(())
    } else {
        Err(format!("{first:?} != {second:?}"))
    }
}

fn rsaparams_file(bytes: &[u8]) -> Result<(), String> {
    let params = parse_rsa_params(bytes).map_err(|e| e.to_string())?;
    let key = RunnerKey::from_params(&params).map_err(|e| e.to_string())?;
    // Our writer reproduces the file's values exactly (same .NET lengths).
    if key.to_params() != params {
        return Err("re-encoded parameters differ".into());
    }
    Ok(())
}

fn jitconfig_file(bytes: &[u8]) -> Result<(), String> {
    let blob = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let config = jit::decode(blob).map_err(|e| e.to_string())?;
    let again = jit::decode(&jit::encode(
        &config.runner,
        &config.credentials,
        &config.key,
    ))
    .map_err(|e| e.to_string())?;
    if again.runner != config.runner
        || again.credentials != config.credentials
        || again.key != config.key
    {
        return Err("JIT config does not round-trip".into());
    }
    Ok(())
}

/// Upper-cases the first letter of every object key (`$type` and the like stay).
fn pascal_case(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = match chars.next() {
                        Some(c) => c.to_uppercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, pascal_case(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pascal_case).collect()),
        other => other.clone(),
    }
}

/// Adds an unknown field to every object.
fn with_unknown_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), with_unknown_fields(v)))
                .collect();
            out.insert("someFutureField".into(), Value::from(1));
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(with_unknown_fields).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_listed_fixture_round_trips() {
    for (path, check, _) in FIXTURES {
        let bytes =
            std::fs::read(fixtures_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        check(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn fixtures_tolerate_unknown_fields_and_pascal_case() {
    for (path, check, casing) in FIXTURES {
        if *casing == Casing::Other {
            continue;
        }
        let bytes = std::fs::read(fixtures_dir().join(path)).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let unknown = serde_json::to_vec(&with_unknown_fields(&value)).unwrap();
        check(&unknown).unwrap_or_else(|e| panic!("{path} with unknown fields: {e}"));
        if *casing == Casing::Camel {
            let pascal = serde_json::to_vec(&pascal_case(&value)).unwrap();
            check(&pascal).unwrap_or_else(|e| panic!("{path} in PascalCase: {e}"));
        }
    }
}

#[test]
fn pascal_case_reads_the_same_values() {
    // Equality, not just success: PascalCase must not silently drop fields.
    let bytes = std::fs::read(fixtures_dir().join("registration/agent-add-response.json")).unwrap();
    let camel: TaskAgent = serde_json::from_slice(&bytes).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    let pascal: TaskAgent = serde_json::from_value(pascal_case(&value)).unwrap();
    assert_eq!(camel, pascal);
    let bytes = std::fs::read(fixtures_dir().join("credentials/runner.json")).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    let camel = parse_runner_settings(&bytes).unwrap();
    let pascal = parse_runner_settings(&serde_json::to_vec(&pascal_case(&value)).unwrap()).unwrap();
    assert_eq!(camel, pascal);
}

#[test]
fn every_fixture_file_is_listed() {
    let root = fixtures_dir();
    let mut stack = vec![root.clone()];
    let mut unlisted = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let listed = rel == "README.md"
                || rel == "RUNNER-VERSIONS.md"
                || FIXTURES.iter().any(|(p, _, _)| *p == rel)
                || COVERED_ELSEWHERE
                    .iter()
                    .any(|(prefix, _)| rel.starts_with(prefix));
            if !listed {
                unlisted.push(rel);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "fixtures not listed in tests/fixtures.rs FIXTURES: {unlisted:?}"
    );
}
