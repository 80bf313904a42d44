//! {{name}}: game logic for Wyrm, in Rust.

use wyrm_sdk::prelude::*;

/// The entity every connecting client is bound to. Its fields are its
/// private state: they survive a hot swap (saved as a MessagePack map).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Player {
    greetings: u64,
}

#[wyrm_sdk::entity(attrs(name = "all_clients"))]
impl Player {
    /// The client says who it is; it hears back a greeting and how many
    /// it has had.
    #[own_client]
    fn hello(&mut self, ctx: &mut Ctx, name: String) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::new("a name, please"));
        }
        self.greetings += 1;
        ctx.set_attr("name", &name)?;
        ctx.call_client("on_hello", (format!("Hello, {name}!"), self.greetings))?;
        Ok(())
    }
}

wyrm_sdk::plugin!(name = "{{name}}", entities = [Player]);
