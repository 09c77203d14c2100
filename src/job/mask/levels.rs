//! The log-structured set of Aho-Corasick automata over the registered literals: new literals
//! wait in a small unbuilt list, are built into a level on the next mask, and a level as large
//! as the one below it is merged with it and rebuilt (like a binary counter), so each literal
//! is rebuilt O(log n) times and a line is scanned by O(log n) automata.

use aho_corasick::{AhoCorasick, MatchKind};

/// Literals a new level starts with before it is merged into larger ones.
const SMALL_LEVEL: usize = 64;

/// Literals not in an automaton yet, and the levels (sizes shrink from first to last).
#[derive(Debug, Default, Clone)]
pub(super) struct Levels {
    pub(super) unbuilt: Vec<String>,
    pub(super) levels: Vec<Level>,
}

impl Levels {
    /// Builds the unbuilt literals into a level and merges levels like a binary counter.
    pub(super) fn catch_up(&mut self) {
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
pub(super) struct Level {
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

    /// Adds the byte range of every match (overlapping ones included) to `ranges`.
    pub(super) fn find(&self, bytes: &[u8], ranges: &mut Vec<(usize, usize)>) {
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
