//! URL building for both reporting paths (pure).
//!
//! Legacy (VSS) routes come from the fallback table of protocol-transport.md §0.3 (plan-scoped
//! templates with the `{scopeIdentifier}` prefix); OPTIONS route discovery is not done here.
//! Template expansion follows VSS rules: `{name}` takes its value (percent-encoded as one path
//! segment); a placeholder without a value is dropped with its leading `/`. Results (Twirp)
//! paths are relative to `system.github.results_endpoint`.

use std::collections::HashMap;

use url::Url;
use uuid::Uuid;

/// api-version of every plan-scoped legacy route used here.
pub const LEGACY_API_VERSION: &str = "5.1-preview.1";

/// Template of the timeline-records route (location 8893bc5b-35b2-4be7-83cb-99e683551db4).
pub const RECORDS_TEMPLATE: &str = "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records";
/// Template of the logs route (location 46f5667d-263a-4684-91b1-dff7fdcf64e2).
pub const LOGS_TEMPLATE: &str =
    "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/logs/{logId}";
/// Template of the live feed route (location 858983e4-19bd-4c5e-864c-507b59b58b12).
pub const FEED_TEMPLATE: &str = "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/feed";
/// Template of the attachments route (location 7898f959-9cdf-4096-b29e-7f293031629e).
pub const ATTACHMENTS_TEMPLATE: &str = "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/attachments/{type}/{name}";

/// Twirp service prefix of the results receiver.
pub const RESULTS_RECEIVER: &str = "twirp/results.services.receiver.Receiver/";
/// Twirp path of the step-update service.
pub const WORKFLOW_STEPS_UPDATE: &str =
    "twirp/github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate";

/// The plan a job belongs to: what every plan-scoped legacy route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanScope {
    /// `plan.scopeIdentifier`.
    pub scope_identifier: Uuid,
    /// `plan.planType` (the hub name).
    pub hub_name: String,
    /// `plan.planId`.
    pub plan_id: Uuid,
    /// `timeline.id`.
    pub timeline_id: Uuid,
}

/// A legacy route with its variable parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyRoute {
    /// PATCH timeline records.
    Records,
    /// POST: create a log.
    CreateLog,
    /// POST: append to a log.
    AppendLog {
        /// The log id.
        log_id: i64,
    },
    /// POST: live console lines of the job record.
    Feed {
        /// The job record id.
        record_id: Uuid,
    },
    /// PUT: an attachment.
    Attachment {
        /// The record it hangs on.
        record_id: Uuid,
        /// Attachment type (e.g. `Checks.Step.Summary`).
        kind: String,
        /// Attachment name.
        name: String,
    },
}

/// Builds the URL of a legacy route under the service base URL (the SystemVssConnection url).
pub fn legacy_url(base: &Url, scope: &PlanScope, route: &LegacyRoute) -> Url {
    let mut values: HashMap<&str, String> = HashMap::from([
        ("scopeIdentifier", scope.scope_identifier.to_string()),
        ("hubName", scope.hub_name.clone()),
        ("planId", scope.plan_id.to_string()),
        ("timelineId", scope.timeline_id.to_string()),
    ]);
    let template = match route {
        LegacyRoute::Records => RECORDS_TEMPLATE,
        LegacyRoute::CreateLog => LOGS_TEMPLATE,
        LegacyRoute::AppendLog { log_id } => {
            values.insert("logId", log_id.to_string());
            LOGS_TEMPLATE
        }
        LegacyRoute::Feed { record_id } => {
            values.insert("recordId", record_id.to_string());
            FEED_TEMPLATE
        }
        LegacyRoute::Attachment {
            record_id,
            kind,
            name,
        } => {
            values.insert("recordId", record_id.to_string());
            values.insert("type", kind.clone());
            values.insert("name", name.clone());
            ATTACHMENTS_TEMPLATE
        }
    };
    expand_template(base, template, &values)
}

