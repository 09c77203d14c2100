//! Registering and removing runners (protocol §1): the `runner-registration` token exchange,
//! then either the legacy pool/agent flow or the runner-admin ("v2") flow, as the server's
//! `use_v2_flow` decides; removal in both flows.
//!
//! ```text
//! register: POST actions/runner-registration (RemoteAuth token)
//!   ├─ use_v2_flow=false: connectionData → pools → agents?agentName → POST add | PUT replace
//!   │                     → echo checks → properties → OAuth connection test
//!   └─ use_v2_flow=true:  runner-groups → runners?name → POST actions/runners/register
//! remove:  legacy: runner-registration(remove) → agents?agentName → DELETE agent
//!          runner-admin: DELETE {entity}/runners/{id} (RemoteAuth remove token)
//! ```
//!
//! Pure pieces (labels, group choice, files from answers) are separate functions with tests.
//! Tokens are never logged.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::http::{HttpClient, read_json, runner_arch};
use super::url::GitHubUrl;
use super::{ClientError, TokenProvider};
use crate::config::runner::{CredentialData, Credentials, RunnerSettings, SCHEME_OAUTH};
use crate::crypto::rsa::RunnerKey;
use crate::protocol::Secret;
use crate::protocol::registration::{
    AgentLabel, ListRunnersResponse, PROP_REQUIRE_FIPS, PROP_SERVER_URL_V2, PROP_USE_V2_FLOW,
    RunnerAdminRegisterRequest, RunnerAdminRegisterResponse, RunnerGroup, RunnerGroupList,
    RunnerRegistrationRequest, TaskAgent, TaskAgentAuthorization, TaskAgentPool, TenantCredential,
};
use crate::protocol::vss::VssList;

/// api-version of the pools resource.
const POOLS_API_VERSION: &str = "5.1-preview.1";
/// api-version of the agents resource.
const AGENTS_API_VERSION: &str = "6.0-preview.2";
/// Accept header of GitHub REST calls.
const GITHUB_REST_ACCEPT: &str = "application/vnd.github.v3+json";
/// Work folder name written to `.runner` (as the official runner).
pub const WORK_FOLDER: &str = "_work";
/// The only token schema `runner-registration` may answer with.
const TOKEN_SCHEMA_OAUTH: &str = "OAuthAccessToken";

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Runner name.
    pub name: String,
    /// User labels.
    pub labels: Vec<String>,
    /// Add `self-hosted`, the OS and the architecture.
    pub default_labels: bool,
    /// Runner group name (`None` = the default group).
    pub runner_group: Option<String>,
    /// One job, then deleted by the server.
    pub ephemeral: bool,
    /// Replace a runner of the same name.
    pub replace: bool,
    /// Ask the server not to offer updates.
    pub disable_update: bool,
    /// The official runner version to register as ([`crate::version::VersionPolicy`]).
    pub runner_version: String,
}

/// Which registration flow was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Legacy pool/agent flow.
    Legacy,
    /// Runner-admin REST flow.
    RunnerAdmin,
}

/// The result of a registration: the contents of `.runner` and `.credentials`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredRunner {
    /// `.runner`.
    pub runner: RunnerSettings,
    /// `.credentials`.
    pub credentials: Credentials,
    /// The flow used.
    pub flow: Flow,
    /// Whether an existing runner was replaced.
    pub replaced: bool,
}

