//! A hostile plugin (`plugins/hostile`) beside a well-behaved one (the
//! chatroom), in one server: each test makes the hostile plugin do one
//! thing a plugin should not get away with, and checks that it is
//! contained — the hostile call fails (or the plugin's instance is
//! replaced), a bystander keeps chatting in the chatroom, and the server's
//! memory stays bounded.
//!
//! The server runs in a child process (this test binary again, started to
//! run only [`hostile_server_child`]), so its memory is its own: the tests
//! read its resident set and its peak from `/proc/<pid>/status`, resetting
//! the peak before each hostile act, and a watchdog kills it past
//! [`RSS_CEILING`] rather than let it take the machine. Its log goes to a
//! file the tests read for what the host said.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::Value;
use wyrm_client::{Client, ErrorCode, Event, Transport, NO_ARGS};
use wyrm_tests::chat::{self, join, next_chat, say};
use wyrm_tests::WAIT;

/// Set (to a config file) in the child that runs the server.
const CHILD_ENV: &str = "WYRM_HOSTILE_SERVER";
/// How the child announces where it listens.
const READY: &str = "WYRM-HOSTILE-READY";
/// The watchdog kills the server past this resident size, failing the
/// test, long before it could hurt the machine.
const RSS_CEILING: u64 = 2 << 20; // KiB: 2 GiB
/// The room bystanders chat in.
const ROOM: &str = "calm";

/// Not a test of its own: the server the tests run, in a child process.
/// It serves until its stdin closes (the test that started it is done).
#[test]
fn hostile_server_child() {
    let Ok(cfg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let filter = std::env::var("WYRM_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let cfg = wyrm::Config::load(Path::new(&cfg)).expect("the config");
        let server = wyrm::Server::start(cfg).await.expect("the server starts");
        let tcp = server.tcp.expect("a TCP listener");
        println!("{READY} {tcp}");
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        })
        .await;
        server.shutdown().await;
    });
}

