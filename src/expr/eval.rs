//! Evaluates an [`Expr`] tree: short-circuit `&&`/`||` returning operands, coercing comparisons,
//! member access with filtered arrays (`x.*.y`), and the evaluation-memory limit of the official
//! runner (string results are charged per tree level and released when a parent finishes).
//!
//! Intermediate values ([`Val`]) borrow from the contexts instead of copying them, which also
//! gives arrays and objects the identity the comparison rules need: two collections are equal
//! only if they are the same instance.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{CompareOp, Expr};
use super::functions;
use super::{ErrorKind, EvalContext, ExprError, MAX_DEPTH, MAX_MEMORY_BYTES, Object, Value};

/// Bytes charged for a non-string result (the runner's minimum object size).
const MIN_OBJECT_BYTES: usize = 24;
/// Fixed bytes charged per string result on top of two bytes per UTF-16 unit.
const STRING_OVERHEAD_BYTES: usize = 26;
/// Bytes charged per element of a filtered array (one reference).
const REFERENCE_BYTES: usize = 8;

/// An intermediate value.
#[derive(Debug)]
pub(crate) enum Val<'v> {
    Null,
    Bool(bool),
    Number(f64),
    Str(Cow<'v, str>),
    /// An array or object in the contexts.
    Ref(&'v Value),
    /// An array or object made during evaluation (`fromJSON`).
    Owned(Box<Value>),
    /// The result of `*`: later `.x`/`[i]`/`*` apply to each element.
    Filtered(Vec<Val<'v>>),
}

/// What comparisons see of a value; collections carry their identity (address), if any.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Str(&'a str),
    Array(Option<usize>),
    Object(Option<usize>),
}

impl<'v> Val<'v> {
    pub fn from_ref(value: &'v Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Boolean(b) => Val::Bool(*b),
            Value::Number(n) => Val::Number(*n),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Ref(value),
        }
    }

    pub fn from_owned(value: Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Boolean(b) => Val::Bool(b),
            Value::Number(n) => Val::Number(n),
            Value::String(s) => Val::Str(Cow::Owned(s)),
            collection => Val::Owned(Box::new(collection)),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Boolean(b),
            Val::Number(n) => Value::Number(n),
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Ref(value) => value.clone(),
            Val::Owned(value) => *value,
            Val::Filtered(items) => Value::Array(items.into_iter().map(Val::into_value).collect()),
        }
    }

    pub fn is_primitive(&self) -> bool {
        matches!(
            self,
            Val::Null | Val::Bool(_) | Val::Number(_) | Val::Str(_)
        )
    }

    pub fn scalar(&self) -> Scalar<'_> {
        match self {
            Val::Null => Scalar::Null,
            Val::Bool(b) => Scalar::Bool(*b),
            Val::Number(n) => Scalar::Number(*n),
            Val::Str(s) => Scalar::Str(s),
            Val::Ref(value) => Scalar::of(value),
            Val::Owned(value) => Scalar::of(value),
            Val::Filtered(_) => Scalar::Array(None),
        }
    }

    pub fn is_truthy(&self) -> bool {
        match self.scalar() {
            Scalar::Null => false,
            Scalar::Bool(b) => b,
            Scalar::Number(n) => n != 0.0 && !n.is_nan(),
            Scalar::Str(s) => !s.is_empty(),
            Scalar::Array(_) | Scalar::Object(_) => true,
        }
    }

    /// String coercion, as [`Value::to_display_string`].
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Filtered(_) => Cow::Borrowed("Array"),
            other => Cow::Owned(scalar_text(other.scalar())),
        }
    }

    /// Elements if this is an array (of the contexts, made, or filtered).
    pub fn array_items(&self) -> Option<Vec<Scalar<'_>>> {
        match self {
            Val::Ref(Value::Array(items)) => Some(items.iter().map(Scalar::of).collect()),
            Val::Owned(value) => match value.as_ref() {
                Value::Array(items) => Some(items.iter().map(Scalar::of).collect()),
                _ => None,
            },
            Val::Filtered(items) => Some(items.iter().map(Val::scalar).collect()),
            _ => None,
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Val::Str(s) => string_bytes(s),
            Val::Filtered(items) => items.len() * REFERENCE_BYTES,
            _ => MIN_OBJECT_BYTES,
        }
    }
}

/// Bytes the runner charges for a string.
pub(crate) fn string_bytes(text: &str) -> usize {
    STRING_OVERHEAD_BYTES + 2 * text.encode_utf16().count()
}

