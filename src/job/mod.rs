//! Job semantics: job message → plan → scripts, the step runtime, workflow and file commands,
//! secret masking, and reporting.
//!
//! The step runtime emits [`events::JobEvent`]s (already masked); reporters turn them into
//! timeline records, live console lines, logs and annotations for one of GitHub's two paths.

pub mod budget;
pub mod commands;
pub mod events;
pub mod executor;
pub mod filecmd;
pub mod hooks;
pub mod lifecycle;
pub mod lines;
pub mod mask;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod script;
pub mod stepexec;
pub mod template;
