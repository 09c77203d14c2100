//! The runner's RSA key: generation (2048 bits, e = 65537), the `.credentials_rsaparams`
//! representation (big-endian unsigned integers in standard base64, left-padded to the .NET
//! lengths), and the public key in the two forms the service wants: `TaskAgentPublicKey`
//! (legacy flow) and `<RSAKeyValue>` XML (runner-admin flow).
//!
//! Provenance: `src/Runner.Listener/Configuration/RSAFileKeyManager.cs`,
//! `src/Sdk/DTWebApi/WebApi/TaskAgentPublicKey.cs`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use super::CryptoError;
use crate::protocol::registration::TaskAgentPublicKey;

/// Size of the keys we generate.
pub const RSA_KEY_BITS: usize = 2048;
/// Smallest key the service accepts for signing.
pub const RSA_MIN_KEY_BITS: usize = 2048;
/// The public exponent (65537).
const PUBLIC_EXPONENT: u32 = 65_537;

/// `.credentials_rsaparams`: every field is a big-endian unsigned integer in standard base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RsaParams {
    /// Private exponent.
    pub d: String,
    /// `d mod (p-1)`.
    pub dp: String,
    /// `d mod (q-1)`.
    pub dq: String,
    /// Public exponent.
    pub exponent: String,
    /// `q^-1 mod p`.
    pub inverse_q: String,
    /// Modulus.
    pub modulus: String,
    /// First prime.
    pub p: String,
    /// Second prime.
    pub q: String,
}

impl RsaParams {
    /// Field names in the official file, for case-insensitive reading.
    pub const FIELDS: &'static [&'static str] =
        &["d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"];
}

impl fmt::Debug for RsaParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaParams")
            .field("modulus", &self.modulus)
            .field("exponent", &self.exponent)
            .finish_non_exhaustive()
    }
}

/// The runner's RSA private key.
#[derive(Clone, PartialEq, Eq)]
pub struct RunnerKey {
    key: RsaPrivateKey,
}

impl fmt::Debug for RunnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunnerKey({} bits)", self.key.size() * 8)
    }
}

impl RunnerKey {
    /// Generates a new 2048-bit key with e = 65537.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut rng = rand::thread_rng();
        let key =
            RsaPrivateKey::new_with_exp(&mut rng, RSA_KEY_BITS, &BigUint::from(PUBLIC_EXPONENT))
                .map_err(CryptoError::Generate)?;
        Ok(RunnerKey { key })
    }

    /// Wraps an existing private key, refusing keys below [`RSA_MIN_KEY_BITS`].
    pub fn from_private_key(key: RsaPrivateKey) -> Result<Self, CryptoError> {
        let bits = key.size() * 8;
        if bits < RSA_MIN_KEY_BITS {
            return Err(CryptoError::KeyTooSmall {
                bits,
                min: RSA_MIN_KEY_BITS,
            });
        }
        Ok(RunnerKey { key })
    }

    /// Rebuilds the key from `.credentials_rsaparams` and checks it is consistent.
    pub fn from_params(params: &RsaParams) -> Result<Self, CryptoError> {
        let n = decode_uint("modulus", &params.modulus)?;
        let e = decode_uint("exponent", &params.exponent)?;
        let d = decode_uint("d", &params.d)?;
        let p = decode_uint("p", &params.p)?;
        let q = decode_uint("q", &params.q)?;
        let key =
            RsaPrivateKey::from_components(n, e, d, vec![p, q]).map_err(CryptoError::InvalidKey)?;
        key.validate().map_err(CryptoError::InvalidKey)?;
        Self::from_private_key(key)
    }

    /// The `.credentials_rsaparams` form, left-padded to the lengths .NET expects.
    pub fn to_params(&self) -> RsaParams {
        let full = self.key.size();
        let half = full.div_ceil(2);
        let primes = self.key.primes();
        let crt = |v: Option<&BigUint>| v.map(|v| encode_uint(v, half)).unwrap_or_default();
        RsaParams {
            d: encode_uint(self.key.d(), full),
            dp: crt(self.key.dp()),
            dq: crt(self.key.dq()),
            exponent: encode_uint(self.key.e(), 0),
            inverse_q: crt(self.key.crt_coefficient().as_ref()),
            modulus: encode_uint(self.key.n(), full),
            p: primes
                .first()
                .map(|p| encode_uint(p, half))
                .unwrap_or_default(),
            q: primes
                .get(1)
                .map(|q| encode_uint(q, half))
                .unwrap_or_default(),
        }
    }

    /// The public key as the legacy flow's `TaskAgentPublicKey`.
    pub fn task_agent_public_key(&self) -> TaskAgentPublicKey {
        TaskAgentPublicKey {
            exponent: encode_uint(self.key.e(), 0),
            modulus: encode_uint(self.key.n(), self.key.size()),
        }
    }

    /// The public key as .NET `RSAKeyValue` XML, for the runner-admin flow.
    pub fn public_key_xml(&self) -> String {
        let pk = self.task_agent_public_key();
        format!(
            "<RSAKeyValue><Modulus>{}</Modulus><Exponent>{}</Exponent></RSAKeyValue>",
            pk.modulus, pk.exponent
        )
    }

    /// The RSA public key.
    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// The RSA private key (for the JWT signer and the session key unwrap).
    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.key
    }
}

