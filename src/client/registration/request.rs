//! What a registration asks for: the labels (default system labels and the user's), and the
//! runner group (legacy pool or runner-admin group) chosen from the server's list.

use super::{RegisterOptions, RegistrationError};
use crate::client::http::runner_arch;
use crate::protocol::registration::{AgentLabel, RunnerGroup, TaskAgentPool};

/// The labels to register: default system labels (unless disabled), then user labels, without
/// case-insensitive duplicates.
pub fn build_labels(opts: &RegisterOptions) -> Result<Vec<AgentLabel>, RegistrationError> {
    let mut labels: Vec<AgentLabel> = Vec::new();
    if opts.default_labels {
        for name in ["self-hosted", runner_os(), runner_arch()] {
            labels.push(AgentLabel::system(name));
        }
    }
    for name in opts
        .labels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
    {
        if !labels.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
            labels.push(AgentLabel::user(name));
        }
    }
    if labels.is_empty() {
        return Err(RegistrationError::NoLabels);
    }
    Ok(labels)
}

/// The OS label: `Linux`, `macOS` or `Windows`.
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macOS",
        "windows" => "Windows",
        _ => "Linux",
    }
}

/// Picks the legacy pool: by name (case-insensitive, non-hosted), else the internal one.
pub fn select_pool<'a>(
    pools: &'a [TaskAgentPool],
    name: Option<&str>,
) -> Result<&'a TaskAgentPool, RegistrationError> {
    select_group_by(pools, name, |p| (&p.name, p.is_hosted, p.is_internal))
}

/// Picks the runner-admin group: by name (case-insensitive, non-hosted), else the default.
pub fn select_group<'a>(
    groups: &'a [RunnerGroup],
    name: Option<&str>,
) -> Result<&'a RunnerGroup, RegistrationError> {
    select_group_by(groups, name, |g| (&g.name, g.is_hosted, g.default))
}

/// The selection rule both flows share; `facts` gives (name, is hosted, is the default).
fn select_group_by<'a, T>(
    groups: &'a [T],
    name: Option<&str>,
    facts: impl Fn(&T) -> (&String, bool, bool),
) -> Result<&'a T, RegistrationError> {
    let usable = || groups.iter().filter(|g| !facts(g).1);
    match name {
        Some(name) => usable()
            .find(|g| facts(g).0.eq_ignore_ascii_case(name))
            .ok_or_else(|| RegistrationError::GroupNotFound {
                name: name.to_owned(),
                available: usable().map(|g| facts(g).0.clone()).collect(),
            }),
        None => usable()
            .find(|g| facts(g).2)
            .ok_or(RegistrationError::NoDefaultGroup),
    }
}
