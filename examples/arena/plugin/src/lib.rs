//! The arena example's server logic: GoWorld's shooter demo as a Wyrm
//! plugin, for a browser client that draws what its player's area of
//! interest shows.
//!
//! - `Arena` (a service): creates the `Field` at every start and keeps the
//!   best score (persistent).
//! - `Field` (the space, 2000×2000): spawns monsters on a timer and, on
//!   every space tick, lets each monster think.
//! - `Account` (each connecting client): `login(name)` asks the Arena to
//!   make a `Player` in the field and hand the client to it (the Arena runs
//!   on the game the field lives on, so with several games the player is
//!   made there). Players appear near the middle while the field
//!   holds few of them, so friends who log in together see each other, and
//!   farther out as more join, so a crowd spreads over the whole field.
//! - `Player`: moved by its client (`Move` frames); `shoot(dx, dy)` fires a
//!   hitscan shot; hit points, experience, levels, death and respawn.
//! - `Monster`: sees players through its area of interest, chases the
//!   nearest one and bites it.
//!
//! Calls to clients (MessagePack arrays): `shot [x1, y1, x2, y2]` on the
//! shooter, to everyone who sees it; `hit [amount]` on whoever was hit, to
//! everyone who sees it; `died []`, `respawned []`, `level_up [level]` on the
//! own player.

use std::collections::BTreeSet;

use wyrm_sdk::prelude::*;

const ARENA: &str = "Arena";
/// The field is `[0, SIZE] × [0, SIZE]`.
const SIZE: f32 = 2000.0;
/// New players appear in a square around the middle, this far from it on
/// each axis, while the field holds up to `SPAWN_CROWD` players; beyond, the
/// square grows with the square root of their number (the crowd's density
/// stays the same) until it is the whole field, less `SPAWN_MARGIN` (at
/// about 320 players).
const SPAWN_SPREAD: f32 = 150.0;
const SPAWN_CROWD: f32 = 8.0;
const SPAWN_MARGIN: f32 = 50.0;
/// Monsters keep this far from the middle when they spawn.
const MONSTER_SAFE: f32 = 300.0;
const MAX_MONSTERS: usize = 30;
const SPAWN_EVERY_MS: u32 = 1500;
const RESPAWN_MS: u32 = 3000;
const SHOT_RANGE: f32 = 600.0;
const SHOT_COOLDOWN_MS: u64 = 200;
/// How close to the line of fire a monster's centre must be to be hit.
const MONSTER_RADIUS: f32 = 22.0;
const MONSTER_SPEED: f32 = 70.0;
const BITE_RANGE: f32 = 30.0;
const BITE_EVERY_MS: u64 = 1000;
const BITE_DAMAGE: i64 = 8;
/// How often a monster looks again for the nearest player (in between it
/// chases the one it chose).
const RETARGET_MS: u64 = 250;
const XP_PER_KILL: i64 = 10;
const XP_PER_LEVEL: i64 = 50;

fn pos(x: f32, y: f32) -> Position {
    Position { x, y, z: 0.0 }
}

/// A small deterministic random source kept in entity state (so it travels
/// through swaps with the rest of it).
#[derive(Default, Serialize, Deserialize)]
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> f32 {
        // xorshift64*
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next()
    }
}

fn arena(ctx: &Ctx) -> Result<EntityId, Error> {
    ctx.service(ARENA)
        .ok_or_else(|| Error::new("the Arena service is not running"))
}

fn field(ctx: &Ctx) -> Result<EntityId, Error> {
    ctx.get_attr_of(arena(ctx)?, "field")?
        .ok_or_else(|| Error::new("the arena has no field yet"))
}

fn distance(a: Position, b: Position) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// The service that owns the field.
#[derive(Default, Serialize, Deserialize)]
pub struct Arena {}

#[wyrm_sdk::entity(attrs(field = "none", best = "persistent|all_clients"))]
impl Arena {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let field = ctx.create_space(
            "Field",
            "arena",
            attrs! { "width" => SIZE, "height" => SIZE },
        )?;
        ctx.set_attr("field", field)?;
        Ok(())
    }

    /// Makes `name`'s Player in the field and hands it the client of
    /// `account`, which it ends.
    fn join(&mut self, ctx: &mut Ctx, name: String, account: EntityId) -> Result<(), Error> {
        let field: EntityId = ctx
            .get_attr("field")?
            .ok_or_else(|| Error::new("the arena has no field yet"))?;
        let player = ctx.create_entity(
            "Player",
            attrs! {
                "name" => name, "hp" => 100, "max_hp" => 100, "level" => 1,
                "xp" => 0, "kills" => 0, "dead" => false,
            },
        )?;
        let mut rng = Rng::seeded(ctx.now_ms() ^ player.rotate_left(17));
        let at = spawn_point(ctx, field, &mut rng)?;
        ctx.enter_space_of(player, field, at, 0.0)?;
        if let Err(e) = ctx.give_client_to(account, player) {
            // The client left meanwhile.
            ctx.destroy_entity(player)?;
            return Err(e);
        }
        ctx.destroy_entity(account)?;
        Ok(())
    }

    /// A player reached `kills`; keeps the best.
    fn record(&mut self, ctx: &mut Ctx, name: String, kills: i64) -> Result<(), Error> {
        let best: i64 = ctx.get_attr(path!["best", "kills"])?.unwrap_or(0);
        if kills > best {
            ctx.set_attr("best", attrs! { "name" => name, "kills" => kills })?;
        }
        Ok(())
    }
}