impl<'a> Scalar<'a> {
    pub fn of(value: &'a Value) -> Self {
        let identity = Some(value as *const Value as usize);
        match value {
            Value::Null => Scalar::Null,
            Value::Boolean(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(*n),
            Value::String(s) => Scalar::Str(s),
            Value::Array(_) => Scalar::Array(identity),
            Value::Object(_) => Scalar::Object(identity),
        }
    }

    pub fn is_primitive(self) -> bool {
        !matches!(self, Scalar::Array(_) | Scalar::Object(_))
    }

    fn to_number(self) -> f64 {
        match self {
            Scalar::Null => 0.0,
            Scalar::Bool(b) => f64::from(u8::from(b)),
            Scalar::Number(n) => n,
            Scalar::Str(s) => super::number::parse_number(s),
            Scalar::Array(_) | Scalar::Object(_) => f64::NAN,
        }
    }
}

/// String coercion of a scalar.
pub(crate) fn scalar_text(scalar: Scalar<'_>) -> String {
    match scalar {
        Scalar::Null => String::new(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Number(n) => super::number::format_number(n),
        Scalar::Str(s) => s.to_owned(),
        Scalar::Array(_) => "Array".to_owned(),
        Scalar::Object(_) => "Object".to_owned(),
    }
}

/// Applies the coercion rules: number vs string converts the string; a boolean or null side
/// becomes a number (repeatedly); collections are never converted.
fn coerce<'a>(mut left: Scalar<'a>, mut right: Scalar<'a>) -> (Scalar<'a>, Scalar<'a>) {
    loop {
        match (left, right) {
            (Scalar::Number(_), Scalar::Str(_)) => right = Scalar::Number(right.to_number()),
            (Scalar::Str(_), Scalar::Number(_)) => left = Scalar::Number(left.to_number()),
            _ if std::mem::discriminant(&left) == std::mem::discriminant(&right) => {
                return (left, right);
            }
            (Scalar::Bool(_) | Scalar::Null, _) => left = Scalar::Number(left.to_number()),
            (_, Scalar::Bool(_) | Scalar::Null) => right = Scalar::Number(right.to_number()),
            _ => return (left, right),
        }
    }
}

/// `==` with coercion.
pub(crate) fn loose_equal(left: Scalar<'_>, right: Scalar<'_>) -> bool {
    match coerce(left, right) {
        (Scalar::Null, Scalar::Null) => true,
        (Scalar::Number(l), Scalar::Number(r)) => l == r,
        (Scalar::Str(l), Scalar::Str(r)) => compare_ignore_case(l, r) == Ordering::Equal,
        (Scalar::Bool(l), Scalar::Bool(r)) => l == r,
        (Scalar::Array(Some(l)), Scalar::Array(Some(r)))
        | (Scalar::Object(Some(l)), Scalar::Object(Some(r))) => l == r,
        _ => false,
    }
}

/// Ordering with coercion; `None` when unordered (NaN, collections, different kinds).
fn loose_order(left: Scalar<'_>, right: Scalar<'_>) -> Option<Ordering> {
    match coerce(left, right) {
        (Scalar::Number(l), Scalar::Number(r)) => l.partial_cmp(&r),
        (Scalar::Str(l), Scalar::Str(r)) => Some(compare_ignore_case(l, r)),
        (Scalar::Bool(l), Scalar::Bool(r)) => Some(l.cmp(&r)),
        (Scalar::Null, Scalar::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn compare(op: CompareOp, left: Scalar<'_>, right: Scalar<'_>) -> bool {
    let order = || loose_order(left, right);
    match op {
        CompareOp::Eq => loose_equal(left, right),
        CompareOp::Ne => !loose_equal(left, right),
        CompareOp::Lt => order() == Some(Ordering::Less),
        CompareOp::Gt => order() == Some(Ordering::Greater),
        CompareOp::Le => loose_equal(left, right) || order() == Some(Ordering::Less),
        CompareOp::Ge => loose_equal(left, right) || order() == Some(Ordering::Greater),
    }
}

/// Upper-cases one character the way .NET's ordinal ignore-case comparison does: simple
/// one-to-one mappings only, and never a non-ASCII letter to an ASCII one (`ı`, `ſ` stay).
pub(crate) fn fold_char(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) if c.is_ascii() || !u.is_ascii() => u,
        _ => c,
    }
}

/// .NET `StringComparison.OrdinalIgnoreCase`: per UTF-16 unit after upper-casing.
pub(crate) fn compare_ignore_case(left: &str, right: &str) -> Ordering {
    let units = |s: &str| {
        s.chars()
            .map(fold_char)
            .flat_map(|c| {
                let mut buffer = [0u16; 2];
                let len = c.encode_utf16(&mut buffer).len();
                buffer.into_iter().take(len)
            })
            .collect::<Vec<u16>>()
    };
    if left.is_ascii() && right.is_ascii() {
        let l = left.bytes().map(|b| b.to_ascii_uppercase());
        return l.cmp(right.bytes().map(|b| b.to_ascii_uppercase()));
    }
    units(left).cmp(&units(right))
}

/// Upper-cases a whole string with [`fold_char`] (for substring tests).
pub(crate) fn fold(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

/// Tracks memory held by results per tree level, as the runner's `EvaluationMemory`.
struct Memory {
    levels: Vec<usize>,
    deepest_active: Option<usize>,
    total: usize,
}

impl Memory {
    /// Charges `bytes` at `level`; a primitive result first releases everything deeper.
    fn charge(&mut self, level: usize, bytes: usize, release_deeper: bool) -> bool {
        if release_deeper {
            while let Some(deepest) = self.deepest_active.filter(|d| *d > level) {
                self.total -= std::mem::take(&mut self.levels[deepest]);
                self.deepest_active = deepest.checked_sub(1);
            }
        }
        if self.levels.len() <= level {
            self.levels.resize(level + 1, 0);
        }
        if self.deepest_active.is_none_or(|d| d < level) {
            self.deepest_active = Some(level);
        }
        self.levels[level] += bytes;
        self.total += bytes;
        self.total <= MAX_MEMORY_BYTES
    }
}

/// One evaluation of one expression.
pub(crate) struct Evaluator<'v, 'c> {
    pub ctx: &'c EvalContext<'c>,
    contexts: &'v Object,
    root: &'v Expr,
    memory: Memory,
}

impl<'v, 'c> Evaluator<'v, 'c> {
    pub fn new(ctx: &'c EvalContext<'c>, contexts: &'v Object, root: &'v Expr) -> Self {
        Evaluator {
            ctx,
            contexts,
            root,
            memory: Memory {
                levels: Vec::new(),
                deepest_active: None,
                total: 0,
            },
        }
    }

    pub fn run(&mut self) -> Result<Value, ExprError> {
        let root = self.root;
        Ok(self.eval(root, 0)?.into_value())
    }

    /// The error for a result too large for the memory limit.
    pub fn memory_error(&self) -> ExprError {
        ExprError {
            kind: ErrorKind::Evaluation,
            message: format!(
                "The maximum allowed memory size was exceeded while evaluating the following expression: {}",
                self.root
            ),
            position: None,
        }
    }

    /// Evaluates `expr` at tree `level` (root 0) and charges its result.
    pub fn eval(&mut self, expr: &'v Expr, level: usize) -> Result<Val<'v>, ExprError> {
        if level >= MAX_DEPTH {
            // Parsed trees are at most MAX_DEPTH deep; this guards trees built by hand.
            return Err(ExprError {
                kind: ErrorKind::Evaluation,
                message: format!("Exceeded max expression depth {MAX_DEPTH}"),
                position: None,
            });
        }
        let value = self.eval_core(expr, level)?;
        if !self
            .memory
            .charge(level, value.memory_bytes(), value.is_primitive())
        {
            return Err(self.memory_error());
        }
        Ok(value)
    }

    fn eval_core(&mut self, expr: &'v Expr, level: usize) -> Result<Val<'v>, ExprError> {
        Ok(match expr {
            Expr::Literal(value) => Val::from_ref(value),
            Expr::NamedValue(name) => {
                lookup_context(self.contexts, name).map_or(Val::Null, Val::from_ref)
            }
            Expr::Wildcard => Val::Null,
            Expr::Index { target, index } => {
                let target = self.eval(target, level + 1)?;
                self.index(target, index, level + 1)?
            }
            Expr::Not(operand) => Val::Bool(!self.eval(operand, level + 1)?.is_truthy()),
            Expr::And(items) | Expr::Or(items) => {
                let stop_when = matches!(expr, Expr::Or(_));
                let mut result = Val::Null;
                for item in items {
                    result = self.eval(item, level + 1)?;
                    if result.is_truthy() == stop_when {
                        break;
                    }
                }
                result
            }
            Expr::Compare { op, left, right } => {
                let left = self.eval(left, level + 1)?;
                let right = self.eval(right, level + 1)?;
                Val::Bool(compare(*op, left.scalar(), right.scalar()))
            }
            Expr::Call { function, args } => functions::call(self, *function, args, level + 1)?,
        })
    }

    fn index(
        &mut self,
        target: Val<'v>,
        index: &'v Expr,
        level: usize,
    ) -> Result<Val<'v>, ExprError> {
        if !matches!(target, Val::Ref(_) | Val::Owned(_) | Val::Filtered(_)) {
            // Not a collection: the index is not even evaluated.
            return Ok(if matches!(index, Expr::Wildcard) {
                Val::Filtered(Vec::new())
            } else {
                Val::Null
            });
        }
        let key = if matches!(index, Expr::Wildcard) {
            Key::Wildcard
        } else {
            Key::of(&self.eval(index, level)?)
        };
        Ok(match target {
            Val::Filtered(items) => {
                let mut out = Vec::new();
                for item in items {
                    match key {
                        Key::Wildcard => out.extend(children(item)),
                        _ => out.extend(child(item, &key)),
                    }
                }
                Val::Filtered(out)
            }
            collection => match key {
                Key::Wildcard => Val::Filtered(children(collection).collect()),
                _ => child(collection, &key).unwrap_or(Val::Null),
            },
        })
    }
}

/// Looks a context up by name, ignoring case even in a case-sensitive object.
pub(crate) fn lookup_context<'o>(contexts: &'o Object, name: &str) -> Option<&'o Value> {
    contexts.get(name).or_else(|| {
        contexts
            .iter()
            .find(|(k, _)| super::value::keys_equal_ignore_case(k, name))
            .map(|(_, v)| v)
    })
}

/// An evaluated index: a string key for objects and/or an integer for arrays.
enum Key {
    Wildcard,
    Value {
        text: Option<String>,
        position: Option<usize>,
    },
}

/// Largest array index (the runner indexes with a signed 32-bit integer).
const MAX_ARRAY_INDEX: f64 = i32::MAX as f64;

impl Key {
    fn of(index: &Val<'_>) -> Self {
        let scalar = index.scalar();
        let text = scalar.is_primitive().then(|| scalar_text(scalar));
        let number = scalar.to_number();
        let position = (!number.is_nan() && number >= 0.0 && number.floor() <= MAX_ARRAY_INDEX)
            // Non-negative, floored and at most i32::MAX: the cast is exact.
            .then(|| number.floor() as usize);
        Key::Value { text, position }
    }
}

/// The elements of a collection (object values, array items); nothing for anything else.
fn children<'v>(collection: Val<'v>) -> Box<dyn Iterator<Item = Val<'v>> + 'v> {
    match collection {
        Val::Ref(Value::Object(object)) => Box::new(object.iter().map(|(_, v)| Val::from_ref(v))),
        Val::Ref(Value::Array(items)) => Box::new(items.iter().map(Val::from_ref)),
        Val::Owned(value) => match *value {
            Value::Object(object) => Box::new(object.into_iter().map(|(_, v)| Val::from_owned(v))),
            Value::Array(items) => Box::new(items.into_iter().map(Val::from_owned)),
            _ => Box::new(std::iter::empty()),
        },
        _ => Box::new(std::iter::empty()),
    }
}

/// One member of a collection by key, if present.
fn child<'v>(collection: Val<'v>, key: &Key) -> Option<Val<'v>> {
    let Key::Value { text, position } = key else {
        return None;
    };
    match collection {
        Val::Ref(Value::Object(object)) => object.get(text.as_deref()?).map(Val::from_ref),
        Val::Ref(Value::Array(items)) => items.get((*position)?).map(Val::from_ref),
        Val::Owned(value) => match *value {
            Value::Object(mut object) => object.remove(text.as_deref()?).map(Val::from_owned),
            Value::Array(mut items) => {
                let position = (*position)?;
                (position < items.len()).then(|| Val::from_owned(items.swap_remove(position)))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_case_ordering_uses_upper_case() {
        assert_eq!(compare_ignore_case("abc", "ABC"), Ordering::Equal);
        assert_eq!(compare_ignore_case("_", "a"), Ordering::Greater);
        assert_eq!(compare_ignore_case("ς", "Σ"), Ordering::Equal);
        assert_ne!(compare_ignore_case("ı", "I"), Ordering::Equal);
        assert_ne!(compare_ignore_case("i", "İ"), Ordering::Equal);
    }

    #[test]
    fn coercing_equality() {
        assert!(loose_equal(Scalar::Null, Scalar::Str("   ")));
        assert!(loose_equal(Scalar::Bool(false), Scalar::Str(" ")));
        assert!(loose_equal(Scalar::Str(" 0xff "), Scalar::Number(255.0)));
        assert!(!loose_equal(
            Scalar::Number(f64::NAN),
            Scalar::Number(f64::NAN)
        ));
        assert!(!loose_equal(Scalar::Array(None), Scalar::Array(None)));
        assert!(loose_equal(
            Scalar::Object(Some(8)),
            Scalar::Object(Some(8))
        ));
        assert!(!loose_equal(Scalar::Bool(true), Scalar::Object(Some(8))));
    }

    #[test]
    fn memory_releases_deeper_levels_for_primitive_results() {
        let mut memory = Memory {
            levels: Vec::new(),
            deepest_active: None,
            total: 0,
        };
        assert!(memory.charge(2, 600_000, true));
        assert!(memory.charge(1, 600_000, true));
        assert_eq!(memory.total, 600_000);
        assert!(!memory.charge(1, 600_000, true));
    }
}
