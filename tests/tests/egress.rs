//! The outbound path through a real server and real sockets: what one
//! client is sent keeps its order however it was sent and batched, on every
//! transport; a frame sent to many clients arrives whole at each; position
//! deltas leave every client holding exactly the server's places, rounded
//! to the grid; a client that stops reading is dropped alone; a client of
//! another protocol version is refused cleanly.

use std::collections::{BTreeMap, BTreeSet};

use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wyrm_client::{Client, Resolution, Transport, NO_ARGS};
use wyrm_protocol::{
    quantize_yaw, write_prefixed, yaw_value, ClientFrame, ErrorCode, FrameDecoder, ServerFrame,
};
use wyrm_tests::{expect, TestServer, WAIT};

const ALL: [Transport; 3] = [Transport::Tcp, Transport::WebSocket, Transport::Kcp];

async fn server() -> TestServer {
    TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |_| {}).await
}

/// Calls sent one at a time, as broadcasts and to the clients that see an
/// entity, in batches of three kinds, arrive in the order they were made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_to_one_client_keep_their_order_on_every_transport() {
    let server = server().await;
    for t in ALL {
        // Alone on the server: broadcasts reach only this client.
        let mut c = server.connect(t).await;
        // Several requests in a row: the game batches what they produce,
        // the gate writes a batch or a tick at a time.
        const EACH: u32 = 400;
        for _ in 0..3 {
            c.call_player("sequence", (EACH,)).await.expect("send");
        }
        let mut got = Vec::new();
        while got.len() < (3 * EACH) as usize {
            let (_, (i,)): (u64, (u32,)) = match c.expect_call_as("seq", WAIT).await {
                Ok(v) => v,
                Err(e) => panic!("{t:?}: after {} calls: {e}", got.len()),
            };
            got.push(i);
        }
        let expected: Vec<u32> = (0..3).flat_map(|_| 0..EACH).collect();
        assert!(got == expected, "{t:?}: calls out of order");
        c.close().await;
    }
}

/// One large frame for many (a broadcast, encoded once at the gate; a call
/// to everyone who sees an entity, encoded once by the game) arrives whole
/// at every client, over every transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_for_many_arrives_whole_at_each() {
    let server = server().await;
    let mut clients = Vec::new();
    for t in ALL.into_iter().cycle().take(24) {
        clients.push(server.connect(t).await);
    }
    const LEN: u32 = 150_000;
    clients[0]
        .call_player("blast", (LEN, 7u8))
        .await
        .expect("send");
    let pattern: Vec<u8> = (0..LEN).map(|i| (i as u8).wrapping_mul(31) ^ 7).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let (_, (bytes,)): (u64, (Value,)) = c.expect_call_as("blob", WAIT).await.expect("blob");
        match bytes {
            Value::Binary(b) => assert!(b == pattern, "client {i} got other bytes"),
            other => panic!("client {i}: not binary: {other}"),
        }
    }

    // Walkers in one plane, all in sight of the first: its shout goes to
    // all of them as one frame.
    let plane = {
        clients[0]
            .call_player("make_plane", NO_ARGS)
            .await
            .expect("send");
        let (plane,): (u64,) = expect(&mut clients[0], "plane").await;
        plane
    };
    let mut walkers = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let probe = c.player().expect("probe");
        let x = 50.0 + (i % 6) as f32 * 10.0;
        let y = 50.0 + (i / 6) as f32 * 10.0;
        c.call_player("walk_in", (plane, x, y)).await.expect("send");
        while c.player() == Some(probe) || c.player().is_none() {
            c.next_event_timeout(WAIT)
                .await
                .expect("event")
                .expect("walker");
        }
        walkers.push(c);
    }
    // Everyone sees everyone once a tick has worked out who sees whom.
    for c in &mut walkers {
        c.call_player("sync", (120u32,)).await.expect("send");
        let _: Value = expect(c, "synced").await;
    }
    let text: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    walkers[0]
        .call_player("shout", (text.clone(),))
        .await
        .expect("send");
    for (i, c) in walkers.iter_mut().enumerate() {
        let (_, (heard,)): (u64, (String,)) = c.expect_call_as("heard", WAIT).await.expect("heard");
        assert!(heard == text, "walker {i} heard other text");
    }
}

