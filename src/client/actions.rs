//! `uses:` actions on the wire (protocol-actions.md §1.2–1.5): resolve `owner/repo@ref` to a
//! commit and a tarball URL (run service or legacy plan route), and download one tarball to a
//! file with a size cap. Unpacking and caching are `actions::cache`'s business.
//!
//! ```text
//!  resolve_run_service: POST {launch}/actions/build/{planId}/jobs/{jobId}/runnerresolve/actions
//!  resolve_legacy:      OPTIONS {server}_apis/ (route of LEGACY_LOCATION_ID, else the fallback)
//!                       POST {server}{scopeIdentifier}/_apis/distributedtask/hubs/{hub}/plans/
//!                            {planId}/actiondownloadinfo?jobId=…&api-version=6.0-preview.1
//!        (both: Bearer <job token>, the SystemVssConnection AccessToken)
//!  download_tarball:    GET tarballUrl, Basic x-access-token:<per-action token>, redirects
//!                       followed, 404/403 final, others retried, body streamed to disk ≤ cap
//! ```
//!
//! The legacy route is the one VSS location discovery (`OPTIONS {server}_apis/`, location id
//! [`LEGACY_LOCATION_ID`]) lists, as the official runner does, with the fixed template above as
//! the fallback. Discovery runs once per [`resolve_legacy`] call (not cached per job yet).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt as _;
use url::Url;
use uuid::Uuid;

use super::ClientError;
use super::http::{HttpClient, with_bearer};
use super::locations::{self, expand_route};
use super::retry::{RetryPolicy, Retryable};
use crate::protocol::actions::{
    ActionDownloadInfoCollection, ActionReferenceList, ResolveActionsRequest,
    ResolveActionsResponse,
};

/// Location id of the legacy `actiondownloadinfo` resource (`TaskResourceIds.cs`).
pub const LEGACY_LOCATION_ID: &str = "27d7f831-88c1-4719-8ca1-6a061dad90eb";
/// api-version of the legacy resolve call (`ApiResourceVersion(6.0, 1)`, preview).
pub const LEGACY_API_VERSION: &str = "6.0-preview.1";
/// Fixed template of the legacy route (protocol-transport.md §0.3 fallback table).
pub const LEGACY_TEMPLATE: &str =
    "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/actiondownloadinfo";
/// Default largest tarball accepted (100 MiB).
pub const DEFAULT_MAX_TARBALL_BYTES: u64 = 100 * 1024 * 1024;

/// Where a legacy resolve call goes: the plan of the job (from the job message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPlan {
    /// `SystemVssConnection.url` (the legacy service base, ending in `/`).
    pub server_url: Url,
    /// `plan.scopeIdentifier`.
    pub scope_identifier: Uuid,
    /// `plan.planType` (hub name).
    pub hub_name: String,
    /// `plan.planId`.
    pub plan_id: Uuid,
    /// `jobId`.
    pub job_id: Uuid,
}

/// The legacy resolve URL (pure) from a route `template` (discovered, or [`LEGACY_TEMPLATE`]).
pub fn legacy_resolve_url(plan: &LegacyPlan, template: &str) -> Url {
    let values = [
        ("area", "distributedtask".to_owned()),
        ("resource", "actiondownloadinfo".to_owned()),
        ("scopeIdentifier", plan.scope_identifier.to_string()),
        ("hubName", plan.hub_name.clone()),
        ("planId", plan.plan_id.to_string()),
    ];
    let mut url = expand_route(&plan.server_url, template, &values);
    url.query_pairs_mut()
        .append_pair("jobId", &plan.job_id.to_string())
        .append_pair("api-version", LEGACY_API_VERSION);
    url
}

/// The legacy route template: the one location discovery lists for [`LEGACY_LOCATION_ID`], or
/// [`LEGACY_TEMPLATE`] when discovery fails or does not list it.
pub async fn legacy_route_template(http: &HttpClient, server_url: &Url, job_token: &str) -> String {
    match locations::discover(http, server_url, job_token).await {
        Ok(list) => match locations::template_of(&list, LEGACY_LOCATION_ID) {
            Some(template) => template.to_owned(),
            None => LEGACY_TEMPLATE.to_owned(),
        },
        Err(err) => {
            tracing::debug!(error = %err, "location discovery failed; using the fixed route");
            LEGACY_TEMPLATE.to_owned()
        }
    }
}

/// The run-service resolve URL: host-absolute under `launch` (any path on it is replaced).
pub fn run_service_resolve_url(launch: &Url, plan_id: Uuid, job_id: Uuid) -> Url {
    let mut url = launch.clone();
    url.set_path(&format!(
        "/actions/build/{plan_id}/jobs/{job_id}/runnerresolve/actions"
    ));
    url.set_query(None);
    url
}

