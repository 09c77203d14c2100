//! Expression values and their conversions to and from JSON.

use serde_json::Value as Json;

/// A value of the expression language.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` / `false`.
    Boolean(bool),
    /// A number (IEEE double).
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object with case-insensitive keys.
    Object(Object),
}

/// An ordered object whose keys are looked up case-insensitively (ASCII/Unicode lower-case
/// folding). Setting a key that exists in another casing keeps the original casing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    entries: Vec<(String, Value)>,
    case_sensitive: bool,
}

impl Object {
    /// An empty case-insensitive object.
    pub fn new() -> Self {
        Object::default()
    }

    /// An empty case-sensitive object (the `env` context on Linux).
    pub fn new_case_sensitive() -> Self {
        Object {
            entries: Vec::new(),
            case_sensitive: true,
        }
    }

    /// Whether keys are compared case-sensitively.
    pub fn is_case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    fn position(&self, key: &str) -> Option<usize> {
        if self.case_sensitive {
            self.entries.iter().position(|(k, _)| k == key)
        } else {
            self.entries
                .iter()
                .position(|(k, _)| keys_equal_ignore_case(k, key))
        }
    }

    /// Looks a key up.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// Looks a key up for modification.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(move |i| &mut self.entries[i].1)
    }

    /// Sets a key, keeping the existing key's casing and position if present.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.position(&key) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes a key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.position(key).map(|i| self.entries.remove(i).1)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Case-insensitive key comparison used by objects (per character, upper-cased).
pub fn keys_equal_ignore_case(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_uppercase)
            .eq(b.chars().flat_map(char::to_uppercase))
}

impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut object = Object::new();
        for (k, v) in iter {
            object.insert(k, v);
        }
        object
    }
}

impl From<Json> for Value {
    fn from(json: Json) -> Self {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(b),
            Json::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_lookup_ignores_case_and_keeps_first_casing() {
        let mut object = Object::new();
        object.insert("Foo", Value::from("a"));
        object.insert("FOO", Value::from("b"));
        assert_eq!(object.len(), 1);
        assert_eq!(object.get("foo"), Some(&Value::from("b")));
        assert_eq!(object.iter().next().map(|(k, _)| k), Some("Foo"));
    }

    #[test]
    fn case_sensitive_object_keeps_both_casings() {
        let mut object = Object::new_case_sensitive();
        object.insert("Foo", Value::from("a"));
        object.insert("FOO", Value::from("b"));
        assert_eq!(object.len(), 2);
        assert_eq!(object.get("foo"), None);
    }

    #[test]
    fn json_converts_to_values() {
        let value = Value::from(serde_json::json!({"a": [1, true, null, "x"]}));
        let Value::Object(object) = value else {
            panic!("not an object")
        };
        assert_eq!(
            object.get("A"),
            Some(&Value::Array(vec![
                Value::Number(1.0),
                Value::Boolean(true),
                Value::Null,
                Value::from("x")
            ]))
        );
    }
}
