//! Builds an [`Expr`] tree from tokens with an operator-precedence (shunting-yard) parser that
//! follows the official runner's parser step by step, so errors are the same and come in the same
//! order: unknown symbols and misplaced tokens as they are read, unknown functions and named
//! values as they are pushed, wrong arity at the closing `)`, an unexpected end, and last the
//! depth limit.
//!
//! The parser never recurses: nesting such as `((((1))))` or `!!!!x` costs stack-free memory, and
//! a subtree deeper than [`MAX_DEPTH`] is replaced by a placeholder at once (the depth error is
//! reported after the whole input has been checked), so no deep tree is ever built or dropped.

use super::ast::{CompareOp, Expr, Function};
use super::lexer::{Lexer, Token, TokenKind};
use super::{ErrorKind, ExprError, MAX_DEPTH, MAX_LENGTH, Value};

/// Parses `source`; `is_known_name` says which named values (contexts) exist. `Ok(None)` for an
/// empty (or all-whitespace) expression.
pub(crate) fn parse_expression(
    source: &str,
    is_known_name: &dyn Fn(&str) -> bool,
) -> Result<Option<Expr>, ExprError> {
    if source.encode_utf16().count() > MAX_LENGTH {
        return Err(ExprError {
            kind: ErrorKind::Parsing,
            message: format!("Exceeded max expression length {MAX_LENGTH}"),
            position: None,
        });
    }
    let mut parser = Parser {
        source,
        is_known_name,
        operators: Vec::new(),
        operands: Vec::new(),
        calls: Vec::new(),
        too_deep: false,
    };
    let mut lexer = Lexer::new(source);
    let mut last: Option<Last<'_>> = None;
    while let Some(token) = lexer.next_token() {
        let this = Last::of(&token);
        match token.kind {
            TokenKind::Invalid => {
                return Err(parser.error(ErrorKind::Lexing, "Unexpected symbol", this));
            }
            TokenKind::Misplaced => {
                return Err(parser.error(ErrorKind::Parsing, "Unexpected symbol", this));
            }
            _ if token.is_operator() => {
                let previous = last.map(|l| l.kind);
                parser.push_operator(token, previous)?;
            }
            _ => parser.push_operand(token)?,
        }
        last = Some(this);
    }
    let Some(last) = last else {
        return Ok(None);
    };
    if !parser.operators.is_empty() {
        let ends_badly = match last.kind {
            TokenKind::EndGroup | TokenKind::EndIndex | TokenKind::EndParameters => false,
            TokenKind::Function => true,
            _ => last.is_operator,
        };
        if ends_badly || lexer.has_unclosed() {
            return Err(parser.error(ErrorKind::Parsing, "Unexpected end of expression", last));
        }
    }
    while !parser.operators.is_empty() {
        parser.flush_top(last.kind)?;
    }
    let root = parser.pop_operand()?;
    if !parser.operands.is_empty() {
        return Err(parser.error(ErrorKind::Parsing, "Unexpected symbol", last));
    }
    if parser.too_deep {
        return Err(ExprError {
            kind: ErrorKind::Parsing,
            message: format!("Exceeded max expression depth {MAX_DEPTH}"),
            position: None,
        });
    }
    Ok(Some(root.expr))
}

/// What the parser remembers of a token after handing it on.
#[derive(Debug, Clone, Copy)]
struct Last<'s> {
    kind: TokenKind,
    raw: &'s str,
    position: usize,
    is_operator: bool,
}

impl<'s> Last<'s> {
    fn of(token: &Token<'s>) -> Self {
        Last {
            kind: token.kind,
            raw: token.raw,
            position: token.position,
            is_operator: token.is_operator(),
        }
    }
}

/// An operand with the height of its subtree (a leaf is 1).
struct Node {
    expr: Expr,
    height: usize,
}

struct Parser<'s, 'k> {
    source: &'s str,
    is_known_name: &'k dyn Fn(&str) -> bool,
    operators: Vec<Token<'s>>,
    operands: Vec<Node>,
    /// Function-name tokens of the calls whose `)` is still to come.
    calls: Vec<(Function, Last<'s>)>,
    too_deep: bool,
}

impl<'s> Parser<'s, '_> {
    fn error(&self, kind: ErrorKind, description: &str, token: Last<'_>) -> ExprError {
        ExprError {
            kind,
            message: format!(
                "{description}: '{}'. Located at position {} within expression: {}",
                token.raw,
                token.position + 1,
                self.source
            ),
            position: Some(token.position),
        }
    }

