//! The open-world scenario, against `plugins/openworld` (the scale
//! benchmark's second workload): each bot is a `Walker` from the moment it
//! connects, walks — a `Move` a few units along its heading, which turns
//! now and then — and once a second, on average, shows an action to
//! everyone around it (`emote`, done when its own `emoted` call comes
//! back).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use wyrm_client::{Client, ClientError, Event, Position};

use crate::bot::{drive, own_position, Act, Behaviour, BotCtx, Done, Ended, Mover, Pending, Rng};
use crate::stats::ActionKind;

/// The land is `[0, SIZE]²` (`plugins/openworld`); bots keep `MARGIN` from
/// its edges.
const SIZE: f32 = 10_000.0;
const MARGIN: f32 = 10.0;
/// Units per step: at the default 6 actions a second, about 10 units a
/// second, a tenth of the area of interest.
const STEP: f32 = 2.0;
/// Share of actions that are emotes: one a second at the default rate.
const EMOTE_SHARE: f64 = 1.0 / 6.0;

/// Waits for the own `Walker` and its place, then walks.
/// `first`: this is the bot's first login (a reconnect logs in again).
pub(crate) async fn run(mut client: Client, ctx: &mut BotCtx, first: bool) -> Ended {
    let (walker, pos) = match placed(&mut client, ctx.timeout).await {
        Ok(p) => p,
        Err(e) => {
            ctx.client_fault("waiting for the own Walker", &e);
            return Ended::NotLoggedIn;
        }
    };
    if first {
        ctx.shared.logged_in();
    }
    let mut bot = WorldBot {
        walker,
        walk: Mover {
            pos,
            res: client.position_resolution().unwrap_or_default(),
            size: SIZE,
            margin: MARGIN,
        },
        heading: (walker % 628) as f32 / 100.0,
        emote: 0,
    };
    drive(&mut client, ctx, &mut bot).await
}

/// The own entity once the server has told where it is.
async fn placed(client: &mut Client, timeout: Duration) -> Result<(u64, Position), ClientError> {
    let deadline = Instant::now() + timeout;
    let walker = client.wait_player(timeout).await?;
    loop {
        if let Some(p) = client.position_of(walker) {
            return Ok((walker, p.pos));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_timeout(left).await? {
            None => {
                return Err(ClientError::Timeout {
                    waiting_for: "the own Walker's place".into(),
                    after: timeout,
                    saw: String::new(),
                })
            }
            Some(Event::Closed) => return Err(ClientError::Closed),
            Some(_) => {}
        }
    }
}

struct WorldBot {
    walker: u64,
    walk: Mover,
    heading: f32,
    emote: u64,
}

impl Behaviour for WorldBot {
    fn act(
        &mut self,
        rng: &mut Rng,
        _now: Instant,
        pending: &VecDeque<Pending>,
    ) -> Option<(Act, ActionKind, u64)> {
        let emoting = pending.iter().any(|p| p.kind == ActionKind::Emote);
        if !emoting && rng.unit() < EMOTE_SHARE {
            self.emote += 1;
            return Some((Act::Emote(self.emote), ActionKind::Emote, self.emote));
        }
        if rng.unit() < 0.05 {
            self.heading += (rng.unit() as f32 - 0.5) * 2.0;
        }
        let (dx, dy, tag) = self
            .walk
            .step(self.heading.cos() * STEP, self.heading.sin() * STEP);
        // Bounced off an edge: head the way it went.
        self.heading = dy.atan2(dx);
        Some((
            Act::Move(self.walk.pos, self.heading),
            ActionKind::Move,
            tag,
        ))
    }

    fn on_event(
        &mut self,
        e: &Event,
        _now: Instant,
        pending: &VecDeque<Pending>,
        out: &mut Vec<Done>,
    ) {
        match e {
            Event::Positions(entries) => {
                own_position(entries, self.walker, pending, out);
            }
            Event::Call {
                entity,
                method,
                args,
            } if *entity == self.walker && method == "emoted" => {
                if let Ok((n,)) = wyrm_client::from_value::<(u64,)>(args) {
                    out.push(Done::Exact(ActionKind::Emote, n));
                }
            }
            _ => {}
        }
    }
}
