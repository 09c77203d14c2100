//! Fault injection: rules matching method + path substring that, for their next N matching
//! requests, answer with a fixed status and body, add a delay before the real handler, or drop
//! the connection without an answer (the first rule with uses left wins); and legacy job
//! messages damaged on delivery ([`Tamper`]).
//!
//! The rules are plain data, but only builds with the `fault-injection` cargo feature (which
//! `test-hooks`, the test suite's feature, turns on) apply them: the release binary's local
//! service (`ghrunner-vm demo`) has no injector in its request path. In a build without the
//! feature, [`require`] fails the test that asks for a fault, naming the feature.

use std::time::Duration;

/// Whether this build applies faults (the `fault-injection` cargo feature).
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Fails (panics, in a test) when this build cannot apply faults: a test that injects one
/// must not pass without it.
pub fn require(what: &str) {
    if !ENABLED {
        panic!(
            "{what} needs fault injection, which this build of the local service does not have: \
         build with the `fault-injection` cargo feature (`cargo test --features test-hooks`, as \
         tests/run-all.sh does)"
        );
    }
}

/// How a queued legacy job message is damaged on delivery (to test that the runner skips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Encrypted correctly, delivered with another IV.
    WrongIv,
    /// The last ciphertext byte flipped (breaks the padding or the text).
    BadPadding,
    /// A body that is not ciphertext at all.
    Garbage,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this status and body instead of the real handler.
    Respond {
        /// HTTP status.
        status: u16,
        /// Body (sent as JSON when it parses as JSON, else as text).
        body: String,
    },
    /// Wait, then run the real handler.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
}

/// A fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Method to match (`None` = any).
    pub method: Option<String>,
    /// Substring the path must contain.
    pub path_contains: String,
    /// Matching requests still to fault.
    pub remaining: u32,
    /// What to do.
    pub action: FaultAction,
}

/// Builder for [`FaultRule`]s: `Fault::respond("POST", "/oauth2/token", 503, "{}").times(2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault(FaultRule);

impl Fault {
    fn new(method: &str, path_contains: &str, action: FaultAction) -> Self {
        let method = (!method.is_empty() && method != "*").then(|| method.to_ascii_uppercase());
        Fault(FaultRule {
            method,
            path_contains: path_contains.to_owned(),
            remaining: 1,
            action,
        })
    }

    /// Answer `status` with `body` (method `""` or `"*"` = any).
    pub fn respond(method: &str, path_contains: &str, status: u16, body: &str) -> Self {
        Self::new(
            method,
            path_contains,
            FaultAction::Respond {
                status,
                body: body.to_owned(),
            },
        )
    }

    /// Delay the real handler.
    pub fn delay(method: &str, path_contains: &str, delay: Duration) -> Self {
        Self::new(method, path_contains, FaultAction::Delay(delay))
    }

    /// Drop the connection.
    pub fn drop_connection(method: &str, path_contains: &str) -> Self {
        Self::new(method, path_contains, FaultAction::Drop)
    }

    /// Apply to the next `n` matching requests (default 1).
    pub fn times(mut self, n: u32) -> Self {
        self.0.remaining = n;
        self
    }

    /// The rule.
    pub fn into_rule(self) -> FaultRule {
        self.0
    }
}

#[cfg(feature = "fault-injection")]
pub use injector::{ConnectionKill, apply_tamper, inject};

/// The request-path side: applies the rules (only with the `fault-injection` feature).
#[cfg(feature = "fault-injection")]
mod injector {
    use std::sync::Arc;

    use axum::extract::{Request, State as AxumState};
    use axum::http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::{FaultAction, Tamper};
    use crate::localsvc::state::Shared;
    use crate::protocol::message::TaskAgentMessage;

    /// Per-connection handle the accept loop puts into each request; notifying it closes the
    /// connection.
    #[derive(Debug, Clone)]
    pub struct ConnectionKill(pub Arc<tokio::sync::Notify>);

    /// Takes one use of the first rule matching `method path`.
    fn take_fault(shared: &Shared, method: &str, path: &str) -> Option<FaultAction> {
        let mut state = shared.lock();
        let rule = state.faults.iter_mut().find(|rule| {
            rule.remaining > 0
                && rule.method.as_deref().is_none_or(|m| m == method)
                && path.contains(&rule.path_contains)
        })?;
        rule.remaining -= 1;
        Some(rule.action.clone())
    }

    /// Middleware: applies the first matching fault rule.
    pub async fn inject(
        AxumState(shared): AxumState<Shared>,
        request: Request,
        next: Next,
    ) -> Response {
        let method = request.method().as_str().to_owned();
        let action = take_fault(&shared, &method, request.uri().path());
        match action {
            None => next.run(request).await,
            Some(FaultAction::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                next.run(request).await
            }
            Some(FaultAction::Respond { status, body }) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
                    "application/json"
                } else {
                    "text/plain"
                };
                let mut resp = (status, body).into_response();
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                resp
            }
            Some(FaultAction::Drop) => {
                if let Some(kill) = request.extensions().get::<ConnectionKill>() {
                    kill.0.notify_one();
                    // The accept loop drops the connection; this future is dropped with it.
                    std::future::pending::<()>().await;
                }
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    /// Damages an encrypted message as `tamper` says.
    pub fn apply_tamper(message: &mut TaskAgentMessage, tamper: Tamper) {
        match tamper {
            Tamper::WrongIv => message.iv = Some(STANDARD.encode([0x5au8; 16])),
            Tamper::BadPadding => {
                let mut raw = STANDARD.decode(&message.body).unwrap_or_default();
                if raw.len() >= 32 {
                    // Flip the second-to-last block so the last plaintext block changes.
                    let at = raw.len() - 17;
                    raw[at] ^= 0xff;
                } else if let Some(last) = raw.last_mut() {
                    *last ^= 0xff;
                }
                message.body = STANDARD.encode(raw);
            }
            Tamper::Garbage => message.body = "this is not ciphertext at all".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_a_fault_fails_exactly_when_the_build_cannot_apply_it() {
        let outcome = std::panic::catch_unwind(|| require("a fault rule"));
        assert_eq!(outcome.is_ok(), ENABLED);
        if let Err(panic) = outcome {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                message.contains("`fault-injection` cargo feature"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_builder_makes_rules() {
        let rule = Fault::respond("post", "/oauth2/token", 503, "{}")
            .times(2)
            .into_rule();
        assert_eq!(rule.method.as_deref(), Some("POST"));
        assert_eq!(rule.remaining, 2);
        assert_eq!(Fault::drop_connection("*", "/x").into_rule().method, None);
    }
}
