//! The client against a tiny fake server that speaks the protocol over all
//! three transports. It checks framing, the handshake, event decoding, the
//! local view and the helpers; the real server is tested in `tests/`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};
use tokio_tungstenite::tungstenite::Message;
use wyrm_client::{
    from_value, AttrOp, Client, ClientError, ErrorCode, Event, PathSegment, Transport, NO_ARGS,
    PROTOCOL_VERSION,
};
use wyrm_kcp::{KcpListener, Settings};
use wyrm_protocol::{
    write_prefixed, ClientFrame, FrameDecoder, FrameError, PositionsWriter, QuantPos, Resolution,
    ServerFrame,
};

const SERVER_MAX: usize = 1024;
const T: Duration = Duration::from_secs(5);

fn mp(v: Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.into())
}

enum Reply {
    Frame(ServerFrame),
    /// Written a byte at a time with pauses (stream transports).
    Slow(ServerFrame),
    Close,
}

fn greeting() -> Vec<Reply> {
    vec![
        Reply::Frame(ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            max_frame: SERVER_MAX as u32,
            options: Default::default(),
        }),
        Reply::Frame(ServerFrame::Create {
            entity: 7,
            type_name: "Account".into(),
            own: true,
            attrs: mp(map(vec![])),
        }),
    ]
}

fn malformed() -> Vec<Reply> {
    vec![
        Reply::Frame(ServerFrame::Error {
            req_id: 0,
            code: ErrorCode::Malformed,
            message: "bad frame".into(),
        }),
        Reply::Close,
    ]
}

/// The fake game: what the server answers to one client frame.
fn respond(frame: &[u8]) -> Vec<Reply> {
    let Ok(f) = ClientFrame::decode(frame) else {
        return malformed();
    };
    let (req_id, entity, method, args) = match f {
        ClientFrame::Ping { nonce } => return vec![Reply::Frame(ServerFrame::Pong { nonce })],
        ClientFrame::Move { .. } | ClientFrame::Hello { .. } => return vec![],
        ClientFrame::Call {
            req_id,
            entity,
            method,
            args,
        } => (req_id, entity, method, args),
    };
    let call = |entity, method: &str, args: Value| {
        Reply::Frame(ServerFrame::Call {
            entity,
            method: method.into(),
            args: mp(args),
        })
    };
    let attr = |op, path: Vec<PathSegment>, value: Option<Value>| {
        Reply::Frame(ServerFrame::Attr {
            entity,
            op,
            path,
            value: value.map(mp).unwrap_or_default(),
        })
    };
    match method.as_str() {
        "echo" => vec![Reply::Frame(ServerFrame::Call {
            entity,
            method: "echo".into(),
            args,
        })],
        "fail" => vec![Reply::Frame(ServerFrame::Error {
            req_id,
            code: ErrorCode::CallFailed,
            message: "boom".into(),
        })],
        "weird_code" => vec![Reply::Frame(ServerFrame::Error {
            req_id,
            code: ErrorCode::Unknown,
            message: "?".into(),
        })],
        "login" => vec![
            Reply::Frame(ServerFrame::Destroy { entity: 7 }),
            Reply::Frame(ServerFrame::Create {
                entity: 8,
                type_name: "Avatar".into(),
                own: true,
                attrs: mp(map(vec![("name", "ann".into())])),
            }),
            call(8, "on_login", Value::Array(vec![true.into(), "".into()])),
        ],
        "attrs" => vec![
            attr(AttrOp::Set, vec![key("room")], Some("lobby".into())),
            attr(AttrOp::Set, vec![key("log")], Some(Value::Array(vec![]))),
            attr(AttrOp::Append, vec![key("log")], Some("a".into())),
            attr(AttrOp::Append, vec![key("log")], Some("b".into())),
            attr(
                AttrOp::Delete,
                vec![key("log"), PathSegment::Index(0)],
                None,
            ),
            call(entity, "attrs_done", Value::Array(vec![])),
        ],
        "bad_attr" => vec![
            Reply::Frame(ServerFrame::Attr {
                entity: 999,
                op: AttrOp::Set,
                path: vec![key("x")],
                value: mp(1.into()),
            }),
            call(entity, "after_bad", Value::Array(vec![])),
        ],
        "big" => vec![
            call(
                entity,
                "big",
                Value::Array(vec![Value::Binary(vec![7; 4000])]),
            ),
            call(entity, "after_big", Value::Array(vec![])),
        ],
        "slow" => vec![Reply::Slow(ServerFrame::Call {
            entity,
            method: "slow".into(),
            args: mp(Value::Array(vec!["x".repeat(40).into()])),
        })],
        "own_call" => vec![Reply::Frame(ServerFrame::CallOwn {
            method: "greet".into(),
            args: mp(Value::Array(vec![1.into()])),
        })],
        "positions" => {
            let res = Resolution::default();
            let frame = |f: &dyn Fn(&mut PositionsWriter)| {
                let mut out = Vec::new();
                let mut w = PositionsWriter::new(&mut out, res);
                f(&mut w);
                w.finish();
                Reply::Frame(ServerFrame::Positions {
                    body: out[1..].to_vec(),
                })
            };
            let q = |x, y, yaw| QuantPos { x, y, z: 0, yaw };
            vec![
                Reply::Frame(ServerFrame::Create {
                    entity: 9,
                    type_name: "Monster".into(),
                    own: false,
                    attrs: mp(map(vec![])),
                }),
                frame(&|w| {
                    w.bind(0, entity, q(32, 64, 0));
                    w.bind(2, 9, q(-320, 16, 256));
                }),
                frame(&|w| {
                    w.update(2, q(-320, 16, 256), q(-312, 16, 256));
                }),
                Reply::Frame(ServerFrame::Destroy { entity: 9 }),
                call(entity, "positions_done", Value::Array(vec![])),
            ]
        }
        "chatter" => (0..5)
            .map(|i| call(entity, "noise", Value::Array(vec![i.into()])))
            .collect(),
        _ => vec![Reply::Frame(ServerFrame::Error {
            req_id,
            code: ErrorCode::NoSuchMethod,
            message: format!("no method {method}"),
        })],
    }
}

