//! Chatroom client steps, as a player would take them.

use rmpv::Value;
use wyrm_client::{Client, Transport};

use crate::TestServer;
pub use crate::{call_own, expect};

/// Registers `name`; returns the server's verdict.
pub async fn register(c: &mut Client, name: &str, password: &str) -> (bool, String) {
    call_own(c, "register", (name, password)).await;
    expect(c, "on_register").await
}

/// Logs in as `name`; returns the verdict. On success the client's own
/// entity is now the avatar.
pub async fn login(c: &mut Client, name: &str, password: &str) -> (bool, String) {
    call_own(c, "login", (name, password)).await;
    let (ok, msg): (bool, String) = expect(c, "on_login").await;
    if ok {
        assert_eq!(
            c.player_view().map(|v| v.type_name.as_str()),
            Some("Avatar"),
            "after login the client is bound to its avatar"
        );
    }
    (ok, msg)
}

/// A client over `t` that registered and logged in as `name`.
pub async fn player(server: &TestServer, t: Transport, name: &str) -> Client {
    registered(server.connect(t).await, name).await
}

/// `connected` (a connection just made, its own entity on its way),
/// registered and logged in as `name`.
pub async fn player_with(
    connected: Result<Client, wyrm_client::ClientError>,
    name: &str,
) -> Client {
    let mut c = connected.unwrap_or_else(|e| panic!("connect {name}: {e}"));
    if let Err(e) = c.wait_player(crate::WAIT).await {
        panic!("no own entity for {name}: {e}");
    }
    registered(c, name).await
}

async fn registered(mut c: Client, name: &str) -> Client {
    let pw = format!("{name}-secret");
    let (ok, msg) = register(&mut c, name, &pw).await;
    assert!(ok, "register {name}: {msg}");
    let (ok, msg) = login(&mut c, name, &pw).await;
    assert!(ok, "login {name}: {msg}");
    c
}

/// Sends a chat line.
pub async fn say(c: &mut Client, text: &str) {
    call_own(c, "say", (text,)).await;
}

/// Switches room and waits for the confirmation.
pub async fn join(c: &mut Client, room: &str) {
    call_own(c, "join", (room,)).await;
    let (joined,): (String,) = expect(c, "on_joined").await;
    assert_eq!(joined, room);
}

/// Waits for the next chat line: (from, room, text).
pub async fn next_chat(c: &mut Client) -> (String, String, String) {
    expect(c, "on_chat").await
}

/// Asserts no chat line arrives within a short while.
pub async fn assert_no_chat(c: &mut Client) {
    if let Ok((_, v)) = c
        .expect_call("on_chat", std::time::Duration::from_millis(300))
        .await
    {
        panic!("unexpected chat line {v:?}");
    }
}

/// Lists who is in the client's room.
pub async fn who(c: &mut Client) -> (String, Vec<String>) {
    call_own(c, "who", wyrm_client::NO_ARGS).await;
    expect(c, "on_who").await
}

/// A value as a string, for assertions on attributes.
pub fn as_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}
