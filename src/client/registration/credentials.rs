//! The runner's `.credentials` from the server's registration answer, in either flow.

use super::RegistrationError;
use crate::config::runner::{CredentialData, Credentials, SCHEME_OAUTH};
use crate::protocol::registration::{PROP_REQUIRE_FIPS, RunnerAdminRegisterResponse, TaskAgent};

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
