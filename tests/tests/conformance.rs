//! The conformance suite: one set of checks that every implementation of
//! `plugins/conformance/README.md` must pass, whatever its language, run
//! against the Rust, JavaScript, Python and C plugins, each built from
//! source by `wyrm build`'s own tools; then one server swapped through all
//! four languages while its clients stay connected.

use rmpv::Value;
use wyrm::SwapOutcome;
use wyrm_client::{Client, ErrorCode, Event, Transport};
use wyrm_tests::{call_own, conformance_plugin, expect, TestServer, WAIT};
use wyrm_toolchains::Language;

type Lines = Vec<(String, String)>;

/// A server running `lang`'s plugin, taking frames big enough for the
/// 32-bit size classes of MessagePack.
async fn start(lang: Language) -> TestServer {
    TestServer::start(conformance_plugin(lang), "Member", &["Room"], |cfg| {
        cfg.net.max_frame = 256 * 1024
    })
    .await
}

/// Calls `method` and expects it to fail with `code` and a message that
/// contains `message`.
async fn expect_refused<A: serde::Serialize>(
    c: &mut Client,
    method: &str,
    args: A,
    code: ErrorCode,
    message: &str,
) {
    let req = call_own(c, method, args).await;
    let (id, got, text) = match c.expect_error(WAIT).await {
        Ok(e) => e,
        Err(e) => panic!("{method} should fail with {code:?}: {e}"),
    };
    assert_eq!((id, got), (req, code), "{method}: {text}");
    assert!(
        text.contains(message),
        "{method} failed with {text:?}, expected {message:?}"
    );
}

/// Says hello as `name`; returns the history the room sends back.
async fn hello(c: &mut Client, name: &str) -> (Lines, u64) {
    call_own(c, "hello", (name,)).await;
    expect(c, "on_history").await
}

/// The next answer `told` passes on: `[context, error, value]`.
async fn told(c: &mut Client) -> (Value, Value, Value) {
    expect(c, "on_told").await
}

/// The next `on_said` this client hears.
async fn said(c: &mut Client) -> (String, String, u64) {
    expect(c, "on_said").await
}

/// Waits until the client's view of its own entity has attribute `key` =
/// `want` (attribute pushes arrive as events).
async fn own_attr(c: &mut Client, key: &str, want: Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if c.player_view().and_then(|v| v.attr(key)) == Some(&want) {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(Event::Closed)) | Err(_) => panic!("connection lost waiting for {key}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "own attribute {key} is {:?}, expected {want:?}",
                c.player_view().and_then(|v| v.attr(key))
            ),
        }
    }
}

/// MessagePack values `echo` must give back unchanged: every type, and
/// every size class of the encoding.
fn echo_values() -> Vec<Value> {
    let ints_u: [u64; 12] = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        1 << 32,
        (1 << 53) + 1,
        u64::MAX,
    ];
    let ints_i: [i64; 9] = [
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        i32::MIN as i64,
        i64::MIN,
    ];
    let mut v = vec![Value::Nil, Value::Boolean(true), Value::Boolean(false)];
    v.extend(ints_u.into_iter().map(Value::from));
    v.extend(ints_i.into_iter().map(Value::from));
    v.extend(
        [1.5, -0.25, 1e300, std::f64::consts::PI, 5e-324]
            .into_iter()
            .map(Value::F64),
    );
    v.extend(
        [
            String::new(),
            "héllo wörld ✓ 🐉".into(),
            "x".repeat(40),
            "y".repeat(300),
            "z".repeat(70_000),
        ]
        .into_iter()
        .map(Value::from),
    );
    v.extend(
        [vec![], vec![0, 1, 2, 255], vec![7; 300]]
            .into_iter()
            .map(Value::Binary),
    );
    v.push(Value::Array(vec![]));
    v.push(Value::Array(vec![
        1.into(),
        Value::Array(vec!["a".into(), Value::Nil]),
        Value::Map(vec![("k".into(), Value::Array(vec![true.into()]))]),
    ]));
    v.push(Value::Array((0..20).map(Value::from).collect()));
    v.push(Value::Map(vec![]));
    v.push(Value::Map(vec![
        ("b".into(), 1.into()),
        ("a".into(), Value::Array(vec![1.into(), 2.into()])),
        ("zz".into(), Value::Map(vec![("x".into(), Value::Nil)])),
    ]));
    v.push(Value::Map(
        (0..20)
            .map(|i| (Value::from(format!("key{i}")), Value::from(i)))
            .collect(),
    ));
    v
}

