//! Retry and back-off policy of the listener and the job lifecycle, as pure objects: every
//! decision is a function of counters, times and a random source, so each schedule is unit
//! tested without sleeping. The I/O loops only ask "how long now?" and sleep.
//!
//! Schedules follow the official runner (protocol-transport.md §4.4, §5.6, §6.1, §8). One
//! deliberate difference: transient faults never end the process. Where the broker listener of
//! the official runner gives up after 10 consecutive errors, we recreate the session and carry
//! on (see [`PollErrorBackoff::should_recreate_session`]).
//!
//! All intervals live in [`Timings`]; [`Timings::official`] is production,
//! [`Timings::fast`] shrinks them for tests. Call time limits come from the one table,
//! [`Timeouts`]. The pause between attempts of one HTTP call is [`super::retry::RetryPolicy`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

use super::retry::Pause;
use super::timeouts::Timeouts;

/// A random delay between `min` and `max` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    /// Shortest delay.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Jitter {
    /// A jitter range given in seconds.
    pub const fn secs(min: u64, max: u64) -> Jitter {
        Jitter {
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        }
    }

    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        rng.gen_range(self.min..=self.max)
    }

    fn scaled(self, factor: f64) -> Jitter {
        Jitter {
            min: self.min.mul_f64(factor),
            max: self.max.mul_f64(factor),
        }
    }
}

/// Every interval and retry count of the listener and the job lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Poll error back-off for the first [`Timings::poll_error_short_count`] errors (15–30 s).
    pub poll_error_short: Jitter,
    /// Consecutive poll errors that use the short back-off (5).
    pub poll_error_short_count: u32,
    /// Poll error back-off after that (30–60 s).
    pub poll_error_long: Jitter,
    /// Consecutive broker poll errors after which the session is recreated (10).
    pub broker_max_poll_errors: u32,
    /// Attempts of the broker's inner retry around one GET (5).
    pub broker_inner_attempts: u32,
    /// Delay between inner broker attempts (5–15 s).
    pub broker_inner_retry: Jitter,
    /// Delay between session-create attempts (30 s).
    pub session_retry: Duration,
    /// Total time a session conflict is retried before exit code 5 (4 min).
    pub session_conflict_give_up: Duration,
    /// Window of the empty-poll guard (30 min).
    pub empty_poll_window: Duration,
    /// Empty polls tolerated within the window before pausing (50).
    pub empty_poll_limit: usize,
    /// Pause once the guard trips (15–30 s).
    pub empty_poll_pause: Jitter,
    /// Time limits of the listener's calls (long poll, short calls, acknowledge): the
    /// [`Timeouts`] table.
    pub timeouts: Timeouts,
    /// Interval between successful job renewals (60 s).
    pub renew_interval: Duration,
    /// Attempts of the first renewal before the job is abandoned (5).
    pub first_renew_attempts: u32,
    /// Delay between first-renewal attempts (1–10 s).
    pub first_renew_retry: Jitter,
    /// Delay after a later renewal error (5–15 s).
    pub renew_retry: Jitter,
    /// Delay after more than 5 consecutive later renewal errors (15–30 s).
    pub renew_retry_long: Jitter,
    /// How long past the last `lockedUntil` renewal keeps trying (5 min).
    pub renew_grace_after_lock: Duration,
    /// `acquirejob` attempts for retriable errors (5).
    pub acquire_attempts: u32,
    /// Delay between `acquirejob` attempts (5–15 s).
    pub acquire_retry: Jitter,
    /// First delay of the acquire error throttle (1 s), doubling.
    pub acquire_throttle_min: Duration,
    /// Cap of the acquire error throttle (60 s).
    pub acquire_throttle_max: Duration,
    /// Attempts to complete a job (completejob, finish, JobCompleted event) (5).
    pub complete_attempts: u32,
    /// Delay between completion attempts (5 s).
    pub complete_retry: Duration,
}

