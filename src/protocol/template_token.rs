//! `TemplateToken`: the service's pre-parsed workflow fragments (step env, inputs, conditions'
//! neighbours, job outputs, defaults) as they travel in a job message.
//!
//! Wire shape (protocol-jobs §3): a JSON string/bool/number/null is the short form of a
//! String/Boolean/Number/Null token; otherwise an object with a `type` code
//! (0 String `lit`, 1 Sequence `seq`, 2 Mapping `map` of `{Key, Value}`, 3 BasicExpression `expr`,
//! 4 InsertExpression `directive`, 5 Boolean `bool`, 6 Number `num`, 7 Null) and optional
//! `file`/`line`/`col`. Property names match in any casing. Mappings are ordered and may hold
//! duplicate keys. Writing uses the short form whenever no position is attached, so a decoded
//! token re-encodes to an equivalent document.
//!
//! This module only decodes and encodes; evaluation lives in `crate::job::template`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use super::wire::{MAX_WIRE_DEPTH, WireError, get_ci, get_int, number_json};

/// A template token with its optional source position.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateToken {
    /// 1-based index into the message's `fileTable`.
    pub file: Option<i32>,
    /// 1-based line in that file.
    pub line: Option<i32>,
    /// 1-based column.
    pub col: Option<i32>,
    /// The token itself.
    pub kind: TokenKind,
}

/// The kinds of template token, by wire code.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// 0: a literal string.
    String(String),
    /// 1: a sequence.
    Sequence(Vec<TemplateToken>),
    /// 2: an ordered mapping (duplicate keys possible).
    Mapping(Vec<(TemplateToken, TemplateToken)>),
    /// 3: an expression (the text inside `${{ }}`).
    BasicExpression(String),
    /// 4: an insert directive (`${{ insert }}`), valid only as a mapping key.
    InsertExpression(String),
    /// 5: a boolean.
    Boolean(bool),
    /// 6: a number.
    Number(f64),
    /// 7: null.
    Null,
}

impl TokenKind {
    /// The wire type code.
    pub fn code(&self) -> i64 {
        match self {
            TokenKind::String(_) => 0,
            TokenKind::Sequence(_) => 1,
            TokenKind::Mapping(_) => 2,
            TokenKind::BasicExpression(_) => 3,
            TokenKind::InsertExpression(_) => 4,
            TokenKind::Boolean(_) => 5,
            TokenKind::Number(_) => 6,
            TokenKind::Null => 7,
        }
    }

    /// A short name for messages (`string`, `mapping`, …).
    pub fn name(&self) -> &'static str {
        match self {
            TokenKind::String(_) => "string",
            TokenKind::Sequence(_) => "sequence",
            TokenKind::Mapping(_) => "mapping",
            TokenKind::BasicExpression(_) => "expression",
            TokenKind::InsertExpression(_) => "insert expression",
            TokenKind::Boolean(_) => "boolean",
            TokenKind::Number(_) => "number",
            TokenKind::Null => "null",
        }
    }
}

impl From<TokenKind> for TemplateToken {
    fn from(kind: TokenKind) -> Self {
        TemplateToken {
            file: None,
            line: None,
            col: None,
            kind,
        }
    }
}

impl TemplateToken {
    /// A literal string token without position.
    pub fn string(s: impl Into<String>) -> Self {
        TokenKind::String(s.into()).into()
    }

    /// An expression token without position.
    pub fn expression(expr: impl Into<String>) -> Self {
        TokenKind::BasicExpression(expr.into()).into()
    }

    /// A mapping token without position.
    pub fn mapping(pairs: Vec<(TemplateToken, TemplateToken)>) -> Self {
        TokenKind::Mapping(pairs).into()
    }

    /// Attaches a source position.
    pub fn at(mut self, file: Option<i32>, line: i32, col: i32) -> Self {
        self.file = file;
        self.line = Some(line);
        self.col = Some(col);
        self
    }

