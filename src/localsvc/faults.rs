//! Fault injection: rules matching method + path substring that, for their next N matching
//! requests, answer with a fixed status and body, add a delay before the real handler, or drop
//! the connection without an answer. The first rule with uses left wins.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::Shared;

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
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
