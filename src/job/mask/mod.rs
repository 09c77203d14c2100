//! Secret masking: the job-wide set of values that must never reach a log, a summary or an
//! output, and the function that replaces them with `***`.
//!
//! Owns: registering values (secret variables, `::add-mask::`, mask hints, tokens) together with
//! the encoded variants the official runner also hides (`HostContext` value encoders: base64 at
//! three byte offsets, JSON-, URI-, XML-escaped, `"`→`\"`, `'`→`''`, quote-trimmed, PowerShell
//! `&` fragments), and masking text. Does not own line assembly ([`super::lines`]) or deciding
//! what to mask (the step runtime feeds it).
//!
//! Masking finds every occurrence of every registered pattern, overlapping ones included
//! (Aho-Corasick over the literals, plus the regex hints), merges overlapping or touching ranges
//! and replaces each merged range with [`MASK`]. It works on bytes, so a line that is not valid
//! UTF-8 is masked before it is decoded.
//!
//! A job controls how many values it registers (`::add-mask::` in a loop), so the cost of
//! adding stays linear: the literals live in a log-structured set of automata. New literals go
//! to a small level; when a level grows as large as the one below it, the two are merged and
//! rebuilt. Each literal is rebuilt O(log n) times and a line is scanned by O(log n) automata,
//! instead of one automaton rebuilt over everything after every value (quadratic). A job may
//! register at most [`MAX_VALUES`] values and [`MAX_LITERAL_BYTES`] of patterns; past that,
//! every further line of the job is withheld (masked whole): nothing it adds can leak, and
//! memory stays bounded.

use std::collections::BTreeSet;
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shortest base64 "core" (the characters fully determined by a value at a given alignment)
/// registered in addition to the official padded encodings; shorter cores would mask unrelated
/// base64 text by chance.
const MIN_BASE64_CORE_CHARS: usize = 8;

/// PowerShell `&` fragments shorter than this are not registered (official rule).
const MIN_AMPERSAND_FRAGMENT_CHARS: usize = 6;

/// Quote-trimmed variants are registered only for values longer than this (official rule).
const TRIM_QUOTES_MIN_CHARS: usize = 8;

/// Most values (`::add-mask::`, secrets, hints) a job may register; the official runner has no
/// limit, but a job controls this number.
pub const MAX_VALUES: usize = 50_000;

/// Most bytes of literal patterns (values and their encodings) a job may register.
pub const MAX_LITERAL_BYTES: usize = 16 * 1024 * 1024;

/// Literals a new level starts with before it is merged into larger ones.
const SMALL_LEVEL: usize = 64;

/// Errors of the masker.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A regex mask hint does not compile.
    #[error("mask hint is not a valid regular expression")]
    InvalidRegex {
        /// The cause.
        #[source]
        source: regex::Error,
    },
}

/// The job-wide set of secrets and the masking function.
#[derive(Debug, Default)]
pub struct SecretMasker {
    /// Every literal pattern (values and their encodings), for de-duplication.
    literals: BTreeSet<String>,
    /// The automata over the literals, brought up to date by the next mask (so a burst of
    /// `::add-mask::` lines with no output in between costs one build).
    automata: Mutex<Levels>,
    /// Regex hints (bytes regexes so invalid UTF-8 input can be masked too).
    regexes: Vec<regex::bytes::Regex>,
    /// Length in bytes of the longest literal.
    max_literal_len: usize,
    /// Values registered.
    values: usize,
    /// Bytes of literal patterns registered.
    literal_bytes: usize,
    /// The limits were exceeded: every further line is withheld.
    overflowed: bool,
    /// [`MAX_VALUES`] and [`MAX_LITERAL_BYTES`] (lower in tests).
    limits: (usize, usize),
}

impl Clone for SecretMasker {
    fn clone(&self) -> Self {
        SecretMasker {
            literals: self.literals.clone(),
            automata: Mutex::new(self.levels().clone()),
            regexes: self.regexes.clone(),
            max_literal_len: self.max_literal_len,
            values: self.values,
            literal_bytes: self.literal_bytes,
            overflowed: self.overflowed,
            limits: self.limits,
        }
    }
}

