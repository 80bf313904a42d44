//! `wyrm dev` end to end: the real binary serves a plugin built from a crate
//! this test writes; the test edits the crate's source, and a connected
//! client sees the new code answer, with the state it had.

use std::path::Path;
use std::time::Duration;

use wyrm_client::{Client, Transport, NO_ARGS};

mod support;
use support::Wyrm;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_the_source_swaps_the_new_code_in_for_a_connected_player() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_crate(dir.path()).expect("write the plugin crate");
    // The first start builds the plugin crate from scratch.
    let server = Wyrm::start(&["dev"], &dir.path().join("wyrm.toml"));
    let addr = server.tcp_addr();
    server.wait_line("watching", Duration::from_secs(10));

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
    let report = server.wait_line("swapped", Duration::from_secs(300));
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
