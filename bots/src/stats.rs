//! Counters the bots share, the per-second rows and the latency summaries.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How many error messages a run keeps word for word (the counts are exact).
const KEEP_ERRORS: usize = 20;

/// The kinds of action the scenarios do; latencies are kept per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// Chat: `say(text)`, done when the bot sees its own line in `on_chat`.
    Say,
    /// Chat: `who()`, done at `on_who`.
    Who,
    /// Chat: `join(room)`, done at `on_joined`.
    Join,
    /// Arena: a `Move` frame, done when the bot's own new position comes
    /// back in a `Positions` frame.
    Move,
    /// Arena: `shoot(dx, dy)`, done at the `shot` call on the bot's player.
    Shoot,
    /// Open world: `emote(n)`, done at the `emoted` call on the bot's
    /// walker.
    Emote,
}

impl ActionKind {
    /// Every kind, in report order.
    pub const ALL: [ActionKind; 6] = [
        ActionKind::Say,
        ActionKind::Who,
        ActionKind::Join,
        ActionKind::Move,
        ActionKind::Shoot,
        ActionKind::Emote,
    ];

    /// The action's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Say => "say",
            ActionKind::Who => "who",
            ActionKind::Join => "join",
            ActionKind::Move => "move",
            ActionKind::Shoot => "shoot",
            ActionKind::Emote => "emote",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong for a bot; each is one error in the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The server sent an `Error` frame.
    ErrorFrame,
    /// No answer within the timeout (an action, a login step or connecting).
    Timeout,
    /// The connection closed or failed.
    Disconnect,
    /// Anything else: a frame the client could not decode, an unexpected
    /// answer (a refused login).
    Other,
}

/// Counters every bot adds to; the collector reads and resets the
/// per-second ones once a second.
#[derive(Default)]
pub(crate) struct Shared {
    connected: AtomicUsize,
    logged_in: AtomicUsize,
    actions: AtomicU64,
    out: AtomicU64,
    inn: AtomicU64,
    faults: [AtomicU64; 4],
    /// Latencies (µs) of actions completed since the last collection.
    latencies: Mutex<Vec<(ActionKind, u32)>>,
    errors: Mutex<(u64, Vec<String>)>,
    integrity: [AtomicU64; 6],
}

/// What a run with reconnects counts beyond errors: whether anything was
/// lost or doubled across the disconnects (see [`Integrity`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Reconnect,
    /// A bot's own chat line that came back twice.
    Duplicate,
    /// A bot's own chat line that never came back though a later one did,
    /// with no disconnect between.
    Lost,
    /// A line sent before a disconnect whose echo never came.
    Unconfirmed,
    /// An account whose registration was confirmed (on disk) and that
    /// could not log in after a reconnect.
    AccountLost,
    /// A registration or login the server refused as too busy (to be tried
    /// again later, as a player would).
    Busy,
}

