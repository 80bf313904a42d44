use std::collections::{HashMap, HashSet, VecDeque};

use super::*;

const A: GameId = GameId(0);
const B: GameId = GameId(1);
const C: GameId = GameId(2);

#[test]
fn new_entities_go_to_the_least_loaded_game_unless_asked_for_here() {
    let mut d: Directory<()> = Directory::new(3);
    let mut placed = Vec::new();
    for id in 1..=6 {
        let g = d.place(Placement::Anywhere);
        d.created(id, g).expect("created");
        placed.push(g);
    }
    assert_eq!(placed, [A, B, C, A, B, C]);
    assert_eq!(d.place(Placement::Here(C)), C);
    // A game that does not exist is not "here".
    assert_eq!(d.place(Placement::Here(GameId(9))), A);
    d.gone(1);
    d.gone(4);
    assert_eq!(d.load(), [0, 2, 2]);
    assert_eq!(d.place(Placement::Anywhere), A);
    // A game whose process is not there takes nothing new, however idle.
    d.set_up(A, false);
    assert_eq!(d.place(Placement::Anywhere), B);
    d.set_up(A, true);
    assert_eq!(d.place(Placement::Anywhere), A);
}

#[test]
fn messages_for_an_arriving_entity_wait_and_come_back_in_order() {
    let mut d = Directory::new(2);
    assert_eq!(d.route(7, "early"), Route::Absent("early"));
    d.arriving(7, B).expect("arriving");
    assert_eq!(
        d.arriving(7, A),
        Err(DirectoryError::AlreadyThere { id: 7, game: B }),
        "one load, wherever it was asked"
    );
    assert_eq!(d.route(7, "one"), Route::Held);
    assert_eq!(d.route(7, "two"), Route::Held);
    assert_eq!(
        d.arrived(7, A),
        Err(DirectoryError::WrongGame {
            id: 7,
            expected: B,
            got: A
        })
    );
    assert_eq!(d.arrived(7, B), Ok(VecDeque::from(["one", "two"])));
    assert_eq!(d.route(7, "three"), Route::Deliver(B, "three"));
    assert!(d.is_live(7));
}

#[test]
fn a_failed_load_returns_what_was_held_for_the_mailbox() {
    let mut d = Directory::new(1);
    d.arriving(3, A).expect("arriving");
    assert_eq!(d.route(3, 1), Route::Held);
    assert_eq!(d.gone(3), VecDeque::from([1]));
    assert_eq!(d.load(), [0]);
    assert_eq!(d.route(3, 2), Route::Absent(2));
}

#[test]
fn a_migration_holds_then_releases_and_a_failed_one_goes_back() {
    let mut d = Directory::new(2);
    d.created(5, A).expect("created");
    assert_eq!(
        d.begin_migration(5, A),
        Err(DirectoryError::AlreadyThere { id: 5, game: A })
    );
    assert_eq!(d.begin_migration(5, B), Ok(A));
    assert_eq!(d.begin_migration(5, A), Err(DirectoryError::Moving(5)));
    assert_eq!(d.load(), [0, 1]);
    assert_eq!(d.route(5, 'x'), Route::Held);
    assert_eq!(d.game_of(5), Some(B));
    assert_eq!(d.migration_failed(5), Ok((A, VecDeque::from(['x']))));
    assert_eq!(d.load(), [1, 0]);
    assert_eq!(d.route(5, 'y'), Route::Deliver(A, 'y'));
    assert_eq!(d.begin_migration(5, B), Ok(A));
    assert_eq!(d.arrived(5, B), Ok(VecDeque::new()));
    assert_eq!(d.route(5, 'z'), Route::Deliver(B, 'z'));
    assert_eq!(
        d.begin_migration(9, B),
        Err(DirectoryError::NotLive(9)),
        "an unknown entity does not migrate"
    );
    assert_eq!(
        d.begin_migration(5, GameId(4)),
        Err(DirectoryError::NoGame(GameId(4)))
    );
}

#[test]
fn a_service_is_one_entity_and_goes_with_it() {
    let mut d: Directory<()> = Directory::new(2);
    d.created(1, A).expect("created");
    d.created(2, B).expect("created");
    d.register_service("Lobby", 1).expect("first");
    d.register_service("Lobby", 1).expect("again, the same");
    assert_eq!(
        d.register_service("Lobby", 2),
        Err(DirectoryError::ServiceTaken {
            name: "Lobby".into(),
            id: 1
        })
    );
    assert_eq!(d.service("Lobby"), Some(1));
    d.gone(1);
    assert_eq!(d.service("Lobby"), None);
}