/// Why resolving actions failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The service refused to resolve (422): unknown action, policy, …
    #[error("the service cannot resolve the actions: {message}")]
    Unresolvable {
        /// The service's messages, joined with ". ".
        message: String,
    },
    /// The service is rate limiting resolution (429).
    #[error(
        "the service refused to resolve the actions (GitHub has reached an internal rate limit)"
    )]
    RateLimited,
    /// The answer lacks an action that was asked for.
    #[error("the answer has no download info for {key}")]
    Missing {
        /// `owner/repo@ref`.
        key: String,
    },
    /// Any other failure of the call.
    #[error("resolving the actions failed")]
    Client(#[source] ClientError),
}

impl Retryable for ResolveError {
    fn is_retryable(&self) -> bool {
        match self {
            ResolveError::Client(err) => err.is_retryable(),
            _ => false,
        }
    }
}

impl From<ClientError> for ResolveError {
    fn from(err: ClientError) -> Self {
        match &err {
            ClientError::Status {
                status, message, ..
            } if *status == StatusCode::UNPROCESSABLE_ENTITY => ResolveError::Unresolvable {
                message: unresolvable_message(message.as_deref().unwrap_or_default()),
            },
            ClientError::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                ResolveError::RateLimited
            }
            _ => ResolveError::Client(err),
        }
    }
}

/// The messages of a 422 body `{"errors":{"owner/repo@ref":{"message":"…"}}}` joined with
/// ". ", or the text as is.
fn unresolvable_message(body: &str) -> String {
    let messages: Option<Vec<String>> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_object().map(|errors| {
                errors
                    .values()
                    .filter_map(|e| e.get("message")?.as_str().map(str::to_owned))
                    .collect()
            })
        });
    match messages {
        Some(m) if !m.is_empty() => m.join(". "),
        _ => body.to_owned(),
    }
}

fn check_complete(
    asked: &ActionReferenceList,
    answer: ActionDownloadInfoCollection,
) -> Result<ActionDownloadInfoCollection, ResolveError> {
    for action in &asked.actions {
        let key = crate::protocol::actions::lookup_key(&action.name_with_owner, &action.git_ref);
        if !answer.actions.contains_key(&key) {
            return Err(ResolveError::Missing { key });
        }
    }
    Ok(answer)
}

/// Resolves `actions` on the legacy route with the job token (`job_token`, sent as Bearer);
/// `retry` retries the whole call (transport failures and 5xx; not 422/429).
pub async fn resolve_legacy(
    http: &HttpClient,
    retry: RetryPolicy,
    plan: &LegacyPlan,
    job_token: &str,
    actions: &ActionReferenceList,
) -> Result<ActionDownloadInfoCollection, ResolveError> {
    let template = legacy_route_template(http, &plan.server_url, job_token).await;
    let url = legacy_resolve_url(plan, &template);
    let answer: ActionDownloadInfoCollection = retry
        .run(|| async {
            let request = http
                .request(Method::POST, url.clone())
                .header(ACCEPT, "application/json")
                .json(actions);
            let resp = http.send_once(with_bearer(request, job_token)).await?;
            Ok::<_, ResolveError>(super::http::read_json(resp).await?)
        })
        .await?;
    check_complete(actions, answer)
}

/// Resolves `actions` on the run service at `launch` (job variable
/// `system.github.launch_endpoint`) with the job token; `dependencies` are the job message's
/// lockfile pins. The answer is mapped onto the legacy shape.
pub async fn resolve_run_service(
    http: &HttpClient,
    retry: RetryPolicy,
    launch: &Url,
    (plan_id, job_id): (Uuid, Uuid),
    job_token: &str,
    actions: &ActionReferenceList,
    dependencies: &[String],
) -> Result<ActionDownloadInfoCollection, ResolveError> {
    let url = run_service_resolve_url(launch, plan_id, job_id);
    let mut body = ResolveActionsRequest::from(actions);
    body.actions_dependencies = dependencies.to_vec();
    let answer: ResolveActionsResponse = retry
        .run(|| async {
            let request = http
                .request(Method::POST, url.clone())
                .header(ACCEPT, "application/json")
                .json(&body);
            let resp = http.send_once(with_bearer(request, job_token)).await?;
            Ok::<_, ResolveError>(super::http::read_json(resp).await?)
        })
        .await?;
    check_complete(actions, answer.into())
}