/// Literals not in an automaton yet, and the levels (sizes shrink from first to last).
#[derive(Debug, Default, Clone)]
struct Levels {
    unbuilt: Vec<String>,
    levels: Vec<Level>,
}

impl Levels {
    /// Builds the unbuilt literals into a level and merges levels like a binary counter.
    fn catch_up(&mut self) {
        if self.unbuilt.is_empty() {
            return;
        }
        let fresh = std::mem::take(&mut self.unbuilt);
        match self.levels.last_mut() {
            Some(last) if last.literals.len() + fresh.len() <= SMALL_LEVEL => {
                let mut literals = std::mem::take(&mut last.literals);
                literals.extend(fresh);
                *last = Level::new(literals);
            }
            _ => self.levels.push(Level::new(fresh)),
        }
        while self.levels.len() >= 2 {
            let n = self.levels.len();
            if self.levels[n - 1].literals.len() < self.levels[n - 2].literals.len() {
                break;
            }
            let top = self.levels.pop().map(|l| l.literals).unwrap_or_default();
            let mut merged = self.levels.pop().map(|l| l.literals).unwrap_or_default();
            merged.extend(top);
            self.levels.push(Level::new(merged));
        }
    }
}

/// Literals with the automaton over them (`None`: the build failed; then a plain scan).
#[derive(Debug, Clone)]
struct Level {
    literals: Vec<String>,
    automaton: Option<AhoCorasick>,
}

impl Level {
    fn new(literals: Vec<String>) -> Level {
        // Building only fails beyond the crate's size limits, far past MAX_LITERAL_BYTES; the
        // plain scan then keeps masking correct.
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&literals)
            .ok();
        Level {
            literals,
            automaton,
        }
    }

    fn find(&self, bytes: &[u8], ranges: &mut Vec<(usize, usize)>) {
        match &self.automaton {
            Some(automaton) => {
                for m in automaton.find_overlapping_iter(bytes) {
                    ranges.push((m.start(), m.end()));
                }
            }
            None => {
                for literal in &self.literals {
                    let pattern = literal.as_bytes();
                    for (start, window) in bytes.windows(pattern.len()).enumerate() {
                        if window == pattern {
                            ranges.push((start, start + pattern.len()));
                        }
                    }
                }
            }
        }
    }
}

impl SecretMasker {
    /// An empty masker (masks nothing) with the default limits.
    pub fn new() -> Self {
        SecretMasker {
            limits: (MAX_VALUES, MAX_LITERAL_BYTES),
            ..SecretMasker::default()
        }
    }

    /// Registers a secret value: the trimmed value and, for a multi-line value, each non-empty
    /// trimmed line, each with its encoded variants. Blank values are ignored.
    pub fn add_value(&mut self, value: &str) {
        let trimmed = value.trim();
        if trimmed.is_empty() && !value.contains(['\n', '\r']) {
            return;
        }
        self.values += 1;
        if self.values > self.limits.0 {
            self.overflow();
            return;
        }
        let mut fresh = Vec::new();
        if !trimmed.is_empty() {
            self.add_with_variants(trimmed, &mut fresh);
        }
        if value.contains(['\n', '\r']) {
            for line in value.split(['\n', '\r']) {
                let line = line.trim();
                if !line.is_empty() {
                    self.add_with_variants(line, &mut fresh);
                }
            }
        }
        self.levels_mut().unbuilt.extend(fresh);
    }

    fn levels(&self) -> std::sync::MutexGuard<'_, Levels> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.automata.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn levels_mut(&mut self) -> &mut Levels {
        self.automata.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the job exceeded [`MAX_VALUES`] or [`MAX_LITERAL_BYTES`]: every line is withheld
    /// from now on.
    pub fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    fn overflow(&mut self) {
        if !self.overflowed {
            tracing::warn!(
                values = self.values,
                bytes = self.literal_bytes,
                "the job registered more values to mask than allowed; its further output is withheld"
            );
        }
        self.overflowed = true;
    }

