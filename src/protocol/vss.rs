//! Building blocks of the VSS ("Azure DevOps style") JSON the legacy Actions service speaks:
//! the `{"count","value"}` list wrapper, `PropertiesCollection` and the `WrappedException`
//! error envelope (`src/Sdk/WebApi/WebApi/WrappedException.cs`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lenient;

/// A VSS list response: `{"count": 2, "value": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VssList<T> {
    /// Number of items.
    #[serde(alias = "Count", default, deserialize_with = "lenient::u64")]
    pub count: u64,
    /// The items.
    #[serde(alias = "Value", default = "Vec::new")]
    pub value: Vec<T>,
}

impl<T> VssList<T> {
    /// Wraps items, setting `count`.
    pub fn new(value: Vec<T>) -> Self {
        VssList {
            count: value.len() as u64,
            value,
        }
    }
}

/// A VSS `PropertiesCollection`: `"Name": {"$type": "System.String", "$value": "..."}`.
/// Keys keep their casing on the wire and are looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub Map<String, Value>);

impl Properties {
    /// The raw value of a property (the `$value` of a typed entry, or a bare value).
    pub fn get(&self, name: &str) -> Option<&Value> {
        let entry = lenient::get_ci(&self.0, name)?;
        match entry {
            Value::Object(obj) => lenient::get_ci(obj, "$value").or(Some(entry)),
            other => Some(other),
        }
    }

    /// A property as a string (numbers and booleans rendered as text); `None` if absent or null.
    pub fn get_string(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
            other => Some(other.to_string()),
        }
    }

    /// A property as a boolean (`true`, `"True"`, `1`); `None` if absent or not a boolean.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            Value::Number(n) => n.as_i64().map(|n| n != 0),
            _ => None,
        }
    }

    /// Sets a typed string entry.
    pub fn set_string(&mut self, name: &str, value: &str) {
        self.0.insert(
            name.to_owned(),
            serde_json::json!({"$type": "System.String", "$value": value}),
        );
    }

    /// Sets a typed boolean entry.
    pub fn set_bool(&mut self, name: &str, value: bool) {
        self.0.insert(
            name.to_owned(),
            serde_json::json!({"$type": "System.Boolean", "$value": value}),
        );
    }

    /// Whether there are no properties.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The VSS error envelope returned with 4xx/5xx by the legacy service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrappedException {
    /// Human-readable message.
    #[serde(default, alias = "Message", deserialize_with = "lenient::opt_string")]
    pub message: Option<String>,
    /// Full .NET type name.
    #[serde(default, alias = "TypeName", deserialize_with = "lenient::opt_string")]
    pub type_name: Option<String>,
    /// Short type name to classify the error on, e.g. `TaskAgentSessionConflictException`.
    #[serde(default, alias = "TypeKey", deserialize_with = "lenient::opt_string")]
    pub type_key: Option<String>,
    /// Error code.
    #[serde(default, alias = "ErrorCode", deserialize_with = "lenient::opt_u64")]
    pub error_code: Option<u64>,
    /// Event id.
    #[serde(default, alias = "EventId", deserialize_with = "lenient::opt_u64")]
    pub event_id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_read_case_insensitively_and_typed() {
        let props: Properties = serde_json::from_str(
            r#"{"ServerUrlV2":{"$type":"System.String","$value":"https://b/"},
                "UseV2Flow":{"$type":"System.Boolean","$value":true},
                "RequireFipsCryptography":{"$type":"System.Boolean","$value":"False"}}"#,
        )
        .unwrap();
        assert_eq!(
            props.get_string("serverurlv2").as_deref(),
            Some("https://b/")
        );
        assert_eq!(props.get_bool("useV2Flow"), Some(true));
        assert_eq!(props.get_bool("RequireFipsCryptography"), Some(false));
        assert_eq!(props.get_bool("Missing"), None);
    }

    #[test]
    fn wrapped_exception_reads_type_key() {
        let e: WrappedException = serde_json::from_str(
            r#"{"$id":"1","innerException":null,"message":"conflict","typeName":"X, Y",
                "typeKey":"TaskAgentSessionConflictException","errorCode":0,"eventId":3000}"#,
        )
        .unwrap();
        assert_eq!(
            e.type_key.as_deref(),
            Some("TaskAgentSessionConflictException")
        );
        assert_eq!(e.event_id, Some(3000));
    }
}
