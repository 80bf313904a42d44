//! Nothing acknowledged is lost: the real server process is killed with
//! SIGKILL during traffic, or stopped with SIGTERM, and started again on the
//! same database.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wyrm_client::{Client, Event, Transport};

mod support;
use support::Wyrm;

/// `on_vault_value` args: id, value, log, error.
type VaultValue = (u64, Option<i64>, Vec<String>, Option<String>);

const WAIT: Duration = Duration::from_secs(10);

fn testbed() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())
        .expect("build testbed")
}

/// A config whose periodic save is far away, so only explicit saves (and
/// the shutdown save) can have stored anything.
fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("wyrm.toml");
    let text = format!(
        "[net]\ntcp = \"127.0.0.1:0\"\nclient_rate = 100000\n\n[game]\nboot_entity = \"Probe\"\n\n[storage]\nsave_interval_ms = 600000\n\n[[plugin]]\nname = \"testbed\"\nsource = {:?}\n",
        testbed().display().to_string()
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

async fn connect(server: &Wyrm) -> Client {
    let mut c = Client::connect(Transport::Tcp, &server.tcp_addr())
        .await
        .expect("connect");
    c.wait_player(WAIT).await.expect("own entity");
    c
}

async fn vault_new(c: &mut Client) -> u64 {
    c.call_player("vault_new", (0i64,)).await.expect("send");
    let (_, (id,)): (u64, (u64,)) = c.expect_call_as("on_vault", WAIT).await.expect("on_vault");
    id
}

async fn vault_value(c: &mut Client, id: u64) -> Option<i64> {
    c.call_player("vault_get", (id,)).await.expect("send");
    let (_, (got, value, _log, err)): (u64, VaultValue) = c
        .expect_call_as("on_vault_value", WAIT)
        .await
        .expect("on_vault_value");
    assert_eq!((got, err), (id, None));
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_save_acknowledged_before_a_kill_9_is_there_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(dir.path());
    let server = Wyrm::start(&["serve"], &cfg);
    let mut c = connect(&server).await;
    let vaults = [
        vault_new(&mut c).await,
        vault_new(&mut c).await,
        vault_new(&mut c).await,
    ];

    // Pipeline saves to every vault and note each acknowledgement; kill the
    // server in the middle of it.
    let mut acked = [0i64; 3];
    let mut next = 1i64;
    let started = Instant::now();
    let mut total_acks = 0;
    while total_acks < 300 && started.elapsed() < Duration::from_secs(60) {
        if next - acked.iter().min().copied().unwrap_or(0) < 40 {
            for id in vaults {
                c.call_player("vault_set", (id, next)).await.expect("send");
            }
            next += 1;
            continue;
        }
        match c.next_event_timeout(WAIT).await.expect("event") {
            Some(Event::Call { method, args, .. }) if method == "on_vault_saved" => {
                let (id, value, err): (u64, i64, Option<String>) =
                    wyrm_client::from_value(&args).expect("args");
                assert_eq!(err, None);
                let i = vaults.iter().position(|&v| v == id).expect("one of ours");
                assert!(value > acked[i], "acknowledgements arrive in order");
                acked[i] = value;
                total_acks += 1;
            }
            Some(_) => {}
            None => panic!("no acknowledgement within {WAIT:?}"),
        }
    }
    let mut server = server;
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    drop(server);
    assert!(total_acks >= 300, "enough traffic before the kill");

    let server = Wyrm::start(&["serve"], &cfg);
    let mut c = connect(&server).await;
    for (i, id) in vaults.into_iter().enumerate() {
        let value = vault_value(&mut c, id).await.expect("saved value");
        assert!(
            value >= acked[i],
            "vault {id}: acknowledged {} but found {value}",
            acked[i]
        );
        assert!(value < next, "nothing that was never sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(dir.path());
    let server = Wyrm::start(&["serve"], &cfg);
    let mut c = connect(&server).await;
    let id = vault_new(&mut c).await;
    for v in 1..=500i64 {
        c.call_player("vault_set_lazy", (id, v))
            .await
            .expect("send");
    }
    // Served in order: once the value reads 500, every set has run, and
    // none was saved yet (the save interval is ten minutes away).
    assert_eq!(vault_value(&mut c, id).await, Some(500));

    let mut server = server;
    server.signal("TERM");
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "graceful exit: {status}");
    drop(server);

    let server = Wyrm::start(&["serve"], &cfg);
    let mut c = connect(&server).await;
    assert_eq!(vault_value(&mut c, id).await, Some(500));
}
