//! Line assembly for streamed command output: bytes arrive in arbitrary chunks (a line, or a
//! secret, may be split across chunks); complete lines come out.
//!
//! Owns: splitting one stream (stdout or stderr: one assembler each) into lines. Like the
//! official runner's `StreamReader.ReadLine`, a line ends at `\n`, `\r\n` or a lone `\r`; the
//! terminator is dropped; a final line without terminator is returned by
//! [`LineAssembler::finish`]; invalid UTF-8 is decoded lossily (after the line is complete, so
//! a multi-byte character split across chunks survives). Lines are returned unmasked: the
//! caller runs workflow-command processing, then masks ([`super::mask`]) before emitting.
//!
//! A line longer than [`MAX_LINE_BYTES`] is cut into pieces. The cut is placed so that it splits
//! no occurrence of a registered secret: it lies at least `longest secret - 1` bytes before the
//! end of the buffer (so any secret starting before the cut is wholly inside the buffer) and is
//! moved off any match found there.

use super::mask::SecretMasker;

/// Longest line kept whole; longer lines are cut into pieces of about this size.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Splits one output stream into lines.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// Bytes of the current, unterminated line.
    buf: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
}

impl LineAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        LineAssembler::default()
    }

    /// Feeds a chunk and returns the lines it completes, in order. `masker` is consulted only to
    /// place the cut of an over-long line.
    pub fn push(&mut self, chunk: &[u8], masker: &SecretMasker) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        // An empty chunk must not forget a pending `\r`: its `\n` may come in the next one.
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.buf.extend_from_slice(&rest[..pos]);
            self.cut_long(masker, &mut lines);
            lines.push(decode(&std::mem::take(&mut self.buf)));
            let terminator = rest[pos];
            rest = &rest[pos + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.buf.extend_from_slice(rest);
        self.cut_long(masker, &mut lines);
        lines
    }

    /// Ends the stream: returns the final line if it had no terminator.
    pub fn finish(&mut self) -> Option<String> {
        self.after_cr = false;
        if self.buf.is_empty() {
            None
        } else {
            Some(decode(&std::mem::take(&mut self.buf)))
        }
    }

    /// Emits pieces of the buffer while it is longer than [`MAX_LINE_BYTES`].
    fn cut_long(&mut self, masker: &SecretMasker, lines: &mut Vec<String>) {
        while self.buf.len() > MAX_LINE_BYTES {
            let cut = safe_cut(&self.buf, masker);
            let piece: Vec<u8> = self.buf.drain(..cut).collect();
            lines.push(decode(&piece));
        }
    }
}

/// Where to cut an over-long buffer: not inside a registered secret (one that starts before the
/// cut ends inside the buffer), and on a UTF-8 character boundary.
fn safe_cut(buf: &[u8], masker: &SecretMasker) -> usize {
    let overlap = masker.max_literal_len().saturating_sub(1);
    let mut cut = MAX_LINE_BYTES
        .saturating_sub(overlap)
        .max(MAX_LINE_BYTES / 2);
    for (start, end) in masker.match_ranges(buf) {
        if start < cut && cut < end {
            cut = if start > 0 { start } else { end };
            break;
        }
    }
    let boundary = (0..4)
        .map(|back| cut.saturating_sub(back))
        .find(|&at| at == 0 || at >= buf.len() || (buf[at] & 0b1100_0000) != 0b1000_0000)
        .unwrap_or(cut);
    if boundary == 0 { cut } else { boundary }
}

fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assemble(chunks: &[&[u8]]) -> Vec<String> {
        let masker = SecretMasker::new();
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(a.push(c, &masker));
        }
        out.extend(a.finish());
        out
    }

    #[test]
    fn splits_on_lf_crlf_and_lone_cr() {
        assert_eq!(
            assemble(&[b"a\nb\r\nc\rd"]),
            ["a", "b", "c", "d"].map(String::from)
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_terminator() {
        assert_eq!(
            assemble(&[b"one\r", b"\ntwo\n"]),
            ["one", "two"].map(String::from)
        );
        assert_eq!(
            assemble(&[b"one\r", b"two\n"]),
            ["one", "two"].map(String::from)
        );
        assert_eq!(assemble(&[b"one\r", b"", b"\n"]), ["one"]);
    }

    #[test]
    fn empty_lines_are_kept_and_final_line_without_newline_is_returned() {
        assert_eq!(assemble(&[b"\n\nx"]), ["", "", "x"].map(String::from));
        assert_eq!(assemble(&[b"x\n"]), ["x"].map(String::from));
    }

    #[test]
    fn multibyte_character_split_across_chunks_survives() {
        let text = "héllo wörld\n".as_bytes();
        assert_eq!(
            assemble(&[&text[..2], &text[2..9], &text[9..]]),
            ["héllo wörld"]
        );
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(assemble(&[b"a\xffb\n"]), ["a\u{fffd}b"]);
    }

    #[test]
    fn a_one_mib_line_comes_through_whole() {
        let line = vec![b'x'; 1024 * 1024];
        let masker = SecretMasker::new();
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        for chunk in line.chunks(4096) {
            out.extend(a.push(chunk, &masker));
        }
        out.extend(a.push(b"\n", &masker));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 1024 * 1024);
    }

    #[test]
    fn an_over_long_line_is_cut_without_splitting_a_secret() {
        let secret = "s3cr3t-value-0123456789";
        let mut masker = SecretMasker::new();
        masker.add_value(secret);
        // Place the secret straddling the naive cut point.
        let mut line = vec![b'a'; MAX_LINE_BYTES - 10];
        line.extend_from_slice(secret.as_bytes());
        line.extend(vec![b'b'; 100]);
        let mut a = LineAssembler::new();
        let mut pieces = a.push(&line, &masker);
        pieces.extend(a.finish());
        assert!(pieces.len() >= 2, "line was not cut");
        assert_eq!(pieces.concat().len(), line.len());
        assert!(
            pieces.iter().any(|p| p.contains(secret)),
            "secret was split"
        );
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            text in "[a-z\\r\\n é]{0,60}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for p in points {
                chunks.push(&bytes[at..p]);
                at = p;
            }
            chunks.push(&bytes[at..]);
            prop_assert_eq!(assemble(&chunks), assemble(&[bytes]));
        }
    }
}