/// Parses a `TaskAgentPublicKey` back into an RSA public key.
pub fn public_key_from_task_agent(pk: &TaskAgentPublicKey) -> Result<RsaPublicKey, CryptoError> {
    let n = decode_uint("modulus", &pk.modulus)?;
    let e = decode_uint("exponent", &pk.exponent)?;
    RsaPublicKey::new(n, e).map_err(CryptoError::InvalidKey)
}

/// Parses `<RSAKeyValue><Modulus>..</Modulus><Exponent>..</Exponent></RSAKeyValue>`.
pub fn public_key_from_xml(xml: &str) -> Result<TaskAgentPublicKey, CryptoError> {
    let element = |name: &str| -> Result<String, CryptoError> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = xml.find(&open).map(|i| i + open.len());
        let end = xml.find(&close);
        match (start, end) {
            (Some(s), Some(e)) if s <= e => Ok(xml[s..e].trim().to_owned()),
            _ => Err(CryptoError::InvalidAssertion {
                reason: format!("public key XML has no <{name}> element"),
            }),
        }
    };
    Ok(TaskAgentPublicKey {
        modulus: element("Modulus")?,
        exponent: element("Exponent")?,
    })
}

fn decode_uint(field: &'static str, text: &str) -> Result<BigUint, CryptoError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|source| CryptoError::Base64 { field, source })?;
    Ok(BigUint::from_bytes_be(&bytes))
}

/// Big-endian base64 of `value`, left-padded with zeros to `min_len` bytes.
fn encode_uint(value: &BigUint, min_len: usize) -> String {
    let bytes = value.to_bytes_be();
    let mut padded = vec![0u8; min_len.saturating_sub(bytes.len())];
    padded.extend_from_slice(&bytes);
    STANDARD.encode(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_with_dotnet_lengths() {
        let key = RunnerKey::generate().unwrap();
        let params = key.to_params();
        let len = |s: &str| STANDARD.decode(s).unwrap().len();
        assert_eq!(len(&params.modulus), 256);
        assert_eq!(len(&params.d), 256);
        for field in [
            &params.p,
            &params.q,
            &params.dp,
            &params.dq,
            &params.inverse_q,
        ] {
            assert_eq!(len(field), 128);
        }
        assert_eq!(params.exponent, "AQAB");
        let back = RunnerKey::from_params(&params).unwrap();
        assert_eq!(back, key);
        assert!(!format!("{params:?}").contains(&params.d));
    }

    #[test]
    fn tampered_params_are_rejected() {
        let key = RunnerKey::generate().unwrap();
        let mut params = key.to_params();
        params.d = STANDARD.encode([7u8; 256]);
        assert!(RunnerKey::from_params(&params).is_err());
        params.d = "not base64!".into();
        assert!(matches!(
            RunnerKey::from_params(&params),
            Err(CryptoError::Base64 { field: "d", .. })
        ));
    }

    #[test]
    fn public_key_forms_agree() {
        let key = RunnerKey::generate().unwrap();
        let pk = key.task_agent_public_key();
        assert_eq!(public_key_from_task_agent(&pk).unwrap(), key.public_key());
        let xml = key.public_key_xml();
        assert!(xml.starts_with("<RSAKeyValue><Modulus>"));
        assert_eq!(public_key_from_xml(&xml).unwrap(), pk);
    }
}