/// Everything the contract says, checked over real sockets.
async fn conforms(lang: Language) {
    let server = start(lang).await;
    let mut a = server.connect(Transport::WebSocket).await;
    let mut b = server.connect(Transport::Tcp).await;
    assert_eq!(
        a.player_view().map(|v| v.type_name.as_str()),
        Some("Member"),
        "{lang}: a client is bound to a Member"
    );

    // Refusals: the plugin's own errors, and the host's declarations.
    expect_refused(
        &mut b,
        "say",
        ("early",),
        ErrorCode::CallFailed,
        "say hello first",
    )
    .await;
    for bad in [String::new(), "n".repeat(21)] {
        expect_refused(&mut b, "hello", (bad,), ErrorCode::CallFailed, "bad name").await;
    }
    expect_refused(
        &mut a,
        "fail",
        ("nope, on purpose",),
        ErrorCode::CallFailed,
        "nope, on purpose",
    )
    .await;
    // A long error reaches the client cut to the host's bound, at a
    // character boundary, marked with "…".
    let long = "é".repeat(2000);
    let req = call_own(&mut a, "fail", (long.as_str(),)).await;
    let (id, code, text) = a.expect_error(WAIT).await.expect("fail fails");
    assert_eq!((id, code), (req, ErrorCode::CallFailed), "{lang}: {text}");
    assert!(
        text.len() <= wyrm_runtime::MAX_MESSAGE
            && text.len() > 200
            && text.strip_suffix('…').is_some_and(|t| long.starts_with(t)),
        "{lang}: {text}"
    );
    expect_refused(&mut a, "reminded", ("x",), ErrorCode::NotAllowed, "").await;
    expect_refused(&mut a, "shout", ("x",), ErrorCode::NoSuchMethod, "").await;

    // Hello: the history comes back, the name becomes an attribute. Names
    // count characters, not bytes.
    assert_eq!(
        hello(&mut a, "ann").await,
        (vec![], 0),
        "{lang}: fresh room"
    );
    own_attr(&mut a, "name", "ann".into()).await;
    let long_name = "é".repeat(20);
    assert_eq!(hello(&mut b, &long_name).await.1, 0);

    // Say: everyone hears it; the sayer's count is an own-client attribute.
    call_own(&mut a, "say", ("hi",)).await;
    for c in [&mut a, &mut b] {
        assert_eq!(said(c).await, ("ann".into(), "hi".into(), 1), "{lang}");
    }
    own_attr(&mut a, "said", 1.into()).await;
    for bad in [String::new(), "t".repeat(201)] {
        expect_refused(&mut a, "say", (bad,), ErrorCode::CallFailed, "bad text").await;
    }
    let long_text = "ü".repeat(200);
    call_own(&mut a, "say", (&long_text,)).await;
    assert_eq!(said(&mut b).await, ("ann".into(), long_text.clone(), 2));
    own_attr(&mut a, "said", 2.into()).await;

    // A newcomer gets the history; the room keeps the last 20 lines.
    let mut c = server.connect(Transport::Tcp).await;
    let (lines, posts) = hello(&mut c, "cat").await;
    assert_eq!(
        (lines, posts),
        (
            vec![("ann".into(), "hi".into()), ("ann".into(), long_text)],
            2
        ),
        "{lang}: history"
    );
    for i in 0..21 {
        call_own(&mut b, "say", (format!("b{i}"),)).await;
        assert_eq!(said(&mut b).await.2, 3 + i);
    }
    let (lines, posts) = hello(&mut c, "cat").await;
    let want: Lines = (1..21)
        .map(|i| (long_name.clone(), format!("b{i}")))
        .collect();
    assert_eq!((lines, posts), (want, 23), "{lang}: the last 20 lines");
    c.close().await;

    // Echo: every MessagePack type and size class, decoded and encoded
    // again by the plugin's own code.
    for v in echo_values() {
        call_own(&mut a, "echo", (v.clone(),)).await;
        let (_, back) = match a.expect_call("on_echo", WAIT).await {
            Ok(r) => r,
            Err(e) => panic!("{lang}: echo of {v}: {e}"),
        };
        assert_eq!(back, Value::Array(vec![v.clone()]), "{lang}: echo");
    }

    // Asking about any entity, wherever it lives (with two games, b's
    // Member may be on the other): its type, its attributes.
    let a_id = a.player().expect("a is bound");
    let b_id = b.player().expect("b is bound");
    if wyrm_tests::workers() > 1 {
        assert_ne!(
            server.server.game_of(a_id),
            server.server.game_of(b_id),
            "{lang}: with two games, the two members are on different ones"
        );
    }
    call_own(&mut a, "kind_of", (b_id,)).await;
    assert_eq!(
        told(&mut a).await,
        ("kind".into(), Value::Nil, "Member".into()),
        "{lang}"
    );
    call_own(&mut a, "kind_of", (1u64 << 40,)).await;
    assert_eq!(
        told(&mut a).await,
        ("kind".into(), Value::Nil, Value::Nil),
        "{lang}: no such entity"
    );
    call_own(&mut a, "peek", (b_id, "name")).await;
    assert_eq!(
        told(&mut a).await,
        ("name".into(), Value::Nil, long_name.clone().into()),
        "{lang}"
    );
    call_own(&mut a, "peek", (a_id, "said")).await;
    assert_eq!(
        told(&mut a).await,
        ("said".into(), Value::Nil, 2.into()),
        "{lang}"
    );
    call_own(&mut a, "peek", (b_id, "nothing")).await;
    let (context, error, value) = told(&mut a).await;
    assert!(
        context.as_str() == Some("nothing")
            && error.as_str().is_some_and(|e| e.contains("nothing"))
            && value.is_nil(),
        "{lang}: an undeclared attribute is an error: {error}"
    );
    // An entity made wherever the server chooses answers before it is
    // destroyed: messages to one entity keep their order.
    call_own(&mut a, "spawn", ("imp",)).await;
    let (spawned,): (u64,) = expect(&mut a, "on_spawned").await;
    assert!(spawned != a_id && spawned != b_id, "{lang}: a new entity");
    assert_eq!(
        told(&mut a).await,
        ("spawned".into(), Value::Nil, "imp".into()),
        "{lang}"
    );
    // Then it is gone (its game may destroy it a moment after answering).
    let mut kind = Value::from("Member");
    for _ in 0..100 {
        call_own(&mut a, "kind_of", (spawned,)).await;
        kind = told(&mut a).await.2;
        if kind.is_nil() {
            break;
        }
    }
    assert!(kind.is_nil(), "{lang}: the spawned entity was destroyed");

    // Timers call back into the plugin; private state is there.
    call_own(&mut a, "remind", (30, "tea")).await;
    let (text, count): (String, u64) = expect(&mut a, "on_reminder").await;
    assert_eq!((text.as_str(), count), ("tea", 2), "{lang}: reminder");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_rust() {
    conforms(Language::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_js() {
    conforms(Language::JavaScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_python() {
    conforms(Language::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_c() {
    conforms(Language::C).await;
}

/// Rust → JavaScript → Python → C → Rust on one running server: the room's
/// lines and count and every member's count carry over each swap, and the
/// clients connected at the start stay connected throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_through_every_language() {
    use Language::*;
    let order = [Rust, JavaScript, Python, C, Rust];
    let built: Vec<_> = order.iter().map(|&l| conformance_plugin(l)).collect();
    let server = TestServer::start(built[0].clone(), "Member", &["Room"], |_| {}).await;
    let mut a = server.connect(Transport::WebSocket).await;
    // Not KCP: its sessions expire after 30 s of silence, and compiling a
    // 12 MB JavaScript component for the first swap can take that long on
    // a loaded machine.
    let mut b = server.connect(Transport::Tcp).await;
    hello(&mut a, "ann").await;
    hello(&mut b, "bob").await;
    let mut history: Lines = Vec::new();
    let mut a_said = 0;

    let mut say = async |a: &mut Client, b: &mut Client, text: String| {
        call_own(a, "say", (&text,)).await;
        history.push(("ann".into(), text.clone()));
        a_said += 1;
        for c in [&mut *a, &mut *b] {
            assert_eq!(
                said(c).await,
                ("ann".into(), text.clone(), history.len() as u64)
            );
        }
        own_attr(a, "said", a_said.into()).await;
        history.clone()
    };
    say(&mut a, &mut b, "before any swap".into()).await;

    for (step, pair) in order.windows(2).enumerate() {
        let (from, to) = (pair[0], pair[1]);
        let report = server.swap(&built[step + 1], false).await;
        eprintln!("{from} -> {to}: {report}");
        assert_eq!(
            report.outcome,
            SwapOutcome::Swapped,
            "{from} -> {to}: {report}"
        );
        assert_eq!(
            (report.from_version.as_str(), report.to_version.as_str()),
            (
                format!("1.0.0-{}", from.name()).as_str(),
                format!("1.0.0-{}", to.name()).as_str()
            )
        );
        assert!(report.entities >= 3, "the room and two members: {report}");

        // The same connections, served by the new language, with the state
        // the old one left.
        let lines = say(&mut a, &mut b, format!("after {from} -> {to}")).await;
        call_own(&mut a, "remind", (1, "check")).await;
        let (_, count): (String, u64) = expect(&mut a, "on_reminder").await;
        assert_eq!(count, lines.len() as u64, "{to}: ann's count carried over");
        let mut c = server.connect(Transport::Tcp).await;
        assert_eq!(
            hello(&mut c, "cat").await,
            (lines.clone(), lines.len() as u64),
            "{to}: the room's history carried over"
        );
        c.close().await;
    }
    server.server.shutdown().await;
}
