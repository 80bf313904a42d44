//! Storage through a real server: saved entities, the offline mailbox, the
//! key-value store and a game's data across restarts, on SQLite and on a
//! real PostgreSQL server alike; stats; databases that are damaged, locked
//! or unreachable; and ids from a database that two processes share.

use std::path::Path;
use std::time::Duration;

use rmpv::Value;
use wyrm_client::{Client, Transport, NO_ARGS};
use wyrm_tests::chat::expect;
use wyrm_tests::{testbed_plugin, Db, TestServer};

/// Each test named runs twice: `sqlite::name` and `postgres::name`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(wyrm_tests::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(wyrm_tests::Db::Postgres).await
                }
            )*
        }
    };
}

on_both_databases!(
    an_offline_entity_gets_its_messages_once_in_order_at_its_next_load,
    key_value_store_get_put_get_or_put_and_range,
    the_chatroom_keeps_accounts_and_room_history_across_a_restart,
    a_batch_of_operations_sees_each_other_in_order,
    checkpointed_states_come_back_only_for_a_recovery_and_go_with_a_destroy,
);

/// `on_vault_value` args: id, value, log, error.
type VaultValue = (u64, Option<i64>, Vec<String>, Option<String>);

/// `db`'s database for the data folder `dir`, outside any server.
fn location(db: Db, dir: &Path) -> wyrm_storage::Location {
    match db {
        Db::Sqlite => wyrm_storage::Location::Sqlite {
            path: dir.join("wyrm.db"),
            durable: false,
        },
        Db::Postgres => wyrm_storage::Location::Postgres {
            url: wyrm_tests::services::postgres_database(dir),
            ca: None,
        },
    }
}

/// Storage on `location`, its answers on a channel.
fn open_store(
    location: &wyrm_storage::Location,
) -> (
    wyrm_storage::Opened<()>,
    crossbeam_channel::Receiver<wyrm_storage::Answer<()>>,
) {
    let (tx, answers) = crossbeam_channel::unbounded();
    match wyrm_storage::open::<()>(location, &[], move |a| {
        let _ = tx.send(a);
    }) {
        Ok(o) => (o, answers),
        Err(e) => panic!("open {location}: {e}"),
    }
}

