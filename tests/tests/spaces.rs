//! Spaces, areas of interest and position sync through a real server and
//! real clients, with the testbed's `Plane` (a space) and `Walker` (AOI
//! radius 100, hysteresis 10, moved by its client).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rmpv::Value;
use wyrm_client::{Client, Position, Resolution, Transport, NO_ARGS};
use wyrm_tests::{chat::expect, TestServer, WAIT};

const RADIUS: f32 = 100.0;
const HYSTERESIS: f32 = 10.0;

async fn server() -> TestServer {
    TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |_| {}).await
}

/// A new plane, made through a throwaway client.
async fn plane(server: &TestServer) -> u64 {
    let mut c = server.connect(Transport::Tcp).await;
    c.call_player("make_plane", NO_ARGS).await.expect("send");
    let (plane,): (u64,) = expect(&mut c, "plane").await;
    c.close().await;
    plane
}

/// A client whose walker stands in `plane` at `(x, y)`; returns it with the
/// walker's id.
async fn walker(server: &TestServer, t: Transport, plane: u64, x: f32, y: f32) -> (Client, u64) {
    let mut c = server.connect(t).await;
    let probe = c.player().expect("own probe");
    c.call_player("walk_in", (plane, x, y)).await.expect("send");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(id) = c.player().filter(|&id| id != probe) {
            return (c, id);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(_)) => {}
            other => panic!("no walker arrived: {other:?}"),
        }
    }
}

/// Returns once every frame the server sent `c` up to at least one space
/// tick after its earlier calls and moves has arrived: `sync` answers
/// through a timer longer than a tick.
async fn sync(c: &mut Client) {
    sync_all(std::slice::from_mut(c)).await;
}

/// [`sync`] for several clients at once.
async fn sync_all(clients: &mut [Client]) {
    for c in clients.iter_mut() {
        c.call_player("sync", (120u32,)).await.expect("send");
    }
    for c in clients.iter_mut() {
        let _: Value = expect(c, "synced").await;
    }
}

/// Syncs two clients twice over: the first round proves what each did was
/// applied, the second that what followed reached both.
async fn settle(a: &mut Client, b: &mut Client) {
    for _ in 0..2 {
        sync(a).await;
        sync(b).await;
    }
}

/// The walkers (other than its own) a client has been told it sees.
fn view(c: &Client) -> BTreeSet<u64> {
    c.entities()
        .filter(|e| !e.own && e.type_name == "Walker")
        .map(|e| e.id)
        .collect()
}

fn d2(a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (a.0 - b.0, a.1 - b.1);
    dx * dx + dy * dy
}

/// The AOI rule applied by brute force: pair states with hysteresis.
#[derive(Default)]
struct Oracle {
    pos: HashMap<u64, (f32, f32)>,
    sees: BTreeSet<(u64, u64)>,
}

