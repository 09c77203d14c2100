//! The `runner-registration` token exchange: a registration or remove token (RemoteAuth) for
//! the Actions service's URL and credential, checked before anything is sent there.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};

use super::{GITHUB_REST_ACCEPT, RegistrationError};
use crate::client::http::HttpClient;
use crate::client::url::GitHubUrl;
use crate::protocol::Secret;
use crate::protocol::registration::{RunnerRegistrationRequest, TenantCredential};

/// The only token schema `runner-registration` may answer with.
const TOKEN_SCHEMA_OAUTH: &str = "OAuthAccessToken";

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

pub(super) fn secret_header(scheme: &str, token: &Secret) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    value.set_sensitive(true);
    value
}
