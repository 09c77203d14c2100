//! The composite format strings of `format()` (`{0}`, `{1:spec}`, `{{`/`}}` escapes), parsed
//! once here for every user: the expression function, shell argument templates
//! (`bash -e {0}`) and the display string of a `format()` call.

/// A piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'f> {
    /// Literal text, escapes already resolved.
    Text(&'f str),
    /// `{index}` or `{index:specifiers}`.
    Arg {
        /// The argument's 0-based index.
        index: usize,
        /// What follows the `:` (empty without one).
        specifiers: String,
    },
}

/// Why a format string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompositeError {
    /// A lone brace, or a placeholder that is not `{N}` / `{N:spec}`.
    Invalid,
    /// A placeholder's index is not below the number of arguments.
    MissingArgument,
}

/// Splits a format string into text and `{N}` / `{N:spec}` segments, checking it all first
/// (the official `Format.cs` rules: an index below 256, `{{` and `}}` for braces, a lone brace
/// invalid).
pub fn parse(format: &str, arg_count: usize) -> Result<Vec<Segment<'_>>, CompositeError> {
    let bytes = format.as_bytes();
    let mut segments = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let lbrace = format[index..].find('{').map(|i| i + index);
        let rbrace = format[index..].find('}').map(|i| i + index);
        match (lbrace, rbrace) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if bytes.get(l + 1) == Some(&b'{') {
                    segments.push(Segment::Text(&format[index..=l]));
                    index = l + 2;
                    continue;
                }
                let digits = bytes[l + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let arg_index = format[l + 1..l + 1 + digits].parse::<u8>().ok();
                let (Some(arg_index), Some(_)) = (arg_index.filter(|_| digits > 0), r) else {
                    return Err(CompositeError::Invalid);
                };
                let Some((specifiers, end)) = read_specifiers(format, l + 1 + digits) else {
                    return Err(CompositeError::Invalid);
                };
                if usize::from(arg_index) >= arg_count {
                    return Err(CompositeError::MissingArgument);
                }
                if l > index {
                    segments.push(Segment::Text(&format[index..l]));
                }
                segments.push(Segment::Arg {
                    index: usize::from(arg_index),
                    specifiers,
                });
                index = end + 1;
            }
            (_, Some(r)) => {
                if bytes.get(r + 1) != Some(&b'}') {
                    return Err(CompositeError::Invalid);
                }
                segments.push(Segment::Text(&format[index..=r]));
                index = r + 2;
            }
            _ => {
                segments.push(Segment::Text(&format[index..]));
                break;
            }
        }
    }
    Ok(segments)
}

/// Reads `}` or `:spec}` (with `}}` escaping a brace) at `start`; the specifiers and the index of
/// the closing brace.
fn read_specifiers(format: &str, start: usize) -> Option<(String, usize)> {
    let bytes = format.as_bytes();
    match bytes.get(start)? {
        b'}' => return Some((String::new(), start)),
        b':' => {}
        _ => return None,
    }
    let mut specifiers = String::new();
    let mut chars = format[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        if c != '}' {
            specifiers.push(c);
        } else if format[start + 1 + offset + 1..].starts_with('}') {
            specifiers.push('}');
            chars.next();
        } else {
            return Some((specifiers, start + 1 + offset));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arguments_and_escapes() {
        assert_eq!(
            parse("a {0} {{b}} {1:x}", 2).unwrap(),
            [
                Segment::Text("a "),
                Segment::Arg {
                    index: 0,
                    specifiers: String::new()
                },
                Segment::Text(" {"),
                Segment::Text("b}"),
                Segment::Text(" "),
                Segment::Arg {
                    index: 1,
                    specifiers: "x".into()
                },
            ]
        );
        assert_eq!(parse("{1}", 1), Err(CompositeError::MissingArgument));
        for bad in ["{", "}", "{x}", "{0", "a } b"] {
            assert_eq!(parse(bad, 1), Err(CompositeError::Invalid), "{bad}");
        }
    }
}
