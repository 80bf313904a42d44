//! One bot's life after login, shared by the scenarios: act at the
//! configured rate, match answers to the actions waiting for them, time out
//! the ones that get none, count everything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wyrm_client::{Client, ClientError, EntityPosition, Event, Position, Resolution, NO_ARGS};

use crate::stats::{ActionKind, Fault, Shared};

/// A small xorshift64* generator: the bots need cheap, decent randomness,
/// not a dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // Spread small seeds (bot numbers) over the whole state.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// A walker on a square field: where it is and the grid the server sends
/// positions on. Its moves are rounded to that grid, so their echo is the
/// very same numbers, which tag the move.
pub(crate) struct Mover {
    pub pos: Position,
    pub res: Resolution,
    /// The field is `[0, size]²`; moves keep `margin` from its edges.
    pub size: f32,
    pub margin: f32,
}

impl Mover {
    /// Steps by `(dx, dy)`, turning back at the edges; returns the step
    /// taken (the reversed axes negated) and the new place's tag.
    pub(crate) fn step(&mut self, mut dx: f32, mut dy: f32) -> (f32, f32, u64) {
        let (lo, hi) = (self.margin, self.size - self.margin);
        if !(lo..=hi).contains(&(self.pos.x + dx)) {
            dx = -dx;
        }
        if !(lo..=hi).contains(&(self.pos.y + dy)) {
            dy = -dy;
        }
        let snap = |v: f32| self.res.value(self.res.quantize(v.clamp(lo, hi)));
        let mut next = Position {
            x: snap(self.pos.x + dx),
            y: snap(self.pos.y + dy),
            z: 0.0,
        };
        // An unchanged position would never be echoed.
        if move_tag(next) == move_tag(self.pos) {
            next.x += if next.x > self.size / 2.0 { -1.0 } else { 1.0 };
        }
        self.pos = next;
        (dx, dy, move_tag(next))
    }
}

/// A move's position as the tag that matches it to its echo.
pub(crate) fn move_tag(p: Position) -> u64 {
    (u64::from(p.x.to_bits()) << 32) | u64::from(p.y.to_bits())
}

/// Where a `Positions` frame puts `me`, if it does: `Some((at, true))` when
/// that answers a pending move (and every move before it: pushed to
/// `out`), `Some((at, false))` when the server placed it with no move of
/// the bot's pending.
pub(crate) fn own_position(
    entries: &[EntityPosition],
    me: u64,
    pending: &VecDeque<Pending>,
    out: &mut Vec<Done>,
) -> Option<(Position, bool)> {
    let p = entries.iter().rev().find(|p| p.entity == me)?;
    let t = move_tag(p.pos);
    let moving = pending.iter().any(|q| q.kind == ActionKind::Move);
    if pending
        .iter()
        .any(|q| q.kind == ActionKind::Move && q.tag == t)
    {
        out.push(Done::UpTo(ActionKind::Move, t));
        return Some((p.pos, true));
    }
    (!moving).then_some((p.pos, false))
}

/// What the driver needs to know to run one bot.
pub(crate) struct BotCtx {
    /// The bot's number, for messages.
    pub idx: usize,
    pub shared: Arc<Shared>,
    pub timeout: Duration,
    /// Mean time between actions.
    pub interval: Duration,
    /// When to stop acting.
    pub end: Instant,
    pub rng: Rng,
}

impl BotCtx {
    /// Counts a failed client operation under the right fault.
    pub(crate) fn client_fault(&self, what: &str, e: &ClientError) {
        let fault = match e {
            ClientError::Server { .. } => Fault::ErrorFrame,
            ClientError::Timeout { .. } | ClientError::ConnectTimeout { .. } => Fault::Timeout,
            e if e.is_fatal() => Fault::Disconnect,
            _ => Fault::Other,
        };
        self.shared
            .fault(fault, self.idx, format_args!("{what}: {e}"));
    }
}

/// An action to send.
pub(crate) enum Act {
    Say(String),
    Who,
    Join(String),
    Move(Position, f32),
    Shoot(f32, f32),
    Emote(u64),
}

/// An action waiting for its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub kind: ActionKind,
    /// Tells apart actions of one kind that are matched exactly (a say's
    /// number, a move's position).
    pub tag: u64,
    /// The call's request id, for `Error` frames (moves have none).
    pub req_id: Option<u32>,
    pub sent: Instant,
}

/// What an event answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Done {
    /// The pending action of this kind and tag.
    Exact(ActionKind, u64),
    /// The oldest pending action of this kind (answers come in order).
    Oldest(ActionKind),
    /// The pending action of this kind and tag and every older one of the
    /// kind (a position supersedes the moves before it).
    UpTo(ActionKind, u64),
    /// Forget the pending actions of this kind without counting them: the
    /// game will not answer them, and says so (the player died).
    Cancel(ActionKind),
}

/// A scenario's decisions; the driver does the I/O.
pub(crate) trait Behaviour {
    /// The next action with its kind and tag, or `None` to skip this turn.
    fn act(
        &mut self,
        rng: &mut Rng,
        now: Instant,
        pending: &VecDeque<Pending>,
    ) -> Option<(Act, ActionKind, u64)>;

    /// Reads one event; pushes what it answered.
    fn on_event(
        &mut self,
        e: &Event,
        now: Instant,
        pending: &VecDeque<Pending>,
        out: &mut Vec<Done>,
    );

    /// The connection was lost with `pending` unanswered.
    fn on_disconnect(&mut self, _pending: &VecDeque<Pending>) {}
}

/// How a bot's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The run's time was up.
    Finished,
    /// The connection was lost after logging in.
    Lost,
    /// Logging in failed (or the connection was lost before it was done).
    NotLoggedIn,
}

