//! The dispatcher's logic: where every live entity is, where new ones go,
//! which entity is each service, and the messages that wait for an entity
//! between two games. No threads, channels or sockets: [`Directory`] is a
//! data structure whoever carries the messages drives (in `wyrm serve`,
//! under a lock, delivering into game inboxes; in a cluster, a dispatcher
//! process on NATS), so its rules are tested here on their own.
//!
//! # Delivery: ordered and exactly once per entity
//!
//! Every message for an entity goes through [`Directory::route`], which
//! either names the game to deliver it to or holds it. The caller delivers
//! in the order `route` answered, before it routes anything else (holding
//! the lock it routes under, or publishing on one ordered stream per game).
//! An entity is held while it *arrives* (loaded from storage, or created by
//! a game other than the one asking) and while it *migrates*; when the game
//! it goes to has it, that game calls [`Directory::arrived`], which hands
//! back what was held, in order, and queues it itself, before anything
//! newer. (Not through its own inbox: once the entity is local, its
//! neighbours call it without the directory, and such a call must not
//! overtake one that was held.)
//!
//! A migration from game A to game B:
//! 1. A calls [`Directory::begin_migration`]; from then on messages for the
//!    entity are held. The caller then delivers a marker to A, on the same
//!    ordered path as every message for A, so everything routed to A for
//!    the entity before the hold is ahead of the marker.
//! 2. When A reaches the marker it has every such message in its work
//!    queue; it takes them out, with the entity's state (attributes,
//!    timers, private state through the state hook, its place, its client
//!    binding), and sends it all to B.
//! 3. B installs the entity, queues the work it came with, calls
//!    [`Directory::arrived`] and queues the held messages after that work.
//!    Each message was either routed before the hold (so it travelled with
//!    the entity) or after it (so it was held): once, and in order. The
//!    tests simulate games doing this with random sends, migrations and
//!    interleavings, and check exactly that.
//!
//! # Sharding and restarts
//!
//! Nothing here is durable: the games hold the truth (which entities they
//! run), and a directory is rebuilt from what they report
//! ([`Directory::rebuild`], or game by game with [`Directory::reported`]).
//! While games are yet to report ([`Directory::await_reports`]), an id no
//! game has reported may be one of theirs: a message for it is held, not
//! taken for absent, and goes to the game that reports the id, before
//! anything newer; what is left when the last game has reported (or the
//! caller stops waiting) comes back to be mailed. A cluster shards the directory by entity id
//! (each message goes to the shard of its target, so one shard orders all
//! of an entity's messages) and services by name; placement uses the
//! loads games report to every shard.

use std::collections::{HashMap, VecDeque};

use wyrm_wire::{EntityId, GameId};

/// Where a new entity should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the game with the fewest entities (the lowest id of equals).
    Anywhere,
    /// On this game (the one creating it, for logic that wants its new
    /// entities beside it).
    Here(GameId),
}

/// What to do with a message for an entity.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<M> {
    /// Deliver it to this game now.
    Deliver(GameId, M),
    /// Held until the entity has arrived where it is going; nothing to do.
    Held,
    /// No game runs the entity, nor is about to: the caller mails it (if
    /// the entity is saved, storage keeps it for its next load) or drops it.
    Absent(M),
}

/// Most messages held for ids no game has reported yet; past it, a message
/// for such an id is absent, as when no game is awaited.
pub const UNREPORTED_MAX: usize = 65_536;

/// Why a directory refused a change. Each is a bug in the caller or a race
/// it must handle: the directory is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("entity {0} is not live on any game")]
    NotLive(EntityId),
    #[error("entity {id} is already on game {game:?}")]
    AlreadyThere { id: EntityId, game: GameId },
    #[error(
        "entity {0} is already on its way between games; it can move again once it has arrived"
    )]
    Moving(EntityId),
    #[error("entity {id} was expected on game {expected:?}, not {got:?}")]
    WrongGame {
        id: EntityId,
        expected: GameId,
        got: GameId,
    },
    #[error("there is no game {0:?}")]
    NoGame(GameId),
    #[error("service {name} is already entity {id}")]
    ServiceTaken { name: String, id: EntityId },
}

#[derive(Debug)]
enum Place<M> {
    Live(GameId),
    /// Loading on (or created by) `game`, not yet there.
    Arriving {
        game: GameId,
        held: VecDeque<M>,
    },
    /// On its way from `from` to `to`.
    Migrating {
        from: GameId,
        to: GameId,
        held: VecDeque<M>,
    },
}