/// The Authorization value for a tarball download (`CreateAuthHeader`): Basic
/// `x-access-token:<token>`, or Bearer for codeload URLs when `bearer_for_codeload` (job
/// variable `actions_use_bearer_token_for_codeload`) is set. Marked sensitive.
pub fn download_auth_header(
    url: &Url,
    token: &str,
    bearer_for_codeload: bool,
) -> Option<HeaderValue> {
    let codeload = url.host_str().is_some_and(|h| h.starts_with("codeload."))
        || url.path().starts_with("/_codeload/");
    let text = if bearer_for_codeload && codeload {
        format!("Bearer {token}")
    } else {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        format!("Basic {basic}")
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// One tarball download.
#[derive(Debug, Clone)]
pub struct TarballRequest<'a> {
    /// The tarball URL (`tarballUrl`).
    pub url: &'a str,
    /// The per-action token (or `github.token`); `None` sends no Authorization.
    pub token: Option<&'a str>,
    /// Job variable `actions_use_bearer_token_for_codeload`.
    pub bearer_for_codeload: bool,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
}

/// Why a tarball download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// 404.
    #[error("the tarball was not found (404)")]
    NotFound,
    /// 403.
    #[error("access to the tarball was denied (403)")]
    AccessDenied,
    /// The body is larger than allowed.
    #[error("the tarball is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The request failed (after its retries).
    #[error("the tarball download failed")]
    Http(#[source] ClientError),
    /// The file could not be written.
    #[error("cannot write the tarball to {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Retryable for DownloadError {
    fn is_retryable(&self) -> bool {
        // As the official runner: everything but 404/403 (and our own limits) is retried.
        matches!(self, DownloadError::Http(_))
    }
}

impl From<ClientError> for DownloadError {
    fn from(err: ClientError) -> Self {
        match &err {
            ClientError::Status { status, .. } if *status == StatusCode::NOT_FOUND => {
                DownloadError::NotFound
            }
            ClientError::Status { status, .. } if *status == StatusCode::FORBIDDEN => {
                DownloadError::AccessDenied
            }
            _ => DownloadError::Http(err),
        }
    }
}

/// Downloads `request.url` to `dest` (created or truncated per attempt), streaming, refusing
/// bodies over `request.max_bytes`; returns the byte count. Redirects are followed by the
/// shared client (which drops Authorization when the host changes).
pub async fn download_tarball(
    http: &HttpClient,
    retry: RetryPolicy,
    request: &TarballRequest<'_>,
    dest: &Path,
) -> Result<u64, DownloadError> {
    retry.run(|| download_once(http, request, dest)).await
}

async fn download_once(
    http: &HttpClient,
    request: &TarballRequest<'_>,
    dest: &Path,
) -> Result<u64, DownloadError> {
    let mut builder = http.request(Method::GET, request.url);
    if let (Some(token), Ok(url)) = (request.token, Url::parse(request.url))
        && let Some(value) = download_auth_header(&url, token, request.bearer_for_codeload)
    {
        builder = builder.header(AUTHORIZATION, value);
    }
    let mut resp = http.send_once(builder).await?;
    let limit = request.max_bytes;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(DownloadError::TooLarge { limit });
    }
    let write = |source| DownloadError::Write {
        path: dest.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(write)?;
    let mut total = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|source| {
            DownloadError::Http(ClientError::Transport {
                method: Method::GET,
                url: super::http::redact_url(resp.url()),
                source,
            })
        });
        let Some(chunk) = chunk? else { break };
        total += chunk.len() as u64;
        if total > limit {
            return Err(DownloadError::TooLarge { limit });
        }
        file.write_all(&chunk).await.map_err(write)?;
    }
    file.flush().await.map_err(write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_official_templates() {
        let plan = LegacyPlan {
            server_url: Url::parse("http://h/_services/pipelines/").unwrap(),
            scope_identifier: Uuid::from_u128(1),
            hub_name: "actions".into(),
            plan_id: Uuid::from_u128(2),
            job_id: Uuid::from_u128(3),
        };
        assert_eq!(
            legacy_resolve_url(&plan, LEGACY_TEMPLATE).as_str(),
            "http://h/_services/pipelines/00000000-0000-0000-0000-000000000001/_apis/distributedtask/hubs/actions/plans/00000000-0000-0000-0000-000000000002/actiondownloadinfo?jobId=00000000-0000-0000-0000-000000000003&api-version=6.0-preview.1"
        );
        let launch = Url::parse("https://launch.example/some/path?x=1").unwrap();
        assert_eq!(
            run_service_resolve_url(&launch, Uuid::from_u128(2), Uuid::from_u128(3)).as_str(),
            "https://launch.example/actions/build/00000000-0000-0000-0000-000000000002/jobs/00000000-0000-0000-0000-000000000003/runnerresolve/actions"
        );
    }

    #[test]
    fn download_auth_is_basic_x_access_token_or_bearer_for_codeload() {
        let api = Url::parse("https://api.github.com/repos/a/b/tarball/x").unwrap();
        let basic = download_auth_header(&api, "tok", true).unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic eC1hY2Nlc3MtdG9rZW46dG9r");
        assert!(basic.is_sensitive());
        let codeload = Url::parse("https://codeload.github.com/a/b/tar.gz/x").unwrap();
        let bearer = download_auth_header(&codeload, "tok", true).unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer tok");
        let plain = download_auth_header(&codeload, "tok", false).unwrap();
        assert!(plain.to_str().unwrap().starts_with("Basic "));
    }

    #[test]
    fn unresolvable_bodies_join_their_messages() {
        let body = r#"{"errors":{"a/b@v1":{"message":"not allowed"},"c/d@v2":{"message":"gone"}}}"#;
        assert_eq!(unresolvable_message(body), "not allowed. gone");
        assert_eq!(unresolvable_message("nope"), "nope");
    }
}
