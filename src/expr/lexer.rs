//! Tokenizer of the expression language, mirroring the official runner's lexical analyzer: each
//! token is classified from the previous one (`(` after a function is a call, `.` at the start of
//! an operand is a number, a keyword after `.` is a property name) and must be legal after it.
//!
//! Tokens are produced one at a time so the parser reports errors in source order, as the
//! official parser does.

use super::number::parse_number;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    StartGroup,
    StartIndex,
    StartParameters,
    EndGroup,
    EndIndex,
    EndParameters,
    Separator,
    Dereference,
    Wildcard,
    LogicalOperator,
    Null,
    Boolean,
    Number,
    String,
    PropertyName,
    Function,
    NamedValue,
    /// Not a token at all (`@x`, `'open`, `0xZZ`): a lexing error.
    Invalid,
    /// A real token in a place it cannot appear (`1 2`, `foo.1`): a parsing error.
    Misplaced,
}

/// A token: its kind, raw text, UTF-16 offset (the official position unit) and parsed value.
#[derive(Debug, Clone)]
pub(crate) struct Token<'s> {
    pub kind: TokenKind,
    pub raw: &'s str,
    pub position: usize,
    pub number: f64,
    pub boolean: bool,
    pub string: Option<String>,
}

impl Token<'_> {
    /// Operators take part in the shunting-yard operator stack.
    pub fn is_operator(&self) -> bool {
        use TokenKind::*;
        matches!(
            self.kind,
            StartGroup
                | StartIndex
                | StartParameters
                | EndGroup
                | EndIndex
                | EndParameters
                | Separator
                | Dereference
                | LogicalOperator
        )
    }

    /// Binding strength; only meaningful for operators.
    pub fn precedence(&self) -> u8 {
        use TokenKind::*;
        match self.kind {
            StartGroup => 20,
            StartIndex | StartParameters | Dereference => 19,
            LogicalOperator => match self.raw {
                "!" => 16,
                ">" | ">=" | "<" | "<=" => 11,
                "==" | "!=" => 10,
                "&&" => 6,
                _ => 5,
            },
            EndGroup | EndIndex | EndParameters | Separator => 1,
            _ => 0,
        }
    }

    /// Whether pushing this operator first reduces operators of higher or equal precedence.
    pub fn is_left_to_right(&self) -> bool {
        self.is_operator() && self.kind != TokenKind::StartGroup && self.raw != "!"
    }
}

/// Splits an expression into tokens.
pub(crate) struct Lexer<'s> {
    source: &'s str,
    index: usize,
    last: Option<TokenKind>,
    unclosed: Vec<TokenKind>,
    /// Byte offset and UTF-16 offset of the last position converted, to count forward from.
    utf16_cursor: (usize, usize),
}

impl<'s> Lexer<'s> {
    pub fn new(source: &'s str) -> Self {
        Lexer {
            source,
            index: 0,
            last: None,
            unclosed: Vec::new(),
            utf16_cursor: (0, 0),
        }
    }

    /// Whether a `(` or `[` is still open.
    pub fn has_unclosed(&self) -> bool {
        !self.unclosed.is_empty()
    }

