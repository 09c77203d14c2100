//! Lenient JSON reading shared by every wire type and credential file: a leading UTF-8 BOM is
//! stripped, object keys can be matched in any casing, and scalars may arrive as numbers or as
//! strings (`"AgentId": "42"`, `"Ephemeral": "True"`), as the official runner and JIT configs
//! write them.
//!
//! Use the `deserialize_with` helpers on fields ([`u64`], [`i64`], [`bool`], [`opt_u64`],
//! [`opt_bool`], [`string`], [`opt_string`]) and [`normalize_keys`] before deserializing a
//! document whose key casing is unknown.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value};

/// The UTF-8 byte order mark the official runner writes at the start of its files.
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Returns `bytes` without a leading UTF-8 BOM.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// Parses JSON after stripping a leading UTF-8 BOM.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(strip_bom(bytes))
}

/// Renames the keys of `object` that equal one of `canonical` ignoring ASCII case to that
/// canonical spelling. Other keys are left alone (unknown fields stay tolerated).
pub fn normalize_keys(object: &mut Map<String, Value>, canonical: &[&str]) {
    let renames: Vec<(String, &str)> = object
        .keys()
        .filter_map(|key| {
            canonical
                .iter()
                .find(|name| name.eq_ignore_ascii_case(key) && **name != key)
                .map(|name| (key.clone(), *name))
        })
        .collect();
    for (from, to) in renames {
        if let Some(value) = object.remove(&from) {
            // An exact-case key wins over a differently cased duplicate.
            object.entry(to.to_owned()).or_insert(value);
        }
    }
}

/// Looks a key up ignoring ASCII case (exact match first).
pub fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn into_i128<E: de::Error>(self) -> Result<i128, E> {
        match self {
            Scalar::Int(n) => Ok(n.into()),
            Scalar::UInt(n) => Ok(n.into()),
            Scalar::Float(f) if f.fract() == 0.0 => Ok(f as i128),
            Scalar::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| E::custom(format!("expected an integer, found {s:?}"))),
            Scalar::Bool(_) | Scalar::Float(_) => Err(E::custom("expected an integer")),
        }
    }

    fn into_bool<E: de::Error>(self) -> Result<bool, E> {
        match self {
            Scalar::Bool(b) => Ok(b),
            Scalar::Int(n) => Ok(n != 0),
            Scalar::UInt(n) => Ok(n != 0),
            Scalar::Str(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            Scalar::Str(s) if s.trim().eq_ignore_ascii_case("false") || s.trim().is_empty() => {
                Ok(false)
            }
            Scalar::Str(s) => s
                .trim()
                .parse::<i64>()
                .map(|n| n != 0)
                .map_err(|_| E::custom(format!("expected a boolean, found {s:?}"))),
            Scalar::Float(_) => Err(E::custom("expected a boolean")),
        }
    }

    fn into_string(self) -> String {
        match self {
            Scalar::Bool(b) => if b { "True" } else { "False" }.to_owned(),
            Scalar::Int(n) => n.to_string(),
            Scalar::UInt(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

/// An unsigned integer written as a number or a string.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = Scalar::deserialize(d)?.into_i128::<D::Error>()?;
    u64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is out of range")))
}

/// A signed integer written as a number or a string.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = Scalar::deserialize(d)?.into_i128::<D::Error>()?;
    i64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is out of range")))
}

/// A boolean written as `true`, `"True"`, `"false"`, `1` or `0`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Scalar::deserialize(d)?.into_bool()
}

/// An optional unsigned integer (`null` or absent = `None`).
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            let n = s.into_i128::<D::Error>()?;
            u64::try_from(n)
                .map(Some)
                .map_err(|_| de::Error::custom(format!("{n} is out of range")))
        }
    }
}

/// An optional boolean (`null` or absent = `None`).
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<Scalar>::deserialize(d)?
        .map(Scalar::into_bool)
        .transpose()
}

/// A string; numbers and booleans are accepted and rendered as text.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Scalar::deserialize(d)?.into_string())
}

/// An optional string; numbers and booleans are accepted and rendered as text.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::into_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Sample {
        #[serde(deserialize_with = "u64")]
        id: u64,
        #[serde(deserialize_with = "bool")]
        flag: bool,
        #[serde(default, deserialize_with = "opt_u64")]
        maybe: Option<u64>,
        #[serde(default, deserialize_with = "opt_string")]
        text: Option<String>,
    }

    #[test]
    fn scalars_accept_numbers_and_strings() {
        let a: Sample = from_slice(br#"{"id":"42","flag":"True","maybe":"7","text":12}"#).unwrap();
        assert_eq!(
            a,
            Sample {
                id: 42,
                flag: true,
                maybe: Some(7),
                text: Some("12".into())
            }
        );
        let b: Sample = from_slice(br#"{"id":42,"flag":false}"#).unwrap();
        assert_eq!(
            b,
            Sample {
                id: 42,
                flag: false,
                maybe: None,
                text: None
            }
        );
        assert!(from_slice::<Sample>(br#"{"id":"x","flag":true}"#).is_err());
        assert!(from_slice::<Sample>(br#"{"id":1,"flag":"maybe"}"#).is_err());
        assert!(from_slice::<Sample>(br#"{"id":-1,"flag":true}"#).is_err());
    }

    #[test]
    fn bom_is_stripped() {
        let mut bytes = UTF8_BOM.to_vec();
        bytes.extend_from_slice(br#"{"id":1,"flag":1}"#);
        let s: Sample = from_slice(&bytes).unwrap();
        assert_eq!(s.id, 1);
        assert!(s.flag);
    }

    #[test]
    fn keys_are_normalized_case_insensitively() {
        let mut map: Map<String, Value> =
            serde_json::from_str(r#"{"AgentId":1,"AGENTNAME":"x","other":true,"poolId":2}"#)
                .unwrap();
        normalize_keys(&mut map, &["agentId", "agentName", "poolId"]);
        assert_eq!(map.get("agentId"), Some(&Value::from(1)));
        assert_eq!(map.get("agentName"), Some(&Value::from("x")));
        assert_eq!(map.get("poolId"), Some(&Value::from(2)));
        assert_eq!(map.get("other"), Some(&Value::from(true)));
        assert!(get_ci(&map, "AGENTID").is_some());
    }
}
