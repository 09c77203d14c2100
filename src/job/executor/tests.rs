use std::path::Path;

use super::failure::SetUpFailure;
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
