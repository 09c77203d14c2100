//! The legacy pool/agent flow (`use_v2_flow=false`): connection data, pools, find the agent,
//! add or replace it, check the answer, test the OAuth credential; removal through the
//! agents resource.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::token::{exchange_token, secret_header};
use super::{
    Flow, RegisterOptions, RegisteredRunner, RegistrationError, WORK_FOLDER,
    credentials_from_agent, select_pool,
};
use crate::client::TokenProvider;
use crate::client::http::{HttpClient, read_json};
use crate::client::url::GitHubUrl;
use crate::config::runner::RunnerSettings;
use crate::crypto::rsa::RunnerKey;
use crate::protocol::Secret;
use crate::protocol::registration::{
    AgentLabel, PROP_SERVER_URL_V2, PROP_USE_V2_FLOW, TaskAgent, TaskAgentAuthorization,
    TaskAgentPool, TenantCredential,
};
use crate::protocol::vss::VssList;

/// api-version of the pools resource.
const POOLS_API_VERSION: &str = "5.1-preview.1";
/// api-version of the agents resource.
const AGENTS_API_VERSION: &str = "6.0-preview.2";

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
pub(super) async fn register(
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

/// Deletes the agent named like `runner` after exchanging the remove `token`; `false` when the
/// server no longer knows it.
pub(super) async fn remove(
    http: &HttpClient,
    github: &GitHubUrl,
    runner: &RunnerSettings,
    token: &Secret,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, RegistrationError> {
    progress(&format!(
        "Exchanging the remove token at {}",
        github.runner_registration_url()
    ));
    let tenant = exchange_token(http, github, token, "remove").await?;
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
