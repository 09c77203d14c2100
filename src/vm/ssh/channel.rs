//! One command on its own channel of the shared non-blocking session: retrying libssh2 calls
//! that would block, feeding stdin, streaming stdout and stderr to a sink, the INT → TERM →
//! KILL escalation of a cancelled command (each signal sent over a second channel), and the
//! exit status (a signal counts as 128 + its number).

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::time::{Duration, Instant};

use ssh2::{Channel, ErrorCode};
use tokio_util::sync::CancellationToken;

use super::{Inner, POLL_INTERVAL, StepError};
use crate::vm::shell;
use crate::vm::{ExecOutcome, OutputChunk, VmError};

/// Bound on session-level operations (opening a channel, sending a signal).
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace between SIGINT, SIGTERM and SIGKILL when a command is cancelled.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(2);
/// Read buffer size per stream.
const READ_BUF: usize = 32 * 1024;
/// libssh2's "would block" error code.
const EAGAIN: ErrorCode = ErrorCode::Session(-37);

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
    pub(super) fn run(
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
