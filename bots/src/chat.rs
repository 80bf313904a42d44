//! The chat scenario, against `examples/chatroom`: register, log in, then
//! say (70%), ask who is in the room (20%) or change rooms (10%).

use std::collections::VecDeque;

use tokio::time::Instant;
use wyrm_client::{from_value, Client, Event};

use crate::bot::{drive, Act, Behaviour, BotCtx, Done, Pending, Rng};
use crate::stats::{ActionKind, Fault};

/// Every bot's password (the chatroom wants at least 4 characters).
const PASSWORD: &str = "bots-password";
/// The rooms bots wander between; `lobby` is where a login lands.
const ROOMS: [&str; 4] = ["lobby", "tavern", "market", "docks"];

/// Logs the bot in as `name` and runs it.
pub(crate) async fn run(mut client: Client, ctx: BotCtx, name: String) {
    if let Err((what, e)) = login(&mut client, &ctx, &name).await {
        match e {
            Some(e) => ctx.client_fault(what, &e),
            None => ctx.shared.fault(Fault::Other, ctx.idx, what),
        }
        return;
    }
    ctx.shared.logged_in();
    let mut bot = ChatBot {
        name,
        room: ROOMS[0].to_owned(),
        seq: 0,
    };
    drive(&mut client, ctx, &mut bot).await;
}

type LoginError = (&'static str, Option<wyrm_client::ClientError>);

async fn login(client: &mut Client, ctx: &BotCtx, name: &str) -> Result<(), LoginError> {
    let t = ctx.timeout;
    let account = client
        .wait_player(t)
        .await
        .map_err(|e| ("waiting for the Account", Some(e)))?;
    client
        .call(account, "register", (name, PASSWORD))
        .await
        .map_err(|e| ("register", Some(e)))?;
    ctx.shared.sent();
    let (_, (ok, message)): (u64, (bool, String)) = client
        .expect_call_as("on_register", t)
        .await
        .map_err(|e| ("register", Some(e)))?;
    ctx.shared.received();
    // A name left over from an earlier run against the same data is fine:
    // the password is the same.
    if !ok && message != "name taken" {
        return Err(("register refused", None));
    }
    client
        .call(account, "login", (name, PASSWORD))
        .await
        .map_err(|e| ("login", Some(e)))?;
    ctx.shared.sent();
    let (_, (ok, _message)): (u64, (bool, String)) = client
        .expect_call_as("on_login", t)
        .await
        .map_err(|e| ("login", Some(e)))?;
    ctx.shared.received();
    if !ok {
        return Err(("login refused", None));
    }
    Ok(())
}

struct ChatBot {
    name: String,
    /// The room the bot is in, as last confirmed by `on_joined`.
    room: String,
    /// Numbers the bot's lines so it can tell its own echo apart.
    seq: u64,
}

impl Behaviour for ChatBot {
    fn act(
        &mut self,
        rng: &mut Rng,
        _now: Instant,
        _pending: &VecDeque<Pending>,
    ) -> Option<(Act, ActionKind, u64)> {
        let r = rng.unit();
        Some(if r < 0.7 {
            self.seq += 1;
            let text = format!("{} hello from {}", self.seq, self.name);
            (Act::Say(text), ActionKind::Say, self.seq)
        } else if r < 0.9 {
            (Act::Who, ActionKind::Who, 0)
        } else {
            let others: Vec<&str> = ROOMS.iter().copied().filter(|r| *r != self.room).collect();
            let room = others[rng.below(others.len())].to_owned();
            (Act::Join(room), ActionKind::Join, 0)
        })
    }

    fn on_event(
        &mut self,
        e: &Event,
        _now: Instant,
        _pending: &VecDeque<Pending>,
        out: &mut Vec<Done>,
    ) {
        let Event::Call { method, args, .. } = e else {
            return;
        };
        match method.as_str() {
            "on_chat" => {
                if let Ok((from, _room, text)) = from_value::<(String, String, String)>(args) {
                    if from == self.name {
                        let seq = text.split(' ').next().and_then(|s| s.parse::<u64>().ok());
                        if let Some(seq) = seq {
                            out.push(Done::Exact(ActionKind::Say, seq));
                        }
                    }
                }
            }
            "on_who" => out.push(Done::Oldest(ActionKind::Who)),
            "on_joined" => {
                if let Ok((room,)) = from_value::<(String,)>(args) {
                    self.room = room;
                }
                out.push(Done::Oldest(ActionKind::Join));
            }
            _ => {}
        }
    }
}
