//! Session message cryptography (pure): unwrapping the session AES key that the legacy service
//! wraps with the runner's RSA public key, and decrypting the AES-CBC message bodies.
//!
//! ```text
//! create session ──► encryptionKey {encrypted, value}
//!                      │ encrypted: RSA-OAEP(SHA-1 | SHA-256, MGF1 same hash, empty label)
//!                      │ else:      value is the raw key
//!                      ▼
//!                  SessionKey (AES-128/192/256)
//!                      │ per message: AES-CBC, PKCS#7, IV = message.iv
//!                      ▼
//!                  UTF-8 JSON text (leading BOM stripped)
//! ```
//!
//! The OAEP hash follows the session's `useFipsEncryption` (SHA-256 when true, SHA-1 otherwise);
//! because field reports disagree about what github.com really uses, the other hash is tried
//! when the indicated one fails (protocol-transport.md §4.1). The wrapping and encrypting
//! halves exist for the embedded service and the tests.
//!
//! This module does not own the RSA key files (see [`crate::config`]) nor the message envelope
//! (see [`crate::protocol::message`]).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};

/// AES block size and therefore the required IV length, in bytes.
pub const IV_LEN: usize = 16;

/// The UTF-8 byte-order mark some message bodies start with.
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Errors of the session cryptography.
#[derive(Debug, thiserror::Error)]
pub enum SessionCryptoError {
    /// A base64 field did not decode.
    #[error("{field} is not valid base64")]
    Base64 {
        /// Which field (`encryptionKey.value`, `iv`, `body`).
        field: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// RSA-OAEP decryption failed with both SHA-1 and SHA-256.
    #[error(
        "cannot unwrap the session key with the runner's RSA key (tried {first:?} then the other hash)"
    )]
    Unwrap {
        /// The hash tried first (the one the session indicated).
        first: OaepHash,
        /// The error of the first attempt.
        #[source]
        source: rsa::Error,
    },
    /// The session key is not an AES key length.
    #[error("session key has {len} bytes, expected 16, 24 or 32")]
    KeyLength {
        /// Actual length.
        len: usize,
    },
    /// The message IV is not one AES block.
    #[error("message iv has {len} bytes, expected {IV_LEN}")]
    IvLength {
        /// Actual length.
        len: usize,
    },
    /// The ciphertext is empty or not a multiple of the block size.
    #[error("message body has {len} bytes, not a positive multiple of {IV_LEN}")]
    BodyLength {
        /// Actual length.
        len: usize,
    },
    /// PKCS#7 padding was invalid after decryption (wrong key, tampered body).
    #[error("message body has invalid padding (wrong key or tampered message)")]
    Padding,
    /// The plaintext is not UTF-8.
    #[error("decrypted message body is not UTF-8")]
    Utf8 {
        /// Where it went wrong.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// RSA encryption failed (wrapping side only).
    #[error("cannot wrap the session key")]
    Wrap {
        /// The RSA error.
        #[source]
        source: rsa::Error,
    },
}

/// The hash used by RSA-OAEP (and its MGF1) for the session key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-1: the official runner when `useFipsEncryption` is false.
    Sha1,
    /// SHA-256: when `useFipsEncryption` is true.
    Sha256,
}

impl OaepHash {
    /// The hash a session indicates through `useFipsEncryption`.
    pub fn for_fips(use_fips_encryption: bool) -> OaepHash {
        if use_fips_encryption {
            OaepHash::Sha256
        } else {
            OaepHash::Sha1
        }
    }

    fn other(self) -> OaepHash {
        match self {
            OaepHash::Sha1 => OaepHash::Sha256,
            OaepHash::Sha256 => OaepHash::Sha1,
        }
    }

    fn padding(self) -> Oaep {
        match self {
            OaepHash::Sha1 => Oaep::new::<sha1::Sha1>(),
            OaepHash::Sha256 => Oaep::new::<sha2::Sha256>(),
        }
    }
}

