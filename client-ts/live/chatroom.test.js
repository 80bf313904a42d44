// The SDK against a real Wyrm server running the chatroom example, over TCP
// and WebSocket, plain and over TLS (the server's development certificate,
// trusted through its authority). The server is started by the Rust test
// that runs this (tests/tests/client_ts.rs), which passes its addresses:
//
//   WYRM_CHAT_TCP=tcp://127.0.0.1:PORT WYRM_CHAT_WS=ws://127.0.0.1:PORT/ws \
//   WYRM_CHAT_TLS=tls://127.0.0.1:PORT WYRM_CHAT_WSS=wss://127.0.0.1:PORT/ws \
//   WYRM_CHAT_CA=path/to/dev-ca.pem node --test client-ts/live/

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import WebSocket from "ws";

import { ConnectionClosedError, ErrorCode, WyrmError, connect } from "../src/index.js";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these through \`cargo test -p wyrm-tests --test client_ts\``);
  return v;
};
const addresses = { tcp: env("WYRM_CHAT_TCP"), ws: env("WYRM_CHAT_WS"), tls: env("WYRM_CHAT_TLS"), wss: env("WYRM_CHAT_WSS") };
const ca = readFileSync(env("WYRM_CHAT_CA"), "utf8");

/** @param {"tcp" | "ws" | "tls" | "wss"} transport */
const open = (transport) => connect(addresses[transport], { WebSocket, tls: { ca } });

/** A logged-in chatter called `name`. */
async function chatter(transport, name) {
  const c = await open(transport);
  assert.equal(c.entities.get(c.me)?.type, "Account");
  assert.deepEqual(await c.request("register", [name, "pw-" + name], "on_register"), [true, ""]);
  const history = c.expect("on_history");
  assert.deepEqual(await c.request("login", [name, "pw-" + name], "on_login"), [true, ""]);
  const me = c.entities.get(c.me);
  assert.equal(me?.type, "Avatar");
  assert.equal(me.attrs.name, name);
  assert.equal((await history)[0], "lobby");
  return c;
}

for (const transport of /** @type {const} */ (["tcp", "ws", "tls", "wss"])) {
  test(`chat over ${transport}: log in, talk, change rooms, see attributes follow`, { timeout: 30_000 }, async () => {
    const tag = `${transport}${process.pid % 10_000}`;
    const ann = await chatter(transport, `ann${tag}`);
    const bob = await chatter(transport, `bob${tag}`);
    try {
      // A line said reaches both.
      const heard = bob.expect("on_chat");
      const own = ann.expect("on_chat");
      ann.call("say", ["hello"]);
      assert.deepEqual(await heard, [`ann${tag}`, "lobby", "hello"]);
      assert.deepEqual(await own, [`ann${tag}`, "lobby", "hello"]);
      // A long line comes compressed (both asked for it, as the SDK does),
      // and reads the same.
      assert.equal(bob.compressed, true);
      const long = "a wyrm, ".repeat(60);
      let packed = 0;
      const count = bob.on("received", (bytes) => { if (bytes[0] === 0x8b) packed++; });
      const longHeard = bob.expect("on_chat");
      const longSaid = ann.expect("on_chat");
      ann.call("say", [long]);
      assert.deepEqual(await longHeard, [`ann${tag}`, "lobby", long]);
      await longSaid;
      count();
      assert.ok(packed >= 1, "the long line came in a Compressed frame");
      // who
      const [room, names] = await bob.request("who", [], "on_who");
      assert.equal(room, "lobby");
      assert.ok(names.includes(`ann${tag}`) && names.includes(`bob${tag}`), String(names));
      // A move to another room: the room attribute follows, and what is
      // said in the lobby no longer reaches ann.
      const roomChanged = new Promise((resolve) => {
        const stop = ann.on("attr", (view, change) => {
          if (view.id === ann.me && change.path[0] === "room") { stop(); resolve(change.value); }
        });
      });
      assert.deepEqual(await ann.request("join", [`side${tag}`], "on_joined"), [`side${tag}`]);
      assert.equal(await roomChanged, `side${tag}`);
      assert.equal(ann.entities.get(ann.me).attrs.room, `side${tag}`);
      const later = ann.expect("on_chat", { timeoutMs: 20_000 });
      bob.call("say", ["only the lobby hears this"]);
      await bob.expect("on_chat");
      ann.call("say", ["from the side room"]);
      assert.deepEqual(await later, [`ann${tag}`, `side${tag}`, "from the side room"]);
      // The server's refusals are typed errors with the call's code.
      await assert.rejects(ann.request("no_such_method", [], "on_never"), (e) => e instanceof WyrmError && e.code === ErrorCode.NO_SUCH_METHOD);
      await assert.rejects(ann.request("say", [], "on_chat", { entity: 2 ** 40 }), (e) => e instanceof WyrmError && e.codeName === "NO_SUCH_ENTITY");
      // A refusal the game expects comes as its reply.
      const other = await open(transport);
      const [ok, why] = await other.request("login", [`ann${tag}`, "wrong"], "on_login");
      assert.equal(ok, false);
      assert.match(String(why), /password|name/i);
      await other.close();
      assert.ok((await ann.ping()) >= 0);
    } finally {
      await ann.close();
      await bob.close();
    }
    assert.equal(ann.open, false);
    assert.throws(() => ann.call("say", ["gone"]), ConnectionClosedError);
  });
}

test("a server whose certificate is not trusted is refused, over tls:// and wss://", { timeout: 30_000 }, async () => {
  for (const transport of /** @type {const} */ (["tls", "wss"])) {
    await assert.rejects(connect(addresses[transport], { WebSocket }), (e) => {
      assert.ok(e instanceof ConnectionClosedError && /certificate/i.test(e.message), `${transport}: ${e}`);
      return true;
    });
  }
});
