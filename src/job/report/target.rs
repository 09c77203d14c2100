//! [`ReportTarget`]: where and as whom to report one job, taken from the job message
//! (`resources.endpoints[SystemVssConnection]`, `plan`, `timeline`, `jobId`, and the variable
//! `system.github.results_endpoint` or the endpoint's `ResultsServiceUrl` data key).

use url::Url;
use uuid::Uuid;

use super::routes::PlanScope;
use super::state::JobIdentity;
use crate::protocol::job::{AgentJobRequestMessage, SystemConnectionError};

/// The job variable naming the results service base URL.
pub const RESULTS_ENDPOINT_VARIABLE: &str = "system.github.results_endpoint";
/// The SystemVssConnection data key naming the results service (fallback for the variable).
pub const RESULTS_SERVICE_URL_KEY: &str = "ResultsServiceUrl";

/// Why a job message gives no usable report target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The SystemVssConnection endpoint is missing or incomplete.
    #[error("the job message has no usable SystemVssConnection")]
    Connection(#[source] SystemConnectionError),
    /// A URL in the message does not parse.
    #[error("the job message's {what} is not a valid URL")]
    BadUrl {
        /// Which URL.
        what: &'static str,
        /// The cause.
        #[source]
        source: url::ParseError,
    },
    /// The message has no timeline.
    #[error("the job message has no timeline")]
    NoTimeline,
}

/// Where and as whom to report one job: plain fields taken from the job message.
#[derive(Clone)]
pub struct ReportTarget {
    /// `resources.endpoints[SystemVssConnection].url` (legacy service base).
    pub server_url: Url,
    /// `...SystemVssConnection.authorization.parameters.AccessToken` (the job token).
    pub access_token: String,
    /// `plan.scopeIdentifier`.
    pub scope_identifier: Uuid,
    /// `plan.planType` (hub name).
    pub hub_name: String,
    /// `plan.planId`.
    pub plan_id: Uuid,
    /// `timeline.id`.
    pub timeline_id: Uuid,
    /// `jobId` (also the job's timeline record id).
    pub job_id: Uuid,
    /// Job display name.
    pub job_name: String,
    /// The runner's name.
    pub worker_name: String,
    /// Variable `system.github.results_endpoint` (or data `ResultsServiceUrl`), if any.
    pub results_url: Option<Url>,
}

impl std::fmt::Debug for ReportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportTarget")
            .field("server_url", &self.server_url.as_str())
            .field("access_token", &"<redacted>")
            .field("plan_id", &self.plan_id)
            .field("job_id", &self.job_id)
            .field("results_url", &self.results_url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl ReportTarget {
    /// Takes the target from a job message; `worker_name` is the runner's name.
    pub fn from_message(
        message: &AgentJobRequestMessage,
        worker_name: &str,
    ) -> Result<ReportTarget, TargetError> {
        let connection = message
            .system_connection()
            .map_err(TargetError::Connection)?;
        let server_url = base_url(connection.url, "SystemVssConnection url")?;
        let results = message
            .variables
            .value(RESULTS_ENDPOINT_VARIABLE)
            .or_else(|| connection.endpoint.data_value(RESULTS_SERVICE_URL_KEY))
            .filter(|u| !u.trim().is_empty());
        let results_url = results
            .map(|u| base_url(u, "results endpoint"))
            .transpose()?;
        let timeline = message.timeline.as_ref().ok_or(TargetError::NoTimeline)?;
        Ok(ReportTarget {
            server_url,
            access_token: connection.access_token.to_owned(),
            scope_identifier: message.plan.scope_identifier,
            hub_name: message.plan.plan_type.clone(),
            plan_id: message.plan.plan_id,
            timeline_id: timeline.id,
            job_id: message.job_id,
            job_name: message.job_display_name.clone(),
            worker_name: worker_name.to_owned(),
            results_url,
        })
    }

    pub(crate) fn identity(&self) -> JobIdentity {
        JobIdentity {
            job_id: self.job_id,
            job_name: self.job_name.clone(),
            worker_name: self.worker_name.clone(),
        }
    }

    pub(crate) fn scope(&self) -> PlanScope {
        PlanScope {
            scope_identifier: self.scope_identifier,
            hub_name: self.hub_name.clone(),
            plan_id: self.plan_id,
            timeline_id: self.timeline_id,
        }
    }
}

/// Parses a service base URL and makes sure it ends in `/` (relative joins keep its path).
fn base_url(raw: &str, what: &'static str) -> Result<Url, TargetError> {
    let mut url = Url::parse(raw.trim()).map_err(|source| TargetError::BadUrl { what, source })?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(
        extra_variables: serde_json::Value,
        data: serde_json::Value,
    ) -> AgentJobRequestMessage {
        let mut variables = json!({"system.github.job": {"value": "build"}});
        variables
            .as_object_mut()
            .unwrap()
            .extend(extra_variables.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "messageType": "PipelineAgentJobRequest",
            "plan": {"scopeIdentifier": "00000000-0000-0000-0000-0000000000a1", "planType": "actions",
                     "version": 12, "planId": "00000000-0000-0000-0000-0000000000a2"},
            "timeline": {"id": "00000000-0000-0000-0000-0000000000a3", "changeId": 1},
            "jobId": "00000000-0000-0000-0000-0000000000a4",
            "jobDisplayName": "build (3.12)", "jobName": "build", "requestId": 7,
            "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "https://pipelines.example/x",
                "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "eyJ.fake"}},
                "data": data}]},
            "variables": variables,
            "steps": []
        }))
        .unwrap()
    }

    #[test]
    fn target_comes_from_the_system_connection_plan_and_timeline() {
        let target = ReportTarget::from_message(
            &message(
                json!({RESULTS_ENDPOINT_VARIABLE: {"value": "https://results.example/r"}}),
                json!({}),
            ),
            "vm-1",
        )
        .unwrap();
        assert_eq!(target.server_url.as_str(), "https://pipelines.example/x/");
        assert_eq!(target.access_token, "eyJ.fake");
        assert_eq!(target.hub_name, "actions");
        assert_eq!(target.plan_id, Uuid::from_u128(0xa2));
        assert_eq!(target.timeline_id, Uuid::from_u128(0xa3));
        assert_eq!(target.job_id, Uuid::from_u128(0xa4));
        assert_eq!(target.job_name, "build (3.12)");
        assert_eq!(
            target.results_url.unwrap().as_str(),
            "https://results.example/r/"
        );
    }

    #[test]
    fn results_url_falls_back_to_the_endpoint_data_or_is_absent() {
        let fallback = message(
            json!({}),
            json!({"ResultsServiceUrl": "https://rs.example/"}),
        );
        let target = ReportTarget::from_message(&fallback, "vm").unwrap();
        assert_eq!(target.results_url.unwrap().as_str(), "https://rs.example/");
        let none = ReportTarget::from_message(&message(json!({}), json!({})), "vm").unwrap();
        assert!(none.results_url.is_none());
    }

    #[test]
    fn bad_results_url_is_a_clear_error() {
        let bad = message(
            json!({RESULTS_ENDPOINT_VARIABLE: {"value": "not a url"}}),
            json!({}),
        );
        let err = ReportTarget::from_message(&bad, "vm").unwrap_err();
        assert!(
            matches!(
                err,
                TargetError::BadUrl {
                    what: "results endpoint",
                    ..
                }
            ),
            "{err}"
        );
    }
}
