//! `PipelineContextData`: the expression contexts (`github`, `matrix`, `needs`, …) the service
//! sends in a job message's `contextData`.
//!
//! Wire shape (protocol-jobs §4): JSON strings, booleans and numbers are short forms; `null` is a
//! null value; otherwise an object with `t` = 0 String (`s`), 1 Array (`a`), 2 Dictionary
//! (`d`: `[{k, v}]`), 3 Boolean (`b`), 4 Number (`n`), 5 CaseSensitiveDictionary (`d`). An object
//! without `t` is a String; a non-integer `t` is null; an unknown integer `t` is an error.
//! Dictionaries keep their order; two keys of a (case-insensitive) dictionary that differ only
//! by case are rejected, as the runner would fail on them.
//!
//! [`PipelineContextData::to_value`] converts to the expression engine's [`Value`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use super::wire::{MAX_WIRE_DEPTH, WireError, get_ci, get_int, number_json};
use crate::expr::{Object, Value};

/// One context-data value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PipelineContextData {
    /// JSON `null`.
    #[default]
    Null,
    /// `t` 0.
    String(String),
    /// `t` 1.
    Array(Vec<PipelineContextData>),
    /// `t` 2: keys compared case-insensitively.
    Dictionary(Vec<(String, PipelineContextData)>),
    /// `t` 3.
    Boolean(bool),
    /// `t` 4.
    Number(f64),
    /// `t` 5: keys compared case-sensitively.
    CaseSensitiveDictionary(Vec<(String, PipelineContextData)>),
}

impl PipelineContextData {
    /// Decodes from JSON.
    pub fn from_json(json: &Json) -> Result<Self, WireError> {
        decode(json, 0)
    }

    /// Encodes to JSON (scalars in short form; empty arrays/dictionaries without payload).
    pub fn to_json(&self) -> Json {
        let tagged = |t: i64, payload: Option<(&str, Json)>| {
            let mut object = Map::new();
            object.insert("t".into(), Json::from(t));
            if let Some((name, value)) = payload {
                object.insert(name.into(), value);
            }
            Json::Object(object)
        };
        match self {
            PipelineContextData::Null => Json::Null,
            PipelineContextData::String(s) => Json::String(s.clone()),
            PipelineContextData::Boolean(b) => Json::Bool(*b),
            PipelineContextData::Number(n) => number_json(*n),
            PipelineContextData::Array(items) => tagged(
                1,
                (!items.is_empty())
                    .then(|| ("a", Json::Array(items.iter().map(Self::to_json).collect()))),
            ),
            PipelineContextData::Dictionary(entries) => tagged(
                2,
                (!entries.is_empty()).then(|| ("d", encode_entries(entries))),
            ),
            PipelineContextData::CaseSensitiveDictionary(entries) => tagged(
                5,
                (!entries.is_empty()).then(|| ("d", encode_entries(entries))),
            ),
        }
    }

