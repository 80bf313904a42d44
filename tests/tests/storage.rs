//! Storage through a real server: saved entities, the offline mailbox, the
//! key-value store, stats, and databases that are damaged, locked or
//! unreachable.

use std::path::Path;
use std::time::Duration;

use rmpv::Value;
use wyrm_client::{Client, Transport, NO_ARGS};
use wyrm_tests::chat::expect;
use wyrm_tests::{testbed_plugin, TestServer};

/// `on_vault_value` args: id, value, log, error.
type VaultValue = (u64, Option<i64>, Vec<String>, Option<String>);

async fn probe_server(dir: &Path) -> TestServer {
    match TestServer::try_start(testbed_plugin(), "Probe", &[], |_| {}, Some(dir)).await {
        Ok(s) => s,
        Err(e) => panic!("server did not start: {e:#}"),
    }
}

async fn vault_new(c: &mut Client, value: i64) -> u64 {
    c.call_player("vault_new", (value,)).await.expect("send");
    let (id,): (u64,) = expect(c, "on_vault").await;
    id
}

/// The vault's (value, log), loading it if needed.
async fn vault_get(c: &mut Client, id: u64) -> (Option<i64>, Vec<String>) {
    c.call_player("vault_get", (id,)).await.expect("send");
    let (got, value, log, err): VaultValue = expect(c, "on_vault_value").await;
    assert_eq!(got, id);
    assert_eq!(err, None, "loading vault {id}");
    (value, log)
}

async fn vault_log(c: &mut Client, id: u64, line: &str) {
    c.call_player("vault_log", (id, line)).await.expect("send");
}