/// A churn of drifters moving, turning, rising, jumping across the field,
/// leaving and coming back at random, thousands of times, watched by
/// walkers: at every stop, each client holds for every drifter it sees
/// exactly the server's place, rounded to the space's grid, and holds none
/// it does not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_deltas_leave_each_client_with_the_servers_places() {
    let server = server().await;
    let mut maker = server.connect(Transport::Tcp).await;
    maker
        .call_player("make_churn", (90u32, 300.0f32, 0x9e37_79b9u64))
        .await
        .expect("send");
    let (churn,): (u64,) = expect(&mut maker, "churn").await;
    // Two watchers over two transports, with areas of interest (radius
    // 100) that drifters keep crossing.
    let mut watchers = Vec::new();
    for (t, x, y) in [
        (Transport::Tcp, 150.0f32, 150.0f32),
        (Transport::WebSocket, 60.0, 220.0),
    ] {
        let mut c = server.connect(t).await;
        let probe = c.player().expect("probe");
        c.call_player("walk_in", (churn, x, y)).await.expect("send");
        while c.player() == Some(probe) || c.player().is_none() {
            c.next_event_timeout(WAIT)
                .await
                .expect("event")
                .expect("walker");
        }
        watchers.push(c);
    }
    let grid = Resolution::default();
    let mut checked = 0;
    for round in 0..12 {
        maker.call(churn, "run", (true,)).await.expect("send");
        // About 20 ticks of churn.
        sync(&mut watchers[0], 1000).await;
        maker.call(churn, "run", (false,)).await.expect("send");
        // Two ticks more, so the last changes have been sent.
        for c in &mut watchers {
            sync(c, 120).await;
            sync(c, 120).await;
        }
        for (w, c) in watchers.iter_mut().enumerate() {
            let me = c.player().expect("walker");
            maker.call(churn, "report", (me,)).await.expect("send");
            let (all,): (Vec<Placement>,) = expect(c, "placements").await;
            let truth: BTreeMap<u64, (f32, f32, f32, f32)> = all
                .into_iter()
                .map(|(id, x, y, z, yaw)| (id, (x, y, z, yaw)))
                .collect();
            let shown: BTreeSet<u64> = c
                .entities()
                .filter(|e| e.type_name == "Drifter")
                .map(|e| e.id)
                .collect();
            for &id in &shown {
                let Some(&(x, y, z, yaw)) = truth.get(&id) else {
                    panic!("round {round}, watcher {w}: holds drifter {id}, which left the space");
                };
                let p = c
                    .position_of(id)
                    .unwrap_or_else(|| panic!("round {round}, watcher {w}: no place for {id}"));
                let on_grid = |v: f32| grid.value(grid.quantize(v));
                assert_eq!(
                    (p.pos.x, p.pos.y, p.pos.z, p.yaw),
                    (
                        on_grid(x),
                        on_grid(y),
                        on_grid(z),
                        yaw_value(quantize_yaw(yaw))
                    ),
                    "round {round}, watcher {w}: the place of drifter {id}"
                );
                checked += 1;
            }
            // Places only for what it was told to create.
            for id in truth.keys().filter(|id| !shown.contains(id)) {
                assert!(
                    c.position_of(*id).is_none(),
                    "round {round}, watcher {w}: a place for {id}, which it does not see"
                );
            }
        }
    }
    assert!(
        checked > 200,
        "too few drifters were in sight to check ({checked})"
    );
}

/// A drifter's place as the churn reports it: id, x, y, z, yaw.
type Placement = (u64, f32, f32, f32, f32);

/// Answers once everything sent to `c` up to `delay_ms` from now arrived.
async fn sync(c: &mut Client, delay_ms: u32) {
    c.call_player("sync", (delay_ms,)).await.expect("send");
    let _: Value = expect(c, "synced").await;
}

