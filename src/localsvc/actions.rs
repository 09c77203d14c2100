//! Local service: `uses:` action resolution on both paths and tarball downloads, from a
//! directory of tarballs described by an index ([`ActionIndex`], read from a `SOURCE` file).
//!
//! ```text
//!  OPTIONS /_services/pipelines/_apis/   location list: actiondownloadinfo at
//!        _apis/v1/ActionDownloadInfo/{scopeIdentifier}/{hubName}/{planId} (as runner.server
//!        serves it), or not listed at all after `list_action_location(false)`
//!  POST /_services/pipelines/_apis/v1/ActionDownloadInfo/{scope}/{hub}/{plan}   (discovered)
//!  POST /_services/pipelines/{scope}/_apis/distributedtask/hubs/{hub}/plans/{plan}/actiondownloadinfo
//!  POST /actions/build/{plan}/jobs/{job}/runnerresolve/actions           (run service, launch)
//!        both need Bearer JOB_TOKEN; unknown actions → 422 {"errors":{key:{"message"}}}
//!  GET  /api/v3/repos/{owner}/{repo}/tarball/{sha}   Basic x-access-token:<action token>
//!        → 302 /_codeload/{owner}/{repo}/legacy.tar.gz/{sha}   → the tarball bytes
//! ```
//!
//! Each served action can answer its tarball with the file, a fixed status (404, 403) or
//! fixed bytes (a corrupt archive), so tests can exercise every failure.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;

use super::protocol::has_job_token;
use super::state::Shared;
use super::{TENANT_PATH, rest_error};
use crate::protocol::actions::{
    ActionDownloadAuthentication, ActionDownloadInfo, ActionDownloadInfoCollection,
    ActionReferenceList, LaunchActionInfo, LaunchAuthentication, ResolveActionsRequest,
    ResolveActionsResponse, lookup_key,
};

/// What the tarball endpoint answers for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarballAnswer {
    /// The file's bytes.
    File(PathBuf),
    /// An empty answer with this status (e.g. 404, 403).
    Status(u16),
    /// These bytes (e.g. a corrupt archive).
    Bytes(Vec<u8>),
}

/// One action the service resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedAction {
    /// `owner/repo`.
    pub name: String,
    /// The commit it resolves to.
    pub sha: String,
    /// What its tarball URL answers.
    pub tarball: TarballAnswer,
}

/// Actions by `owner/repo@ref` (and `owner/repo@<sha>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionIndex {
    actions: BTreeMap<String, ServedAction>,
    /// Whether `OPTIONS _apis/` lists the actiondownloadinfo resource (at
    /// [`DISCOVERED_TEMPLATE`]); when not, clients fall back to the fixed template.
    pub list_location: bool,
}

impl Default for ActionIndex {
    fn default() -> Self {
        ActionIndex {
            actions: BTreeMap::new(),
            list_location: true,
        }
    }
}

/// The route template location discovery lists for actiondownloadinfo (the one
/// ChristopherHX/runner.server serves), deliberately not the fixed fallback.
pub const DISCOVERED_TEMPLATE: &str =
    "_apis/v1/ActionDownloadInfo/{scopeIdentifier}/{hubName}/{planId}";

/// A `SOURCE` index that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the action index {}: {reason}", path.display())]
pub struct IndexError {
    /// The index file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl ActionIndex {
    /// Reads `<dir>/SOURCE`: `#` comments, then lines `repo ref commit bytes file` (the
    /// format of the conformance actions folder); each action is served at `repo@ref` and
    /// `repo@commit` from `<dir>/<file>`.
    pub fn from_source_file(dir: &FsPath) -> Result<ActionIndex, IndexError> {
        let path = dir.join("SOURCE");
        let fail = |reason: String| IndexError {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let mut index = ActionIndex::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [repo, git_ref, commit, _bytes, file] = fields[..] else {
                return Err(fail(format!("line {} has not 5 fields", n + 1)));
            };
            index.insert(repo, git_ref, commit, TarballAnswer::File(dir.join(file)));
        }
        Ok(index)
    }