/// Expands a VSS route template under `base` (see the module doc for the rules).
pub fn expand_template(base: &Url, template: &str, values: &HashMap<&str, String>) -> Url {
    let mut url = base.clone();
    let segments: Vec<String> = template
        .split('/')
        .filter_map(|segment| expand_segment(segment, values))
        .collect();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn expand_segment(segment: &str, values: &HashMap<&str, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = segment;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        match values.get(name) {
            Some(value) => out.push_str(value),
            None if segment == &rest[open..open + close + 1] => return None,
            None => {}
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

/// The URL of a Twirp method of the results receiver (`method` like `GetStepLogsSignedBlobURL`).
pub fn results_receiver_url(base: &Url, method: &str) -> Url {
    results_url(base, &format!("{RESULTS_RECEIVER}{method}"))
}

/// A path under the results endpoint, joined as a relative reference (a `/` is added to the
/// base when missing, so its last segment is kept).
pub fn results_url(base: &Url, path: &str) -> Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(path.split('/'));
    }
    url
}

/// Appends Azure append-blob query parameters to a signed URL (`comp=appendblock`, and
/// `seal=true` on the last block), keeping the signature parameters.
pub fn append_block_url(signed: &Url, seal: bool) -> Url {
    let mut url = signed.clone();
    url.query_pairs_mut().append_pair("comp", "appendblock");
    if seal {
        url.query_pairs_mut().append_pair("seal", "true");
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> PlanScope {
        PlanScope {
            scope_identifier: Uuid::from_u128(1),
            hub_name: "actions".into(),
            plan_id: Uuid::from_u128(2),
            timeline_id: Uuid::from_u128(3),
        }
    }

    const SCOPE: &str = "00000000-0000-0000-0000-000000000001";
    const PLAN: &str = "00000000-0000-0000-0000-000000000002";
    const TIMELINE: &str = "00000000-0000-0000-0000-000000000003";

    #[test]
    fn records_route_is_plan_scoped_under_the_base_path() {
        let base = Url::parse("https://pipelines.example/abc/").unwrap();
        let url = legacy_url(&base, &scope(), &LegacyRoute::Records);
        assert_eq!(
            url.as_str(),
            format!(
                "https://pipelines.example/abc/{SCOPE}/_apis/distributedtask/hubs/actions/plans/{PLAN}/timelines/{TIMELINE}/records"
            )
        );
    }

    #[test]
    fn create_log_drops_the_missing_log_id_and_append_keeps_it() {
        let base = Url::parse("http://127.0.0.1:8080/").unwrap();
        let create = legacy_url(&base, &scope(), &LegacyRoute::CreateLog);
        assert!(
            create.path().ends_with(&format!("/plans/{PLAN}/logs")),
            "{create}"
        );
        let append = legacy_url(&base, &scope(), &LegacyRoute::AppendLog { log_id: 7 });
        assert!(
            append.path().ends_with(&format!("/plans/{PLAN}/logs/7")),
            "{append}"
        );
    }

    #[test]
    fn feed_and_attachment_routes_encode_segments() {
        let base = Url::parse("http://h/x").unwrap();
        let job = Uuid::from_u128(4);
        let feed = legacy_url(&base, &scope(), &LegacyRoute::Feed { record_id: job });
        assert!(feed.path().starts_with("/x/"), "{feed}");
        assert!(feed.path().ends_with(&format!("/records/{job}/feed")));
        let attachment = LegacyRoute::Attachment {
            record_id: job,
            kind: "Checks.Step.Summary".into(),
            name: "a b/c".into(),
        };
        let url = legacy_url(&base, &scope(), &attachment);
        assert!(
            url.path()
                .ends_with("/attachments/Checks.Step.Summary/a%20b%2Fc"),
            "{url}"
        );
    }

    #[test]
    fn placeholder_inside_a_segment_is_replaced() {
        let base = Url::parse("http://h/").unwrap();
        let values = HashMap::from([("id", "7".to_owned())]);
        let url = expand_template(&base, "_apis/item-{id}/{missing}/tail", &values);
        assert_eq!(url.path(), "/_apis/item-7/tail");
    }

    #[test]
    fn results_paths_keep_the_base_path_with_or_without_slash() {
        for base in ["http://h/results", "http://h/results/"] {
            let url = results_receiver_url(&Url::parse(base).unwrap(), "GetStepLogsSignedBlobURL");
            assert_eq!(
                url.as_str(),
                "http://h/results/twirp/results.services.receiver.Receiver/GetStepLogsSignedBlobURL"
            );
        }
        let steps = results_url(&Url::parse("http://h/").unwrap(), WORKFLOW_STEPS_UPDATE);
        assert_eq!(steps.path(), format!("/{WORKFLOW_STEPS_UPDATE}"));
    }

    #[test]
    fn append_block_keeps_the_signature() {
        let signed = Url::parse("https://acct.blob/c/b?sv=1&sig=x%2By").unwrap();
        assert_eq!(
            append_block_url(&signed, false).as_str(),
            "https://acct.blob/c/b?sv=1&sig=x%2By&comp=appendblock"
        );
        assert!(
            append_block_url(&signed, true)
                .as_str()
                .ends_with("&comp=appendblock&seal=true")
        );
    }
}