impl Oracle {
    fn place(&mut self, id: u64, p: (f32, f32)) {
        self.pos.insert(id, p);
        let ids: Vec<u64> = self.pos.keys().copied().collect();
        for &other in ids.iter().filter(|&&o| o != id) {
            for (w, t) in [(id, other), (other, id)] {
                let d = d2(self.pos[&w], self.pos[&t]);
                if d <= RADIUS * RADIUS {
                    self.sees.insert((w, t));
                } else if d > (RADIUS + HYSTERESIS) * (RADIUS + HYSTERESIS) {
                    self.sees.remove(&(w, t));
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        self.pos.remove(&id);
        self.sees.retain(|&(w, t)| w != id && t != id);
    }

    fn seen_by(&self, id: u64) -> BTreeSet<u64> {
        self.sees
            .iter()
            .filter(|(w, _)| *w == id)
            .map(|&(_, t)| t)
            .collect()
    }
}

/// A tiny deterministic random source, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn coord(&mut self, max: f32) -> f32 {
        (self.next() % 10_000) as f32 / 10_000.0 * max
    }
}

/// Random walks over real sockets: after every move, each client has been
/// told to create exactly the walkers its walker sees (by a brute-force
/// oracle, hysteresis included) and destroy the rest, and every position it
/// holds is the walker's real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_exactly_their_area_of_interest_as_walkers_move() {
    let server = server().await;
    let plane = plane(&server).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut oracle = Oracle::default();
    let (mut clients, mut ids) = (Vec::new(), Vec::new());
    let transports = [Transport::Tcp, Transport::WebSocket, Transport::Tcp];
    for t in transports.into_iter().cycle().take(6) {
        let at = (rng.coord(300.0), rng.coord(300.0));
        let (c, id) = walker(&server, t, plane, at.0, at.1).await;
        oracle.place(id, at);
        clients.push(c);
        ids.push(id);
    }
    for step in 0..80 {
        let i = (rng.next() % ids.len() as u64) as usize;
        let id = ids[i];
        let (x, y) = oracle.pos[&id];
        // Mostly short steps that cross the border and the hysteresis band,
        // sometimes a jump across the field.
        let to = if step % 7 == 0 {
            (rng.coord(300.0), rng.coord(300.0))
        } else {
            let dx = rng.coord(60.0) - 30.0;
            let dy = rng.coord(60.0) - 30.0;
            ((x + dx).clamp(0.0, 300.0), (y + dy).clamp(0.0, 300.0))
        };
        clients[i]
            .send_move(
                Position {
                    x: to.0,
                    y: to.1,
                    z: 0.0,
                },
                0.5,
            )
            .await
            .expect("move");
        oracle.place(id, to);
        // The mover's sync proves its move was applied (one connection is
        // handled in order); then everyone's sync, whose timer starts after
        // that, proves what followed (views, a tick of positions) arrived.
        sync(&mut clients[i]).await;
        sync_all(&mut clients).await;
        for (c, &id) in clients.iter().zip(&ids) {
            assert_eq!(
                view(c),
                oracle.seen_by(id),
                "step {step}: what walker {id} is shown, after {} moved to {to:?}",
                ids[i]
            );
            for e in c.entities().filter(|e| e.type_name == "Walker") {
                let p = c.position_of(e.id).unwrap_or_else(|| {
                    panic!(
                        "step {step}: walker {id}'s client has no position for {}",
                        e.id
                    )
                });
                // Sent on the default grid of 1/32.
                let (x, y) = oracle.pos[&e.id];
                let grid = Resolution::default();
                let on_grid = |v: f32| grid.value(grid.quantize(v));
                assert_eq!(
                    (p.pos.x, p.pos.y),
                    (on_grid(x), on_grid(y)),
                    "step {step}: position of {} as walker {id}'s client holds it",
                    e.id
                );
            }
        }
    }