/// The server, in a child process.
struct Server {
    child: Child,
    tcp: String,
    cfg: PathBuf,
    log: PathBuf,
    killed: Arc<AtomicBool>,
    stop_watch: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// The hostile plugin, built once per test process.
fn hostile_wasm() -> PathBuf {
    wyrm_tests::plugin("plugins/hostile", &[])
}

impl Server {
    /// Starts a server running the chatroom and the hostile plugin (whose
    /// `Imp` is every client's first entity), with `[limits]` and `[game]`
    /// lines added from `limits` and `game`.
    fn start(limits: &str, game: &str) -> Self {
        wyrm_tests::init_logs();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let cfg = dir.path().join("wyrm.toml");
        let log = dir.path().join("server.log");
        let text = format!(
            "[server]\nname = \"hostile\"\ndata_dir = {data:?}\ncache_dir = {cache:?}\n\n\
             [net]\ntcp = \"127.0.0.1:0\"\n\n\
             [game]\nboot_entity = \"Imp\"\nservices = [\"Lobby\"]\n{game}\n\n\
             [limits]\n{deadline}{limits}\n\n\
             [[plugin]]\nname = \"chatroom\"\nsource = {chat:?}\n\n\
             [[plugin]]\nname = \"hostile\"\nsource = {hostile:?}\n",
            data = dir.path().join("data").display().to_string(),
            cache = wyrm_tests::repo_root()
                .join("target/wyrm-test-cache")
                .display()
                .to_string(),
            chat = wyrm_tests::chatroom_plugin().display().to_string(),
            hostile = hostile_wasm().display().to_string(),
            deadline = if limits.contains("call_deadline_ms") {
                ""
            } else {
                "call_deadline_ms = 200\n"
            },
        );
        std::fs::write(&cfg, text).expect("write the config");
        let exe = std::env::current_exe().expect("this test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "hostile_server_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &cfg)
            .env(
                "WYRM_LOG",
                std::env::var("WYRM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start the server");
        let out = child.stdout.take().expect("its stdout");
        let mut tcp = None;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // The test harness may print the test's name first, on the
            // same line.
            if let Some((_, addr)) = line.split_once(READY) {
                tcp = Some(addr.trim().to_owned());
                break;
            }
        }
        let Some(tcp) = tcp else {
            let _ = child.kill();
            panic!(
                "the server did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let killed = Arc::new(AtomicBool::new(false));
        let stop_watch = Arc::new(AtomicBool::new(false));
        // The watchdog: a server past the ceiling is killed, not waited for.
        let (pid, k, stop) = (child.id(), killed.clone(), stop_watch.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match status(pid, "VmRSS") {
                    Some(rss) if rss > RSS_CEILING => {
                        k.store(true, Ordering::Relaxed);
                        // SAFETY-free: a plain kill of our own child.
                        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                        return;
                    }
                    Some(_) => {}
                    None => return,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            child,
            tcp,
            cfg,
            log,
            killed,
            stop_watch,
            _dir: dir,
        }
    }

    /// A client, bound to an `Imp` of the hostile plugin.
    async fn imp(&self) -> Client {
        // Uncompressed: the limits under test count the bytes a plugin
        // queues, and a flood of one repeated frame would compress to
        // almost nothing.
        let mut c = Client::builder(Transport::Tcp)
            .compression(false)
            .connect(&self.tcp)
            .await
            .expect("connect");
        c.wait_player(WAIT).await.expect("an Imp");
        assert_eq!(c.player_view().map(|v| v.type_name.as_str()), Some("Imp"));
        c
    }

    /// A well-behaved client: handed on to the chatroom, registered and
    /// logged in as `name`, chatting in [`ROOM`].
    async fn bystander(&self, name: &str) -> Client {
        let mut c = self.imp().await;
        c.call_player("enter_chatroom", NO_ARGS)
            .await
            .expect("send");
        let deadline = Instant::now() + WAIT;
        while c.player_view().map(|v| v.type_name.as_str()) != Some("Account") {
            assert!(Instant::now() < deadline, "not handed to the chatroom");
            c.next_event_timeout(WAIT).await.expect("an event");
        }
        let pw = format!("{name}-secret");
        let (ok, msg) = chat::register(&mut c, name, &pw).await;
        assert!(ok, "register {name}: {msg}");
        let (ok, msg) = chat::login(&mut c, name, &pw).await;
        assert!(ok, "login {name}: {msg}");
        join(&mut c, ROOM).await;
        c
    }

    /// A field of the server's `/proc/<pid>/status`, in KiB.
    fn kib(&self, field: &str) -> u64 {
        assert!(
            !self.killed.load(Ordering::Relaxed),
            "the server passed {} MiB and was killed",
            RSS_CEILING >> 10
        );
        status(self.child.id(), field)
            .unwrap_or_else(|| panic!("the server is gone; its log:\n{}", self.log()))
    }

    /// Starts measuring the server's peak resident size from now.
    fn reset_peak(&self) -> u64 {
        // Writing 5 to clear_refs resets VmHWM to the current RSS.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
        self.kib("VmRSS")
    }

    /// How far the server's resident size rose since `before` (KiB, from
    /// [`reset_peak`](Self::reset_peak)), at its peak; and it is still
    /// alive.
    fn peak_rise_mib(&self, before: u64) -> u64 {
        self.kib("VmHWM").saturating_sub(before) >> 10
    }

    /// The server's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's log contains `text`.
    async fn wait_log(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT * 3;
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Swaps the hostile plugin for the same code, as `wyrm swap` does.
    async fn swap_hostile(&self) -> wyrm::SwapReport {
        let cfg = wyrm::Config::load(&self.cfg).expect("the config");
        let info = wyrm::admin::read_info(&cfg).expect("the admin endpoint");
        let bytes = std::fs::read(hostile_wasm()).expect("the plugin");
        wyrm::admin::request_swap(&info, "hostile", &bytes, false)
            .await
            .expect("a swap report")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the server's log, last lines ---");
            for l in tail.iter().rev() {
                eprintln!("{}", l.chars().take(400).collect::<String>());
            }
        }
        self.stop_watch.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How a hostile call ended.
#[derive(Debug)]
enum Outcome {
    /// The plugin answered with `reply`: its arguments.
    Reply(Value),
    /// The call failed.
    Failed(ErrorCode, String),
    /// The server dropped the connection.
    Closed,
}

impl Outcome {
    fn failed(&self) -> (ErrorCode, &str) {
        match self {
            Outcome::Failed(code, msg) => (*code, msg),
            other => panic!("expected the call to fail, got {other:?}"),
        }
    }

    fn reply<T: serde::de::DeserializeOwned>(&self) -> T {
        match self {
            Outcome::Reply(v) => wyrm_client::from_value(v).expect("the reply's arguments"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// Calls `method` on the client's own entity and waits for the answer
/// `reply`, or for the call's error, skipping everything else.
async fn act<A: serde::Serialize>(c: &mut Client, method: &str, args: A, reply: &str) -> Outcome {
    let req = c.call_player(method, args).await.expect("send");
    let deadline = Instant::now() + WAIT * 3;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(Event::Call {
                method: m, args, ..
            })) if m == reply => return Outcome::Reply(args),
            Ok(Some(Event::Error {
                req_id,
                code,
                message,
                ..
            })) if req_id == req || req_id == 0 => return Outcome::Failed(code, message),
            Ok(Some(Event::Closed)) | Err(_) => return Outcome::Closed,
            Ok(Some(_)) => {}
            Ok(None) => panic!("no answer to {method} within {:?}", WAIT * 3),
        }
    }
}

/// Says `text` and waits until it comes back: how long the chatroom took.
async fn chat_round_trip(c: &mut Client, text: &str) -> Duration {
    let started = Instant::now();
    say(c, text).await;
    loop {
        let (_, room, got) = next_chat(c).await;
        if got == text {
            assert_eq!(room, ROOM);
            return started.elapsed();
        }
    }
}

/// The bystander chats `n` lines; the slowest round trip.
async fn keeps_chatting(c: &mut Client, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..n {
        worst = worst.max(chat_round_trip(c, &format!("still here {i}")).await);
    }
    worst
}

/// The hostile plugin still serves its own client.
async fn hostile_serves(c: &mut Client) {
    let answer = act(c, "ping", NO_ARGS, "on_pong").await;
    assert!(matches!(answer, Outcome::Reply(_)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_past_the_cap_fails_alone() {
    let server = Server::start("memory_mb = 64", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();

    let ok = act(&mut imp, "hog", (40,), "on_hogged").await;
    assert!(matches!(ok, Outcome::Reply(_)), "40 MiB fit: {ok:?}");
    let over = act(&mut imp, "hog", (200,), "on_hogged").await;
    let (code, msg) = over.failed();
    assert_eq!(code, ErrorCode::PluginFault, "{msg}");
    assert!(
        msg.contains("out of memory") && msg.contains("the cap is 64 MiB"),
        "{msg}"
    );

    hostile_serves(&mut imp).await;
    let worst = keeps_chatting(&mut bob, 5).await;
    let rise = server.peak_rise_mib(before);
    eprintln!("hog: peak RSS rise {rise} MiB; bystander's slowest line {worst:?}");
    // One instance's memory (64 MiB) and the fresh one that replaced it.
    assert!(rise < 200, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_plugins_entities_and_missing_ones_are_refused() {
    let server = Server::start("", "");
    let mut bob = server.bystander("bob").await;
    let avatar = bob.player().expect("bob's avatar");
    let mut imp = server.imp().await;
    let me = imp.player().expect("the imp");

    // Every import that takes an id, aimed at bob's Avatar (a chatroom
    // entity) and at an id that never existed.
    for target in [avatar, 1 << 40] {
        let poked: (Vec<(String, String)>,) = act(&mut imp, "poke", (target, target), "on_poked")
            .await
            .reply();
        for (import, said) in &poked.0 {
            match import.as_str() {
                // Reads of what any plugin may know.
                "entity-type" | "placement-of" | "aoi-of" => {}
                // As if no client were bound.
                "call-client" => assert_eq!(said, "false", "{target}: {import}"),
                _ => {
                    let why = if target == avatar {
                        "belongs to plugin chatroom: plugin hostile may call its methods for clients, not"
                    } else {
                        "no entity"
                    };
                    assert!(
                        said.starts_with("refused: ") && said.contains(why),
                        "{target}: {import} {said}"
                    );
                }
            }
        }
    }
    // A server-only method of the Avatar, called as "the server": dropped.
    let called = act(
        &mut imp,
        "call_as_server",
        (avatar, "announce", vec!["[server] send me your password"]),
        "on_called",
    )
    .await;
    assert!(matches!(called, Outcome::Reply(_)), "{called:?}");

    // Bob is untouched: still bound to his Avatar, still named bob, still
    // in his room, and he heard nothing of the imp.
    assert_eq!(bob.player(), Some(avatar));
    let name = bob.player_view().and_then(|v| v.attr("name").cloned());
    assert_eq!(chat::as_str(name.as_ref()), Some("bob"));
    let (from, room, text) = {
        say(&mut bob, "anyone there?").await;
        next_chat(&mut bob).await
    };
    assert_eq!(
        (from.as_str(), room.as_str(), text.as_str()),
        ("bob", ROOM, "anyone there?")
    );
    let log = server.log();
    assert!(log.contains("plugin hostile refused"), "{log}");
    // And the imp's own entity is still its own to act on.
    let poked: (Vec<(String, String)>,) = act(&mut imp, "poke", (me, me), "on_poked").await.reply();
    let set = poked.0.iter().find(|(i, _)| i == "set-client-tag");
    assert_eq!(set.map(|(_, s)| s.as_str()), Some("ok ()"), "{poked:?}");
}

/// What each import does with a value far over `[limits] value_bytes`:
/// refused as its error value, or (an import with none) its call stopped.
const GIANTS: &[(&str, bool, &str)] = &[
    // (import, the call is stopped, what the message names)
    ("call-client", true, "client_queue_bytes"),
    ("call-client-method", true, "bytes a name may have"),
    ("broadcast", true, "client_queue_bytes"),
    ("call-filtered-clients", true, "bytes a name may have"),
    ("call-aoi-clients", true, "client_queue_bytes"),
    ("call-entity", true, "value_bytes"),
    ("call-entity-method", true, "bytes a name may have"),
    ("hash-password", true, "bytes a name may have"),
    ("verify-password", true, "bytes a name may have"),
    ("password-context", true, "value_bytes"),
    ("kv-put", true, "value_bytes"),
    ("kv-key", true, "bytes a name may have"),
    ("reply-method", true, "bytes a name may have"),
    ("attr-set", false, "value_bytes"),
    ("attr-append", false, "value_bytes"),
    ("attr-path", false, "bytes a name may have"),
    ("create-entity", false, "value_bytes"),
    ("create-entity-type", false, "bytes a name may have"),
    ("create-space-kind", false, "bytes a name may have"),
    ("set-timer", false, "value_bytes"),
    ("set-timer-method", false, "bytes a name may have"),
    ("set-client-tag", false, "bytes a name may have"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigantic_values_through_every_import_are_refused() {
    let server = Server::start("memory_mb = 64", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();
    for &(import, stopped, limit) in GIANTS {
        let outcome = act(&mut imp, "giant", (import, 8), "on_giant").await;
        if stopped {
            let (code, msg) = outcome.failed();
            assert_eq!(code, ErrorCode::PluginFault, "{import}: {msg}");
            assert!(msg.contains(limit), "{import}: {msg}");
        } else {
            let (name, said): (String, String) = outcome.reply();
            assert_eq!(name, import);
            assert!(
                said.starts_with("refused: ") && said.contains(limit),
                "{import}: {said}"
            );
        }
    }
    // A log line is cut, and a stat dropped: neither fails the call.
    for (import, said) in [("log", "logged"), ("emit-stat", "sent")] {
        let (_, got): (String, String) = act(&mut imp, "giant", (import, 8), "on_giant")
            .await
            .reply();
        assert_eq!(got, said);
    }
    server.wait_log("(cut: 8388608 bytes").await;
    server
        .wait_log("emit-stat: the fields is 8388613 bytes")
        .await;

    // Lists whose every item points at one 16 MiB string: the host would
    // copy 16 MiB per item; wasmtime stops the copy (hostcall fuel).
    for import in ["call-filtered-clients", "attr-path"] {
        let outcome = act(&mut imp, "alias", (import, 100_000, 16), "on_alias").await;
        let (code, msg) = outcome.failed();
        assert_eq!(code, ErrorCode::PluginFault, "{import}: {msg}");
        assert!(msg.contains("too much data"), "{import}: {msg}");
    }

    hostile_serves(&mut imp).await;
    let worst = keeps_chatting(&mut bob, 5).await;
    let rise = server.peak_rise_mib(before);
    eprintln!("giants: peak RSS rise {rise} MiB; bystander's slowest line {worst:?}");
    // A 64 MiB instance, its replacement, and one transfer of at most
    // twice its memory (hostcall fuel) at a time.
    assert!(rise < 400, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_calling_each_other_forever_do_not_starve_anyone() {
    let server = Server::start("", "");
    let mut bob = server.bystander("bob").await;
    let calm = keeps_chatting(&mut bob, 5).await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();

    for act_name in ["cycle", "self_loop", "cycle", "self_loop"] {
        let started = act(&mut imp, act_name, NO_ARGS, "on_cycling").await;
        assert!(matches!(started, Outcome::Reply(_)), "{started:?}");
    }
    // Four loops that never end, each call as cheap as it gets.
    let busy = keeps_chatting(&mut bob, 20).await;
    hostile_serves(&mut imp).await;
    // And two whose every call takes 150 ms of the game thread (under the
    // 200 ms deadline): the chatroom still gets its share.
    for _ in 0..2 {
        let started = act(&mut imp, "slow_cycle", (150,), "on_cycling").await;
        assert!(matches!(started, Outcome::Reply(_)), "{started:?}");
    }
    let slow = keeps_chatting(&mut bob, 10).await;
    let rise = server.peak_rise_mib(before);
    eprintln!(
        "cycles: bystander's slowest line {calm:?} before, {busy:?} beside 4 endless loops, \
         {slow:?} beside 2 loops of 150 ms calls; peak RSS rise {rise} MiB"
    );
    // A line waits for at most a few of the hostile calls in progress.
    assert!(slow < Duration::from_secs(2), "{slow:?}");
    assert!(busy < Duration::from_secs(1), "{busy:?}");
    assert!(rise < 100, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_doubles_every_call_is_capped() {
    let server = Server::start("", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();
    let started = act(&mut imp, "fan_out", NO_ARGS, "on_cycling").await;
    assert!(matches!(started, Outcome::Reply(_)), "{started:?}");
    // The queue fills to the plugin's [limits] queued_bytes, and the call
    // that would pass it stops.
    server
        .wait_log("would pass [limits] queued_bytes = 67108864")
        .await;
    let worst = keeps_chatting(&mut bob, 20).await;
    let rise = server.peak_rise_mib(before);
    eprintln!("fan-out: bystander's slowest line {worst:?}; peak RSS rise {rise} MiB");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // 64 MiB of queued calls, as the host holds them.
    assert!(rise < 300, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enormous_exported_state_is_refused_by_checkpoints_and_swaps() {
    // A generous deadline: copying tens of MiB out of a guest is slow in
    // an unoptimised test build, and the deadline is not what this tests.
    let server = Server::start(
        "memory_mb = 32\ncall_deadline_ms = 2000",
        "checkpoint_interval_ms = 200",
    );
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let spawned = act(&mut imp, "spawn", (3000,), "on_spawned").await;
    assert!(matches!(spawned, Outcome::Reply(_)), "{spawned:?}");
    let mode = act(&mut imp, "export_mode", ("enormous", 12), "on_mode").await;
    assert!(matches!(mode, Outcome::Reply(_)), "{mode:?}");
    let before = server.reset_peak();
    // Each export call answers 12 MiB: a checkpoint of them would pass
    // twice the 32 MiB memory cap, and is dropped.
    server
        .wait_log("checkpoint refused: the plugin's private state passed 67108864 bytes")
        .await;
    let report = server.swap_hostile().await;
    let wyrm::SwapOutcome::Refused { reason } = &report.outcome else {
        panic!("the swap went through: {report}");
    };
    assert!(
        reason.contains("private state passed 67108864 bytes"),
        "{reason}"
    );
    hostile_serves(&mut imp).await;
    let worst = keeps_chatting(&mut bob, 5).await;
    let rise = server.peak_rise_mib(before);
    eprintln!("enormous state: peak RSS rise {rise} MiB; bystander's slowest line {worst:?}");
    // At most twice the memory cap (64 MiB) kept, one export in flight,
    // the instances' own memory.
    assert!(rise < 300, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exported_state_is_refused_and_the_plugin_serves_on() {
    let server = Server::start("", "checkpoint_interval_ms = 0");
    let mut bob = server.bystander("bob").await;
    let avatar = bob.player().expect("bob's avatar");
    let mut imp = server.imp().await;
    let spawned = act(&mut imp, "spawn", (10,), "on_spawned").await;
    assert!(matches!(spawned, Outcome::Reply(_)), "{spawned:?}");
    let cases: &[(&str, u64, &str)] = &[
        (
            "foreign",
            avatar,
            &format!("a state for entity {avatar}, which it was not asked for"),
        ),
        ("duplicate", 0, "more than once"),
        ("wrong-type", 0, "which is a"),
        ("garbage", 0, "the new version refused the state"),
        ("refuse", 0, "this plugin will not export its state"),
        ("trap", 0, "export-entities panics on purpose"),
    ];
    for &(mode, arg, why) in cases {
        let set = act(&mut imp, "export_mode", (mode, arg), "on_mode").await;
        assert!(matches!(set, Outcome::Reply(_)), "{mode}: {set:?}");
        let report = server.swap_hostile().await;
        let wyrm::SwapOutcome::Refused { reason } = &report.outcome else {
            panic!("{mode}: the swap went through: {report}");
        };
        assert!(reason.contains(why), "{mode}: {reason}");
        // The running version serves on (after "trap", a fresh instance
        // of it, which exports normally again).
        hostile_serves(&mut imp).await;
        chat_round_trip(&mut bob, mode).await;
    }
    // Normal again: the same swap goes through.
    let set = act(&mut imp, "export_mode", ("normal", 0), "on_mode").await;
    assert!(matches!(set, Outcome::Reply(_)), "{set:?}");
    let report = server.swap_hostile().await;
    assert!(report.succeeded(), "{report}");
    hostile_serves(&mut imp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_timers_are_capped_and_do_not_pile_up() {
    // A generous deadline: an unoptimised test build arms a timer in tens
    // of microseconds, and the deadline is not what this tests.
    let server = Server::start("call_deadline_ms = 2000", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();
    // As many 1 ms repeating timers as the plugin may have, twenty
    // thousand a call. (Each call waits behind the calls of the timers
    // armed before it: the plugin's work, in its lane. Bob pings
    // meanwhile, or he would be dropped as idle.)
    let mut armed = 0;
    let mut refusal = None;
    for _ in 0..20 {
        let (n, refused): (u32, Option<String>) =
            act(&mut imp, "timers", (20_000, 1, true, 0), "on_timers")
                .await
                .reply();
        bob.round_trip(WAIT).await.expect("bob is still connected");
        armed += n;
        if refused.is_some() {
            refusal = refused;
            break;
        }
    }
    let refusal = refusal.expect("a refusal");
    assert!(
        refusal.contains("[limits] timer_bytes = 16777216"),
        "{refusal}"
    );
    assert!((100_000..150_000).contains(&armed), "{armed} armed");
    // They fire, and the chatroom still gets its share.
    let worst = keeps_chatting(&mut bob, 20).await;
    let (tocks,): (u64,) = act(&mut imp, "tocks", NO_ARGS, "on_tocks").await.reply();
    assert!(tocks > 0);
    // Large arguments reach the same limit sooner.
    let (big, _): (u32, Option<String>) = act(
        &mut imp,
        "timers",
        (100, 60_000, false, 512 * 1024),
        "on_timers",
    )
    .await
    .reply();
    assert_eq!(big, 0, "the plugin's timer bytes are spent");
    let rise = server.peak_rise_mib(before);
    eprintln!(
        "timers: {armed} armed, {tocks} calls so far; bystander's slowest line {worst:?}; \
         peak RSS rise {rise} MiB"
    );
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert!(rise < 200, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_creates_entities_without_end_stops_at_its_limit() {
    let server = Server::start("entities = 2000", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let (n,): (u32,) = act(&mut imp, "spawn", (1500,), "on_spawned").await.reply();
    assert_eq!(n, 1500);
    // Past the limit the import fails, and the call with it.
    let over = act(&mut imp, "spawn", (1500,), "on_spawned").await;
    let (_, msg) = over.failed();
    assert!(
        msg.contains("plugin hostile has 2000 entities alive, the most [limits] entities allows"),
        "{msg}"
    );
    // The chatroom's entities count against the chatroom: it serves on,
    // and so does the plugin, within its limit.
    keeps_chatting(&mut bob, 3).await;
    hostile_serves(&mut imp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_clients_hurts_only_the_flooder() {
    // A small queue and a generous deadline: an unoptimised test build
    // copies frames out of a guest at some 50 MB/s, and the deadline is
    // not what this tests.
    let server = Server::start("queued_bytes = 4194304\ncall_deadline_ms = 2000", "");
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();

    // A broadcast reaches only the hostile plugin's own clients.
    let done = act(&mut imp, "broadcast_flood", (1000, 100), "on_flooded").await;
    assert!(matches!(done, Outcome::Reply(_)), "{done:?}");
    // Millions of frames in one call: stopped at [limits] queued_bytes,
    // or the flooded client dropped first as too slow.
    let flood = act(&mut imp, "flood", (10_000_000, 10_000), "on_flooded").await;
    match &flood {
        Outcome::Failed(code, msg) => {
            assert_eq!(*code, ErrorCode::PluginFault, "{msg}");
            assert!(msg.contains("queued_bytes"), "{msg}");
        }
        Outcome::Closed => {}
        Outcome::Reply(_) => panic!("ten million frames went out in one call"),
    }
    // A steady flood from a timer, to a second imp that stops reading:
    // its queue fills and it is dropped, alone.
    let mut imp2 = server.imp().await;
    let steady = act(&mut imp2, "flood_steadily", (1, 20, 60_000), "on_flooding").await;
    assert!(matches!(steady, Outcome::Reply(_)), "{steady:?}");
    let slow = |log: &str| log.matches("reads too slowly").count();
    let dropped = slow(&server.log());
    let deadline = Instant::now() + WAIT;
    while slow(&server.log()) == dropped {
        assert!(
            Instant::now() < deadline,
            "the flooded imp was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    imp2.expect_closed(WAIT).await.expect("dropped as too slow");

    let worst = keeps_chatting(&mut bob, 20).await;
    let rise = server.peak_rise_mib(before);
    eprintln!("floods: bystander's slowest line {worst:?}; peak RSS rise {rise} MiB");
    // Bob heard none of it.
    for _ in 0..3 {
        if let Ok(Some(e)) = bob.next_event_timeout(Duration::from_millis(100)).await {
            assert!(
                !matches!(&e, Event::Call { method, .. } if method == "on_flood"),
                "{e:?}"
            );
        }
    }
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert!(rise < 300, "the server grew by {rise} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_spam_and_storage_storms_are_bounded() {
    // A small queue, so that the storm meets it within the deadline even
    // in an unoptimised test build (which copies values out of a guest at
    // some 50 MB/s).
    let server = Server::start(
        "value_bytes = 262144\nqueued_bytes = 1048576\ncall_deadline_ms = 1000",
        "",
    );
    let mut bob = server.bystander("bob").await;
    let mut imp = server.imp().await;
    let before = server.reset_peak();

    for _ in 0..4 {
        let spam = act(&mut imp, "spam_log", (5_000, 1_000), "on_spammed").await;
        assert!(matches!(spam, Outcome::Reply(_)), "{spam:?}");
    }
    hostile_serves(&mut imp).await;
    // The next line the plugin may write (once the rate lets one through)
    // says how many were dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spam = act(&mut imp, "spam_log", (1, 10), "on_spammed").await;
    assert!(matches!(spam, Outcome::Reply(_)), "{spam:?}");
    let log = server.wait_log("log lines of plugin hostile dropped").await;
    let lines = log.lines().filter(|l| l.contains("hostile")).count();
    assert!(lines < 3000, "{lines} lines about the plugin in the log");

    // 128 KiB key-value writes by the hundred thousand, each asking for a
    // reply (which holds its bytes until it has run, after this call).
    let storm = act(&mut imp, "storm", (100_000, 128), "on_stored").await;
    let (code, msg) = storm.failed();
    assert_eq!(code, ErrorCode::PluginFault, "{msg}");
    assert!(
        msg.contains("kv-put") && msg.contains("queued_bytes"),
        "{msg}"
    );

    hostile_serves(&mut imp).await;
    let worst = keeps_chatting(&mut bob, 5).await;
    let rise = server.peak_rise_mib(before);
    eprintln!(
        "log spam and storage storm: {lines} log lines; bystander's slowest line {worst:?}; \
         peak RSS rise {rise} MiB"
    );
    assert!(rise < 300, "the server grew by {rise} MiB");
}