/// A session's AES key. `Debug` never shows the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("bits", &(self.bytes.len() * 8))
            .finish()
    }
}

impl SessionKey {
    /// Wraps raw key bytes, checking the AES key length.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SessionKey, SessionCryptoError> {
        match bytes.len() {
            16 | 24 | 32 => Ok(SessionKey { bytes }),
            len => Err(SessionCryptoError::KeyLength { len }),
        }
    }

    /// The raw key (for the embedded service, which hands it out wrapped).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Unwraps the `encryptionKey` of a session-create response.
    ///
    /// `value_b64` is base64; when `encrypted` it is RSA-OAEP ciphertext for `private`, tried
    /// with `OaepHash::for_fips(use_fips_encryption)` first and the other hash second.
    pub fn unwrap(
        private: &RsaPrivateKey,
        encrypted: bool,
        value_b64: &str,
        use_fips_encryption: bool,
    ) -> Result<SessionKey, SessionCryptoError> {
        let value = decode_b64("encryptionKey.value", value_b64)?;
        if !encrypted {
            return SessionKey::from_bytes(value);
        }
        let first = OaepHash::for_fips(use_fips_encryption);
        let plain = match private.decrypt(first.padding(), &value) {
            Ok(plain) => plain,
            Err(source) => private
                .decrypt(first.other().padding(), &value)
                .map_err(|_| SessionCryptoError::Unwrap { first, source })?,
        };
        SessionKey::from_bytes(plain)
    }

    /// Wraps this key for `public` with RSA-OAEP and returns base64 (the service side).
    pub fn wrap(
        &self,
        public: &RsaPublicKey,
        hash: OaepHash,
    ) -> Result<String, SessionCryptoError> {
        let mut rng = rand::thread_rng();
        let cipher = public
            .encrypt(&mut rng, hash.padding(), &self.bytes)
            .map_err(|source| SessionCryptoError::Wrap { source })?;
        Ok(STANDARD.encode(cipher))
    }

    /// Decrypts a message body: base64 `iv` and `body`, AES-CBC with PKCS#7, UTF-8 text with
    /// an optional leading BOM removed.
    pub fn decrypt_message(
        &self,
        iv_b64: &str,
        body_b64: &str,
    ) -> Result<String, SessionCryptoError> {
        let iv = decode_b64("iv", iv_b64)?;
        let body = decode_b64("body", body_b64)?;
        let plain = self.decrypt(&iv, &body)?;
        let plain = plain.strip_prefix(UTF8_BOM).unwrap_or(&plain).to_vec();
        String::from_utf8(plain).map_err(|source| SessionCryptoError::Utf8 { source })
    }

    /// Encrypts `plain` with `iv` and returns base64 ciphertext (the service side).
    pub fn encrypt_message(
        &self,
        iv: &[u8; IV_LEN],
        plain: &[u8],
    ) -> Result<String, SessionCryptoError> {
        let cipher = match self.bytes.len() {
            16 => encrypt_with::<aes::Aes128>(&self.bytes, iv, plain),
            24 => encrypt_with::<aes::Aes192>(&self.bytes, iv, plain),
            _ => encrypt_with::<aes::Aes256>(&self.bytes, iv, plain),
        }?;
        Ok(STANDARD.encode(cipher))
    }

    fn decrypt(&self, iv: &[u8], body: &[u8]) -> Result<Vec<u8>, SessionCryptoError> {
        if iv.len() != IV_LEN {
            return Err(SessionCryptoError::IvLength { len: iv.len() });
        }
        if body.is_empty() || body.len() % IV_LEN != 0 {
            return Err(SessionCryptoError::BodyLength { len: body.len() });
        }
        match self.bytes.len() {
            16 => decrypt_with::<aes::Aes128>(&self.bytes, iv, body),
            24 => decrypt_with::<aes::Aes192>(&self.bytes, iv, body),
            _ => decrypt_with::<aes::Aes256>(&self.bytes, iv, body),
        }
    }
}