/// Runs a logged-in bot until `ctx.end`, then waits for the answers still
/// due (each at most the timeout) and closes the connection; or until the
/// connection is lost.
pub(crate) async fn drive(client: &mut Client, ctx: &mut BotCtx, b: &mut impl Behaviour) -> Ended {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut done = Vec::new();
    // A random first action within one interval, so bots that logged in
    // together do not act in lockstep.
    let mut next_act = Instant::now() + ctx.interval.mul_f64(ctx.rng.unit());
    // One timer, moved only when the wake-up time changes: re-arming a
    // timer for every event costs more than the event.
    let timer = tokio::time::sleep_until(next_act);
    tokio::pin!(timer);
    // Read once per turn (an event's arrival time is the next turn's now).
    let mut now = Instant::now();
    loop {
        expire(&mut pending, now, ctx);
        let acting = now < ctx.end;
        if !acting && pending.is_empty() {
            break;
        }
        if acting && now >= next_act {
            if let Some((act, kind, tag)) = b.act(&mut ctx.rng, now, &pending) {
                match send(client, act).await {
                    Ok(req_id) => {
                        ctx.shared.action();
                        pending.push_back(Pending {
                            kind,
                            tag,
                            req_id,
                            sent: now,
                        });
                    }
                    Err(e) => {
                        ctx.client_fault("sending an action", &e);
                        if e.is_fatal() {
                            b.on_disconnect(&pending);
                            return Ended::Lost;
                        }
                    }
                }
            }
            // Jitter of ±50% keeps the mean rate; a bot that fell far
            // behind starts afresh instead of catching up in a burst.
            next_act += ctx.interval.mul_f64(0.5 + ctx.rng.unit());
            if next_act + ctx.interval < now {
                next_act = now + ctx.interval;
            }
        }
        let mut wake = pending
            .front()
            .map_or(now + ctx.timeout, |p| p.sent + ctx.timeout);
        if acting {
            wake = wake.min(next_act).min(ctx.end);
        }
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        tokio::select! {
            // `next_event` is cancel-safe: a timer firing first loses nothing.
            r = client.next_event() => match r {
                Ok(Event::Closed) | Err(ClientError::Closed) => {
                    ctx.shared.fault(Fault::Disconnect, ctx.idx, "the server closed the connection");
                    b.on_disconnect(&pending);
                    return Ended::Lost;
                }
                Ok(e) => {
                    now = Instant::now();
                    ctx.shared.received();
                    if let Event::Error { req_id, code, message, .. } = &e {
                        let about = pending.iter().position(|p| p.req_id == Some(*req_id) && *req_id != 0);
                        let what = about.and_then(|i| pending.remove(i)).map_or("no action", |p| p.kind.name());
                        ctx.shared.fault(
                            Fault::ErrorFrame,
                            ctx.idx,
                            format_args!("Error {code:?} (req {req_id}, {what}): {message}"),
                        );
                    }
                    b.on_event(&e, now, &pending, &mut done);
                    for d in done.drain(..) {
                        complete(&mut pending, d, now, ctx);
                    }
                }
                Err(e) => {
                    ctx.client_fault("receiving", &e);
                    if e.is_fatal() {
                        b.on_disconnect(&pending);
                        return Ended::Lost;
                    }
                }
            },
            _ = &mut timer => now = Instant::now(),
        }
    }
    client.close().await;
    Ended::Finished
}

async fn send(client: &mut Client, act: Act) -> Result<Option<u32>, ClientError> {
    Ok(Some(match act {
        Act::Say(text) => client.call_player("say", (text,)).await?,
        Act::Who => client.call_player("who", NO_ARGS).await?,
        Act::Join(room) => client.call_player("join", (room,)).await?,
        Act::Shoot(dx, dy) => client.call_player("shoot", (dx, dy)).await?,
        Act::Emote(n) => client.call_player("emote", (n,)).await?,
        Act::Move(pos, yaw) => {
            client.send_move(pos, yaw).await?;
            return Ok(None);
        }
    }))
}

/// Counts and drops the actions older than the timeout (the queue is in
/// sending order).
fn expire(pending: &mut VecDeque<Pending>, now: Instant, ctx: &BotCtx) {
    while let Some(p) = pending.front() {
        if now < p.sent + ctx.timeout {
            break;
        }
        let kind = p.kind.name();
        pending.pop_front();
        ctx.shared.fault(
            Fault::Timeout,
            ctx.idx,
            format_args!("{kind}: no answer within {} ms", ctx.timeout.as_millis()),
        );
    }
}

fn complete(pending: &mut VecDeque<Pending>, d: Done, now: Instant, ctx: &BotCtx) {
    let finish = |p: Pending| {
        ctx.shared
            .done(p.kind, now.saturating_duration_since(p.sent))
    };
    match d {
        Done::Exact(kind, tag) => {
            if let Some(i) = pending.iter().position(|p| p.kind == kind && p.tag == tag) {
                if let Some(p) = pending.remove(i) {
                    finish(p);
                }
            }
        }
        Done::Oldest(kind) => {
            if let Some(i) = pending.iter().position(|p| p.kind == kind) {
                if let Some(p) = pending.remove(i) {
                    finish(p);
                }
            }
        }
        Done::UpTo(kind, tag) => {
            if let Some(last) = pending.iter().position(|p| p.kind == kind && p.tag == tag) {
                let mut at = 0;
                pending.retain(|p| {
                    let take = at <= last && p.kind == kind;
                    at += 1;
                    if take {
                        finish(*p);
                    }
                    !take
                });
            }
        }
        Done::Cancel(kind) => pending.retain(|p| p.kind != kind),
    }
}
