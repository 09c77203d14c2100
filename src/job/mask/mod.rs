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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

mod levels;
mod variants;

use levels::Levels;
use variants::encoded_variants;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Most values (`::add-mask::`, secrets, hints) a job may register; the official runner has no
/// limit, but a job controls this number.
pub const MAX_VALUES: usize = 50_000;

/// Most bytes of literal patterns (values and their encodings) a job may register.
pub const MAX_LITERAL_BYTES: usize = 16 * 1024 * 1024;

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

#[cfg(test)]
mod tests;