fn decode_b64(field: &'static str, text: &str) -> Result<Vec<u8>, SessionCryptoError> {
    STANDARD
        .decode(text.trim())
        .map_err(|source| SessionCryptoError::Base64 { field, source })
}

fn decrypt_with<C>(key: &[u8], iv: &[u8], body: &[u8]) -> Result<Vec<u8>, SessionCryptoError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecrypt + aes::cipher::KeyInit,
{
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| SessionCryptoError::KeyLength { len: key.len() })?;
    decryptor
        .decrypt_padded_vec_mut::<Pkcs7>(body)
        .map_err(|_| SessionCryptoError::Padding)
}

fn encrypt_with<C>(key: &[u8], iv: &[u8], plain: &[u8]) -> Result<Vec<u8>, SessionCryptoError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + aes::cipher::KeyInit,
{
    let encryptor = cbc::Encryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| SessionCryptoError::KeyLength { len: key.len() })?;
    Ok(encryptor.encrypt_padded_vec_mut::<Pkcs7>(plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// A 1024-bit key keeps debug-mode key generation fast; OAEP-SHA-256 still fits 62 bytes.
    fn test_key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap())
    }

    fn key32() -> SessionKey {
        SessionKey::from_bytes((0u8..32).collect()).unwrap()
    }

    const IV: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn unwraps_with_the_indicated_hash() {
        let private = test_key();
        let key = key32();
        for (fips, hash) in [(false, OaepHash::Sha1), (true, OaepHash::Sha256)] {
            let wrapped = key.wrap(&private.to_public_key(), hash).unwrap();
            let got = SessionKey::unwrap(private, true, &wrapped, fips).unwrap();
            assert_eq!(got, key);
        }
    }

    #[test]
    fn falls_back_to_the_other_hash() {
        let private = test_key();
        let key = key32();
        // github.com reportedly uses SHA-256 although the session says useFipsEncryption=false.
        let wrapped = key
            .wrap(&private.to_public_key(), OaepHash::Sha256)
            .unwrap();
        assert_eq!(
            SessionKey::unwrap(private, true, &wrapped, false).unwrap(),
            key
        );
        let wrapped = key.wrap(&private.to_public_key(), OaepHash::Sha1).unwrap();
        assert_eq!(
            SessionKey::unwrap(private, true, &wrapped, true).unwrap(),
            key
        );
    }

    #[test]
    fn unwrap_with_a_foreign_key_fails() {
        let other = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let wrapped = key32()
            .wrap(&other.to_public_key(), OaepHash::Sha1)
            .unwrap();
        let err = SessionKey::unwrap(test_key(), true, &wrapped, false).unwrap_err();
        assert!(matches!(
            err,
            SessionCryptoError::Unwrap {
                first: OaepHash::Sha1,
                ..
            }
        ));
    }

    #[test]
    fn raw_keys_of_every_aes_length_are_accepted() {
        for len in [16usize, 24, 32] {
            let raw: Vec<u8> = (0..len as u8).collect();
            let key = SessionKey::unwrap(test_key(), false, &STANDARD.encode(&raw), false).unwrap();
            assert_eq!(key.as_bytes(), &raw[..]);
            let cipher = key.encrypt_message(&IV, b"{\"a\":1}").unwrap();
            assert_eq!(
                key.decrypt_message(&STANDARD.encode(IV), &cipher).unwrap(),
                "{\"a\":1}"
            );
        }
    }

    #[test]
    fn rejects_wrong_key_lengths() {
        for len in [0usize, 15, 20, 33, 64] {
            let raw = vec![7u8; len];
            let err =
                SessionKey::unwrap(test_key(), false, &STANDARD.encode(&raw), false).unwrap_err();
            assert!(matches!(err, SessionCryptoError::KeyLength { len: l } if l == len));
        }
        // A wrapped key of the wrong length is refused after unwrapping, too.
        let public = test_key().to_public_key();
        let wrapped = STANDARD.encode(
            public
                .encrypt(
                    &mut rand::thread_rng(),
                    Oaep::new::<sha1::Sha1>(),
                    &[1u8; 20],
                )
                .unwrap(),
        );
        let err = SessionKey::unwrap(test_key(), true, &wrapped, false).unwrap_err();
        assert!(matches!(err, SessionCryptoError::KeyLength { len: 20 }));
    }

    #[test]
    fn decrypts_and_strips_a_bom() {
        let key = key32();
        let mut plain = UTF8_BOM.to_vec();
        plain.extend_from_slice("{\"jobId\":\"é\"}".as_bytes());
        let cipher = key.encrypt_message(&IV, &plain).unwrap();
        assert_eq!(
            key.decrypt_message(&STANDARD.encode(IV), &cipher).unwrap(),
            "{\"jobId\":\"é\"}"
        );
    }

    #[test]
    fn wrong_iv_never_yields_the_plaintext() {
        let key = key32();
        let plain = "{\"messageType\":\"JobCancellation\",\"jobId\":\"x\"}";
        let cipher = key.encrypt_message(&IV, plain.as_bytes()).unwrap();
        let wrong_iv = STANDARD.encode([0u8; 16]);
        // CBC with a wrong IV garbles the first block: either an error or other text.
        match key.decrypt_message(&wrong_iv, &cipher) {
            Ok(text) => assert_ne!(text, plain),
            Err(err) => assert!(matches!(err, SessionCryptoError::Utf8 { .. })),
        }
        let short_iv = STANDARD.encode([0u8; 8]);
        assert!(matches!(
            key.decrypt_message(&short_iv, &cipher).unwrap_err(),
            SessionCryptoError::IvLength { len: 8 }
        ));
    }

    #[test]
    fn bad_padding_is_reported() {
        let key = key32();
        // One block of zeros encrypted without padding decrypts to a bad PKCS#7 tail under
        // a different key.
        let cipher = key.encrypt_message(&IV, b"hello").unwrap();
        let other = SessionKey::from_bytes(vec![9u8; 32]).unwrap();
        let err = other
            .decrypt_message(&STANDARD.encode(IV), &cipher)
            .unwrap_err();
        assert!(matches!(err, SessionCryptoError::Padding), "{err:?}");
        // Flipping bits of the second-to-last block turns the final pad byte (0x0a for a
        // 22-byte plaintext) into 0x11, which is no valid PKCS#7 pad.
        let cipher = key.encrypt_message(&IV, b"hello world, tampered!").unwrap();
        let mut raw = STANDARD.decode(&cipher).unwrap();
        assert_eq!(raw.len(), 32);
        raw[15] ^= 0x0a ^ 0x11;
        let err = key
            .decrypt_message(&STANDARD.encode(IV), &STANDARD.encode(raw))
            .unwrap_err();
        assert!(matches!(err, SessionCryptoError::Padding), "{err:?}");
    }

    #[test]
    fn garbage_bodies_are_reported() {
        let key = key32();
        let iv = STANDARD.encode(IV);
        assert!(matches!(
            key.decrypt_message(&iv, "not base64!").unwrap_err(),
            SessionCryptoError::Base64 { field: "body", .. }
        ));
        assert!(matches!(
            key.decrypt_message(&iv, &STANDARD.encode([1u8; 17]))
                .unwrap_err(),
            SessionCryptoError::BodyLength { len: 17 }
        ));
        assert!(matches!(
            key.decrypt_message(&iv, "").unwrap_err(),
            SessionCryptoError::BodyLength { len: 0 }
        ));
        assert!(matches!(
            key.decrypt_message("%%%", &STANDARD.encode([1u8; 16]))
                .unwrap_err(),
            SessionCryptoError::Base64 { field: "iv", .. }
        ));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", key32());
        assert_eq!(shown, "SessionKey { bits: 256 }");
    }
}