async fn vault_unload(c: &mut Client, id: u64) {
    c.call_player("vault_unload", (id,)).await.expect("send");
    // Round trip: the unload has run once the server answers a later call.
    c.round_trip(Duration::from_secs(10)).await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_entity_gets_its_messages_once_in_order_at_its_next_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = probe_server(dir.path()).await;
    let mut c = server.connect(Transport::Tcp).await;
    let id = vault_new(&mut c, 7).await;
    vault_unload(&mut c, id).await;
    for line in ["a", "b", "c"] {
        vault_log(&mut c, id, line).await;
    }
    assert_eq!(
        vault_get(&mut c, id).await,
        (Some(7), vec!["a".into(), "b".into(), "c".into()])
    );
    // Loaded again later: nothing is delivered twice.
    vault_unload(&mut c, id).await;
    assert_eq!(vault_get(&mut c, id).await.1, ["a", "b", "c"]);
    // Mail waits across a restart too.
    vault_unload(&mut c, id).await;
    vault_log(&mut c, id, "d").await;
    c.round_trip(Duration::from_secs(10)).await.expect("ping");
    server.server.shutdown().await;

    let server = probe_server(dir.path()).await;
    let mut c = server.connect(Transport::WebSocket).await;
    assert_eq!(
        vault_get(&mut c, id).await,
        (
            Some(7),
            vec!["a".into(), "b".into(), "c".into(), "d".into()]
        )
    );
    // A new entity never reuses an id an earlier run handed out.
    let fresh = vault_new(&mut c, 1).await;
    assert!(
        fresh > id,
        "ids are not reused across restarts: {fresh} after {id}"
    );
    // Saved ids and existence, loaded or not.
    let other = vault_new(&mut c, 2).await;
    vault_unload(&mut c, other).await;
    c.call_player("vault_ids", NO_ARGS).await.expect("send");
    let (ids,): (Vec<u64>,) = expect(&mut c, "on_vault_ids").await;
    assert!(
        ids.contains(&id) && ids.contains(&other),
        "{ids:?} has {id} and {other}"
    );
    for (probe, found) in [(id, true), (other, true), (987_654_321, false)] {
        c.call_player("exists", (probe,)).await.expect("send");
        assert_eq!(
            expect::<(u64, bool)>(&mut c, "on_exists").await,
            (probe, found)
        );
    }
    // Loading what was never saved is an error answer, not a crash.
    c.call_player("vault_get", (987_654_321u64,))
        .await
        .expect("send");
    let (_, _, _, err): VaultValue = expect(&mut c, "on_vault_value").await;
    assert!(err.is_some_and(|e| e.contains("no saved entity")));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_store_get_put_get_or_put_and_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = probe_server(dir.path()).await;
    let mut c = server.connect(Transport::Kcp).await;
    for (k, v) in [
        ("score/ann", 10),
        ("score/bob", 7),
        ("scorer", 1),
        ("other", 3),
    ] {
        c.call_player("kv_put", (k, v)).await.expect("send");
        let (key, _): (String, Value) = expect(&mut c, "on_kv_put").await;
        assert_eq!(key, k);
    }
    c.call_player("kv_get", ("score/ann",)).await.expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::from(10)
    );
    c.call_player("kv_get", ("missing",)).await.expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::Nil
    );
    c.call_player("kv_get_or_put", ("score/ann", 99))
        .await
        .expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::from(10),
        "existing value wins"
    );
    c.call_player("kv_get_or_put", ("score/cy", 5))
        .await
        .expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::from(5),
        "absent: stored"
    );
    c.call_player("kv_range", ("score/",)).await.expect("send");
    let (_, pairs): (String, Vec<(String, i64)>) = expect(&mut c, "on_kv_range").await;
    assert_eq!(
        pairs,
        [
            ("score/ann".into(), 10),
            ("score/bob".into(), 7),
            ("score/cy".into(), 5)
        ]
    );
    server.server.shutdown().await;

    // Still there after a restart.
    let server = probe_server(dir.path()).await;
    let mut c = server.connect(Transport::Tcp).await;
    c.call_player("kv_get", ("score/bob",)).await.expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::from(7)
    );
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_events_land_in_their_own_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = probe_server(dir.path()).await;
    let mut c = server.connect(Transport::Tcp).await;
    for n in 0..50 {
        c.call_player("stat", ("kills", n)).await.expect("send");
    }
    c.round_trip(Duration::from_secs(10)).await.expect("ping");
    server.server.shutdown().await;
    let db = rusqlite::Connection::open(dir.path().join("stats.db")).expect("open stats.db");
    let (count, max): (i64, Vec<u8>) = db
        .query_row(
            "SELECT count(*), (SELECT fields FROM events WHERE name = 'kills' ORDER BY id DESC LIMIT 1) FROM events WHERE name = 'kills'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query");
    assert_eq!(count, 50);
    let fields = rmpv::decode::read_value(&mut max.as_slice()).expect("msgpack fields");
    assert_eq!(
        fields,
        Value::Map(vec![(Value::from("n"), Value::from(49))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_locked_or_unreachable_database_is_refused_with_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Damaged: refused, named, and left exactly as it was.
    let db = dir.path().join("wyrm.db");
    let junk = b"this is not a database, but it is somebody's file".repeat(100);
    std::fs::write(&db, &junk).expect("write");
    let err = match TestServer::try_start(testbed_plugin(), "Probe", &[], |_| {}, Some(dir.path()))
        .await
    {
        Ok(_) => panic!("a damaged database must not be opened"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&db.display().to_string()) && err.contains("damaged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).expect("read"),
        junk,
        "the damaged file is untouched"
    );
    std::fs::remove_file(&db).expect("remove");

    // Locked: a second server on the same database is refused; the first
    // keeps working.
    let first = probe_server(dir.path()).await;
    let err = match TestServer::try_start(testbed_plugin(), "Probe", &[], |_| {}, Some(dir.path()))
        .await
    {
        Ok(_) => panic!("a database in use must not be opened twice"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&db.display().to_string()) && err.contains("in use"),
        "{err}"
    );
    let mut c = first.connect(Transport::Tcp).await;
    let id = vault_new(&mut c, 3).await;
    assert_eq!(vault_get(&mut c, id).await.0, Some(3));
    first.server.shutdown().await;

    // Unreachable: a path through a regular file.
    let err = match TestServer::try_start(
        testbed_plugin(),
        "Probe",
        &[],
        |cfg| cfg.storage.path = Some(db.join("nested/wyrm.db")),
        Some(dir.path()),
    )
    .await
    {
        Ok(_) => panic!("an unreachable database must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("nested/wyrm.db"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chatroom_keeps_accounts_and_room_history_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = || {
        TestServer::try_start(
            wyrm_tests::chatroom_plugin(),
            "Account",
            &["Lobby"],
            |_| {},
            Some(dir.path()),
        )
    };
    let server = start().await.expect("start");
    let mut a = wyrm_tests::chat::player(&server, Transport::WebSocket, "hana").await;
    wyrm_tests::chat::join(&mut a, "tea").await;
    for line in ["first", "second", "third"] {
        wyrm_tests::chat::say(&mut a, line).await;
        wyrm_tests::chat::next_chat(&mut a).await;
    }
    server.server.shutdown().await;

    let server = start().await.expect("restart");
    let mut b = server.connect(Transport::Tcp).await;
    let (ok, msg) = wyrm_tests::chat::login(&mut b, "hana", "hana-secret").await;
    assert!(ok, "the account survived the restart: {msg}");
    // Logging in lands in the lobby, with its (empty) history.
    let (room, lines): (String, Vec<(String, String)>) = expect(&mut b, "on_history").await;
    assert_eq!((room.as_str(), lines.len()), ("lobby", 0));
    b.call_player("join", ("tea",)).await.expect("send");
    let (room, lines): (String, Vec<(String, String)>) = expect(&mut b, "on_history").await;
    assert_eq!(room, "tea");
    assert_eq!(
        lines,
        [
            ("hana".into(), "first".into()),
            ("hana".into(), "second".into()),
            ("hana".into(), "third".into())
        ]
    );
    let mut c = server.connect(Transport::Kcp).await;
    let (ok, _) = wyrm_tests::chat::register(&mut c, "hana", "whatever").await;
    assert!(!ok, "the name is still taken");
    server.server.shutdown().await;
}
