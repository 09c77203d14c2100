//! Typing a delivered job message once: [`AgentJobRequestMessage::from_delivered`] turns the
//! JSON the service sent (the legacy `PipelineAgentJobRequest` body or the run service's
//! `acquirejob` answer) into the typed message and checks the parts every job needs, so what
//! runs downstream never meets a half-formed message. Each error names the field at fault.
//!
//! Required: `jobId`, `plan` with `planId`, `timeline` with `id`, `steps` (a list, possibly
//! empty), and a `SystemVssConnection` endpoint with a URL and an access token. Everything else
//! keeps the type's lenient defaults (absent collections read as empty).

use serde_json::{Map, Value as Json};

use super::{AgentJobRequestMessage, SystemConnectionError};
use crate::protocol::wire::get_ci;

/// The `SystemVssConnection` endpoint, as a field path of the message.
const SYSTEM_ENDPOINT: &str = "resources.endpoints[SystemVssConnection]";

/// Why a delivered job message cannot be run. Every variant names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum JobMessageError {
    /// The message is not a JSON object.
    #[error("the job message is not a JSON object")]
    NotAnObject,
    /// A required field is absent or null.
    #[error("the job message has no `{field}`")]
    Missing {
        /// The field's path, e.g. `plan.planId`.
        field: &'static str,
    },
    /// A field is present but does not have its type's shape.
    #[error("the job message's `{field}` is malformed")]
    Malformed {
        /// The field's path, e.g. `steps[0].inputs`.
        field: String,
        /// What the decoder found wrong.
        #[source]
        source: serde_json::Error,
    },
}

impl JobMessageError {
    /// The field at fault (`None` when the message is not an object at all).
    pub fn field(&self) -> Option<&str> {
        match self {
            JobMessageError::NotAnObject => None,
            JobMessageError::Missing { field } => Some(field),
            JobMessageError::Malformed { field, .. } => Some(field),
        }
    }
}

impl From<SystemConnectionError> for JobMessageError {
    fn from(err: SystemConnectionError) -> Self {
        let field = match err {
            SystemConnectionError::Missing => SYSTEM_ENDPOINT,
            SystemConnectionError::NoUrl => "resources.endpoints[SystemVssConnection].url",
            SystemConnectionError::NoAccessToken => {
                "resources.endpoints[SystemVssConnection].authorization.parameters.AccessToken"
            }
        };
        JobMessageError::Missing { field }
    }
}

/// A present, non-null property (any key casing).
fn present<'a>(object: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    get_ci(object, key).filter(|v| !v.is_null())
}

/// A required object property.
fn object<'a>(
    parent: &'a Map<String, Json>,
    key: &str,
    field: &'static str,
) -> Result<&'a Map<String, Json>, JobMessageError> {
    present(parent, key)
        .ok_or(JobMessageError::Missing { field })?
        .as_object()
        .ok_or_else(|| JobMessageError::Malformed {
            field: field.to_owned(),
            source: serde::de::Error::custom("expected an object"),
        })
}

/// A required property of any shape (its type is checked by the typed decode).
fn require(
    parent: &Map<String, Json>,
    key: &str,
    field: &'static str,
) -> Result<(), JobMessageError> {
    present(parent, key)
        .map(drop)
        .ok_or(JobMessageError::Missing { field })
}

impl AgentJobRequestMessage {
    /// Types and validates a job message as the service delivered it (see the module doc for
    /// what is required). Errors name the field at fault.
    pub fn from_delivered(json: &Json) -> Result<AgentJobRequestMessage, JobMessageError> {
        let root = json.as_object().ok_or(JobMessageError::NotAnObject)?;
        require(root, "jobId", "jobId")?;
        let plan = object(root, "plan", "plan")?;
        require(plan, "planId", "plan.planId")?;
        let timeline = object(root, "timeline", "timeline")?;
        require(timeline, "id", "timeline.id")?;
        require(root, "steps", "steps")?;
        let message: AgentJobRequestMessage =
            serde_path_to_error::deserialize(json).map_err(|err| {
                let field = err.path().to_string();
                JobMessageError::Malformed {
                    field,
                    source: err.into_inner(),
                }
            })?;
        message.system_connection()?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid() -> Json {
        json!({
            "jobId": "9d5e0000-0000-0000-0000-000000000003", "jobName": "build",
            "Plan": {"planId": "6f1a0000-0000-0000-0000-000000000001", "planType": "actions", "version": 12},
            "timeline": {"Id": "2b3c0000-0000-0000-0000-000000000002"},
            "resources": {"endpoints": [{"Name": "systemVssConnection", "url": "https://pipelines.example/",
                "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "eyJ.fake"}}}]},
            "steps": []
        })
    }

    fn field_of(json: &Json) -> String {
        let err = AgentJobRequestMessage::from_delivered(json).unwrap_err();
        err.field().unwrap_or("<none>").to_owned()
    }

    #[test]
    fn a_complete_message_types_in_any_casing() {
        let message = AgentJobRequestMessage::from_delivered(&valid()).unwrap();
        assert_eq!(message.job_name, "build");
        assert_eq!(message.plan.version, 12);
        assert_eq!(
            message.system_connection().unwrap().access_token,
            "eyJ.fake"
        );
    }

    #[test]
    fn each_missing_required_part_is_named() {
        let without = |path: &[&str]| {
            let mut json = valid();
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut json;
            for p in parents {
                at = &mut at[*p];
            }
            at.as_object_mut().unwrap().remove(*last);
            json
        };
        assert_eq!(field_of(&without(&["jobId"])), "jobId");
        assert_eq!(field_of(&without(&["Plan"])), "plan");
        assert_eq!(field_of(&without(&["Plan", "planId"])), "plan.planId");
        assert_eq!(field_of(&without(&["timeline"])), "timeline");
        assert_eq!(field_of(&without(&["timeline", "Id"])), "timeline.id");
        assert_eq!(field_of(&without(&["steps"])), "steps");
        assert_eq!(field_of(&without(&["resources"])), SYSTEM_ENDPOINT);
        let mut no_token = valid();
        no_token["resources"]["endpoints"][0]["authorization"]["parameters"] = json!({});
        assert!(field_of(&no_token).ends_with("AccessToken"));
        let mut null_steps = valid();
        null_steps["steps"] = Json::Null;
        assert_eq!(field_of(&null_steps), "steps");
        assert!(matches!(
            AgentJobRequestMessage::from_delivered(&json!([1])),
            Err(JobMessageError::NotAnObject)
        ));
    }

    #[test]
    fn a_malformed_part_is_named_with_its_path() {
        let mut bad_id = valid();
        bad_id["jobId"] = json!("not-a-guid");
        assert_eq!(field_of(&bad_id), "jobId");
        let mut bad_steps = valid();
        bad_steps["steps"] = json!("make");
        assert_eq!(field_of(&bad_steps), "steps");
        let mut bad_version = valid();
        bad_version["Plan"]["version"] = json!({"major": 12});
        assert_eq!(field_of(&bad_version), "Plan.version");
        let mut bad_timeline = valid();
        bad_timeline["timeline"] = json!("t");
        assert_eq!(field_of(&bad_timeline), "timeline");
        let err = AgentJobRequestMessage::from_delivered(&bad_id).unwrap_err();
        assert_eq!(err.to_string(), "the job message's `jobId` is malformed");
        let chain = crate::errors::error_chain(&err);
        assert!(chain.contains("UUID"), "{chain}");
    }
}