#[test]
fn a_restarted_directory_is_what_the_games_report() {
    let (d, duplicates) = Directory::<()>::rebuild(
        2,
        [
            (A, vec![1, 2, 3], vec![("Lobby".to_owned(), 2)]),
            (B, vec![3, 4], vec![]),
        ],
    );
    assert_eq!(duplicates, [(B, 3)]);
    assert_eq!(d.load(), [3, 1]);
    assert_eq!(d.game_of(3), Some(A));
    assert_eq!(d.service("Lobby"), Some(2));
}

#[test]
fn a_lost_game_gives_back_its_entities_and_what_waited_for_them() {
    let mut d = Directory::new(3);
    d.created(1, A).expect("created");
    d.created(2, B).expect("created");
    d.arriving(3, B).expect("arriving");
    d.created(4, C).expect("created");
    d.begin_migration(4, B).expect("migrating");
    assert_eq!(d.route(3, "for 3"), Route::Held);
    let mut lost = d.game_lost(B);
    lost.sort_by_key(|(id, _)| *id);
    assert_eq!(
        lost,
        [
            (2, VecDeque::new()),
            (3, VecDeque::from(["for 3"])),
            (4, VecDeque::new())
        ]
    );
    assert_eq!(d.load(), [1, 0, 0]);
    assert!(d.is_live(1));
}

#[test]
fn after_a_restart_messages_for_unreported_ids_wait_for_the_game_that_reports_them() {
    let mut d = Directory::new(3);
    d.await_reports([B, C]);
    assert!(d.awaits_reports());
    assert_eq!(d.reported(1, B), Ok(VecDeque::new()));
    assert_eq!(d.route(1, "to 1"), Route::Deliver(B, "to 1"));
    // C has not reported: any of these may be its.
    for (id, m) in [(2, "a"), (2, "b"), (3, "c"), (4, "d")] {
        assert_eq!(d.route(id, m), Route::Held);
    }
    assert!(d.reports_done(B).is_empty(), "C is still awaited");
    assert_eq!(d.reported(2, C), Ok(VecDeque::from(["a", "b"])));
    assert_eq!(
        d.reported(1, C),
        Err(DirectoryError::AlreadyThere { id: 1, game: B }),
        "the first report stands"
    );
    assert_eq!(d.route(2, "e"), Route::Deliver(C, "e"));
    // Loaded meanwhile: what waited goes with the load.
    d.arriving(3, A).expect("arriving");
    assert_eq!(d.arrived(3, A), Ok(VecDeque::from(["c"])));
    // The last report: what no game claimed comes back, to be mailed.
    assert_eq!(d.reports_done(C), [(4, "d")]);
    assert!(!d.awaits_reports());
    assert_eq!(d.route(5, "f"), Route::Absent("f"));
    assert_eq!(d.load(), [1, 1, 1]);
}

#[test]
fn unreported_ids_are_waited_for_until_the_caller_stops_and_up_to_a_limit() {
    let mut d = Directory::new(2);
    d.await_reports([B]);
    for n in 0..UNREPORTED_MAX {
        assert_eq!(d.route(n as EntityId % 7, n), Route::Held);
    }
    assert_eq!(
        d.route(9, UNREPORTED_MAX),
        Route::Absent(UNREPORTED_MAX),
        "full"
    );
    // What a report takes makes room.
    let held = d.reported(0, B).expect("reported");
    assert!(held.iter().all(|n| n % 7 == 0) && !held.is_empty());
    assert_eq!(d.route(9, 1), Route::Held);
    let mut left = d.stop_awaiting();
    assert_eq!(left.len(), UNREPORTED_MAX - held.len() + 1);
    // Each id's messages in the order they came.
    left.retain(|(id, _)| *id == 3);
    assert!(left.windows(2).all(|w| w[0].1 < w[1].1));
    assert!(!d.awaits_reports());
    assert_eq!(d.route(3, 0), Route::Absent(0));
}

// ---- the delivery protocol, simulated ---------------------------------

