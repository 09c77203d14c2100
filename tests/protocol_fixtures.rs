//! Every fixture under `protocol-fixtures/messages/` and `protocol-fixtures/jobs-lifecycle/`
//! deserializes into its wire type and serializes back to the same JSON document.

use std::path::Path;

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