    /// The literal string, if this is a String token.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::String(s) => Some(s),
            _ => None,
        }
    }

    /// The pairs, if this is a Mapping token.
    pub fn as_mapping(&self) -> Option<&[(TemplateToken, TemplateToken)]> {
        match &self.kind {
            TokenKind::Mapping(pairs) => Some(pairs),
            _ => None,
        }
    }

    /// The value of the first pair whose literal string key equals `key` case-insensitively
    /// (how the runner reads `inputs.script` and `defaults.run`).
    pub fn mapping_get(&self, key: &str) -> Option<&TemplateToken> {
        self.as_mapping()?
            .iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    }

    /// True if this token or any token inside it is an expression.
    pub fn has_expression(&self) -> bool {
        match &self.kind {
            TokenKind::BasicExpression(_) | TokenKind::InsertExpression(_) => true,
            TokenKind::Sequence(items) => items.iter().any(Self::has_expression),
            TokenKind::Mapping(pairs) => pairs
                .iter()
                .any(|(k, v)| k.has_expression() || v.has_expression()),
            _ => false,
        }
    }

    /// Decodes a token from its JSON form.
    pub fn from_json(json: &Json) -> Result<Self, WireError> {
        decode(json, 0)
    }

    /// Encodes the token (short forms when no position is attached).
    pub fn to_json(&self) -> Json {
        let has_position = self.file.is_some() || self.line.is_some() || self.col.is_some();
        if !has_position {
            match &self.kind {
                TokenKind::String(s) => return Json::String(s.clone()),
                TokenKind::Boolean(b) => return Json::Bool(*b),
                TokenKind::Number(n) => return number_json(*n),
                TokenKind::Null => return Json::Null,
                _ => {}
            }
        }
        let mut object = Map::new();
        object.insert("type".into(), Json::from(self.kind.code()));
        for (name, value) in [("file", self.file), ("line", self.line), ("col", self.col)] {
            if let Some(v) = value {
                object.insert(name.into(), Json::from(v));
            }
        }
        let payload = match &self.kind {
            TokenKind::String(s) => Some(("lit", Json::String(s.clone()))),
            TokenKind::Sequence(items) => Some((
                "seq",
                Json::Array(items.iter().map(Self::to_json).collect()),
            )),
            TokenKind::Mapping(pairs) => Some(("map", encode_pairs(pairs))),
            TokenKind::BasicExpression(e) => Some(("expr", Json::String(e.clone()))),
            TokenKind::InsertExpression(d) => Some(("directive", Json::String(d.clone()))),
            TokenKind::Boolean(b) => Some(("bool", Json::Bool(*b))),
            TokenKind::Number(n) => Some(("num", number_json(*n))),
            TokenKind::Null => None,
        };
        if let Some((name, value)) = payload {
            object.insert(name.into(), value);
        }
        Json::Object(object)
    }

    /// The text a user would recognise for this token, as the runner shows an unevaluated step
    /// name: literals as-is, `format('…{0}…', x)` back into `…${{ x }}…`, other expressions as
    /// `${{ expr }}`.
    pub fn to_display_string(&self) -> String {
        match &self.kind {
            TokenKind::String(s) => s.clone(),
            TokenKind::Boolean(b) => b.to_string(),
            TokenKind::Number(n) => number_json(*n).to_string(),
            TokenKind::Null => String::new(),
            TokenKind::BasicExpression(e) => {
                unformat_expression(e).unwrap_or_else(|| format!("${{{{ {e} }}}}"))
            }
            TokenKind::InsertExpression(d) => format!("${{{{ {d} }}}}"),
            TokenKind::Sequence(_) | TokenKind::Mapping(_) => self.to_json().to_string(),
        }
    }
}

fn encode_pairs(pairs: &[(TemplateToken, TemplateToken)]) -> Json {
    Json::Array(
        pairs
            .iter()
            .map(|(k, v)| {
                let mut pair = Map::new();
                pair.insert("Key".into(), k.to_json());
                pair.insert("Value".into(), v.to_json());
                Json::Object(pair)
            })
            .collect(),
    )
}

