//! Shared decoding helpers for the hand-written wire types ([`TemplateToken`] and
//! [`PipelineContextData`]): case-insensitive property lookup, integer/enum codes, and the
//! [`WireError`] they report.
//!
//! Newtonsoft, which the official runner and service use, matches property names
//! case-insensitively; these helpers do the same for the types whose JSON shape is too irregular
//! for serde derive.
//!
//! [`TemplateToken`]: super::template_token::TemplateToken
//! [`PipelineContextData`]: super::context_data::PipelineContextData

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

/// Deepest nesting a token or context-data document may have (the service's template depth limit
/// is 50; event payloads nest deeper, so this is generous but still bounds recursion).
pub const MAX_WIRE_DEPTH: usize = 256;

/// Why a hand-decoded wire value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A template token's `type` code is outside 0–7.
    #[error("unknown template token type {code}")]
    UnknownTokenType {
        /// The code found.
        code: i64,
    },
    /// A context-data `t` code is outside 0–5.
    #[error("unknown context data type {code}")]
    UnknownContextType {
        /// The code found.
        code: i64,
    },
    /// A value has the wrong JSON shape.
    #[error("{what} must be {expected}")]
    Shape {
        /// What was being read, e.g. `mapping pair`.
        what: &'static str,
        /// What it must be, e.g. `an object`.
        expected: &'static str,
    },
    /// Two keys of one case-insensitive dictionary differ only by case.
    #[error("dictionary key {key:?} appears twice (keys differ only by case)")]
    DuplicateKey {
        /// The second key.
        key: String,
    },
    /// The document nests deeper than [`MAX_WIRE_DEPTH`].
    #[error("value nests deeper than {MAX_WIRE_DEPTH} levels")]
    TooDeep,
}

/// Looks a property up case-insensitively (exact match first).
pub(crate) fn get_ci<'a>(object: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Reads an integer property (floats are truncated, as Newtonsoft does for int fields).
pub(crate) fn get_int(object: &Map<String, Json>, name: &str) -> Option<i64> {
    match get_ci(object, name)? {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON number for `n`: integral values in the exact-integer range are written as integers
/// (as Newtonsoft does), others as doubles; NaN and infinities (which JSON cannot hold) as null.
pub(crate) fn number_json(n: f64) -> Json {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT && !(n == 0.0 && n.is_sign_negative()) {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

/// Deserializes a field that may be `null` or absent as the type's default (Newtonsoft leaves
/// such collections empty; serde would reject the `null`).
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Deserializes an optional text property the runner only echoes back: a string, or a number
/// as its text; anything else (null, objects, lists) reads as absent rather than failing the
/// whole document.
pub(crate) fn opt_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Json::deserialize(deserializer)? {
        Json::String(s) => Some(s),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Deserializes a string-to-string dictionary whose values may be null or non-string scalars
/// (null becomes `""`, numbers and booleans their JSON text), keeping key order.
pub(crate) fn lenient_string_map<'de, D>(deserializer: D) -> Result<Vec<(String, String)>, D::Error>
where
    D: Deserializer<'de>,
{
    let map = Option::<Map<String, Json>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Json::Null => String::new(),
                Json::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Serializes the output of [`lenient_string_map`] back into a JSON object.
pub(crate) fn serialize_string_map<S>(
    entries: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Looks a key up in an ordered string list case-insensitively (exact match first).
pub(crate) fn lookup_ci<'a>(entries: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|(k, _)| k == name)
        .or_else(|| entries.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_ci_prefers_exact_and_falls_back_to_any_casing() {
        let Json::Object(o) = json!({"Type": 1, "type": 2, "LIT": "x"}) else {
            panic!()
        };
        assert_eq!(get_ci(&o, "type"), Some(&json!(2)));
        assert_eq!(get_ci(&o, "lit"), Some(&json!("x")));
        assert_eq!(get_ci(&o, "seq"), None);
    }

    #[test]
    fn numbers_are_written_as_integers_when_integral() {
        assert_eq!(number_json(3.0), json!(3));
        assert_eq!(number_json(-2.5), json!(-2.5));
        assert_eq!(number_json(f64::NAN), Json::Null);
        assert_eq!(number_json(-0.0), json!(-0.0));
    }

    #[test]
    fn lookup_ci_finds_any_casing() {
        let entries = vec![("AccessToken".to_owned(), "t".to_owned())];
        assert_eq!(lookup_ci(&entries, "accesstoken"), Some("t"));
        assert_eq!(lookup_ci(&entries, "other"), None);
    }
}
