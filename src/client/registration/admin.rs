//! The runner-admin ("v2") flow (`use_v2_flow=true`): runner groups, find the runner by name,
//! register (or replace) it through the REST API; removal by id.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION};

use super::token::secret_header;
use super::{
    Flow, GITHUB_REST_ACCEPT, RegisterOptions, RegisteredRunner, RegistrationError, WORK_FOLDER,
    credentials_from_admin, select_group,
};
use crate::client::http::HttpClient;
use crate::client::url::GitHubUrl;
use crate::config::runner::RunnerSettings;
use crate::crypto::rsa::RunnerKey;
use crate::protocol::Secret;
use crate::protocol::registration::{
    AgentLabel, ListRunnersResponse, RunnerAdminRegisterRequest, RunnerAdminRegisterResponse,
    RunnerGroupList, TenantCredential,
};

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
pub(super) async fn register(
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

/// Deletes the runner by id with the remove `token` (RemoteAuth).
pub(super) async fn remove(
    http: &HttpClient,
    github: &GitHubUrl,
    runner: &RunnerSettings,
    token: &Secret,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, RegistrationError> {
    progress(&format!(
        "Deleting runner {} (id {})",
        runner.agent_name, runner.agent_id
    ));
    let url = github.entity(&format!("runners/{}", runner.agent_id));
    // GitHub answers 404 both for a bad token and for an unknown runner: never take it as
    // "already gone", or a typo in the token would delete the local registration.
    let request = rest_request(http, Method::DELETE, &url, token);
    match http.send(request).await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403 | 404)) => {
            Err(RegistrationError::RemoveRefused {
                url,
                source: Box::new(e),
            })
        }
        Err(e) => Err(e.into()),
    }
}