/// Where a player appears (see `SPAWN_SPREAD`): anywhere, evenly, in a
/// square around the middle sized to the number of players.
fn spawn_point(ctx: &Ctx, field: EntityId, rng: &mut Rng) -> Result<Position, Error> {
    let players: i64 = ctx.get_attr_of(field, "players")?.unwrap_or(0);
    let crowd = (players as f32 + 1.0) / SPAWN_CROWD;
    let spread = (SPAWN_SPREAD * crowd.sqrt()).clamp(SPAWN_SPREAD, SIZE / 2.0 - SPAWN_MARGIN);
    Ok(pos(
        SIZE / 2.0 + rng.range(-spread, spread),
        SIZE / 2.0 + rng.range(-spread, spread),
    ))
}

/// The space everything happens in.
#[derive(Default, Serialize, Deserialize)]
pub struct Field {
    monsters: BTreeSet<EntityId>,
    rng: Rng,
}

#[wyrm_sdk::entity(attrs(
    width = "all_clients",
    height = "all_clients",
    players = "none",
    monsters = "none"
))]
impl Field {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        self.rng = Rng::seeded(ctx.now_ms() ^ ctx.id());
        ctx.set_repeating_timer(SPAWN_EVERY_MS, "spawn", ())?;
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Ctx, dt_ms: u32) -> Result<(), Error> {
        for &m in &self.monsters {
            ctx.call(m, "think", (dt_ms,))?;
        }
        Ok(())
    }

    /// Adds a monster if there are fewer than the most allowed.
    fn spawn(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        if self.monsters.len() >= MAX_MONSTERS {
            return Ok(());
        }
        let place = loop {
            let p = pos(self.rng.range(0.0, SIZE), self.rng.range(0.0, SIZE));
            if distance(p, pos(SIZE / 2.0, SIZE / 2.0)) > MONSTER_SAFE {
                break p;
            }
        };
        let (kind, hp) = if self.rng.next() < 0.7 {
            ("slime", 60)
        } else {
            ("wolf", 120)
        };
        let m = ctx.create_entity(
            "Monster",
            attrs! { "kind" => kind, "hp" => hp, "max_hp" => hp },
        )?;
        ctx.enter_space_of(m, ctx.id(), place, 0.0)?;
        self.monsters.insert(m);
        self.publish_monsters(ctx)
    }

    fn monster_died(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        self.monsters.remove(&id);
        self.publish_monsters(ctx)
    }

    /// Players shoot at monsters only: they read the list instead of
    /// looking at everything they see.
    fn publish_monsters(&self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.set_attr(
            "monsters",
            self.monsters.iter().copied().collect::<Vec<_>>(),
        )?;
        Ok(())
    }

    /// A player came (`+1`) or went (`-1`); the count places newcomers.
    fn players_changed(&mut self, ctx: &mut Ctx, by: i64) -> Result<(), Error> {
        let players: i64 = ctx.get_attr("players")?.unwrap_or(0);
        ctx.set_attr("players", (players + by).max(0))?;
        Ok(())
    }
}

/// The entity a client is bound to until it logs in.
#[derive(Default, Serialize, Deserialize)]
pub struct Account {}

#[wyrm_sdk::entity]
impl Account {
    /// Enters the arena as `name` (1–16 characters).
    #[own_client]
    fn login(&mut self, ctx: &mut Ctx, name: String) -> Result<(), Error> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 16 {
            return Err(Error::new("a name has 1 to 16 characters"));
        }
        // The Arena makes the player beside its field (on the game the
        // field lives on, with several) and takes this client over.
        ctx.call(arena(ctx)?, "join", (name, ctx.id()))?;
        Ok(())
    }
}

/// A logged-in player.
#[derive(Default, Serialize, Deserialize)]
pub struct Player {
    last_shot_ms: u64,
}

