//! The one timeout table of every call to GitHub: each kind of call names its limit here, and
//! every user reads it from here ([`Timeouts::OFFICIAL`] in production; the listener's
//! [`Timings`](super::backoff::Timings) carry a copy so tests can shrink the listener's calls).
//!
//! | call                                                         | limit |
//! |--------------------------------------------------------------|-------|
//! | establishing a TCP/TLS connection                            | 30 s  |
//! | any request without a kind of its own (registration, OAuth)  | 100 s |
//! | one long poll for a message (the server answers within ~50 s) | 60 s  |
//! | short listener calls: sessions, message delete, job requests | 30 s  |
//! | broker acknowledge (best effort)                             | 5 s   |
//! | one reporting request (timeline, logs, feed, Twirp)          | 100 s |
//! | one signed blob upload (results logs and summaries)           | 100 s |
//! | the latest runner release (`releases/latest`)                | 10 s  |

use std::time::Duration;

/// Time limits per kind of call (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a TCP/TLS connection.
    pub connect: Duration,
    /// A whole request without a kind of its own (the official VSS client's 100 s).
    pub request: Duration,
    /// One long poll for a message.
    pub long_poll: Duration,
    /// Short listener calls: session create and delete, message delete, job-request calls.
    pub short_call: Duration,
    /// The broker acknowledge (best effort, no retry).
    pub acknowledge: Duration,
    /// One reporting request (the official VSS client's default send timeout), so a hung
    /// connection cannot hold the uploader forever.
    pub report_request: Duration,
    /// One upload to a signed blob URL.
    pub blob_upload: Duration,
    /// Reading the latest runner release.
    pub release_fetch: Duration,
}

impl Timeouts {
    /// The production values (the official runner's where it has one).
    pub const OFFICIAL: Timeouts = Timeouts {
        connect: Duration::from_secs(30),
        request: Duration::from_secs(100),
        long_poll: Duration::from_secs(60),
        short_call: Duration::from_secs(30),
        acknowledge: Duration::from_secs(5),
        report_request: Duration::from_secs(100),
        blob_upload: Duration::from_secs(100),
        release_fetch: Duration::from_secs(10),
    };

    /// For tests of the listener: calls limited to a few seconds (long poll 10 s, short
    /// calls 5 s, acknowledge 2 s); the others as in production.
    pub const FAST_LISTENER: Timeouts = Timeouts {
        long_poll: Duration::from_secs(10),
        short_call: Duration::from_secs(5),
        acknowledge: Duration::from_secs(2),
        ..Timeouts::OFFICIAL
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::OFFICIAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_todays_values() {
        let t = Timeouts::OFFICIAL;
        let secs = [
            t.connect,
            t.request,
            t.long_poll,
            t.short_call,
            t.acknowledge,
            t.report_request,
            t.blob_upload,
            t.release_fetch,
        ]
        .map(|d| d.as_secs());
        assert_eq!(secs, [30, 100, 60, 30, 5, 100, 100, 10]);
        let f = Timeouts::FAST_LISTENER;
        assert_eq!(
            [f.long_poll, f.short_call, f.acknowledge].map(|d| d.as_secs()),
            [10, 5, 2]
        );
        assert_eq!(f.report_request, t.report_request);
    }
}
