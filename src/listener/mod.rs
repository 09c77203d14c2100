//! The long-poll listener: session, poll, decrypt, dispatch, back-off, shutdown.

pub mod backoff;
pub mod jobref;