impl Timings {
    /// The official runner's values.
    pub fn official() -> Timings {
        Timings {
            poll_error_short: Jitter::secs(15, 30),
            poll_error_short_count: 5,
            poll_error_long: Jitter::secs(30, 60),
            broker_max_poll_errors: 10,
            broker_inner_attempts: 5,
            broker_inner_retry: Jitter::secs(5, 15),
            session_retry: Duration::from_secs(30),
            session_conflict_give_up: Duration::from_secs(4 * 60),
            empty_poll_window: Duration::from_secs(30 * 60),
            empty_poll_limit: 50,
            empty_poll_pause: Jitter::secs(15, 30),
            timeouts: Timeouts::OFFICIAL,
            renew_interval: Duration::from_secs(60),
            first_renew_attempts: 5,
            first_renew_retry: Jitter::secs(1, 10),
            renew_retry: Jitter::secs(5, 15),
            renew_retry_long: Jitter::secs(15, 30),
            renew_grace_after_lock: Duration::from_secs(5 * 60),
            acquire_attempts: 5,
            acquire_retry: Jitter::secs(5, 15),
            acquire_throttle_min: Duration::from_secs(1),
            acquire_throttle_max: Duration::from_secs(60),
            complete_attempts: 5,
            complete_retry: Duration::from_secs(5),
        }
    }

    /// Every delay multiplied by `factor`; counts and timeouts of single calls stay.
    pub fn scaled(factor: f64) -> Timings {
        let o = Timings::official();
        Timings {
            poll_error_short: o.poll_error_short.scaled(factor),
            poll_error_long: o.poll_error_long.scaled(factor),
            broker_inner_retry: o.broker_inner_retry.scaled(factor),
            session_retry: o.session_retry.mul_f64(factor),
            session_conflict_give_up: o.session_conflict_give_up.mul_f64(factor),
            empty_poll_window: o.empty_poll_window.mul_f64(factor),
            empty_poll_pause: o.empty_poll_pause.scaled(factor),
            renew_interval: o.renew_interval.mul_f64(factor),
            first_renew_retry: o.first_renew_retry.scaled(factor),
            renew_retry: o.renew_retry.scaled(factor),
            renew_retry_long: o.renew_retry_long.scaled(factor),
            renew_grace_after_lock: o.renew_grace_after_lock.mul_f64(factor),
            acquire_retry: o.acquire_retry.scaled(factor),
            acquire_throttle_min: o.acquire_throttle_min.mul_f64(factor),
            acquire_throttle_max: o.acquire_throttle_max.mul_f64(factor),
            complete_retry: o.complete_retry.mul_f64(factor),
            ..o
        }
    }

    /// For tests: delays one hundredth of the official ones (poll errors 150–300 ms, renew
    /// every 600 ms, conflict give-up 2.4 s), call timeouts of a few seconds.
    pub fn fast() -> Timings {
        Timings {
            timeouts: Timeouts::FAST_LISTENER,
            ..Timings::scaled(0.01)
        }
    }
}

/// Outer back-off after failed polls: short jitter for the first few consecutive errors, long
/// jitter after; reset by any successful poll. Never gives up.
#[derive(Debug, Default, Clone)]
pub struct PollErrorBackoff {
    consecutive: u32,
}

impl PollErrorBackoff {
    /// Records a failed poll and returns how long to wait before the next one.
    pub fn on_error(&mut self, timings: &Timings, rng: &mut impl Rng) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        if self.consecutive <= timings.poll_error_short_count {
            timings.poll_error_short.sample(rng)
        } else {
            timings.poll_error_long.sample(rng)
        }
    }

    /// Records a successful poll (with or without a message).
    pub fn on_success(&mut self) {
        self.consecutive = 0;
    }

    /// Consecutive failures so far.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Broker path: after this many consecutive failures the session is recreated (where the
    /// official runner would exit).
    pub fn should_recreate_session(&self, timings: &Timings) -> bool {
        self.consecutive >= timings.broker_max_poll_errors
    }
}

/// Guards against a server that answers every long poll at once: more than
/// [`Timings::empty_poll_limit`] empty polls within [`Timings::empty_poll_window`] trip a pause.
#[derive(Debug, Default, Clone)]
pub struct EmptyPollGuard {
    recent: VecDeque<Instant>,
}

impl EmptyPollGuard {
    /// Records an empty poll at `now`; returns a pause when the guard trips.
    pub fn on_empty(
        &mut self,
        now: Instant,
        timings: &Timings,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        self.recent.push_back(now);
        while let Some(&first) = self.recent.front() {
            if now.duration_since(first) > timings.empty_poll_window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        (self.recent.len() > timings.empty_poll_limit).then(|| timings.empty_poll_pause.sample(rng))
    }

    /// Records a poll that carried a message: the server is holding polls properly.
    pub fn on_message(&mut self) {
        self.recent.clear();
    }
}

/// What to do after a failed session create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRetry {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Stop: the conflict outlasted [`Timings::session_conflict_give_up`] (exit code 5).
    GiveUp,
}

