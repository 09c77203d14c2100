//! Following the guest's serial console, which QEMU appends to a file.
//!
//! Owns: reading complete new lines from the console file (from the offset where this VM's
//! output starts), and the last lines shown in boot errors.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// Lines of console output quoted in boot errors.
pub const ERROR_TAIL_LINES: usize = 20;

/// Longest partial line kept while waiting for its end (longer ones are cut).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Reads the lines QEMU appends to a console file.
#[derive(Debug)]
pub struct ConsoleReader {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl ConsoleReader {
    /// Follows `path` from byte `offset`.
    pub fn new(path: &Path, offset: u64) -> Self {
        Self {
            path: path.to_owned(),
            offset,
            partial: Vec::new(),
        }
    }

    /// Returns the complete lines appended since the last call (lossily decoded). A file that
    /// does not exist yet has no lines.
    pub fn read_lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            );
        }
        if self.partial.len() > MAX_LINE_BYTES {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned());
        }
        Ok(lines)
    }
}

/// The last `max_lines` lines of the console file from `offset` (for error messages), with
/// terminal escape sequences removed.
pub fn tail(path: &Path, offset: u64, max_lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect::<String>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn yields_complete_lines_only_and_starts_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, b"previous vm\n").unwrap();
        let mut reader = ConsoleReader::new(&path, 12);
        assert!(reader.read_lines().unwrap().is_empty());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"first\r\nsec").unwrap();
        assert_eq!(reader.read_lines().unwrap(), ["first"]);
        file.write_all(b"ond\nthird").unwrap();
        assert_eq!(reader.read_lines().unwrap(), ["second"]);
        assert_eq!(tail(&path, 12, 2), "second\nthird");
    }

    #[test]
    fn missing_file_has_no_lines() {
        let mut reader = ConsoleReader::new(Path::new("/nonexistent/console.log"), 0);
        assert!(reader.read_lines().unwrap().is_empty());
        assert_eq!(tail(Path::new("/nonexistent/console.log"), 0, 5), "");
    }

    #[test]
    fn tail_strips_escape_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, b"a\n\x1b[2Jb\nc\n").unwrap();
        assert_eq!(tail(&path, 0, 2), "[2Jb\nc");
    }
}
