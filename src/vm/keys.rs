//! Per-VM SSH key material and the guest's host-key announcement.
//!
//! Owns: generating the per-VM client key pair in memory (Ed25519; never written to disk), the
//! `ghrunner.ssh_key=` kernel parameter that carries its public half, and parsing the serial
//! console lines of the guest contract (`GHRUNNER-HOSTKEY <type> <b64>`, `GHRUNNER-READY`).
//! Does not own: the SSH connection (see [`crate::vm::ssh`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use zeroize::Zeroizing;

/// Kernel command-line parameter that carries the authorized_keys line (base64).
pub const SSH_KEY_PARAM: &str = "ghrunner.ssh_key";

/// Console line prefix announcing the guest's host key.
pub const HOSTKEY_PREFIX: &str = "GHRUNNER-HOSTKEY";

/// Console line announcing that the guest's SSH server listens.
pub const READY_LINE: &str = "GHRUNNER-READY";

/// Comment of the generated public key (shows up in the guest's authorized_keys).
const KEY_COMMENT: &str = "ghrunner-vm";

/// A client key pair made for one VM. The private half lives only in memory and is wiped on drop.
pub struct ClientKey {
    private_openssh: Zeroizing<String>,
    public_openssh: String,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("ClientKey")
            .field("public", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

/// Key generation failed (the system's random source or the encoder).
#[derive(Debug, thiserror::Error)]
#[error("generating an ssh key pair failed")]
pub struct KeyError(#[source] ssh_key::Error);

impl ClientKey {
    /// Generates a fresh Ed25519 key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key =
            PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).map_err(KeyError)?;
        key.set_comment(KEY_COMMENT);
        let private_openssh = key.to_openssh(LineEnding::LF).map_err(KeyError)?;
        let public_openssh = key.public_key().to_openssh().map_err(KeyError)?;
        Ok(Self {
            private_openssh,
            public_openssh,
        })
    }

    /// The private key in OpenSSH PEM form (for libssh2's in-memory authentication).
    pub fn private_openssh(&self) -> &str {
        &self.private_openssh
    }

    /// The public key as an authorized_keys line, e.g. `ssh-ed25519 AAAA… ghrunner-vm`.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    /// The kernel parameter that hands the public key to the guest.
    pub fn kernel_param(&self) -> String {
        format!(
            "{SSH_KEY_PARAM}={}",
            BASE64.encode(self.public_openssh.as_bytes())
        )
    }
}

/// The guest's SSH host key as announced on its serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// Key type, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The public key blob (SSH wire encoding), as the SSH session reports it.
    pub blob: Vec<u8>,
}

/// A guest-contract line seen on the serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// `GHRUNNER-HOSTKEY <type> <b64>`.
    HostKey(HostKey),
    /// `GHRUNNER-READY`.
    Ready,
}

/// Parses one console line. Tolerates carriage returns and terminal noise before the marker
/// (the serial console interleaves kernel output); anything malformed is ignored (`None`).
pub fn parse_console_line(line: &str) -> Option<ConsoleEvent> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(at) = line.find(HOSTKEY_PREFIX) {
        let mut parts = line[at + HOSTKEY_PREFIX.len()..].split_ascii_whitespace();
        let key_type = parts.next()?;
        let blob = BASE64.decode(parts.next()?).ok()?;
        if parts.next().is_some()
            || !key_type.starts_with("ssh-") && !key_type.starts_with("ecdsa-")
        {
            return None;
        }
        return Some(ConsoleEvent::HostKey(HostKey {
            key_type: key_type.to_owned(),
            blob,
        }));
    }
    (line.trim_end() == READY_LINE || line.ends_with(READY_LINE)).then_some(ConsoleEvent::Ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_ed25519_and_distinct_each_time() {
        let a = ClientKey::generate().unwrap();
        let b = ClientKey::generate().unwrap();
        assert!(a.public_openssh().starts_with("ssh-ed25519 "));
        assert!(
            a.private_openssh()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_ne!(a.public_openssh(), b.public_openssh());
    }

    #[test]
    fn kernel_param_carries_the_base64_public_line() {
        let key = ClientKey::generate().unwrap();
        let param = key.kernel_param();
        let b64 = param.strip_prefix("ghrunner.ssh_key=").unwrap();
        assert!(!b64.contains(' '));
        assert_eq!(BASE64.decode(b64).unwrap(), key.public_openssh().as_bytes());
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let key = ClientKey::generate().unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn parses_hostkey_line_with_console_noise() {
        let line = "\x1b[2JGHRUNNER-HOSTKEY ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBk=\r";
        let Some(ConsoleEvent::HostKey(key)) = parse_console_line(line) else {
            panic!("not parsed: {line:?}");
        };
        assert_eq!(key.key_type, "ssh-ed25519");
        assert_eq!(
            key.blob,
            BASE64.decode("AAAAC3NzaC1lZDI1NTE5AAAAIBk=").unwrap()
        );
    }

    #[test]
    fn rejects_malformed_hostkey_lines() {
        for line in [
            "GHRUNNER-HOSTKEY",
            "GHRUNNER-HOSTKEY ssh-ed25519",
            "GHRUNNER-HOSTKEY ssh-ed25519 not*base64",
            "GHRUNNER-HOSTKEY ssh-ed25519 AAAA extra",
            "GHRUNNER-HOSTKEY rot13 AAAA",
        ] {
            assert_eq!(parse_console_line(line), None, "{line}");
        }
    }

    #[test]
    fn parses_ready_and_ignores_other_lines() {
        assert_eq!(
            parse_console_line("GHRUNNER-READY\r\n"),
            Some(ConsoleEvent::Ready)
        );
        assert_eq!(parse_console_line("[    0.000000] Linux version 6.1"), None);
        assert_eq!(parse_console_line("GHRUNNER-READYX"), None);
    }
}