fn decode(json: &Json, depth: usize) -> Result<TemplateToken, WireError> {
    if depth > MAX_WIRE_DEPTH {
        return Err(WireError::TooDeep);
    }
    let object = match json {
        Json::String(s) => return Ok(TemplateToken::string(s.clone())),
        Json::Bool(b) => return Ok(TokenKind::Boolean(*b).into()),
        Json::Number(n) => return Ok(TokenKind::Number(n.as_f64().unwrap_or(f64::NAN)).into()),
        Json::Null => return Ok(TokenKind::Null.into()),
        Json::Array(_) => {
            return Err(WireError::Shape {
                what: "template token",
                expected: "a scalar or an object",
            });
        }
        Json::Object(o) => o,
    };
    let code = match get_ci(object, "type") {
        None | Some(Json::Null) => 0,
        Some(_) => match get_int(object, "type") {
            Some(code) => code,
            // A non-integer type: the official converter yields no token at all.
            None => return Ok(TokenKind::Null.into()),
        },
    };
    let text = |name: &str| match get_ci(object, name) {
        Some(Json::String(s)) => s.clone(),
        _ => String::new(),
    };
    let kind = match code {
        0 => TokenKind::String(text("lit")),
        1 => TokenKind::Sequence(match get_ci(object, "seq") {
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| decode(item, depth + 1))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        }),
        2 => TokenKind::Mapping(match get_ci(object, "map") {
            Some(Json::Array(pairs)) => pairs
                .iter()
                .map(|pair| decode_pair(pair, depth + 1))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        }),
        3 => TokenKind::BasicExpression(text("expr")),
        4 => TokenKind::InsertExpression(text("directive")),
        5 => TokenKind::Boolean(matches!(get_ci(object, "bool"), Some(Json::Bool(true)))),
        6 => TokenKind::Number(match get_ci(object, "num") {
            Some(Json::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            _ => 0.0,
        }),
        7 => TokenKind::Null,
        code => return Err(WireError::UnknownTokenType { code }),
    };
    let position = |name: &str| get_int(object, name).map(|v| v as i32);
    Ok(TemplateToken {
        file: position("file"),
        line: position("line"),
        col: position("col"),
        kind,
    })
}

fn decode_pair(pair: &Json, depth: usize) -> Result<(TemplateToken, TemplateToken), WireError> {
    let Json::Object(pair) = pair else {
        return Err(WireError::Shape {
            what: "mapping pair",
            expected: "an object with Key and Value",
        });
    };
    let key = decode(get_ci(pair, "Key").unwrap_or(&Json::Null), depth)?;
    let value = decode(get_ci(pair, "Value").unwrap_or(&Json::Null), depth)?;
    Ok((key, value))
}

/// Turns `format('lit {0} lit', a, b)` back into `lit ${{ a }} lit`; `None` if the expression
/// is not such a call.
fn unformat_expression(expr: &str) -> Option<String> {
    use crate::expr::composite::Segment;
    let rest = expr.trim().strip_prefix("format(")?.strip_suffix(')')?;
    let args = split_top_level_args(rest)?;
    let (template, args) = args.split_first()?;
    let template = template.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    let template = template.replace("''", "'");
    let mut out = String::new();
    for segment in crate::expr::composite::parse(&template, args.len()).ok()? {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Arg { index, .. } => {
                out.push_str(&format!("${{{{ {} }}}}", args[index].trim()))
            }
        }
    }
    Some(out)
}

