//! Wire types of action resolution (protocol-actions.md §1.2–1.3): which repository actions a
//! job wants (`owner/repo@ref`) and where to download each one (resolved SHA, tarball URL,
//! per-action token). No I/O; the calls are in `client::actions`.
//!
//! Two shapes, one meaning:
//!
//! ```text
//!  legacy (VSS JobServer)       POST …/actiondownloadinfo   camelCase  ActionReferenceList
//!                                                                      → ActionDownloadInfoCollection
//!  run service (launch)         POST …/runnerresolve/actions snake_case ResolveActionsRequest
//!                                                                      → ResolveActionsResponse
//! ```
//!
//! The run-service answer is mapped onto the legacy [`ActionDownloadInfo`] (name →
//! nameWithOwner, version → ref, resolved_name → resolvedNameWithOwner, tar_url → tarballUrl,
//! zip_url → zipballUrl), as `LaunchServer.cs` does, so everything after resolution sees one type.
//! Both answers are maps keyed by exactly `"<name>@<ref>"` as sent ([`lookup_key`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The key of one action in both answers: `"{name}@{ref}"` (the official runner looks it up
/// ordinally, so the case must match what was sent).
pub fn lookup_key(name_with_owner: &str, git_ref: &str) -> String {
    format!("{name_with_owner}@{git_ref}")
}

/// One action to resolve on the legacy path (`ActionReference.cs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReference {
    /// `owner/repo`.
    #[serde(alias = "NameWithOwner")]
    pub name_with_owner: String,
    /// The ref as written after `@` (tag, branch or SHA).
    #[serde(rename = "ref", alias = "Ref")]
    pub git_ref: String,
    /// The sub-directory of the action in the repository, if any (sent as `null` otherwise,
    /// as the official runner's serializer does).
    #[serde(default, alias = "Path")]
    pub path: Option<String>,
}

/// The legacy request body (`ActionReferenceList.cs`): `{"actions":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionReferenceList {
    /// The actions to resolve.
    #[serde(alias = "Actions")]
    pub actions: Vec<ActionReference>,
}

/// The per-action credential of a download (`ActionDownloadAuthentication`).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDownloadAuthentication {
    /// The token sent with the tarball download (may be empty: then `github.token` is used).
    #[serde(default, alias = "Token")]
    pub token: String,
    /// When the token expires (ISO 8601, kept as text).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "ExpiresAt")]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for ActionDownloadAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionDownloadAuthentication")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Immutable-action package facts (`packageDetails`), logged only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetails {
    /// Package version.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Version")]
    pub version: Option<String>,
    /// Manifest digest.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "ManifestDigest"
    )]
    pub manifest_digest: Option<String>,
}

/// Where to download one action (`ActionDownloadInfo.cs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDownloadInfo {
    /// `owner/repo` as requested (echoed).
    #[serde(default, alias = "NameWithOwner")]
    pub name_with_owner: String,
    /// The ref as requested (echoed).
    #[serde(default, rename = "ref", alias = "Ref")]
    pub git_ref: String,
    /// `owner/repo` after redirects and renames.
    #[serde(default, alias = "ResolvedNameWithOwner")]
    pub resolved_name_with_owner: String,
    /// The commit the ref resolved to (40 hex).
    #[serde(default, alias = "ResolvedSha")]
    pub resolved_sha: String,
    /// The gzip tarball URL (Linux and macOS).
    #[serde(default, alias = "TarballUrl")]
    pub tarball_url: String,
    /// The zipball URL (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "ZipballUrl")]
    pub zipball_url: Option<String>,
    /// The download credential, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "Authentication"
    )]
    pub authentication: Option<ActionDownloadAuthentication>,
    /// Immutable-action package facts, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "PackageDetails"
    )]
    pub package_details: Option<PackageDetails>,
}

impl ActionDownloadInfo {
    /// The download token, if a non-empty one was given.
    pub fn token(&self) -> Option<&str> {
        self.authentication
            .as_ref()
            .map(|a| a.token.as_str())
            .filter(|t| !t.is_empty())
    }
}

/// The legacy answer (`ActionDownloadInfoCollection.cs`): `{"actions":{"owner/repo@ref":{…}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionDownloadInfoCollection {
    /// Download info by [`lookup_key`].
    #[serde(default, alias = "Actions")]
    pub actions: BTreeMap<String, ActionDownloadInfo>,
}

