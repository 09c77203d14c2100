use serde_json::json;

use super::*;
use crate::protocol::step::{JobStep, StepReference};
use crate::protocol::template_token::TokenKind;

fn sample() -> Json {
    json!({
        "messageType": "PipelineAgentJobRequest",
        "plan": {"scopeIdentifier": "00000000-0000-0000-0000-000000000000", "planType": "actions",
                 "version": 12, "planId": "6f1a0000-0000-0000-0000-000000000001"},
        "timeline": {"id": "2b3c0000-0000-0000-0000-000000000002", "changeId": 1, "location": null},
        "jobId": "9d5e0000-0000-0000-0000-000000000003",
        "jobDisplayName": "build (3.12)", "jobName": "build",
        "requestId": 1234, "lockedUntil": "2024-01-01T00:10:00Z",
        "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "https://pipelines.example/x/",
            "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "eyJ.fake"}},
            "data": {"GenerateIdTokenUrl": "https://id.example/t", "CacheServerUrl": null},
            "isShared": false, "isReady": true}]},
        "variables": {"system.github.token": {"value": "ghs_x", "isSecret": true},
                      "system.github.job": {"value": "build"}, "MY_SECRET": {"value": "s3", "isSecret": true}},
        "mask": [{"type": "regex", "value": "abc.*"}, {"type": 1, "value": "v"}],
        "contextData": {"github": {"t": 2, "d": [{"k": "repository", "v": "octo/hello"}]},
                        "vars": {"t": 2}},
        "workspace": {"clean": "all"},
        "fileTable": [".github/workflows/ci.yml"],
        "environmentVariables": [{"type": 2, "map": [{"Key": "LEVEL", "Value": "1"}]}],
        "defaults": [{"type": 2, "map": [{"Key": "run", "Value": {"type": 2, "map": [{"Key": "shell", "Value": "bash"}]}}]}],
        "jobOutputs": {"type": 2, "map": [{"Key": "out", "Value": {"type": 3, "expr": "steps.s1.outputs.v"}}]},
        "steps": [
            {"type": "action", "id": "d6a50000-0000-0000-0000-000000000004", "name": "build",
             "contextName": "build", "reference": {"type": "script"},
             "condition": "success()", "timeoutInMinutes": {"type": 3, "expr": "matrix.timeout"},
             "inputs": {"type": 2, "map": [{"Key": "script", "Value": "make"}]}},
            {"type": 5, "controlType": "wait", "stepIds": []}
        ],
        "someFutureField": {"x": 1}
    })
}