    /// Registers a GitHub token: the token itself and the base64 of `x-access-token:<token>`
    /// (how git sends it in an HTTP basic-auth header).
    pub fn add_github_token(&mut self, token: &str) {
        self.add_value(token);
        let trimmed = token.trim();
        if !trimmed.is_empty() {
            let basic = STANDARD.encode(format!("x-access-token:{trimmed}"));
            self.add_value(&basic);
        }
    }

    /// Registers a `regex` mask hint from the job message: as a regular expression and as a
    /// literal value (the official runner does both).
    pub fn add_regex(&mut self, pattern: &str) -> Result<(), MaskError> {
        if pattern.is_empty() {
            return Ok(());
        }
        let regex = regex::bytes::Regex::new(pattern)
            .map_err(|source| MaskError::InvalidRegex { source })?;
        self.regexes.push(regex);
        self.add_value(pattern);
        Ok(())
    }

    /// True if nothing is registered (and nothing is withheld).
    pub fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.regexes.is_empty() && !self.overflowed
    }

    /// Length in bytes of the longest literal pattern (0 if none). A stream cut at least this
    /// many bytes minus one after the start of a match cannot split that match.
    pub fn max_literal_len(&self) -> usize {
        self.max_literal_len
    }

    /// Masks a string.
    pub fn mask(&self, text: &str) -> String {
        if self.is_empty() || text.is_empty() {
            return text.to_owned();
        }
        let ranges = self.match_ranges(text.as_bytes());
        if ranges.is_empty() {
            return text.to_owned();
        }
        // Ranges come from UTF-8 patterns matched in UTF-8 text, so they fall on char
        // boundaries except for regex hints, which are matched bytewise; splice bytewise and
        // decode once so both cases stay sound.
        String::from_utf8_lossy(&splice(text.as_bytes(), &ranges)).into_owned()
    }

    /// Masks bytes (for output that may not be valid UTF-8).
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        if self.is_empty() || bytes.is_empty() {
            return bytes.to_vec();
        }
        let ranges = self.match_ranges(bytes);
        splice(bytes, &ranges)
    }

    /// The merged (overlapping or touching ranges joined), sorted byte ranges of all matches
    /// (the whole text once the job exceeded the masking limits).
    pub fn match_ranges(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        if self.overflowed {
            return if bytes.is_empty() {
                Vec::new()
            } else {
                vec![(0, bytes.len())]
            };
        }
        let mut ranges = Vec::new();
        let mut levels = self.levels();
        levels.catch_up();
        for level in &levels.levels {
            level.find(bytes, &mut ranges);
        }
        drop(levels);
        for regex in &self.regexes {
            for m in regex.find_iter(bytes) {
                if m.end() > m.start() {
                    ranges.push((m.start(), m.end()));
                }
            }
        }
        merge_ranges(ranges)
    }

    fn add_with_variants(&mut self, value: &str, fresh: &mut Vec<String>) {
        if self.overflowed {
            return;
        }
        for variant in encoded_variants(value) {
            let len = variant.len();
            if variant.is_empty() || self.literals.contains(&variant) {
                continue;
            }
            if self.literal_bytes + len > self.limits.1 {
                self.overflow();
                return;
            }
            self.literal_bytes += len;
            self.max_literal_len = self.max_literal_len.max(len);
            self.literals.insert(variant.clone());
            fresh.push(variant);
        }
    }
}

