//! The parsed form of an expression: a tree of [`Expr`] nodes, with `&&`/`||` chains flattened
//! into one n-ary node as the official parser does. `Display` prints it back as source text.

use std::fmt;

use super::Value;
use super::number::format_number;

/// A node of a parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `null`, `true`, `1.5`, `'text'` (only primitive values).
    Literal(Value),
    /// A named context such as `github` (as written; looked up case-insensitively).
    NamedValue(String),
    /// `*` in `x[*]` or `x.*`.
    Wildcard,
    /// `target[index]` or `target.name` (the name becomes a string literal).
    Index {
        /// The value indexed.
        target: Box<Expr>,
        /// The index: an expression, a property-name literal, or [`Expr::Wildcard`].
        index: Box<Expr>,
    },
    /// `!operand`.
    Not(Box<Expr>),
    /// `a && b && …` (two or more operands).
    And(Vec<Expr>),
    /// `a || b || …` (two or more operands).
    Or(Vec<Expr>),
    /// A comparison.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// A function call.
    Call {
        /// Which function.
        function: Function,
        /// Arguments, unevaluated (functions decide what to evaluate).
        args: Vec<Expr>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    pub(crate) fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            "==" => CompareOp::Eq,
            "!=" => CompareOp::Ne,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            _ => return None,
        })
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// A built-in function. Names are matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `contains(search, item)`
    Contains,
    /// `startsWith(text, prefix)`
    StartsWith,
    /// `endsWith(text, suffix)`
    EndsWith,
    /// `format(fmt, args…)`
    Format,
    /// `join(items, separator?)`
    Join,
    /// `toJSON(value)`
    ToJson,
    /// `fromJSON(text)`
    FromJson,
    /// `case(pred, value, …, default)`
    Case,
    /// `success()`
    Success,
    /// `always()`
    Always,
    /// `cancelled()`
    Cancelled,
    /// `failure()`
    Failure,
    /// `hashFiles(patterns…)`
    HashFiles,
}

/// Most parameters any function takes (`format`, `hashFiles`, `case`).
const MAX_PARAMETERS: usize = u8::MAX as usize;

impl Function {
    const ALL: [Function; 13] = [
        Function::Contains,
        Function::StartsWith,
        Function::EndsWith,
        Function::Format,
        Function::Join,
        Function::ToJson,
        Function::FromJson,
        Function::Case,
        Function::Success,
        Function::Always,
        Function::Cancelled,
        Function::Failure,
        Function::HashFiles,
    ];

    /// Looks a function up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The documented spelling of the name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Contains => "contains",
            Function::StartsWith => "startsWith",
            Function::EndsWith => "endsWith",
            Function::Format => "format",
            Function::Join => "join",
            Function::ToJson => "toJSON",
            Function::FromJson => "fromJSON",
            Function::Case => "case",
            Function::Success => "success",
            Function::Always => "always",
            Function::Cancelled => "cancelled",
            Function::Failure => "failure",
            Function::HashFiles => "hashFiles",
        }
    }

    /// Allowed number of parameters, inclusive.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, 2),
            Function::Format | Function::HashFiles => (1, MAX_PARAMETERS),
            Function::Join => (1, 2),
            Function::ToJson | Function::FromJson => (1, 1),
            Function::Case => (3, MAX_PARAMETERS),
            Function::Success | Function::Always | Function::Cancelled | Function::Failure => {
                (0, 0)
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Value::String(s)) => write!(f, "'{}'", s.replace('\'', "''")),
            Expr::Literal(Value::Number(n)) => f.write_str(&format_number(*n)),
            Expr::Literal(Value::Boolean(b)) => write!(f, "{b}"),
            Expr::Literal(_) => f.write_str("null"),
            Expr::NamedValue(name) => f.write_str(name),
            Expr::Wildcard => f.write_str("*"),
            Expr::Index { target, index } => write!(f, "{target}[{index}]"),
            Expr::Not(operand) => write!(f, "!{operand}"),
            Expr::And(items) => write_joined(f, items, " && "),
            Expr::Or(items) => write_joined(f, items, " || "),
            Expr::Compare { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Call { function, args } => {
                write!(f, "{}", function.name())?;
                write_joined(f, args, ", ")
            }
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, items: &[Expr], separator: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(")")
}
