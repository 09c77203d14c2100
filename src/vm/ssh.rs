//! SSH to a guest with ssh2 (libssh2), on blocking threads.
//!
//! Owns: connecting with bounded retries while the guest boots, pinning the host key announced
//! on the serial console (anything else is refused, never trust-on-first-use), public-key
//! authentication with the in-memory per-VM key, keepalives, and running commands: one
//! connection per VM, one channel per command, stdout and stderr streamed as they arrive,
//! cancellation by signal escalation, upload and download through `cat`.
//!
//! After authentication the session is non-blocking, so several commands (each on its own
//! `spawn_blocking` thread) share the connection without holding each other up.
//!
//! ```text
//!   exec:  open channel ─► exec wrapper (records PID) ─► write stdin, EOF
//!            └─► loop: read stdout/stderr ─► OutputChunk   until EOF + close
//!                      cancel fired? ─► INT, after SIGNAL_GRACE TERM, after SIGNAL_GRACE KILL
//!                      (each sent over a second channel to the recorded process tree)
//! ```

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::{Channel, ErrorCode, MethodType, Session};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::{ClientKey, HostKey};
use super::shell;
use super::{ExecOutcome, GuestCommand, GuestFile, GuestRead, OutputChunk, VmError};

/// Timeout of one TCP connect attempt.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of the handshake and authentication of one attempt (blocking mode).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between connection attempts while the guest boots.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Interval of SSH keepalive messages on an idle connection.
const KEEPALIVE_INTERVAL_SECS: u32 = 15;
/// Longest wait for the socket to become readable before re-checking cancellation.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bound on session-level operations (opening a channel, sending a signal).
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace between SIGINT, SIGTERM and SIGKILL when a command is cancelled.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(2);
/// Read buffer size per stream.
const READ_BUF: usize = 32 * 1024;
/// Most output a transfer command (upload, write) may send back.
const COLLECT_LIMIT: usize = 1 << 20;
/// Most bytes a plain download reads (callers that read guest-controlled files use
/// [`SshConnection::read_files`] with their own cap).
const DOWNLOAD_LIMIT: usize = 64 << 20;
/// libssh2's "would block" error code.
const EAGAIN: ErrorCode = ErrorCode::Session(-37);

/// A failed step inside the SSH layer (the `source` of [`VmError::Ssh`]).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("guest command exited with {exit_code}: {stderr}")]
    RemoteFailed { exit_code: i32, stderr: String },
}

/// An authenticated SSH connection to one VM.
#[derive(Clone)]
pub struct SshConnection {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    session: Session,
    socket: TcpStream,
    /// Set when the VM behind the connection is known dead or frozen: every blocking loop gives
    /// up at its next turn instead of waiting for a guest that will not answer.
    abandoned: std::sync::atomic::AtomicBool,
}

impl SshConnection {
    /// Connects to `addr` until `deadline`, pinning `host_key` and authenticating as `user` with
    /// `key`. Runs on a blocking thread.
    pub async fn connect(
        name: String,
        addr: SocketAddr,
        user: String,
        key: Arc<ClientKey>,
        host_key: HostKey,
        deadline: Instant,
    ) -> Result<Self, VmError> {
        tokio::task::spawn_blocking(move || {
            connect_blocking(&name, addr, &user, &key, &host_key, deadline)
        })
        .await
        .map_err(|e| VmError::Ssh {
            name: String::new(),
            step: "connecting",
            source: Box::new(e),
        })?
    }

