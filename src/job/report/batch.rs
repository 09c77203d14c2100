//! Log text and live-console batching (pure, no I/O).
//!
//! * Full logs: every line is written as `<UTC ISO-8601 "O" timestamp> <text>\n` into a
//!   [`LogStream`], which cuts the bytes into chunks (legacy pages of 8 MiB, results blocks of
//!   2 MiB; a chunk is closed once it reaches the limit, so one huge line is never split) and
//!   counts lines cumulatively. Nothing is ever dropped from a full log.
//! * Live console: a [`ConsoleQueue`] of at most [`CONSOLE_QUEUE_LINES`] lines. When the
//!   producer outruns the uploader, new lines are dropped from the live view only; the gap is
//!   visible there as `... (N lines omitted)` (found from the gap in log line numbers), and the
//!   full log still has every line. Lines longer than [`CONSOLE_LINE_CHARS`] are cut and end in
//!   `...`.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Legacy log page size: a page is uploaded once it holds this many bytes.
pub const LEGACY_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Results log block size: a block is uploaded once it holds this many bytes.
pub const RESULTS_BLOCK_BYTES: usize = 2 * 1024 * 1024;
/// Live console lines held while waiting for the uploader; more are dropped (and marked).
pub const CONSOLE_QUEUE_LINES: usize = 1024;
/// Live console lines (markers included) sent per drain round.
pub const CONSOLE_LINES_PER_ROUND: usize = 500;
/// Live console lines per feed message.
pub const CONSOLE_LINES_PER_MESSAGE: usize = 100;
/// Characters of one live console line; longer lines are cut and end in `...`.
pub const CONSOLE_LINE_CHARS: usize = 1024;

/// Formats one full-log line: .NET `"O"` UTC timestamp (7 fractional digits), a space, the text,
/// a newline.
pub fn format_log_line(at: DateTime<Utc>, text: &str) -> String {
    // chrono has no 7-digit fraction; .NET "O" has ticks (100 ns). A leap second's extra
    // nanoseconds are folded into the last tick.
    let ticks = at.timestamp_subsec_nanos().min(999_999_999) / 100;
    format!("{}.{ticks:07}Z {text}\n", at.format("%Y-%m-%dT%H:%M:%S"))
}

/// Lines a text occupies in a log (embedded newlines count, as in the official runner).
pub fn line_count(text: &str) -> u64 {
    1 + text.bytes().filter(|b| *b == b'\n').count() as u64
}

/// Cuts a live console line to [`CONSOLE_LINE_CHARS`] characters plus `...`.
pub fn truncate_console_line(text: &str) -> String {
    match text.char_indices().nth(CONSOLE_LINE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The live-console marker for lines left out of the live view.
pub fn omitted_marker(count: u64) -> String {
    format!("... ({count} lines omitted)")
}

/// A finished piece of one record's full log, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// The record (step id, or job id for job-level lines).
    pub record_id: Uuid,
    /// 1-based chunk number within the record's log.
    pub index: u32,
    /// The bytes (whole lines).
    pub data: Vec<u8>,
    /// Lines written to this record's log up to the end of this chunk.
    pub total_lines: u64,
    /// The record's log is complete with this chunk.
    pub last: bool,
}

/// One record's full log, cut into chunks of `limit` bytes.
#[derive(Debug)]
pub struct LogStream {
    record_id: Uuid,
    limit: usize,
    current: Vec<u8>,
    chunks_made: u32,
    total_lines: u64,
    finished: bool,
    ready: VecDeque<LogChunk>,
}

impl LogStream {
    /// An empty log for `record_id`, chunked at `limit` bytes.
    pub fn new(record_id: Uuid, limit: usize) -> Self {
        LogStream {
            record_id,
            limit,
            current: Vec::new(),
            chunks_made: 0,
            total_lines: 0,
            finished: false,
            ready: VecDeque::new(),
        }
    }

    /// Appends a line stamped `at`; returns its 1-based line number. Ignored once finished
    /// (the caller routes such lines elsewhere).
    pub fn write(&mut self, at: DateTime<Utc>, text: &str) -> u64 {
        let number = self.total_lines + 1;
        self.current
            .extend_from_slice(format_log_line(at, text).as_bytes());
        self.total_lines += line_count(text);
        if self.current.len() >= self.limit {
            self.cut(false);
        }
        number
    }

    /// Closes the log: the rest becomes the last chunk. A log that never had a line produces
    /// no chunk at all; one whose last chunk was already cut gets an empty closing chunk.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.total_lines > 0 {
            self.cut(true);
        }
    }

    fn cut(&mut self, last: bool) {
        self.chunks_made += 1;
        self.ready.push_back(LogChunk {
            record_id: self.record_id,
            index: self.chunks_made,
            data: std::mem::take(&mut self.current),
            total_lines: self.total_lines,
            last,
        });
    }

    /// Takes the chunks ready for upload, oldest first.
    pub fn take_ready(&mut self) -> Vec<LogChunk> {
        self.ready.drain(..).collect()
    }

    /// Lines written so far.
    pub fn total_lines(&self) -> u64 {
        self.total_lines
    }

    /// Bytes held and not taken for upload yet.
    pub fn backlog_bytes(&self) -> usize {
        self.current.len() + self.ready.iter().map(|c| c.data.len()).sum::<usize>()
    }

    /// Whether [`LogStream::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// One live-console message: consecutive lines of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBatch {
    /// The step (or job) record the lines belong to.
    pub step_id: Uuid,
    /// Log line number of the first line.
    pub start_line: u64,
    /// The lines (cut to [`CONSOLE_LINE_CHARS`]; omission markers included).
    pub lines: Vec<String>,
}

