//! The encoded forms of a secret the official runner also hides (`HostContext` value
//! encoders): base64 at three byte offsets (plus the alignment-independent base64 "cores"),
//! JSON-, URI- and XML-escaped, `"`→`\"`, `'`→`''`, quote-trimmed, and the PowerShell `&`
//! fragments.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Shortest base64 "core" (the characters fully determined by a value at a given alignment)
/// registered in addition to the official padded encodings; shorter cores would mask unrelated
/// base64 text by chance.
const MIN_BASE64_CORE_CHARS: usize = 8;

/// PowerShell `&` fragments shorter than this are not registered (official rule).
const MIN_AMPERSAND_FRAGMENT_CHARS: usize = 6;

/// Quote-trimmed variants are registered only for values longer than this (official rule).
const TRIM_QUOTES_MIN_CHARS: usize = 8;

/// The value and every encoding of it the official runner registers, plus the base64 cores.
pub(super) fn encoded_variants(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned()];
    for shift in 0..3 {
        out.push(base64_shifted(value, shift));
        out.push(base64_core(value, shift));
    }
    out.push(value.replace('"', "\\\""));
    out.push(value.replace('\'', "''"));
    out.push(json_escape(value));
    out.push(uri_data_escape(value));
    out.push(xml_escape(value));
    out.push(trim_double_quotes(value));
    out.push(powershell_pre_ampersand(value));
    out.push(powershell_post_ampersand(value));
    out
}

/// Base64 of the UTF-8 bytes after dropping the first `shift` bytes (all of them if the value
/// is not longer than `shift`, as the official encoder does).
pub(super) fn base64_shifted(value: &str, shift: usize) -> String {
    let bytes = value.as_bytes();
    if bytes.len() > shift {
        STANDARD.encode(&bytes[shift..])
    } else {
        STANDARD.encode(bytes)
    }
}

/// The base64 characters of `value[shift..]` that do not depend on neighbouring bytes when the
/// value sits at a 3-byte boundary of a longer encoded stream (whole groups only, no padding).
/// Empty when shorter than [`MIN_BASE64_CORE_CHARS`].
fn base64_core(value: &str, shift: usize) -> String {
    let bytes = value.as_bytes();
    if bytes.len() <= shift {
        return String::new();
    }
    let rest = &bytes[shift..];
    let whole = rest.len() - rest.len() % 3;
    let core = STANDARD.encode(&rest[..whole]);
    if core.len() >= MIN_BASE64_CORE_CHARS {
        core
    } else {
        String::new()
    }
}

/// JSON string escaping without the surrounding quotes.
pub(super) fn json_escape(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `Uri.EscapeDataString`: everything but `A-Z a-z 0-9 - _ . ~` percent-encoded (UTF-8, upper
/// hex).
pub(super) fn uri_data_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `SecurityElement.Escape`: `& < > " '` as XML entities.
pub(super) fn xml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// The value without its surrounding double quotes, if it is longer than
/// [`TRIM_QUOTES_MIN_CHARS`] characters and quoted.
pub(super) fn trim_double_quotes(value: &str) -> String {
    if value.chars().count() > TRIM_QUOTES_MIN_CHARS
        && value.starts_with('"')
        && value.ends_with('"')
    {
        value[1..value.len() - 1].to_owned()
    } else {
        String::new()
    }
}

/// The part PowerShell prints before an `&` when it colours an error (official encoder).
pub(super) fn powershell_pre_ampersand(value: &str) -> String {
    if !value.contains('&') {
        return String::new();
    }
    let section = match value.find("&+") {
        Some(i) => &value[..i + 2],
        None => value.rfind('&').map_or("", |i| &value[..i + 1]),
    };
    keep_if_long(section)
}

/// The part PowerShell prints after an `&` (skipping the coloured letter after `&+`).
pub(super) fn powershell_post_ampersand(value: &str) -> String {
    if !value.contains('&') {
        return String::new();
    }
    let section = match value.find("&+") {
        Some(i) => {
            let after = &value[i + 2..];
            after.char_indices().nth(1).map_or("", |(j, _)| &after[j..])
        }
        None => value.rfind('&').map_or("", |i| &value[i + 1..]),
    };
    keep_if_long(section)
}

fn keep_if_long(section: &str) -> String {
    if section.chars().count() >= MIN_AMPERSAND_FRAGMENT_CHARS {
        section.to_owned()
    } else {
        String::new()
    }
}
