//! Test helper: wait for a condition with a deadline instead of sleeping a fixed time.

#![allow(dead_code)]

use std::time::Duration;

/// How long the tests wait for something that normally takes a second or two (generous, for
/// a loaded 2-core CI machine).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after `limit`.
pub async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
