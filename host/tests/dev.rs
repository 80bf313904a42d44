//! `wyrm dev` end to end: the real binary serves a plugin built from a crate
//! this test writes; the test edits the crate's source, and a connected
//! client sees the new code answer, with the state it had.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wyrm_client::{Client, Transport, NO_ARGS};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn plugin_source(greeting: &str) -> String {
    format!(
        r#"use wyrm_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
pub struct Greeter {{ calls: u64 }}

#[wyrm_sdk::entity]
impl Greeter {{
    #[own_client]
    fn hello(&mut self, ctx: &mut Ctx) -> Result<(), String> {{
        self.calls += 1;
        ctx.call_client("on_hello", ("{greeting}", self.calls))?;
        Ok(())
    }}
}}

wyrm_sdk::plugin!(name = "greeter", entities = [Greeter]);
"#
    )
}

fn write_crate(dir: &Path) -> std::io::Result<()> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-guest");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwyrm-sdk = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), plugin_source("v1"))?;
    std::fs::write(
        dir.join("wyrm.toml"),
        "[net]\ntcp = \"127.0.0.1:0\"\n\n[game]\nboot_entity = \"Greeter\"\n\n[[plugin]]\nname = \"greeter\"\nsource = \".\"\n",
    )
}

/// Waits for a line of the server's output containing `needle`.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => panic!("no output line containing {needle:?} within {timeout:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_the_source_swaps_the_new_code_in_for_a_connected_player() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_crate(dir.path()).expect("write the plugin crate");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wyrm"))
        .arg("dev")
        .arg(dir.path().join("wyrm.toml"))
        .env("WYRM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wyrm dev");
    let stdout = child.stdout.take().expect("stdout");
    let _server = Running(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("wyrm dev: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first start builds the plugin crate from scratch.
    let tcp = wait_line(&lines, "TCP clients:", Duration::from_secs(600));
    let addr = tcp.rsplit(' ').next().expect("address").to_string();
    wait_line(&lines, "watching", Duration::from_secs(10));

    let mut c = Client::connect(Transport::Tcp, &addr)
        .await
        .expect("connect");
    c.wait_player(Duration::from_secs(10))
        .await
        .expect("own entity");
    for n in 1..=2u64 {
        c.call_player("hello", NO_ARGS).await.expect("send");
        let (_, got): (u64, (String, u64)) = c
            .expect_call_as("on_hello", Duration::from_secs(10))
            .await
            .expect("hello");
        assert_eq!(got, ("v1".to_string(), n));
    }

    std::fs::write(dir.path().join("src/lib.rs"), plugin_source("v2")).expect("edit the source");
    let report = wait_line(&lines, "swapped", Duration::from_secs(300));
    assert!(report.contains("greeter"), "{report}");

    c.call_player("hello", NO_ARGS).await.expect("send");
    let (_, got): (u64, (String, u64)) = c
        .expect_call_as("on_hello", Duration::from_secs(10))
        .await
        .expect("hello");
    assert_eq!(
        got,
        ("v2".to_string(), 3),
        "new code, same connection, state carried"
    );
}