/// Session-create retries: every [`Timings::session_retry`] forever for transient errors; a
/// conflict gives up once attempts × interval reach the give-up time.
#[derive(Debug, Default, Clone)]
pub struct SessionCreatePolicy {
    conflicts: u32,
}

impl SessionCreatePolicy {
    /// A conflict (409 / `TaskAgentSessionConflictException`) happened.
    pub fn on_conflict(&mut self, timings: &Timings) -> SessionRetry {
        self.conflicts += 1;
        if timings.session_retry * self.conflicts >= timings.session_conflict_give_up {
            SessionRetry::GiveUp
        } else {
            SessionRetry::RetryAfter(timings.session_retry)
        }
    }

    /// A transient error (network, 5xx) happened: retry forever.
    pub fn on_transient(&mut self, timings: &Timings) -> Duration {
        timings.session_retry
    }
}

/// What the renew loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewDecision {
    /// Renew again after this delay.
    RenewAfter(Duration),
    /// Give up: the lock is lost (first renewal failed, or past `lockedUntil` + grace).
    GiveUp,
}

/// The job-lock renewal schedule (§6.1): first renewal up to N attempts; later renewals every
/// [`Timings::renew_interval`], retrying failures until the last `lockedUntil` plus a grace.
#[derive(Debug, Default, Clone)]
pub struct RenewPolicy {
    succeeded_once: bool,
    consecutive_errors: u32,
    locked_until: Option<DateTime<Utc>>,
}

impl RenewPolicy {
    /// A renewal succeeded; `locked_until` is what the server said, if anything.
    pub fn on_success(
        &mut self,
        locked_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        timings: &Timings,
    ) -> Duration {
        self.succeeded_once = true;
        self.consecutive_errors = 0;
        // Without an answer, assume the lock lasts at least until the next renewal is due.
        let fallback = now + chrono::Duration::from_std(timings.renew_interval).unwrap_or_default();
        self.locked_until = Some(locked_until.unwrap_or(fallback));
        timings.renew_interval
    }

    /// A renewal failed (retriably) at `now`.
    pub fn on_error(
        &mut self,
        now: DateTime<Utc>,
        timings: &Timings,
        rng: &mut impl Rng,
    ) -> RenewDecision {
        self.consecutive_errors += 1;
        if !self.succeeded_once {
            return if self.consecutive_errors >= timings.first_renew_attempts {
                RenewDecision::GiveUp
            } else {
                RenewDecision::RenewAfter(timings.first_renew_retry.sample(rng))
            };
        }
        let grace = chrono::Duration::from_std(timings.renew_grace_after_lock).unwrap_or_default();
        match self.locked_until {
            Some(until) if now > until + grace => RenewDecision::GiveUp,
            _ if self.consecutive_errors > 5 => {
                RenewDecision::RenewAfter(timings.renew_retry_long.sample(rng))
            }
            _ => RenewDecision::RenewAfter(timings.renew_retry.sample(rng)),
        }
    }

    /// Whether a renewal ever succeeded.
    pub fn succeeded_once(&self) -> bool {
        self.succeeded_once
    }

    /// The last known lock expiry.
    pub fn locked_until(&self) -> Option<DateTime<Utc>> {
        self.locked_until
    }
}

/// Exponential throttle applied after `acquirejob` errors: 1 s doubling to 60 s, reset on
/// success.
#[derive(Debug, Default, Clone)]
pub struct ErrorThrottle {
    errors: u32,
}

impl ErrorThrottle {
    /// Records an error and returns the delay to apply before the next acquire.
    pub fn on_error(&mut self, timings: &Timings) -> Duration {
        self.errors = self.errors.saturating_add(1);
        Pause::Doubling {
            first: timings.acquire_throttle_min,
            max: timings.acquire_throttle_max,
        }
        .after(self.errors)
    }

