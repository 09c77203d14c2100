use std::path::Path;

use super::failure::SetUpFailure;
use super::image::choose_image;
use super::*;

fn catalog(images: &[(&str, &str)], default_image: Option<&str>) -> ImageCatalog {
    ImageCatalog {
        images: images
            .iter()
            .map(|(l, d)| (l.to_string(), PathBuf::from(d)))
            .collect(),
        default_image: default_image.map(str::to_owned),
        config_path: PathBuf::from("/r/config.yaml"),
    }
}

fn labels(list: &[&str]) -> Vec<String> {
    list.iter().map(|l| l.to_string()).collect()
}

#[test]
fn exactly_one_image_label_chooses_its_image() {
    let c = catalog(&[("tiny", "/img/tiny"), ("debian", "/img/debian")], None);
    let (label, dir) = choose_image(&labels(&["self-hosted", "Linux", "TINY"]), &c).unwrap();
    assert_eq!((label, dir), ("tiny", Path::new("/img/tiny")));
}

#[test]
fn no_or_several_image_labels_fall_back_to_the_default() {
    let c = catalog(
        &[("tiny", "/img/tiny"), ("debian", "/img/debian")],
        Some("debian"),
    );
    let (label, _) = choose_image(&labels(&["self-hosted"]), &c).unwrap();
    assert_eq!(label, "debian");
    let (label, _) = choose_image(&labels(&["tiny", "debian"]), &c).unwrap();
    assert_eq!(label, "debian");
}

#[test]
fn without_a_default_the_error_says_how_to_fix_the_config() {
    let c = catalog(&[("tiny", "/img/tiny"), ("debian", "/img/debian")], None);
    let err = choose_image(&labels(&["self-hosted", "x64"]), &c).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("self-hosted, x64"), "{text}");
    assert!(text.contains("/r/config.yaml"), "{text}");
    assert!(text.contains("--image LABEL=IMAGE_DIR"), "{text}");
    let err = choose_image(&labels(&["tiny", "debian"]), &c).unwrap_err();
    assert!(
        matches!(&err, ImageChoiceError::Ambiguous { matches, .. } if matches == "debian, tiny"),
        "{err}"
    );
}

#[test]
fn hook_facts_come_from_the_github_context() {
    let message: AgentJobRequestMessage = serde_json::from_value(serde_json::json!({
        "plan": {"planId": uuid::Uuid::new_v4(), "planType": "actions"},
        "jobId": uuid::Uuid::new_v4(), "jobName": "fallback",
        "contextData": {"github": {"t": 2, "d": [
            {"k": "repository", "v": "octo/hello"}, {"k": "run_id", "v": "99"},
            {"k": "workflow", "v": "CI"}
        ]}}
    }))
    .unwrap();
    let facts = hook_facts(&message, "vm-1");
    assert_eq!(facts.repository, "octo/hello");
    assert_eq!(facts.run_id, "99");
    assert_eq!(facts.workflow, "CI");
    assert_eq!(facts.job, "fallback", "github.job missing: the job name");
    assert_eq!(facts.runner_name, "vm-1");
}

#[test]
fn set_up_failures_show_their_causes() {
    let err = SetUpError::Boot(VmError::Exited {
        name: "job-1".into(),
        detail: "exit status 1: no kvm".into(),
    });
    let SetUpFailure(text) = err.into();
    assert_eq!(
        text,
        "the VM failed to boot: VM job-1 exited unexpectedly: exit status 1: no kvm"
    );
}

#[test]
fn select_image_loads_the_chosen_image_for_any_label_set() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    std::fs::write(tiny.join("vmlinux"), b"kernel").unwrap();
    std::fs::write(
        tiny.join("manifest.json"),
        r#"{"name": "tiny", "arch": "x86_64", "kernel": "vmlinux", "user": "root",
            "shell": "sh", "work_dir": "/work"}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing");
    let c = ImageCatalog {
        images: [
            ("tiny".to_owned(), tiny),
            ("broken".to_owned(), missing.clone()),
        ]
        .into(),
        default_image: Some("tiny".into()),
        config_path: PathBuf::from("/r/config.yaml"),
    };
    // A registration's labels, or a job's `runs-on` when there is no registration.
    for set in [labels(&["self-hosted", "tiny"]), labels(&["ubuntu-latest"])] {
        let selected = select_image(&set, &c).unwrap();
        assert_eq!(selected.label, "tiny");
        assert_eq!(selected.image.manifest.name, "tiny");
    }
    let err = select_image(&labels(&["broken"]), &c).unwrap_err();
    let SetUpFailure(text) = SetUpError::Image(err).into();
    assert_eq!(
        text,
        format!(
            "the VM image \"broken\" ({}) is not usable: reading {} failed: No such file or \
             directory (os error 2)",
            missing.display(),
            missing.join("manifest.json").display()
        )
    );
    let no_default = ImageCatalog {
        default_image: None,
        ..c
    };
    let err = select_image(&labels(&["ubuntu-latest"]), &no_default).unwrap_err();
    let SetUpFailure(text) = SetUpError::Image(err).into();
    assert!(text.starts_with("no VM image for this runner"), "{text}");
}

/// Reports nobody starts (the test only builds VM specs).
struct NoReports;

impl ReportFactory for NoReports {
    fn start(&self, _: &AgentJobRequestMessage, _: &str) -> Result<JobReport, BoxError> {
        unreachable!("no job runs")
    }
}

#[test]
fn vms_get_names_of_their_own_and_know_their_job() {
    let executor = VmJobExecutor::new(
        Arc::new(crate::vm::null::NullHypervisor::default()),
        NoReports,
        ExecutorConfig {
            console_dir: Some(PathBuf::from("/var/log/vms")),
            ..ExecutorConfig::default()
        },
    );
    let job = uuid::Uuid::new_v4();
    let image = Image {
        dir: PathBuf::from("/img"),
        manifest: crate::image::ImageManifest::default(),
    };
    let first = executor.spec(job, image.clone());
    let second = executor.spec(job, image);
    assert!(first.name.starts_with("vm-"), "{}", first.name);
    assert!(!first.name.contains(&job.to_string()), "{}", first.name);
    assert_ne!(first.name, second.name, "every VM its own name");
    assert_eq!(first.job, Some(job.to_string()));
    assert_eq!(first.source, LaunchSource::ColdBoot);
    assert_eq!(
        first.console_log,
        Some(PathBuf::from(format!(
            "/var/log/vms/{}.console.log",
            first.name
        )))
    );
}
