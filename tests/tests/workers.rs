//! Several games in one process (`[game] workers = 2`): clients' entities
//! spread over both, services and calls reach across them, entities move
//! between them, and a swap changes the plugin on every game or on none.

use wyrm::SwapOutcome;
use wyrm_client::{Client, Position, Transport, NO_ARGS};
use wyrm_tests::chat::{self, expect, join, next_chat, say, who};
use wyrm_tests::{chatroom_plugin, testbed_plugin, testbed_plugin_with, TestServer, WAIT};

async fn two_games(plugin: std::path::PathBuf, boot: &str, services: &[&str]) -> TestServer {
    TestServer::start(plugin, boot, services, |cfg| {
        cfg.game.workers = Some(2);
        // The tests stream calls faster than a player would.
        cfg.net.client_rate = 100_000;
    })
    .await
}

/// The game that runs `id`.
fn game_of(server: &TestServer, id: u64) -> u16 {
    match server.server.game_of(id) {
        Some(g) => g,
        None => panic!("entity {id} is on no game"),
    }
}

/// Connects clients until one's entity is on each game; returns them in
/// game order.
async fn one_on_each(server: &TestServer) -> (Client, Client) {
    let (mut on0, mut on1) = (None, None);
    for _ in 0..8 {
        let c = server.connect(Transport::Tcp).await;
        let id = c.player().expect("own entity");
        match game_of(server, id) {
            0 if on0.is_none() => on0 = Some(c),
            1 if on1.is_none() => on1 = Some(c),
            _ => {}
        }
        if let (Some(_), Some(_)) = (&on0, &on1) {
            break;
        }
    }
    match (on0, on1) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("new clients' entities did not spread over both games"),
    }
}

