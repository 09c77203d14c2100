//! Job semantics: job message → plan → scripts, the step runtime, workflow and file commands,
//! secret masking, and reporting.
