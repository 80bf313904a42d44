//! The fabric over a real `nats-server`: batches arrive whole and in
//! order, few NATS messages carry many, heartbeats tell who joined and
//! who left, and a NATS server that restarts costs a pause, not the
//! connection.

use std::time::Duration;

use wyrm_fabric::local::LocalNats;
use wyrm_fabric::{Address, Change, Fabric, Presence, Role};

fn nats() -> LocalNats {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_test_writer()
        .try_init();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-cluster");
    match std::process::Command::new(&script).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    }
    match LocalNats::start() {
        Ok(n) => n,
        Err(e) => panic!("nats-server: {e:#}"),
    }
}

async fn connect(nats: &LocalNats, name: &str) -> Fabric {
    match Fabric::connect(&nats.url(), "test", name).await {
        Ok(f) => f,
        Err(e) => panic!("connect: {e}"),
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn messages_arrive_in_order_in_few_nats_messages() {
    let nats = nats();
    let (a, b) = (connect(&nats, "a").await, connect(&nats, "b").await);
    let mut inbox = b.inbox::<u64>(Address::Gate(3)).await.expect("subscribe");
    let outbox = a.outbox::<u64, ()>(Address::Gate(3), 1024);
    const N: u64 = 20_000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            outbox.send(i, ()).await.expect("send");
        }
    });
    let (mut next, mut batches) = (0u64, 0u32);
    while next < N {
        let (at, batch) = match tokio::time::timeout(WAIT, inbox.next()).await {
            Ok(Some(b)) => b,
            other => panic!("no batch after {next} of {N}: {other:?}"),
        };
        assert_eq!(at, Address::Gate(3));
        for i in batch {
            assert_eq!(i, next, "out of order");
            next += 1;
        }
        batches += 1;
    }
    sender.await.expect("sender");
    assert!(
        u64::from(batches) < N / 10,
        "{N} messages took {batches} NATS messages"
    );
}

async fn next(r: &mut wyrm_fabric::Roster) -> Change {
    match tokio::time::timeout(WAIT, r.next()).await {
        Ok(Some(c)) => c,
        other => panic!("no change: {other:?}"),
    }
}

#[tokio::test]
async fn the_roster_sees_processes_join_leave_and_restart() {
    let nats = nats();
    let watcher = connect(&nats, "watcher").await;
    let mut roster = watcher.roster().await.expect("roster");
    let gate = connect(&nats, "gate").await;
    let first = Presence {
        role: Role::Gate,
        id: 1,
        run: 7,
    };
    let beating = gate.beat(first);
    assert_eq!(next(&mut roster).await, Change::Joined(first));
    // The same id, another run: the first left.
    let second = Presence { run: 8, ..first };
    let restarted = connect(&nats, "gate again").await;
    let beating_again = restarted.beat(second);
    drop(beating);
    // Beats of the old run may still be in flight: the roster says the
    // old run left once, and the new one joined.
    let mut changes = Vec::new();
    while !changes.contains(&Change::Joined(second)) {
        changes.push(next(&mut roster).await);
    }
    assert!(changes.contains(&Change::Left(first)), "{changes:?}");
    // Silent for GONE_AFTER: gone.
    drop(beating_again);
    assert_eq!(next(&mut roster).await, Change::Left(second));
}

#[tokio::test]
async fn a_restarted_nats_server_costs_a_pause_not_the_connection() {
    let mut nats = nats();
    let (a, b) = (connect(&nats, "a").await, connect(&nats, "b").await);
    let mut inbox = b.inbox::<String>(Address::Up(1)).await.expect("subscribe");
    let outbox = a.outbox::<String, ()>(Address::Up(1), 64);
    outbox.send("before".into(), ()).await.expect("send");
    let got = tokio::time::timeout(WAIT, inbox.next()).await;
    assert!(
        matches!(got, Ok(Some((_, ref m))) if m == &["before"]),
        "{got:?}"
    );

    nats.kill();
    nats.restart().expect("nats-server starts again");
    // Both clients reconnect and subscribe again by themselves; until the
    // subscriber has, what is published is lost (NATS keeps nothing), so
    // the publisher says it again until it is heard.
    let mut heard = false;
    for _ in 0..100 {
        outbox.send("after".into(), ()).await.expect("send");
        if let Ok(Some((_, m))) =
            tokio::time::timeout(Duration::from_millis(200), inbox.next()).await
        {
            assert!(m.iter().all(|s| s == "after"), "{m:?}");
            heard = true;
            break;
        }
    }
    assert!(heard, "nothing got through after NATS restarted");
}

#[tokio::test]
async fn tls_to_nats_trusts_the_given_ca_and_refuses_another() {
    nats(); // installs nats-server
    let dir = tempfile::tempdir().expect("temp dir");
    wyrm_fabric::local::test_certificates(dir.path(), "other").expect("certificates");
    wyrm_fabric::local::test_certificates(dir.path(), "ca").expect("certificates");
    let path = |f: &str| dir.path().join(f).display().to_string();
    let server = LocalNats::start_with(&[
        "--tls",
        "--tlscert",
        &path("server.pem"),
        "--tlskey",
        &path("server.key"),
    ])
    .expect("nats-server with TLS");
    let trusting = |ca: &str| wyrm_fabric::Security {
        ca: Some(dir.path().join(ca)),
        ..Default::default()
    };
    let a = Fabric::connect_with(&server.url(), "tls", "a", &trusting("ca.pem"))
        .await
        .expect("TLS with the server's CA");
    let mut inbox = a.inbox::<String>(Address::Up(1)).await.expect("subscribe");
    let outbox = a.outbox::<String, ()>(Address::Up(1), 8);
    outbox.send("over TLS".into(), ()).await.expect("send");
    let (_, got) = tokio::time::timeout(Duration::from_secs(5), inbox.next())
        .await
        .expect("in time")
        .expect("a batch");
    assert_eq!(got, ["over TLS"]);
    // A server whose certificate another CA signed is not trusted; nor is
    // one without TLS when TLS is asked for.
    let wrong = Fabric::connect_with(&server.url(), "tls", "b", &trusting("other.pem")).await;
    assert!(wrong.is_err(), "a certificate of another CA was trusted");
    let plain = nats();
    let no_tls = Fabric::connect_with(&plain.url(), "tls", "c", &trusting("ca.pem")).await;
    assert!(
        no_tls.is_err(),
        "TLS was asked for and a plain server taken"
    );
}
