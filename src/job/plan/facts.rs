//! [`RunnerFacts`]: what the runner knows about itself and the guest image, derived from the
//! image manifest in one place ([`RunnerFacts::from_image`]) and asked by planning, script
//! rendering and step handlers (which shell, which Node.js, whether `tar` or `docker` exist).

use crate::image::{ImageFacts, ImageManifest, NodeRuntime};

/// What the runner knows about itself and the guest image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerFacts {
    /// The runner's name (`runner.name`).
    pub runner_name: String,
    /// `runner.os`: `Linux`, `macOS` or `Windows`.
    pub os: String,
    /// `runner.arch`: `X86`, `X64`, `ARM` or `ARM64`.
    pub arch: String,
    /// The guest work folder (the image manifest's `work_dir`), e.g. `/work`.
    pub work_dir: String,
    /// Whether the image has bash (default shell `bash -e {0}`, else `sh -e {0}`).
    pub has_bash: bool,
    /// What the image's build recorded about the guest (shells, tools, Node.js); `None` for
    /// an image whose manifest predates facts: then nothing is known beyond `has_bash`.
    pub guest: Option<ImageFacts>,
}

impl RunnerFacts {
    /// The facts of runner `runner_name` running jobs in the image of `manifest` (the only
    /// place they are derived from a manifest). Guests are Linux; bash counts as present when
    /// it is the image's default shell or its recorded facts list it.
    pub fn from_image(runner_name: &str, manifest: &ImageManifest) -> Self {
        let recorded_bash = manifest.facts.as_ref().is_some_and(|f| f.has_shell("bash"));
        RunnerFacts {
            runner_name: runner_name.to_owned(),
            os: "Linux".to_owned(),
            arch: RunnerFacts::arch_from_image(&manifest.arch).to_owned(),
            work_dir: manifest.work_dir.clone(),
            has_bash: manifest.shell == "bash" || recorded_bash,
            guest: manifest.facts.clone(),
        }
    }

    /// `runner.arch` for an image architecture such as `x86_64` or `aarch64`.
    pub fn arch_from_image(arch: &str) -> &'static str {
        match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x64" => "X64",
            "i386" | "i686" | "x86" => "X86",
            "aarch64" | "arm64" => "ARM64",
            "arm" | "armv7" | "armv7l" | "armhf" => "ARM",
            _ => "X64",
        }
    }

    /// Whether the guest has program `tool` (e.g. `tar`, `docker`); `None` when the image
    /// recorded no facts.
    pub fn has_tool(&self, tool: &str) -> Option<bool> {
        self.guest.as_ref().map(|f| f.has_tool(tool))
    }

    /// The guest's Node.js runtime of major version `major`, if the image recorded one.
    pub fn node(&self, major: u32) -> Option<&NodeRuntime> {
        self.guest.as_ref()?.node(major)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as `image build` wrote it before facts existed.
    const OLD_MANIFEST: &str = r#"{
      "name": "debian", "arch": "x86_64", "disk": "disk.qcow2", "kernel": "vmlinux",
      "initrd": "initrd.img", "cmdline": "console=ttyS0 root=/dev/vda rw",
      "user": "runner", "shell": "bash", "work_dir": "/home/runner/_work",
      "kernel_version": "6.1.0-56-amd64", "recipe": "debian",
      "recipe_hash": "sha256:00", "built_at": "2026-01-01T00:00:00Z",
      "sha256": {"disk.qcow2": "00"}
    }"#;

    #[test]
    fn an_old_manifest_gives_the_facts_it_always_gave() {
        let manifest: ImageManifest = serde_json::from_str(OLD_MANIFEST).unwrap();
        assert_eq!(manifest.validate(), Ok(()));
        let facts = RunnerFacts::from_image("vm-1", &manifest);
        assert_eq!(
            facts,
            RunnerFacts {
                runner_name: "vm-1".into(),
                os: "Linux".into(),
                arch: "X64".into(),
                work_dir: "/home/runner/_work".into(),
                has_bash: true,
                guest: None,
            }
        );
        assert_eq!(facts.has_tool("tar"), None, "unknown, not absent");
        assert!(facts.node(20).is_none());
    }

    #[test]
    fn recorded_facts_reach_the_handlers() {
        let mut manifest: ImageManifest = serde_json::from_str(OLD_MANIFEST).unwrap();
        manifest.shell = "sh".into();
        manifest.arch = "aarch64".into();
        let sh_only = RunnerFacts::from_image("r", &manifest);
        assert!(!sh_only.has_bash);
        manifest.facts = Some(ImageFacts {
            shells: vec!["sh".into(), "bash".into()],
            tools: vec!["tar".into(), "git".into()],
            node: vec![NodeRuntime {
                version: "24.1.0".into(),
                path: "/usr/local/bin/node".into(),
            }],
        });
        let facts = RunnerFacts::from_image("r", &manifest);
        assert_eq!(facts.arch, "ARM64");
        assert!(facts.has_bash, "bash recorded as present");
        assert_eq!(facts.has_tool("tar"), Some(true));
        assert_eq!(facts.has_tool("docker"), Some(false));
        assert_eq!(
            facts.node(24).map(|n| n.path.as_str()),
            Some("/usr/local/bin/node")
        );
        assert!(facts.node(20).is_none());
    }
}