    fn push_operand(&mut self, token: Token<'s>) -> Result<(), ExprError> {
        let expr = match token.kind {
            TokenKind::Function => {
                let Some(function) = Function::from_name(token.raw) else {
                    let last = Last::of(&token);
                    return Err(self.error(ErrorKind::Parsing, "Unrecognized function", last));
                };
                self.calls.push((function, Last::of(&token)));
                Expr::Call {
                    function,
                    args: Vec::new(),
                }
            }
            TokenKind::NamedValue => {
                if !(self.is_known_name)(token.raw) {
                    let last = Last::of(&token);
                    return Err(self.error(ErrorKind::Parsing, "Unrecognized named-value", last));
                }
                Expr::NamedValue(token.raw.to_owned())
            }
            TokenKind::Null => Expr::Literal(Value::Null),
            TokenKind::Boolean => Expr::Literal(Value::Boolean(token.boolean)),
            TokenKind::Number => Expr::Literal(Value::Number(token.number)),
            TokenKind::String => Expr::Literal(Value::String(token.string.unwrap_or_default())),
            TokenKind::PropertyName => Expr::Literal(Value::String(token.raw.to_owned())),
            _ => Expr::Wildcard,
        };
        self.operands.push(Node { expr, height: 1 });
        Ok(())
    }

    fn push_operator(
        &mut self,
        token: Token<'s>,
        previous: Option<TokenKind>,
    ) -> Result<(), ExprError> {
        if token.is_left_to_right() {
            let precedence = token.precedence();
            while let Some(top) = self.operators.last() {
                let stops = matches!(
                    top.kind,
                    TokenKind::StartGroup
                        | TokenKind::StartIndex
                        | TokenKind::StartParameters
                        | TokenKind::Separator
                );
                if precedence <= top.precedence() && !stops {
                    self.flush_top(token.kind)?;
                    continue;
                }
                break;
            }
        }
        let kind = token.kind;
        self.operators.push(token);
        if matches!(
            kind,
            TokenKind::EndGroup | TokenKind::EndIndex | TokenKind::EndParameters
        ) {
            self.flush_top(previous.unwrap_or(kind))?;
        }
        Ok(())
    }

    /// Reduces the top operator; `previous` is the kind of the token before the current one.
    fn flush_top(&mut self, previous: TokenKind) -> Result<(), ExprError> {
        let Some(operator) = self.operators.pop() else {
            return Ok(());
        };
        match operator.kind {
            TokenKind::EndGroup => {
                self.operators.pop(); // the matching "(" (the lexer checked it)
                Ok(())
            }
            TokenKind::EndIndex => {
                self.operators.pop(); // the matching "["
                let index = self.pop_operand()?;
                let target = self.pop_operand()?;
                self.push_index(target, index);
                Ok(())
            }
            TokenKind::EndParameters => self.flush_call(previous),
            TokenKind::Dereference => {
                let index = self.pop_operand()?;
                let target = self.pop_operand()?;
                self.push_index(target, index);
                Ok(())
            }
            _ => self.flush_logical(&operator),
        }
    }

    fn flush_logical(&mut self, operator: &Token<'s>) -> Result<(), ExprError> {
        if operator.raw == "!" {
            let operand = self.pop_operand()?;
            let height = operand.height + 1;
            self.push_node(Expr::Not(Box::new(operand.expr)), height);
            return Ok(());
        }
        let right = self.pop_operand()?;
        let left = self.pop_operand()?;
        if let Some(op) = CompareOp::from_symbol(operator.raw) {
            let height = left.height.max(right.height) + 1;
            let expr = Expr::Compare {
                op,
                left: Box::new(left.expr),
                right: Box::new(right.expr),
            };
            self.push_node(expr, height);
            return Ok(());
        }
        let is_and = operator.raw == "&&";
        let mut items = Vec::new();
        let mut child_height = 0;
        for operand in [left, right] {
            match operand.expr {
                Expr::And(nested) if is_and => {
                    child_height = child_height.max(operand.height - 1);
                    items.extend(nested);
                }
                Expr::Or(nested) if !is_and => {
                    child_height = child_height.max(operand.height - 1);
                    items.extend(nested);
                }
                expr => {
                    child_height = child_height.max(operand.height);
                    items.push(expr);
                }
            }
        }
        let expr = if is_and {
            Expr::And(items)
        } else {
            Expr::Or(items)
        };
        self.push_node(expr, child_height + 1);
        Ok(())
    }

    fn flush_call(&mut self, previous: TokenKind) -> Result<(), ExprError> {
        let mut count = 0;
        if previous != TokenKind::StartParameters {
            count = 1;
            while self
                .operators
                .last()
                .is_some_and(|t| t.kind == TokenKind::Separator)
            {
                self.operators.pop();
                count += 1;
            }
        }
        let mut args = Vec::with_capacity(count);
        let mut child_height = 0;
        for _ in 0..count {
            let node = self.pop_operand()?;
            child_height = child_height.max(node.height);
            args.push(node.expr);
        }
        args.reverse();
        self.operators.pop(); // the "(" of the call
        let Some((function, name_token)) = self.calls.pop() else {
            return Err(self.internal_error());
        };
        let (min, max) = function.arity();
        if count < min {
            return Err(self.error(
                ErrorKind::Parsing,
                "Too few parameters supplied",
                name_token,
            ));
        }
        if count > max {
            return Err(self.error(
                ErrorKind::Parsing,
                "Too many parameters supplied",
                name_token,
            ));
        }
        if function == Function::Case && count % 2 == 0 {
            let description =
                "Even number of parameters supplied, requires an odd number of parameters";
            return Err(self.error(ErrorKind::Parsing, description, name_token));
        }
        let node = self.pop_operand()?;
        if !matches!(node.expr, Expr::Call { .. }) {
            return Err(self.internal_error());
        }
        self.push_node(Expr::Call { function, args }, child_height + 1);
        Ok(())
    }