/// Errors of registration and removal.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `runner-registration` refused the token.
    #[error(
        "the {event} token was refused by {url}: it is wrong, expired (tokens last one hour) or \
         for another repository or organisation; create a new one"
    )]
    TokenRefused {
        /// `register` or `remove`.
        event: &'static str,
        /// The URL called.
        url: String,
        /// The refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// The runner-admin API refused to delete the runner.
    #[error(
        "{url} refused to delete the runner: the remove token is wrong or expired, or the runner \
         no longer exists on the server (then delete the runner's directory by hand)"
    )]
    RemoveRefused {
        /// The URL called.
        url: String,
        /// The refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// The server answered with a credential type we cannot use.
    #[error("the server answered with token schema {schema:?}; only OAuthAccessToken is supported")]
    UnsupportedTokenSchema {
        /// The schema.
        schema: String,
    },
    /// On GHES, the service URL must be on the server's host.
    #[error(
        "the Actions service URL {tenant} is not on {host}; refusing to send credentials there"
    )]
    TenantHostMismatch {
        /// The tenant URL.
        tenant: String,
        /// The GHES host.
        host: String,
    },
    /// No runner group of that name.
    #[error("there is no runner group named {name:?}; available groups: {}", available.join(", "))]
    GroupNotFound {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// No default runner group.
    #[error("the server has no default runner group; pass --runner-group")]
    NoDefaultGroup,
    /// A runner of that name exists and `--replace` was not given.
    #[error(
        "a runner named {name:?} already exists: pass --replace to replace it, or choose another --name"
    )]
    RunnerExists {
        /// The name.
        name: String,
    },
    /// The server did not honour a requested setting.
    #[error("the server did not accept {what}")]
    NotAccepted {
        /// The setting.
        what: &'static str,
    },
    /// The server's answer lacks the OAuth credential.
    #[error("the server returned no OAuth credential (client id and token URL) for the runner")]
    NoCredential,
    /// No labels at all.
    #[error("--no-default-labels needs at least one label (--labels or --image)")]
    NoLabels,
}

/// The labels to register: default system labels (unless disabled), then user labels, without
/// case-insensitive duplicates.
pub fn build_labels(opts: &RegisterOptions) -> Result<Vec<AgentLabel>, RegistrationError> {
    let mut labels: Vec<AgentLabel> = Vec::new();
    if opts.default_labels {
        for name in ["self-hosted", runner_os(), runner_arch()] {
            labels.push(AgentLabel::system(name));
        }
    }
    for name in opts
        .labels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
    {
        if !labels.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
            labels.push(AgentLabel::user(name));
        }
    }
    if labels.is_empty() {
        return Err(RegistrationError::NoLabels);
    }
    Ok(labels)
}

/// The OS label: `Linux`, `macOS` or `Windows`.
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macOS",
        "windows" => "Windows",
        _ => "Linux",
    }
}

/// Picks the legacy pool: by name (case-insensitive, non-hosted), else the internal one.
pub fn select_pool<'a>(
    pools: &'a [TaskAgentPool],
    name: Option<&str>,
) -> Result<&'a TaskAgentPool, RegistrationError> {
    select_group_by(pools, name, |p| (&p.name, p.is_hosted, p.is_internal))
}

/// Picks the runner-admin group: by name (case-insensitive, non-hosted), else the default.
pub fn select_group<'a>(
    groups: &'a [RunnerGroup],
    name: Option<&str>,
) -> Result<&'a RunnerGroup, RegistrationError> {
    select_group_by(groups, name, |g| (&g.name, g.is_hosted, g.default))
}

/// The selection rule both flows share; `facts` gives (name, is hosted, is the default).
fn select_group_by<'a, T>(
    groups: &'a [T],
    name: Option<&str>,
    facts: impl Fn(&T) -> (&String, bool, bool),
) -> Result<&'a T, RegistrationError> {
    let usable = || groups.iter().filter(|g| !facts(g).1);
    match name {
        Some(name) => usable()
            .find(|g| facts(g).0.eq_ignore_ascii_case(name))
            .ok_or_else(|| RegistrationError::GroupNotFound {
                name: name.to_owned(),
                available: usable().map(|g| facts(g).0.clone()).collect(),
            }),
        None => usable()
            .find(|g| facts(g).2)
            .ok_or(RegistrationError::NoDefaultGroup),
    }
}

