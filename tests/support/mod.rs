//! Helpers shared by the integration tests and the benchmarks, one module per concern. Every
//! test declares `mod support;` and uses what it needs (`use support::wait::eventually;`); the
//! benchmarks under `examples/` include the same module with
//! `#[path = "../tests/support/mod.rs"] mod support;`.
//!
//! - [`action_tarballs`]: the real action tarballs of `../shared/conformance/actions`, unpacked;
//! - [`agent_proc`]: an agent process (the real binary) against the local service;
//! - [`bench`]: machine facts, CPU time, RSS and percentiles for benchmarks;
//! - [`cli`]: running the CLI in-process; [`disk`]: a blank data disk for images;
//! - [`fake_image`]: an image directory without a bootable kernel (for the null hypervisor);
//! - [`image`]: the tiny test image, built once per machine;
//! - [`listener`]: a listener wired to the local service; [`logs`]: capturing log output;
//!   [`local_vm`]: a VM on this host without QEMU (scripts run locally); [`reports`]: reading
//!   a job's reports back;
//! - [`wait`]: polling until a condition holds.

// Each test binary uses only some of the helpers.
#![allow(dead_code, unused_imports)]

pub mod action_tarballs;
pub mod agent_proc;
pub mod bench;
pub mod cli;
pub mod disk;
pub mod fake_image;
pub mod image;
pub mod listener;
pub mod local_vm;
pub mod logs;
pub mod reports;
pub mod wait;