    /// Gives up on the connection: commands and transfers still running on it end with an error
    /// within [`POLL_INTERVAL`] (the VM stopped or died, nothing will answer).
    pub fn abandon(&self) {
        self.inner
            .abandoned
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `cmd`, streaming its output, honouring `cancel`.
    pub async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        let pidfile = format!("/tmp/.ghrunner-exec-{}.pid", uuid::Uuid::new_v4().simple());
        let script = shell::render_exec(&cmd, &pidfile).map_err(|e| VmError::Ssh {
            name: self.inner.name.clone(),
            step: "quoting the command",
            source: Box::new(e),
        })?;
        let inner = self.inner.clone();
        let stdin = cmd.stdin.unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let sink = |chunk| {
                // A dropped receiver means nobody wants the output; keep draining the channel.
                let _ = output.blocking_send(chunk);
                true
            };
            inner.run(&script, &stdin, Some((&pidfile, &cancel)), sink)
        })
        .await
        .map_err(|e| VmError::Ssh {
            name: self.inner.name.clone(),
            step: "running a command",
            source: Box::new(e),
        })?
    }

    /// Writes `contents` to `guest_path` with `mode`.
    pub async fn upload(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        let script = shell::render_upload(guest_path, mode).map_err(|e| VmError::Ssh {
            name: self.inner.name.clone(),
            step: "quoting the path",
            source: Box::new(e),
        })?;
        let (_, stderr) = self
            .collect(script, contents, "uploading", COLLECT_LIMIT)
            .await?;
        drop(stderr);
        Ok(())
    }

    /// Creates `dirs`, writes `files`: one round trip for the directories, the empty files and
    /// the last non-empty file (the usual step set-up: file-command files plus the script),
    /// then one per other non-empty file.
    pub async fn write_files(
        &self,
        dirs: Vec<String>,
        files: Vec<GuestFile>,
    ) -> Result<(), VmError> {
        let last_full = files.iter().rposition(|f| !f.contents.is_empty());
        let (mut empty, mut rest, mut from_stdin) = (Vec::new(), Vec::new(), None);
        for (i, file) in files.into_iter().enumerate() {
            if file.contents.is_empty() {
                empty.push(file);
            } else if Some(i) == last_full {
                from_stdin = Some(file);
            } else {
                rest.push(file);
            }
        }
        let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let empty_refs: Vec<(&str, u32)> =
            empty.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        let script = shell::render_write_batch(
            &dir_refs,
            &empty_refs,
            from_stdin.as_ref().map(|f| (f.path.as_str(), f.mode)),
        )
        .map_err(|e| VmError::Ssh {
            name: self.inner.name.clone(),
            step: "quoting the paths",
            source: Box::new(e),
        })?;
        let stdin = from_stdin.map(|f| f.contents).unwrap_or_default();
        self.collect(script, stdin, "writing files", COLLECT_LIMIT)
            .await?;
        for file in rest {
            self.upload(&file.path, file.contents, file.mode).await?;
        }
        Ok(())
    }

    /// Reads `paths` in one round trip, none larger than `max_bytes` (each is sized in the
    /// guest first; a larger one is reported, not sent). If the framed output does not parse
    /// (a file changed while being read), falls back to one capped read per file. The host
    /// never receives more than the cap allows, whatever the guest does.
    pub async fn read_files(
        &self,
        paths: Vec<String>,
        max_bytes: u64,
    ) -> Result<Vec<GuestRead>, VmError> {
        let sentinel = format!("--ghrunner-end-{}--", uuid::Uuid::new_v4().simple());
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let script =
            shell::render_read_batch(&refs, &sentinel, max_bytes).map_err(|e| VmError::Ssh {
                name: self.inner.name.clone(),
                step: "quoting the paths",
                source: Box::new(e),
            })?;
        let limit = shell::read_batch_limit(paths.len(), max_bytes, &sentinel);
        let batched = self
            .collect(script, Vec::new(), "reading files", limit)
            .await
            .map(|(out, _)| shell::parse_read_batch(&out, paths.len(), &sentinel, max_bytes));
        match batched {
            Ok(Ok(files)) => Ok(files),
            other => {
                tracing::debug!(vm = %self.inner.name, ?other, "batched read failed; reading file by file");
                let mut files = Vec::with_capacity(paths.len());
                for path in &paths {
                    files.push(self.read_capped(path, max_bytes).await);
                }
                Ok(files)
            }
        }
    }

    /// Reads one file, at most `max_bytes` of it.
    async fn read_capped(&self, path: &str, max_bytes: u64) -> GuestRead {
        let Ok(script) = shell::render_download_capped(path, max_bytes) else {
            return GuestRead::Missing;
        };
        let limit = usize::try_from(max_bytes.saturating_add(1)).unwrap_or(usize::MAX);
        match self
            .collect(script, Vec::new(), "reading a file", limit)
            .await
        {
            Ok((bytes, _)) if bytes.len() as u64 > max_bytes => GuestRead::TooLarge {
                size: bytes.len() as u64,
            },
            Ok((bytes, _)) => GuestRead::Contents(bytes),
            Err(_) => GuestRead::Missing,
        }
    }

    /// Reads `guest_path`.
    pub async fn download(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let script = shell::render_download(guest_path).map_err(|e| VmError::Ssh {
            name: self.inner.name.clone(),
            step: "quoting the path",
            source: Box::new(e),
        })?;
        Ok(self
            .collect(script, Vec::new(), "downloading", DOWNLOAD_LIMIT)
            .await?
            .0)
    }

    /// Runs a snippet to completion, collecting stdout and stderr; a non-zero exit is an error,
    /// and so is output beyond `limit` bytes (the command is abandoned at once: a guest cannot
    /// make the host hold more than that).
    async fn collect(
        &self,
        script: String,
        stdin: Vec<u8>,
        step: &'static str,
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), VmError> {
        let inner = self.inner.clone();
        let name = inner.name.clone();
        let join = tokio::task::spawn_blocking(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let outcome = inner.run(&script, &stdin, None, |chunk| {
                let (buf, bytes) = match chunk {
                    OutputChunk::Stdout(b) => (&mut out, b),
                    OutputChunk::Stderr(b) => (&mut err, b),
                };
                if buf.len() + bytes.len() > limit {
                    return false;
                }
                buf.extend(bytes);
                true
            })?;
            Ok::<_, VmError>((outcome, out, err))
        });
        let (outcome, out, err) = join.await.map_err(|e| VmError::Ssh {
            name: name.clone(),
            step,
            source: Box::new(e),
        })??;
        if outcome.exit_code != 0 {
            let stderr = String::from_utf8_lossy(&err).trim().to_owned();
            return Err(VmError::Ssh {
                name,
                step,
                source: Box::new(StepError::RemoteFailed {
                    exit_code: outcome.exit_code,
                    stderr,
                }),
            });
        }
        Ok((out, err))
    }
}