async fn probe_server(dir: &Path, db: Db) -> TestServer {
    let tweak = |cfg: &mut wyrm::Config| db.use_for(cfg, dir);
    match TestServer::try_start(testbed_plugin(), "Probe", &[], tweak, Some(dir)).await {
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

async fn an_offline_entity_gets_its_messages_once_in_order_at_its_next_load(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = probe_server(dir.path(), db).await;
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

    let server = probe_server(dir.path(), db).await;
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

async fn key_value_store_get_put_get_or_put_and_range(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = probe_server(dir.path(), db).await;
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
    let server = probe_server(dir.path(), db).await;
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
    let server = probe_server(dir.path(), Db::Sqlite).await;
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
    let first = probe_server(dir.path(), Db::Sqlite).await;
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

async fn the_chatroom_keeps_accounts_and_room_history_across_a_restart(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = || {
        TestServer::try_start(
            wyrm_tests::chatroom_plugin(),
            "Account",
            &["Lobby"],
            |cfg| db.use_for(cfg, dir.path()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_refused_with_its_name_but_not_its_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens on port 1.
    let url = "postgres://wyrm:hunter2@127.0.0.1:1/nowhere?connect_timeout=2";
    let err = match TestServer::try_start(
        testbed_plugin(),
        "Probe",
        &[],
        |cfg| cfg.storage.url = Some(url.into()),
        Some(dir.path()),
    )
    .await
    {
        Ok(_) => panic!("a server whose database is unreachable must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("127.0.0.1:1/nowhere"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is in the error: {err}"
    );
}

/// Two processes of a cluster share one PostgreSQL database: the id blocks
/// each reserves never overlap, however their reservations interleave, and
/// a process opened afterwards starts above all of them.
#[test]
fn processes_sharing_a_postgres_database_never_get_the_same_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = location(Db::Postgres, dir.path());
    let open = || open_store(&location).0;
    let (a, b) = (open(), open());
    let mut blocks = vec![a.ids.clone(), b.ids.clone()];
    // Both ask at once, many times over.
    let ask = |store: &wyrm_storage::Store<()>| {
        let (reply, rx) = crossbeam_channel::bounded(1);
        store.send(wyrm_storage::Op::ReserveIds { reply });
        rx
    };
    for _ in 0..20 {
        let (ra, rb) = (ask(&a.store), ask(&b.store));
        for rx in [ra, rb] {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(block) => blocks.push(block),
                Err(e) => panic!("no id block: {e}"),
            }
        }
    }
    blocks.sort_by_key(|b| b.start);
    for pair in blocks.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "overlapping id blocks {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    let highest = blocks.iter().map(|b| b.end).max().unwrap_or(0);
    let later = open();
    assert!(
        later.ids.start >= highest,
        "a later process starts at {} below {highest}",
        later.ids.start
    );
}

/// PostgreSQL aborts a whole transaction on any error; storage still fails
/// only the operation that failed (a key PostgreSQL cannot store: text
/// with a NUL), answering the others of its batch as if it were not there.
#[test]
fn one_failing_operation_fails_only_itself_on_postgres() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opened, answers) = open_store(&location(Db::Postgres, dir.path()));
    let reply = |method: &str| wyrm_storage::ReplyTo {
        entity: 1,
        method: method.into(),
        context: Vec::new(),
    };
    let one = {
        let mut v = Vec::new();
        let _ = rmpv::encode::write_value(&mut v, &Value::from(1));
        v
    };
    // Sent in a burst, so that they share batches.
    const ROUNDS: usize = 20;
    for _ in 0..ROUNDS {
        opened.store.send(wyrm_storage::Op::KvPut {
            key: "good".into(),
            value: one.clone(),
            reply: Some(reply("put_good")),
        });
        opened.store.send(wyrm_storage::Op::KvPut {
            key: "bad\0key".into(),
            value: one.clone(),
            reply: Some(reply("put_bad")),
        });
        opened.store.send(wyrm_storage::Op::KvGet {
            key: "good".into(),
            reply: reply("get_good"),
        });
    }
    for _ in 0..ROUNDS * 3 {
        let answer = match answers.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(e) => panic!("no answer: {e}"),
        };
        let wyrm_storage::Answer::Reply { reply, .. } = answer else {
            panic!("not a reply: {answer:?}");
        };
        let args = rmpv::decode::read_value(&mut reply.args.as_slice()).expect("msgpack args");
        let (err, value) = match &args {
            Value::Array(a) if a.len() == 3 => (&a[0], &a[1]),
            other => panic!("answer args {other}"),
        };
        match reply.method.as_str() {
            "put_good" => assert_eq!(err, &Value::Nil),
            "put_bad" => assert!(
                err.as_str().is_some_and(|e| e.contains("storage error")),
                "{err}"
            ),
            "get_good" => assert_eq!((err, value), (&Value::Nil, &Value::from(1))),
            other => panic!("answer to {other}"),
        }
    }
}

/// PostgreSQL killed and started again under a running server: what was
/// asked of storage meanwhile is answered with an error (never as done),
/// clients stay connected, and storage carries on once the database is
/// back, without the server restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_carries_on_when_postgres_comes_back() {
    let mut pg = wyrm_tests::services::own_postgres();
    let url = pg.database("restarts").expect("a database");
    let dir = tempfile::tempdir().expect("temp dir");
    let start = || {
        let url = url.clone();
        TestServer::try_start(
            testbed_plugin(),
            "Probe",
            &[],
            move |cfg| cfg.storage.url = Some(url),
            Some(dir.path()),
        )
    };
    let server = start().await.expect("server starts");
    let mut c = server.connect(Transport::Tcp).await;
    let put = |key: &'static str, v: i64| ("kv_put", (key, v));
    let (m, a) = put("before", 1);
    c.call_player(m, a).await.expect("send");
    let _: (String, Value) = expect(&mut c, "on_kv_put").await;

    pg.kill().expect("PostgreSQL stops");
    // Asked while it is down: refused to the plugin, which tells no one.
    let (m, a) = put("during", 2);
    c.call_player(m, a).await.expect("send");
    c.round_trip(Duration::from_secs(10))
        .await
        .expect("the server still answers");

    pg.restart().expect("PostgreSQL starts again");
    let (m, a) = put("after", 3);
    c.call_player(m, a).await.expect("send");
    let (key, _): (String, Value) = expect(&mut c, "on_kv_put").await;
    assert_eq!(
        key, "after",
        "the write made while it was down did not succeed"
    );
    for (key, value) in [("before", Value::from(1)), ("after", Value::from(3))] {
        c.call_player("kv_get", (key,)).await.expect("send");
        assert_eq!(
            expect::<(String, Value)>(&mut c, "on_kv_get").await,
            (key.to_owned(), value)
        );
    }
    server.server.shutdown().await;

    let server = start().await.expect("server starts again");
    let mut c = server.connect(Transport::WebSocket).await;
    c.call_player("kv_get", ("after",)).await.expect("send");
    assert_eq!(
        expect::<(String, Value)>(&mut c, "on_kv_get").await.1,
        Value::from(3)
    );
    server.server.shutdown().await;
}

/// Operations queued together (and so run in one transaction, saves and
/// loads next to each other merged into one statement) see each other in
/// the order they were sent: the last save of an entity wins, a load sees
/// the saves and mail before it, a read the write before it.
async fn a_batch_of_operations_sees_each_other_in_order(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opened, answers) = open_store(&location(db, dir.path()));
    let row = |id: u64, v: &str| wyrm_storage::EntityRow {
        id,
        type_name: "Thing".into(),
        attrs: v.as_bytes().to_vec(),
    };
    let reply = |method: &str| wyrm_storage::ReplyTo {
        entity: 1,
        method: method.into(),
        context: Vec::new(),
    };
    use wyrm_storage::Op;
    let ops = [
        Op::Save {
            rows: vec![row(1, "a1"), row(2, "b1")],
            reply: None,
        },
        Op::Save {
            rows: vec![row(1, "a2"), row(1, "a3")],
            reply: Some(reply("saved")),
        },
        Op::Mail {
            entity: 2,
            method: "hello".into(),
            args: vec![0x90],
        },
        Op::Load { id: 1 },
        Op::Load { id: 2 },
        Op::Load { id: 3 },
        Op::KvPut {
            key: "k".into(),
            value: vec![0x01],
            reply: None,
        },
        Op::KvGet {
            key: "k".into(),
            reply: reply("got"),
        },
        Op::Save {
            rows: vec![row(2, "b2")],
            reply: None,
        },
        Op::Load { id: 2 },
    ];
    for op in ops {
        opened.store.send(op);
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        match answers.recv_timeout(Duration::from_secs(30)) {
            Ok(wyrm_storage::Answer::Reply { reply, .. }) => {
                let args =
                    rmpv::decode::read_value(&mut reply.args.as_slice()).expect("msgpack args");
                seen.push(format!("{} {args}", reply.method));
            }
            Ok(wyrm_storage::Answer::Loaded { id, result }) => seen.push(match result {
                Ok(l) => format!(
                    "{id}: {} mail {:?}",
                    String::from_utf8_lossy(&l.row.attrs),
                    l.mailbox.iter().map(|m| m.1.as_str()).collect::<Vec<_>>()
                ),
                Err(e) => format!("{id}: {e}"),
            }),
            Err(e) => panic!("no answer after {seen:?}: {e}"),
        }
    }
    assert_eq!(
        seen,
        [
            "saved [nil, 1, nil]",
            "1: a3 mail []",
            "2: b1 mail [\"hello\"]",
            "3: no saved entity 3",
            "got [nil, 1, nil]",
            "2: b2 mail [\"hello\"]",
        ]
    );
}

/// A checkpoint's private states are read back by `Recover` (the latest
/// of each entity, with the version that wrote it), never by `Load`, and
/// dropped states are gone; an entity never saved has none to recover.
async fn checkpointed_states_come_back_only_for_a_recovery_and_go_with_a_destroy(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opened, answers) = open_store(&location(db, dir.path()));
    use wyrm_storage::{Op, SavedState};
    let row = |id: u64| wyrm_storage::EntityRow {
        id,
        type_name: "Thing".into(),
        attrs: vec![0x80],
    };
    let ops = [
        Op::Save {
            rows: vec![row(1), row(2)],
            reply: None,
        },
        Op::SaveStates {
            version: "0.1.0".into(),
            states: vec![(1, b"one".to_vec()), (2, b"two".to_vec())],
        },
        Op::SaveStates {
            version: "0.2.0".into(),
            states: vec![(1, b"uno".to_vec()), (3, b"tres".to_vec())],
        },
        Op::Recover { id: 1 },
        Op::Load { id: 1 },
        Op::Recover { id: 2 },
        Op::Recover { id: 3 },
        Op::DropStates { ids: vec![2] },
        Op::Recover { id: 2 },
    ];
    for op in ops {
        opened.store.send(op);
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        match answers.recv_timeout(Duration::from_secs(30)) {
            Ok(wyrm_storage::Answer::Loaded { id, result }) => {
                seen.push((id, result.map(|l| l.state)));
            }
            Ok(other) => panic!("unexpected answer {other:?}"),
            Err(e) => panic!("no answer after {seen:?}: {e}"),
        }
    }
    let state = |v: &str, s: &[u8]| {
        Ok(Some(SavedState {
            version: v.into(),
            state: s.to_vec(),
        }))
    };
    assert_eq!(
        seen,
        [
            (1, state("0.2.0", b"uno")),
            (1, Ok(None)),
            (2, state("0.1.0", b"two")),
            (3, Err("no saved entity 3".into())),
            (2, Ok(None)),
        ]
    );
}

