//! An agent's log lines: bounded in rate and volume, and escaped, so that
//! an agent can neither fill the node's disk nor forge the node's records.
//!
//! Rules:
//! 1. Each instance has a budget of lines and of bytes per second, with a
//!    burst (token buckets refilled with time). A line past the budget is
//!    dropped and counted (`caxton_agent_log_dropped_total`).
//! 2. A line is cut at [`LOG_LINE_BYTES_MAX`] bytes, and every control
//!    character in it (newlines above all), and the Unicode line and
//!    paragraph separators, is written escaped (`\n`, `\u{1b}`): an agent's
//!    text never begins a new record, in the human format or in JSON.
//! 3. Every line names its agent, instance, shard and conversation (the
//!    caller's fields), never only the text.
//! 4. Every line written (within the budget) is also kept in its shard's
//!    [`RecentLines`], bounded in bytes ([`AGENT_LOG_RECENT_BYTES_MAX`]),
//!    oldest out first, which the API reads for `caxton agent logs`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::limits::{AGENT_LOG_BURST_SECONDS, AGENT_LOG_BYTES_PER_S, AGENT_LOG_LINES_PER_S, AGENT_LOG_RECENT_BYTES_MAX, LOG_LINE_BYTES_MAX};

/// One line as kept for the API (rule 4), already escaped (rule 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When it was written, in microseconds since the epoch (lines of two
    /// shards within one millisecond still merge in order).
    pub unix_us: u64,
    pub level: &'static str,
    pub agent: Arc<str>,
    pub instance: u32,
    pub shard: usize,
    pub conversation: u64,
    /// `log`, `stdout` or `stderr`.
    pub source: &'static str,
    pub text: String,
}

impl LogRecord {
    /// What it costs to keep: its text and its fixed part.
    fn bytes(&self) -> usize {
        self.text.len() + std::mem::size_of::<LogRecord>()
    }
}

/// A shard's recent lines, all its agents together (rule 4).
#[derive(Debug)]
pub struct RecentLines {
    lines: VecDeque<LogRecord>,
    bytes: usize,
    bytes_max: usize,
}

impl Default for RecentLines {
    fn default() -> Self {
        RecentLines::new(AGENT_LOG_RECENT_BYTES_MAX)
    }
}

impl RecentLines {
    pub fn new(bytes_max: usize) -> RecentLines {
        RecentLines { lines: VecDeque::new(), bytes: 0, bytes_max }
    }

    pub fn push(&mut self, record: LogRecord) {
        self.bytes += record.bytes();
        self.lines.push_back(record);
        while self.bytes > self.bytes_max {
            let old = self.lines.pop_front().expect("bytes counted are lines held");
            self.bytes -= old.bytes();
        }
        debug_assert!(self.bytes <= self.bytes_max && (self.bytes == 0) == self.lines.is_empty());
    }

    /// The last `n` lines of `agent`, oldest first.
    pub fn of(&self, agent: &str, n: usize) -> Vec<LogRecord> {
        let mut out: Vec<LogRecord> = self.lines.iter().rev().filter(|r| &*r.agent == agent).take(n).cloned().collect();
        out.reverse();
        out
    }
}

/// How much an instance may log (rule 1), each with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines per second. Default [`AGENT_LOG_LINES_PER_S`].
    pub lines_per_s: u32,
    /// Bytes per second. Default [`AGENT_LOG_BYTES_PER_S`].
    pub bytes_per_s: u32,
    /// Seconds of budget that may be spent at once. Default
    /// [`AGENT_LOG_BURST_SECONDS`].
    pub burst_s: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { lines_per_s: AGENT_LOG_LINES_PER_S, bytes_per_s: AGENT_LOG_BYTES_PER_S, burst_s: AGENT_LOG_BURST_SECONDS }
    }
}

/// One instance's budget (rule 1).
#[derive(Debug)]
pub struct LogBudget {
    limits: LogLimits,
    lines: f64,
    bytes: f64,
    last: Option<Instant>,
    /// Lines dropped since the instance started.
    pub dropped: u64,
}

impl LogBudget {
    pub fn new(limits: LogLimits) -> LogBudget {
        let burst = limits.burst_s.max(1) as f64;
        LogBudget { limits, lines: limits.lines_per_s as f64 * burst, bytes: limits.bytes_per_s as f64 * burst, last: None, dropped: 0 }
    }

    /// May a line of `len` bytes be written at `now`? Counts it if not.
    pub fn take(&mut self, len: usize, now: Instant) -> bool {
        let burst = self.limits.burst_s.max(1) as f64;
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.lines = (self.lines + dt * self.limits.lines_per_s as f64).min(self.limits.lines_per_s as f64 * burst);
            self.bytes = (self.bytes + dt * self.limits.bytes_per_s as f64).min(self.limits.bytes_per_s as f64 * burst);
        }
        self.last = Some(now);
        if self.lines < 1.0 || self.bytes < len as f64 {
            self.dropped += 1;
            return false;
        }
        self.lines -= 1.0;
        self.bytes -= len as f64;
        true
    }
}

