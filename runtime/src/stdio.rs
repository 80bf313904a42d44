//! A plugin's stdout and stderr, turned into log lines. A guest that fails
//! says why on stderr — a Rust panic's message and place, a Python
//! traceback, a JavaScript exception, a C assertion — so the last lines it
//! wrote there during a call are kept: when the call traps, they are what a
//! client and a swap report are told instead of a wasm backtrace.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logs::LogBudget;

/// Longest line kept before it is logged in pieces.
const MAX_LINE: usize = 4096;
/// Lines of stderr kept per call: a Python traceback a few frames deep and
/// the runtime's own panic after it still fit.
const TAIL_LINES: usize = 32;
/// Longest line kept in the tail; more than any message a client is shown.
const TAIL_LINE_BYTES: usize = 1024;

/// One of a plugin's output streams. Clones share one buffer, so a line
/// written in pieces (wasi-libc's `assert` writes three) stays one line
/// whichever stream handle the guest wrote each piece through.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    shared: Arc<Shared>,
}

struct Shared {
    plugin: Arc<str>,
    stream: &'static str,
    /// The plugin's allowance of log lines: a guest printing in a loop
    /// loses lines, not the server's log.
    budget: Arc<LogBudget>,
    /// Whether anything was written since the last call began: lets the
    /// start of a call skip the lock when the guest wrote nothing, which is
    /// nearly always.
    wrote: AtomicBool,
    lines: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    /// The last lines of the current call, kept only for stderr.
    tail: Option<VecDeque<String>>,
}

impl GuestOutput {
    pub(crate) fn stdout(plugin: Arc<str>, budget: Arc<LogBudget>) -> Self {
        Self::new(plugin, "stdout", false, budget)
    }

    pub(crate) fn stderr(plugin: Arc<str>, budget: Arc<LogBudget>) -> Self {
        Self::new(plugin, "stderr", true, budget)
    }

    fn new(
        plugin: Arc<str>,
        stream: &'static str,
        keep_tail: bool,
        budget: Arc<LogBudget>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                plugin,
                stream,
                budget,
                wrote: AtomicBool::new(false),
                lines: Mutex::new(Lines {
                    partial: Vec::new(),
                    tail: keep_tail.then(VecDeque::new),
                }),
            }),
        }
    }

    /// Starts a call: logs what is left of the previous call's output and
    /// forgets its lines.
    pub(crate) fn begin_call(&self) {
        // A plain load first: the usual answer is "nothing", and a swap
        // would cost a locked instruction on every call.
        let wrote = &self.shared.wrote;
        if wrote.load(Ordering::Relaxed) && wrote.swap(false, Ordering::Relaxed) {
            let mut lines = self.shared.lock();
            self.shared.emit(&mut lines);
            if let Some(tail) = &mut lines.tail {
                tail.clear();
            }
        }
    }

    /// The lines written during the current call (the last few), an
    /// unfinished last line included.
    pub(crate) fn last_words(&self) -> Vec<String> {
        let mut lines = self.shared.lock();
        self.shared.emit(&mut lines);
        lines
            .tail
            .as_ref()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        // A panic while holding this lock cannot leave the lines
        // inconsistent in a way that matters: keep logging.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, buf: &[u8]) {
        self.wrote.store(true, Ordering::Relaxed);
        let mut lines = self.lock();
        for &b in buf {
            if b == b'\n' || lines.partial.len() >= MAX_LINE {
                self.emit(&mut lines);
            }
            if b != b'\n' {
                lines.partial.push(b);
            }
        }
    }

    fn emit(&self, lines: &mut Lines) {
        let text = String::from_utf8_lossy(&lines.partial);
        let text = text.trim_end();
        if !text.is_empty() {
            if self.budget.admit(&self.plugin) {
                tracing::warn!(plugin = &*self.plugin, stream = self.stream, "{text}");
            }
            if let Some(tail) = &mut lines.tail {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(super::clip(text.to_owned(), TAIL_LINE_BYTES));
            }
        }
        lines.partial.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    // Written through at once, on the game thread: by the time a call
    // traps, everything the guest wrote before is in the tail (the default
    // stream hands writes to a task, which may not have run yet).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(Writer(self.shared.clone()))
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Writer(self.shared.clone()))
    }
}

struct Writer(Arc<Shared>);

