//! Cryptography, pure functions only: the runner's RSA key, the OAuth client-assertion JWT, and
//! the session key unwrap and message decryption.
//!
//! Nothing here performs I/O or logs; key material never appears in `Debug` output.

pub mod jwt;
pub mod rsa;
pub mod session;

/// Errors of the crypto functions.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// RSA key generation failed.
    #[error("cannot generate an RSA key")]
    Generate(#[source] ::rsa::Error),
    /// A field of `.credentials_rsaparams` is not valid base64.
    #[error("RSA parameter `{field}` is not valid base64")]
    Base64 {
        /// The parameter name.
        field: &'static str,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// The RSA parameters do not form a valid key.
    #[error("the RSA parameters do not form a valid key")]
    InvalidKey(#[source] ::rsa::Error),
    /// The key is smaller than the minimum the service accepts.
    #[error("the RSA key has {bits} bits; at least {min} are required")]
    KeyTooSmall {
        /// Modulus size.
        bits: usize,
        /// Minimum size.
        min: usize,
    },
    /// Encoding the key for the JWT signer failed.
    #[error("cannot encode the RSA key")]
    KeyEncoding(#[source] ::rsa::pkcs1::Error),
    /// Signing the JWT failed.
    #[error("cannot sign the client assertion")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// A JWT could not be verified (wrong shape, signature, algorithm or claims).
    #[error("invalid client assertion: {reason}")]
    InvalidAssertion {
        /// What is wrong.
        reason: String,
    },
}
