//! Connecting to a guest: TCP with bounded retries while it boots, the handshake offering only
//! the host key type announced on the console, the pinned host key compared (never
//! trust-on-first-use), public-key authentication with the per-VM key, then non-blocking mode
//! with keepalives.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::{MethodType, Session};

use super::{Inner, SshConnection};
use crate::vm::VmError;
use crate::vm::keys::{ClientKey, HostKey};

/// Timeout of one TCP connect attempt.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of the handshake and authentication of one attempt (blocking mode).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between connection attempts while the guest boots.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Interval of SSH keepalive messages on an idle connection.
const KEEPALIVE_INTERVAL_SECS: u32 = 15;

pub(super) fn connect_blocking(
    name: &str,
    addr: SocketAddr,
    user: &str,
    key: &ClientKey,
    host_key: &HostKey,
    deadline: Instant,
) -> Result<SshConnection, VmError> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match attempt(name, addr, user, key, host_key) {
            Ok(conn) => {
                tracing::debug!(vm = %name, attempts, "ssh connected");
                return Ok(conn);
            }
            Err(e @ VmError::HostKeyMismatch { .. }) => return Err(e),
            Err(e) if Instant::now() + CONNECT_RETRY_INTERVAL >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!(vm = %name, attempts, error = %e, "ssh not ready, retrying");
                std::thread::sleep(CONNECT_RETRY_INTERVAL);
            }
        }
    }
}

fn attempt(
    name: &str,
    addr: SocketAddr,
    user: &str,
    key: &ClientKey,
    host_key: &HostKey,
) -> Result<SshConnection, VmError> {
    let err = |step: &'static str| {
        move |e: ssh2::Error| VmError::Ssh {
            name: name.to_owned(),
            step,
            source: Box::new(e),
        }
    };
    let socket =
        TcpStream::connect_timeout(&addr, CONNECT_ATTEMPT_TIMEOUT).map_err(|e| VmError::Ssh {
            name: name.to_owned(),
            step: "connecting",
            source: Box::new(e),
        })?;
    let poll_socket = socket.try_clone().map_err(|e| VmError::Ssh {
        name: name.to_owned(),
        step: "connecting",
        source: Box::new(e),
    })?;
    let mut session = Session::new().map_err(err("creating a session"))?;
    session.set_tcp_stream(socket);
    session.set_timeout(HANDSHAKE_TIMEOUT.as_millis() as u32);
    // Offer only the announced host key type, so the server presents the key we pinned.
    session
        .method_pref(MethodType::HostKey, &host_key.key_type)
        .map_err(err("choosing the host key type"))?;
    session.handshake().map_err(err("handshaking"))?;
    let presented = session.host_key().map(|(blob, _)| blob.to_vec());
    if presented.as_deref() != Some(host_key.blob.as_slice()) {
        tracing::warn!(vm = %name, "ssh host key mismatch");
        return Err(VmError::HostKeyMismatch {
            name: name.to_owned(),
        });
    }
    session
        .userauth_pubkey_memory(
            user,
            Some(key.public_openssh()),
            key.private_openssh(),
            None,
        )
        .map_err(err("authenticating"))?;
    if !session.authenticated() {
        return Err(VmError::Ssh {
            name: name.to_owned(),
            step: "authenticating",
            source: "the server did not accept the key".into(),
        });
    }
    session.set_keepalive(false, KEEPALIVE_INTERVAL_SECS);
    session.set_blocking(false);
    Ok(SshConnection {
        inner: Arc::new(Inner {
            name: name.to_owned(),
            session,
            socket: poll_socket,
            abandoned: std::sync::atomic::AtomicBool::new(false),
        }),
    })
}
