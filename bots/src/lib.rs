//! `wyrm bots`: a load tester. N bots connect to a Wyrm server over TCP,
//! WebSocket or KCP, log in, and do weighted random actions at a set rate
//! for a set time; every second the run reports actions, messages, the
//! latency of the actions answered in that second and the errors, and at the
//! end a summary (see `bots/README.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wyrm_bots::BotsError> {
//! use std::time::Duration;
//! use wyrm_bots::{Config, Scenario};
//! use wyrm_client::Transport;
//!
//! let cfg = Config::new("127.0.0.1:8081", Transport::Tcp, Scenario::Chat)
//!     .bots(20)
//!     .duration(Duration::from_secs(10));
//! let report = wyrm_bots::run_with_progress(cfg, |s| println!("{s}")).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Scenarios:
//! - **chat** (`examples/chatroom`): `register` + `login`, then `say` 70%
//!   (done when the bot sees its own line in `on_chat`), `who` 20% (done at
//!   `on_who`), `join` another room 10% (done at `on_joined`).
//! - **arena** (`examples/arena`): `login(name)`, then a `Move` of 8–16
//!   units in a random direction 80% (done when the bot's own new position
//!   comes back in a `Positions` frame), `shoot` 20% (done at the `shot`
//!   call; a bot shoots only when the server's 200 ms cooldown will let the
//!   shot through). Dead bots wait for `respawned`; their unanswered moves
//!   are dropped, not counted as timeouts.
//! - **world** (`plugins/openworld`, 10,000 × 10,000, AOI 100): each bot
//!   walks — a `Move` of 2 units along a heading that turns now and then —
//!   and one action in six is an `emote(n)` shown to everyone around (done
//!   at its own `emoted` call).

mod arena;
mod bot;
mod chat;
mod cpu;
pub mod soak;
mod stats;
mod world;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wyrm_client::{Client, Transport};

pub use cpu::CpuUsage;
pub use stats::{ActionKind, Integrity, Latency, SecondStats};
pub use wyrm_client;

use bot::Ended;
use bot::{BotCtx, Rng};
use stats::{Count, Fault, Shared};

/// What the bots play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The chatroom example (boot entity `Account`, service `Lobby`).
    Chat,
    /// The arena example (boot entity `Account`, service `Arena`).
    Arena,
    /// The open world of `plugins/openworld` (boot entity `Walker`,
    /// service `Realm`).
    World,
}

impl Scenario {
    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Chat => "chat",
            Scenario::Arena => "arena",
            Scenario::World => "world",
        }
    }

    /// Actions per second per bot when none is given: chat lines fan out to
    /// a whole room, so chat is slower; arena moves are the 10 a second of a
    /// typical real-time game; walkers in the open world step 5 times and
    /// act once a second.
    pub fn default_rate(self) -> f64 {
        match self {
            Scenario::Chat => 1.0,
            Scenario::Arena => 10.0,
            Scenario::World => 6.0,
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = BotsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chat" => Ok(Scenario::Chat),
            "arena" => Ok(Scenario::Arena),
            "world" => Ok(Scenario::World),
            _ => Err(BotsError::Config(format!(
                "unknown scenario {s:?} (chat, arena or world)"
            ))),
        }
    }
}

/// Parses a transport name: `tcp`, `ws` (or `websocket`) or `kcp`.
pub fn parse_transport(s: &str) -> Result<Transport, BotsError> {
    match s {
        "tcp" => Ok(Transport::Tcp),
        "ws" | "websocket" => Ok(Transport::WebSocket),
        "kcp" => Ok(Transport::Kcp),
        _ => Err(BotsError::Config(format!(
            "unknown transport {s:?} (tcp, ws or kcp)"
        ))),
    }
}

