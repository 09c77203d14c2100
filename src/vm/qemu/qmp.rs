//! A typed client of the QEMU Machine Protocol over a Unix socket.
//!
//! Owns: connecting (retrying until the socket appears), the greeting and capabilities
//! handshake, executing commands with typed replies, and skipping asynchronous events.
//!
//! ```text
//!   connect ──► read greeting {"QMP": …} ──► execute qmp_capabilities ──► Ready
//!   Ready: send {"execute": cmd, "id": n} ──► read lines, skip {"event": …},
//!          until {"return": …, "id": n} (Ok) or {"error": {class, desc}, "id": n} (Err)
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// Pause between attempts to connect while QEMU has not created its socket yet.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// Longest accepted QMP line (replies here are tiny; this bounds a misbehaving peer).
const MAX_LINE_BYTES: usize = 1 << 20;

/// Errors of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Connecting to or talking over the socket failed.
    #[error("qmp socket i/o failed")]
    Io(#[source] std::io::Error),
    /// The socket did not accept a connection in time.
    #[error("qmp socket did not come up within {0:?}")]
    ConnectTimeout(Duration),
    /// QEMU closed the connection.
    #[error("qmp connection closed")]
    Closed,
    /// A line was not valid QMP.
    #[error("qmp peer sent an invalid message")]
    Decode(#[source] serde_json::Error),
    /// A line was too long.
    #[error("qmp peer sent a line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// QEMU answered with an error.
    #[error("qemu returned {class}: {desc}")]
    Command {
        /// The error class, e.g. `GenericError`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// One message from QEMU. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "QMP")]
    greeting: Option<Value>,
    #[serde(rename = "return")]
    ret: Option<Value>,
    error: Option<ErrorBody>,
    event: Option<String>,
    id: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    class: String,
    desc: String,
}

/// Reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// Whether the guest CPUs run.
    pub running: bool,
    /// Run state, e.g. `running`, `paused`, `shutdown`.
    pub status: String,
}

/// A QMP connection. Generic over the stream so tests can drive it through a socket pair.
pub struct Qmp<S = UnixStream> {
    stream: BufReader<S>,
    next_id: u64,
}

impl Qmp<UnixStream> {
    /// Connects to `path`, retrying until `timeout`, and performs the handshake.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    tracing::debug!(error = %e, "qmp connect gave up");
                    return Err(QmpError::ConnectTimeout(timeout));
                }
                Err(_) => tokio::time::sleep(CONNECT_RETRY_INTERVAL).await,
            }
        };
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        tokio::time::timeout(remaining, Self::handshake(stream))
            .await
            .map_err(|_| QmpError::ConnectTimeout(timeout))?
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Qmp<S> {
    /// Reads the greeting and negotiates capabilities.
    pub async fn handshake(stream: S) -> Result<Self, QmpError> {
        let mut qmp = Self {
            stream: BufReader::new(stream),
            next_id: 0,
        };
        loop {
            let msg = qmp.read_message().await?;
            if msg.greeting.is_some() {
                break;
            }
        }
        qmp.execute::<Value>("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Executes `command` with optional `arguments` and decodes its `return` value.
    pub async fn execute<R: DeserializeOwned>(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<R, QmpError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        tracing::debug!(command, id, "qmp request");
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(QmpError::Io)?;
        loop {
            let msg = self.read_message().await?;
            if let Some(event) = &msg.event {
                tracing::debug!(event = %event, "qmp event skipped");
                continue;
            }
            if msg.id.as_ref().and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = msg.error {
                return Err(QmpError::Command {
                    class: err.class,
                    desc: err.desc,
                });
            }
            return serde_json::from_value(msg.ret.unwrap_or(Value::Null))
                .map_err(QmpError::Decode);
        }
    }

    /// `query-status`.
    pub async fn query_status(&mut self) -> Result<StatusInfo, QmpError> {
        self.execute("query-status", None).await
    }

    /// `system_powerdown`: asks the guest to shut down (ACPI power button).
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute::<Value>("system_powerdown", None)
            .await
            .map(drop)
    }

    /// `quit`: QEMU exits at once. A connection closed before the reply counts as success.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute::<Value>("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read_message(&mut self) -> Result<Message, QmpError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut self.stream)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
                .map_err(QmpError::Io)?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if n > MAX_LINE_BYTES {
                return Err(QmpError::LineTooLong);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return serde_json::from_slice(&line).map_err(QmpError::Decode);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    use super::*;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}"#;

    /// A scripted QEMU: for each request line, checks the command and writes the given replies
    /// (`{id}` is replaced by the request's id).
    async fn fake_qemu(stream: UnixStream, script: Vec<(&'static str, Vec<&'static str>)>) {
        let mut stream = BufReader::new(stream);
        stream
            .get_mut()
            .write_all(format!("{GREETING}\r\n").as_bytes())
            .await
            .unwrap();
        for (expected, replies) in script {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let req: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(req["execute"], expected);
            let id = req["id"].to_string();
            for reply in replies {
                let reply = reply.replace("{id}", &id);
                stream
                    .get_mut()
                    .write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn handshake_then_typed_reply_skipping_events() {
        let (client, server) = UnixStream::pair().unwrap();
        let server = tokio::spawn(fake_qemu(
            server,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": {id}}"#]),
                (
                    "query-status",
                    vec![
                        r#"{"event": "RTC_CHANGE", "data": {"offset": 1}, "timestamp": {"seconds": 1, "microseconds": 2}}"#,
                        r#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": {id}}"#,
                    ],
                ),
            ],
        ));
        let mut qmp = Qmp::handshake(client).await.unwrap();
        let status = qmp.query_status().await.unwrap();
        assert_eq!(
            status,
            StatusInfo {
                running: true,
                status: "running".into()
            }
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn error_reply_becomes_command_error() {
        let (client, server) = UnixStream::pair().unwrap();
        tokio::spawn(fake_qemu(
            server,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": {id}}"#]),
                (
                    "system_powerdown",
                    vec![r#"{"error": {"class": "GenericError", "desc": "no acpi"}, "id": {id}}"#],
                ),
            ],
        ));
        let mut qmp = Qmp::handshake(client).await.unwrap();
        let err = qmp.system_powerdown().await.unwrap_err();
        assert!(
            matches!(err, QmpError::Command { ref class, ref desc } if class == "GenericError" && desc == "no acpi")
        );
    }

    #[tokio::test]
    async fn quit_tolerates_a_closed_connection_and_garbage_is_an_error() {
        let (client, server) = UnixStream::pair().unwrap();
        tokio::spawn(fake_qemu(
            server,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": {id}}"#]),
                ("quit", vec![]),
            ],
        ));
        let mut qmp = Qmp::handshake(client).await.unwrap();
        qmp.quit().await.unwrap();

        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(b"this is not json\n").await.unwrap();
        assert!(matches!(
            Qmp::handshake(client).await,
            Err(QmpError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn connect_times_out_when_no_socket_appears() {
        let dir = tempfile::tempdir().unwrap();
        let err = Qmp::connect(&dir.path().join("qmp.sock"), Duration::from_millis(100)).await;
        assert!(matches!(err, Err(QmpError::ConnectTimeout(_))));
    }
}