async fn count(c: &mut Client) -> u64 {
    c.call_player("count", NO_ARGS).await.expect("send");
    let (n,): (u64,) = expect(c, "on_count").await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_called_from_both_games_is_one_entity() {
    let server = two_games(chatroom_plugin(), "Account", &["Lobby"]).await;
    // Everyone connects first: new clients go to the least loaded game.
    let mut players = Vec::new();
    let mut games = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let c = server.connect(Transport::Tcp).await;
        games.insert(game_of(&server, c.player().expect("account")));
        players.push(c);
    }
    for (c, name) in players.iter_mut().zip(["ada", "bob", "cyd", "dee"]) {
        let (ok, why) = chat::register(c, name, "secret").await;
        assert!(ok, "register {name}: {why}");
        let (ok, why) = chat::login(c, name, "secret").await;
        assert!(ok, "login {name}: {why}");
        join(c, "both").await;
    }
    assert_eq!(games.len(), 2, "accounts on both games: {games:?}");
    // Each avatar is made by its account, on its account's game.
    let avatars: std::collections::BTreeSet<u16> = players
        .iter()
        .map(|c| game_of(&server, c.player().expect("avatar")))
        .collect();
    assert_eq!(avatars, games, "avatars on both games");
    // One Lobby knows everyone, wherever their avatars are.
    let (room, names) = who(&mut players[0]).await;
    assert_eq!(room, "both");
    assert_eq!(names.len(), 4, "{names:?}");
    say(&mut players[3], "hello all").await;
    for c in &mut players {
        let (from, room, text) = next_chat(c).await;
        assert_eq!((&*from, &*room, &*text), ("dee", "both", "hello all"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_entities_loaded_anywhere_spread_over_both_games() {
    let server = two_games(testbed_plugin(), "Probe", &[]).await;
    let (mut a, _b) = one_on_each(&server).await;
    let mut vaults = Vec::new();
    for value in 0..6i64 {
        a.call_player("vault_new", (value,)).await.expect("send");
        let (id,): (u64,) = expect(&mut a, "on_vault").await;
        vaults.push((id, value));
    }
    // All made here, on a's game; unloaded (saved), then loaded where the
    // server chooses: by load, so on both games.
    for &(id, _) in &vaults {
        assert_eq!(game_of(&server, id), 0);
        a.call_player("vault_unload", (id,)).await.expect("send");
    }
    // The unloads have run once the server answers a later call.
    a.round_trip(WAIT).await.expect("ping");
    for &(id, value) in &vaults {
        a.call_player("vault_get_anywhere", (id,))
            .await
            .expect("send");
        let (got, loaded, _, err): (u64, Option<i64>, Vec<String>, Option<String>) =
            expect(&mut a, "on_vault_value").await;
        assert_eq!((got, loaded, err), (id, Some(value), None));
    }
    let games: std::collections::BTreeSet<u16> =
        vaults.iter().map(|&(id, _)| game_of(&server, id)).collect();
    assert_eq!(games.len(), 2, "loaded on both games: {games:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_migrating_entity_arrive_once_each_and_in_order() {
    let server = two_games(testbed_plugin(), "Probe", &[]).await;
    let (mut a, mut b) = one_on_each(&server).await;
    let mut planes = Vec::new();
    for c in [&mut a, &mut b] {
        c.call_player("make_plane", NO_ARGS).await.expect("send");
        let (plane,): (u64,) = expect(c, "plane").await;
        planes.push(plane);
    }
    assert_ne!(game_of(&server, planes[0]), game_of(&server, planes[1]));
    a.call_player("make_shuttle", (planes.clone(),))
        .await
        .expect("send");
    let (shuttle,): (u64,) = expect(&mut a, "on_shuttle").await;
    let probe = b.player().expect("own probe");
    let before = server.game_counters().migrations();
    // Stream 0 from a client on the other game, ten calls at a time, each
    // tenth moving the shuttle to the other plane; a report after each ten
    // comes back once the shuttle has arrived (it waits while it moves).
    const CHUNKS: u64 = 300;
    for chunk in 0..CHUNKS {
        for seq in chunk * 10..chunk * 10 + 10 {
            b.call(shuttle, "take", (0u32, seq)).await.expect("send");
        }
        b.call(shuttle, "report", (probe,)).await.expect("send");
        let (next, errors, hops, _): (Vec<u64>, u64, u64, u64) =
            expect(&mut b, "on_shuttle_report").await;
        assert_eq!((next[0], errors, hops), (chunk * 10 + 10, 0, chunk + 1));
    }
    // Stream 1 from an entity's code, all at once: the shuttle moves
    // whenever it has arrived.
    const ENTITY_CALLS: u64 = 2000;
    b.call_player("relay", (shuttle, ENTITY_CALLS))
        .await
        .expect("send");
    let (next, errors, hops, taken): (Vec<u64>, u64, u64, u64) =
        expect(&mut b, "on_shuttle_report").await;
    assert_eq!(next, vec![CHUNKS * 10, ENTITY_CALLS], "every call, once");
    assert_eq!(errors, 0, "none out of order");
    assert_eq!(taken, CHUNKS * 10 + ENTITY_CALLS, "its attribute moved too");
    assert!(hops > CHUNKS, "{hops} moves");
    // The relay's report may have run before the move its last call asked
    // for; one more comes after it.
    b.call(shuttle, "report", (probe,)).await.expect("send");
    let (_, _, hops, _): (Vec<u64>, u64, u64, u64) = expect(&mut b, "on_shuttle_report").await;
    let moved = server.game_counters().migrations() - before;
    assert_eq!(moved, hops, "every move asked for was made");
    // The two probes, the two planes and the shuttle each have private
    // state in the instance of the game they are on, and nowhere else: the
    // game a shuttle left let its copy go (`forget-entities`).
    let mut held = 0;
    for c in [&mut a, &mut b] {
        c.call_player("held", NO_ARGS).await.expect("send");
        let (n,): (u64,) = expect(c, "on_held").await;
        held += n;
    }
    assert_eq!(held, 5, "private states held by both games' instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_entering_a_space_on_the_other_game_keeps_playing_there() {
    let server = two_games(wyrm_tests::arena_plugin(), "Account", &["Arena"]).await;
    let (mut a, mut b) = one_on_each(&server).await;
    for (c, name) in [(&mut a, "ann"), (&mut b, "ben")] {
        let account = c.player().expect("account");
        c.call_player("login", (name,)).await.expect("send");
        wait_until(c, "a player arrives", |c| {
            c.player().is_some_and(|p| p != account)
        })
        .await;
    }
    let (pa, pb) = (a.player().expect("ann"), b.player().expect("ben"));
    assert_eq!(
        game_of(&server, pa),
        game_of(&server, pb),
        "both players on the field's game"
    );
    // Each sees the other, and the other's moves.
    wait_until(&mut a, "ann sees ben", |c| c.entity(pb).is_some()).await;
    let to = Position {
        x: 1001.0,
        y: 999.5,
        z: 0.0,
    };
    a.send_move(to, 0.0).await.expect("move");
    wait_until(&mut b, "ben sees ann move", |c| {
        c.position_of(pa).is_some_and(|p| p.pos == to)
    })
    .await;
}

/// Reads `c`'s events until `done` holds.
async fn wait_until(c: &mut Client, what: &str, done: impl Fn(&Client) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(c) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(_)) => {}
            other => panic!("waiting until {what}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_refused_by_the_second_game_changes_none() {
    let server = two_games(testbed_plugin(), "Probe", &[]).await;
    let (mut a, mut b) = one_on_each(&server).await;
    // Only b's game (in a cluster, the game in a process of its own) has
    // a probe that counted, which the new build refuses.
    assert_eq!(count(&mut b).await, 1);
    let report = server
        .swap(&testbed_plugin_with(&["refuse_counted"]), false)
        .await;
    match &report.outcome {
        SwapOutcome::Refused { reason } => assert!(reason.contains("game 1"), "{reason}"),
        other => panic!("not refused: {other:?} ({report})"),
    }
    assert_eq!(count(&mut a).await, 1, "the first game kept the old code");
    assert_eq!(count(&mut b).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_refused_by_one_game_changes_none() {
    let server = two_games(testbed_plugin(), "Probe", &[]).await;
    let (mut a, mut b) = one_on_each(&server).await;
    // The new build refuses a probe that has counted: only a's game has one.
    assert_eq!(count(&mut a).await, 1);
    let report = server
        .swap(&testbed_plugin_with(&["refuse_counted"]), false)
        .await;
    match &report.outcome {
        SwapOutcome::Refused { reason } => {
            assert!(reason.contains("game 0"), "{reason}");
            assert!(
                reason.contains("refuses a probe that has counted"),
                "{reason}"
            );
        }
        other => panic!("not refused: {other:?} ({report})"),
    }
    // Both games run the old code (the new one counts by 100).
    assert_eq!(count(&mut b).await, 1);
    assert_eq!(count(&mut a).await, 2);
    // A swap both take changes both.
    let report = server.swap(&testbed_plugin_with(&["v2"]), false).await;
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    assert!(report.entities >= 2, "{report}");
    assert_eq!(count(&mut a).await, 3);
    assert_eq!(count(&mut b).await, 2);
}
