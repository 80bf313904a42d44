//! The chatroom example's server logic as a Wyrm plugin: `Account` (one per
//! connecting client: register, log in), `Avatar` (a logged-in user: chat,
//! rooms) and the `Lobby` service (accounts, who is online, room membership).
//!
//! All arguments, including those of client callbacks, are MessagePack arrays
//! of positional values. Client callbacks:
//!
//! | callback | args | on entity |
//! |---|---|---|
//! | `on_register` | `[ok: bool, message: string]` | Account |
//! | `on_login` | `[ok: bool, message: string]` | Account on failure, Avatar on success |
//! | `on_chat` | `[from_name, room, text]` (strings) | Avatar |
//! | `on_joined` | `[room: string]` | Avatar |
//! | `on_who` | `[room: string, names: string[]]` (sorted) | Avatar |
//! | `on_history` | `[room: string, lines: [from, text][]]` (oldest first), after `on_joined` | Avatar |
//!
//! The Lobby keeps everything in host attributes (`accounts`, `history`,
//! `online`, `members`), never in guest memory, so a plugin crash or swap
//! loses nothing; `accounts` and `history` are persistent, so they survive a
//! restart too.

use std::collections::BTreeMap;

use wyrm_sdk::prelude::*;

const LOBBY: &str = "Lobby";
const FIRST_ROOM: &str = "lobby";
const WRONG_LOGIN: &str = "wrong name or password";
/// What a player is told when the server has too many passwords to check.
const BUSY: &str = "the server is busy, try again";
const MAX_TEXT: usize = 500;
/// Lines of history kept per room.
const HISTORY: usize = 50;

