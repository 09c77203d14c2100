//! The OAuth client-assertion JWT the runner signs with its RSA key (protocol §3.1):
//! header `{"typ":"JWT","alg":"RS256"}` (or `PS256` when the registration requires FIPS
//! cryptography), claims `sub` = `iss` = client id, `aud` = token endpoint, a random `jti`,
//! `nbf` = now and `exp` = `nbf` + 300 s, and no `iat`.
//!
//! [`sign_client_assertion`] uses `jsonwebtoken`; [`verify_client_assertion`] (used by the
//! local service) is an independent implementation on the `rsa` crate, so each checks the other.
//!
//! Provenance: `src/Sdk/WebApi/WebApi/OAuth/VssOAuthJwtBearerAssertion.cs`,
//! `src/Sdk/WebApi/WebApi/Jwt/JsonWebToken.cs`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::signature::Verifier;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::CryptoError;
use super::rsa::RunnerKey;

/// Lifetime of a client assertion (`exp - nbf`); the service rejects more than 5 minutes.
pub const ASSERTION_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated by [`verify_client_assertion`] on `nbf` and `exp`.
pub const VERIFY_LEEWAY_SECS: i64 = 60;

/// Signature algorithm of the client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (requireFipsCryptography).
    PS256,
}

impl JwtAlgorithm {
    /// PS256 when the registration requires FIPS cryptography, RS256 otherwise.
    pub fn for_fips(require_fips: bool) -> Self {
        if require_fips {
            JwtAlgorithm::PS256
        } else {
            JwtAlgorithm::RS256
        }
    }

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::PS256 => "PS256",
        }
    }
}

/// The JWT header: exactly `typ` and `alg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionHeader {
    /// Always `JWT`.
    pub typ: String,
    /// `RS256` or `PS256`.
    pub alg: String,
}

/// The claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// Client id.
    pub sub: String,
    /// Client id.
    pub iss: String,
    /// The token endpoint URL.
    pub aud: String,
    /// Random GUID.
    pub jti: String,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expiry (Unix seconds) = `nbf` + [`ASSERTION_LIFETIME_SECS`].
    pub exp: i64,
}

impl AssertionClaims {
    /// The claims for `client_id` and `audience` issued at `now` (Unix seconds).
    pub fn new(client_id: &str, audience: &str, now: i64) -> Self {
        AssertionClaims {
            sub: client_id.to_owned(),
            iss: client_id.to_owned(),
            aud: audience.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        }
    }
}

/// Signs the client assertion for `claims` with the runner key.
pub fn sign_client_assertion(
    key: &RunnerKey,
    claims: &AssertionClaims,
    alg: JwtAlgorithm,
) -> Result<String, CryptoError> {
    let der = key
        .private_key()
        .to_pkcs1_der()
        .map_err(CryptoError::KeyEncoding)?;
    let encoding_key = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
    let mut header = jsonwebtoken::Header::new(match alg {
        JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        JwtAlgorithm::PS256 => jsonwebtoken::Algorithm::PS256,
    });
    header.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(&header, claims, &encoding_key).map_err(CryptoError::Sign)
}

/// Splits and decodes a JWT without checking anything.
pub fn decode_unverified(token: &str) -> Result<(AssertionHeader, AssertionClaims), CryptoError> {
    let (header, claims, _) = split(token)?;
    Ok((
        decode_part(header, "header")?,
        decode_part(claims, "claims")?,
    ))
}

