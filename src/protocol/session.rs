//! `TaskAgentSession`: the body of session create on the legacy pool service and on the broker
//! (protocol-transport.md §4), with the wrapped session key and the optional broker-migration
//! hint. No I/O; unwrapping the key is [`crate::crypto::session`]'s job.

use serde::{Deserialize, Serialize};

use super::message::BrokerMigration;

/// The all-zero GUID the runner sends as `sessionId` when creating a session.
pub const EMPTY_SESSION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The agent reference inside a session (`TaskAgentReference`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionAgent {
    /// The agent (runner) id.
    #[serde(alias = "Id")]
    pub id: u64,
    /// The runner name.
    #[serde(alias = "Name")]
    pub name: String,
    /// The runner version we report.
    #[serde(default, alias = "Version")]
    pub version: String,
    /// Free-form OS description.
    #[serde(default, alias = "OsDescription")]
    pub os_description: String,
    /// Agent status (0 = offline; the server ignores it on create).
    #[serde(default, alias = "Status")]
    pub status: serde_json::Value,
}

/// `encryptionKey` of a session-create response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEncryptionKey {
    /// Whether `value` is RSA-OAEP ciphertext (else the raw key).
    #[serde(default, alias = "Encrypted")]
    pub encrypted: bool,
    /// Base64 of the (wrapped) AES key.
    #[serde(alias = "Value")]
    pub value: String,
}

/// A session as created and returned by the service (`TaskAgentSession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentSession {
    /// The session id (the empty GUID in a create request).
    #[serde(alias = "SessionId")]
    pub session_id: String,
    /// `"<host> (PID: <pid>)"`.
    #[serde(default, alias = "OwnerName")]
    pub owner_name: String,
    /// The runner this session belongs to.
    #[serde(alias = "Agent")]
    pub agent: SessionAgent,
    /// Selects the OAEP hash of `encryptionKey` (SHA-256 when true).
    #[serde(default, alias = "UseFipsEncryption")]
    pub use_fips_encryption: bool,
    /// The wrapped session key (legacy service only; broker sessions have none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "EncryptionKey"
    )]
    pub encryption_key: Option<SessionEncryptionKey>,
    /// Present when the service wants this runner on the broker.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "BrokerMigrationMessage"
    )]
    pub broker_migration_message: Option<BrokerMigration>,
}

impl TaskAgentSession {
    /// The body of a create request for this runner.
    pub fn create_request(agent: SessionAgent, owner_name: String) -> TaskAgentSession {
        TaskAgentSession {
            session_id: EMPTY_SESSION_ID.to_owned(),
            owner_name,
            agent,
            use_fips_encryption: false,
            encryption_key: None,
            broker_migration_message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_has_the_empty_session_id_and_no_key() {
        let agent = SessionAgent {
            id: 42,
            name: "build-01".into(),
            version: "2.330.0".into(),
            os_description: "Linux".into(),
            status: 0.into(),
        };
        let body =
            serde_json::to_value(TaskAgentSession::create_request(agent, "h (PID: 1)".into()))
                .unwrap();
        assert_eq!(body["sessionId"], EMPTY_SESSION_ID);
        assert_eq!(body["agent"]["osDescription"], "Linux");
        assert_eq!(body["useFipsEncryption"], false);
        assert!(body.get("encryptionKey").is_none());
    }

    #[test]
    fn reads_pascal_case_and_unknown_fields() {
        let session: TaskAgentSession = serde_json::from_str(
            r#"{"SessionId":"abc","Agent":{"Id":1,"Name":"r","Extra":1},
                "EncryptionKey":{"Encrypted":true,"Value":"AAAA"},"UseFipsEncryption":true,
                "BrokerMigrationMessage":{"BrokerBaseUrl":"http://b/"},"newField":[1]}"#,
        )
        .unwrap();
        assert_eq!(session.session_id, "abc");
        assert_eq!(session.agent.id, 1);
        assert!(session.use_fips_encryption);
        assert_eq!(session.encryption_key.unwrap().value, "AAAA");
        assert_eq!(
            session.broker_migration_message.unwrap().broker_base_url,
            "http://b/"
        );
    }
}