/// A user name: 1–20 characters of `[A-Za-z0-9_]`.
fn valid_name(name: &str) -> bool {
    (1..=20).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A room name: 1–20 characters of `[A-Za-z0-9_-]`.
fn valid_room(room: &str) -> bool {
    (1..=20).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn lobby(ctx: &Ctx) -> Result<EntityId, Error> {
    ctx.service(LOBBY)
        .ok_or_else(|| Error::new("the Lobby service is not running"))
}

/// The entity a connecting client is bound to until it logs in. Its
/// attribute `pending` is the name it asked the Lobby to log in as.
#[derive(Default, Serialize, Deserialize)]
pub struct Account {}

#[wyrm_sdk::entity(attrs(pending = "none"))]
impl Account {
    /// Registers `name` with `password`. The client gets exactly one
    /// `on_register(ok, message)`.
    #[own_client]
    fn register(&mut self, ctx: &mut Ctx, name: String, password: String) -> Result<(), Error> {
        if !valid_name(&name) {
            ctx.call_client(
                "on_register",
                (false, "name must be 1-20 letters, digits or _"),
            )?;
        } else if password.chars().count() < 4 {
            ctx.call_client(
                "on_register",
                (false, "password must be at least 4 characters"),
            )?;
        } else {
            ctx.hash_password(&password, "hashed", &name)?;
        }
        Ok(())
    }

    /// `hash_password` continuation: hand the account to the Lobby.
    fn hashed(&mut self, ctx: &mut Ctx, hash: Option<String>, name: String) -> Result<(), Error> {
        let Some(hash) = hash else {
            ctx.call_client("on_register", (false, BUSY))?;
            return Ok(());
        };
        match lobby(ctx) {
            Ok(lobby) => ctx.call(lobby, "store_account", (name, hash, ctx.id())),
            Err(e) => {
                ctx.call_client("on_register", (false, "server not ready"))?;
                Err(e)
            }
        }
    }

    /// Logs in as `name`. On success the client moves to a new Avatar and
    /// gets `on_login(true, "")` there; otherwise `on_login(false, reason)`
    /// here.
    #[own_client]
    fn login(&mut self, ctx: &mut Ctx, name: String, password: String) -> Result<(), Error> {
        if !valid_name(&name) {
            ctx.call_client("on_login", (false, WRONG_LOGIN))?;
            return Ok(());
        }
        match lobby(ctx) {
            Ok(lobby) => {
                ctx.set_attr("pending", &name)?;
                ctx.call(lobby, "login", (name, password, ctx.id()))
            }
            Err(e) => {
                ctx.call_client("on_login", (false, "server not ready"))?;
                Err(e)
            }
        }
    }

    /// The Lobby checked the password and holds `name` for this account:
    /// the client moves to a new Avatar, made here (on this account's
    /// game, so avatars spread over every game as clients do).
    fn logged_in(&mut self, ctx: &mut Ctx, name: String) -> Result<(), Error> {
        let lobby = lobby(ctx)?;
        let avatar =
            ctx.create_entity("Avatar", attrs! { "name" => &name, "room" => FIRST_ROOM })?;
        if let Err(e) = ctx.give_client_to(ctx.id(), avatar) {
            let _ = ctx.destroy_entity(avatar);
            ctx.call_client("on_login", (false, "login failed"))?;
            return Err(e);
        }
        // The Avatar tags its client and sends `on_login(true, "")` once the
        // client is bound to it (`on_client_connected`).
        ctx.delete_attr("pending")?;
        ctx.call(lobby, "entered", (name, avatar))?;
        ctx.destroy_entity(ctx.id())
    }

    /// The client left (or moved to its Avatar): the Account is done, and
    /// a name it was logging in as is free again.
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        if let (Ok(Some(name)), Ok(lobby)) = (ctx.get_attr::<String>("pending"), lobby(ctx)) {
            let _ = ctx.call(lobby, "left", (name, FIRST_ROOM, ctx.id()));
        }
        // Already destroyed after a login; that error is expected.
        let _ = ctx.destroy_entity(ctx.id());
    }
}

/// A logged-in user.
#[derive(Default, Serialize, Deserialize)]
pub struct Avatar {}

impl Avatar {
    fn name(ctx: &Ctx) -> Result<String, Error> {
        ctx.get_attr("name")?
            .ok_or_else(|| Error::new("avatar has no name"))
    }

    fn room(ctx: &Ctx) -> Result<String, Error> {
        Ok(ctx
            .get_attr("room")?
            .unwrap_or_else(|| FIRST_ROOM.to_owned()))
    }

    fn chat(ctx: &mut Ctx, from: &str, text: &str) -> Result<(), Error> {
        let room = Self::room(ctx)?;
        ctx.call_filtered_clients(&[("room", &room)], "on_chat", (from, &room, text))?;
        let lobby = lobby(ctx)?;
        ctx.call(lobby, "record", (&room, from, text))
    }
}

#[wyrm_sdk::entity(attrs(name = "all_clients", room = "own_client"))]
impl Avatar {
    /// Says `text` (1–500 characters) to everyone in the avatar's room,
    /// sender included: `on_chat(name, room, text)`.
    #[own_client]
    fn say(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        if text.is_empty() {
            return Err(Error::new("empty message"));
        }
        if text.chars().count() > MAX_TEXT {
            return Err(Error::new(format!(
                "message too long (at most {MAX_TEXT} characters)"
            )));
        }
        let name = Self::name(ctx)?;
        Self::chat(ctx, &name, &text)
    }

    /// Moves to `room` (1–20 characters of `[A-Za-z0-9_-]`); the client gets
    /// `on_joined(room)`.
    #[own_client]
    fn join(&mut self, ctx: &mut Ctx, room: String) -> Result<(), Error> {
        if !valid_room(&room) {
            return Err(Error::new("room name must be 1-20 letters, digits, _ or -"));
        }
        let name = Self::name(ctx)?;
        let old = Self::room(ctx)?;
        ctx.set_client_tag("room", &room)?;
        ctx.set_attr("room", &room)?;
        let lobby = lobby(ctx)?;
        ctx.call(lobby, "moved", (name, old, &room, ctx.id()))?;
        ctx.call_client("on_joined", (room,))?;
        Ok(())
    }

    /// Asks who is in the avatar's room; the client gets
    /// `on_who(room, names)`, names sorted.
    #[own_client]
    fn who(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let room = Self::room(ctx)?;
        let lobby = lobby(ctx)?;
        ctx.call(lobby, "who", (room, ctx.id()))
    }

    /// The Lobby's answer to `who`.
    fn who_reply(&mut self, ctx: &mut Ctx, room: String, names: Vec<String>) -> Result<(), Error> {
        ctx.call_client("on_who", (room, names))?;
        Ok(())
    }

    /// The Lobby's answer to a join: the room's recent lines, for the client
    /// as `on_history(room, [[from, text], ...])`, oldest first.
    fn history_reply(
        &mut self,
        ctx: &mut Ctx,
        room: String,
        lines: Vec<(String, String)>,
    ) -> Result<(), Error> {
        ctx.call_client("on_history", (room, lines))?;
        Ok(())
    }

    /// Server only: `on_chat("server", room, text)` to the avatar's room.
    fn announce(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        Self::chat(ctx, "server", &text)
    }

    /// Says `text` in capitals (feature `v2`): the new chat command a hot
    /// swap brings in while players are connected.
    #[cfg(feature = "v2")]
    #[own_client]
    fn shout(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        self.say(ctx, text.to_uppercase())
    }

    /// Loops forever (feature `faults`): for the host's deadline.
    #[cfg(feature = "faults")]
    #[own_client]
    fn spin(&mut self) {
        let mut i = 0u64;
        loop {
            i = core::hint::black_box(i.wrapping_add(1));
        }
    }

    /// Panics (feature `faults`): for the host's crash recovery.
    #[cfg(feature = "faults")]
    #[own_client]
    fn boom(&mut self) {
        panic!("Avatar.boom called");
    }

    /// The client is now bound here (right after login): tag it with the
    /// room and confirm the login.
    fn on_client_connected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let room = Self::room(ctx)?;
        ctx.set_client_tag("room", &room)?;
        ctx.call_client("on_login", (true, ""))?;
        Ok(())
    }

    /// The client went away: leave the Lobby's books and go.
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let name = Self::name(ctx);
        let room = Self::room(ctx);
        let id = ctx.id();
        if let (Ok(name), Ok(room), Ok(lobby)) = (name, room, lobby(ctx)) {
            ctx.call(lobby, "left", (name, room, id))?;
        }
        ctx.destroy_entity(id)
    }
}