/// A client that stops reading is dropped once its queue passes its limit;
/// the others go on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_alone() {
    let server = TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |cfg| {
        cfg.net.client_queue_bytes = 64 * 1024;
    })
    .await;
    let mut others = Vec::new();
    for t in ALL {
        others.push(server.connect(t).await);
    }
    // A raw connection with a small receive buffer that asks for a flood
    // of frames for itself alone (echoes of 60 KB) and never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let addr = server.addr(Transport::Tcp).parse().expect("addr");
    let mut slow = socket.connect(addr).await.expect("connect");
    let mut wire = Vec::new();
    write_prefixed(
        &mut wire,
        &frame(&ClientFrame::Hello {
            version: 3,
            options: Default::default(),
        }),
    );
    slow.write_all(&wire).await.expect("hello");
    let probe = read_own_entity(&mut slow).await;
    let mut echo = Vec::new();
    let mut args = Vec::new();
    let blob = Value::Binary(vec![0xab; 60_000]);
    rmpv::encode::write_value(&mut args, &Value::Array(vec![blob])).expect("args");
    write_prefixed(
        &mut echo,
        &frame(&ClientFrame::Call {
            req_id: 1,
            entity: probe,
            method: "echo".into(),
            args,
        }),
    );
    for _ in 0..100 {
        if slow.write_all(&echo).await.is_err() {
            break;
        }
    }
    // Meanwhile the others keep getting answers.
    for round in 0..20u32 {
        for c in &mut others {
            c.call_player("echo", (round,)).await.expect("send");
            let (v,): (u32,) = expect(c, "on_echo").await;
            assert_eq!(v, round);
        }
    }
    // The slow one is cut off: what it reads now ends.
    let mut sink = vec![0u8; 64 * 1024];
    let end = tokio::time::timeout(WAIT * 2, async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the server kept a client that does not read");
    for c in &mut others {
        c.round_trip(WAIT).await.expect("still served");
    }
}

fn frame(f: &ClientFrame) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out);
    out
}

/// Reads frames from a raw TCP connection until the own entity's Create.
async fn read_own_entity(s: &mut tokio::net::TcpStream) -> u64 {
    let mut dec = FrameDecoder::new(16 << 20);
    loop {
        while let Ok(Some(f)) = dec.next_frame() {
            if let Ok(ServerFrame::Create {
                entity, own: true, ..
            }) = ServerFrame::decode(&f)
            {
                return entity;
            }
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(dec.buffer_mut()))
            .await
            .expect("no Create in time")
            .expect("read");
        assert!(n > 0, "closed before the Create");
    }
}

/// A client of protocol 2 (no `Hello`; it sends a call first) is told what
/// the server speaks and is closed, and one that says 2 is told the same;
/// the server serves others as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_version_is_refused_cleanly() {
    let server = server().await;
    for first in [
        ClientFrame::Call {
            req_id: 1,
            entity: 1,
            method: "noop".into(),
            args: vec![0x90],
        },
        ClientFrame::Hello {
            version: 2,
            options: Default::default(),
        },
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr(Transport::Tcp))
            .await
            .expect("connect");
        let mut wire = Vec::new();
        write_prefixed(&mut wire, &frame(&first));
        s.write_all(&wire).await.expect("write");
        let mut dec = FrameDecoder::new(1 << 20);
        let mut frames = Vec::new();
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match s.read_buf(dec.buffer_mut()).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                while let Ok(Some(f)) = dec.next_frame() {
                    frames.push(ServerFrame::decode(&f).expect("a frame"));
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{first:?}: the connection stayed open");
        // The refusal, saying what the server speaks, and nothing else (a
        // Welcome answers only a Hello the server speaks).
        match &frames[..] {
            [ServerFrame::Error {
                req_id: 0,
                code: ErrorCode::UnsupportedVersion,
                message,
            }] => assert!(message.contains("speaks protocol"), "{message}"),
            other => panic!("{first:?}: {other:?}"),
        }
    }
    let mut c = server.connect(Transport::Tcp).await;
    c.round_trip(WAIT).await.expect("served");
}