/// `.credentials` from the legacy answer (§1.6): requires a non-empty client id and token URL;
/// `requireFipsCryptography` follows the agent property, defaulting to `True`.
pub fn credentials_from_agent(agent: &TaskAgent) -> Result<Credentials, RegistrationError> {
    let auth = agent
        .authorization
        .as_ref()
        .ok_or(RegistrationError::NoCredential)?;
    let client_id = auth.client_id.clone().unwrap_or_default();
    let url = auth.authorization_url.clone().unwrap_or_default();
    if client_id.is_empty()
        || url.is_empty()
        || uuid::Uuid::parse_str(&client_id).is_ok_and(|u| u.is_nil())
    {
        return Err(RegistrationError::NoCredential);
    }
    let fips = agent.properties.get_bool(PROP_REQUIRE_FIPS).unwrap_or(true);
    Ok(Credentials {
        scheme: SCHEME_OAUTH.to_owned(),
        data: CredentialData {
            client_id,
            authorization_url: url,
            require_fips_cryptography: Some(if fips { "True" } else { "False" }.to_owned()),
            ..Default::default()
        },
    })
}

/// `.credentials` from the runner-admin answer (§1.5): with a legacy URL the runner starts in
/// auth migration (legacy URL first, V2 URL kept).
pub fn credentials_from_admin(answer: &RunnerAdminRegisterResponse) -> Credentials {
    let auth = &answer.authorization;
    let legacy = auth
        .legacy_authorization_url
        .clone()
        .filter(|u| !u.is_empty());
    let mut data = CredentialData {
        client_id: auth.client_id.clone(),
        authorization_url: legacy
            .clone()
            .unwrap_or_else(|| auth.authorization_url.clone()),
        require_fips_cryptography: Some("True".to_owned()),
        ..Default::default()
    };
    if legacy.is_some() {
        data.authorization_url_v2 = Some(auth.authorization_url.clone());
        data.enable_auth_migration_by_default = Some("true".to_owned());
    }
    Credentials {
        scheme: SCHEME_OAUTH.to_owned(),
        data,
    }
}