    // Walkers ask the host what they see: the same sets.
    for (c, &id) in clients.iter_mut().zip(&ids) {
        c.call_player("seen", NO_ARGS).await.expect("send");
        let (seen,): (Vec<u64>,) = expect(c, "seen").await;
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            oracle.seen_by(id)
        );
    }

    // One leaves: everyone who saw it is told to destroy it.
    let mut gone = clients.remove(0);
    let gone_id = ids.remove(0);
    gone.close().await;
    oracle.remove(gone_id);
    sync_all(&mut clients).await;
    sync_all(&mut clients).await;
    for (c, &id) in clients.iter().zip(&ids) {
        assert!(!view(c).contains(&gone_id));
        assert_eq!(view(c), oracle.seen_by(id));
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_calls_and_events_reach_those_who_see() {
    let server = server().await;
    let plane = plane(&server).await;
    let (mut a, a_id) = walker(&server, Transport::Tcp, plane, 0.0, 0.0).await;
    let (mut b, b_id) = walker(&server, Transport::WebSocket, plane, 50.0, 0.0).await;
    let (mut far, far_id) = walker(&server, Transport::Tcp, plane, 1000.0, 1000.0).await;
    for c in [&mut a, &mut b, &mut far] {
        sync(c).await;
    }
    assert_eq!(view(&a), BTreeSet::from([b_id]));
    assert_eq!(view(&far), BTreeSet::new());
    // Each client also sees the space it is in, with its all-clients
    // attributes.
    let space = a.entity(plane).expect("the plane is in view");
    assert_eq!(space.attr("name"), Some(&Value::from("plane")));

    // All-clients attributes reach whoever sees the entity; own-client ones
    // only the owner.
    b.call_player("set_mood", ("happy",)).await.expect("send");
    b.call_player("set_secret", ("xyzzy",)).await.expect("send");
    b.call_player("shout", ("hello",)).await.expect("send");
    let (from, (text,)): (u64, (String,)) = a.expect_call_as("heard", WAIT).await.expect("heard");
    assert_eq!((from, text.as_str()), (b_id, "hello"));
    let _: (u64, (String,)) = b
        .expect_call_as("heard", WAIT)
        .await
        .expect("own client hears");
    for c in [&mut a, &mut b, &mut far] {
        sync(c).await;
    }
    let b_as_a_sees = a.entity(b_id).expect("b in a's view");
    assert_eq!(b_as_a_sees.attr("mood"), Some(&Value::from("happy")));
    assert_eq!(
        b_as_a_sees.attr("secret"),
        None,
        "own-client attribute leaked"
    );
    assert_eq!(
        b.player_view().and_then(|v| v.attr("secret")),
        Some(&Value::from("xyzzy"))
    );
    while let Some(e) = far
        .next_event_timeout(Duration::from_millis(50))
        .await
        .expect("read")
    {
        assert!(
            !matches!(&e, wyrm_client::Event::Call { method, .. } if method == "heard"),
            "a client that does not see the shouter heard it"
        );
        assert!(
            !matches!(&e, wyrm_client::Event::Attr { entity, .. } if *entity == b_id),
            "a client that does not see b got its attribute"
        );
    }

    // Logic got AOI events: a saw b enter; later leave.
    let log = |c: &Client| c.player_view().and_then(|v| v.attr("log")).cloned();
    let enter_b = Value::Array(vec!["enter".into(), b_id.into()]);
    assert!(
        matches!(log(&a), Some(Value::Array(l)) if l.contains(&enter_b)),
        "{:?}",
        log(&a)
    );
    // A server-side move out of range: a is told to destroy b, the logic of
    // both gets leave events.
    b.call_player("goto", (500.0f32, 0.0f32))
        .await
        .expect("send");
    settle(&mut a, &mut b).await;
    assert_eq!(view(&a), BTreeSet::new());
    let leave_b = Value::Array(vec!["leave".into(), b_id.into()]);
    assert!(
        matches!(log(&a), Some(Value::Array(l)) if l.contains(&leave_b)),
        "{:?}",
        log(&a)
    );
    b.call_player("where_am_i", NO_ARGS).await.expect("send");
    let (x, y): (f32, f32) = expect(&mut b, "at").await;
    assert_eq!((x, y), (500.0, 0.0));

    // A frozen walker's client cannot move it.
    far.call_player("freeze", (true,)).await.expect("send");
    sync(&mut far).await;
    far.send_move(
        Position {
            x: 10.0,
            y: 10.0,
            z: 0.0,
        },
        0.0,
    )
    .await
    .expect("move");
    far.call_player("where_am_i", NO_ARGS).await.expect("send");
    let (x, y): (f32, f32) = expect(&mut far, "at").await;
    assert_eq!((x, y), (1000.0, 1000.0), "a refused move moved the walker");
    assert_eq!(view(&a), BTreeSet::new());
    let _ = far_id;

    // Leaving the space: the client forgets the space and what it saw.
    b.call_player("goto", (20.0f32, 0.0f32))
        .await
        .expect("send");
    settle(&mut a, &mut b).await;
    assert_eq!(view(&b), BTreeSet::from([a_id]));
    b.call_player("leave", NO_ARGS).await.expect("send");
    settle(&mut a, &mut b).await;
    assert_eq!(view(&b), BTreeSet::new());
    assert!(
        b.entity(plane).is_none(),
        "the space stays in view after leaving it"
    );
    assert_eq!(view(&a), BTreeSet::new());

    // The space ticks at about 20 Hz with the elapsed time.
    a.call_player("plane_ticks", NO_ARGS).await.expect("send");
    let (t1, e1): (u64, u64) = expect(&mut a, "plane_ticks").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.call_player("plane_ticks", NO_ARGS).await.expect("send");
    let (t2, e2): (u64, u64) = expect(&mut a, "plane_ticks").await;
    let (ticks, elapsed) = (t2 - t1, e2 - e1);
    assert!((12..=24).contains(&ticks), "{ticks} ticks in a second");
    assert!(
        (800..=1300).contains(&elapsed),
        "{elapsed} ms reported for {ticks} ticks"
    );
    server.server.shutdown().await;
}
