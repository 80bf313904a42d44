//! Log lines a plugin causes, kept to a rate: a plugin that writes (or
//! misbehaves) in a loop must not fill the server's log, nor spend the game
//! thread on writing it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a second a plugin may write (its `log` import and its stdout and
/// stderr together), after a burst of [`LOG_BURST`].
pub const LOG_LINES_PER_SECOND: u32 = 200;
/// Lines a plugin may write at once before the rate applies.
pub const LOG_BURST: u32 = 1000;
/// Longest line a plugin may write; a longer one is cut (and says so).
pub const LOG_LINE_BYTES: usize = 4096;

/// A plugin's allowance of log lines: a token bucket shared by everything
/// that writes lines for it. Lines over the rate are dropped and counted;
/// the next line let through is preceded by one saying how many were.
#[derive(Debug)]
pub struct LogBudget {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(LOG_BURST),
                last: Instant::now(),
                dropped: 0,
            }),
        }
    }
}

impl LogBudget {
    /// Whether `plugin` may write a line now.
    pub fn admit(&self, plugin: &str) -> bool {
        // A panic while holding this lock leaves a bucket that is still a
        // bucket: keep counting.
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * f64::from(LOG_LINES_PER_SECOND);
        b.tokens = (b.tokens + refill).min(f64::from(LOG_BURST));
        b.last = now;
        if b.tokens < 1.0 {
            b.dropped += 1;
            return false;
        }
        b.tokens -= 1.0;
        if b.dropped > 0 {
            tracing::warn!(
                plugin,
                dropped = b.dropped,
                "{} log lines of plugin {plugin} dropped: it wrote more than {LOG_LINES_PER_SECOND} a second (after a burst of {LOG_BURST})",
                b.dropped
            );
            b.dropped = 0;
        }
        true
    }
}

/// `line` cut to [`LOG_LINE_BYTES`], saying how long it was.
pub fn clip_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= LOG_LINE_BYTES {
        return line.into();
    }
    let end = line.floor_char_boundary(LOG_LINE_BYTES);
    format!(
        "{}… (cut: {} bytes; a plugin's log line is at most {LOG_LINE_BYTES})",
        &line[..end],
        line.len()
    )
    .into()
}

/// Warnings the host writes about what a plugin did (a limit it hit, an
/// entity it may not touch): each kind at most once a second per plugin,
/// with a count of those left out since.
#[derive(Debug, Default)]
pub struct Throttle {
    last: HashMap<(usize, &'static str), (Instant, u64)>,
}

impl Throttle {
    /// The pause between two lines of one kind.
    const EVERY: Duration = Duration::from_secs(1);

    /// Whether a warning of `kind` about plugin `plugin` may be written now,
    /// and how many of its kind were left out since the last one.
    pub fn admit(&mut self, plugin: usize, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(&(plugin, kind)) {
            Some((at, skipped)) if now.duration_since(*at) < Self::EVERY => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                *at = now;
                Some(std::mem::take(skipped))
            }
            None => {
                self.last.insert((plugin, kind), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_dropped() {
        let b = LogBudget::default();
        let passed = (0..LOG_BURST * 2).filter(|_| b.admit("p")).count();
        // The burst, and the few that refilled while the loop ran.
        assert!(
            (LOG_BURST as usize..LOG_BURST as usize + 50).contains(&passed),
            "{passed}"
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let line = "é".repeat(LOG_LINE_BYTES);
        let cut = clip_line(&line);
        assert!(cut.len() < LOG_LINE_BYTES + 100, "{}", cut.len());
        assert!(cut.contains("(cut: 8192 bytes"));
        assert_eq!(clip_line("short"), "short");
    }

    #[test]
    fn a_kind_is_written_once_a_second_with_a_count() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(0, "a"), Some(0));
        assert_eq!(t.admit(0, "a"), None);
        assert_eq!(t.admit(0, "a"), None);
        assert_eq!(t.admit(1, "a"), Some(0), "per plugin");
        assert_eq!(t.admit(0, "b"), Some(0), "per kind");
    }
}