/// A run's settings. [`Config::new`] gives the defaults; the builder methods
/// change them.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's `host:port` for the transport; several, separated by
    /// commas (a cluster's gates), spread the bots over them in turn.
    pub addr: String,
    /// How to connect.
    pub transport: Transport,
    /// What to play.
    pub scenario: Scenario,
    /// How many bots (default 10).
    pub bots: usize,
    /// How long the bots act, from the start of the run (default 10 s). Bots
    /// still logging in at the end stop too; answers still due are awaited
    /// (each at most `timeout`).
    pub duration: Duration,
    /// Actions per second per bot (default: [`Scenario::default_rate`]).
    pub rate: f64,
    /// An action, login step or connect with no answer in this time is a
    /// timeout (default 5 s).
    pub timeout: Duration,
    /// Bots start evenly spread over this time, so that connects and logins
    /// do not all land in the same millisecond (default: 10 ms per bot, at
    /// most 2 s).
    pub ramp: Duration,
    /// Any error or timeout makes [`run`] return [`BotsError::Strict`].
    pub strict: bool,
    /// Actions answered in this first part of the run are shown in the
    /// per-second rows but left out of the report's latency (default 0):
    /// a steady-state figure without the ramp-up.
    pub warmup: Duration,
    /// Makes bot names unique: names are `b<tag>_<n>` (chat) or
    /// `b<tag><n>` (arena). Default: from the clock and the process id, so
    /// runs against the same server (whose chat accounts persist) do not
    /// collide.
    pub name_tag: String,
    /// A bot that loses its connection connects again (retrying until the
    /// end) and logs in again, as a game client does; what was lost or
    /// doubled across the disconnect is counted ([`Report::integrity`]).
    /// Off by default: a disconnect ends the bot.
    pub reconnect: bool,
}

impl Config {
    /// Defaults for `scenario` against `addr` over `transport`.
    pub fn new(addr: impl Into<String>, transport: Transport, scenario: Scenario) -> Self {
        let bots = 10;
        Config {
            addr: addr.into(),
            transport,
            scenario,
            bots,
            duration: Duration::from_secs(10),
            rate: scenario.default_rate(),
            timeout: Duration::from_secs(5),
            ramp: default_ramp(bots),
            strict: false,
            warmup: Duration::ZERO,
            name_tag: default_tag(),
            reconnect: false,
        }
    }

    /// Sets the number of bots (and the default ramp for that many).
    pub fn bots(mut self, n: usize) -> Self {
        self.bots = n;
        self.ramp = default_ramp(n);
        self
    }

    /// Sets how long the bots act.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// Sets actions per second per bot.
    pub fn rate(mut self, r: f64) -> Self {
        self.rate = r;
        self
    }

    /// Sets the answer timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the ramp-up time.
    pub fn ramp(mut self, r: Duration) -> Self {
        self.ramp = r;
        self
    }

    /// Turns strict mode on or off.
    pub fn strict(mut self, on: bool) -> Self {
        self.strict = on;
        self
    }

    /// Turns reconnecting on or off.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }

    /// Sets the warm-up left out of the report's latency.
    pub fn warmup(mut self, w: Duration) -> Self {
        self.warmup = w;
        self
    }

    fn check(&self) -> Result<(), BotsError> {
        let bad = |m: &str| Err(BotsError::Config(m.to_owned()));
        if self.bots == 0 {
            return bad("at least one bot");
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1000.0) {
            return bad("the rate must be above 0 and at most 1000 actions a second");
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be positive");
        }
        if self.duration.is_zero() {
            return bad("the duration must be positive");
        }
        let max = match self.scenario {
            Scenario::Chat => 20,
            Scenario::Arena | Scenario::World => 16,
        };
        if self.name_tag.len() + 2 + self.bots.to_string().len() > max
            || !self.name_tag.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return bad("the name tag must be a few letters or digits");
        }
        Ok(())
    }
}

fn default_ramp(bots: usize) -> Duration {
    Duration::from_millis((bots as u64).saturating_mul(10).min(2000))
}