fn connect_blocking(
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

/// The signal escalation of a cancelled command.
struct Escalation {
    started: Instant,
    sent: usize,
}

const ESCALATION: [&str; 3] = ["INT", "TERM", "KILL"];

impl Inner {
    fn ssh_err(&self, step: &'static str) -> impl Fn(ssh2::Error) -> VmError + '_ {
        move |e| VmError::Ssh {
            name: self.name.clone(),
            step,
            source: Box::new(e),
        }
    }

    /// The error of an abandoned connection, if it is.
    fn check_abandoned(&self, step: &'static str) -> Result<(), VmError> {
        if self.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(VmError::Ssh {
                name: self.name.clone(),
                step,
                source: "the VM stopped responding".into(),
            });
        }
        Ok(())
    }

    /// Waits until the socket is readable or `POLL_INTERVAL` passes.
    fn wait_socket(&self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::from(POLL_INTERVAL.as_millis() as u16),
        );
    }

    /// Retries a libssh2 call until it stops returning EAGAIN or `OP_TIMEOUT` passes.
    fn retry<T>(
        &self,
        step: &'static str,
        mut f: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, VmError> {
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            self.check_abandoned(step)?;
            match f() {
                Err(e) if e.code() == EAGAIN => {
                    if Instant::now() >= deadline {
                        return Err(VmError::Ssh {
                            name: self.name.clone(),
                            step,
                            source: Box::new(StepError::Timeout(OP_TIMEOUT)),
                        });
                    }
                    self.wait_socket();
                }
                other => return other.map_err(self.ssh_err(step)),
            }
        }
    }

    fn open_exec(&self, script: &str) -> Result<Channel, VmError> {
        let mut channel = self.retry("opening a channel", || self.session.channel_session())?;
        self.retry("starting the command", || channel.exec(script))?;
        Ok(channel)
    }

    /// Runs `script`, feeding `stdin`, passing output to `sink`; `sink` returning false
    /// abandons the command (too much output). With `cancel`, the pid file and token drive the
    /// signal escalation.
    fn run(
        &self,
        script: &str,
        stdin: &[u8],
        cancel: Option<(&str, &CancellationToken)>,
        mut sink: impl FnMut(OutputChunk) -> bool,
    ) -> Result<ExecOutcome, VmError> {
        let mut channel = self.open_exec(script)?;
        self.write_stdin(&mut channel, stdin)?;
        let mut buf = vec![0u8; READ_BUF];
        let mut escalation: Option<Escalation> = None;
        loop {
            self.check_abandoned("reading output")?;
            let mut progressed = false;
            for stream_id in [0, 1] {
                match channel.stream(stream_id).read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        progressed = true;
                        let bytes = buf[..n].to_vec();
                        let wanted = sink(if stream_id == 0 {
                            OutputChunk::Stdout(bytes)
                        } else {
                            OutputChunk::Stderr(bytes)
                        });
                        if !wanted {
                            let _ = channel.close();
                            return Err(VmError::Ssh {
                                name: self.name.clone(),
                                step: "reading output",
                                source: "the guest sent more output than allowed".into(),
                            });
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => {
                        return Err(VmError::Ssh {
                            name: self.name.clone(),
                            step: "reading output",
                            source: Box::new(e),
                        });
                    }
                }
            }
            if channel.eof() && !progressed {
                break;
            }
            if let Some((pidfile, token)) = cancel {
                self.escalate(pidfile, token, &mut escalation)?;
            }
            if !progressed {
                let _ = self.session.keepalive_send();
                self.wait_socket();
            }
        }
        self.retry("closing the channel", || channel.wait_close())?;
        let exit_code = self.exit_code(&channel)?;
        Ok(ExecOutcome {
            exit_code,
            cancelled: escalation.is_some(),
        })
    }

    fn write_stdin(&self, channel: &mut Channel, mut stdin: &[u8]) -> Result<(), VmError> {
        let deadline = Instant::now() + OP_TIMEOUT;
        while !stdin.is_empty() {
            self.check_abandoned("writing stdin")?;
            match channel.write(stdin) {
                Ok(n) => stdin = &stdin[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    self.wait_socket()
                }
                Err(e) => {
                    return Err(VmError::Ssh {
                        name: self.name.clone(),
                        step: "writing stdin",
                        source: Box::new(e),
                    });
                }
            }
        }
        self.retry("closing stdin", || channel.send_eof())
    }

    /// Advances the INT → TERM → KILL escalation once the token has fired.
    fn escalate(
        &self,
        pidfile: &str,
        token: &CancellationToken,
        state: &mut Option<Escalation>,
    ) -> Result<(), VmError> {
        if !token.is_cancelled() {
            return Ok(());
        }
        let esc = state.get_or_insert_with(|| Escalation {
            started: Instant::now(),
            sent: 0,
        });
        let due = (esc.started.elapsed().as_millis() / SIGNAL_GRACE.as_millis()) as usize + 1;
        while esc.sent < due.min(ESCALATION.len()) {
            let signal = ESCALATION[esc.sent];
            tracing::info!(vm = %self.name, signal, "interrupting cancelled command");
            self.signal(pidfile, signal)?;
            esc.sent += 1;
        }
        Ok(())
    }

    /// Sends `signal` to the recorded process tree over a second channel and waits for it.
    fn signal(&self, pidfile: &str, signal: &str) -> Result<(), VmError> {
        let mut channel = self.open_exec(&shell::render_signal(pidfile, signal))?;
        self.retry("signalling", || channel.send_eof())?;
        let mut sink = [0u8; 1024];
        let deadline = Instant::now() + OP_TIMEOUT;
        while !channel.eof() && Instant::now() < deadline {
            self.check_abandoned("signalling")?;
            match channel.read(&mut sink) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.wait_socket(),
                Err(e) => {
                    return Err(VmError::Ssh {
                        name: self.name.clone(),
                        step: "signalling",
                        source: Box::new(e),
                    });
                }
            }
        }
        self.retry("signalling", || channel.wait_close())
    }

    fn exit_code(&self, channel: &Channel) -> Result<i32, VmError> {
        let signal = channel
            .exit_signal()
            .map_err(self.ssh_err("reading the exit status"))?;
        if let Some(name) = signal.exit_signal {
            return Ok(128 + signal_number(&name));
        }
        channel
            .exit_status()
            .map_err(self.ssh_err("reading the exit status"))
    }
}

/// Number of a signal named as in SSH's `exit-signal` (no `SIG` prefix); unknown ones map to
/// SIGKILL's number so that the code is still "killed by a signal".
pub fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "USR1" => 10,
        "USR2" => 12,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_map_to_linux_numbers() {
        assert_eq!(128 + signal_number("INT"), 130);
        assert_eq!(128 + signal_number("TERM"), 143);
        assert_eq!(128 + signal_number("KILL"), 137);
        assert_eq!(signal_number("WEIRD"), 9);
    }
}
