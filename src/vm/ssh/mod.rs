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
//!
//! Here: the connection's operations (commands, transfers); connecting and authenticating is
//! in `connect`, driving one channel (output, stdin, signals, exit status) in `channel`.

mod channel;
mod connect;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::Session;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::{ClientKey, HostKey};
use super::shell;
use super::{ExecOutcome, GuestCommand, GuestFile, GuestRead, OutputChunk, VmError};
pub use channel::{SIGNAL_GRACE, signal_number};
use connect::connect_blocking;

/// Longest wait for the socket to become readable before re-checking cancellation.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Most output a transfer command (upload, write) may send back.
const COLLECT_LIMIT: usize = 1 << 20;
/// Most bytes a plain download reads (callers that read guest-controlled files use
/// [`SshConnection::read_files`] with their own cap).
const DOWNLOAD_LIMIT: usize = 64 << 20;

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