impl<M> Place<M> {
    /// The game that runs the entity now, or will once it has arrived.
    fn game(&self) -> GameId {
        match self {
            Place::Live(g) | Place::Arriving { game: g, .. } | Place::Migrating { to: g, .. } => *g,
        }
    }
}

/// Where every entity is, which entity each service is, and what waits for
/// entities on their way; `M` is the message type it holds.
#[derive(Debug)]
pub struct Directory<M> {
    entities: HashMap<EntityId, Place<M>>,
    /// Entities each game runs or is about to (its load), by `GameId`.
    load: Vec<usize>,
    /// Games that take new entities: all in one process; in a cluster,
    /// those whose process is there.
    up: Vec<bool>,
    services: HashMap<String, EntityId>,
    /// Games yet to report what they run, and what waits for ids none has
    /// reported yet (see the crate docs); `None` when no game is awaited.
    unreported: Option<Unreported<M>>,
}

#[derive(Debug)]
struct Unreported<M> {
    games: Vec<GameId>,
    held: HashMap<EntityId, VecDeque<M>>,
    /// Messages in `held`.
    count: usize,
}

impl<M> Unreported<M> {
    /// Everything held, each id's oldest first.
    fn into_messages(self) -> Vec<(EntityId, M)> {
        self.held
            .into_iter()
            .flat_map(|(id, held)| held.into_iter().map(move |m| (id, m)))
            .collect()
    }
}

impl<M> Directory<M> {
    /// An empty directory of `games` games, ids 0 to `games - 1`.
    pub fn new(games: usize) -> Self {
        Self {
            entities: HashMap::new(),
            load: vec![0; games.max(1)],
            up: vec![true; games.max(1)],
            services: HashMap::new(),
            unreported: None,
        }
    }

    /// A directory rebuilt from what each game reports it runs (after the
    /// dispatcher restarted): its live entities, and the services among
    /// them. An entity two games report stays with the first report (a
    /// migration the restart interrupted; the other game must drop it).
    pub fn rebuild(
        games: usize,
        reports: impl IntoIterator<Item = (GameId, Vec<EntityId>, Vec<(String, EntityId)>)>,
    ) -> (Self, Vec<(GameId, EntityId)>) {
        let mut dir = Self::new(games);
        let mut duplicates = Vec::new();
        for (game, live, services) in reports {
            for id in live {
                if dir.created(id, game).is_err() {
                    duplicates.push((game, id));
                }
            }
            for (name, id) in services {
                let _ = dir.register_service(&name, id);
            }
        }
        (dir, duplicates)
    }

    /// The number of games.
    pub fn games(&self) -> usize {
        self.load.len()
    }

    /// Entities each game runs or is about to, by game id.
    pub fn load(&self) -> &[usize] {
        &self.load
    }

    /// Whether `game` takes new entities (its process is there). A game
    /// that is not is never chosen by load.
    pub fn set_up(&mut self, game: GameId, up: bool) {
        if let Some(u) = self.up.get_mut(usize::from(game.0)) {
            *u = up;
        }
    }

    /// Whether any game takes new entities.
    pub fn any_up(&self) -> bool {
        self.up.iter().any(|&u| u)
    }

    /// Whether game `game` takes new entities.
    pub fn is_up(&self, game: GameId) -> bool {
        self.up.get(usize::from(game.0)).copied().unwrap_or(false)
    }

    /// Waits for each of `games` to report what it runs (the dispatcher
    /// restarted while they ran): until each has said it is done
    /// ([`reports_done`](Self::reports_done)) or the caller
    /// [stops waiting](Self::stop_awaiting), a message for an id no game
    /// has is held for it (up to [`UNREPORTED_MAX`]).
    pub fn await_reports(&mut self, games: impl IntoIterator<Item = GameId>) {
        let games: Vec<GameId> = games.into_iter().collect();
        if !games.is_empty() {
            self.unreported = Some(Unreported {
                games,
                held: HashMap::new(),
                count: 0,
            });
        }
    }

    /// Whether some game is yet to report what it runs: an id unknown now
    /// may still be one of its.
    pub fn awaits_reports(&self) -> bool {
        self.unreported.is_some()
    }

    /// `game` reports it runs `id`: live there, as if it had just
    /// [`created`](Self::created) it, and what was held for the id while
    /// no game had reported it comes back, oldest first, for `game` to
    /// queue before anything newer.
    pub fn reported(&mut self, id: EntityId, game: GameId) -> Result<VecDeque<M>, DirectoryError> {
        self.created(id, game)?;
        Ok(self.take_unreported(id))
    }