#[test]
fn camel_case_message_decodes_every_part() {
    let message: AgentJobRequestMessage = serde_json::from_value(sample()).expect("decodes");
    assert_eq!(message.job_name, "build");
    assert_eq!(message.request_id, 1234);
    assert_eq!(message.plan.version, 12);
    assert_eq!(message.timeline.as_ref().map(|t| t.change_id), Some(1));
    assert_eq!(message.variables.value("SYSTEM.GITHUB.JOB"), Some("build"));
    assert!(
        message
            .variables
            .get("my_secret")
            .is_some_and(|v| v.is_secret)
    );
    assert_eq!(message.mask[0].r#type, MaskType::Regex);
    assert_eq!(message.mask[1].r#type, MaskType::Variable);
    assert!(message.context("GitHub").is_some());
    assert_eq!(
        message.workspace.as_ref().and_then(|w| w.clean.as_deref()),
        Some("all")
    );
    assert_eq!(message.steps.len(), 2);
    let step = message.steps[0].as_action().expect("action step");
    assert_eq!(step.reference, StepReference::Script);
    assert!(step.enabled);
    assert!(matches!(
        step.timeout_in_minutes.as_ref().map(|t| &t.kind),
        Some(TokenKind::BasicExpression(e)) if e == "matrix.timeout"
    ));
    assert!(matches!(&message.steps[1], JobStep::Unsupported { kind, .. } if *kind == json!(5)));
}

#[test]
fn system_connection_yields_url_token_and_data() {
    let message: AgentJobRequestMessage = serde_json::from_value(sample()).expect("decodes");
    let connection = message.system_connection().expect("connection");
    assert_eq!(connection.url, "https://pipelines.example/x/");
    assert_eq!(connection.access_token, "eyJ.fake");
    assert_eq!(
        connection.endpoint.data_value("generateidtokenurl"),
        Some("https://id.example/t")
    );
    assert_eq!(connection.endpoint.data_value("CacheServerUrl"), Some(""));

    let mut missing = message.clone();
    missing.resources.endpoints.clear();
    assert_eq!(
        missing.system_connection().err(),
        Some(SystemConnectionError::Missing)
    );
    let mut no_token = message;
    no_token.resources.endpoints[0].authorization = None;
    assert_eq!(
        no_token.system_connection().err(),
        Some(SystemConnectionError::NoAccessToken)
    );
}

/// Upper-cases the first letter of every property name of the known structs (not of
/// dictionaries), as a PascalCase producer would.
fn pascal(json: &Json, dictionary: bool) -> Json {
    match json {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let is_dict = matches!(
                        k.as_str(),
                        "variables" | "data" | "parameters" | "contextData"
                    );
                    let key = if dictionary {
                        k.clone()
                    } else {
                        let mut chars = k.chars();
                        chars
                            .next()
                            .map(|c| c.to_uppercase().chain(chars).collect())
                            .unwrap_or_default()
                    };
                    let inner = if matches!(k.as_str(), "contextData") || dictionary {
                        // Context data and variable values: leave their shape alone except the
                        // variable value objects, which are structs.
                        if k == "variables" || dictionary {
                            pascal_values(v)
                        } else {
                            v.clone()
                        }
                    } else {
                        pascal(v, is_dict)
                    };
                    (key, inner)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(|i| pascal(i, false)).collect()),
        other => other.clone(),
    }
}

fn pascal_values(json: &Json) -> Json {
    match json {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pascal(v, false)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn pascal_case_message_decodes_the_same() {
    let camel: AgentJobRequestMessage = serde_json::from_value(sample()).expect("camel");
    let pascal_json = pascal(&sample(), false);
    assert!(
        pascal_json.get("JobId").is_some(),
        "test helper produced PascalCase"
    );
    let mut pascal: AgentJobRequestMessage = serde_json::from_value(pascal_json).expect("pascal");
    let mut camel = camel;
    // Unsupported steps keep their raw JSON (with its own casing); compare their kind only.
    let (JobStep::Unsupported { kind: a, .. }, JobStep::Unsupported { kind: b, .. }) =
        (camel.steps.remove(1), pascal.steps.remove(1))
    else {
        panic!("second step should be unsupported")
    };
    assert_eq!(a, b);
    assert_eq!(camel, pascal);
}

#[test]
fn message_round_trips_through_serialization() {
    let message: AgentJobRequestMessage = serde_json::from_value(sample()).expect("decodes");
    let written = serde_json::to_value(&message).expect("encodes");
    let again: AgentJobRequestMessage =
        serde_json::from_value(written.clone()).expect("re-decodes");
    assert_eq!(message, again);
    assert_eq!(
        written["steps"][1],
        sample()["steps"][1],
        "unsupported steps kept verbatim"
    );
}

#[test]
fn nulls_and_missing_optional_parts_are_tolerated() {
    let message: AgentJobRequestMessage = serde_json::from_value(json!({
        "plan": {"planId": "6f1a0000-0000-0000-0000-000000000001"},
        "jobId": "9d5e0000-0000-0000-0000-000000000003",
        "resources": null, "variables": {"a": null, "b": "plain"}, "mask": null, "steps": null,
        "contextData": null, "fileTable": null
    }))
    .expect("decodes");
    assert!(message.steps.is_empty());
    assert_eq!(message.variables.value("a"), Some(""));
    assert_eq!(message.variables.value("b"), Some("plain"));
}

#[test]
fn malformed_parts_are_errors_not_panics() {
    let mut bad = sample();
    bad["contextData"]["github"] = json!({"t": 42});
    assert!(serde_json::from_value::<AgentJobRequestMessage>(bad).is_err());
    let mut bad = sample();
    bad["jobId"] = json!("not-a-guid");
    assert!(serde_json::from_value::<AgentJobRequestMessage>(bad).is_err());
    let mut no_plan = sample();
    no_plan.as_object_mut().map(|o| o.remove("plan"));
    assert!(serde_json::from_value::<AgentJobRequestMessage>(no_plan).is_err());
}
