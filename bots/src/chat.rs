//! The chat scenario, against `examples/chatroom`: register, log in, then
//! say (70%), ask who is in the room (20%) or change rooms (10%).

use std::collections::VecDeque;

use tokio::time::Instant;
use wyrm_client::{from_value, Client, Event};

use std::sync::Arc;

use crate::bot::{drive, Act, Behaviour, BotCtx, Done, Ended, Pending, Rng};
use crate::stats::{ActionKind, Count, Fault, Shared};

/// Every bot's password (the chatroom wants at least 4 characters).
const PASSWORD: &str = "bots-password";
/// What the chatroom answers a login with a wrong name or password.
const WRONG_LOGIN: &str = "wrong name or password";
/// What the chatroom answers when it has too many passwords to check.
const BUSY: &str = "the server is busy, try again";
/// The login step that met [`BUSY`].
const BUSY_STEP: &str = "the server is busy";
/// The rooms bots wander between; `lobby` is where a login lands.
const ROOMS: [&str; 4] = ["lobby", "tavern", "market", "docks"];

/// What a chat bot keeps across reconnects.
pub(crate) struct ChatState {
    name: String,
    /// The account exists, as far as the bot knows (registered, or the
    /// name was taken: by this bot's earlier try, most likely).
    registered: bool,
    /// The server confirmed the registration (it is on disk by then).
    confirmed: bool,
    logged_in_once: bool,
    bot: ChatBot,
}

impl ChatState {
    pub(crate) fn new(name: String, shared: Arc<Shared>) -> Self {
        Self {
            name,
            registered: false,
            confirmed: false,
            logged_in_once: false,
            bot: ChatBot {
                room: ROOMS[0].to_owned(),
                seq: 0,
                last_echo: 0,
                sent_before_disconnect: 0,
                shared,
            },
        }
    }
}

/// Logs the bot in (registering first, unless it did before) and runs it.
pub(crate) async fn run(mut client: Client, ctx: &mut BotCtx, st: &mut ChatState) -> Ended {
    if let Err((what, e)) = login(&mut client, ctx, st).await {
        match e {
            Some(e) => ctx.client_fault(what, &e),
            // Counted as a busy refusal: a server shedding load, not an error.
            None if what == BUSY_STEP => {}
            None => ctx.shared.fault(Fault::Other, ctx.idx, what),
        }
        return Ended::NotLoggedIn;
    }
    if !st.logged_in_once {
        st.logged_in_once = true;
        ctx.shared.logged_in();
    }
    // A login lands in the first room.
    st.bot.room = ROOMS[0].to_owned();
    let name = st.name.clone();
    drive(&mut client, ctx, &mut Named(&mut st.bot, &name)).await
}

