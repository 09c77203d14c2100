//! Cryptography, pure functions only: the runner's RSA key, the OAuth client-assertion JWT, and
//! the session key unwrap and message decryption.

pub mod session;
