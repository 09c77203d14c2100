//! The one retry policy of every call to GitHub: how many attempts, and how long to pause
//! between them. [`HttpClient`](super::HttpClient) uses it for HTTP-level retries (registration
//! and OAuth: 3 attempts, 0.5–2 s jitter); the job reporter uses it for whole operations (5
//! attempts, 1 s doubling to 8 s) and then sends each attempt once, so retries never nest.
//! The listener's acquire throttle ([`super::backoff::ErrorThrottle`]) uses the same doubling
//! [`Pause`].
//!
//! ```text
//!   attempt 1 ──fail, retryable──► pause(1) ──► attempt 2 ── … ──► attempt N: its outcome
//!                 (not retryable, or the last attempt: returned as is)
//! ```

use std::future::Future;
use std::time::Duration;

use super::backoff::Jitter;

/// How long to pause after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// A random pause within the range, the same range after every attempt.
    Jitter(Jitter),
    /// `first` after the first failure, doubled after each further one, at most `max`.
    Doubling {
        /// Pause after the first failed attempt.
        first: Duration,
        /// Longest pause.
        max: Duration,
    },
}

impl Pause {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn after(&self, attempt: u32) -> Duration {
        match *self {
            Pause::Jitter(jitter) => jitter.sample(&mut rand::thread_rng()),
            Pause::Doubling { first, max } => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                first.saturating_mul(factor).min(max)
            }
        }
    }
}

/// How often and how patiently to retry one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// The pause between attempts.
    pub pause: Pause,
}

impl RetryPolicy {
    /// The registration REST policy (protocol-transport.md §8): 3 attempts, 0.5–2 s jitter.
    pub const DEFAULT: RetryPolicy =
        RetryPolicy::jittered(3, Duration::from_millis(500), Duration::from_secs(2));
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy::jittered(1, Duration::ZERO, Duration::ZERO);
    /// Reporting requests (timeline, logs, results service, blobs): 5 attempts over ~15 s,
    /// 1 s doubling to 8 s, like the official runner's inner HTTP retries.
    pub const REPORTING: RetryPolicy =
        RetryPolicy::doubling(5, Duration::from_secs(1), Duration::from_secs(8));

    /// `attempts` with a random pause in `min..=max` between them.
    pub const fn jittered(attempts: u32, min: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts,
            pause: Pause::Jitter(Jitter { min, max }),
        }
    }

    /// `attempts` with a pause of `first`, doubled after each failure, at most `max`.
    pub const fn doubling(attempts: u32, first: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts,
            pause: Pause::Doubling { first, max },
        }
    }

    /// The pause after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.pause.after(attempt)
    }

    /// Runs `op` until `again(outcome, attempt)` says no or the attempts run out, pausing
    /// between attempts; returns the last outcome. `again` is only asked when another attempt
    /// is left (it may log the retry).
    pub async fn run_while<T, F, Fut, A>(&self, mut op: F, mut again: A) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
        A: FnMut(&T, u32) -> bool,
    {
        let mut attempt = 1;
        loop {
            let outcome = op().await;
            if attempt >= self.attempts || !again(&outcome, attempt) {
                return outcome;
            }
            tokio::time::sleep(self.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// Runs `op` until it succeeds, fails for good (not [`Retryable`]), or attempts run out.
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_while(op, |outcome, attempt| match outcome {
            Err(err) if err.is_retryable() => {
                tracing::debug!(attempt, error = %err, "request failed, retrying");
                true
            }
            _ => false,
        })
        .await
    }
}

/// An error that says whether trying the same call again may succeed.
pub trait Retryable {
    /// Whether a retry may help.
    fn is_retryable(&self) -> bool;
}

impl Retryable for super::ClientError {
    fn is_retryable(&self) -> bool {
        super::ClientError::is_retryable(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure(bool);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure (retryable: {})", self.0)
        }
    }

    impl Retryable for Failure {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn jittered_delay_stays_in_bounds() {
        let p = RetryPolicy::DEFAULT;
        let Pause::Jitter(range) = p.pause else {
            panic!("the default policy is jittered")
        };
        assert_eq!(p.attempts, 3);
        assert_eq!(
            (range.min, range.max),
            (Duration::from_millis(500), Duration::from_secs(2))
        );
        for attempt in 0..100 {
            let d = p.delay(attempt);
            assert!(d >= range.min && d <= range.max);
        }
        assert_eq!(RetryPolicy::NONE.attempts, 1);
        assert_eq!(RetryPolicy::NONE.delay(1), Duration::ZERO);
    }

    #[test]
    fn doubling_delay_doubles_up_to_the_cap() {
        let policy =
            RetryPolicy::doubling(5, Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (1..=4).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
        assert_eq!(RetryPolicy::REPORTING.delay(40), Duration::from_secs(8));
        let reporting: Vec<u64> = (1..=4)
            .map(|n| RetryPolicy::REPORTING.delay(n).as_secs())
            .collect();
        assert_eq!(reporting, [1, 2, 4, 8]);
        assert_eq!(RetryPolicy::REPORTING.attempts, 5);
    }

    #[tokio::test]
    async fn run_stops_on_a_permanent_error_and_succeeds_after_transient_ones() {
        let policy = RetryPolicy::doubling(4, Duration::from_millis(1), Duration::from_millis(1));
        let mut calls = 0;
        let ok = policy
            .run(|| {
                calls += 1;
                let result = if calls < 3 {
                    Err(Failure(true))
                } else {
                    Ok(calls)
                };
                async move { result }
            })
            .await;
        assert_eq!(ok.unwrap(), 3);
        let mut calls = 0;
        let err = policy
            .run(|| {
                calls += 1;
                async { Err::<(), _>(Failure(false)) }
            })
            .await;
        assert!(err.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let err = policy
            .run(|| {
                calls += 1;
                async { Err::<(), _>(Failure(true)) }
            })
            .await;
        assert!(err.is_err());
        assert_eq!(calls, 4, "every attempt is used, no more");
    }
}
