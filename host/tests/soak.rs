//! A short soak with the real `wyrm` binary: bots on the chatroom and the
//! arena over every transport, hot swaps, and both servers SIGKILLed and
//! restarted half way; it passes only if nothing but the kill disturbed a
//! player (bots reconnect, no chat line lost or doubled, no confirmed
//! account missing, no swap failed). `scripts/soak` runs the long one.

use std::path::Path;
use std::time::Duration;

#[test]
fn a_short_soak_through_swaps_and_a_kill_passes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = wyrm_bots::soak::SoakConfig {
        wyrm: env!("CARGO_BIN_EXE_wyrm").into(),
        dir: repo.join("target/soak-test"),
        repo,
        bots: 48,
        duration: Duration::from_secs(40),
        swap_every: Duration::from_secs(3),
        kill_at: Duration::from_secs(20),
    };
    let (report, passed) = match wyrm_bots::soak::run(&cfg) {
        Ok(r) => r,
        Err(e) => panic!("the soak could not run: {e}"),
    };
    println!("{report}");
    assert!(passed, "{report}");
    assert!(
        report.contains("reconnects 48"),
        "every bot came back:\n{report}"
    );
}