/// The service that owns accounts, the online list and room membership, all
/// in host attributes: `accounts` (name → password hash, persistent),
/// `online` (name → avatar id, or the account making it), `members` (room →
/// name → avatar id), `checking` (account id → the name whose password is
/// being checked for it).
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {}

impl Lobby {
    /// Sends a room's recent lines to an avatar that just arrived there.
    fn send_history(ctx: &mut Ctx, room: &str, avatar: EntityId) -> Result<(), Error> {
        let lines: Vec<(String, String)> =
            ctx.get_attr(path!["history", room])?.unwrap_or_default();
        ctx.call(avatar, "history_reply", (room, lines))
    }

    /// Removes `name` from `room` if it is there as `avatar`, and the room
    /// itself once it is empty.
    fn leave_room(ctx: &mut Ctx, name: &str, room: &str, avatar: EntityId) -> Result<(), Error> {
        if ctx.get_attr::<EntityId>(path!["members", room, name])? == Some(avatar) {
            ctx.delete_attr(path!["members", room, name])?;
        }
        let left: Option<BTreeMap<String, EntityId>> = ctx.get_attr(path!["members", room])?;
        if left.is_some_and(|m| m.is_empty()) {
            ctx.delete_attr(path!["members", room])?;
        }
        Ok(())
    }
}

#[wyrm_sdk::entity(attrs(
    accounts = "persistent",
    history = "persistent",
    online = "none",
    members = "none",
    checking = "none"
))]
impl Lobby {
    /// Stores a new account unless the name is taken; answers the account's
    /// client with `on_register` once the account is on disk, so an account
    /// a client was told exists survives even a crash of the server.
    fn store_account(
        &mut self,
        ctx: &mut Ctx,
        name: String,
        hash: String,
        account: EntityId,
    ) -> Result<(), Error> {
        if ctx.get_attr::<String>(path!["accounts", &name])?.is_some() {
            ctx.call_client_of(account, "on_register", (false, "name taken"))?;
        } else {
            ctx.set_attr(path!["accounts", &name], hash)?;
            ctx.save_now("account_saved", account)?;
        }
        Ok(())
    }

    /// Storage's answer to the save of a new account.
    fn account_saved(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        _lobby: EntityId,
        account: EntityId,
    ) -> Result<(), Error> {
        let answer = match error {
            None => (true, String::new()),
            Some(e) => (false, format!("not saved: {e}")),
        };
        ctx.call_client_of(account, "on_register", answer)?;
        Ok(())
    }

    /// Starts a login: checks the password off-thread, continuing in
    /// `verified`.
    fn login(
        &mut self,
        ctx: &mut Ctx,
        name: String,
        password: String,
        account: EntityId,
    ) -> Result<(), Error> {
        let Some(hash) = ctx.get_attr::<String>(path!["accounts", &name])? else {
            ctx.call_client_of(account, "on_login", (false, WRONG_LOGIN))?;
            return Ok(());
        };
        // An account that leaves while its password is checked says `left`
        // (after this, since it asked first), which ends the check.
        ctx.set_attr(path!["checking", account.to_string()], &name)?;
        ctx.verify_password(&password, &hash, "verified", (name, account))?;
        Ok(())
    }

    /// `verify_password` continuation: on success, the name is held for
    /// the account, which makes the Avatar (`Account.logged_in`) and tells
    /// us (`entered`).
    fn verified(
        &mut self,
        ctx: &mut Ctx,
        ok: Option<bool>,
        context: (String, EntityId),
    ) -> Result<(), Error> {
        let (name, account) = context;
        let checking = path!["checking", account.to_string()];
        if ctx.get_attr::<String>(&checking)?.is_none() {
            return Ok(()); // the client left while we were checking
        }
        ctx.delete_attr(&checking)?;
        let why = match ok {
            None => BUSY,
            Some(false) => WRONG_LOGIN,
            Some(true) => match ctx.get_attr::<EntityId>(path!["online", &name])? {
                // Online, or left behind by a game that died (in a
                // cluster): asked, then `online_checked`.
                Some(there) => {
                    return ctx.entity_exists(there, "online_checked", (name, account, there));
                }
                None => {
                    ctx.set_attr(path!["online", &name], account)?;
                    return ctx.call(account, "logged_in", (name,));
                }
            },
        };
        ctx.call_client_of(account, "on_login", (false, why))?;
        Ok(())
    }