/// Totals of [`Count`]s over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Integrity {
    /// Bots that connected again after losing their connection.
    pub reconnects: u64,
    /// Own chat lines echoed more than once.
    pub duplicated_lines: u64,
    /// Own chat lines never echoed while a later one was, with no
    /// disconnect between: lost by the server.
    pub lost_lines: u64,
    /// Own chat lines sent before a disconnect and never echoed: the server
    /// may or may not have taken them when it went.
    pub unconfirmed_lines: u64,
    /// Registrations the server confirmed that were gone after a reconnect.
    pub lost_accounts: u64,
    /// Registrations and logins refused as "too busy, try again".
    pub busy_refusals: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A bot that panicked while holding the lock leaves plain numbers
    // behind: still good to read.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn connected(&self, delta: isize) {
        if delta >= 0 {
            self.connected.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.connected
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub(crate) fn logged_in(&self) {
        self.logged_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn action(&self) {
        self.actions.fetch_add(1, Ordering::Relaxed);
        self.out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self) {
        self.out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self) {
        self.inn.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn done(&self, kind: ActionKind, latency: Duration) {
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        lock(&self.latencies).push((kind, us));
    }

    /// Counts a fault; the first few messages are kept for the report.
    pub(crate) fn fault(&self, fault: Fault, bot: usize, message: impl fmt::Display) {
        let i = match fault {
            Fault::ErrorFrame => 0,
            Fault::Timeout => 1,
            Fault::Disconnect => 2,
            Fault::Other => 3,
        };
        self.faults[i].fetch_add(1, Ordering::Relaxed);
        let mut errors = lock(&self.errors);
        errors.0 += 1;
        if errors.1.len() < KEEP_ERRORS {
            errors.1.push(format!("bot {bot}: {message}"));
        }
        tracing::debug!(bot, ?fault, "{message}");
    }

    /// The row for the second that just ended; resets the per-second
    /// counters. The latencies are moved into `all`.
    pub(crate) fn collect(
        &self,
        elapsed: Duration,
        all: &mut Vec<(ActionKind, u32)>,
    ) -> SecondStats {
        let lat = std::mem::take(&mut *lock(&self.latencies));
        let mut us: Vec<u32> = lat.iter().map(|&(_, u)| u).collect();
        all.extend_from_slice(&lat);
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        SecondStats {
            elapsed,
            connected: self.connected.load(Ordering::Relaxed),
            logged_in: self.logged_in.load(Ordering::Relaxed),
            actions: take(&self.actions),
            completed: us.len() as u64,
            messages_out: take(&self.out),
            messages_in: take(&self.inn),
            latency: Latency::of(&mut us),
            error_frames: take(&self.faults[0]),
            timeouts: take(&self.faults[1]),
            disconnects: take(&self.faults[2]),
            other_errors: take(&self.faults[3]),
        }
    }

    pub(crate) fn count(&self, what: Count, n: u64) {
        self.integrity[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn integrity(&self) -> Integrity {
        let get = |c: Count| self.integrity[c as usize].load(Ordering::Relaxed);
        Integrity {
            reconnects: get(Count::Reconnect),
            duplicated_lines: get(Count::Duplicate),
            lost_lines: get(Count::Lost),
            unconfirmed_lines: get(Count::Unconfirmed),
            lost_accounts: get(Count::AccountLost),
            busy_refusals: get(Count::Busy),
        }
    }

    /// The kept error messages and how many there were in all.
    pub(crate) fn error_messages(&self) -> (u64, Vec<String>) {
        lock(&self.errors).clone()
    }
}

/// Latency of a set of completed actions, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// How many actions.
    pub count: u64,
    /// Fastest.
    pub min_ms: f64,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises latencies in microseconds (sorts them); `None` if empty.
    pub fn of(us: &mut [u32]) -> Option<Latency> {
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let ms = |u: u32| f64::from(u) / 1000.0;
        // Nearest rank: the smallest value with at least p of the samples
        // at or below it.
        let rank = |p: f64| {
            let r = (p * us.len() as f64).ceil() as usize;
            us[r.clamp(1, us.len()) - 1]
        };
        Some(Latency {
            count: us.len() as u64,
            min_ms: ms(us[0]),
            p50_ms: ms(rank(0.50)),
            p99_ms: ms(rank(0.99)),
            max_ms: ms(us[us.len() - 1]),
        })
    }

    /// True if every figure is a finite, non-negative number.
    pub fn is_finite(&self) -> bool {
        [self.min_ms, self.p50_ms, self.p99_ms, self.max_ms]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// One second of a run: what happened during it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondStats {
    /// Time since the run started, at the end of this second.
    pub elapsed: Duration,
    /// Bots connected at the end of the second (logged in or logging in).
    pub connected: usize,
    /// Bots that have logged in so far (cumulative).
    pub logged_in: usize,
    /// Actions sent in this second.
    pub actions: u64,
    /// Actions whose answer arrived in this second.
    pub completed: u64,
    /// Frames the bots sent (calls and moves, login included).
    pub messages_out: u64,
    /// Frames the bots received (every server frame but `Pong`s the client
    /// keeps to itself).
    pub messages_in: u64,
    /// Latency of the actions completed in this second.
    pub latency: Option<Latency>,
    /// `Error` frames from the server.
    pub error_frames: u64,
    /// Actions, login steps or connects with no answer within the timeout.
    pub timeouts: u64,
    /// Connections that closed or failed.
    pub disconnects: u64,
    /// Other failures (undecodable frames, refused logins).
    pub other_errors: u64,
}

impl SecondStats {
    /// All errors of this second.
    pub fn errors(&self) -> u64 {
        self.error_frames + self.timeouts + self.disconnects + self.other_errors
    }

    /// True if nothing at all happened in this second.
    pub fn is_idle(&self) -> bool {
        self.actions == 0
            && self.completed == 0
            && self.messages_out == 0
            && self.messages_in == 0
            && self.errors() == 0
    }

    /// The column titles for [`SecondStats`]'s `Display`.
    pub fn header() -> &'static str {
        "   time  conn login  actions     done   msg out    msg in    min ms    p50 ms    p99 ms    max ms  err  tmo disc"
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

impl fmt::Display for SecondStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.latency;
        write!(
            f,
            "{:>6.1}s {:>5} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>4} {:>4} {:>4}",
            self.elapsed.as_secs_f64(),
            self.connected,
            self.logged_in,
            self.actions,
            self.completed,
            self.messages_out,
            self.messages_in,
            ms(l.map(|l| l.min_ms)),
            ms(l.map(|l| l.p50_ms)),
            ms(l.map(|l| l.p99_ms)),
            ms(l.map(|l| l.max_ms)),
            self.error_frames + self.other_errors,
            self.timeouts,
            self.disconnects,
        )
    }
}

/// Groups whole-run latencies per action kind.
pub(crate) fn per_kind(all: &[(ActionKind, u32)]) -> Vec<(ActionKind, Latency)> {
    let mut by: [Vec<u32>; ActionKind::ALL.len()] = Default::default();
    for &(k, us) in all {
        by[k.index()].push(us);
    }
    ActionKind::ALL
        .iter()
        .filter_map(|&k| Latency::of(&mut by[k.index()]).map(|l| (k, l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().map(|i| i * 1000).collect();
        let l = Latency::of(&mut v).expect("not empty");
        assert_eq!(l.count, 100);
        assert_eq!(l.min_ms, 1.0);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        let l = Latency::of(&mut [7000]).expect("not empty");
        assert_eq!((l.p50_ms, l.p99_ms), (7.0, 7.0));
        assert!(Latency::of(&mut []).is_none());
    }
}