#[wyrm_sdk::entity(
    attrs(
        name = "all_clients",
        hp = "all_clients",
        max_hp = "all_clients",
        level = "all_clients",
        xp = "own_client",
        kills = "all_clients",
        dead = "all_clients",
    ),
    aoi(radius = 450.0, hysteresis = 50.0)
)]
impl Player {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.allow_client_moves(true)?;
        ctx.call(field(ctx)?, "players_changed", (1,))?;
        Ok(())
    }

    fn on_destroyed(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call(field(ctx)?, "players_changed", (-1,))?;
        Ok(())
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.destroy_entity(ctx.id())?;
        Ok(())
    }

    /// Fires toward `(dx, dy)`: the nearest monster within range whose body
    /// the line crosses takes the hit.
    #[own_client]
    fn shoot(&mut self, ctx: &mut Ctx, dx: f32, dy: f32) -> Result<(), Error> {
        if ctx.get_attr::<bool>("dead")?.unwrap_or(false) {
            return Ok(());
        }
        let now = ctx.now_ms();
        if now < self.last_shot_ms + SHOT_COOLDOWN_MS {
            return Ok(());
        }
        self.last_shot_ms = now;
        let len = (dx * dx + dy * dy).sqrt();
        if !len.is_finite() || len < 1e-3 {
            return Err(Error::new("shoot needs a direction"));
        }
        let (dx, dy) = (dx / len, dy / len);
        let here = ctx
            .placement()
            .ok_or_else(|| Error::new("not in the arena"))?;
        let me = here.pos;
        let monsters: Vec<EntityId> = ctx.get_attr_of(here.space, "monsters")?.unwrap_or_default();
        let mut hit: Option<(f32, EntityId)> = None;
        for monster in monsters {
            let Some(p) = ctx.placement_of(monster) else {
                continue;
            };
            let (ox, oy) = (p.pos.x - me.x, p.pos.y - me.y);
            let along = ox * dx + oy * dy;
            let across = (ox * dy - oy * dx).abs();
            if !(0.0..=SHOT_RANGE).contains(&along) || across > MONSTER_RADIUS {
                continue;
            }
            if hit.is_none_or(|(d, _)| along < d) {
                hit = Some((along, monster));
            }
        }
        let reach = hit.map_or(SHOT_RANGE, |(d, _)| d);
        ctx.call_aoi_clients("shot", (me.x, me.y, me.x + dx * reach, me.y + dy * reach))?;
        if let Some((_, monster)) = hit {
            let level: i64 = ctx.get_attr("level")?.unwrap_or(1);
            ctx.call(monster, "hurt", (15 + 5 * level, ctx.id()))?;
        }
        Ok(())
    }

    /// Takes `amount` of damage.
    fn hurt(&mut self, ctx: &mut Ctx, amount: i64) -> Result<(), Error> {
        if ctx.get_attr::<bool>("dead")?.unwrap_or(false) {
            return Ok(());
        }
        let hp = ctx.get_attr::<i64>("hp")?.unwrap_or(0) - amount;
        ctx.set_attr("hp", hp.max(0))?;
        ctx.call_aoi_clients("hit", (amount,))?;
        if hp <= 0 {
            ctx.set_attr("dead", true)?;
            ctx.allow_client_moves(false)?;
            ctx.call_client("died", ())?;
            ctx.set_timer(RESPAWN_MS, "respawn", ())?;
        }
        Ok(())
    }

    /// Back to life, full health, where newcomers appear.
    fn respawn(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let max: i64 = ctx.get_attr("max_hp")?.unwrap_or(100);
        ctx.set_attr("hp", max)?;
        ctx.set_attr("dead", false)?;
        let mut rng = Rng::seeded(ctx.now_ms() ^ ctx.id());
        let at = spawn_point(ctx, field(ctx)?, &mut rng)?;
        ctx.set_position(at, 0.0)?;
        ctx.allow_client_moves(true)?;
        ctx.call_client("respawned", ())?;
        Ok(())
    }

    /// A monster this player shot died.
    fn reward(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let xp = ctx.get_attr::<i64>("xp")?.unwrap_or(0) + XP_PER_KILL;
        let kills = ctx.get_attr::<i64>("kills")?.unwrap_or(0) + 1;
        ctx.set_attr("xp", xp)?;
        ctx.set_attr("kills", kills)?;
        let level: i64 = ctx.get_attr("level")?.unwrap_or(1);
        let earned = 1 + xp / XP_PER_LEVEL;
        if earned > level {
            let max = 100 + 20 * (earned - 1);
            ctx.set_attr("level", earned)?;
            ctx.set_attr("max_hp", max)?;
            ctx.set_attr("hp", max)?;
            ctx.call_client("level_up", (earned,))?;
        }
        let name: String = ctx.get_attr("name")?.unwrap_or_default();
        ctx.call(arena(ctx)?, "record", (name, kills))?;
        Ok(())
    }
}