    /// Serves `repo@git_ref` (and `repo@sha`) as commit `sha` with `tarball`.
    pub fn insert(&mut self, repo: &str, git_ref: &str, sha: &str, tarball: TarballAnswer) {
        let served = ServedAction {
            name: repo.to_owned(),
            sha: sha.to_owned(),
            tarball,
        };
        self.actions.insert(lookup_key(repo, sha), served.clone());
        self.actions.insert(lookup_key(repo, git_ref), served);
    }

    /// Also serves `repo@alias` as whatever `repo@existing` is (e.g. `v4` for `v4.4.0`).
    pub fn alias(&mut self, repo: &str, alias: &str, existing: &str) -> bool {
        match self.actions.get(&lookup_key(repo, existing)).cloned() {
            Some(served) => {
                self.actions.insert(lookup_key(repo, alias), served);
                true
            }
            None => false,
        }
    }

    /// The action served at `key` (`owner/repo@ref`).
    pub fn get(&self, key: &str) -> Option<&ServedAction> {
        self.actions.get(key)
    }

    fn by_commit(&self, name: &str, sha: &str) -> Option<&ServedAction> {
        self.actions
            .get(&lookup_key(name, sha))
            .filter(|a| a.sha == sha)
    }
}

/// The per-action download token the service hands out (fake, deterministic).
pub fn action_token(sha: &str) -> String {
    format!("ghs_FAKE_ACTION_{}", &sha[..sha.len().min(12)])
}

type Index = Arc<Mutex<ActionIndex>>;

fn index_of(shared: &Shared) -> Index {
    let mut state = shared.lock();
    if let Some(existing) = state.extensions.get::<Index>() {
        return existing.clone();
    }
    let created: Index = Arc::default();
    state.extensions.insert(created.clone());
    created
}

/// Replaces the actions `shared`'s service resolves and serves.
pub fn serve_actions(shared: &Shared, index: ActionIndex) {
    *index_of(shared).lock().unwrap_or_else(|p| p.into_inner()) = index;
}

fn lookup(shared: &Shared, key: &str) -> Option<ServedAction> {
    index_of(shared)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .cloned()
}

/// The routes of this area.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            &format!("/{TENANT_PATH}{{scope}}/_apis/distributedtask/hubs/{{hub}}/plans/{{plan}}/actiondownloadinfo"),
            post(resolve_legacy),
        )
        .route(
            &format!("/{TENANT_PATH}_apis/v1/ActionDownloadInfo/{{scope}}/{{hub}}/{{plan}}"),
            post(resolve_legacy),
        )
        .route(&format!("/{TENANT_PATH}_apis/"), axum::routing::options(locations))
        .route(
            "/actions/build/{plan}/jobs/{job}/runnerresolve/actions",
            post(resolve_run_service),
        )
        .route("/api/v3/repos/{owner}/{repo}/tarball/{sha}", get(tarball_api))
        .route("/_codeload/{owner}/{repo}/legacy.tar.gz/{sha}", get(codeload))
}

/// `OPTIONS _apis/`: the location list (only the actiondownloadinfo resource so far).
async fn locations(State(shared): State<Shared>) -> Response {
    let listed = index_of(&shared)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .list_location;
    let value: Vec<serde_json::Value> = if listed {
        vec![json!({
            "id": crate::client::actions::LEGACY_LOCATION_ID,
            "area": "distributedtask",
            "resourceName": "actiondownloadinfo",
            "routeTemplate": DISCOVERED_TEMPLATE,
            "resourceVersion": 1, "minVersion": "1.0", "maxVersion": "6.0", "releasedVersion": "0.0",
        })]
    } else {
        Vec::new()
    };
    axum::Json(json!({ "count": value.len(), "value": value })).into_response()
}

fn info_for(shared: &Shared, name: &str, git_ref: &str) -> Result<ActionDownloadInfo, String> {
    let key = lookup_key(name, git_ref);
    let served = lookup(shared, &key).ok_or_else(|| {
        format!("Unable to resolve action `{key}`, repository or version not found")
    })?;
    let base = shared.lock().base_url.clone();
    Ok(ActionDownloadInfo {
        name_with_owner: name.to_owned(),
        git_ref: git_ref.to_owned(),
        resolved_name_with_owner: served.name.clone(),
        resolved_sha: served.sha.clone(),
        tarball_url: format!("{base}/api/v3/repos/{}/tarball/{}", served.name, served.sha),
        zipball_url: Some(format!(
            "{base}/api/v3/repos/{}/zipball/{}",
            served.name, served.sha
        )),
        authentication: Some(ActionDownloadAuthentication {
            token: action_token(&served.sha),
            expires_at: Some("2099-01-01T00:00:00Z".to_owned()),
        }),
        package_details: None,
    })
}

