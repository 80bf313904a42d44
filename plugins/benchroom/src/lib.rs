//! The room of the side-by-side benchmark against Colyseus
//! (`bench/colyseus/`): the Wyrm twin of a Colyseus room whose state is a
//! map of players with `x` and `y`.
//!
//! - `Bench` (a service): creates the `Hall` (the space) at every start.
//! - `Hall`: the space, `SIZE` × `SIZE`; no logic of its own.
//! - `Player` (each connecting client's entity): enters the hall at a random
//!   place, is moved by its client (`Move` frames), and sees every other
//!   player (its area of interest covers the whole hall, as a Colyseus
//!   room's state is everyone's). The host sends each client the positions
//!   that changed at every space tick (`Positions` frames).

use wyrm_sdk::prelude::*;

const BENCH: &str = "Bench";
/// The hall is `[0, SIZE] × [0, SIZE]`; the driver keeps its moves inside.
const SIZE: f32 = 1000.0;
/// Larger than the hall's diagonal (≈ 1414), so every player sees every
/// other wherever they stand.
const AOI_RADIUS: f32 = 2000.0;
const _: () = assert!(AOI_RADIUS > SIZE * std::f32::consts::SQRT_2);

/// The service that owns the hall.
#[derive(Default, Serialize, Deserialize)]
pub struct Bench {}

#[wyrm_sdk::entity(attrs(hall = "none"))]
impl Bench {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let hall = ctx.create_space("Hall", "bench", attrs! { "size" => SIZE })?;
        ctx.set_attr("hall", hall)?;
        Ok(())
    }

    /// Puts a new player somewhere in the hall (the player may live on
    /// another game: it moves to the hall's).
    fn seat(&mut self, ctx: &mut Ctx, player: EntityId) -> Result<(), Error> {
        let hall: EntityId = ctx
            .get_attr("hall")?
            .ok_or_else(|| Error::new("the bench has no hall yet"))?;
        // Spread the players: a xorshift seeded from the clock and the id
        // scatters them well enough and needs nothing from the host.
        let mut seed = ctx.now_ms() ^ player.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
        let x = unit(&mut seed) * SIZE;
        let y = unit(&mut seed) * SIZE;
        ctx.enter_space_of(player, hall, Position { x, y, z: 0.0 }, 0.0)?;
        Ok(())
    }
}

/// The space every player is in.
#[derive(Default, Serialize, Deserialize)]
pub struct Hall {}

#[wyrm_sdk::entity(attrs(size = "all_clients"))]
impl Hall {}

/// A connected client's entity.
#[derive(Default, Serialize, Deserialize)]
pub struct Player {}

#[wyrm_sdk::entity(aoi(radius = AOI_RADIUS, hysteresis = 50.0))]
impl Player {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let bench = ctx
            .service(BENCH)
            .ok_or_else(|| Error::new("the Bench service is not running"))?;
        ctx.call(bench, "seat", (ctx.id(),))?;
        ctx.allow_client_moves(true)?;
        Ok(())
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.destroy_entity(ctx.id())?;
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

wyrm_sdk::plugin!(name = "benchroom", entities = [Bench, Hall, Player]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_stays_in_range() {
        let mut s = 12345;
        for _ in 0..10_000 {
            let u = unit(&mut s);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