/// One action in the run-service request (`LaunchContracts.cs` ActionReferenceRequest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReferenceRequest {
    /// `owner/repo`.
    pub action: String,
    /// The ref as written.
    pub version: String,
    /// The sub-directory, omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The run-service request body (`ActionReferenceRequestList`), snake_case, empty members
/// omitted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResolveActionsRequest {
    /// The actions to resolve.
    pub actions: Vec<ActionReferenceRequest>,
    /// The job message's `dependencies` (workflow lockfile pins), omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions_dependencies: Vec<String>,
}

impl From<&ActionReferenceList> for ResolveActionsRequest {
    fn from(list: &ActionReferenceList) -> Self {
        ResolveActionsRequest {
            actions: list
                .actions
                .iter()
                .map(|a| ActionReferenceRequest {
                    action: a.name_with_owner.clone(),
                    version: a.git_ref.clone(),
                    path: a.path.clone().filter(|p| !p.is_empty()),
                })
                .collect(),
            actions_dependencies: Vec::new(),
        }
    }
}

/// The run-service credential (`ActionDownloadAuthenticationResponse`).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchAuthentication {
    /// The download token.
    #[serde(default)]
    pub token: String,
    /// Expiry (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for LaunchAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchAuthentication")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Immutable-action facts on the run-service path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchPackageDetails {
    /// Package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
}

/// One resolved action on the run-service path (`ActionDownloadInfoResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchActionInfo {
    /// `owner/repo` as requested.
    #[serde(default)]
    pub name: String,
    /// The ref as requested.
    #[serde(default)]
    pub version: String,
    /// `owner/repo` after renames.
    #[serde(default)]
    pub resolved_name: String,
    /// The commit.
    #[serde(default)]
    pub resolved_sha: String,
    /// Tarball URL.
    #[serde(default)]
    pub tar_url: String,
    /// Zipball URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_url: Option<String>,
    /// The download credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<LaunchAuthentication>,
    /// Immutable-action facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_details: Option<LaunchPackageDetails>,
}

impl From<LaunchActionInfo> for ActionDownloadInfo {
    fn from(info: LaunchActionInfo) -> Self {
        ActionDownloadInfo {
            name_with_owner: info.name,
            git_ref: info.version,
            resolved_name_with_owner: info.resolved_name,
            resolved_sha: info.resolved_sha,
            tarball_url: info.tar_url,
            zipball_url: info.zip_url,
            authentication: info.authentication.map(|a| ActionDownloadAuthentication {
                token: a.token,
                expires_at: a.expires_at,
            }),
            package_details: info.package_details.map(|p| PackageDetails {
                version: p.version,
                manifest_digest: p.manifest_digest,
            }),
        }
    }
}

/// The run-service answer (`ActionDownloadInfoResponseCollection`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResolveActionsResponse {
    /// Resolved actions by [`lookup_key`].
    #[serde(default)]
    pub actions: BTreeMap<String, LaunchActionInfo>,
}

impl From<ResolveActionsResponse> for ActionDownloadInfoCollection {
    fn from(response: ResolveActionsResponse) -> Self {
        ActionDownloadInfoCollection {
            actions: response
                .actions
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_request_is_camel_case_with_null_path() {
        let list = ActionReferenceList {
            actions: vec![ActionReference {
                name_with_owner: "actions/checkout".into(),
                git_ref: "v4".into(),
                path: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"{"actions":[{"nameWithOwner":"actions/checkout","ref":"v4","path":null}]}"#
        );
        let launch = ResolveActionsRequest::from(&list);
        assert_eq!(
            serde_json::to_string(&launch).unwrap(),
            r#"{"actions":[{"action":"actions/checkout","version":"v4"}]}"#
        );
    }

    #[test]
    fn pascal_case_legacy_answer_reads_and_tokens_stay_out_of_debug() {
        let json = r#"{"Actions":{"a/b@v1":{"NameWithOwner":"a/b","Ref":"v1",
            "ResolvedNameWithOwner":"a/b","ResolvedSha":"abc","TarballUrl":"http://x/t",
            "Authentication":{"Token":"ghs_SECRET","ExpiresAt":"2026-01-01T00:00:00Z"}}}}"#;
        let answer: ActionDownloadInfoCollection = serde_json::from_str(json).unwrap();
        let info = &answer.actions[&lookup_key("a/b", "v1")];
        assert_eq!(info.resolved_sha, "abc");
        assert_eq!(info.token(), Some("ghs_SECRET"));
        assert!(!format!("{answer:?}").contains("ghs_SECRET"));
    }
}
