//! The open world of the scale benchmark (`cargo bench -p wyrm --bench
//! scale`): closer to an MMO than the arena's crowded field.
//!
//! - `Realm` (a service): creates the `Land` (the space, `SIZE` × `SIZE`)
//!   at every start.
//! - `Land`: the space; no logic of its own.
//! - `Walker` (each connecting client's entity): appears anywhere in the
//!   land, evenly, is moved by its client (`Move` frames), and sees what is
//!   within `AOI_RADIUS`. `emote(n)` shows an action to everyone who sees
//!   it (`emoted [n]`, on the walker, its own client included).

use wyrm_sdk::prelude::*;

const REALM: &str = "Realm";
/// The land is `[0, SIZE] × [0, SIZE]`.
pub const SIZE: f32 = 10_000.0;
const AOI_RADIUS: f32 = 100.0;
const AOI_HYSTERESIS: f32 = 10.0;

/// The service that owns the land.
#[derive(Default, Serialize, Deserialize)]
pub struct Realm {}

#[wyrm_sdk::entity(attrs(land = "none"))]
impl Realm {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let land = ctx.create_space("Land", "open", attrs! { "size" => SIZE })?;
        ctx.set_attr("land", land)?;
        Ok(())
    }

    /// Puts a new walker somewhere on the land (the walker may live on
    /// another game: it moves to the land's).
    fn place(&mut self, ctx: &mut Ctx, walker: EntityId) -> Result<(), Error> {
        let land: EntityId = ctx
            .get_attr("land")?
            .ok_or_else(|| Error::new("the realm has no land yet"))?;
        let mut seed = ctx.now_ms() ^ walker.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
        let x = unit(&mut seed) * SIZE;
        let y = unit(&mut seed) * SIZE;
        ctx.enter_space_of(walker, land, Position { x, y, z: 0.0 }, 0.0)?;
        Ok(())
    }
}

/// The space everyone walks in.
#[derive(Default, Serialize, Deserialize)]
pub struct Land {}

#[wyrm_sdk::entity(attrs(size = "all_clients"))]
impl Land {}

/// A connected player.
#[derive(Default, Serialize, Deserialize)]
pub struct Walker {}

#[wyrm_sdk::entity(aoi(radius = AOI_RADIUS, hysteresis = AOI_HYSTERESIS))]
impl Walker {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let realm = ctx
            .service(REALM)
            .ok_or_else(|| Error::new("the Realm service is not running"))?;
        ctx.call(realm, "place", (ctx.id(),))?;
        ctx.allow_client_moves(true)?;
        Ok(())
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.destroy_entity(ctx.id())?;
        Ok(())
    }

    /// Shows action `n` to everyone who sees this walker.
    #[own_client]
    fn emote(&mut self, ctx: &mut Ctx, n: u32) -> Result<(), Error> {
        ctx.call_aoi_clients("emoted", (n,))?;
        Ok(())
    }
}

/// A number in `[0, 1)` from a xorshift64* step on `state`.
fn unit(state: &mut u64) -> f32 {
    let mut x = (*state).max(1);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
}

wyrm_sdk::plugin!(name = "openworld", entities = [Realm, Land, Walker]);
