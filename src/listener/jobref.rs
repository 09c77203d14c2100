//! The listener's boundary for job messages: a delivered job (legacy `PipelineAgentJobRequest`
//! body or run-service `acquirejob` answer) is typed once here into an
//! [`AgentJobRequestMessage`] ([`AgentJobRequestMessage::from_delivered`] validates it), and
//! the [`JobRef`] the lifecycle needs (plan and job ids, the legacy request id and plan
//! version, the `SystemVssConnection` URL and job token) is taken from the typed message.
//!
//! A message that fails validation is not lost: if its ids can still be read (leniently, from
//! its JSON, case-insensitive keys) the job is acquired, renewed and completed as failed with
//! the validation error logged ([`ReceivedJob::message`] is `Err`). Only a message without
//! usable ids is skipped.

use serde_json::{Map, Value};

use crate::protocol::Secret;
use crate::protocol::job::{
    ActionsEnvironmentReference, AgentJobRequestMessage, JobMessageError, SystemConnectionError,
};

/// The identifying parts of an acquired job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRef {
    /// `jobId`.
    pub job_id: String,
    /// `plan.planId`.
    pub plan_id: String,
    /// `plan.scopeIdentifier`.
    pub scope_identifier: String,
    /// `plan.planType` (hub name).
    pub plan_type: String,
    /// `plan.version` (legacy completion: < 8 finish PATCH, else `JobCompleted` event).
    pub plan_version: i64,
    /// `requestId` (legacy job request; 0 on the broker path).
    pub request_id: i64,
    /// `SystemVssConnection.url`.
    pub system_url: String,
    /// `SystemVssConnection.authorization.parameters.AccessToken`.
    pub job_token: Secret,
    /// `billingOwnerId`, if the message had one.
    pub billing_owner_id: Option<String>,
    /// `actionsEnvironment`, echoed in the `JobCompleted` event.
    pub actions_environment: Option<ActionsEnvironmentReference>,
}

/// A job message lacks something the lifecycle needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job message has no {field}")]
pub struct JobRefError {
    /// The missing field.
    pub field: &'static str,
}

/// A delivered job: its ids, and the typed message or why it cannot run.
#[derive(Debug)]
pub struct ReceivedJob {
    /// What the lifecycle needs to renew and complete the job.
    pub job_ref: JobRef,
    /// The typed message, or the validation error the job is completed as failed with.
    pub message: Result<AgentJobRequestMessage, JobMessageError>,
}

/// A delivered job message whose ids cannot be read: the job cannot be renewed or completed.
#[derive(Debug, thiserror::Error)]
#[error("{ids}")]
pub struct UnusableJob {
    /// What the ids lack.
    pub ids: JobRefError,
    /// Why the message did not validate either.
    #[source]
    pub invalid: JobMessageError,
}

impl ReceivedJob {
    /// Types a delivered job message once. `Err` when not even its ids can be read.
    pub fn from_delivered(json: &Value) -> Result<ReceivedJob, UnusableJob> {
        let typed = AgentJobRequestMessage::from_delivered(json)
            .and_then(|message| Ok((JobRef::from_message(&message)?, message)));
        match typed {
            Ok((job_ref, message)) => Ok(ReceivedJob {
                job_ref,
                message: Ok(message),
            }),
            Err(invalid) => match JobRef::from_json(json) {
                Ok(job_ref) => Ok(ReceivedJob {
                    job_ref,
                    message: Err(invalid),
                }),
                Err(ids) => Err(UnusableJob { ids, invalid }),
            },
        }
    }
}

fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    match get(object, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(object: &Map<String, Value>, key: &str) -> Option<i64> {
    match get(object, key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl JobRef {
    /// The job reference of a typed message (one validated by
    /// [`AgentJobRequestMessage::from_delivered`] always has its `SystemVssConnection`).
    pub fn from_message(message: &AgentJobRequestMessage) -> Result<JobRef, SystemConnectionError> {
        let connection = message.system_connection()?;
        Ok(JobRef {
            job_id: message.job_id.to_string(),
            plan_id: message.plan.plan_id.to_string(),
            scope_identifier: message.plan.scope_identifier.to_string(),
            plan_type: message.plan.plan_type.clone(),
            plan_version: message.plan.version.into(),
            request_id: message.request_id,
            system_url: connection.url.to_owned(),
            job_token: Secret::new(connection.access_token.to_owned()),
            billing_owner_id: message.billing_owner_id.clone(),
            actions_environment: message.actions_environment.clone(),
        })
    }

    /// The ids of a message that did not validate, read leniently from its JSON so that the
    /// job can still be completed (as failed).
    fn from_json(message: &Value) -> Result<JobRef, JobRefError> {
        let missing = |field| JobRefError { field };
        let root = message.as_object().ok_or(missing("object body"))?;
        let plan = get(root, "plan")
            .and_then(Value::as_object)
            .ok_or(missing("plan"))?;
        let endpoint = system_connection(root).ok_or(missing("SystemVssConnection endpoint"))?;
        let token = get(endpoint, "authorization")
            .and_then(Value::as_object)
            .and_then(|a| get(a, "parameters"))
            .and_then(Value::as_object)
            .and_then(|p| text(p, "AccessToken"))
            .ok_or(missing("SystemVssConnection access token"))?;
        Ok(JobRef {
            job_id: text(root, "jobId").ok_or(missing("jobId"))?,
            plan_id: text(plan, "planId").ok_or(missing("plan.planId"))?,
            scope_identifier: text(plan, "scopeIdentifier").unwrap_or_default(),
            plan_type: text(plan, "planType").unwrap_or_default(),
            plan_version: int(plan, "version").unwrap_or_default(),
            request_id: int(root, "requestId").unwrap_or_default(),
            system_url: text(endpoint, "url").ok_or(missing("SystemVssConnection url"))?,
            job_token: Secret::new(token),
            billing_owner_id: text(root, "billingOwnerId"),
            actions_environment: get(root, "actionsEnvironment")
                .and_then(|env| serde_json::from_value(env.clone()).ok()),
        })
    }
}

fn system_connection(root: &Map<String, Value>) -> Option<&Map<String, Value>> {
    get(root, "resources")?
        .as_object()
        .and_then(|r| get(r, "endpoints"))?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|e| text(e, "name").is_some_and(|n| n.eq_ignore_ascii_case("SystemVssConnection")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message() -> Value {
        json!({
            "jobId": "j-1", "requestId": 1234,
            "Plan": {"planId": "p-1", "scopeIdentifier": "s", "planType": "actions", "version": 12},
            "resources": {"endpoints": [
                {"name": "Other", "url": "http://other/"},
                {"Name": "systemVssConnection", "Url": "http://svc/",
                 "Authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "tok"}}}
            ]}
        })
    }

    #[test]
    fn extracts_ids_and_the_system_connection() {
        let r = JobRef::from_json(&message()).unwrap();
        assert_eq!(r.job_id, "j-1");
        assert_eq!(r.plan_id, "p-1");
        assert_eq!(r.plan_version, 12);
        assert_eq!(r.request_id, 1234);
        assert_eq!(r.system_url, "http://svc/");
        assert_eq!(r.job_token.expose(), "tok");
    }

    #[test]
    fn missing_parts_are_named() {
        let mut m = message();
        m["resources"]["endpoints"][1]["Name"] = json!("x");
        assert_eq!(
            JobRef::from_json(&m).unwrap_err().field,
            "SystemVssConnection endpoint"
        );
        let mut m = message();
        m.as_object_mut().unwrap().remove("jobId");
        assert_eq!(JobRef::from_json(&m).unwrap_err().field, "jobId");
        assert!(JobRef::from_json(&json!([1])).is_err());
    }

    fn typed_message() -> Value {
        let mut m = message();
        m["jobId"] = json!("9d5e0000-0000-0000-0000-000000000003");
        m["Plan"]["planId"] = json!("6f1a0000-0000-0000-0000-000000000001");
        m["Plan"]["scopeIdentifier"] = json!("00000000-0000-0000-0000-0000000000a1");
        m["timeline"] = json!({"id": "2b3c0000-0000-0000-0000-000000000002"});
        m["steps"] = json!([]);
        m["billingOwnerId"] = json!("O_1");
        m["actionsEnvironment"] = json!({"name": "production"});
        m
    }

    #[test]
    fn a_valid_message_is_typed_once_and_its_ids_come_from_the_typed_value() {
        let received = ReceivedJob::from_delivered(&typed_message()).unwrap();
        let message = received.message.unwrap();
        assert_eq!(received.job_ref, JobRef::from_message(&message).unwrap());
        let r = received.job_ref;
        assert_eq!(r.job_id, "9d5e0000-0000-0000-0000-000000000003");
        assert_eq!(r.plan_id, "6f1a0000-0000-0000-0000-000000000001");
        assert_eq!(r.scope_identifier, "00000000-0000-0000-0000-0000000000a1");
        assert_eq!((r.plan_type.as_str(), r.plan_version), ("actions", 12));
        assert_eq!(r.request_id, 1234);
        assert_eq!(r.system_url, "http://svc/");
        assert_eq!(r.job_token.expose(), "tok");
        assert_eq!(r.billing_owner_id.as_deref(), Some("O_1"));
        let env = r.actions_environment.unwrap();
        assert_eq!(env.name.as_deref(), Some("production"));
    }

    #[test]
    fn the_deployment_environment_is_echoed_as_received() {
        for env in [
            json!({"name": "production"}),
            json!({"name": "staging", "url": "https://deploy.example/"}),
            json!({"name": "review", "url": {"type": 3, "expr": "steps.deploy.outputs.url"}}),
        ] {
            let mut m = typed_message();
            m["actionsEnvironment"] = env.clone();
            let received = ReceivedJob::from_delivered(&m).unwrap();
            let echoed = serde_json::to_value(&received.job_ref.actions_environment).unwrap();
            assert_eq!(echoed, env);
        }
    }

    #[test]
    fn an_invalid_message_with_readable_ids_keeps_its_ids_and_the_named_error() {
        let mut m = typed_message();
        m["steps"] = json!({"not": "a list"});
        let received = ReceivedJob::from_delivered(&m).unwrap();
        assert_eq!(received.job_ref.request_id, 1234);
        assert_eq!(received.job_ref.job_token.expose(), "tok");
        let err = received.message.unwrap_err();
        assert_eq!(err.field(), Some("steps"));
        // The lenient reader of the fallback takes ids the typed message would refuse.
        let mut m = typed_message();
        m["jobId"] = json!("j-1");
        let received = ReceivedJob::from_delivered(&m).unwrap();
        assert_eq!(received.job_ref.job_id, "j-1");
        assert_eq!(received.message.unwrap_err().field(), Some("jobId"));
    }

    #[test]
    fn a_billing_owner_of_any_shape_never_fails_the_message() {
        // The runner only echoes it back; the lenient reader before typing ignored odd shapes.
        for (owner, read) in [(json!(42), Some("42")), (json!({"id": 1}), None)] {
            let mut m = typed_message();
            m["billingOwnerId"] = owner;
            let received = ReceivedJob::from_delivered(&m).unwrap();
            assert!(received.message.is_ok());
            assert_eq!(received.job_ref.billing_owner_id.as_deref(), read);
        }
    }

    #[test]
    fn a_message_without_ids_is_unusable_with_both_reasons() {
        let mut m = typed_message();
        m.as_object_mut().unwrap().remove("jobId");
        let err = ReceivedJob::from_delivered(&m).unwrap_err();
        assert_eq!(err.ids.field, "jobId");
        assert_eq!(err.invalid.field(), Some("jobId"));
        assert_eq!(
            crate::errors::error_chain(&err),
            "job message has no jobId: the job message has no `jobId`"
        );
    }
}