/// Verifies a client assertion: the header has only `typ: JWT` and an RS256/PS256 `alg`, the
/// signature matches `public_key`, `aud` equals `audience`, `sub` = `iss`, and `now` lies within
/// `nbf..exp` (with [`VERIFY_LEEWAY_SECS`]) and the lifetime is at most 5 minutes.
pub fn verify_client_assertion(
    token: &str,
    public_key: &RsaPublicKey,
    audience: &str,
    now: i64,
) -> Result<(JwtAlgorithm, AssertionClaims), CryptoError> {
    let (header_b64, claims_b64, sig_b64) = split(token)?;
    let header: serde_json::Map<String, serde_json::Value> = decode_part(header_b64, "header")?;
    let alg = match (header.get("alg").and_then(|v| v.as_str()), header.len()) {
        (Some("RS256"), 2) => JwtAlgorithm::RS256,
        (Some("PS256"), 2) => JwtAlgorithm::PS256,
        _ => {
            return Err(invalid(
                "header must be exactly {typ: JWT, alg: RS256|PS256}",
            ));
        }
    };
    if header.get("typ").and_then(|v| v.as_str()) != Some("JWT") {
        return Err(invalid("header typ must be JWT"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| invalid("signature is not base64url"))?;
    let message = &token[..header_b64.len() + 1 + claims_b64.len()];
    verify_signature(alg, public_key, message.as_bytes(), &signature)?;
    let claims: AssertionClaims = decode_part(claims_b64, "claims")?;
    check_claims(&claims, audience, now)?;
    Ok((alg, claims))
}

fn verify_signature(
    alg: JwtAlgorithm,
    public_key: &RsaPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let ok = match alg {
        JwtAlgorithm::RS256 => {
            let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public_key.clone());
            rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok())
        }
        JwtAlgorithm::PS256 => {
            let key = rsa::pss::VerifyingKey::<Sha256>::new(public_key.clone());
            rsa::pss::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(invalid("signature does not match the registered key"))
    }
}

fn check_claims(claims: &AssertionClaims, audience: &str, now: i64) -> Result<(), CryptoError> {
    if claims.aud != audience {
        return Err(invalid("aud is not this token endpoint"));
    }
    if claims.sub != claims.iss {
        return Err(invalid("sub and iss differ"));
    }
    if claims.exp - claims.nbf > ASSERTION_LIFETIME_SECS {
        return Err(invalid(
            "lifetime is greater than the allowed maximum of 5 minutes",
        ));
    }
    if now + VERIFY_LEEWAY_SECS < claims.nbf {
        return Err(invalid("not yet valid (nbf is in the future)"));
    }
    if now - VERIFY_LEEWAY_SECS >= claims.exp {
        return Err(invalid("expired"));
    }
    Ok(())
}

fn split(token: &str) -> Result<(&str, &str, &str), CryptoError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => Ok((h, c, s)),
        _ => Err(invalid("a JWT has three dot-separated parts")),
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, CryptoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid(&format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| invalid(&format!("{what} is not the expected JSON")))
}

fn invalid(reason: &str) -> CryptoError {
    CryptoError::InvalidAssertion {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &str = "https://ghes.example/_services/pipelines/_apis/oauth2/token";

    fn check_alg(alg: JwtAlgorithm) {
        let key = RunnerKey::generate().unwrap();
        let now = 1_800_000_000;
        let claims = AssertionClaims::new("client-1", AUD, now);
        let token = sign_client_assertion(&key, &claims, alg).unwrap();

        // Header: exactly typ and alg, in that order on the wire.
        let header_json = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header_json).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": alg.as_str()})
        );

        // Claims: every field, and no iat.
        let claims_json = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        let raw: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&claims_json).unwrap();
        let mut keys: Vec<_> = raw.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["aud", "exp", "iss", "jti", "nbf", "sub"]);
        assert_eq!(raw["sub"], "client-1");
        assert_eq!(raw["iss"], "client-1");
        assert_eq!(raw["aud"], AUD);
        assert_eq!(raw["nbf"], now);
        assert_eq!(raw["exp"], now + 300);
        assert!(uuid::Uuid::parse_str(raw["jti"].as_str().unwrap()).is_ok());

        // The signature verifies with the public key (independent rsa-crate verifier).
        let (got_alg, got) = verify_client_assertion(&token, &key.public_key(), AUD, now).unwrap();
        assert_eq!(got_alg, alg);
        assert_eq!(got, claims);

        // And fails with another key, another audience, or out of its time window.
        let other = RunnerKey::generate().unwrap();
        assert!(verify_client_assertion(&token, &other.public_key(), AUD, now).is_err());
        assert!(verify_client_assertion(&token, &key.public_key(), "https://x/", now).is_err());
        assert!(verify_client_assertion(&token, &key.public_key(), AUD, now + 400).is_err());
        assert!(verify_client_assertion(&token, &key.public_key(), AUD, now - 100).is_err());
    }

    #[test]
    fn rs256_assertion_is_well_formed_and_verifies() {
        check_alg(JwtAlgorithm::RS256);
    }

    #[test]
    fn ps256_assertion_is_well_formed_and_verifies() {
        check_alg(JwtAlgorithm::PS256);
    }

    #[test]
    fn tampered_claims_fail_verification() {
        let key = RunnerKey::generate().unwrap();
        let claims = AssertionClaims::new("c", AUD, 100);
        let token = sign_client_assertion(&key, &claims, JwtAlgorithm::RS256).unwrap();
        let mut forged = claims.clone();
        forged.sub = "someone-else".into();
        forged.iss = "someone-else".into();
        let forged_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_b64, parts[2]);
        assert!(verify_client_assertion(&tampered, &key.public_key(), AUD, 100).is_err());
    }

    #[test]
    fn fips_selects_ps256() {
        assert_eq!(JwtAlgorithm::for_fips(true), JwtAlgorithm::PS256);
        assert_eq!(JwtAlgorithm::for_fips(false), JwtAlgorithm::RS256);
    }
}