type LoginError = (&'static str, Option<wyrm_client::ClientError>);

async fn login(client: &mut Client, ctx: &BotCtx, st: &mut ChatState) -> Result<(), LoginError> {
    let t = ctx.timeout;
    let name = st.name.as_str();
    let account = client
        .wait_player(t)
        .await
        .map_err(|e| ("waiting for the Account", Some(e)))?;
    if st.registered {
        // Back after a reconnect: the account must still be there.
        let (ok, message) = call_login(client, ctx, account, name).await?;
        if ok {
            return Ok(());
        }
        if message == BUSY {
            ctx.shared.count(Count::Busy, 1);
            return Err((BUSY_STEP, None));
        }
        if message != WRONG_LOGIN {
            return Err(("login refused", None));
        }
        if st.confirmed {
            ctx.shared.count(Count::AccountLost, 1);
            ctx.shared.fault(
                Fault::Other,
                ctx.idx,
                format_args!("account {name}, confirmed registered, is gone"),
            );
        }
        st.registered = false;
        st.confirmed = false;
    }
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
    // A name left over from an earlier run against the same data, or from
    // this bot's own try whose answer it did not wait for, is fine: the
    // password is the same.
    if !ok && message == BUSY {
        ctx.shared.count(Count::Busy, 1);
        return Err((BUSY_STEP, None));
    }
    if !ok && message != "name taken" {
        return Err(("register refused", None));
    }
    st.registered = true;
    st.confirmed |= ok;
    let (ok, message) = call_login(client, ctx, account, name).await?;
    if !ok && message == BUSY {
        ctx.shared.count(Count::Busy, 1);
        return Err((BUSY_STEP, None));
    }
    if !ok {
        return Err(("login refused", None));
    }
    Ok(())
}

async fn call_login(
    client: &mut Client,
    ctx: &BotCtx,
    account: u64,
    name: &str,
) -> Result<(bool, String), LoginError> {
    client
        .call(account, "login", (name, PASSWORD))
        .await
        .map_err(|e| ("login", Some(e)))?;
    ctx.shared.sent();
    let (_, answer): (u64, (bool, String)) = client
        .expect_call_as("on_login", ctx.timeout)
        .await
        .map_err(|e| ("login", Some(e)))?;
    ctx.shared.received();
    Ok(answer)
}

pub(crate) struct ChatBot {
    /// The room the bot is in, as last confirmed by `on_joined`.
    room: String,
    /// Numbers the bot's lines so it can tell its own echo apart.
    seq: u64,
    /// The number of the last own line echoed.
    last_echo: u64,
    /// Lines up to this number were sent before a disconnect: a missing
    /// echo of one is unconfirmed, not lost.
    sent_before_disconnect: u64,
    shared: Arc<Shared>,
}

/// A chat bot with its name, for one session.
struct Named<'a>(&'a mut ChatBot, &'a str);

impl ChatBot {
    /// Notes the echo of own line `seq`: a second echo is a duplicate, and
    /// lines skipped over are lost (or unconfirmed, if sent before a
    /// disconnect). Echoes of one sender come in order.
    fn echoed(&mut self, seq: u64) {
        if seq <= self.last_echo {
            self.shared.count(Count::Duplicate, 1);
            return;
        }
        let skipped = self.last_echo + 1..seq;
        let unconfirmed = skipped
            .end
            .min(self.sent_before_disconnect + 1)
            .saturating_sub(skipped.start);
        self.shared.count(Count::Unconfirmed, unconfirmed);
        self.shared
            .count(Count::Lost, (skipped.end - skipped.start) - unconfirmed);
        self.last_echo = seq;
    }
}

impl Behaviour for Named<'_> {
    fn act(
        &mut self,
        rng: &mut Rng,
        _now: Instant,
        _pending: &VecDeque<Pending>,
    ) -> Option<(Act, ActionKind, u64)> {
        let Named(bot, name) = self;
        let r = rng.unit();
        Some(if r < 0.7 {
            bot.seq += 1;
            let text = format!("{} hello from {name}", bot.seq);
            (Act::Say(text), ActionKind::Say, bot.seq)
        } else if r < 0.9 {
            (Act::Who, ActionKind::Who, 0)
        } else {
            let others: Vec<&str> = ROOMS.iter().copied().filter(|r| *r != bot.room).collect();
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
                    if from == self.1 {
                        let seq = text.split(' ').next().and_then(|s| s.parse::<u64>().ok());
                        if let Some(seq) = seq {
                            self.0.echoed(seq);
                            out.push(Done::Exact(ActionKind::Say, seq));
                        }
                    }
                }
            }
            "on_who" => out.push(Done::Oldest(ActionKind::Who)),
            "on_joined" => {
                if let Ok((room,)) = from_value::<(String,)>(args) {
                    self.0.room = room;
                }
                out.push(Done::Oldest(ActionKind::Join));
            }
            _ => {}
        }
    }

    fn on_disconnect(&mut self, _pending: &VecDeque<Pending>) {
        self.0.sent_before_disconnect = self.0.seq;
    }
}
