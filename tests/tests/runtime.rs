//! The plugin runtime through a real server and client, with the testbed
//! plugin: timers, attributes, private state, the memory cap, and what a
//! crash keeps.

use std::time::{Duration, Instant};

use rmpv::Value;
use wyrm_client::{Client, ErrorCode, Transport, NO_ARGS};
use wyrm_tests::{chat::expect, TestServer, WAIT};

async fn probe() -> (TestServer, Client) {
    let server = TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |_| {}).await;
    let client = server.connect(Transport::Tcp).await;
    (server, client)
}

async fn call(c: &mut Client, method: &str, args: impl serde::Serialize) -> u32 {
    c.call_player(method, args).await.expect("send")
}

async fn crash(c: &mut Client) {
    let req = call(c, "boom", NO_ARGS).await;
    let (id, code, msg) = c.expect_error(WAIT).await.expect("boom must fail");
    assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
    assert!(msg.contains("panicked: Probe.boom called at"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_pushed_and_survive_a_crash_while_private_state_restarts() {
    let (server, mut c) = probe().await;
    for n in 1..=3u64 {
        call(&mut c, "count", NO_ARGS).await;
        let (got,): (u64,) = expect(&mut c, "on_count").await;
        assert_eq!(got, n);
    }
    assert_eq!(
        c.player_view().and_then(|v| v.attr("hits")),
        Some(&Value::from(3)),
        "all-clients attribute pushed to the owner"
    );

    crash(&mut c).await;
    call(&mut c, "read_hits", NO_ARGS).await;
    let (hits,): (Option<u64>,) = expect(&mut c, "on_hits").await;
    assert_eq!(hits, Some(3), "host-owned attributes survive the crash");
    // Private state starts fresh in the new instance (checkpoints that
    // restore it come with hot swap).
    call(&mut c, "count", NO_ARGS).await;
    let (got,): (u64,) = expect(&mut c, "on_count").await;
    assert_eq!(got, 1);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_armed_before_a_crash_fires_into_the_fresh_instance() {
    let (server, mut c) = probe().await;
    let armed = Instant::now();
    call(&mut c, "arm", (400u32, "tick")).await;
    crash(&mut c).await;
    let _: Value = expect(&mut c, "on_tick").await;
    let waited = armed.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "fired early, after {waited:?}"
    );
    // And timers keep working afterwards.
    call(&mut c, "arm", (10u32, "tick")).await;
    let _: Value = expect(&mut c, "on_tick").await;
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagepack_arguments_round_trip_unchanged() {
    let (server, mut c) = probe().await;
    let v = Value::Map(vec![
        (
            Value::from("list"),
            Value::Array(vec![Value::from(1), Value::from(-2), Value::Nil]),
        ),
        (Value::from("text"), Value::from("héllo")),
        (Value::from("float"), Value::F64(1.5)),
        (Value::from("big"), Value::from(u64::MAX)),
        (Value::from("bytes"), Value::Binary(vec![0, 255, 7])),
    ]);
    call(&mut c, "echo", (v.clone(),)).await;
    let (back,): (Value,) = expect(&mut c, "on_echo").await;
    assert_eq!(back, v);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_over_its_memory_cap_fails_alone() {
    let (server, mut c) = probe().await;
    let mut other = server.connect(Transport::WebSocket).await;
    // Well under the 64 MiB cap: fine.
    call(&mut c, "hog", (8u32,)).await;
    let (n,): (u64,) = expect(&mut c, "on_hogged").await;
    assert_eq!(n, 8);
    // Over it: the call fails, nothing else does.
    let req = call(&mut c, "hog", (256u32,)).await;
    let (id, code, msg) = c
        .expect_error(WAIT)
        .await
        .expect("an allocation over the cap must fail");
    assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
    call(&mut other, "count", NO_ARGS).await;
    let (got,): (u64,) = expect(&mut other, "on_count").await;
    assert_eq!(got, 1);
    call(&mut c, "hog", (1u32,)).await;
    let (n,): (u64,) = expect(&mut c, "on_hogged").await;
    assert_eq!(n, 1);
    server.server.shutdown().await;
}

/// Pins the calling thread to the first core it may run on; threads it
/// starts from now on inherit that.
fn pin_to_one_core() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t of our own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("a core to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(first, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

async fn burn(c: &mut Client, rounds: u64) -> Duration {
    let started = Instant::now();
    call(c, "burn", (rounds,)).await;
    let _: (u64,) = expect(c, "on_burn").await;
    started.elapsed()
}

/// The deadline stops guests that loop, not guests whose thread waited for
/// a core: a call needing less CPU time than the deadline completes however
/// long a starved core makes it take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_starved_core_runs_until_it_used_its_deadline() {
    const DEADLINE: Duration = Duration::from_millis(200);
    // The server's threads (the game's among them) share one core with
    // the spinners below.
    pin_to_one_core();
    let (server, mut c) = probe().await;

    // Rounds that take a third of the deadline on a core of their own.
    let mut rounds = 1_000_000u64;
    let mut took = burn(&mut c, rounds).await;
    for _ in 0..8 {
        let target = DEADLINE / 3;
        if took.abs_diff(target) < target / 5 {
            break;
        }
        rounds = (rounds as f64 * target.as_secs_f64() / took.as_secs_f64().max(1e-4)) as u64;
        took = burn(&mut c, rounds.max(1)).await;
    }
    assert!(took < DEADLINE / 2, "calibration failed: {took:?}");

    // Eight spinners on the same core: the game thread gets a ninth of it,
    // about three deadlines' time for a call calibrated at a third of one.
    // (Four were too few when the machine was busy while calibrating: the
    // rounds came out small and the starved call too quick to prove
    // anything.)
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let starved = burn(&mut c, rounds).await;
    let req = call(&mut c, "spin", NO_ARGS).await;
    let looped = c.expect_error(WAIT).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().ok();
    }
    assert!(
        starved > DEADLINE,
        "the core was not starved ({starved:?}, {took:?} alone): this test proves nothing"
    );
    // A looping call is still stopped, starved core or not.
    let (id, code, msg) = looped.expect("the looping call must fail");
    assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
    assert!(msg.contains("deadline"), "{msg}");
    server.server.shutdown().await;
}
