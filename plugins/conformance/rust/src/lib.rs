//! The conformance plugin in Rust: `Room` and `Member` exactly as
//! `plugins/conformance/README.md` specifies them. The JavaScript, Python
//! and C folders beside this one implement the same contract, and a server
//! can swap between all four with the private state carried over.

use wyrm_sdk::prelude::*;

/// Lines of history the room keeps.
const HISTORY: usize = 20;

/// Whether `s` has between `min` and `max` characters.
fn chars_between(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.chars().count())
}

/// The service: recent lines and how many were ever posted.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    lines: Vec<(String, String)>,
    posts: u64,
}

#[wyrm_sdk::entity(attrs(topic = "persistent"))]
impl Room {
    /// A member said hello: send it the history.
    fn join(&mut self, ctx: &mut Ctx, member: EntityId, _name: String) -> Result<(), Error> {
        ctx.call_client_of(member, "on_history", (&self.lines, self.posts))?;
        Ok(())
    }

    /// A member said something: keep it and tell everyone.
    fn post(
        &mut self,
        ctx: &mut Ctx,
        _member: EntityId,
        name: String,
        text: String,
    ) -> Result<(), Error> {
        self.posts += 1;
        self.lines.push((name.clone(), text.clone()));
        if self.lines.len() > HISTORY {
            self.lines.remove(0);
        }
        ctx.broadcast("on_said", (name, text, self.posts))
    }
}

/// A connected client's entity.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    said: u64,
}

#[wyrm_sdk::entity(attrs(name = "all_clients", said = "own_client"))]
impl Member {
    #[own_client]
    fn hello(&mut self, ctx: &mut Ctx, name: String) -> Result<(), Error> {
        if !chars_between(&name, 1, 20) {
            return Err(Error::new("bad name"));
        }
        ctx.set_attr("name", &name)?;
        let room = ctx.service("Room").ok_or_else(|| Error::new("no room"))?;
        ctx.call(room, "join", (ctx.id(), name))
    }

    #[own_client]
    fn say(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        let name: String = ctx
            .get_attr("name")?
            .ok_or_else(|| Error::new("say hello first"))?;
        if !chars_between(&text, 1, 200) {
            return Err(Error::new("bad text"));
        }
        self.said += 1;
        ctx.set_attr("said", self.said)?;
        let room = ctx.service("Room").ok_or_else(|| Error::new("no room"))?;
        ctx.call(room, "post", (ctx.id(), name, text))
    }

    #[own_client]
    fn echo(&mut self, ctx: &mut Ctx, value: rmpv::Value) -> Result<(), Error> {
        ctx.call_client("on_echo", (value,))?;
        Ok(())
    }

    #[own_client]
    fn remind(&mut self, ctx: &mut Ctx, delay_ms: u32, text: String) -> Result<(), Error> {
        ctx.set_timer(delay_ms, "reminded", (text,))?;
        Ok(())
    }

    fn reminded(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        ctx.call_client("on_reminder", (text, self.said))?;
        Ok(())
    }

    #[own_client]
    fn fail(&mut self, _ctx: &mut Ctx, message: String) -> Result<(), Error> {
        Err(Error::new(message))
    }

    #[own_client]
    fn kind_of(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.ask_entity_type(id, "told", "kind")
    }

    #[own_client]
    fn peek(&mut self, ctx: &mut Ctx, id: EntityId, attr: String) -> Result<(), Error> {
        ctx.ask_attr(id, attr.as_str(), "told", &attr)
    }

    fn told(
        &mut self,
        ctx: &mut Ctx,
        error: rmpv::Value,
        value: rmpv::Value,
        context: rmpv::Value,
    ) -> Result<(), Error> {
        ctx.call_client("on_told", (context, error, value))?;
        Ok(())
    }

    #[own_client]
    fn spawn(&mut self, ctx: &mut Ctx, name: String) -> Result<(), Error> {
        let id = ctx.create_entity_at("Member", attrs! { "name" => name }, Locality::Anywhere)?;
        ctx.call_client("on_spawned", (id,))?;
        ctx.ask_attr(id, "name", "told", "spawned")?;
        ctx.destroy_entity(id)
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        if let Err(e) = ctx.destroy_entity(ctx.id()) {
            ctx.log(LogLevel::Warn, &format!("cannot destroy member: {e}"));
        }
    }
}

wyrm_sdk::plugin!(
    name = "conformance-rust",
    version = "1.0.0-rust",
    entities = [Room, Member]
);