fn default_tag() -> String {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut x = Rng::new(clock ^ u64::from(std::process::id()).rotate_left(32)).next_u64();
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..5)
        .map(|_| {
            let c = DIGITS[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect()
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BotsError {
    /// The settings make no sense.
    #[error("bad bots settings: {0}")]
    Config(String),
    /// Strict mode, and there were errors or timeouts; the report says which.
    #[error("strict mode: {} errors ({}): {}", .0.errors(), .0.error_breakdown(), .0.error_messages.first().map_or("", String::as_str))]
    Strict(Box<Report>),
}

/// Totals over a whole run, with every second's row.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run's settings.
    pub config: Config,
    /// One row per second (the last may be shorter).
    pub seconds: Vec<SecondStats>,
    /// Bots that logged in.
    pub logged_in: usize,
    /// Actions sent.
    pub actions: u64,
    /// Actions answered.
    pub completed: u64,
    /// Frames sent.
    pub messages_out: u64,
    /// Frames received.
    pub messages_in: u64,
    /// Latency of every answered action.
    pub latency: Option<Latency>,
    /// Latency per kind of action.
    pub per_kind: Vec<(ActionKind, Latency)>,
    /// `Error` frames.
    pub error_frames: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Closed or failed connections.
    pub disconnects: u64,
    /// Other failures.
    pub other_errors: u64,
    /// The first error messages (at most 20).
    pub error_messages: Vec<String>,
    /// Wall time of the run.
    pub wall: Duration,
    /// CPU time this process used during the run (bots, and anything else
    /// in the process, such as a server started by a test).
    pub cpu: Option<CpuUsage>,
    /// The machine's load average (1, 5, 15 min) at the end.
    pub load_average: Option<(f64, f64, f64)>,
    /// Reconnects, and what was lost or doubled across them.
    pub integrity: Integrity,
}

impl Report {
    /// Every error and timeout.
    pub fn errors(&self) -> u64 {
        self.error_frames + self.timeouts + self.disconnects + self.other_errors
    }

    /// The errors by kind, as text.
    pub fn error_breakdown(&self) -> String {
        format!(
            "{} error frames, {} timeouts, {} disconnects, {} other",
            self.error_frames, self.timeouts, self.disconnects, self.other_errors
        )
    }
}

fn opt_ms(l: &Latency) -> String {
    format!(
        "min {:.2} / p50 {:.2} / p99 {:.2} / max {:.2} ms",
        l.min_ms, l.p50_ms, l.p99_ms, l.max_ms
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let secs = self.wall.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "summary: {} bots ({} logged in), {} over {:?} to {}, {:.1} s, rate {}/s per bot",
            c.bots,
            self.logged_in,
            c.scenario.name(),
            c.transport,
            c.addr,
            secs,
            c.rate
        )?;
        writeln!(
            f,
            "  actions {} ({:.0}/s), answered {}, messages out {} ({:.0}/s), in {} ({:.0}/s)",
            self.actions,
            self.actions as f64 / secs,
            self.completed,
            self.messages_out,
            self.messages_out as f64 / secs,
            self.messages_in,
            self.messages_in as f64 / secs
        )?;
        match &self.latency {
            Some(l) => writeln!(f, "  latency {}", opt_ms(l))?,
            None => writeln!(f, "  latency: no action answered")?,
        }
        for (k, l) in &self.per_kind {
            writeln!(f, "    {:<5} {:>8}  {}", k.name(), l.count, opt_ms(l))?;
        }
        writeln!(f, "  errors {} ({})", self.errors(), self.error_breakdown())?;
        for m in &self.error_messages {
            writeln!(f, "    {m}")?;
        }
        if let Some(cpu) = &self.cpu {
            writeln!(
                f,
                "  CPU of this process: {:.2} s user + {:.2} s system = {:.0}% of one core",
                cpu.user.as_secs_f64(),
                cpu.system.as_secs_f64(),
                cpu.percent_of_core(self.wall)
            )?;
        }
        let i = &self.integrity;
        if c.reconnect || *i != Integrity::default() {
            writeln!(
                f,
                "  reconnects {}; own chat lines lost {}, duplicated {}, unconfirmed at a disconnect {}; confirmed accounts lost {}; refused as busy {}",
                i.reconnects, i.lost_lines, i.duplicated_lines, i.unconfirmed_lines, i.lost_accounts, i.busy_refusals
            )?;
        }
        if let Some((a, b, c)) = self.load_average {
            writeln!(f, "  load average at the end: {a:.2} {b:.2} {c:.2}")?;
        }
        Ok(())
    }
}

/// Runs the bots; see [`run_with_progress`].
pub async fn run(config: Config) -> Result<Report, BotsError> {
    run_with_progress(config, |_| {}).await
}

/// Runs the bots and calls `on_second` with each second's row as it ends.
/// Returns the report, or with `strict` on and any error,
/// [`BotsError::Strict`] holding it. Bots are tokio tasks on the caller's
/// runtime.
pub async fn run_with_progress(
    config: Config,
    mut on_second: impl FnMut(&SecondStats),
) -> Result<Report, BotsError> {
    config.check()?;
    let shared = Arc::new(Shared::default());
    let cpu_start = CpuUsage::now();
    let start = Instant::now();
    let end = start + config.duration;
    let step = config
        .ramp
        .checked_div(config.bots as u32)
        .unwrap_or_default();
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..config.bots {
        let ctx = BotCtx {
            idx,
            shared: shared.clone(),
            timeout: config.timeout,
            interval,
            end,
            rng: Rng::new(idx as u64 + 1),
        };
        let at = start + step * idx as u32;
        tasks.spawn(one_bot(config.clone(), ctx, at));
    }
    let mut all = Vec::new();
    let mut warming = Vec::new();
    let mut seconds = Vec::new();
    let mut tick = start;
    loop {
        tick += Duration::from_secs(1);
        let finished = tokio::select! {
            _ = tokio::time::sleep_until(tick) => false,
            _ = join_all(&mut tasks, &shared) => true,
        };
        let elapsed = Instant::now() - start;
        let samples = if elapsed <= config.warmup {
            &mut warming
        } else {
            &mut all
        };
        let row = shared.collect(elapsed, samples);
        warming.clear();
        // The bots may all end just after a second's row: no empty row
        // for the moment in between.
        if finished && !seconds.is_empty() && row.is_idle() {
            break;
        }
        on_second(&row);
        seconds.push(row);
        if finished {
            break;
        }
    }
    let wall = start.elapsed();
    let cpu = match (cpu_start, CpuUsage::now()) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    let (_, error_messages) = shared.error_messages();
    let sum = |f: fn(&SecondStats) -> u64| seconds.iter().map(f).sum::<u64>();
    let mut us: Vec<u32> = all.iter().map(|&(_, u)| u).collect();
    let report = Report {
        logged_in: seconds.last().map_or(0, |s| s.logged_in),
        actions: sum(|s| s.actions),
        completed: sum(|s| s.completed),
        messages_out: sum(|s| s.messages_out),
        messages_in: sum(|s| s.messages_in),
        error_frames: sum(|s| s.error_frames),
        timeouts: sum(|s| s.timeouts),
        disconnects: sum(|s| s.disconnects),
        other_errors: sum(|s| s.other_errors),
        latency: Latency::of(&mut us),
        per_kind: stats::per_kind(&all),
        error_messages,
        wall,
        cpu,
        load_average: cpu::load_average(),
        integrity: shared.integrity(),
        seconds,
        config,
    };
    if report.config.strict && report.errors() > 0 {
        return Err(BotsError::Strict(Box::new(report)));
    }
    Ok(report)
}

/// Waits for every bot task; a bot that panicked counts as an error.
/// Cancel-safe (`join_next` is), so it can race the second's timer.
async fn join_all(tasks: &mut tokio::task::JoinSet<()>, shared: &Shared) {
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            shared.fault(
                Fault::Other,
                usize::MAX,
                format_args!("a bot task failed: {e}"),
            );
        }
    }
}

