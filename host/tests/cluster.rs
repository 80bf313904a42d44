//! Roles in processes of their own: a `wyrm serve` with `[cluster] nats`
//! as the node, `wyrm gate` and `wyrm game` processes, real processes over
//! a real `nats-server` (and a real PostgreSQL the games share). Clients
//! on different gates chat with each other (calls routed through the
//! fabric, tag-filtered calls fanned out to every gate); a gate killed
//! with SIGKILL ends its clients on the server, and they log in again
//! through another gate; players spread over games in two processes chat
//! as on one.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Wyrm;
use wyrm_client::{Client, Transport};
use wyrm_fabric::local::LocalNats;

const WAIT: Duration = Duration::from_secs(15);

fn nats() -> LocalNats {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-cluster");
    let out = std::process::Command::new(&script)
        .output()
        .expect("run setup-cluster");
    assert!(
        out.status.success(),
        "setup-cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    LocalNats::start().expect("nats-server")
}

/// The chatroom as a cluster's node, its data in `dir`, on `nats`.
fn write_config(dir: &Path, nats: &str) -> PathBuf {
    write_cluster_config(dir, nats, None)
}

/// The chatroom as a cluster's node, with one game of its own and, if
/// `games` gives a number and a PostgreSQL URL, that many in processes of
/// their own.
fn write_cluster_config(dir: &Path, nats: &str, games: Option<(u16, &str)>) -> PathBuf {
    let plugin = (
        "chatroom",
        "examples/chatroom/plugin",
        "Account",
        "[\"Lobby\"]",
    );
    write_config_of(dir, nats, games, plugin)
}

/// Like [`write_cluster_config`], for `plugin`: its name, its source (from
/// the repository's root), its boot entity and its services (TOML).
fn write_config_of(
    dir: &Path,
    nats: &str,
    games: Option<(u16, &str)>,
    plugin: (&str, &str, &str, &str),
) -> PathBuf {
    let (name, source, boot, services) = plugin;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = dir.join("wyrm.toml");
    let (games, storage) = match games {
        Some((n, url)) => (
            format!("games = {n}\n"),
            format!("\n[storage]\nurl = {url:?}\n"),
        ),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "[server]\ndata_dir = {data:?}\n\n[net]\ntcp = \"127.0.0.1:0\"\n\n[game]\nworkers = 1\ncheckpoint_interval_ms = 200\nboot_entity = {boot:?}\nservices = {services}\n\n[cluster]\nnats = {nats:?}\nname = \"test{pid}\"\n{games}{storage}\n[[plugin]]\nname = {name:?}\nsource = {src:?}\n",
        data = dir.join("data").display().to_string(),
        pid = std::process::id(),
        src = root.join(source).display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

/// A node with game 0, and game 1 as a process of its own, on a
/// `nats-server` and a PostgreSQL of their own, running `plugin` (as in
/// [`write_config_of`]). Fields drop in order: the processes first.
struct TwoGames {
    node: Wyrm,
    game: Wyrm,
    at_node: String,
    cfg: PathBuf,
    nats: LocalNats,
    /// The games' database.
    url: String,
    _pg: wyrm::local::LocalPostgres,
    _dir: tempfile::TempDir,
}

impl TwoGames {
    fn start(plugin: (&str, &str, &str, &str)) -> Self {
        let nats = nats();
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = wyrm::local::LocalPostgres::temporary(&dir.path().join("pg"), false)
            .expect("a throwaway PostgreSQL");
        let url = pg.database("game").expect("a database");
        let cfg = write_config_of(dir.path(), &nats.url(), Some((1, &url)), plugin);
        let node = Wyrm::start(&["serve"], &cfg);
        let at_node = node.tcp_addr();
        let game = Wyrm::start(&["game", "--id", "1"], &cfg);
        game.wait_line("Game 1 is running", Duration::from_secs(600));
        Self {
            node,
            game,
            at_node,
            cfg,
            nats,
            url,
            _pg: pg,
            _dir: dir,
        }
    }

    /// The chatroom on two games.
    fn chatroom() -> Self {
        Self::start(CHATROOM)
    }
}

const CHATROOM: (&str, &str, &str, &str) = (
    "chatroom",
    "examples/chatroom/plugin",
    "Account",
    "[\"Lobby\"]",
);

/// Asserts that `players`' entities are on two games: each process hands
/// out ids from a block of its own reservation, so players on both games
/// have ids from two blocks.
fn assert_on_both_games(players: &[Client]) {
    let blocks: std::collections::BTreeSet<u64> = players
        .iter()
        .map(|c| c.player().expect("own entity") / wyrm_storage::ID_BLOCK)
        .collect();
    assert_eq!(blocks.len(), 2, "players on one game only: {blocks:?}");
}

async fn call(c: &mut Client, method: &str, args: impl serde::Serialize) {
    c.call_player(method, args).await.expect("send");
}

async fn expect<T: serde::de::DeserializeOwned>(c: &mut Client, method: &str) -> T {
    match c.expect_call_as::<T>(method, WAIT).await {
        Ok((_, v)) => v,
        Err(e) => panic!("waiting for {method}: {e}"),
    }
}

/// A client at `addr`, registered (if `new`) and logged in as `name`.
async fn player(addr: &str, name: &str, new: bool) -> Client {
    let mut c = Client::connect(Transport::Tcp, addr)
        .await
        .expect("connect");
    c.wait_player(WAIT).await.expect("own entity");
    log_in(&mut c, name, new).await;
    c
}

/// Registers `c` as `name` (if `new`), then logs it in.
async fn log_in(c: &mut Client, name: &str, new: bool) {
    let pw = format!("{name}-secret");
    if new {
        call(c, "register", (name, &pw)).await;
        let (ok, msg): (bool, String) = expect(c, "on_register").await;
        assert!(ok, "register {name}: {msg}");
    }
    call(c, "login", (name, &pw)).await;
    let (ok, msg): (bool, String) = expect(c, "on_login").await;
    assert!(ok, "login {name}: {msg}");
}

async fn join(c: &mut Client, room: &str) {
    call(c, "join", (room,)).await;
    let (joined,): (String,) = expect(c, "on_joined").await;
    assert_eq!(joined, room);
}

async fn who(c: &mut Client) -> Vec<String> {
    call(c, "who", wyrm_client::NO_ARGS).await;
    let (_, names): (String, Vec<String>) = expect(c, "on_who").await;
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_gates_chat_and_a_killed_gate_costs_only_its_connections() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(dir.path(), &nats.url());
    let server = Wyrm::start(&["serve"], &cfg);
    let at_server = server.tcp_addr();
    let gate = Wyrm::start(&["gate", "--id", "1", "--tcp", "127.0.0.1:0"], &cfg);
    let at_gate = gate.tcp_addr();

    // One player on the server's own gate, two on gate 1.
    let mut ann = player(&at_server, "ann", true).await;
    let mut bob = player(&at_gate, "bob", true).await;
    let mut cy = player(&at_gate, "cy", true).await;
    for c in [&mut ann, &mut bob, &mut cy] {
        join(c, "tea").await;
    }
    assert_eq!(who(&mut ann).await, ["ann", "bob", "cy"]);
    // A line said on one gate reaches the room on both, once each.
    call(&mut bob, "say", ("hello from gate 1",)).await;
    for c in [&mut ann, &mut bob, &mut cy] {
        let (from, room, text): (String, String, String) = expect(c, "on_chat").await;
        assert_eq!(
            (from.as_str(), room.as_str(), text.as_str()),
            ("bob", "tea", "hello from gate 1")
        );
    }
    call(&mut ann, "say", ("and from the server's",)).await;
    for c in [&mut bob, &mut cy, &mut ann] {
        let (from, _, text): (String, String, String) = expect(c, "on_chat").await;
        assert_eq!(
            (from.as_str(), text.as_str()),
            ("ann", "and from the server's")
        );
    }

    // Gate 1 dies: its players leave the room once the server stops
    // hearing it, and log in again through the server's gate.
    gate.signal("KILL");
    let deadline = tokio::time::Instant::now() + WAIT;
    while who(&mut ann).await != ["ann"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead gate's players never left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut bob = player(&at_server, "bob", false).await;
    join(&mut bob, "tea").await;
    call(&mut bob, "say", ("back",)).await;
    let (from, _, text): (String, String, String) = expect(&mut ann, "on_chat").await;
    assert_eq!((from.as_str(), text.as_str()), ("bob", "back"));
    drop(server);
}

/// Reads events until the connection ends; fails if it is still open after
/// `within`.
async fn wait_closed(c: &mut Client, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Err(e) if e.is_fatal() => return,
            Ok(None) => panic!("still connected after {within:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_ends_its_gates_players_who_play_on_once_it_is_back() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(dir.path(), &nats.url());
    let server = Wyrm::start(&["serve"], &cfg);
    server.tcp_addr();
    let gate = Wyrm::start(&["gate", "--id", "1", "--tcp", "127.0.0.1:0"], &cfg);
    let at_gate = gate.tcp_addr();
    let mut dan = player(&at_gate, "dan", true).await;
    join(&mut dan, "tea").await;

    // Its entities gone with it, the gate lets its players go, and turns
    // away newcomers until the server is back (not leaves them waiting).
    server.signal("KILL");
    wait_closed(&mut dan, WAIT).await;
    drop(server);
    let mut early = Client::connect(Transport::Tcp, &at_gate)
        .await
        .expect("the gate still accepts");
    wait_closed(&mut early, WAIT).await;

    // The server back on the same data: the gate takes players again.
    let server = Wyrm::start(&["serve"], &cfg);
    server.tcp_addr();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut eve = loop {
        // Until the gate has heard the server again, a new client's
        // messages find no one.
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let mut c = Client::connect(Transport::Tcp, &at_gate).await.ok()?;
            c.wait_player(Duration::from_secs(2)).await.ok()?;
            Some(c)
        });
        if let Ok(Some(c)) = attempt.await {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gate never served again"
        );
    };
    log_in(&mut eve, "eve", true).await;
    join(&mut eve, "tea").await;
    assert_eq!(who(&mut eve).await, ["eve"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_spread_over_games_in_two_processes_chat_as_on_one() {
    // Game 1 (the node runs game 0) and a gate, each a process.
    let c = TwoGames::chatroom();
    let (node, at_node, cfg, game) = (c.node, c.at_node, c.cfg, c.game);
    let gate = Wyrm::start(&["gate", "--id", "1", "--tcp", "127.0.0.1:0"], &cfg);
    let at_gate = gate.tcp_addr();

    // New players go to the least loaded game: game 0 runs the Lobby, so
    // the first goes to game 1, and they alternate from there. Their
    // accounts call the Lobby and it calls them, across the processes.
    let names = ["ann", "bob", "cy", "dee"];
    let mut players = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let at = if i % 2 == 0 { &at_node } else { &at_gate };
        players.push(player(at, name, true).await);
    }
    assert_on_both_games(&players);
    for c in &mut players {
        join(c, "tea").await;
    }
    assert_eq!(who(&mut players[2]).await, names);
    for (i, speaker) in names.into_iter().enumerate() {
        let line = format!("hello from {speaker}");
        call(&mut players[i], "say", (&line,)).await;
        for c in &mut players {
            let (from, room, text): (String, String, String) = expect(c, "on_chat").await;
            assert_eq!((from.as_str(), room.as_str()), (speaker, "tea"));
            assert_eq!(text, line);
        }
    }
    // Saved in the shared PostgreSQL whichever game ran them: logging in
    // again after leaving works through either gate.
    players.remove(0);
    let mut ann = player(&at_gate, "ann", false).await;
    join(&mut ann, "tea").await;
    assert_eq!(who(&mut players[2]).await, names);

    // The node's shutdown reaches its game process, which saves and ends.
    node.signal("TERM");
    let mut game = game;
    let ended = tokio::task::spawn_blocking(move || game.child.wait());
    let status = tokio::time::timeout(WAIT, ended)
        .await
        .expect("the game process did not end with the node")
        .expect("join")
        .expect("wait for the game");
    assert!(status.success(), "the game ended with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_runs_a_whole_cluster_and_stops_it() {
    nats(); // installs nats-server and PostgreSQL if missing
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = dir.path().join("cluster.toml");
    let text = format!(
        "[server]\ndata_dir = {data:?}\n\n[net]\ntcp = \"127.0.0.1:0\"\n\n[game]\nworkers = 1\ncheckpoint_interval_ms = 200\nboot_entity = \"Account\"\nservices = [\"Lobby\"]\n\n[cluster]\nname = \"one{pid}\"\ngames = 1\ngates = [{{ tcp = \"127.0.0.1:0\" }}]\n\n[[plugin]]\nname = \"chatroom\"\nsource = {src:?}\n",
        data = dir.path().join("data").display().to_string(),
        pid = std::process::id(),
        src = root.join("examples/chatroom/plugin").display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    // It starts NATS and PostgreSQL itself, then the node, game 1 and
    // gate 1, and says where each gate listens.
    let cluster = Wyrm::start(&["cluster"], &cfg);
    let addr = |line: String| line.rsplit(' ').next().expect("address").to_string();
    let at_node = addr(cluster.wait_line("[node] TCP clients:", Duration::from_secs(600)));
    let at_gate = addr(cluster.wait_line("[gate 1] TCP clients:", Duration::from_secs(600)));
    cluster.wait_line("The cluster is running", WAIT);
    let mut ann = player(&at_node, "ann", true).await;
    let mut bob = player(&at_gate, "bob", true).await;
    for c in [&mut ann, &mut bob] {
        join(c, "tea").await;
    }
    call(&mut ann, "say", ("hello, cluster",)).await;
    for c in [&mut ann, &mut bob] {
        let (from, _, text): (String, String, String) = expect(c, "on_chat").await;
        assert_eq!((from.as_str(), text.as_str()), ("ann", "hello, cluster"));
    }
    // Ctrl-C: every role saves and ends, then the services; nothing of it
    // (roles, PostgreSQL on its data folder) is left running.
    cluster.signal("INT");
    let mut cluster = cluster;
    let status = tokio::task::spawn_blocking(move || cluster.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "wyrm cluster ended with {status}");
    let left = std::process::Command::new("pgrep")
        .args(["-f", &dir.path().display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "roles left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    wait_closed(&mut ann, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_games_players_are_let_go_and_play_on_the_game_left() {
    let c = TwoGames::chatroom();
    let (at_node, game) = (c.at_node.clone(), &c.game);
    // Game 0 runs the Lobby: ann's account goes to game 1, bob's to 0.
    let mut ann = player(&at_node, "ann", true).await;
    let mut bob = player(&at_node, "bob", true).await;
    assert_ne!(
        ann.player().expect("ann's entity") / 10_000,
        bob.player().expect("bob's entity") / 10_000,
        "ann and bob on the same game"
    );
    for c in [&mut ann, &mut bob] {
        join(c, "tea").await;
    }

    // Game 1 dies: once the node stops hearing it, ann (who played there)
    // is let go; bob plays on.
    game.signal("KILL");
    wait_closed(&mut ann, WAIT).await;
    // Her registration was acknowledged: she logs in again, on game 0 now,
    // and is in the first room and nowhere else.
    let mut ann = player(&at_node, "ann", false).await;
    call(&mut bob, "say", ("still here",)).await;
    let (from, _, text): (String, String, String) = expect(&mut bob, "on_chat").await;
    assert_eq!((from.as_str(), text.as_str()), ("bob", "still here"));
    assert_eq!(who(&mut bob).await, ["bob"], "her old avatar left the room");
    join(&mut ann, "tea").await;
    assert_eq!(who(&mut bob).await, ["ann", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_costs_every_role_a_pause_not_its_players() {
    let mut c = TwoGames::chatroom();
    let at_node = c.at_node.clone();
    let gate = Wyrm::start(&["gate", "--id", "1", "--tcp", "127.0.0.1:0"], &c.cfg);
    let at_gate = gate.tcp_addr();
    // ann on game 1 through gate 1, bob on game 0 through the node's gate:
    // everything between them crosses NATS.
    let mut ann = player(&at_gate, "ann", true).await;
    let mut bob = player(&at_node, "bob", true).await;
    for c in [&mut ann, &mut bob] {
        join(c, "tea").await;
    }

    // NATS goes away and comes back on its port at once: every role
    // reconnects by itself, and no one is taken for gone. (What is sent
    // before the role it is for has reconnected is lost: NATS keeps
    // nothing for a subscriber that is not there. So each player asks
    // until an answer comes, and goes on from there.)
    c.nats.kill();
    c.nats.restart().expect("nats-server again");
    for c in [&mut ann, &mut bob] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            call(c, "who", wyrm_client::NO_ARGS).await;
            let answer = c.expect_call("on_who", Duration::from_secs(1)).await;
            if answer.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no answer after the NATS restart"
            );
        }
    }
    for (i, speaker) in ["ann", "bob"].into_iter().enumerate() {
        let line = format!("{speaker} after the restart");
        let c = if i == 0 { &mut ann } else { &mut bob };
        call(c, "say", (&line,)).await;
        for c in [&mut ann, &mut bob] {
            let (from, _, text): (String, String, String) = expect(c, "on_chat").await;
            assert_eq!((from.as_str(), text.as_str()), (speaker, line.as_str()));
        }
    }
    assert_eq!(who(&mut ann).await, ["ann", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_rejoins_a_restarted_node_and_takes_players_again() {
    let mut c = TwoGames::chatroom();
    let mut ann = player(&c.at_node, "ann", true).await;
    join(&mut ann, "tea").await;

    // The node dies with its dispatcher and gate: ann is gone with it.
    c.node.signal("KILL");
    wait_closed(&mut ann, WAIT).await;
    // A new node on the same config: game 1 hears it, reports what it
    // runs and takes new players again, beside the node's own game.
    c.node = Wyrm::start(&["serve"], &c.cfg);
    let at_node = c.node.tcp_addr();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut players = Vec::new();
    let mut blocks = std::collections::BTreeSet::new();
    // Until game 1 has rejoined, new players all go to game 0.
    while blocks.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "game 1 never took a player again"
        );
        let name = format!("p{}", players.len());
        let c = player(&at_node, &name, true).await;
        blocks.insert(c.player().expect("own entity") / 10_000);
        players.push((name, c));
    }
    let mut ann = player(&at_node, "ann", false).await;
    join(&mut ann, "tea").await;
    for (_, c) in &mut players {
        join(c, "tea").await;
    }
    call(&mut ann, "say", ("back on both games",)).await;
    for (_, c) in &mut players {
        let (from, _, text): (String, String, String) = expect(c, "on_chat").await;
        assert_eq!(
            (from.as_str(), text.as_str()),
            ("ann", "back on both games")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_game_had_saved_comes_back_by_itself_on_the_game_left() {
    let c = TwoGames::start(("testbed", "plugins/testbed", "Probe", "[]"));
    let (at_node, game) = (&c.at_node, &c.game);
    // Probes go to the least loaded game: the first to game 0, the next
    // to game 1.
    let (mut on0, _, mut on1, _) = probes_on_both_games(at_node).await;
    // A vault made on game 1, its value saved (acknowledged).
    call(&mut on1, "vault_new", (1i64,)).await;
    let (vault,): (u64,) = expect(&mut on1, "on_vault").await;
    call(&mut on1, "vault_set", (vault, 42i64)).await;
    let (_, value, error): (u64, i64, Option<String>) = expect(&mut on1, "on_vault_saved").await;
    assert_eq!((value, error), (42, None));

    // Game 1 dies. Its player is let go; the vault comes back by itself on
    // game 0, with what was acknowledged: a call to it (which loads
    // nothing) is answered.
    game.signal("KILL");
    wait_closed(&mut on1, WAIT).await;
    call(&mut on0, "vault_ask", (vault,)).await;
    let (id, value, _, error): (u64, Option<i64>, Vec<String>, Option<String>) =
        expect(&mut on0, "on_vault_value").await;
    assert_eq!((id, error), (vault, None));
    assert_eq!(value, Some(42), "the acknowledged value");
}

/// Two testbed clients at `addr` and their probes: new entities go to
/// the least loaded game, so the first is on game 0 and the second on
/// game 1.
async fn probes_on_both_games(addr: &str) -> (Client, u64, Client, u64) {
    let mut on0 = Client::connect(Transport::Tcp, addr)
        .await
        .expect("connect");
    let id0 = on0.wait_player(WAIT).await.expect("own probe");
    let mut on1 = Client::connect(Transport::Tcp, addr)
        .await
        .expect("connect");
    let id1 = on1.wait_player(WAIT).await.expect("own probe");
    assert_ne!(id0 / 10_000, id1 / 10_000, "both probes on one game");
    (on0, id0, on1, id1)
}

/// Waits until the private state checkpointed to `url` for `id` holds
/// `count` (polling storage as a recovery would read it).
async fn wait_checkpointed(url: &str, id: u64, count: u64) {
    let (tx, rx) = std::sync::mpsc::channel();
    let opened = wyrm_storage::open::<()>(
        &wyrm_storage::Location::Postgres {
            url: url.into(),
            ca: None,
        },
        &[],
        move |a| {
            if let wyrm_storage::Answer::Loaded { result, .. } = a {
                let _ = tx.send(result);
            }
        },
    )
    .expect("open the games' database");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        opened.store.send(wyrm_storage::Op::Recover { id });
        let loaded = rx.recv_timeout(WAIT).expect("storage answers");
        let held = loaded.ok().and_then(|l| l.state).and_then(|s| {
            let v = rmpv::decode::read_value(&mut s.state.as_slice()).ok()?;
            v.as_map()?
                .iter()
                .find(|(k, _)| k.as_str() == Some("count"))
                .and_then(|(_, v)| v.as_u64())
        });
        if held == Some(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of entity {id} with count {count} (last: {held:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_games_saved_player_comes_back_with_its_state_and_its_client_still_on() {
    let c = TwoGames::start(("testbed", "plugins/testbed", "Probe", "[]"));
    let (at_node, game) = (&c.at_node, &c.game);
    let (mut on0, _, mut on1, id1) = probes_on_both_games(at_node).await;
    // The player on game 1 takes a saved Keeper and counts to 3 in its
    // private state; a checkpoint holds the 3.
    call(&mut on1, "keeper_take", ()).await;
    let (error,): (Option<String>,) = expect(&mut on1, "on_keeper_saved").await;
    assert_eq!(error, None);
    let keeper = on1.player().expect("bound to the keeper");
    assert_ne!(keeper, id1);
    for n in 1..=3u64 {
        call(&mut on1, "bump", ()).await;
        let (count,): (u64,) = expect(&mut on1, "on_count").await;
        assert_eq!(count, n);
    }
    wait_checkpointed(&c.url, keeper, 3).await;

    // Game 1 dies. The keeper comes back on game 0 with its count, and its
    // player, still connected, is bound to it again: its view starts over
    // with the keeper as its own, and it counts on from 3.
    game.signal("KILL");
    loop {
        match on1.next_event_timeout(WAIT).await {
            Ok(Some(wyrm_client::Event::ViewReset)) => break,
            Ok(Some(wyrm_client::Event::Closed) | None) | Err(_) => {
                panic!("no view reset: the connection ended or went quiet")
            }
            Ok(Some(_)) => {}
        }
    }
    let own = on1.wait_player(WAIT).await.expect("bound again");
    assert_eq!(own, keeper);
    call(&mut on1, "bump", ()).await;
    let (count,): (u64,) = expect(&mut on1, "on_count").await;
    assert_eq!(count, 4, "its private state came back from the checkpoint");
    // The probe on game 1 had nothing saved: gone, and its game's player
    // on game 0 is untouched.
    call(&mut on0, "keepers_ask", (keeper, keeper)).await;
    let (id, count): (u64, u64) = expect(&mut on0, "on_keeper").await;
    assert_eq!((id, count), (keeper, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_as_a_running_game_is_refused_and_the_game_plays_on() {
    let c = TwoGames::start(("testbed", "plugins/testbed", "Probe", "[]"));
    let (mut on0, _, mut on1, id1) = probes_on_both_games(&c.at_node).await;

    // Another `wyrm game --id 1` (on another machine: a data folder of its
    // own) hears the running one and gives up before it beats: the node
    // never takes the running one for restarted.
    let text = std::fs::read_to_string(&c.cfg).expect("config");
    let data = c.cfg.with_file_name("data");
    let other = c.cfg.with_file_name("data-elsewhere");
    let text = text.replace(
        &format!("{:?}", data.display().to_string()),
        &format!("{:?}", other.display().to_string()),
    );
    assert!(text.contains("data-elsewhere"), "{text}");
    let cfg = c.cfg.with_file_name("elsewhere.toml");
    std::fs::write(&cfg, text).expect("write config");
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_wyrm"))
        .args(["game", "--id", "1"])
        .arg(&cfg)
        .env("WYRM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second game 1");
    let pid = second.id();
    // One that ran on would never end: it is killed at the deadline.
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep(WAIT * 4).await;
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .expect("joined")
        .expect("its output");
    watchdog.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second game 1 ran: {stderr}");
    assert!(
        stderr.contains("another process is running as Game 1"),
        "{stderr}"
    );
    // The running game 1 still serves its player.
    call(&mut on1, "vault_new", (5i64,)).await;
    let (vault,): (u64,) = expect(&mut on1, "on_vault").await;
    assert_eq!(vault / 10_000, id1 / 10_000, "made on game 1");
    call(&mut on0, "vault_ask", (vault,)).await;
    let (id, value, _, error): (u64, Option<i64>, Vec<String>, Option<String>) =
        expect(&mut on0, "on_vault_value").await;
    assert_eq!((id, value, error), (vault, Some(5), None));
}

/// Waits for a line containing `needle` from any of `processes`.
fn wait_any_line(processes: &[Wyrm], needle: &str, timeout: Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        for (i, p) in processes.iter().enumerate() {
            if let Ok(line) = p.lines.recv_timeout(Duration::from_millis(10)) {
                if line.contains(needle) {
                    return i;
                }
            }
        }
    }
    panic!("no line containing {needle:?} within {timeout:?}");
}

/// A node that only dispatches (`[game] workers = 0`, and gate 0), with
/// games 0 and 1 as processes of their own, running `plugin` (as in
/// [`write_config_of`]), with `extra` in `[cluster]`. The node is started;
/// the games are started by [`start_games`](Self::start_games). Fields
/// drop in order: the processes first.
struct GamesOnly {
    node: Wyrm,
    games: Vec<Wyrm>,
    at_node: String,
    cfg: PathBuf,
    _nats: LocalNats,
    _pg: wyrm::local::LocalPostgres,
    _dir: tempfile::TempDir,
}

impl GamesOnly {
    fn start(plugin: (&str, &str, &str, &str), extra: &str) -> Self {
        let nats = nats();
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = wyrm::local::LocalPostgres::temporary(&dir.path().join("pg"), false)
            .expect("a throwaway PostgreSQL");
        let url = pg.database("game").expect("a database");
        let cfg = write_config_of(dir.path(), &nats.url(), Some((2, &url)), plugin);
        let text = std::fs::read_to_string(&cfg).expect("config");
        let text = text
            .replace("workers = 1", "workers = 0")
            .replace("[cluster]\n", &format!("[cluster]\n{extra}\n"));
        std::fs::write(&cfg, text).expect("config");
        let node = Wyrm::start(&["serve"], &cfg);
        let at_node = node.tcp_addr();
        Self {
            node,
            games: Vec::new(),
            at_node,
            cfg,
            _nats: nats,
            _pg: pg,
            _dir: dir,
        }
    }

    /// Starts games 0 and 1 and waits until both run.
    fn start_games(&mut self) {
        self.games = (0..2)
            .map(|id| Wyrm::start(&["game", "--id", &id.to_string()], &self.cfg))
            .collect();
        for (id, g) in self.games.iter().enumerate() {
            g.wait_line(&format!("Game {id} is running"), Duration::from_secs(600));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_only_dispatches_runs_the_chatroom_on_two_game_processes() {
    // `[game] workers = 0`: the node is the dispatcher and gate 0; games
    // 0 (which runs the Lobby) and 1 are processes of their own.
    let mut c = GamesOnly::start(CHATROOM, "");
    // A player who comes before any game is up waits for one.
    let mut early = Client::connect(Transport::Tcp, &c.at_node)
        .await
        .expect("connect");
    c.start_games();
    early
        .wait_player(Duration::from_secs(60))
        .await
        .expect("its account, once a game was up");
    log_in(&mut early, "ann", true).await;

    let mut players = vec![early];
    for name in ["bob", "cy"] {
        players.push(player(&c.at_node, name, true).await);
    }
    assert_on_both_games(&players);
    for c in &mut players {
        join(c, "tea").await;
    }
    assert_eq!(who(&mut players[0]).await, ["ann", "bob", "cy"]);
    call(&mut players[2], "say", ("hello",)).await;
    for c in &mut players {
        let (from, _, text): (String, String, String) = expect(c, "on_chat").await;
        assert_eq!((from.as_str(), text.as_str()), ("cy", "hello"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_while_the_node_is_dead_is_delivered_once_a_new_one_is_up() {
    // Slow to find the dead, so that the new node waits long enough for
    // the game this test holds back.
    let mut c = GamesOnly::start(
        ("testbed", "plugins/testbed", "Probe", "[]"),
        "lost_after_ms = 3000",
    );
    c.start_games();
    // A Keeper on each game.
    let mut keepers = Vec::new();
    let mut clients = Vec::new();
    while keepers.len() < 2 {
        let mut cl = Client::connect(Transport::Tcp, &c.at_node)
            .await
            .expect("connect");
        cl.wait_player(WAIT).await.expect("own probe");
        call(&mut cl, "keepers", (1u32, 0u64)).await;
        let (first, _): (u64, u64) = expect(&mut cl, "on_keepers").await;
        if keepers.iter().all(|k: &u64| k / 10_000 != first / 10_000) {
            keepers.push(first);
        }
        clients.push(cl);
    }
    let (a, b) = (keepers[0], keepers[1]);
    // a bumps b from a timer that fires after the node is dead (and, as a
    // rule, after its game has noticed).
    let probe = clients[0].player().expect("own probe");
    clients[0]
        .call(a, "bump_later", (b, 4500u32, probe))
        .await
        .expect("send");
    // Armed (its answer came back) before the node dies.
    let (id, _): (u64, u64) = expect(&mut clients[0], "on_keeper").await;
    assert_eq!(id, a);
    c.node.signal("KILL");
    wait_closed(&mut clients[0], WAIT).await;
    let a_game = wait_any_line(&c.games, "bumping another keeper", WAIT);

    // A new node, which b's game rejoins last: a's game has sent the bump
    // again (it did before it took the new client in) and the client has
    // asked b for its count before b's game is let go on.
    let b_game = &c.games[1 - a_game];
    b_game.signal("STOP");
    c.node = Wyrm::start(&["serve"], &c.cfg);
    let at_node = c.node.tcp_addr();
    let mut cl = Client::connect(Transport::Tcp, &at_node)
        .await
        .expect("connect");
    cl.wait_player(WAIT).await.expect("own probe");
    call(&mut cl, "keepers_ask", (b, b)).await;
    b_game.signal("CONT");
    // Both waited for b's game, and reach b in the order sent: the bump
    // once, then the question.
    let (id, count): (u64, u64) = expect(&mut cl, "on_keeper").await;
    assert_eq!((id, count), (b, 1));
    call(&mut cl, "keepers_ask", (b, b)).await;
    let (_, count): (u64, u64) = expect(&mut cl, "on_keeper").await;
    assert_eq!(count, 1, "bumped more than once");
}