/// Registers a runner with `key` using a registration `token`. `progress` receives one line
/// per step.
pub async fn register(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    key: &RunnerKey,
    opts: &RegisterOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RegisteredRunner, RegistrationError> {
    let labels = build_labels(opts)?;
    progress(&format!(
        "Exchanging the registration token at {}",
        github.runner_registration_url()
    ));
    let tenant = exchange_token(http, github, token, "register").await?;
    if tenant.use_v2_flow == Some(true) {
        register_runner_admin(http, github, token, &tenant, key, opts, labels, progress).await
    } else {
        register_legacy(http, github, &tenant, key, opts, labels, progress).await
    }
}

/// `POST actions/runner-registration` with `RemoteAuth <token>`.
pub async fn exchange_token(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    event: &'static str,
) -> Result<TenantCredential, RegistrationError> {
    let url = github.runner_registration_url();
    let body = RunnerRegistrationRequest {
        url: github.url.clone(),
        runner_event: event.to_owned(),
    };
    let request = http
        .request(Method::POST, &url)
        .header(AUTHORIZATION, secret_header("RemoteAuth", token))
        .header(ACCEPT, GITHUB_REST_ACCEPT)
        .json(&body);
    let tenant: TenantCredential = match http.send_json(request).await {
        Ok(t) => t,
        Err(source) if matches!(source.status().map(|s| s.as_u16()), Some(401 | 403 | 404)) => {
            return Err(RegistrationError::TokenRefused {
                event,
                url,
                source: Box::new(source),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(schema) = tenant
        .token_schema
        .as_deref()
        .filter(|s| *s != TOKEN_SCHEMA_OAUTH)
    {
        return Err(RegistrationError::UnsupportedTokenSchema {
            schema: schema.to_owned(),
        });
    }
    check_tenant_host(github, &tenant.url)?;
    tracing::debug!(tenant = %tenant.url, use_v2_flow = ?tenant.use_v2_flow, "exchanged registration token");
    Ok(tenant)
}

/// On GHES the tenant must be the server's host or a subdomain of it.
fn check_tenant_host(github: &GitHubUrl, tenant: &str) -> Result<(), RegistrationError> {
    if github.hosted {
        return Ok(());
    }
    let host = github.host().unwrap_or_default().to_ascii_lowercase();
    let tenant_host = url::Url::parse(tenant)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if tenant_host == host || tenant_host.ends_with(&format!(".{host}")) {
        Ok(())
    } else {
        Err(RegistrationError::TenantHostMismatch {
            tenant: tenant.to_owned(),
            host,
        })
    }
}

fn secret_header(scheme: &str, token: &Secret) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    value.set_sensitive(true);
    value
}

/// A request to the legacy service with the VSS headers.
fn vss_request(
    http: &HttpClient,
    method: Method,
    url: &str,
    api_version: &str,
    bearer: &Secret,
) -> reqwest::RequestBuilder {
    http.request(method, url)
        .header(AUTHORIZATION, secret_header("Bearer", bearer))
        .header(
            ACCEPT,
            format!("application/json; api-version={api_version}"),
        )
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .header("X-VSS-E2EID", uuid::Uuid::new_v4().to_string())
}

fn vss_json<T: serde::Serialize>(
    request: reqwest::RequestBuilder,
    api_version: &str,
    body: &T,
) -> reqwest::RequestBuilder {
    // Serialising wire structs cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    request
        .header(
            CONTENT_TYPE,
            format!("application/json; charset=utf-8; api-version={api_version}"),
        )
        .body(bytes)
}

fn host_description() -> String {
    let uname = nix::sys::utsname::uname().ok();
    match uname {
        Some(u) => format!(
            "{} {} {}",
            u.sysname().to_string_lossy(),
            u.release().to_string_lossy(),
            u.version().to_string_lossy()
        ),
        None => std::env::consts::OS.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)] // the flow's inputs; grouping them would only rename them
async fn register_legacy(
    http: &HttpClient,
    github: &GitHubUrl,
    tenant: &TenantCredential,
    key: &RunnerKey,
    opts: &RegisterOptions,
    labels: Vec<AgentLabel>,
    progress: &mut dyn FnMut(&str),
) -> Result<RegisteredRunner, RegistrationError> {
    let base = tenant.url.trim_end_matches('/').to_owned() + "/";
    let bearer = &tenant.token;
    progress(&format!("Connecting to the Actions service at {base}"));
    let cd_url =
        format!("{base}_apis/connectionData?connectOptions=0&lastChangeId=-1&lastChangeId64=-1");
    http.send(vss_request(http, Method::GET, &cd_url, "1.0", bearer))
        .await?;

    let pools_url = format!("{base}_apis/distributedtask/pools?poolType=Automation");
    let pools: VssList<TaskAgentPool> = http
        .send_json(vss_request(
            http,
            Method::GET,
            &pools_url,
            POOLS_API_VERSION,
            bearer,
        ))
        .await?;
    let pool = select_pool(&pools.value, opts.runner_group.as_deref())?.clone();
    progress(&format!("Runner group: {}", pool.name));

    let find_url = format!(
        "{base}_apis/distributedtask/pools/0/agents?agentName={}",
        url::form_urlencoded::byte_serialize(opts.name.as_bytes()).collect::<String>()
    );
    let found: VssList<TaskAgent> = http
        .send_json(vss_request(
            http,
            Method::GET,
            &find_url,
            AGENTS_API_VERSION,
            bearer,
        ))
        .await?;
    let existing = found
        .value
        .into_iter()
        .find(|a| a.name.eq_ignore_ascii_case(&opts.name));

    let mut agent = existing.clone().unwrap_or_default();
    agent.name = opts.name.clone();
    agent.version = opts.runner_version.clone();
    agent.os_description = Some(host_description());
    agent.max_parallelism = Some(1);
    agent.ephemeral = Some(opts.ephemeral);
    agent.disable_update = Some(opts.disable_update);
    agent.labels = labels.clone();
    agent.authorization = Some(TaskAgentAuthorization {
        public_key: Some(key.task_agent_public_key()),
        ..existing
            .as_ref()
            .and_then(|a| a.authorization.clone())
            .unwrap_or_default()
    });
    let answer: TaskAgent = match &existing {
        Some(old) if !opts.replace => {
            let _ = old;
            return Err(RegistrationError::RunnerExists {
                name: opts.name.clone(),
            });
        }
        Some(old) => {
            progress(&format!("Replacing runner {} (id {})", old.name, old.id));
            let url = format!(
                "{base}_apis/distributedtask/pools/{}/agents/{}",
                pool.id, old.id
            );
            let req = vss_request(http, Method::PUT, &url, AGENTS_API_VERSION, bearer);
            read_json(http.send(vss_json(req, AGENTS_API_VERSION, &agent)).await?).await?
        }
        None => {
            agent.created_on = Some("0001-01-01T00:00:00".to_owned());
            agent.status = Some(serde_json::Value::from(0));
            progress(&format!("Adding runner {}", opts.name));
            let url = format!("{base}_apis/distributedtask/pools/{}/agents", pool.id);
            let req = vss_request(http, Method::POST, &url, AGENTS_API_VERSION, bearer);
            read_json(http.send(vss_json(req, AGENTS_API_VERSION, &agent)).await?).await?
        }
    };
    if opts.ephemeral && answer.ephemeral != Some(true) {
        return Err(RegistrationError::NotAccepted {
            what: "--ephemeral",
        });
    }
    if opts.disable_update && answer.disable_update != Some(true) {
        return Err(RegistrationError::NotAccepted {
            what: "--disable-update",
        });
    }
    let credentials = credentials_from_agent(&answer)?;
    let runner = RunnerSettings {
        agent_id: answer.id,
        agent_name: answer.name.clone(),
        pool_id: pool.id,
        pool_name: Some(pool.name.clone()),
        server_url: base.clone(),
        git_hub_url: github.url.clone(),
        work_folder: Some(WORK_FOLDER.to_owned()),
        use_v2_flow: answer
            .properties
            .get_bool(PROP_USE_V2_FLOW)
            .unwrap_or(false),
        server_url_v2: answer
            .properties
            .get_string(PROP_SERVER_URL_V2)
            .filter(|s| !s.is_empty()),
        ephemeral: opts.ephemeral,
        disable_update: opts.disable_update,
        is_hosted_server: (!github.hosted).then_some(false),
        labels: labels.iter().map(|l| l.name.clone()).collect(),
        ..Default::default()
    };
    progress("Testing the runner's credential");
    let tokens = TokenProvider::new(http.clone(), &credentials, key.clone())?;
    let test_url = format!("{base}_apis/distributedtask/pools");
    let test = http.request(Method::GET, &test_url).header(
        ACCEPT,
        format!("application/json; api-version={POOLS_API_VERSION}"),
    );
    http.send_authorized(&tokens, test).await?;
    Ok(RegisteredRunner {
        runner,
        credentials,
        flow: Flow::Legacy,
        replaced: existing.is_some(),
    })
}

fn rest_request(
    http: &HttpClient,
    method: Method,
    url: &str,
    token: &Secret,
) -> reqwest::RequestBuilder {
    http.request(method, url)
        .header(AUTHORIZATION, secret_header("RemoteAuth", token))
        .header(ACCEPT, GITHUB_REST_ACCEPT)
}

#[allow(clippy::too_many_arguments)] // the flow's inputs; grouping them would only rename them
async fn register_runner_admin(
    http: &HttpClient,
    github: &GitHubUrl,
    token: &Secret,
    tenant: &TenantCredential,
    key: &RunnerKey,
    opts: &RegisterOptions,
    labels: Vec<AgentLabel>,
    progress: &mut dyn FnMut(&str),
) -> Result<RegisteredRunner, RegistrationError> {
    progress("Registering through the runner-admin API");
    let groups: RunnerGroupList = http
        .send_json(rest_request(
            http,
            Method::GET,
            &github.entity("runner-groups"),
            token,
        ))
        .await?;
    let group = select_group(&groups.runner_groups, opts.runner_group.as_deref())?.clone();
    progress(&format!("Runner group: {}", group.name));

    let name_q: String = url::form_urlencoded::byte_serialize(opts.name.as_bytes()).collect();
    let list_url = github.entity(&format!("runners?name={name_q}"));
    let found: ListRunnersResponse = http
        .send_json(rest_request(http, Method::GET, &list_url, token))
        .await?;
    let existing = found
        .runners
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(&opts.name));
    if existing.is_some() && !opts.replace {
        return Err(RegistrationError::RunnerExists {
            name: opts.name.clone(),
        });
    }
    if let Some(old) = existing {
        progress(&format!("Replacing runner {} (id {})", old.name, old.id));
    } else {
        progress(&format!("Adding runner {}", opts.name));
    }
    let body = RunnerAdminRegisterRequest {
        url: github.url.clone(),
        group_id: group.id,
        name: opts.name.clone(),
        version: opts.runner_version.clone(),
        updates_disabled: opts.disable_update,
        ephemeral: opts.ephemeral,
        labels: labels.clone(),
        public_key: key.public_key_xml(),
        runner_id: existing.map(|r| r.id),
        replace: existing.map(|_| true),
    };
    let req = rest_request(
        http,
        Method::POST,
        &github.runner_admin_register_url(),
        token,
    )
    .json(&body);
    let answer: RunnerAdminRegisterResponse = http.send_json(req).await?;
    if answer.authorization.client_id.is_empty()
        || answer.authorization.authorization_url.is_empty()
    {
        return Err(RegistrationError::NoCredential);
    }
    let credentials = credentials_from_admin(&answer);
    let runner = RunnerSettings {
        agent_id: answer.id,
        agent_name: answer.name.clone(),
        pool_id: group.id,
        pool_name: Some(group.name.clone()),
        server_url: tenant.url.clone(),
        git_hub_url: github.url.clone(),
        work_folder: Some(WORK_FOLDER.to_owned()),
        use_v2_flow: true,
        server_url_v2: answer.authorization.server_url.clone(),
        use_runner_admin_flow: true,
        ephemeral: opts.ephemeral,
        disable_update: opts.disable_update,
        is_hosted_server: (!github.hosted).then_some(false),
        labels: labels.iter().map(|l| l.name.clone()).collect(),
        ..Default::default()
    };
    Ok(RegisteredRunner {
        runner,
        credentials,
        flow: Flow::RunnerAdmin,
        replaced: existing.is_some(),
    })
}

/// Deregisters `runner` on the server with a remove `token`. Returns `false` when the server
/// no longer knows the runner (the local files may still be deleted).
pub async fn remove(
    http: &HttpClient,
    runner: &RunnerSettings,
    token: &Secret,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, RegistrationError> {
    let github = GitHubUrl::parse(&runner.git_hub_url)?;
    if runner.use_runner_admin_flow {
        progress(&format!(
            "Deleting runner {} (id {})",
            runner.agent_name, runner.agent_id
        ));
        let url = github.entity(&format!("runners/{}", runner.agent_id));
        // GitHub answers 404 both for a bad token and for an unknown runner: never take it as
        // "already gone", or a typo in the token would delete the local registration.
        let request = rest_request(http, Method::DELETE, &url, token);
        return match http.send(request).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403 | 404)) => {
                Err(RegistrationError::RemoveRefused {
                    url,
                    source: Box::new(e),
                })
            }
            Err(e) => Err(e.into()),
        };
    }
    progress(&format!(
        "Exchanging the remove token at {}",
        github.runner_registration_url()
    ));
    let tenant = exchange_token(http, &github, token, "remove").await?;
    let base = tenant.url.trim_end_matches('/').to_owned() + "/";
    let name_q: String =
        url::form_urlencoded::byte_serialize(runner.agent_name.as_bytes()).collect();
    let find_url = format!("{base}_apis/distributedtask/pools/0/agents?agentName={name_q}");
    let found: VssList<TaskAgent> = http
        .send_json(vss_request(
            http,
            Method::GET,
            &find_url,
            AGENTS_API_VERSION,
            &tenant.token,
        ))
        .await?;
    let Some(agent) = found
        .value
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(&runner.agent_name))
    else {
        return Ok(false);
    };
    progress(&format!("Deleting runner {} (id {})", agent.name, agent.id));
    let url = format!("{base}_apis/distributedtask/pools/0/agents/{}", agent.id);
    http.send(vss_request(
        http,
        Method::DELETE,
        &url,
        AGENTS_API_VERSION,
        &tenant.token,
    ))
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::vss::Properties;

    fn opts(labels: &[&str], default_labels: bool) -> RegisterOptions {
        RegisterOptions {
            name: "r".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            default_labels,
            runner_group: None,
            ephemeral: false,
            replace: false,
            disable_update: true,
            runner_version: "2.336.0".into(),
        }
    }

    #[test]
    fn labels_default_then_user_without_duplicates() {
        let labels = build_labels(&opts(&["gpu", "Self-Hosted", " ", "gpu"], true)).unwrap();
        let names: Vec<_> = labels
            .iter()
            .map(|l| (l.name.as_str(), l.label_type.as_str()))
            .collect();
        assert_eq!(names[0], ("self-hosted", "system"));
        assert_eq!(names[1].1, "system");
        assert_eq!(names[3], ("gpu", "user"));
        assert_eq!(names.len(), 4);
        assert!(matches!(
            build_labels(&opts(&[], false)),
            Err(RegistrationError::NoLabels)
        ));
        assert_eq!(
            build_labels(&opts(&["x"], false)).unwrap(),
            vec![AgentLabel::user("x")]
        );
    }

    fn pool(id: u64, name: &str, internal: bool, hosted: bool) -> TaskAgentPool {
        TaskAgentPool {
            id,
            name: name.into(),
            is_hosted: hosted,
            is_internal: internal,
            pool_type: None,
            size: None,
        }
    }

    #[test]
    fn pool_selection_by_name_or_default() {
        let pools = [
            pool(1, "Default", true, false),
            pool(2, "GPU", false, false),
            pool(3, "Azure", false, true),
        ];
        assert_eq!(select_pool(&pools, None).unwrap().id, 1);
        assert_eq!(select_pool(&pools, Some("gpu")).unwrap().id, 2);
        let err = select_pool(&pools, Some("azure")).unwrap_err();
        assert!(err.to_string().contains("Default, GPU"), "{err}");
        assert!(matches!(
            select_pool(&pools[1..], None),
            Err(RegistrationError::NoDefaultGroup)
        ));
    }

    #[test]
    fn credentials_follow_the_fips_property_defaulting_to_true() {
        let mut agent = TaskAgent {
            authorization: Some(TaskAgentAuthorization {
                client_id: Some("5a6d0ab5-3af5-42a2-9700-26c7857ff066".into()),
                authorization_url: Some("https://t/_apis/oauth2/token".into()),
                public_key: None,
            }),
            ..Default::default()
        };
        assert!(credentials_from_agent(&agent).unwrap().data.require_fips());
        let mut props = Properties::default();
        props.set_bool(PROP_REQUIRE_FIPS, false);
        agent.properties = props;
        assert!(!credentials_from_agent(&agent).unwrap().data.require_fips());
        agent.authorization.as_mut().unwrap().client_id = Some(uuid::Uuid::nil().to_string());
        assert!(matches!(
            credentials_from_agent(&agent),
            Err(RegistrationError::NoCredential)
        ));
    }

    #[test]
    fn admin_credentials_enable_migration_with_a_legacy_url() {
        let mut answer = RunnerAdminRegisterResponse {
            id: 1,
            name: "r".into(),
            authorization: crate::protocol::registration::RunnerAdminAuthorization {
                authorization_url: "https://v2/token".into(),
                legacy_authorization_url: Some("https://legacy/token".into()),
                server_url: Some("https://broker/".into()),
                client_id: "c".into(),
            },
        };
        let c = credentials_from_admin(&answer);
        assert_eq!(c.data.authorization_url, "https://legacy/token");
        assert_eq!(
            c.data.authorization_url_v2.as_deref(),
            Some("https://v2/token")
        );
        assert_eq!(
            c.data.enable_auth_migration_by_default.as_deref(),
            Some("true")
        );
        answer.authorization.legacy_authorization_url = None;
        let c = credentials_from_admin(&answer);
        assert_eq!(c.data.authorization_url, "https://v2/token");
        assert!(c.data.authorization_url_v2.is_none() && c.data.require_fips());
    }
}