    /// `entity_exists` continuation: whether the entity online as `name`
    /// still exists. If it does, the login is refused; if it is gone (its
    /// game's process died), it is forgotten and the login goes on.
    fn online_checked(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        exists: Option<bool>,
        context: (String, EntityId, EntityId),
    ) -> Result<(), Error> {
        let (name, account, there) = context;
        let why = match (error, exists) {
            (Some(_), _) => BUSY,
            (None, Some(false)) => {
                if ctx.get_attr::<EntityId>(path!["online", &name])? != Some(there) {
                    "already online" // someone else took the name meanwhile
                } else {
                    let rooms: BTreeMap<String, BTreeMap<String, EntityId>> =
                        ctx.get_attr(path!["members"])?.unwrap_or_default();
                    for room in rooms.keys() {
                        Self::leave_room(ctx, &name, room, there)?;
                    }
                    ctx.set_attr(path!["online", &name], account)?;
                    return ctx.call(account, "logged_in", (name,));
                }
            }
            (None, _) => "already online",
        };
        ctx.call_client_of(account, "on_login", (false, why))?;
        Ok(())
    }

    /// A logged-in avatar is in the first room.
    fn entered(&mut self, ctx: &mut Ctx, name: String, avatar: EntityId) -> Result<(), Error> {
        ctx.set_attr(path!["online", &name], avatar)?;
        ctx.set_attr(path!["members", FIRST_ROOM, &name], avatar)?;
        Self::send_history(ctx, FIRST_ROOM, avatar)
    }

    /// An avatar changed rooms.
    fn moved(
        &mut self,
        ctx: &mut Ctx,
        name: String,
        from: String,
        to: String,
        avatar: EntityId,
    ) -> Result<(), Error> {
        if from != to {
            Self::leave_room(ctx, &name, &from, avatar)?;
        }
        ctx.set_attr(path!["members", &to, &name], avatar)?;
        Self::send_history(ctx, &to, avatar)
    }

    /// Keeps a line in its room's history (the last `HISTORY` lines, saved
    /// with the Lobby, so they survive a restart).
    fn record(
        &mut self,
        ctx: &mut Ctx,
        room: String,
        from: String,
        text: String,
    ) -> Result<(), Error> {
        let mut lines: Vec<(String, String)> =
            ctx.get_attr(path!["history", &room])?.unwrap_or_default();
        lines.push((from, text));
        if lines.len() > HISTORY {
            lines.drain(..lines.len() - HISTORY);
        }
        ctx.set_attr(path!["history", &room], lines)
    }

    /// Answers an avatar's `who` with `who_reply(room, names)`.
    fn who(&mut self, ctx: &mut Ctx, room: String, avatar: EntityId) -> Result<(), Error> {
        let members: BTreeMap<String, EntityId> =
            ctx.get_attr(path!["members", &room])?.unwrap_or_default();
        let names: Vec<&String> = members.keys().collect(); // sorted: a BTreeMap
        ctx.call(avatar, "who_reply", (&room, names))
    }

    /// An avatar went offline (or an account logging in left).
    fn left(
        &mut self,
        ctx: &mut Ctx,
        name: String,
        room: String,
        avatar: EntityId,
    ) -> Result<(), Error> {
        if ctx.get_attr::<EntityId>(path!["online", &name])? == Some(avatar) {
            ctx.delete_attr(path!["online", &name])?;
        }
        ctx.delete_attr(path!["checking", avatar.to_string()])?;
        Self::leave_room(ctx, &name, &room, avatar)
    }
}

/// The version a build reports: feature `v2` is the "next release" used to
/// show hot swap.
const VERSION: &str = if cfg!(feature = "v2") {
    "0.2.0"
} else {
    env!("CARGO_PKG_VERSION")
};

wyrm_sdk::plugin!(
    name = "chatroom",
    version = VERSION,
    entities = [Account, Avatar, Lobby]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rooms() {
        assert!(valid_name("bob_42"));
        assert!(!valid_name(""));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(&"x".repeat(21)));
        assert!(valid_name(&"x".repeat(20)));
        assert!(!valid_name("bøb"));
        assert!(valid_room("side-room_2"));
        assert!(!valid_room("a b"));
        assert!(!valid_room(""));
    }
}