    /// Converts plain JSON (an event payload, `fromJSON` output) into context data: objects
    /// become case-insensitive dictionaries.
    pub fn from_plain_json(json: &Json) -> Self {
        match json {
            Json::Null => PipelineContextData::Null,
            Json::Bool(b) => PipelineContextData::Boolean(*b),
            Json::Number(n) => PipelineContextData::Number(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => PipelineContextData::String(s.clone()),
            Json::Array(items) => {
                PipelineContextData::Array(items.iter().map(Self::from_plain_json).collect())
            }
            Json::Object(map) => PipelineContextData::Dictionary(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::from_plain_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to plain JSON (as written to `event.json`): dictionaries become objects.
    pub fn to_plain_json(&self) -> Json {
        match self {
            PipelineContextData::Null => Json::Null,
            PipelineContextData::String(s) => Json::String(s.clone()),
            PipelineContextData::Boolean(b) => Json::Bool(*b),
            PipelineContextData::Number(n) => number_json(*n),
            PipelineContextData::Array(items) => {
                Json::Array(items.iter().map(Self::to_plain_json).collect())
            }
            PipelineContextData::Dictionary(entries)
            | PipelineContextData::CaseSensitiveDictionary(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_plain_json()))
                    .collect(),
            ),
        }
    }

    /// Converts to an expression value: Dictionary → case-insensitive [`Object`],
    /// CaseSensitiveDictionary → case-sensitive [`Object`].
    pub fn to_value(&self) -> Value {
        match self {
            PipelineContextData::Null => Value::Null,
            PipelineContextData::String(s) => Value::String(s.clone()),
            PipelineContextData::Boolean(b) => Value::Boolean(*b),
            PipelineContextData::Number(n) => Value::Number(*n),
            PipelineContextData::Array(items) => {
                Value::Array(items.iter().map(Self::to_value).collect())
            }
            PipelineContextData::Dictionary(entries) => {
                let mut object = Object::new();
                for (k, v) in entries {
                    object.insert(k.clone(), v.to_value());
                }
                Value::Object(object)
            }
            PipelineContextData::CaseSensitiveDictionary(entries) => {
                let mut object = Object::new_case_sensitive();
                for (k, v) in entries {
                    object.insert(k.clone(), v.to_value());
                }
                Value::Object(object)
            }
        }
    }

    /// The entries if this is a dictionary of either kind.
    pub fn as_dictionary(&self) -> Option<&[(String, PipelineContextData)]> {
        match self {
            PipelineContextData::Dictionary(entries)
            | PipelineContextData::CaseSensitiveDictionary(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks a key up (case-insensitively unless this is a case-sensitive dictionary).
    pub fn get(&self, key: &str) -> Option<&PipelineContextData> {
        match self {
            PipelineContextData::Dictionary(entries) => entries
                .iter()
                .find(|(k, _)| crate::expr::value::keys_equal_ignore_case(k, key))
                .map(|(_, v)| v),
            PipelineContextData::CaseSensitiveDictionary(entries) => {
                entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// The string, if this is a String.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PipelineContextData::String(s) => Some(s),
            _ => None,
        }
    }
}

fn encode_entries(entries: &[(String, PipelineContextData)]) -> Json {
    Json::Array(
        entries
            .iter()
            .map(|(k, v)| {
                let mut pair = Map::new();
                pair.insert("k".into(), Json::String(k.clone()));
                pair.insert("v".into(), v.to_json());
                Json::Object(pair)
            })
            .collect(),
    )
}

fn decode(json: &Json, depth: usize) -> Result<PipelineContextData, WireError> {
    if depth > MAX_WIRE_DEPTH {
        return Err(WireError::TooDeep);
    }
    let object = match json {
        Json::Null => return Ok(PipelineContextData::Null),
        Json::Bool(b) => return Ok(PipelineContextData::Boolean(*b)),
        Json::Number(n) => {
            return Ok(PipelineContextData::Number(n.as_f64().unwrap_or(f64::NAN)));
        }
        Json::String(s) => return Ok(PipelineContextData::String(s.clone())),
        Json::Array(_) => {
            return Err(WireError::Shape {
                what: "context data",
                expected: "a scalar or an object",
            });
        }
        Json::Object(o) => o,
    };
    let t = match get_ci(object, "t") {
        None | Some(Json::Null) => 0,
        Some(_) => match get_int(object, "t") {
            Some(t) => t,
            None => return Ok(PipelineContextData::Null),
        },
    };
    Ok(match t {
        0 => PipelineContextData::String(match get_ci(object, "s") {
            Some(Json::String(s)) => s.clone(),
            _ => String::new(),
        }),
        1 => PipelineContextData::Array(match get_ci(object, "a") {
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| decode(item, depth + 1))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        }),
        2 => PipelineContextData::Dictionary(decode_entries(object, depth, false)?),
        3 => PipelineContextData::Boolean(matches!(get_ci(object, "b"), Some(Json::Bool(true)))),
        4 => PipelineContextData::Number(match get_ci(object, "n") {
            Some(Json::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            _ => 0.0,
        }),
        5 => PipelineContextData::CaseSensitiveDictionary(decode_entries(object, depth, true)?),
        code => return Err(WireError::UnknownContextType { code }),
    })
}

fn decode_entries(
    object: &Map<String, Json>,
    depth: usize,
    case_sensitive: bool,
) -> Result<Vec<(String, PipelineContextData)>, WireError> {
    let Some(Json::Array(pairs)) = get_ci(object, "d") else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<(String, PipelineContextData)> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let Json::Object(pair) = pair else {
            return Err(WireError::Shape {
                what: "dictionary entry",
                expected: "an object with k and v",
            });
        };
        let key = match get_ci(pair, "k") {
            Some(Json::String(k)) => k.clone(),
            _ => {
                return Err(WireError::Shape {
                    what: "dictionary key",
                    expected: "a string",
                });
            }
        };
        let value = decode(get_ci(pair, "v").unwrap_or(&Json::Null), depth + 1)?;
        let duplicate = entries.iter().any(|(k, _)| {
            if case_sensitive {
                *k == key
            } else {
                crate::expr::value::keys_equal_ignore_case(k, &key)
            }
        });
        if duplicate {
            return Err(WireError::DuplicateKey { key });
        }
        entries.push((key, value));
    }
    Ok(entries)
}

impl Serialize for PipelineContextData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PipelineContextData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        PipelineContextData::from_json(&json).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(json: Json) -> PipelineContextData {
        let data = PipelineContextData::from_json(&json).expect("decodes");
        let again = PipelineContextData::from_json(&data.to_json()).expect("re-decodes");
        assert_eq!(data, again, "round trip of {json}");
        data
    }

    #[test]
    fn every_t_code_and_short_form_decodes() {
        use PipelineContextData as D;
        let cases = [
            (json!({"t": 0, "s": "x"}), D::String("x".into())),
            (
                json!({"t": 1, "a": ["x", null]}),
                D::Array(vec![D::String("x".into()), D::Null]),
            ),
            (
                json!({"t": 2, "d": [{"k": "a", "v": 1}]}),
                D::Dictionary(vec![("a".into(), D::Number(1.0))]),
            ),
            (json!({"t": 3, "b": true}), D::Boolean(true)),
            (json!({"t": 4, "n": 1.5}), D::Number(1.5)),
            (
                json!({"t": 5, "d": [{"k": "A", "v": "1"}, {"k": "a", "v": "2"}]}),
                D::CaseSensitiveDictionary(vec![
                    ("A".into(), D::String("1".into())),
                    ("a".into(), D::String("2".into())),
                ]),
            ),
            (json!("s"), D::String("s".into())),
            (json!(false), D::Boolean(false)),
            (json!(3), D::Number(3.0)),
            (json!(null), D::Null),
            (json!({"s": "no t"}), D::String("no t".into())),
            (json!({"t": 2}), D::Dictionary(vec![])),
            (json!({"t": "x"}), D::Null),
        ];
        for (json, expected) in cases {
            assert_eq!(roundtrip(json.clone()), expected, "{json}");
        }
    }

    #[test]
    fn writer_uses_short_forms_and_omits_empty_payloads() {
        let data = roundtrip(json!({"t": 2, "d": [
            {"k": "s", "v": {"t": 0, "s": "x"}}, {"k": "n", "v": {"t": 4, "n": 2}},
            {"k": "b", "v": {"t": 3, "b": true}}, {"k": "e", "v": {"t": 1}}]}));
        assert_eq!(
            data.to_json(),
            json!({"t": 2, "d": [{"k": "s", "v": "x"}, {"k": "n", "v": 2},
                                 {"k": "b", "v": true}, {"k": "e", "v": {"t": 1}}]})
        );
    }

    #[test]
    fn unknown_t_and_case_duplicates_are_rejected() {
        assert_eq!(
            PipelineContextData::from_json(&json!({"t": 6})),
            Err(WireError::UnknownContextType { code: 6 })
        );
        assert_eq!(
            PipelineContextData::from_json(
                &json!({"t": 2, "d": [{"k": "A", "v": 1}, {"k": "a", "v": 2}]})
            ),
            Err(WireError::DuplicateKey { key: "a".into() })
        );
        assert!(PipelineContextData::from_json(&json!({"t": 2, "d": [{"k": 1, "v": 2}]})).is_err());
    }

    #[test]
    fn converts_to_values_with_the_right_key_comparison() {
        let data = roundtrip(json!({"T": 2, "D": [
            {"K": "Repo", "V": "octo/x"},
            {"k": "env", "v": {"t": 5, "d": [{"k": "Path", "v": "/bin"}]}}]}));
        let Value::Object(object) = data.to_value() else {
            panic!("not an object")
        };
        assert_eq!(object.get("repo"), Some(&Value::from("octo/x")));
        let Some(Value::Object(env)) = object.get("ENV") else {
            panic!("no env")
        };
        assert!(env.is_case_sensitive());
        assert_eq!(env.get("Path"), Some(&Value::from("/bin")));
        assert_eq!(env.get("PATH"), None);
    }

    #[test]
    fn plain_json_round_trips_through_dictionaries() {
        let plain = json!({"ref": "refs/heads/main", "n": 3, "list": [1.5, null, true]});
        let data = PipelineContextData::from_plain_json(&plain);
        assert_eq!(
            data.get("REF").and_then(PipelineContextData::as_str),
            Some("refs/heads/main")
        );
        assert_eq!(data.to_plain_json(), plain);
    }
}