/// Splits a function's argument text at top-level commas (outside quotes and brackets).
fn split_top_level_args(text: &str) -> Option<Vec<&str>> {
    let mut args = Vec::new();
    let (mut depth, mut in_string, mut start) = (0i32, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                args.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if in_string || depth != 0 {
        return None;
    }
    args.push(&text[start..]);
    Some(args)
}

impl Serialize for TemplateToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TemplateToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        TemplateToken::from_json(&json).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(json: Json) -> TemplateToken {
        let token = TemplateToken::from_json(&json).expect("decodes");
        let again = TemplateToken::from_json(&token.to_json()).expect("re-decodes");
        assert_eq!(token, again, "round trip of {json}");
        token
    }

    #[test]
    fn short_forms_decode_to_scalars_and_encode_back_short() {
        for (json, kind) in [
            (json!("x"), TokenKind::String("x".into())),
            (json!(true), TokenKind::Boolean(true)),
            (json!(2.5), TokenKind::Number(2.5)),
            (json!(null), TokenKind::Null),
        ] {
            let token = roundtrip(json.clone());
            assert_eq!(token.kind, kind);
            assert_eq!(token.to_json(), json);
        }
    }

    #[test]
    fn every_type_code_decodes_with_position() {
        let cases = [
            (
                json!({"type": 0, "lit": "a"}),
                TokenKind::String("a".into()),
            ),
            (
                json!({"type": 1, "seq": ["a"]}),
                TokenKind::Sequence(vec![TemplateToken::string("a")]),
            ),
            (
                json!({"type": 2, "map": [{"Key": "k", "Value": 1}]}),
                TokenKind::Mapping(vec![(
                    TemplateToken::string("k"),
                    TokenKind::Number(1.0).into(),
                )]),
            ),
            (
                json!({"type": 3, "expr": "github.sha"}),
                TokenKind::BasicExpression("github.sha".into()),
            ),
            (
                json!({"type": 4, "directive": "insert"}),
                TokenKind::InsertExpression("insert".into()),
            ),
            (json!({"type": 5, "bool": true}), TokenKind::Boolean(true)),
            (json!({"type": 6, "num": 7}), TokenKind::Number(7.0)),
            (json!({"type": 7}), TokenKind::Null),
        ];
        for (mut json, kind) in cases {
            let code = kind.code();
            json["file"] = json!(1);
            json["line"] = json!(9);
            json["col"] = json!(14);
            let token = roundtrip(json.clone());
            assert_eq!(token.kind, kind, "code {code}");
            assert_eq!(
                (token.file, token.line, token.col),
                (Some(1), Some(9), Some(14))
            );
            assert_eq!(
                token.to_json(),
                json,
                "positioned token {code} re-encodes identically"
            );
        }
    }

    #[test]
    fn property_names_match_in_any_casing_and_missing_payload_is_default() {
        let token =
            roundtrip(json!({"Type": 2, "Map": [{"key": "A", "VALUE": {"TYPE": 3, "EXPR": "x"}}]}));
        assert_eq!(
            token.mapping_get("a"),
            Some(&TemplateToken::expression("x"))
        );
        assert_eq!(roundtrip(json!({"type": 6})).kind, TokenKind::Number(0.0));
        assert_eq!(
            roundtrip(json!({"lit": "no type"})).kind,
            TokenKind::String("no type".into())
        );
    }

    #[test]
    fn mappings_keep_order_and_duplicate_keys() {
        let token = roundtrip(json!({"type": 2, "map": [
            {"Key": "b", "Value": "1"}, {"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}]}));
        let pairs = token.as_mapping().expect("mapping");
        let keys: Vec<_> = pairs
            .iter()
            .map(|(k, _)| k.as_str().unwrap_or(""))
            .collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(
            token.mapping_get("B").and_then(TemplateToken::as_str),
            Some("1")
        );
    }

    #[test]
    fn unknown_type_code_is_an_error_and_non_integer_type_is_null() {
        assert_eq!(
            TemplateToken::from_json(&json!({"type": 9})),
            Err(WireError::UnknownTokenType { code: 9 })
        );
        assert_eq!(
            TemplateToken::from_json(&json!({"type": {"x": 1}})).map(|t| t.kind),
            Ok(TokenKind::Null)
        );
        assert!(TemplateToken::from_json(&json!([1])).is_err());
        assert!(TemplateToken::from_json(&json!({"type": 2, "map": ["x"]})).is_err());
    }

    #[test]
    fn serde_uses_the_same_codec() {
        let token: TemplateToken =
            serde_json::from_value(json!({"type": 3, "expr": "a", "line": 2})).expect("serde");
        assert_eq!(token.line, Some(2));
        assert_eq!(
            serde_json::to_value(&token).expect("ser"),
            json!({"type": 3, "line": 2, "expr": "a"})
        );
    }

    #[test]
    fn display_string_unformats_format_calls() {
        let token =
            TemplateToken::expression("format('echo {0} and {{x}} {1}', github.sha, 'it''s')");
        assert_eq!(
            token.to_display_string(),
            "echo ${{ github.sha }} and {x} ${{ 'it''s' }}"
        );
        assert_eq!(
            TemplateToken::expression("a.b").to_display_string(),
            "${{ a.b }}"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let mut json = json!("leaf");
        for _ in 0..(MAX_WIRE_DEPTH + 5) {
            json = json!({"type": 1, "seq": [json]});
        }
        assert_eq!(TemplateToken::from_json(&json), Err(WireError::TooDeep));
    }
}
