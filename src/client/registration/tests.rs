//! Unit tests of the pure pieces: labels, group choice, credentials from answers.

use super::*;
use crate::protocol::registration::{
    AgentLabel, PROP_REQUIRE_FIPS, RunnerAdminRegisterResponse, TaskAgent, TaskAgentAuthorization,
    TaskAgentPool,
};
use crate::protocol::vss::Properties;

fn opts(labels: &[&str], default_labels: bool) -> RegisterOptions {
    RegisterOptions {
        name: "r".into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        default_labels,
        runner_group: None,
        ephemeral: false,
        replace: false,
        disable_update: true,
        runner_version: "2.336.0".into(),
    }
}

#[test]
fn labels_default_then_user_without_duplicates() {
    let labels = build_labels(&opts(&["gpu", "Self-Hosted", " ", "gpu"], true)).unwrap();
    let names: Vec<_> = labels
        .iter()
        .map(|l| (l.name.as_str(), l.label_type.as_str()))
        .collect();
    assert_eq!(names[0], ("self-hosted", "system"));
    assert_eq!(names[1].1, "system");
    assert_eq!(names[3], ("gpu", "user"));
    assert_eq!(names.len(), 4);
    assert!(matches!(
        build_labels(&opts(&[], false)),
        Err(RegistrationError::NoLabels)
    ));
    assert_eq!(
        build_labels(&opts(&["x"], false)).unwrap(),
        vec![AgentLabel::user("x")]
    );
}

fn pool(id: u64, name: &str, internal: bool, hosted: bool) -> TaskAgentPool {
    TaskAgentPool {
        id,
        name: name.into(),
        is_hosted: hosted,
        is_internal: internal,
        pool_type: None,
        size: None,
    }
}

#[test]
fn pool_selection_by_name_or_default() {
    let pools = [
        pool(1, "Default", true, false),
        pool(2, "GPU", false, false),
        pool(3, "Azure", false, true),
    ];
    assert_eq!(select_pool(&pools, None).unwrap().id, 1);
    assert_eq!(select_pool(&pools, Some("gpu")).unwrap().id, 2);
    let err = select_pool(&pools, Some("azure")).unwrap_err();
    assert!(err.to_string().contains("Default, GPU"), "{err}");
    assert!(matches!(
        select_pool(&pools[1..], None),
        Err(RegistrationError::NoDefaultGroup)
    ));
}

#[test]
fn credentials_follow_the_fips_property_defaulting_to_true() {
    let mut agent = TaskAgent {
        authorization: Some(TaskAgentAuthorization {
            client_id: Some("5a6d0ab5-3af5-42a2-9700-26c7857ff066".into()),
            authorization_url: Some("https://t/_apis/oauth2/token".into()),
            public_key: None,
        }),
        ..Default::default()
    };
    assert!(credentials_from_agent(&agent).unwrap().data.require_fips());
    let mut props = Properties::default();
    props.set_bool(PROP_REQUIRE_FIPS, false);
    agent.properties = props;
    assert!(!credentials_from_agent(&agent).unwrap().data.require_fips());
    agent.authorization.as_mut().unwrap().client_id = Some(uuid::Uuid::nil().to_string());
    assert!(matches!(
        credentials_from_agent(&agent),
        Err(RegistrationError::NoCredential)
    ));
}

#[test]
fn admin_credentials_enable_migration_with_a_legacy_url() {
    let mut answer = RunnerAdminRegisterResponse {
        id: 1,
        name: "r".into(),
        authorization: crate::protocol::registration::RunnerAdminAuthorization {
            authorization_url: "https://v2/token".into(),
            legacy_authorization_url: Some("https://legacy/token".into()),
            server_url: Some("https://broker/".into()),
            client_id: "c".into(),
        },
    };
    let c = credentials_from_admin(&answer);
    assert_eq!(c.data.authorization_url, "https://legacy/token");
    assert_eq!(
        c.data.authorization_url_v2.as_deref(),
        Some("https://v2/token")
    );
    assert_eq!(
        c.data.enable_auth_migration_by_default.as_deref(),
        Some("true")
    );
    answer.authorization.legacy_authorization_url = None;
    let c = credentials_from_admin(&answer);
    assert_eq!(c.data.authorization_url, "https://v2/token");
    assert!(c.data.authorization_url_v2.is_none() && c.data.require_fips());
}