    /// The next token, or `None` at the end of the expression.
    pub fn next_token(&mut self) -> Option<Token<'s>> {
        let rest = &self.source[self.index..];
        let skipped = rest.len() - rest.trim_start().len();
        self.index += skipped;
        let c = self.source[self.index..].chars().next()?;
        let start = self.index;
        let token = match c {
            '(' => {
                self.index += 1;
                let kind = if self.last == Some(TokenKind::Function) {
                    TokenKind::StartParameters
                } else {
                    TokenKind::StartGroup
                };
                self.create(kind, start)
            }
            '[' => self.single(TokenKind::StartIndex, start),
            ')' => {
                let kind = if self.unclosed.last() == Some(&TokenKind::StartParameters) {
                    TokenKind::EndParameters
                } else {
                    TokenKind::EndGroup
                };
                self.single(kind, start)
            }
            ']' => self.single(TokenKind::EndIndex, start),
            ',' => self.single(TokenKind::Separator, start),
            '*' => self.single(TokenKind::Wildcard, start),
            '\'' => self.read_string(),
            '!' | '>' | '<' | '=' | '&' | '|' => self.read_operator(),
            '.' if !self.number_may_start() => self.single(TokenKind::Dereference, start),
            '.' | '-' | '+' | '0'..='9' => self.read_number(),
            _ => self.read_keyword(),
        };
        self.last = Some(token.kind);
        Some(token)
    }

    /// A `.` starts a number at the start of an operand, else it is a dereference.
    fn number_may_start(&self) -> bool {
        use TokenKind::*;
        matches!(
            self.last,
            None | Some(Separator | StartGroup | StartIndex | StartParameters | LogicalOperator)
        )
    }

    fn single(&mut self, kind: TokenKind, start: usize) -> Token<'s> {
        self.index += 1;
        self.create(kind, start)
    }

    fn read_number(&mut self) -> Token<'s> {
        let start = self.index;
        self.index += 1;
        self.advance_while(|c| !is_boundary(c) || c == '.');
        let raw = &self.source[start..self.index];
        let value = parse_number(raw);
        if value.is_nan() {
            return self.invalid(start);
        }
        let mut token = self.create(TokenKind::Number, start);
        token.number = value;
        token
    }

    fn read_keyword(&mut self) -> Token<'s> {
        let start = self.index;
        let first_len = self.source[start..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        self.index += first_len;
        self.advance_while(|c| !is_boundary(c));
        let raw = &self.source[start..self.index];
        if !is_legal_keyword(raw) {
            return self.invalid(start);
        }
        if self.last == Some(TokenKind::Dereference) {
            return self.create(TokenKind::PropertyName, start);
        }
        let mut token = match raw {
            "null" => self.create(TokenKind::Null, start),
            "true" | "false" => self.create(TokenKind::Boolean, start),
            "NaN" | "Infinity" => self.create(TokenKind::Number, start),
            _ => {
                let after = self.source[self.index..].trim_start();
                let kind = if after.starts_with('(') {
                    TokenKind::Function
                } else {
                    TokenKind::NamedValue
                };
                return self.create(kind, start);
            }
        };
        token.boolean = raw == "true";
        token.number = if raw == "NaN" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        token
    }

    fn read_string(&mut self) -> Token<'s> {
        let start = self.index;
        let mut value = String::new();
        let mut chars = self.source[start + 1..].char_indices();
        let mut end = None;
        while let Some((offset, c)) = chars.next() {
            if c == '\'' {
                let next = start + 1 + offset + 1;
                if self.source[next..].starts_with('\'') {
                    chars.next();
                } else {
                    end = Some(next);
                    break;
                }
            }
            value.push(c);
        }
        match end {
            Some(end) => {
                self.index = end;
                let mut token = self.create(TokenKind::String, start);
                token.string = Some(value);
                token
            }
            None => {
                self.index = self.source.len();
                self.invalid(start)
            }
        }
    }

    fn read_operator(&mut self) -> Token<'s> {
        let start = self.index;
        let rest = &self.source[start..];
        for two in ["!=", ">=", "<=", "==", "&&", "||"] {
            if rest.starts_with(two) {
                self.index += 2;
                return self.create(TokenKind::LogicalOperator, start);
            }
        }
        self.index += 1;
        if matches!(&rest[..1], "!" | ">" | "<") {
            return self.create(TokenKind::LogicalOperator, start);
        }
        self.advance_while(|c| !is_boundary(c));
        self.invalid(start)
    }

    fn advance_while(&mut self, keep: impl Fn(char) -> bool) {
        let rest = &self.source[self.index..];
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.index += len;
    }

    fn utf16_position(&mut self, byte: usize) -> usize {
        let (from_byte, from_utf16) = self.utf16_cursor;
        let position = if byte >= from_byte {
            from_utf16 + self.source[from_byte..byte].encode_utf16().count()
        } else {
            self.source[..byte].encode_utf16().count()
        };
        self.utf16_cursor = (byte, position);
        position
    }

    fn invalid(&mut self, start: usize) -> Token<'s> {
        let position = self.utf16_position(start);
        Token {
            kind: TokenKind::Invalid,
            raw: &self.source[start..self.index],
            position,
            number: 0.0,
            boolean: false,
            string: None,
        }
    }

    /// Builds a token ending at the current index, or a `Misplaced` one if it may not follow the
    /// previous token; tracks open brackets.
    fn create(&mut self, kind: TokenKind, start: usize) -> Token<'s> {
        let position = self.utf16_position(start);
        let raw = &self.source[start..self.index];
        let legal = self.is_legal(kind, raw) && self.track_brackets(kind);
        Token {
            kind: if legal { kind } else { TokenKind::Misplaced },
            raw,
            position,
            number: 0.0,
            boolean: false,
            string: None,
        }
    }

    fn is_legal(&self, kind: TokenKind, raw: &str) -> bool {
        use TokenKind::*;
        let last = self.last;
        let after_operand = matches!(
            last,
            Some(
                EndGroup
                    | EndParameters
                    | EndIndex
                    | Wildcard
                    | Null
                    | Boolean
                    | Number
                    | String
                    | PropertyName
                    | NamedValue
            )
        );
        let operand_start = matches!(
            last,
            None | Some(Separator | StartIndex | StartGroup | StartParameters | LogicalOperator)
        );
        let after_reference = matches!(
            last,
            Some(EndGroup | EndParameters | EndIndex | Wildcard | PropertyName | NamedValue)
        );
        match kind {
            StartGroup | Null | Boolean | Number | String | Function | NamedValue => operand_start,
            StartIndex | Dereference => after_reference,
            StartParameters => last == Some(Function),
            EndGroup | EndIndex | Separator => after_operand,
            EndParameters => after_operand || last == Some(StartParameters),
            Wildcard => matches!(last, Some(StartIndex | Dereference)),
            LogicalOperator if raw == "!" => operand_start,
            LogicalOperator => after_operand,
            PropertyName => last == Some(Dereference),
            Invalid | Misplaced => false,
        }
    }

    fn track_brackets(&mut self, kind: TokenKind) -> bool {
        use TokenKind::*;
        let top = self.unclosed.last().copied();
        match kind {
            StartGroup | StartIndex | StartParameters => {
                self.unclosed.push(kind);
                true
            }
            EndGroup | EndIndex | EndParameters => {
                let opener = match kind {
                    EndGroup => StartGroup,
                    EndIndex => StartIndex,
                    _ => StartParameters,
                };
                let matched = top == Some(opener);
                if matched {
                    self.unclosed.pop();
                }
                matched
            }
            Separator => top == Some(StartParameters),
            _ => true,
        }
    }
}