/// One bot from connect to close; with `reconnect`, from its start to the
/// end of the run, connecting again whenever it loses the connection.
async fn one_bot(config: Config, mut ctx: BotCtx, at: Instant) {
    tokio::time::sleep_until(at).await;
    let idx = ctx.idx;
    let mut chat = (config.scenario == Scenario::Chat)
        .then(|| chat::ChatState::new(format!("b{}_{idx}", config.name_tag), ctx.shared.clone()));
    let arena_name = format!("b{}{idx}", config.name_tag);
    let mut first = true;
    // While a server restarts, connecting fails for a while: try again
    // after a pause that grows, without counting each try as an error;
    // connecting (or logging in) again after a refusal waits as long.
    let mut pause = Duration::from_millis(250);
    let gates: Vec<&str> = config.addr.split(',').map(str::trim).collect();
    let addr = gates[idx % gates.len()];
    while Instant::now() < ctx.end {
        let connect = Client::builder(config.transport)
            .connect_timeout(config.timeout)
            .connect(addr);
        let client = match connect.await {
            Ok(c) => c,
            Err(e) if config.reconnect => {
                tracing::debug!(bot = idx, "connect: {e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(e) => return ctx.client_fault("connect", &e),
        };
        if !first {
            ctx.shared.count(Count::Reconnect, 1);
        }
        let shared = ctx.shared.clone();
        shared.connected(1);
        // A bot whose logic panics must not take the count of connected
        // bots with it: the guard lowers it however the bot ends.
        struct Leave(Arc<Shared>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.connected(-1);
            }
        }
        let leave = Leave(shared);
        let ended = match (&mut chat, config.scenario) {
            (Some(state), _) => chat::run(client, &mut ctx, state).await,
            (None, Scenario::Arena) => arena::run(client, &mut ctx, &arena_name, first).await,
            (None, _) => world::run(client, &mut ctx, first).await,
        };
        drop(leave);
        first = false;
        match ended {
            Ended::Finished => return,
            _ if !config.reconnect => return,
            // It played: a new connection at once.
            Ended::Lost => pause = Duration::from_millis(250),
            // Refused (a busy server) or failed: as a player would, wait a
            // while, longer each time, a little at random so that bots
            // refused together do not come back together.
            Ended::NotLoggedIn => {
                tokio::time::sleep(pause.mul_f64(0.5 + ctx.rng.unit())).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
