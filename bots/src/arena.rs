//! The arena scenario, against `examples/arena`: log in, then move a step in
//! a random direction (80%) or shoot (20%).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use wyrm_client::{Client, ClientError, Event, Position};

use crate::bot::{drive, own_position, Act, Behaviour, BotCtx, Done, Ended, Mover, Pending, Rng};
use crate::stats::{ActionKind, Fault};

/// The field is `[0, SIZE]²`; bots keep `MARGIN` from its edges.
const SIZE: f32 = 2000.0;
const MARGIN: f32 = 20.0;
/// The server ignores shots closer together than 200 ms (it answers none);
/// a bot shoots only with no shot pending and this long after the last
/// `shot` it saw, so each of its shots gets an answer.
const SHOT_GAP: Duration = Duration::from_millis(250);
/// After a respawn, how long to wait for the new place before moving on
/// from the old one.
const RESPAWN_WAIT: Duration = Duration::from_millis(500);

/// Logs the bot in as `name` and runs it.
/// `first`: this is the bot's first login (a reconnect logs in again).
pub(crate) async fn run(mut client: Client, ctx: &mut BotCtx, name: &str, first: bool) -> Ended {
    let (player, pos) = match login(&mut client, ctx, name).await {
        Ok(p) => p,
        Err((what, Some(e))) => {
            ctx.client_fault(what, &e);
            return Ended::NotLoggedIn;
        }
        Err((what, None)) => {
            ctx.shared.fault(Fault::Other, ctx.idx, what);
            return Ended::NotLoggedIn;
        }
    };
    if first {
        ctx.shared.logged_in();
    }
    let mut bot = ArenaBot {
        player,
        walk: Mover {
            pos,
            // The own place came in a `Positions` frame, which told the grid.
            res: client.position_resolution().unwrap_or_default(),
            size: SIZE,
            margin: MARGIN,
        },
        dead: false,
        waiting_since: None,
        last_shot: None,
    };
    drive(&mut client, ctx, &mut bot).await
}

type LoginError = (&'static str, Option<ClientError>);

/// Logs in and waits for the own `Player` and its first place.
async fn login(
    client: &mut Client,
    ctx: &BotCtx,
    name: &str,
) -> Result<(u64, Position), LoginError> {
    let deadline = Instant::now() + ctx.timeout;
    let account = client
        .wait_player(ctx.timeout)
        .await
        .map_err(|e| ("waiting for the Account", Some(e)))?;
    client
        .call(account, "login", (name,))
        .await
        .map_err(|e| ("login", Some(e)))?;
    ctx.shared.sent();
    loop {
        if let Some(v) = client.player_view() {
            if v.type_name == "Player" {
                if let Some(p) = client.position_of(v.id) {
                    return Ok((v.id, p.pos));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_timeout(left).await {
            Ok(None) => {
                return Err((
                    "login",
                    Some(ClientError::Timeout {
                        waiting_for: "the own Player and its place".into(),
                        after: ctx.timeout,
                        saw: String::new(),
                    }),
                ))
            }
            Ok(Some(Event::Error { code, message, .. })) => {
                ctx.shared.received();
                ctx.shared.fault(
                    Fault::ErrorFrame,
                    ctx.idx,
                    format_args!("login: Error {code:?}: {message}"),
                );
                return Err(("login failed", None));
            }
            Ok(Some(Event::Closed)) => return Err(("login", Some(ClientError::Closed))),
            Ok(Some(_)) => ctx.shared.received(),
            Err(e) if e.is_fatal() => return Err(("login", Some(e))),
            Err(e) => ctx.client_fault("login", &e),
        }
    }
}

struct ArenaBot {
    player: u64,
    /// Where the bot is, counting the moves it sent.
    walk: Mover,
    dead: bool,
    /// Set at a respawn until the new place arrives.
    waiting_since: Option<Instant>,
    /// When the last `shot` came back.
    last_shot: Option<Instant>,
}

impl Behaviour for ArenaBot {
    fn act(
        &mut self,
        rng: &mut Rng,
        now: Instant,
        pending: &VecDeque<Pending>,
    ) -> Option<(Act, ActionKind, u64)> {
        if self.dead {
            return None;
        }
        if let Some(since) = self.waiting_since {
            if now < since + RESPAWN_WAIT {
                return None;
            }
            self.waiting_since = None;
        }
        let may_shoot = !pending.iter().any(|p| p.kind == ActionKind::Shoot)
            && self.last_shot.is_none_or(|t| now >= t + SHOT_GAP);
        if may_shoot && rng.unit() < 0.2 {
            let angle = rng.unit() as f32 * std::f32::consts::TAU;
            return Some((Act::Shoot(angle.cos(), angle.sin()), ActionKind::Shoot, 0));
        }
        let angle = rng.unit() as f32 * std::f32::consts::TAU;
        let len = 8.0 + 8.0 * rng.unit() as f32;
        let (dx, dy, tag) = self.walk.step(angle.cos() * len, angle.sin() * len);
        Some((
            Act::Move(self.walk.pos, dy.atan2(dx)),
            ActionKind::Move,
            tag,
        ))
    }

    fn on_event(
        &mut self,
        e: &Event,
        now: Instant,
        pending: &VecDeque<Pending>,
        out: &mut Vec<Done>,
    ) {
        match e {
            Event::Positions(entries) => {
                if let Some((at, false)) = own_position(entries, self.player, pending, out) {
                    // The server placed the bot (a respawn): go on from
                    // there.
                    self.walk.pos = at;
                    self.waiting_since = None;
                }
            }
            Event::Call { entity, method, .. } if *entity == self.player => {
                match method.as_str() {
                    "shot" => {
                        self.last_shot = Some(now);
                        out.push(Done::Oldest(ActionKind::Shoot));
                    }
                    "died" => {
                        // Moves and shots of a dead player are ignored
                        // without an answer.
                        self.dead = true;
                        out.push(Done::Cancel(ActionKind::Move));
                        out.push(Done::Cancel(ActionKind::Shoot));
                    }
                    "respawned" => {
                        self.dead = false;
                        self.waiting_since = Some(now);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
