//! `wyrm bots` (the `wyrm-bots` library) against real servers over real
//! sockets: the chat scenario on the chatroom example, the arena scenario on
//! the arena example, and strict mode failing when the server does not play
//! along (a server of the wrong game, a server that never answers).

use std::time::Duration;

use wyrm_bots::{ActionKind, BotsError, Config, Report, Scenario};
use wyrm_client::Transport;
use wyrm_tests::TestServer;

/// Checks a clean run: every bot logged in, every action answered, no
/// errors, actions in every full second once all bots were in, and only
/// finite latencies.
fn assert_clean(report: &Report, bots: usize) {
    println!("{}", wyrm_bots::SecondStats::header());
    for row in &report.seconds {
        println!("{row}");
    }
    println!("{report}");
    assert_eq!(report.errors(), 0, "{report}");
    assert_eq!(report.logged_in, bots, "{report}");
    assert!(report.actions > 0, "{report}");
    assert_eq!(report.completed, report.actions, "{report}");
    let latency = report.latency.expect("some action was answered");
    assert!(latency.is_finite(), "{report}");
    assert!(latency.min_ms <= latency.p50_ms && latency.p50_ms <= latency.max_ms);
    let acting_seconds = report.config.duration.as_secs() as usize;
    let mut after_ramp = 0;
    for (i, pair) in report.seconds.windows(2).enumerate() {
        let (before, row) = (&pair[0], &pair[1]);
        if let Some(l) = row.latency {
            assert!(l.is_finite(), "row {row}");
        }
        // Row i + 1 covers second i + 1 of the run: a full second of acting
        // if it ends within the duration, with all bots logged in when it
        // started.
        if before.logged_in == bots && i + 2 <= acting_seconds {
            after_ramp += 1;
            assert!(row.actions > 0, "no actions in the second ending at {row}");
            assert!(
                row.completed > 0,
                "no answers in the second ending at {row}"
            );
        }
    }
    assert!(
        after_ramp >= 1,
        "no full second after the ramp-up:\n{report}"
    );
}

async fn chat_run(transport: Transport) {
    let server = TestServer::chatroom().await;
    let cfg = Config::new(
        server.gate_addrs(transport).join(","),
        transport,
        Scenario::Chat,
    )
    .bots(20)
    .rate(2.0)
    // Logins hash passwords (argon2, two per bot); 4 s leaves full
    // seconds of acting after them even on a busy machine.
    .duration(Duration::from_secs(4))
    .strict(true);
    let report = match wyrm_bots::run(cfg).await {
        Ok(r) => r,
        Err(e) => panic!("chat over {transport:?}: {e}"),
    };
    assert_clean(&report, 20);
    for kind in [ActionKind::Say, ActionKind::Who] {
        assert!(
            report
                .per_kind
                .iter()
                .any(|(k, l)| *k == kind && l.count > 0),
            "no {} answered:\n{report}",
            kind.name()
        );
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_chat_bots_over_tcp_run_clean() {
    chat_run(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_chat_bots_over_websocket_run_clean() {
    chat_run(Transport::WebSocket).await;
}

async fn arena_server() -> TestServer {
    TestServer::start(wyrm_tests::arena_plugin(), "Account", &["Arena"], |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_arena_bots_over_tcp_get_their_moves_acknowledged() {
    let server = arena_server().await;
    let gates = server.gate_addrs(Transport::Tcp).join(",");
    let cfg = Config::new(gates, Transport::Tcp, Scenario::Arena)
        .bots(10)
        .duration(Duration::from_secs(3))
        .strict(true);
    let report = match wyrm_bots::run(cfg).await {
        Ok(r) => r,
        Err(e) => panic!("arena over TCP: {e}"),
    };
    assert_clean(&report, 10);
    let moves = report
        .per_kind
        .iter()
        .find(|(k, _)| *k == ActionKind::Move)
        .map_or(0, |(_, l)| l.count);
    // 10 bots at 10 actions a second, 80% moves, for most of 3 s.
    assert!(moves > 100, "only {moves} moves acknowledged:\n{report}");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_chat_against_a_server_without_register_fails() {
    // The arena's Account has `login` but no `register`.
    let server = arena_server().await;
    let addr = server.addr(Transport::Tcp);
    let cfg = Config::new(&addr, Transport::Tcp, Scenario::Chat)
        .bots(3)
        .duration(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    // Without strict: a report with the errors in it.
    let report = match wyrm_bots::run(cfg.clone()).await {
        Ok(r) => r,
        Err(e) => panic!("a non-strict run returns its report: {e}"),
    };
    assert_eq!(report.error_frames, 3, "{report}");
    assert_eq!(report.logged_in, 0, "{report}");
    assert!(
        report
            .error_messages
            .iter()
            .any(|m| m.contains("NoSuchMethod")),
        "{report}"
    );
    // Strict: an error.
    match wyrm_bots::run(cfg.strict(true)).await {
        Err(BotsError::Strict(r)) => {
            assert_eq!(r.error_frames, 3, "{r}");
            assert_eq!(r.actions, 0, "{r}");
        }
        Ok(r) => panic!("strict mode passed with errors:\n{r}"),
        Err(e) => panic!("wrong error: {e}"),
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_counts_timeouts_of_a_silent_server() {
    // Accepts connections and never says a word (not even Welcome).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let cfg = Config::new(&addr, Transport::Tcp, Scenario::Chat)
        .bots(4)
        .duration(Duration::from_secs(1))
        .timeout(Duration::from_millis(300))
        .strict(true);
    let started = std::time::Instant::now();
    match wyrm_bots::run(cfg).await {
        Err(BotsError::Strict(r)) => {
            assert_eq!(r.timeouts, 4, "{r}");
            assert_eq!(r.logged_in, 0, "{r}");
            assert_eq!(r.errors(), 4, "{r}");
        }
        Ok(r) => panic!("strict mode passed against a silent server:\n{r}"),
        Err(e) => panic!("wrong error: {e}"),
    }
    // The timeout, not some longer default, ended the waiting.
    assert!(started.elapsed() < Duration::from_secs(5));
    silent.abort();
}
