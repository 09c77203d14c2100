//! The runner's OAuth access token (protocol §3): sign a client-assertion JWT with the
//! runner key, exchange it at the token endpoint (`client_credentials` grant), cache the access
//! token until [`REFRESH_MARGIN`] before `expires_in`, and refresh on demand or after a 401.
//!
//! ```text
//!   token() ──cached and fresh──► Secret
//!      │ none / stale / invalidated
//!      ▼
//!   sign JWT (RS256 | PS256) ─► POST token endpoint ─► 200 {access_token, expires_in} ─► cache
//!                                         │ 400 invalid_client ─► RegistrationDeleted
//!                                         └ other 4xx ─► TokenRefused
//! ```
//!
//! Concurrent callers share one refresh (a fetch lock); tokens are never logged.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::ClientError;
use super::http::{HttpClient, describe_error_body, error_for_status, read_json};
use crate::config::runner::{Credentials, Registration, SCHEME_OAUTH};
use crate::crypto::jwt::{AssertionClaims, JwtAlgorithm, sign_client_assertion};
use crate::crypto::rsa::RunnerKey;
use crate::protocol::Secret;
use crate::protocol::oauth::{
    CLIENT_ASSERTION_TYPE_JWT_BEARER, ERROR_INVALID_CLIENT, GRANT_TYPE_CLIENT_CREDENTIALS,
    TokenErrorResponse, TokenResponse,
};

/// Refresh this long before the token's `expires_in` runs out.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    /// When to fetch a new one; `None` = only when invalidated.
    refresh_at: Option<Instant>,
}

/// Supplies the runner's OAuth access token. Share it behind an `Arc`.
#[derive(Debug)]
pub struct TokenProvider {
    http: HttpClient,
    client_id: String,
    /// The JWT audience (`authorizationUrl`).
    audience: String,
    /// Where the token request is POSTed (`oauthEndpointUrl`, else `authorizationUrl`).
    endpoint: String,
    alg: JwtAlgorithm,
    key: RunnerKey,
    cache: Mutex<Option<CachedToken>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl TokenProvider {
    /// A provider for an OAuth credential and the runner key.
    pub fn new(
        http: HttpClient,
        credentials: &Credentials,
        key: RunnerKey,
    ) -> Result<Self, ClientError> {
        if !credentials.scheme.eq_ignore_ascii_case(SCHEME_OAUTH) {
            return Err(ClientError::UnsupportedCredential {
                reason: format!("scheme {:?} (only OAuth is supported)", credentials.scheme),
            });
        }
        let data = &credentials.data;
        if data.client_id.is_empty() || data.authorization_url.is_empty() {
            return Err(ClientError::UnsupportedCredential {
                reason: "the credential has no clientId or authorizationUrl".to_owned(),
            });
        }
        Ok(TokenProvider {
            http,
            client_id: data.client_id.clone(),
            audience: data.authorization_url.clone(),
            endpoint: data.token_endpoint().to_owned(),
            alg: JwtAlgorithm::for_fips(data.require_fips()),
            key,
            cache: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// A provider for a loaded registration.
    pub fn for_registration(
        http: HttpClient,
        registration: &Registration,
    ) -> Result<Self, ClientError> {
        Self::new(http, &registration.credentials, registration.key.clone())
    }

    /// The signature algorithm of the client assertion.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// A valid access token: the cached one if fresh, else a newly fetched one.
    pub async fn token(&self) -> Result<Secret, ClientError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another caller may have refreshed while we waited.
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        self.fetch().await
    }

    /// Fetches a new token now, replacing the cached one.
    pub async fn refresh(&self) -> Result<Secret, ClientError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch().await
    }

    /// Drops the cached token, so the next [`token`](Self::token) fetches a new one
    /// (call after a 401, or on a `ForceTokenRefresh` message).
    pub fn invalidate(&self) {
        *self.lock_cache() = None;
    }

    /// Drops the cached token only if it is still `token` (another caller may already have
    /// replaced the one that was refused).
    pub fn invalidate_token(&self, token: &Secret) {
        let mut cache = self.lock_cache();
        if cache.as_ref().is_some_and(|c| &c.token == token) {
            *cache = None;
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self) -> Option<Secret> {
        let cache = self.lock_cache();
        let cached = cache.as_ref()?;
        match cached.refresh_at {
            Some(at) if Instant::now() >= at => None,
            _ => Some(cached.token.clone()),
        }
    }

    async fn fetch(&self) -> Result<Secret, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let claims = AssertionClaims::new(&self.client_id, &self.audience, now);
        let assertion =
            sign_client_assertion(&self.key, &claims, self.alg).map_err(ClientError::Assertion)?;
        let form = [
            ("grant_type", GRANT_TYPE_CLIENT_CREDENTIALS),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        let body = form_urlencode(&form);
        let request = self
            .http
            .request(Method::POST, &self.endpoint)
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header(ACCEPT, "application/json")
            .body(body);
        let resp = self.http.execute(request).await?;
        let status = resp.status();
        if status.is_client_error() && status != reqwest::StatusCode::NOT_FOUND {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(self.refusal(&body));
        }
        let resp = error_for_status(&Method::POST, resp).await?;
        let answer: TokenResponse = read_json(resp).await?;
        let refresh_at = answer.expires_in.map(|secs| {
            let lifetime = Duration::from_secs(secs);
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            Instant::now() + lifetime - margin
        });
        tracing::debug!(
            expires_in = answer.expires_in,
            alg = self.alg.as_str(),
            "obtained access token"
        );
        *self.lock_cache() = Some(CachedToken {
            token: answer.access_token.clone(),
            refresh_at,
        });
        Ok(answer.access_token)
    }

    fn refusal(&self, body: &[u8]) -> ClientError {
        match crate::protocol::lenient::from_slice::<TokenErrorResponse>(body) {
            Ok(err) if err.error == ERROR_INVALID_CLIENT => ClientError::RegistrationDeleted {
                description: err.error_description.unwrap_or_else(|| err.error.clone()),
            },
            Ok(err) => ClientError::TokenRefused {
                url: self.endpoint.clone(),
                error: err.error,
                description: err.error_description,
            },
            Err(_) => ClientError::TokenRefused {
                url: self.endpoint.clone(),
                error: "unexpected answer".to_owned(),
                description: describe_error_body(body).message,
            },
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of key/value pairs.
fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::runner::CredentialData;

    #[test]
    fn form_body_encodes_the_assertion_type() {
        let body = form_urlencode(&[
            ("grant_type", GRANT_TYPE_CLIENT_CREDENTIALS),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_BEARER),
        ]);
        assert_eq!(
            body,
            "grant_type=client_credentials&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        );
    }

    #[test]
    fn non_oauth_credentials_are_refused() {
        let key = RunnerKey::generate().unwrap();
        let http = HttpClient::new().unwrap();
        let mut creds = Credentials {
            scheme: "OAuthAccessToken".into(),
            data: CredentialData {
                client_id: "c".into(),
                authorization_url: "http://a/".into(),
                ..Default::default()
            },
        };
        assert!(TokenProvider::new(http.clone(), &creds, key.clone()).is_err());
        creds.scheme = "OAuth".into();
        creds.data.require_fips_cryptography = Some("True".into());
        let p = TokenProvider::new(http, &creds, key).unwrap();
        assert_eq!(p.algorithm(), JwtAlgorithm::PS256);
    }
}
