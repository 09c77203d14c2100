//! An embedded, GHES-compatible GitHub Actions service on 127.0.0.1, following the real
//! protocol shapes. Tests use it as the fake GitHub (with fault injection and a request
//! recorder); the demo runs a real job through it.

mod jobs;
mod messages;
pub mod protocol;
mod sessions;
pub mod workflow;
