//! ghrunner-vm: a self-hosted GitHub Actions runner that runs every job in a freshly cloned
//! QEMU VM.
//!
//! # Data flow
//!
//! ```text
//! GitHub (broker or legacy pool)     protocol + client: wire types, HTTP, no job logic
//!   │  encrypted message (AES-256-CBC, session key wrapped with our RSA key)
//!   ▼
//! listener: session, long-poll, decrypt, dispatch, back-off, shutdown
//!   │  AgentJobRequestMessage (typed and validated once, where the listener receives it)
//!   ▼
//! job runner: acquire → heartbeat → plan → VM → steps → report → complete
//!   │  JobPlan (pure)
//!   ▼
//! vm::Hypervisor ──► vm::qemu: overlay clone, spawn, QMP, SSH ready, exec, destroy
//!   │  output chunks
//!   ▼
//! reporter: workflow commands, file commands, masking, timeline, logs, results
//! ```
//!
//! # Layout
//!
//! - [`cli`]: the `ghrunner-vm` command line (clap): one thin file per subcommand that parses
//!   its flags, calls one library entry point and prints the result.
//! - [`agent`]: what `run` does: a listener per registration, the executors (QEMU VMs, test
//!   doubles), the VM runtime, signals, metrics; the registration flows and the `status` report.
//! - [`config`]: the runner's settings and credential files on disk.
//! - [`crypto`]: RSA keys, the client-assertion JWT, message decryption (pure).
//! - [`protocol`]: wire types of GitHub's runner protocol, the reporting ones included
//!   (timeline records, results-service steps, `completejob` step results; no I/O).
//! - [`client`]: all HTTP to GitHub through one client (registration, OAuth, sessions,
//!   messages, jobs, and the job's reporting), with one retry policy, one timeout table and one
//!   User-Agent; and the back-off schedules the listener and the job lifecycle share.
//! - [`listener`]: the long-poll state machine: sessions, dispatch, running jobs.
//! - [`expr`]: the `${{ }}` expression language.
//! - [`job`]: job message → plan → scripts, step runtime (one handler per step kind:
//!   `job::runtime`), commands, masking, reporting; the executor runs as a
//!   `job::executor::RunnerIdentity` and picks images with `job::executor::select_image`.
//! - [`vm`]: the hypervisor seam (VMs named independently of jobs, cold boot or snapshot
//!   restore as the launch source, host trees copied in as one tar stream) and its QEMU
//!   backend.
//! - [`image`]: runner image manifests (with the guest's recorded facts) and recipes.
//! - [`workflow`]: workflow YAML → parsed jobs → job messages (pure; no HTTP).
//! - [`actions`]: `uses:` actions independent of how a job runs them: the host cache of action
//!   tarballs (downloaded once per commit, unpacked safely, LRU) and the action manifest
//!   (`action.yml`) parsed as the official runner does, expressions left for the job to evaluate.
//! - [`localsvc`]: an embedded GHES-compatible service for tests and the demo (HTTP only; it
//!   queues jobs [`workflow`] compiles; its fault injector exists only with the
//!   `fault-injection` cargo feature, which the test suite's `test-hooks` turns on).
//! - [`exit`]: the process exit codes; [`errors`]: errors shown with their causes.
//! - [`version`]: the official runner version advertised, and how it stays current.
//! - [`doctor`]: the host checks `ghrunner-vm doctor` prints (programs, KVM, confinement,
//!   images, permissions).
//!
//! Dependency direction (checked by tests/architecture.rs): `protocol` and `client` know
//! nothing of `job`, `listener`, `vm`, `cli`, `localsvc`; `actions` nothing of those either
//! (`job` uses it, not the reverse); `job` nothing of `listener`, `cli`, `localsvc`; `vm`
//! nothing of `job`; only `cli` imports `agent`; nothing imports `cli`.

pub mod actions;
pub mod agent;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod doctor;
pub mod errors;
pub mod exit;
pub mod expr;
pub mod image;
pub mod job;
pub mod listener;
pub mod localsvc;
pub mod metrics;
pub mod protocol;
pub mod version;
pub mod vm;
pub mod workflow;