/// PostgreSQL over TLS: with the CA that signed the server's certificate
/// storage opens and works; with another CA, or the system's roots
/// (`sslmode=require`), it is refused; a server without TLS is refused
/// when TLS is asked for, and a plain URL stays plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_trusts_the_given_ca_and_refuses_the_rest() {
    use wyrm_storage::{Location, Op};
    wyrm_tests::services::setup_cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    wyrm_fabric::local::test_certificates(dir.path(), "other").expect("certificates");
    wyrm_fabric::local::test_certificates(dir.path(), "ca").expect("certificates");
    let mut pg = wyrm::local::LocalPostgres::temporary(&dir.path().join("pg"), false)
        .expect("a throwaway PostgreSQL");
    pg.enable_tls(
        &dir.path().join("server.pem"),
        &dir.path().join("server.key"),
    )
    .expect("TLS on");
    let url = pg.database("tls").expect("a database");
    let at = |url: &str, ca: Option<&str>| Location::Postgres {
        url: url.into(),
        ca: ca.map(|c| dir.path().join(c)),
    };

    let (opened, answers) = open_store(&at(&url, Some("ca.pem")));
    opened.store.send(Op::Save {
        rows: vec![wyrm_storage::EntityRow {
            id: 7,
            type_name: "Thing".into(),
            attrs: vec![0x80],
        }],
        reply: None,
    });
    opened.store.send(Op::Load { id: 7 });
    match answers.recv_timeout(Duration::from_secs(30)) {
        Ok(wyrm_storage::Answer::Loaded {
            id: 7,
            result: Ok(l),
        }) => {
            assert_eq!(l.row.type_name, "Thing")
        }
        other => panic!("no load over TLS: {other:?}"),
    }
    let refused = |location: Location| match wyrm_storage::open::<()>(&location, &[], |_| {}) {
        Ok(_) => panic!("{location} opened"),
        Err(e) => e.to_string(),
    };
    let e = refused(at(&url, Some("other.pem")));
    assert!(
        e.contains("certificate") || e.contains("Certificate"),
        "{e}"
    );
    let e = refused(at(&format!("{url}?sslmode=require"), None));
    assert!(
        e.contains("certificate") || e.contains("Certificate"),
        "{e}"
    );
    // A server that does not speak TLS, asked for it.
    let plain = wyrm_tests::services::postgres_database(&dir.path().join("plain"));
    let e = refused(at(&plain, Some("ca.pem")));
    assert!(e.contains("TLS") || e.contains("SSL"), "{e}");
    // Not asked: as before.
    drop(open_store(&at(&plain, None)));
}
