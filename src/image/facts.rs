//! What a guest image provides, as its build recorded it (`facts` in `manifest.json`): the
//! shells and tools on the guest's `PATH` and the Node.js runtimes JavaScript actions can use.
//! Step handlers ask these through the job's `RunnerFacts` instead of probing the guest.
//!
//! A manifest written before facts existed has none (`ImageManifest::facts` is `None`): then
//! nothing is known beyond the manifest's default `shell`.

use serde::{Deserialize, Serialize};

/// The guest's programs, recorded by the image build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// Shells on the guest's `PATH`, by program name (`sh`, `bash`, …).
    #[serde(default)]
    pub shells: Vec<String>,
    /// Node.js runtimes for JavaScript actions.
    #[serde(default)]
    pub node: Vec<NodeRuntime>,
    /// Other programs on the guest's `PATH` that steps and handlers rely on (`tar`, `git`,
    /// `docker`, `curl`, …), by name.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// One Node.js runtime in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRuntime {
    /// Its version, e.g. `20.19.2`.
    pub version: String,
    /// Absolute guest path of its `node` binary.
    pub path: String,
}

impl NodeRuntime {
    /// The major version (`20` for `20.19.2` or `v20.19.2`), if the version reads as one.
    pub fn major(&self) -> Option<u32> {
        let version = self.version.strip_prefix('v').unwrap_or(&self.version);
        version.split('.').next()?.parse().ok()
    }
}

impl ImageFacts {
    /// True if the guest has shell `name` (e.g. `bash`).
    pub fn has_shell(&self, name: &str) -> bool {
        self.shells.iter().any(|s| s == name)
    }

    /// True if the guest has program `name` (e.g. `tar`).
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t == name)
    }

    /// The guest's Node.js runtime of major version `major` (e.g. `20` for `node20` actions).
    pub fn node(&self, major: u32) -> Option<&NodeRuntime> {
        self.node.iter().find(|n| n.major() == Some(major))
    }

    /// Checks what handlers rely on: node paths are absolute, names are not empty.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(node) = self.node.iter().find(|n| !n.path.starts_with('/')) {
            return Err(format!(
                "facts: node {} has the relative path {:?}",
                node.version, node.path
            ));
        }
        if self.shells.iter().chain(&self.tools).any(String::is_empty) {
            return Err("facts: a shell or tool name is empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_answer_what_handlers_ask() {
        let facts: ImageFacts = serde_json::from_str(
            r#"{"shells": ["sh", "bash"], "tools": ["tar", "git"],
                "node": [{"version": "20.19.2", "path": "/opt/node20/bin/node"},
                         {"version": "v24.1.0", "path": "/opt/node24/bin/node"}]}"#,
        )
        .unwrap();
        assert!(facts.has_shell("bash") && !facts.has_shell("pwsh"));
        assert!(facts.has_tool("tar") && !facts.has_tool("docker"));
        assert_eq!(facts.node(20).unwrap().path, "/opt/node20/bin/node");
        assert_eq!(facts.node(24).unwrap().version, "v24.1.0");
        assert!(facts.node(16).is_none());
        assert_eq!(facts.validate(), Ok(()));
    }

    #[test]
    fn missing_lists_are_empty_and_relative_node_paths_are_refused() {
        let facts: ImageFacts = serde_json::from_str(r#"{"shells": ["sh"]}"#).unwrap();
        assert!(facts.tools.is_empty() && facts.node.is_empty());
        let bad = ImageFacts {
            node: vec![NodeRuntime {
                version: "20.0.0".into(),
                path: "bin/node".into(),
            }],
            ..ImageFacts::default()
        };
        assert!(bad.validate().unwrap_err().contains("bin/node"));
    }
}