/// The nearest living player of `seen`.
fn nearest_living(
    ctx: &Ctx,
    seen: &BTreeSet<EntityId>,
    me: Position,
) -> Result<Option<EntityId>, Error> {
    let mut near: Vec<(f32, EntityId)> = seen
        .iter()
        .filter_map(|&p| Some((distance(me, ctx.placement_of(p)?.pos), p)))
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, p) in near {
        if !ctx.get_attr_of::<bool>(p, "dead")?.unwrap_or(true) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// A monster: chases the nearest player it sees and bites.
#[derive(Default, Serialize, Deserialize)]
pub struct Monster {
    /// Players in its area of interest.
    seen: BTreeSet<EntityId>,
    last_bite_ms: u64,
    rng: Rng,
    /// Wandering heading while no player is seen.
    heading: f32,
    /// The player it chases, and when to look for the nearest again.
    target: Option<EntityId>,
    retarget_ms: u64,
}

#[wyrm_sdk::entity(
    attrs(kind = "all_clients", hp = "all_clients", max_hp = "all_clients"),
    aoi(radius = 350.0, hysteresis = 50.0)
)]
impl Monster {
    fn on_created(&mut self, ctx: &mut Ctx) {
        self.rng = Rng::seeded(ctx.now_ms() ^ ctx.id().rotate_left(29));
        self.heading = self.rng.range(0.0, std::f32::consts::TAU);
    }

    fn on_aoi_enter(&mut self, ctx: &mut Ctx, other: EntityId) {
        if ctx.entity_type(other).as_deref() == Some("Player") {
            self.seen.insert(other);
        }
    }

    fn on_aoi_leave(&mut self, other: EntityId) {
        self.seen.remove(&other);
    }

    /// One step of AI, `dt_ms` after the last.
    fn think(&mut self, ctx: &mut Ctx, dt_ms: u32) -> Result<(), Error> {
        let Some(me) = ctx.placement() else {
            return Ok(());
        };
        let me = me.pos;
        let dt = dt_ms.min(200) as f32 / 1000.0;
        let now = ctx.now_ms();
        if now >= self.retarget_ms || self.target.is_none_or(|t| !self.seen.contains(&t)) {
            self.target = nearest_living(ctx, &self.seen, me)?;
            self.retarget_ms = now + RETARGET_MS;
        }
        let mut target = None;
        if let Some(t) = self.target {
            match ctx.placement_of(t) {
                Some(p) if !ctx.get_attr_of::<bool>(t, "dead")?.unwrap_or(true) => {
                    target = Some((distance(me, p.pos), t, p.pos));
                }
                _ => self.target = None,
            }
        }
        let (heading, speed) = match target {
            Some((d, player, at)) => {
                if d <= BITE_RANGE && now >= self.last_bite_ms + BITE_EVERY_MS {
                    self.last_bite_ms = now;
                    ctx.call(player, "hurt", (BITE_DAMAGE,))?;
                }
                let speed = if d <= BITE_RANGE * 0.8 {
                    0.0
                } else {
                    MONSTER_SPEED
                };
                ((at.y - me.y).atan2(at.x - me.x), speed)
            }
            None => {
                if self.rng.next() < 0.02 {
                    self.heading = self.rng.range(0.0, std::f32::consts::TAU);
                }
                (self.heading, MONSTER_SPEED * 0.4)
            }
        };
        if speed == 0.0 {
            return Ok(());
        }
        let x = me.x + heading.cos() * speed * dt;
        let y = me.y + heading.sin() * speed * dt;
        if !(0.0..=SIZE).contains(&x) || !(0.0..=SIZE).contains(&y) {
            // Turn around at the border.
            self.heading = heading + std::f32::consts::PI;
            return Ok(());
        }
        ctx.set_position(pos(x, y), heading)?;
        Ok(())
    }

    /// Takes `amount` of damage from player `by`.
    fn hurt(&mut self, ctx: &mut Ctx, amount: i64, by: EntityId) -> Result<(), Error> {
        let hp = ctx.get_attr::<i64>("hp")?.unwrap_or(0) - amount;
        if hp <= 0 {
            ctx.call_aoi_clients("hit", (amount,))?;
            ctx.call(by, "reward", ())?;
            if let Some(space) = ctx.placement().map(|p| p.space) {
                ctx.call(space, "monster_died", (ctx.id(),))?;
            }
            ctx.destroy_entity(ctx.id())?;
            return Ok(());
        }
        ctx.set_attr("hp", hp)?;
        ctx.call_aoi_clients("hit", (amount,))?;
        Ok(())
    }
}

wyrm_sdk::plugin!(
    name = "arena",
    entities = [Arena, Field, Account, Player, Monster]
);