/// Characters that end a number or keyword.
fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}

/// `[A-Za-z_][A-Za-z0-9_-]*`.
fn is_legal_keyword(text: &str) -> bool {
    let mut bytes = text.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(TokenKind, String)> {
        let mut lexer = Lexer::new(source);
        let mut out = Vec::new();
        while let Some(token) = lexer.next_token() {
            out.push((token.kind, token.raw.to_owned()));
        }
        out
    }

    #[test]
    fn classifies_by_previous_token() {
        use TokenKind::*;
        let got = kinds("f(a.true, .5)[*] != !x");
        let expected = [
            (Function, "f"),
            (StartParameters, "("),
            (NamedValue, "a"),
            (Dereference, "."),
            (PropertyName, "true"),
            (Separator, ","),
            (Number, ".5"),
            (EndParameters, ")"),
            (StartIndex, "["),
            (Wildcard, "*"),
            (EndIndex, "]"),
            (LogicalOperator, "!="),
            (LogicalOperator, "!"),
            (NamedValue, "x"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, r)| (*k, (*r).to_owned()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn strings_escape_quotes_and_may_not_be_open() {
        let mut lexer = Lexer::new("'it''s'");
        let token = lexer.next_token().expect("a token");
        assert_eq!(token.kind, TokenKind::String);
        assert_eq!(token.string.as_deref(), Some("it's"));
        assert_eq!(kinds("'open")[0].0, TokenKind::Invalid);
    }

    #[test]
    fn bad_operators_and_keywords_are_invalid() {
        assert_eq!(kinds("1 =2")[1], (TokenKind::Invalid, "=2".to_owned()));
        assert_eq!(kinds("a/b.c")[0], (TokenKind::Invalid, "a/b".to_owned()));
        assert_eq!(kinds("-0xFF")[0].0, TokenKind::Invalid);
        assert_eq!(
            kinds("..a/b.md")[0],
            (TokenKind::Invalid, "..a/b.md".to_owned())
        );
    }

    #[test]
    fn misplaced_tokens_are_flagged() {
        assert_eq!(kinds("1 2")[1].0, TokenKind::Misplaced);
        assert_eq!(kinds("foo.1")[2].0, TokenKind::Misplaced);
        assert_eq!(kinds("(1,")[2].0, TokenKind::Misplaced);
        assert_eq!(kinds("1)")[1].0, TokenKind::Misplaced);
    }

    #[test]
    fn positions_count_utf16_units() {
        let mut lexer = Lexer::new("'😊' x");
        lexer.next_token();
        assert_eq!(lexer.next_token().map(|t| t.position), Some(5));
    }
}