    fn push_index(&mut self, target: Node, index: Node) {
        let height = target.height.max(index.height) + 1;
        let expr = Expr::Index {
            target: Box::new(target.expr),
            index: Box::new(index.expr),
        };
        self.push_node(expr, height);
    }

    /// Pushes a node, or a placeholder if it is deeper than allowed (reported at the end).
    fn push_node(&mut self, expr: Expr, height: usize) {
        if height > MAX_DEPTH {
            self.too_deep = true;
            self.operands.push(Node {
                expr: Expr::Literal(Value::Null),
                height,
            });
        } else {
            self.operands.push(Node { expr, height });
        }
    }

    fn pop_operand(&mut self) -> Result<Node, ExprError> {
        self.operands.pop().ok_or_else(|| self.internal_error())
    }

    /// The lexer's checks make a malformed operator/operand sequence impossible; report rather
    /// than panic should that ever be wrong.
    fn internal_error(&self) -> ExprError {
        ExprError {
            kind: ErrorKind::Parsing,
            message: format!("Unexpected symbol within expression: {}", self.source),
            position: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Option<Expr>, ExprError> {
        parse_expression(source, &|name| name.eq_ignore_ascii_case("foo"))
    }

    fn shown(source: &str) -> String {
        match parse(source) {
            Ok(Some(expr)) => expr.to_string(),
            Ok(None) => "<empty>".to_owned(),
            Err(e) => format!("{}: {}", e.kind.as_str(), e.message),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(shown("!foo.bar"), "!foo['bar']");
        assert_eq!(shown("3 < 2 < 1"), "((3 < 2) < 1)");
        assert_eq!(shown("1 == 1 && 2"), "((1 == 1) && 2)");
        assert_eq!(shown("1 || 2 && 3"), "(1 || (2 && 3))");
        assert_eq!(shown("!2 < 3"), "(!2 < 3)");
        assert_eq!(shown("foo[1].x[*]"), "foo[1]['x'][*]");
    }

    #[test]
    fn and_or_chains_are_flattened_through_groups() {
        assert_eq!(shown("1 && (2 && 3) && 4"), "(1 && 2 && 3 && 4)");
        assert_eq!(shown("1 || 2 || 3"), "(1 || 2 || 3)");
    }

    #[test]
    fn calls_take_arguments_in_order() {
        assert_eq!(shown("format('{0}', 1, foo)"), "format('{0}', 1, foo)");
        assert_eq!(shown("success()"), "success()");
        assert_eq!(shown("  "), "<empty>");
    }

    #[test]
    fn errors_name_the_token_and_position() {
        assert_eq!(
            shown("1 <"),
            "parsing: Unexpected end of expression: '<'. Located at position 3 within expression: 1 <"
        );
        assert_eq!(
            shown("1 @abc 2"),
            "lexing: Unexpected symbol: '@abc'. Located at position 3 within expression: 1 @abc 2"
        );
        assert!(shown("nope").contains("Unrecognized named-value: 'nope'"));
        assert!(shown("nope()").contains("Unrecognized function: 'nope'"));
        assert!(shown("join()").starts_with("parsing: Too few parameters supplied: 'join'"));
        assert!(shown("case(true, 1)").contains("Too few"));
        assert!(shown("case(true, 1, false, 2)").contains("Even number of parameters"));
        assert!(shown("(1").contains("Unexpected end of expression: '1'"));
        assert!(shown("f(").contains("Unrecognized function"));
        assert!(shown("toJSON(").contains("Unexpected end of expression: '('"));
    }

    #[test]
    fn depth_is_limited_without_deep_recursion() {
        let ok = format!("{}true", "!".repeat(MAX_DEPTH - 1));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}true", "!".repeat(MAX_DEPTH));
        assert!(shown(&deep).contains("Exceeded max expression depth 50"));
        let huge = format!("{}true", "!".repeat(20_000));
        assert!(shown(&huge).contains("Exceeded max expression depth 50"));
        let groups = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(shown(&groups), "1");
        let too_long = "1".repeat(MAX_LENGTH + 1);
        assert!(shown(&too_long).contains("Exceeded max expression length 21000"));
    }

    #[test]
    fn earlier_errors_win_over_depth() {
        let deep_then_bad = format!("{}true @", "!".repeat(60));
        assert!(shown(&deep_then_bad).starts_with("lexing: Unexpected symbol: '@'"));
    }
}