#[derive(Debug)]
struct ConsoleLine {
    step_id: Uuid,
    number: u64,
    text: String,
}

/// The bounded live-console queue (see the module doc for the drop policy).
#[derive(Debug, Default)]
pub struct ConsoleQueue {
    lines: VecDeque<ConsoleLine>,
    last_sent: HashMap<Uuid, u64>,
    closed: Vec<(Uuid, u64)>,
    dropped: u64,
}

impl ConsoleQueue {
    /// Queues line `number` of a step; returns false when the queue is full and the line only
    /// goes to the full log.
    pub fn push(&mut self, step_id: Uuid, number: u64, text: &str) -> bool {
        if self.lines.len() >= CONSOLE_QUEUE_LINES {
            self.dropped += 1;
            return false;
        }
        let text = truncate_console_line(text);
        self.lines.push_back(ConsoleLine {
            step_id,
            number,
            text,
        });
        true
    }

    /// Notes that a step's log is complete with `total_lines`, so a dropped tail gets marked.
    pub fn close_step(&mut self, step_id: Uuid, total_lines: u64) {
        self.closed.push((step_id, total_lines));
    }

    /// Lines dropped from the live view so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.closed.is_empty()
    }

    /// Takes one round: at most [`CONSOLE_LINES_PER_ROUND`] entries, split into messages of at
    /// most [`CONSOLE_LINES_PER_MESSAGE`] consecutive lines of one step.
    pub fn drain_round(&mut self) -> Vec<FeedBatch> {
        let mut batches: Vec<FeedBatch> = Vec::new();
        let mut emitted = 0;
        while emitted < CONSOLE_LINES_PER_ROUND {
            let Some(line) = self.lines.pop_front() else {
                break;
            };
            let last = self.last_sent.get(&line.step_id).copied().unwrap_or(0);
            if line.number > last + 1 {
                push_line(
                    &mut batches,
                    line.step_id,
                    last + 1,
                    omitted_marker(line.number - last - 1),
                );
                emitted += 1;
            }
            self.last_sent.insert(line.step_id, line.number);
            push_line(&mut batches, line.step_id, line.number, line.text);
            emitted += 1;
        }
        self.mark_closed_tails(&mut batches);
        batches
    }

    fn mark_closed_tails(&mut self, batches: &mut Vec<FeedBatch>) {
        let queued: Vec<Uuid> = self.lines.iter().map(|l| l.step_id).collect();
        let closed = std::mem::take(&mut self.closed);
        for (step_id, total) in closed {
            if queued.contains(&step_id) {
                self.closed.push((step_id, total));
                continue;
            }
            let last = self.last_sent.get(&step_id).copied().unwrap_or(0);
            if total > last {
                push_line(batches, step_id, last + 1, omitted_marker(total - last));
                self.last_sent.insert(step_id, total);
            }
        }
    }
}

