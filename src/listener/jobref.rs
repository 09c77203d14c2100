//! What the lifecycle needs from a job message (pure): plan and job ids, the legacy request id
//! and plan version, and the `SystemVssConnection` endpoint (URL and job token). Read from the
//! raw JSON with case-insensitive keys so it works on both paths whatever the casing.

use serde_json::{Map, Value};

use crate::protocol::Secret;

/// The identifying parts of an acquired job.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub actions_environment: Option<Value>,
}

/// A job message lacks something the lifecycle needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job message has no {field}")]
pub struct JobRefError {
    /// The missing field.
    pub field: &'static str,
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
    /// Extracts the job reference from a job message.
    pub fn from_message(message: &Value) -> Result<JobRef, JobRefError> {
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
            actions_environment: get(root, "actionsEnvironment").cloned(),
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
        let r = JobRef::from_message(&message()).unwrap();
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
            JobRef::from_message(&m).unwrap_err().field,
            "SystemVssConnection endpoint"
        );
        let mut m = message();
        m.as_object_mut().unwrap().remove("jobId");
        assert_eq!(JobRef::from_message(&m).unwrap_err().field, "jobId");
        assert!(JobRef::from_message(&json!([1])).is_err());
    }
}