/// Returns false when the connection should close.
async fn write_replies<S: AsyncWrite + Unpin>(s: &mut S, replies: Vec<Reply>) -> bool {
    for r in replies {
        match r {
            Reply::Frame(f) => {
                let mut wire = Vec::new();
                write_prefixed(&mut wire, &f.to_bytes());
                if s.write_all(&wire).await.is_err() {
                    return false;
                }
            }
            Reply::Slow(f) => {
                let mut wire = Vec::new();
                write_prefixed(&mut wire, &f.to_bytes());
                for b in wire {
                    if s.write_all(&[b]).await.is_err() {
                        return false;
                    }
                    let _ = s.flush().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Reply::Close => {
                let _ = s.flush().await;
                let _ = s.shutdown().await;
                return false;
            }
        }
    }
    s.flush().await.is_ok()
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    if !write_replies(&mut s, greeting()).await {
        return;
    }
    let mut dec = FrameDecoder::new(SERVER_MAX);
    loop {
        loop {
            let replies = match dec.next_frame() {
                Ok(Some(frame)) => respond(&frame),
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    vec![Reply::Frame(ServerFrame::Error {
                        req_id: 0,
                        code: ErrorCode::FrameTooLarge,
                        message: format!("{len} > {max}"),
                    })]
                }
                Err(FrameError::BadLength(_)) => malformed(),
            };
            if !write_replies(&mut s, replies).await {
                // Give the client time to read before the socket drops.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
        match s.read_buf(dec.buffer_mut()).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn serve_ws(tcp: tokio::net::TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let mut replies = greeting();
    loop {
        for r in std::mem::take(&mut replies) {
            match r {
                Reply::Frame(f) | Reply::Slow(f) => {
                    if ws.send(Message::Binary(f.to_bytes().into())).await.is_err() {
                        return;
                    }
                }
                Reply::Close => {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        }
        replies = match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                if b.len() > SERVER_MAX {
                    vec![Reply::Frame(ServerFrame::Error {
                        req_id: 0,
                        code: ErrorCode::FrameTooLarge,
                        message: "too large".into(),
                    })]
                } else {
                    respond(&b)
                }
            }
            Some(Ok(Message::Text(_))) => malformed(),
            Some(Ok(_)) => vec![],
            _ => return,
        };
    }
}

/// Starts a fake server for `transport`; returns its address.
async fn start(transport: Transport) -> String {
    match transport {
        Transport::Tcp | Transport::WebSocket => {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    if transport == Transport::Tcp {
                        tokio::spawn(serve_stream(s));
                    } else {
                        tokio::spawn(serve_ws(s));
                    }
                }
            });
            addr
        }
        Transport::Kcp => {
            let mut l =
                KcpListener::bind(([127, 0, 0, 1], 0).into(), Settings::default(), |_| Ok(()))
                    .await
                    .unwrap();
            let addr = l.local_addr().to_string();
            tokio::spawn(async move {
                while let Ok(opened) = l.accept().await {
                    tokio::spawn(serve_stream(opened.stream));
                }
            });
            addr
        }
    }
}

const ALL: [Transport; 3] = [Transport::Tcp, Transport::WebSocket, Transport::Kcp];

async fn session(transport: Transport) {
    let addr = start(transport).await;
    let mut c = Client::connect(transport, &addr).await.unwrap();
    assert_eq!(c.welcome().version, PROTOCOL_VERSION);
    assert_eq!(c.welcome().max_frame, SERVER_MAX as u32);

    // The own entity.
    match c.next_event().await.unwrap() {
        Event::Created {
            entity: 7,
            ref type_name,
            own: true,
            ..
        } if type_name == "Account" => {}
        other => panic!("{transport:?}: expected Create(7), got {other}"),
    }
    assert_eq!(c.player(), Some(7));
    assert_eq!(c.wait_player(T).await.unwrap(), 7);

    // A call and its echo, typed.
    c.call(7, "echo", ("hi", 3u32, u64::MAX)).await.unwrap();
    let (e, (s, n, big)): (u64, (String, u32, u64)) = c.expect_call_as("echo", T).await.unwrap();
    assert_eq!((e, s.as_str(), n, big), (7, "hi", 3, u64::MAX));

    // No arguments is an empty array.
    c.call_player("echo", NO_ARGS).await.unwrap();
    let (_, args) = c.expect_call("echo", T).await.unwrap();
    assert_eq!(args, Value::Array(vec![]));

    // Ping / Pong.
    let nonce = c.ping().await.unwrap();
    assert_eq!(c.next_event().await.unwrap(), Event::Pong { nonce });
    c.round_trip(T).await.unwrap();

    // An Error frame carries the request id and fails expect_call.
    let req = c.call(7, "fail", ()).await.unwrap();
    let err = c.expect_call("never", T).await.unwrap_err();
    match err {
        ClientError::Server {
            req_id,
            code: ErrorCode::CallFailed,
            ref message,
            ..
        } if req_id == req && message == "boom" => {}
        other => panic!("{transport:?}: {other}"),
    }
    c.call(7, "weird_code", ()).await.unwrap();
    match c.next_event().await.unwrap() {
        Event::Error {
            code: ErrorCode::Unknown,
            code_num: 0xffff,
            ..
        } => {}
        other => panic!("{other}"),
    }

    // Attribute updates reach the local view.
    c.call(7, "attrs", NO_ARGS).await.unwrap();
    c.expect_call("attrs_done", T).await.unwrap();
    let view = c.entity(7).unwrap();
    assert_eq!(view.attr("room"), Some(&Value::from("lobby")));
    assert_eq!(view.attr("log"), Some(&Value::Array(vec!["b".into()])));
    // ...and the skipped Attr events were kept, in order.
    let mut ops = Vec::new();
    while let Some(Event::Attr { op, .. }) = c
        .next_event_timeout(Duration::from_millis(50))
        .await
        .unwrap()
    {
        ops.push(op);
    }
    assert_eq!(
        ops,
        [
            AttrOp::Set,
            AttrOp::Set,
            AttrOp::Append,
            AttrOp::Append,
            AttrOp::Delete
        ]
    );

    // An Attr for an unknown entity is reported, and the client goes on.
    c.call(7, "bad_attr", NO_ARGS).await.unwrap();
    let err = c.next_event().await.unwrap_err();
    assert!(
        matches!(err, ClientError::View { entity: 999, .. }),
        "{err}"
    );
    assert!(!err.is_fatal());
    c.expect_call("after_bad", T).await.unwrap();

    // A call on the own entity carries no id: it is the player's.
    c.call(7, "own_call", NO_ARGS).await.unwrap();
    let (e, (one,)): (u64, (u32,)) = c.expect_call_as("greet", T).await.unwrap();
    assert_eq!((e, one), (7, 1));

    // Positions: bound slots, then a delta; a Destroy frees the slot.
    c.call(7, "positions", NO_ARGS).await.unwrap();
    let mut seen = Vec::new();
    loop {
        match c.next_event().await.unwrap() {
            Event::Positions(p) => {
                seen.extend(p.iter().map(|p| (p.entity, p.pos.x, p.pos.y, p.yaw)));
                if seen.len() == 2 {
                    let own = c.position_of(c.player().unwrap()).unwrap();
                    assert_eq!((own.pos.x, own.pos.y), (1.0, 2.0));
                    let m = c.position_of(9).unwrap();
                    assert_eq!(
                        (m.pos.x, m.pos.y, m.yaw),
                        (-10.0, 0.5, std::f32::consts::FRAC_PI_2)
                    );
                }
            }
            Event::Call { method, .. } if method == "positions_done" => break,
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            (7, 1.0, 2.0, 0.0),
            (9, -10.0, 0.5, std::f32::consts::FRAC_PI_2),
            (9, -9.75, 0.5, std::f32::consts::FRAC_PI_2)
        ]
    );
    assert!(c.entity(9).is_none());
    assert!(c.position_of(9).is_none());

    // Login swaps the own entity.
    c.call(7, "login", ("ann", "pw")).await.unwrap();
    let (avatar, (ok, msg)): (u64, (bool, String)) = c.expect_call_as("on_login", T).await.unwrap();
    assert!(ok && msg.is_empty());
    assert_eq!(avatar, 8);
    assert_eq!(c.player(), Some(8));
    assert!(c.entity(7).is_none());
    assert_eq!(c.player_view().unwrap().type_name, "Avatar");
    assert_eq!(c.player_view().unwrap().attr("name"), Some(&"ann".into()));
    assert!(matches!(
        c.next_event().await.unwrap(),
        Event::Destroyed { entity: 7 }
    ));
    assert!(matches!(
        c.next_event().await.unwrap(),
        Event::Created { entity: 8, .. }
    ));

    // A call larger than the server's max_frame is refused locally.
    let err = c.call(8, "echo", (vec![0u8; 2000],)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TooLargeToSend {
                max: SERVER_MAX,
                ..
            }
        ),
        "{err}"
    );

    // Timeouts say what arrived instead.
    c.call(8, "chatter", NO_ARGS).await.unwrap();
    let err = c
        .expect_call("nothing", Duration::from_millis(300))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Timeout { .. }), "{text}");
    assert!(text.contains("Call(8.noise [4])"), "{text}");
    for i in 0..5u32 {
        let (_, (j,)): (u64, (u32,)) = c.expect_call_as("noise", T).await.unwrap();
        assert_eq!(i, j);
    }

    // A malformed frame: Error MALFORMED, then the connection closes.
    c.send_raw_frame(&[0x7f, 1, 2, 3]).await.unwrap();
    let (req_id, code, _) = c.expect_error(T).await.unwrap();
    assert_eq!((req_id, code), (0, ErrorCode::Malformed));
    c.expect_closed(T).await.unwrap();
    assert!(!c.is_open());
    assert!(matches!(c.next_event().await, Err(ClientError::Closed)));
    assert!(matches!(c.ping().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn full_session_tcp() {
    session(Transport::Tcp).await;
}

#[tokio::test]
async fn full_session_websocket() {
    session(Transport::WebSocket).await;
}

#[tokio::test]
async fn full_session_kcp() {
    session(Transport::Kcp).await;
}

#[tokio::test]
async fn oversized_client_frame_is_skipped_by_server() {
    for t in ALL {
        let addr = start(t).await;
        let mut c = Client::connect(t, &addr).await.unwrap();
        let mut frame = Vec::new();
        ClientFrame::Call {
            req_id: 1,
            entity: 7,
            method: "echo".into(),
            args: mp(Value::Binary(vec![1; 3000])),
        }
        .encode(&mut frame);
        c.send_raw_frame(&frame).await.unwrap();
        let (_, code, _) = c.expect_error(T).await.unwrap();
        assert_eq!(code, ErrorCode::FrameTooLarge, "{t:?}");
        c.call(7, "echo", (1,)).await.unwrap();
        c.expect_call("echo", T).await.unwrap();
    }
}

#[tokio::test]
async fn oversized_server_frame() {
    // Stream transports skip it and go on.
    for t in [Transport::Tcp, Transport::Kcp] {
        let addr = start(t).await;
        let mut c = Client::builder(t)
            .max_frame(1000)
            .connect(&addr)
            .await
            .unwrap();
        c.call(7, "big", NO_ARGS).await.unwrap();
        let err = loop {
            match c.next_event().await {
                Ok(Event::Created { .. }) => continue,
                Ok(other) => panic!("{t:?}: {other}"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, ClientError::FrameTooLarge { max: 1000, .. }),
            "{err}"
        );
        assert!(!err.is_fatal());
        c.expect_call("after_big", T).await.unwrap();
    }
    // WebSocket cannot skip a message; the connection ends.
    let addr = start(Transport::WebSocket).await;
    let mut c = Client::builder(Transport::WebSocket)
        .max_frame(1000)
        .connect(&addr)
        .await
        .unwrap();
    c.call(7, "big", NO_ARGS).await.unwrap();
    let err = c.expect_call("after_big", T).await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
}

#[tokio::test]
async fn raw_bytes_and_text_messages() {
    // A zero length prefix is malformed framing.
    for t in [Transport::Tcp, Transport::Kcp] {
        let addr = start(t).await;
        let mut c = Client::connect(t, &addr).await.unwrap();
        c.send_raw_bytes(&[0, 0, 0, 0]).await.unwrap();
        let (_, code, _) = c.expect_error(T).await.unwrap();
        assert_eq!(code, ErrorCode::Malformed);
        c.expect_closed(T).await.unwrap();
    }
    // Two frames in one write, split oddly, arrive as two frames.
    let addr = start(Transport::Tcp).await;
    let mut c = Client::connect(Transport::Tcp, &addr).await.unwrap();
    let mut wire = Vec::new();
    for nonce in [41, 42] {
        let mut f = Vec::new();
        ClientFrame::Ping { nonce }.encode(&mut f);
        write_prefixed(&mut wire, &f);
    }
    c.send_raw_bytes(&wire[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send_raw_bytes(&wire[3..]).await.unwrap();
    let mut pongs = Vec::new();
    while pongs.len() < 2 {
        if let Event::Pong { nonce } = c.next_event().await.unwrap() {
            pongs.push(nonce);
        }
    }
    assert_eq!(pongs, [41, 42]);

    let addr = start(Transport::WebSocket).await;
    let mut c = Client::connect(Transport::WebSocket, &addr).await.unwrap();
    let err = c.send_raw_bytes(b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::Unsupported { .. }), "{err}");
    c.send_ws_text("hello").await.unwrap();
    let (_, code, _) = c.expect_error(T).await.unwrap();
    assert_eq!(code, ErrorCode::Malformed);
    c.expect_closed(T).await.unwrap();
}

#[tokio::test]
async fn next_event_is_cancel_safe() {
    for t in [Transport::Tcp, Transport::Kcp] {
        let addr = start(t).await;
        let mut c = Client::connect(t, &addr).await.unwrap();
        c.wait_player(T).await.unwrap();
        c.call(7, "slow", NO_ARGS).await.unwrap();
        // The frame trickles in over ~100 ms; poll with much shorter timeouts.
        let mut polls = 0;
        let event = loop {
            polls += 1;
            if let Some(e) = c
                .next_event_timeout(Duration::from_millis(3))
                .await
                .unwrap()
            {
                break e;
            }
            assert!(polls < 10_000);
        };
        assert!(polls > 3, "{t:?}: the frame arrived too fast to test");
        let Event::Call { method, args, .. } = event else {
            panic!("{event}")
        };
        assert_eq!(method, "slow");
        let (s,): (String,) = from_value(&args).unwrap();
        assert_eq!(s, "x".repeat(40));
    }
}

#[tokio::test]
async fn connect_failures_are_clear() {
    // Nothing listens: TCP is refused at once.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let err = Client::connect(Transport::Tcp, &addr).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    // KCP learns it from the ICMP answer to its handshake.
    let err = Client::connect(Transport::Kcp, &addr).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("nothing answers"), "{err}");
    // A UDP port that takes datagrams and never answers: the timeout fires.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let err = Client::builder(Transport::Kcp)
        .connect_timeout(Duration::from_millis(300))
        .connect(&silent.local_addr().unwrap().to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ConnectTimeout { .. }), "{err}");
    // A server that does not start with Welcome.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut wire = Vec::new();
        write_prefixed(&mut wire, &ServerFrame::Pong { nonce: 1 }.to_bytes());
        s.write_all(&wire).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let err = Client::connect(Transport::Tcp, &addr).await.unwrap_err();
    assert!(err.to_string().contains("Welcome"), "{err}");
}

/// A client of this protocol and a server of an older one refuse each
/// other cleanly: the client says its version first, the server's Welcome
/// says another, and the client stops with both numbers.
#[tokio::test]
async fn an_older_server_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut wire = Vec::new();
        let welcome = ServerFrame::Welcome {
            version: 2,
            max_frame: 65536,
            options: Default::default(),
        };
        write_prefixed(&mut wire, &welcome.to_bytes());
        s.write_all(&wire).await.unwrap();
        // What the client sent before giving up.
        let mut dec = FrameDecoder::new(1024);
        let mut frames = Vec::new();
        loop {
            match s.read_buf(dec.buffer_mut()).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while let Ok(Some(f)) = dec.next_frame() {
                frames.push(ClientFrame::decode(&f).unwrap());
            }
        }
        frames
    });
    let err = Client::connect(Transport::Tcp, &addr).await.unwrap_err();
    assert!(
        matches!(err, ClientError::VersionMismatch { server: 2, client } if client == PROTOCOL_VERSION),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("protocol 2"), "{err}");
    let sent = server.await.unwrap();
    assert_eq!(
        sent,
        [ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            options: wyrm_protocol::HelloOptions {
                compress: vec!["lz4".into()],
            },
        }]
    );
}