impl OutputStream for Writer {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Pollable for Writer {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How a guest failed, in its own words: what it wrote to stderr during the
/// call that trapped, boiled down to the line a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastWords {
    /// "panicked", "raised", "threw" or "aborted".
    pub how: &'static str,
    /// The message, with the place for a Rust panic.
    pub text: String,
}

/// Reads `lines` (a call's stderr) for why the guest stopped. Knows the
/// default Rust panic hook, Python's traceback, the JavaScript runtime's
/// uncaught-exception report; anything else is taken at its last line.
pub(crate) fn last_words(lines: &[String]) -> Option<LastWords> {
    let found = |how, text: String| Some(LastWords { how, text });
    // Python first: componentize-py's runtime panics (in Rust) after
    // printing the traceback, and the traceback is what says why.
    if let Some(frame) = lines.iter().rposition(|l| l.starts_with("  File \"")) {
        if let Some(exc) = lines[frame..]
            .iter()
            .find(|l| !l.starts_with(char::is_whitespace))
        {
            return found("raised", exc.clone());
        }
    }
    // Rust's default hook: "thread '…' panicked at src/lib.rs:42:5:", then
    // the message (any number of lines), then a note about backtraces.
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at ")) {
        let place = lines[at]
            .split_once("panicked at ")
            .map_or("", |(_, p)| p.strip_suffix(':').unwrap_or(p));
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .map(String::as_str)
            .take_while(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let text = match (message.join("\n"), place) {
            (m, "") => m,
            (m, p) if m.is_empty() => format!("at {p}"),
            (m, p) => format!("{m} at {p}"),
        };
        return found("panicked", text);
    }
    // StarlingMonkey (componentize-js): the exception, then "Stack:" and
    // indented frames.
    if let Some(stack) = lines.iter().rposition(|l| l == "Stack:") {
        if let Some(exc) = lines[..stack].last() {
            return found("threw", exc.clone());
        }
    }
    lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Redirecting call to abort()"))
        .and_then(|l| found("aborted", l.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Option<(&'static str, String)> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        last_words(&lines).map(|w| (w.how, w.text))
    }

    #[test]
    fn a_rust_panic_gives_its_message_and_place() {
        let out = "thread '<unnamed>' (1) panicked at src/lib.rs:42:5:\n\
                   index out of bounds: the len is 3 but the index is 7\n\
                   note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        assert_eq!(
            words(out),
            Some((
                "panicked",
                "index out of bounds: the len is 3 but the index is 7 at src/lib.rs:42:5".into()
            ))
        );
    }

    #[test]
    fn a_python_traceback_gives_its_last_line_not_the_runtime_panic() {
        let out = "Traceback (most recent call last):\n  \
                   File \"/1/wyrm.py\", line 546, in call\n  \
                   File \"/0/app.py\", line 87, in fail\n    \
                   raise ValueError(message)\n\
                   ValueError: bad\n\
                   thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\n\
                   Python function threw an unexpected exception\n\
                   note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        assert_eq!(words(out), Some(("raised", "ValueError: bad".into())));
    }

    #[test]
    fn a_javascript_exception_gives_its_message() {
        let out = "Error: bad\nStack:\n  f@plugin.js:1:2\n  g@plugin.js:3:4\n\
                   Redirecting call to abort() to mozalloc_abort";
        assert_eq!(words(out), Some(("threw", "Error: bad".into())));
    }

    #[test]
    fn anything_else_gives_its_last_line() {
        let out = "Assertion failed: n > 0 (plugin.c: member_fail: 348)";
        assert_eq!(words(out), Some(("aborted", out.into())));
        assert_eq!(words(""), None);
    }

    #[test]
    fn a_line_written_in_pieces_is_one_line_and_a_call_starts_afresh() {
        let err = GuestOutput::stderr("p".into(), Arc::default());
        let (mut a, mut b) = (err.p2_stream(), err.p2_stream());
        a.write(Bytes::from_static(b"Assertion failed: x (plugin.c: "))
            .expect("write");
        b.write(Bytes::from_static(b"f: 3)\n")).expect("write");
        a.write(Bytes::from_static(b"unfinished")).expect("write");
        assert_eq!(
            err.last_words(),
            ["Assertion failed: x (plugin.c: f: 3)", "unfinished"]
        );
        err.begin_call();
        assert!(err.last_words().is_empty());
    }
}