/// Moves the start of `bytes` into the unfinished `line`, up to and
/// without its newline, or until the line holds `max` bytes. Returns how
/// many bytes it took and whether the line is done (a newline, or full):
/// a program's output becomes lines of at most `max` bytes, and none is
/// held back longer than its newline.
pub fn take_line(line: &mut Vec<u8>, bytes: &[u8], max: usize) -> (usize, bool) {
    assert!(line.len() < max, "a full line is written before more is taken");
    let room = max - line.len();
    let (taken, ended) = match find_newline(&bytes[..bytes.len().min(room + 1)]) {
        Some(i) => (i + 1, true),
        None => (bytes.len().min(room), bytes.len() >= room),
    };
    let piece = &bytes[..taken];
    line.extend_from_slice(piece.strip_suffix(b"\n").unwrap_or(piece));
    assert!(line.len() <= max && taken > 0 || bytes.is_empty());
    (taken, ended)
}

/// Where the first newline of `bytes` is (the C library's `memchr`, which
/// scans a word or a vector at a time: standard output is scanned at the
/// speed its bytes are copied).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    // SAFETY: memchr(3) reads at most `bytes.len()` bytes from a live slice
    // and returns null or a pointer into it.
    let found = unsafe { libc::memchr(bytes.as_ptr() as *const libc::c_void, b'\n' as i32, bytes.len()) };
    (!found.is_null()).then(|| found as usize - bytes.as_ptr() as usize)
}

/// An agent's text as it may appear in the node's log (rule 2).
pub fn escape(raw: &[u8]) -> Cow<'_, str> {
    let raw = &raw[..raw.len().min(LOG_LINE_BYTES_MAX)];
    let text = String::from_utf8_lossy(raw);
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(agent: &str, text: &str) -> LogRecord {
        LogRecord { unix_us: 1, level: "info", agent: agent.into(), instance: 0, shard: 0, conversation: 0, source: "log", text: text.into() }
    }

    #[test]
    fn recent_lines_keep_the_newest_within_their_bytes() {
        let one = record("a", "x").bytes();
        let mut r = RecentLines::new(3 * one);
        for (agent, text) in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")] {
            r.push(record(agent, text));
        }
        let texts = |v: Vec<LogRecord>| v.into_iter().map(|r| r.text).collect::<Vec<_>>();
        assert_eq!(texts(r.of("a", 10)), ["3", "4"], "the oldest went first");
        assert_eq!(texts(r.of("a", 1)), ["4"]);
        assert_eq!(texts(r.of("b", 10)), ["2"]);
        assert!(r.of("c", 10).is_empty());
        r.push(record("a", &"y".repeat(10 * one)));
        assert!(r.of("a", 10).is_empty(), "a line larger than the bound is not kept");
    }
    use std::time::Duration;

    #[test]
    fn output_becomes_lines_of_bounded_length() {
        let lines = |chunks: &[&[u8]], max: usize| {
            let (mut line, mut out) = (Vec::new(), Vec::new());
            for chunk in chunks {
                let mut rest = *chunk;
                while !rest.is_empty() {
                    let (taken, ended) = take_line(&mut line, rest, max);
                    rest = &rest[taken..];
                    if ended {
                        out.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
                    }
                }
            }
            (out, String::from_utf8(line).unwrap())
        };
        assert_eq!(lines(&[b"a\nbc", b"d\n\n"], 8), (vec!["a".into(), "bcd".into(), "".into()], String::new()));
        assert_eq!(lines(&[b"0123456789ab"], 4), (vec!["0123".into(), "4567".into(), "89ab".into()], String::new()));
        assert_eq!(lines(&[b"0123\nx"], 4), (vec!["0123".into()], "x".into()), "a newline just past a full line ends it");
        assert_eq!(lines(&[b"01", b"23", b"4"], 4), (vec!["0123".into()], "4".into()));
    }

    #[test]
    fn lines_and_bytes_are_bounded_with_a_burst_and_refill() {
        let mut b = LogBudget::new(LogLimits { lines_per_s: 10, bytes_per_s: 1000, burst_s: 2 });
        let t0 = Instant::now();
        let taken = (0..100).filter(|_| b.take(10, t0)).count();
        assert_eq!(taken, 20, "two seconds of lines at once");
        assert_eq!(b.dropped, 80);
        assert!(b.take(10, t0 + Duration::from_millis(100)), "a tenth of a second refills one line");
        assert!(!b.take(10, t0 + Duration::from_millis(100)));
        let mut big = LogBudget::new(LogLimits { lines_per_s: 1000, bytes_per_s: 1000, burst_s: 1 });
        assert!(big.take(1000, t0));
        assert!(!big.take(1, t0), "the bytes bound too");
    }

    #[test]
    fn an_agents_text_never_starts_a_record() {
        assert_eq!(escape(b"plain text"), "plain text");
        let forged = b"ok\n{\"level\":\"ERROR\",\"fields\":{\"message\":\"forged\"}}\r\x1b[31m\xe2\x80\xa8";
        let e = escape(forged);
        assert!(!e.contains('\n') && !e.contains('\r') && !e.contains('\u{1b}') && !e.contains('\u{2028}'), "{e}");
        assert!(e.starts_with("ok\\n{"), "{e}");
        assert_eq!(escape(&[b'x'; LOG_LINE_BYTES_MAX + 10]).len(), LOG_LINE_BYTES_MAX, "cut");
        assert_eq!(escape(b"\xff"), "\u{fffd}", "not UTF-8: replaced");
    }
}