    /// Records a success.
    pub fn on_success(&mut self) {
        self.errors = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn poll_errors_use_short_then_long_jitter_and_reset() {
        let t = Timings::official();
        let mut rng = rng();
        let mut b = PollErrorBackoff::default();
        for _ in 0..5 {
            let d = b.on_error(&t, &mut rng);
            assert!((Duration::from_secs(15)..=Duration::from_secs(30)).contains(&d));
        }
        for _ in 0..20 {
            let d = b.on_error(&t, &mut rng);
            assert!((Duration::from_secs(30)..=Duration::from_secs(60)).contains(&d));
        }
        assert!(b.should_recreate_session(&t));
        b.on_success();
        assert_eq!(b.consecutive(), 0);
        assert!(b.on_error(&t, &mut rng) <= Duration::from_secs(30));
    }

    #[test]
    fn jitter_varies_and_stays_in_range() {
        let j = Jitter::secs(15, 30);
        let mut rng = rng();
        let draws: Vec<Duration> = (0..50).map(|_| j.sample(&mut rng)).collect();
        assert!(draws.iter().all(|d| (j.min..=j.max).contains(d)));
        assert!(draws.iter().any(|d| *d != draws[0]), "no jitter at all");
    }

    #[test]
    fn empty_poll_guard_trips_after_the_limit_within_the_window() {
        let t = Timings::official();
        let mut rng = rng();
        let mut g = EmptyPollGuard::default();
        let start = Instant::now();
        for i in 0..50 {
            assert_eq!(
                g.on_empty(start + Duration::from_secs(i), &t, &mut rng),
                None
            );
        }
        let pause = g
            .on_empty(start + Duration::from_secs(50), &t, &mut rng)
            .unwrap();
        assert!(pause >= Duration::from_secs(15));
        // Much later the old polls fall out of the window.
        let later = start + Duration::from_secs(31 * 60 + 50);
        assert_eq!(g.on_empty(later, &t, &mut rng), None);
        g.on_message();
        assert_eq!(g.on_empty(later, &t, &mut rng), None);
    }

    #[test]
    fn session_conflict_gives_up_at_four_minutes() {
        let t = Timings::official();
        let mut p = SessionCreatePolicy::default();
        let mut waited = Duration::ZERO;
        while let SessionRetry::RetryAfter(d) = p.on_conflict(&t) {
            waited += d;
            assert!(waited < Duration::from_secs(600), "never gives up");
        }
        assert_eq!(waited, Duration::from_secs(210));
        assert_eq!(p.on_transient(&t), Duration::from_secs(30));
    }

    #[test]
    fn first_renew_gives_up_after_five_attempts() {
        let t = Timings::official();
        let mut rng = rng();
        let mut p = RenewPolicy::default();
        let now = Utc::now();
        for _ in 0..4 {
            assert!(matches!(
                p.on_error(now, &t, &mut rng),
                RenewDecision::RenewAfter(d) if d <= Duration::from_secs(10)
            ));
        }
        assert_eq!(p.on_error(now, &t, &mut rng), RenewDecision::GiveUp);
    }

    #[test]
    fn later_renew_errors_retry_until_locked_until_plus_grace() {
        let t = Timings::official();
        let mut rng = rng();
        let mut p = RenewPolicy::default();
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(10);
        assert_eq!(p.on_success(Some(until), now, &t), Duration::from_secs(60));
        for i in 0..10 {
            let d = p.on_error(now, &t, &mut rng);
            let range = if i < 5 {
                t.renew_retry
            } else {
                t.renew_retry_long
            };
            assert!(
                matches!(d, RenewDecision::RenewAfter(d) if (range.min..=range.max).contains(&d))
            );
        }
        assert_eq!(p.locked_until(), Some(until));
        let after = until + chrono::Duration::minutes(6);
        assert_eq!(p.on_error(after, &t, &mut rng), RenewDecision::GiveUp);
    }

    #[test]
    fn acquire_throttle_doubles_to_the_cap_and_resets() {
        let t = Timings::official();
        let mut th = ErrorThrottle::default();
        let delays: Vec<u64> = (0..8).map(|_| th.on_error(&t).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        th.on_success();
        assert_eq!(th.on_error(&t), Duration::from_secs(1));
    }

    #[test]
    fn fast_timings_scale_delays_not_counts() {
        let f = Timings::fast();
        assert_eq!(f.renew_interval, Duration::from_millis(600));
        assert_eq!(f.poll_error_short.max, Duration::from_millis(300));
        assert_eq!(f.first_renew_attempts, 5);
        assert!(f.session_retry > Duration::ZERO);
    }
}
