//! Every fixture under `protocol-fixtures/messages/`, `protocol-fixtures/jobs-lifecycle/` and
//! `protocol-fixtures/actions/` deserializes into its wire type and serializes back to the same
//! JSON document.

use std::path::Path;

use ghrunner_vm::protocol::actions::{
    ActionDownloadInfoCollection, ActionReferenceList, ResolveActionsRequest,
    ResolveActionsResponse, lookup_key,
};
use ghrunner_vm::protocol::lifecycle::{
    AcquireJobRequest, CompleteJobRequest, JobCompletedEvent, JobRequestFinish, JobRequestRenew,
    RenewJobRequest, RenewJobResponse, TaskAgentJobRequest,
};
use ghrunner_vm::protocol::message::{
    AgentRefresh, BrokerErrorBody, BrokerMigration, JobCancellation, RunnerJobRequestRef,
    RunnerRefresh, RunnerShutdown, TaskAgentMessage,
};
use ghrunner_vm::protocol::session::TaskAgentSession;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("protocol-fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()));
    let original: Value = serde_json::from_str(&text).unwrap();
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
    let written = serde_json::to_value(&typed).unwrap();
    assert_eq!(written, original, "{file} does not round-trip");
    let again: T = serde_json::from_value(written).unwrap();
    assert_eq!(again, typed, "{file}");
}

#[test]
fn message_fixtures_round_trip() {
    round_trip::<TaskAgentSession>("messages/session-create-request.json");
    round_trip::<TaskAgentSession>("messages/session-create-response.json");
    round_trip::<TaskAgentMessage>("messages/envelope-encrypted.json");
    round_trip::<TaskAgentMessage>("messages/envelope-broker.json");
    round_trip::<RunnerJobRequestRef>("messages/runner-job-request.json");
    round_trip::<JobCancellation>("messages/job-cancellation.json");
    round_trip::<BrokerMigration>("messages/broker-migration.json");
    round_trip::<AgentRefresh>("messages/agent-refresh.json");
    round_trip::<RunnerRefresh>("messages/runner-refresh.json");
    round_trip::<RunnerShutdown>("messages/runner-shutdown.json");
    round_trip::<BrokerErrorBody>("messages/broker-error.json");
}

#[test]
fn job_lifecycle_fixtures_round_trip() {
    round_trip::<AcquireJobRequest>("jobs-lifecycle/acquirejob-request.json");
    round_trip::<RenewJobRequest>("jobs-lifecycle/renewjob-request.json");
    round_trip::<RenewJobResponse>("jobs-lifecycle/renewjob-response.json");
    round_trip::<CompleteJobRequest>("jobs-lifecycle/completejob-request.json");
    round_trip::<JobRequestRenew>("jobs-lifecycle/jobrequest-renew-request.json");
    round_trip::<TaskAgentJobRequest>("jobs-lifecycle/jobrequest-renew-response.json");
    round_trip::<JobRequestFinish>("jobs-lifecycle/jobrequest-finish-request.json");
    round_trip::<JobCompletedEvent>("jobs-lifecycle/plan-event-job-completed.json");
}

#[test]
fn action_resolution_fixtures_round_trip_and_both_paths_mean_the_same() {
    round_trip::<ActionReferenceList>("actions/legacy-resolve-request.json");
    round_trip::<ActionDownloadInfoCollection>("actions/legacy-resolve-response.json");
    round_trip::<ResolveActionsRequest>("actions/launch-resolve-request.json");
    round_trip::<ResolveActionsResponse>("actions/launch-resolve-response.json");

    let read = |file: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("protocol-fixtures")
            .join(file);
        std::fs::read_to_string(path).unwrap()
    };
    let legacy: ActionDownloadInfoCollection =
        serde_json::from_str(&read("actions/legacy-resolve-response.json")).unwrap();
    let launch: ResolveActionsResponse =
        serde_json::from_str(&read("actions/launch-resolve-response.json")).unwrap();
    let mapped = ActionDownloadInfoCollection::from(launch);
    let key = lookup_key("actions/checkout", "v4");
    assert_eq!(mapped.actions[&key], legacy.actions[&key]);
    let cache = &mapped.actions[&lookup_key("actions/cache", "v4")];
    assert_eq!(cache.token(), Some("ghs_FAKE_ACTION_TOKEN_2"));
    assert_eq!(
        cache.package_details.as_ref().unwrap().version.as_deref(),
        Some("4.2.3")
    );
    // The legacy request as the run service words it.
    let legacy_request: ActionReferenceList =
        serde_json::from_str(&read("actions/legacy-resolve-request.json")).unwrap();
    let launch_request: ResolveActionsRequest =
        serde_json::from_str(&read("actions/launch-resolve-request.json")).unwrap();
    assert_eq!(
        ResolveActionsRequest::from(&legacy_request).actions,
        launch_request.actions
    );
}