fn push_line(batches: &mut Vec<FeedBatch>, step_id: Uuid, number: u64, text: String) {
    match batches.last_mut() {
        Some(batch)
            if batch.step_id == step_id && batch.lines.len() < CONSOLE_LINES_PER_MESSAGE =>
        {
            batch.lines.push(text)
        }
        _ => batches.push(FeedBatch {
            step_id,
            start_line: number,
            lines: vec![text],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-07-01T12:00:01.1234567Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn log_line_uses_dotnet_o_format() {
        assert_eq!(
            format_log_line(at(), "hello"),
            "2026-07-01T12:00:01.1234567Z hello\n"
        );
    }

    #[test]
    fn stream_cuts_chunks_at_limit_with_cumulative_line_counts() {
        let id = Uuid::from_u128(9);
        let mut log = LogStream::new(id, 100);
        for i in 0..5 {
            assert_eq!(log.write(at(), &format!("line {i}")), i + 1);
        }
        log.write(at(), "two\nlines");
        log.finish();
        let chunks = log.take_ready();
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        let text = String::from_utf8(joined).unwrap();
        assert_eq!(text.lines().count(), 7);
        assert!(text.starts_with("2026-07-01T12:00:01.1234567Z line 0\n"));
        assert!(chunks.len() >= 2, "{chunks:?}");
        assert!(chunks.iter().all(|c| c.record_id == id));
        assert_eq!(
            chunks.iter().map(|c| c.index).collect::<Vec<_>>(),
            (1..=chunks.len() as u32).collect::<Vec<_>>()
        );
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| !c.last && c.data.len() >= 100)
        );
        let last = chunks.last().unwrap();
        assert!(last.last);
        assert_eq!(last.total_lines, 7);
        assert_eq!(log.total_lines(), 7);
    }

    #[test]
    fn one_huge_line_is_never_split() {
        let mut log = LogStream::new(Uuid::nil(), 1024);
        let big = "x".repeat(10_000);
        log.write(at(), &big);
        log.write(at(), "after");
        log.finish();
        let chunks = log.take_ready();
        assert_eq!(chunks.len(), 2);
        assert!(String::from_utf8_lossy(&chunks[0].data).ends_with(&format!("{big}\n")));
        assert_eq!(chunks[0].total_lines, 1);
        assert_eq!(chunks[1].total_lines, 2);
    }

    #[test]
    fn empty_log_has_no_chunk_and_exact_cut_gets_closing_chunk() {
        let mut empty = LogStream::new(Uuid::nil(), 10);
        empty.finish();
        assert!(empty.take_ready().is_empty());
        let mut exact = LogStream::new(Uuid::nil(), 10);
        exact.write(at(), "a");
        exact.finish();
        let chunks = exact.take_ready();
        assert_eq!(chunks.len(), 2);
        assert!(chunks[1].last && chunks[1].data.is_empty());
    }

    #[test]
    fn console_line_is_cut_on_a_char_boundary() {
        let long = "é".repeat(CONSOLE_LINE_CHARS + 5);
        let cut = truncate_console_line(&long);
        assert_eq!(cut.chars().count(), CONSOLE_LINE_CHARS + 3);
        assert!(cut.ends_with("é..."));
        assert_eq!(truncate_console_line("short"), "short");
    }

    #[test]
    fn console_batches_respect_message_and_round_limits() {
        let step = Uuid::from_u128(1);
        let mut queue = ConsoleQueue::default();
        for n in 1..=700 {
            assert!(queue.push(step, n, &format!("l{n}")));
        }
        let round = queue.drain_round();
        assert_eq!(
            round.iter().map(|b| b.lines.len()).sum::<usize>(),
            CONSOLE_LINES_PER_ROUND
        );
        assert!(
            round
                .iter()
                .all(|b| b.lines.len() <= CONSOLE_LINES_PER_MESSAGE)
        );
        assert_eq!(round[1].start_line, 101);
        assert_eq!(round[1].lines[0], "l101");
        let rest = queue.drain_round();
        assert_eq!(rest.iter().map(|b| b.lines.len()).sum::<usize>(), 200);
        assert!(queue.is_empty());
    }

    #[test]
    fn overflow_is_marked_in_the_live_view() {
        let step = Uuid::from_u128(1);
        let mut queue = ConsoleQueue::default();
        let total = CONSOLE_QUEUE_LINES as u64 + 50;
        let accepted = (1..=total).filter(|n| queue.push(step, *n, "x")).count();
        assert_eq!(accepted, CONSOLE_QUEUE_LINES);
        assert_eq!(queue.dropped(), 50);
        queue.close_step(step, total);
        let mut lines = Vec::new();
        while !queue.is_empty() {
            lines.extend(queue.drain_round().into_iter().flat_map(|b| b.lines));
        }
        assert_eq!(lines.len(), CONSOLE_QUEUE_LINES + 1);
        assert_eq!(lines.last().unwrap(), &omitted_marker(50));
    }

    #[test]
    fn gap_between_lines_is_marked_where_it_happened() {
        let step = Uuid::from_u128(1);
        let mut queue = ConsoleQueue::default();
        queue.push(step, 1, "a");
        queue.push(step, 5, "e");
        let round = queue.drain_round();
        assert_eq!(round.len(), 1);
        assert_eq!(
            round[0].lines,
            vec!["a".to_owned(), omitted_marker(3), "e".to_owned()]
        );
    }
}