fn unresolvable(errors: BTreeMap<String, String>) -> Response {
    let errors: serde_json::Map<String, serde_json::Value> = errors
        .into_iter()
        .map(|(k, m)| (k, json!({ "message": m })))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "errors": errors })),
    )
        .into_response()
}

/// Resolves each `(name, ref)`; 422 naming every unknown one.
fn resolve_all(
    shared: &Shared,
    wanted: impl Iterator<Item = (String, String)>,
) -> Result<BTreeMap<String, ActionDownloadInfo>, Response> {
    let mut found = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (name, git_ref) in wanted {
        match info_for(shared, &name, &git_ref) {
            Ok(info) => {
                found.insert(lookup_key(&name, &git_ref), info);
            }
            Err(message) => {
                errors.insert(lookup_key(&name, &git_ref), message);
            }
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(unresolvable(errors))
    }
}

async fn resolve_legacy(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !has_job_token(&headers) {
        return rest_error(StatusCode::UNAUTHORIZED, "job token required");
    }
    let Ok(list) = crate::protocol::lenient::from_slice::<ActionReferenceList>(&body) else {
        return rest_error(StatusCode::BAD_REQUEST, "not an ActionReferenceList");
    };
    let wanted = list
        .actions
        .into_iter()
        .map(|a| (a.name_with_owner, a.git_ref));
    match resolve_all(&shared, wanted) {
        Ok(actions) => axum::Json(ActionDownloadInfoCollection { actions }).into_response(),
        Err(response) => response,
    }
}

async fn resolve_run_service(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !has_job_token(&headers) {
        return rest_error(StatusCode::UNAUTHORIZED, "job token required");
    }
    let Ok(request) = serde_json::from_slice::<ResolveActionsRequest>(&body) else {
        return rest_error(StatusCode::BAD_REQUEST, "not a resolve request");
    };
    let wanted = request.actions.into_iter().map(|a| (a.action, a.version));
    match resolve_all(&shared, wanted) {
        Ok(actions) => {
            let actions = actions
                .into_iter()
                .map(|(k, info)| (k, to_launch(info)))
                .collect();
            axum::Json(ResolveActionsResponse { actions }).into_response()
        }
        Err(response) => response,
    }
}

fn to_launch(info: ActionDownloadInfo) -> LaunchActionInfo {
    LaunchActionInfo {
        name: info.name_with_owner,
        version: info.git_ref,
        resolved_name: info.resolved_name_with_owner,
        resolved_sha: info.resolved_sha,
        tar_url: info.tarball_url,
        zip_url: info.zipball_url,
        authentication: info.authentication.map(|a| LaunchAuthentication {
            token: a.token,
            expires_at: a.expires_at,
        }),
        package_details: None,
    }
}

/// The REST tarball endpoint: checks the per-action token, then redirects to "codeload".
async fn tarball_api(
    State(shared): State<Shared>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let name = format!("{owner}/{repo}");
    let served = {
        let index = index_of(&shared);
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        index.by_commit(&name, &sha).cloned()
    };
    let Some(served) = served else {
        return rest_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("x-access-token:{}", action_token(&served.sha)));
    if super::authorization(&headers, "Basic") != Some(expected.as_str()) {
        return rest_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let location = format!("/_codeload/{name}/legacy.tar.gz/{sha}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn codeload(
    State(shared): State<Shared>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    let served = {
        let index = index_of(&shared);
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        index.by_commit(&format!("{owner}/{repo}"), &sha).cloned()
    };
    let Some(served) = served else {
        return rest_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let gzip = [(header::CONTENT_TYPE, "application/x-gzip")];
    match served.tarball {
        TarballAnswer::File(path) => match tokio::fs::read(&path).await {
            Ok(bytes) => (gzip, bytes).into_response(),
            Err(_) => rest_error(StatusCode::NOT_FOUND, "Not Found"),
        },
        TarballAnswer::Bytes(bytes) => (gzip, bytes).into_response(),
        TarballAnswer::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}