    /// `game` has reported everything it runs (or is gone, and never
    /// will). Once no game is awaited, what is still held for ids none
    /// reported comes back, for the caller to mail (or drop).
    pub fn reports_done(&mut self, game: GameId) -> Vec<(EntityId, M)> {
        let Some(u) = &mut self.unreported else {
            return Vec::new();
        };
        u.games.retain(|&g| g != game);
        if u.games.is_empty() {
            self.stop_awaiting()
        } else {
            Vec::new()
        }
    }

    /// Waits no longer for games to report (those left are taken for
    /// gone): what is held for ids none reported comes back, for the
    /// caller to mail (or drop).
    pub fn stop_awaiting(&mut self) -> Vec<(EntityId, M)> {
        self.unreported
            .take()
            .map(Unreported::into_messages)
            .unwrap_or_default()
    }

    /// What was held for `id` while no game had reported it.
    fn take_unreported(&mut self, id: EntityId) -> VecDeque<M> {
        let Some(u) = &mut self.unreported else {
            return VecDeque::new();
        };
        let held = u.held.remove(&id).unwrap_or_default();
        u.count -= held.len();
        held
    }

    /// The game a new entity goes to: the least loaded of those that are
    /// up (the first game if none is).
    pub fn place(&self, placement: Placement) -> GameId {
        match placement {
            Placement::Here(g) if usize::from(g.0) < self.load.len() => g,
            _ => {
                let best = self
                    .load
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| self.up[i])
                    .min_by_key(|&(i, n)| (*n, i))
                    .map_or(0, |(i, _)| i);
                GameId(best as u16)
            }
        }
    }

    /// The game that runs `id`, or will once it has arrived there.
    pub fn game_of(&self, id: EntityId) -> Option<GameId> {
        self.entities.get(&id).map(Place::game)
    }

    /// Whether `id` is live on a game, and not on its way anywhere.
    pub fn is_live(&self, id: EntityId) -> bool {
        matches!(self.entities.get(&id), Some(Place::Live(_)))
    }

    fn check_game(&self, game: GameId) -> Result<(), DirectoryError> {
        if usize::from(game.0) < self.load.len() {
            Ok(())
        } else {
            Err(DirectoryError::NoGame(game))
        }
    }

    /// `game` created `id`: live there at once (creation happens on the
    /// creating game's thread, which is also the only one that knows the id
    /// before this returns).
    pub fn created(&mut self, id: EntityId, game: GameId) -> Result<(), DirectoryError> {
        self.check_game(game)?;
        if let Some(p) = self.entities.get(&id) {
            return Err(DirectoryError::AlreadyThere { id, game: p.game() });
        }
        self.entities.insert(id, Place::Live(game));
        self.load[usize::from(game.0)] += 1;
        Ok(())
    }

    /// `id` is to be loaded (or made) on `game`: messages for it are held
    /// until it has [`arrived`](Self::arrived). An entity that is live or
    /// on its way already is not loaded again: the error says where it is.
    pub fn arriving(&mut self, id: EntityId, game: GameId) -> Result<(), DirectoryError> {
        self.check_game(game)?;
        if let Some(p) = self.entities.get(&id) {
            return Err(DirectoryError::AlreadyThere { id, game: p.game() });
        }
        let held = self.take_unreported(id);
        self.entities.insert(id, Place::Arriving { game, held });
        self.load[usize::from(game.0)] += 1;
        Ok(())
    }

    /// `id` has arrived on `game` (loaded, or migrated in): it is live
    /// there, and what was held for it is returned, oldest first, for
    /// `game` to queue before anything newer (see the crate docs).
    pub fn arrived(&mut self, id: EntityId, game: GameId) -> Result<VecDeque<M>, DirectoryError> {
        let place = self
            .entities
            .get_mut(&id)
            .ok_or(DirectoryError::NotLive(id))?;
        let expected = place.game();
        if expected != game {
            return Err(DirectoryError::WrongGame {
                id,
                expected,
                got: game,
            });
        }
        match std::mem::replace(place, Place::Live(game)) {
            Place::Live(g) => {
                *place = Place::Live(g);
                Err(DirectoryError::AlreadyThere { id, game: g })
            }
            Place::Arriving { held, .. } | Place::Migrating { held, .. } => Ok(held),
        }
    }

    /// `id` is gone from `game` (destroyed, unloaded, or a load that
    /// failed). What was held for it comes back, oldest first, for the
    /// caller to mail or drop; services it was are forgotten.
    pub fn gone(&mut self, id: EntityId) -> VecDeque<M> {
        let Some(place) = self.entities.remove(&id) else {
            return VecDeque::new();
        };
        let game = usize::from(place.game().0);
        self.load[game] = self.load[game].saturating_sub(1);
        self.services.retain(|_, s| *s != id);
        match place {
            Place::Live(_) => VecDeque::new(),
            Place::Arriving { held, .. } | Place::Migrating { held, .. } => held,
        }
    }

    /// Where `msg` for `id` goes: see [`Route`].
    pub fn route(&mut self, id: EntityId, msg: M) -> Route<M> {
        match self.entities.get_mut(&id) {
            Some(Place::Live(g)) => Route::Deliver(*g, msg),
            Some(Place::Arriving { held, .. } | Place::Migrating { held, .. }) => {
                held.push_back(msg);
                Route::Held
            }
            None => match &mut self.unreported {
                Some(u) if u.count < UNREPORTED_MAX => {
                    u.held.entry(id).or_default().push_back(msg);
                    u.count += 1;
                    Route::Held
                }
                _ => Route::Absent(msg),
            },
        }
    }

    /// `id` leaves its game for `to`: messages for it are held from now
    /// on. Returns the game it leaves, which the caller sends the marker
    /// (see the crate docs).
    pub fn begin_migration(&mut self, id: EntityId, to: GameId) -> Result<GameId, DirectoryError> {
        self.check_game(to)?;
        let place = self
            .entities
            .get_mut(&id)
            .ok_or(DirectoryError::NotLive(id))?;
        let from = match place {
            Place::Live(g) if *g == to => {
                return Err(DirectoryError::AlreadyThere { id, game: to })
            }
            Place::Live(g) => *g,
            _ => return Err(DirectoryError::Moving(id)),
        };
        *place = Place::Migrating {
            from,
            to,
            held: VecDeque::new(),
        };
        self.load[usize::from(from.0)] -= 1;
        self.load[usize::from(to.0)] += 1;
        Ok(from)
    }

    /// A migration that could not complete (the source could not export
    /// the entity, or the destination could not take it): `id` is live on
    /// the game it was leaving again, and what was held for it comes back
    /// for the caller to deliver there, as [`arrived`](Self::arrived) does.
    pub fn migration_failed(
        &mut self,
        id: EntityId,
    ) -> Result<(GameId, VecDeque<M>), DirectoryError> {
        let place = self
            .entities
            .get_mut(&id)
            .ok_or(DirectoryError::NotLive(id))?;
        let Place::Migrating { from, to, .. } = *place else {
            return Err(DirectoryError::NotLive(id));
        };
        let held = match std::mem::replace(place, Place::Live(from)) {
            Place::Migrating { held, .. } => held,
            _ => VecDeque::new(),
        };
        self.load[usize::from(to.0)] -= 1;
        self.load[usize::from(from.0)] += 1;
        Ok((from, held))
    }

    /// The entity that is service `name`.
    pub fn service(&self, name: &str) -> Option<EntityId> {
        self.services.get(name).copied()
    }

    /// Makes `id` service `name`; a service has one entity, so a second is
    /// refused with the first's id.
    pub fn register_service(&mut self, name: &str, id: EntityId) -> Result<(), DirectoryError> {
        match self.services.get(name) {
            Some(&existing) if existing != id => Err(DirectoryError::ServiceTaken {
                name: name.to_owned(),
                id: existing,
            }),
            _ => {
                self.services.insert(name.to_owned(), id);
                Ok(())
            }
        }
    }

    /// `game` is lost (its process died): every entity it ran or was about
    /// to is forgotten and returned with what was held for it, so the
    /// caller can bring the persistent ones back on other games from
    /// storage and their checkpoints. Entities migrating *from* it are
    /// lost with it (their state left with the marker, or never will).
    pub fn game_lost(&mut self, game: GameId) -> Vec<(EntityId, VecDeque<M>)> {
        let ids: Vec<EntityId> = self
            .entities
            .iter()
            .filter(|(_, p)| match p {
                Place::Live(g) | Place::Arriving { game: g, .. } => *g == game,
                Place::Migrating { from, to, .. } => *from == game || *to == game,
            })
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter().map(|id| (id, self.gone(id))).collect()
    }
}

#[cfg(test)]
mod tests;
