//! Wire types of the OAuth token endpoint (`{authorizationUrl}`): the client-credentials answer
//! and the error body (`src/Sdk/WebApi/WebApi/OAuth/VssOAuthTokenResponse.cs`,
//! `VssOAuthConstants.cs`).

use serde::{Deserialize, Serialize};

use super::lenient;
use super::secret::Secret;

/// `grant_type` of the token request.
pub const GRANT_TYPE_CLIENT_CREDENTIALS: &str = "client_credentials";
/// `client_assertion_type` of the token request.
pub const CLIENT_ASSERTION_TYPE_JWT_BEARER: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The OAuth error meaning the registration no longer exists.
pub const ERROR_INVALID_CLIENT: &str = "invalid_client";

/// Form body of the token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// Always [`GRANT_TYPE_CLIENT_CREDENTIALS`].
    pub grant_type: String,
    /// Always [`CLIENT_ASSERTION_TYPE_JWT_BEARER`].
    pub client_assertion_type: String,
    /// The signed client-assertion JWT.
    pub client_assertion: Secret,
}

/// 200 answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: Secret,
    /// Token type, e.g. `bearer`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Lifetime in seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Granted scope.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// 4xx answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenErrorResponse {
    /// Error code, e.g. [`ERROR_INVALID_CLIENT`].
    pub error: String,
    /// Human-readable detail.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}
