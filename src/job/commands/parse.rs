//! Parsing one workflow-command line: `::name k=v,k2=v2::data` (v2) and the legacy
//! `##[name k=v;k2=v2]data`, with the official unescaping of data and property values.

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowCommand {
    /// The name as written (compare case-insensitively).
    pub name: String,
    /// Properties in order; keys compare case-insensitively, a later key wins.
    pub properties: Vec<(String, String)>,
    /// The data after the command, unescaped.
    pub data: String,
}

impl WorkflowCommand {
    /// The value of a property (case-insensitive key; the last one wins).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a v2 command: after leading whitespace the line starts with `::`. `is_registered`
/// decides which names are commands.
pub fn parse_v2(line: &str, is_registered: impl Fn(&str) -> bool) -> Option<WorkflowCommand> {
    let body = line.trim_start().strip_prefix("::")?;
    let end = body.find("::")?;
    let info = &body[..end];
    let (name, props) = registered_name(info, &is_registered)?;
    let properties = props
        .map(|p| split_properties(p.trim(), ',', unescape_property))
        .unwrap_or_default();
    Some(WorkflowCommand {
        name: name.to_owned(),
        properties,
        data: unescape_data(&body[end + 2..]),
    })
}

/// The command name and properties of `info` (`name k=v...`), if the name is registered.
fn registered_name<'a>(
    info: &'a str,
    is_registered: &impl Fn(&str) -> bool,
) -> Option<(&'a str, Option<&'a str>)> {
    let (name, props) = match info.find(' ') {
        Some(space) => (&info[..space], Some(&info[space + 1..])),
        None => (info, None),
    };
    (!name.is_empty() && is_registered(name)).then_some((name, props))
}

/// Parses a legacy command: `##[name k=v;k2=v2]data` anywhere in the line.
pub fn parse_legacy(line: &str, is_registered: impl Fn(&str) -> bool) -> Option<WorkflowCommand> {
    let start = line.find("##[")? + 3;
    let close = start + line[start..].find(']')?;
    let info = &line[start..close];
    let (name, props) = registered_name(info, &is_registered)?;
    let properties = props
        .map(|p| split_properties(p, ';', unescape_legacy))
        .unwrap_or_default();
    Some(WorkflowCommand {
        name: name.to_owned(),
        properties,
        data: unescape_legacy(&line[close + 1..]),
    })
}

/// Splits `k=v<sep>k2=v2`; pairs without a key or a value are dropped.
fn split_properties(
    text: &str,
    separator: char,
    unescape: fn(&str) -> String,
) -> Vec<(String, String)> {
    text.split(separator)
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (!key.is_empty() && !value.is_empty()).then(|| (key.to_owned(), unescape(value)))
        })
        .collect()
}

fn replace_all(text: &str, mappings: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (escaped, plain) in mappings {
        if out.contains(escaped) {
            out = out.replace(escaped, plain);
        }
    }
    out
}

/// Unescapes command data: `%0D`, `%0A`, `%25` (in that order, case-sensitive).
pub fn unescape_data(text: &str) -> String {
    replace_all(text, &[("%0D", "\r"), ("%0A", "\n"), ("%25", "%")])
}

/// Unescapes a v2 property value: `%0D`, `%0A`, `%3A`, `%2C`, `%25`.
pub fn unescape_property(text: &str) -> String {
    replace_all(
        text,
        &[
            ("%0D", "\r"),
            ("%0A", "\n"),
            ("%3A", ":"),
            ("%2C", ","),
            ("%25", "%"),
        ],
    )
}

/// Unescapes legacy data and property values: `%3B`, `%0D`, `%0A`, `%5D`, `%25`.
pub fn unescape_legacy(text: &str) -> String {
    replace_all(
        text,
        &[
            ("%3B", ";"),
            ("%0D", "\r"),
            ("%0A", "\n"),
            ("%5D", "]"),
            ("%25", "%"),
        ],
    )
}