/// What sits in a simulated game's inbox.
#[derive(Debug)]
enum Item {
    /// A message for an entity: from game `from`, its `seq`-th to it.
    Msg {
        to: EntityId,
        from: GameId,
        seq: u32,
    },
    /// The marker of a migration out (see the crate docs).
    Marker { entity: EntityId, to: GameId },
    /// An entity migrating in, with the work it had queued.
    Arrive { entity: EntityId, work: Vec<Work> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Work {
    to: EntityId,
    from: GameId,
    seq: u32,
}

#[derive(Default)]
struct Game {
    inbox: VecDeque<Item>,
    work: VecDeque<Work>,
    live: HashSet<EntityId>,
}

/// A tiny deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Games send each other's entities messages — locally when the target is
/// theirs, through the directory otherwise — while entities migrate at
/// random and games run their inboxes and work queues at random. Every
/// message must arrive once, in the order its sender sent it, and never
/// at a game that does not have its entity.
fn simulate(seed: u64, games: usize, entities: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut dir: Directory<Work> = Directory::new(games);
    let mut sim: Vec<Game> = (0..games).map(|_| Game::default()).collect();
    for id in 0..entities {
        let g = dir.place(Placement::Anywhere);
        dir.created(id, g).expect("created");
        sim[usize::from(g.0)].live.insert(id);
    }
    let mut sent: HashMap<(GameId, EntityId), u32> = HashMap::new();
    let mut got: HashMap<(GameId, EntityId), u32> = HashMap::new();
    let mut migrations = 0;

    let deliver = |sim: &mut Vec<Game>, g: usize, w: Work, got: &mut HashMap<_, u32>| {
        assert!(
            sim[g].live.contains(&w.to),
            "seed {seed}: game {g} ran work for entity {} it does not have",
            w.to
        );
        let last = got.entry((w.from, w.to)).or_insert(0);
        assert_eq!(
            w.seq,
            *last + 1,
            "seed {seed}: entity {} got message {} from game {:?} after {}",
            w.to,
            w.seq,
            w.from,
            last
        );
        *last = w.seq;
    };

    let mut step = 0;
    loop {
        let draining = step >= steps;
        let action = if draining {
            3 + rng.below(2)
        } else {
            rng.below(5)
        };
        step += 1;
        match action {
            // Send: a game's entity calls another entity.
            0 | 1 => {
                let from = GameId(rng.below(games) as u16);
                let to = rng.below(entities as usize) as EntityId;
                let seq = sent.entry((from, to)).or_insert(0);
                *seq += 1;
                let w = Work {
                    to,
                    from,
                    seq: *seq,
                };
                let local = &mut sim[usize::from(from.0)];
                if local.live.contains(&to) {
                    local.work.push_back(w);
                } else {
                    match dir.route(to, w) {
                        Route::Deliver(g, w) => sim[usize::from(g.0)].inbox.push_back(Item::Msg {
                            to: w.to,
                            from: w.from,
                            seq: w.seq,
                        }),
                        Route::Held => {}
                        Route::Absent(w) => panic!("seed {seed}: entity {} absent", w.to),
                    }
                }
            }
            // Migrate an entity that is live to another game.
            2 => {
                let id = rng.below(entities as usize) as EntityId;
                let to = GameId(rng.below(games) as u16);
                if dir.is_live(id) && dir.game_of(id) != Some(to) {
                    let from = dir.begin_migration(id, to).expect("migrates");
                    sim[usize::from(from.0)]
                        .inbox
                        .push_back(Item::Marker { entity: id, to });
                    migrations += 1;
                }
            }
            // A game takes the next item of its inbox.
            3 => {
                let g = rng.below(games);
                let Some(item) = sim[g].inbox.pop_front() else {
                    if draining && sim.iter().all(|s| s.inbox.is_empty() && s.work.is_empty()) {
                        break;
                    }
                    continue;
                };
                match item {
                    Item::Msg { to, from, seq } => {
                        assert!(
                            sim[g].live.contains(&to),
                            "seed {seed}: a message for {to} reached game {g}, which does not have it"
                        );
                        sim[g].work.push_back(Work { to, from, seq });
                    }
                    Item::Marker { entity, to } => {
                        let game = &mut sim[g];
                        assert!(
                            game.live.remove(&entity),
                            "seed {seed}: marker without entity"
                        );
                        let (work, rest): (Vec<Work>, Vec<Work>) =
                            game.work.drain(..).partition(|w| w.to == entity);
                        game.work = rest.into();
                        sim[usize::from(to.0)]
                            .inbox
                            .push_back(Item::Arrive { entity, work });
                    }
                    Item::Arrive { entity, work } => {
                        let game = &mut sim[g];
                        game.live.insert(entity);
                        game.work.extend(work);
                        let held = dir
                            .arrived(entity, GameId(g as u16))
                            .expect("arrives where it was sent");
                        // The game queues what waited itself, right after the
                        // work the entity brought, before anything newer.
                        game.work.extend(held);
                    }
                }
            }
            // A game runs the next piece of its work.
            _ => {
                let g = rng.below(games);
                if let Some(w) = sim[g].work.pop_front() {
                    deliver(&mut sim, g, w, &mut got);
                }
            }
        }
        assert!(
            step < steps * 100,
            "seed {seed}: the simulation does not drain"
        );
    }
    assert_eq!(sent, got, "seed {seed}: messages lost");
    assert!(migrations > 0);
}

#[test]
fn every_message_arrives_once_and_in_order_across_migrations() {
    for seed in 0..300 {
        simulate(seed, 2 + (seed % 3) as usize, 1 + seed % 7, 2_000);
    }
}
