//! Expression values and their conversions: truthiness, number and string coercion (the official
//! runner's rules), the `toJSON` text form, and conversion to and from `serde_json` values.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::number::{format_number, parse_number};

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

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
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

impl Value {
    /// The corpus's name of the kind: `Null`, `Boolean`, `Number`, `String`, `Array`, `Object`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Boolean(_) => "Boolean",
            Value::Number(_) => "Number",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// Null, booleans, numbers and strings.
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// Falsy: `null`, `false`, `0`, `-0`, `NaN`, `''`; everything else (also `[]`, `{}`) is truthy.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Boolean(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// Number coercion: null 0, booleans 1/0, strings parsed (NaN if not a number), else NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Boolean(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// String coercion (as in `format`, `join` and `${{ }}` in text): null is `''`, numbers use
    /// the .NET `G15` form (`1E+15`, `1E-05`, `0` for -0), arrays are `Array`, objects `Object`.
    pub fn to_display_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Boolean(b) => b.to_string(),
            Value::Number(n) => format_number(*n),
            Value::String(s) => s.clone(),
            Value::Array(_) => "Array".to_owned(),
            Value::Object(_) => "Object".to_owned(),
        }
    }

    /// The `toJSON` text: two-space indentation, `"key": value`, `[]`/`{}` when empty, numbers
    /// in the `G15` form (non-finite numbers as `NaN`/`Infinity` tokens, as the runner writes).
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        write_json(self, 0, &mut out);
        out
    }

    /// Converts to a `serde_json` value: integral numbers within the int64 range as integers,
    /// others as floats, and non-finite numbers (no JSON form) as `null`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Boolean(b) => Json::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(object) => Json::Object(
                object
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Largest magnitude below which every integral f64 converts exactly to i64 (2^63).
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < I64_LIMIT {
        // Integral and in range: the cast is exact; -0 becomes 0.
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        value.to_json()
    }
}

/// Writes `value` in the Newtonsoft indented form used by `toJSON`.
fn write_json(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(*n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(object) if object.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(indent + 1, out);
                write_json(item, indent + 1, out);
            }
            out.push('\n');
            push_indent(indent, out);
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (i, (key, item)) in object.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(indent + 1, out);
                write_json_string(key, out);
                out.push_str(": ");
                write_json(item, indent + 1, out);
            }
            out.push('\n');
            push_indent(indent, out);
            out.push('}');
        }
    }
}

fn push_indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// A JSON string as Newtonsoft escapes it: quote, backslash, control characters, and the
/// line separators U+0085, U+2028, U+2029; everything else raw.
fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    fn coercions_follow_the_runner() {
        assert!(!Value::Number(-0.0).is_truthy());
        assert!(!Value::Number(f64::NAN).is_truthy());
        assert!(Value::from("false").is_truthy());
        assert!(Value::Array(vec![]).is_truthy());
        assert_eq!(Value::from(" 0x10 ").to_number(), 16.0);
        assert_eq!(Value::Number(1e15).to_display_string(), "1E+15");
        assert_eq!(Value::Null.to_display_string(), "");
        assert_eq!(Value::Object(Object::new()).to_display_string(), "Object");
    }

    #[test]
    fn to_json_string_is_indented_and_escaped() {
        let value =
            Value::from(serde_json::json!({"a": [1, "x\"\n\u{1}\u{2028}é"], "b": {}, "c": []}));
        assert_eq!(
            value.to_json_string(),
            "{\n  \"a\": [\n    1,\n    \"x\\\"\\n\\u0001\\u2028é\"\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
        assert_eq!(Value::Number(-0.0).to_json_string(), "0");
    }

    #[test]
    fn to_json_writes_integers_when_integral() {
        let value = Value::Array(vec![
            Value::Number(3.0),
            Value::Number(0.5),
            Value::Number(f64::NAN),
        ]);
        assert_eq!(value.to_json().to_string(), "[3,0.5,null]");
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