/// Sorts ranges and joins those that overlap or touch.
fn merge_ranges(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Replaces each (sorted, disjoint) range with [`MASK`].
fn splice(bytes: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for &(start, end) in ranges {
        out.extend_from_slice(&bytes[at..start]);
        out.extend_from_slice(MASK.as_bytes());
        at = end;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

/// The value and every encoding of it the official runner registers, plus the base64 cores.
fn encoded_variants(value: &str) -> Vec<String> {
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
fn base64_shifted(value: &str, shift: usize) -> String {
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
fn json_escape(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `Uri.EscapeDataString`: everything but `A-Z a-z 0-9 - _ . ~` percent-encoded (UTF-8, upper
/// hex).
fn uri_data_escape(value: &str) -> String {
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
fn xml_escape(value: &str) -> String {
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
fn trim_double_quotes(value: &str) -> String {
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
fn powershell_pre_ampersand(value: &str) -> String {
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
fn powershell_post_ampersand(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn masker(values: &[&str]) -> SecretMasker {
        let mut m = SecretMasker::new();
        for v in values {
            m.add_value(v);
        }
        m
    }

    #[test]
    fn masks_plain_occurrences() {
        let m = masker(&["hunter2"]);
        assert_eq!(m.mask("pw=hunter2 and hunter2!"), "pw=*** and ***!");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn value_is_trimmed_and_multi_line_values_mask_each_line() {
        let m = masker(&["  first line\n  second line \r\nthird\n\n"]);
        assert_eq!(m.mask("a first line b"), "a *** b");
        assert_eq!(m.mask("second line"), "***");
        assert_eq!(m.mask("x third y"), "x *** y");
    }

    #[test]
    fn blank_values_register_nothing() {
        let m = masker(&["", "   ", "\n\t"]);
        assert!(m.is_empty());
        assert_eq!(m.mask("   "), "   ");
    }

    #[test]
    fn overlapping_and_adjacent_matches_merge_into_one_mask() {
        let m = masker(&["abcd", "cdef"]);
        assert_eq!(m.mask("xabcdefy"), "x***y");
        let m = masker(&["ab", "cd"]);
        assert_eq!(m.mask("abcd"), "***");
        let m = masker(&["aaa"]);
        assert_eq!(m.mask("aaaaa"), "***");
    }

    #[test]
    fn json_and_quote_escaped_forms_are_masked() {
        let secret = "p\"a'ss\\word";
        let m = masker(&[secret]);
        let json = serde_json::json!({ "k": secret }).to_string();
        assert!(!m.mask(&json).contains("ss\\\\word"), "{}", m.mask(&json));
        assert_eq!(m.mask(&json), r#"{"k":"***"}"#);
        assert_eq!(m.mask("x p\\\"a'ss\\word"), "x ***");
        assert_eq!(m.mask("x p\"a''ss\\word"), "x ***");
    }

    #[test]
    fn uri_and_xml_escaped_forms_are_masked() {
        let m = masker(&["a b&c<d>"]);
        assert_eq!(m.mask("?q=a%20b%26c%3Cd%3E&x"), "?q=***&x");
        assert_eq!(m.mask("<v>a b&amp;c&lt;d&gt;</v>"), "<v>***</v>");
    }

    #[test]
    fn base64_at_every_alignment_is_masked() {
        let secret = "correct-horse-battery";
        let m = masker(&[secret]);
        for prefix in ["", "u:", "us:", "use:"] {
            let encoded = STANDARD.encode(format!("{prefix}{secret}"));
            let masked = m.mask(&encoded);
            assert!(
                masked.contains(MASK),
                "prefix {prefix:?}: {encoded} -> {masked}"
            );
            // Whatever remains visible is at most the few characters mixing in neighbours.
            let visible = masked.replace(MASK, "");
            assert!(visible.len() <= 8, "prefix {prefix:?}: {masked}");
        }
        let padded = STANDARD.encode(secret);
        assert_eq!(m.mask(&padded), MASK);
    }

    #[test]
    fn github_token_basic_auth_form_is_masked() {
        let mut m = SecretMasker::new();
        m.add_github_token("ghs_abc123");
        let header = STANDARD.encode("x-access-token:ghs_abc123");
        assert_eq!(
            m.mask(&format!("Authorization: basic {header}")),
            "Authorization: basic ***"
        );
    }

    #[test]
    fn quote_trimmed_and_ampersand_fragments() {
        let m = masker(&["\"long-quoted\""]);
        assert_eq!(m.mask("v=long-quoted;"), "v=***;");
        let m = masker(&["abcdef&ghijkl"]);
        assert_eq!(m.mask("[abcdef&] [ghijkl]"), "[***] [***]");
        // Short quoted values are not trimmed.
        assert_eq!(trim_double_quotes("\"short\""), "");
    }

    #[test]
    fn regex_hints_mask_as_regex_and_literal() {
        let mut m = SecretMasker::new();
        m.add_regex("tok_[0-9]+").unwrap();
        assert_eq!(m.mask("a tok_123 b tok_9"), "a *** b ***");
        assert_eq!(m.mask("the hint tok_[0-9]+ itself"), "the hint *** itself");
        assert!(m.add_regex("(").is_err());
    }

    #[test]
    fn masks_invalid_utf8_bytes() {
        let m = masker(&["sekrit"]);
        let masked = m.mask_bytes(b"\xff\xfesekrit\xff");
        assert_eq!(masked, b"\xff\xfe***\xff");
    }

    #[test]
    fn encoders_match_official_forms() {
        assert_eq!(uri_data_escape("a b/é~"), "a%20b%2F%C3%A9~");
        assert_eq!(xml_escape("<'&\">"), "&lt;&apos;&amp;&quot;&gt;");
        assert_eq!(json_escape("a\"b\\c\n\u{1}"), "a\\\"b\\\\c\\n\\u0001");
        assert_eq!(base64_shifted("abcd", 1), STANDARD.encode("bcd"));
        assert_eq!(base64_shifted("a", 2), STANDARD.encode("a"));
        assert_eq!(powershell_pre_ampersand("secret1&+secret2"), "secret1&+");
        assert_eq!(powershell_post_ampersand("secret1&+secret2"), "ecret2");
        assert_eq!(powershell_post_ampersand("part1&part2&part3x"), "part3x");
    }

    #[test]
    fn values_added_between_lines_mask_every_one() {
        let mut m = SecretMasker::new();
        for i in 0..3000 {
            m.add_value(&format!("alt-secret-{i:05}x"));
            let earlier = format!("alt-secret-{:05}x", i / 2);
            let line = format!("now alt-secret-{i:05}x then {earlier} end");
            assert_eq!(m.mask(&line), "now *** then *** end", "value {i}");
        }
        assert_eq!(m.mask("alt-secret-99999x"), "alt-secret-99999x");
    }

    #[test]
    fn past_the_limits_every_line_is_withheld() {
        let mut m = SecretMasker {
            limits: (10, 1 << 20),
            ..SecretMasker::default()
        };
        for i in 0..10 {
            m.add_value(&format!("value-{i}"));
        }
        assert!(!m.is_overflowed());
        assert_eq!(m.mask("a value-3 b"), "a *** b");
        m.add_value("one-too-many");
        assert!(m.is_overflowed());
        assert_eq!(m.mask("anything at all, one-too-many or not"), MASK);
        assert_eq!(m.mask(""), "");
        // The byte limit likewise.
        let mut m = SecretMasker {
            limits: (1000, 64),
            ..SecretMasker::default()
        };
        m.add_value("short");
        assert!(!m.is_overflowed());
        m.add_value(&"x".repeat(100));
        assert!(m.is_overflowed());
        assert_eq!(m.mask_bytes(b"bytes too"), MASK.as_bytes());
    }

    #[test]
    fn a_burst_of_values_masks_every_one() {
        let mut m = SecretMasker::new();
        let started = std::time::Instant::now();
        for i in 0..5000 {
            m.add_value(&format!("burst-secret-{i:05}"));
        }
        let registered = started.elapsed();
        let line = "a burst-secret-00042 b burst-secret-04999 c";
        assert_eq!(m.mask(line), "a *** b *** c");
        println!(
            "5000 values: registered in {registered:?}, first line masked after {:?}",
            started.elapsed()
        );
    }

    proptest! {
        #[test]
        fn masked_text_never_contains_a_secret(
            secrets in proptest::collection::vec("[a-zA-Z0-9!\"'&<> %]{1,12}", 1..4),
            filler in proptest::collection::vec("[a-zA-Z0-9 \"'%]{0,8}", 0..6),
        ) {
            let m = masker(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
            let mut text = String::new();
            for (i, f) in filler.iter().enumerate() {
                text.push_str(f);
                text.push_str(&secrets[i % secrets.len()]);
            }
            let masked = m.mask(&text);
            for s in &secrets {
                let s = s.trim();
                if !s.is_empty() {
                    prop_assert!(!masked.contains(s), "{masked:?} contains {s:?}");
                }
            }
        }
    }
}
