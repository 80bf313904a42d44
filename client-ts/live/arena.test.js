// The SDK against a real Wyrm server running the arena example: spaces,
// areas of interest and positions. Started by tests/tests/client_ts.rs:
//
//   WYRM_ARENA_WS=ws://127.0.0.1:PORT/ws node --test client-ts/live/

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";

import { connect } from "../src/index.js";

const url = process.env.WYRM_ARENA_WS;
if (!url) throw new Error("WYRM_ARENA_WS is not set: run these through `cargo test -p wyrm-tests --test client_ts`");

/**
 * Resolves once `check()` holds, checking after each Positions frame.
 * @param {import("../src/index.js").Client} c
 * @param {() => boolean} check
 * @param {string} what
 */
function until(c, check, what, timeoutMs = 10_000) {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { stop(); reject(new Error(`${what}: not within ${timeoutMs} ms`)); }, timeoutMs);
    const stop = c.on("positions", () => {
      if (!check()) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
  });
}

test("two players in the arena see each other, and one's moves", { timeout: 30_000 }, async () => {
  const a = await connect(url, { WebSocket });
  const b = await connect(url, { WebSocket });
  try {
    for (const [c, name] of [[a, "ada"], [b, "bea"]]) {
      const field = new Promise((resolve) => {
        const stop = c.on("create", (view) => { if (view.type === "Field") { stop(); resolve(view); } });
      });
      c.call("login", [name]);
      const space = await field;
      assert.ok(space.attrs.width > 0 && space.attrs.height > 0);
    }
    const me = () => a.entities.get(/** @type {number} */ (a.me));
    await until(a, () => me()?.type === "Player" && me().placed, "a's own player placed");
    assert.equal(me().attrs.name, "ada");
    // b sees a (both start near the middle of an empty field) with the
    // attributes everyone may see, and not a's own-client ones.
    const seen = () => b.entities.get(/** @type {number} */ (a.me));
    await until(b, () => seen()?.placed === true, "b sees a");
    assert.equal(seen().attrs.name, "ada");
    assert.equal(seen().attrs.xp, undefined, "xp is a's own");
    assert.equal(typeof me().attrs.xp, "number");
    // a steps 10 units along x; b sees it land exactly (1/32 steps).
    const x = me().x + 10, y = me().y;
    assert.ok(a.move(x, y, 0, Math.PI / 2));
    await until(b, () => seen().x === Math.round(x * 32) / 32, "b sees a's move");
    assert.equal(seen().y, y);
    assert.ok(Math.abs(seen().yaw - Math.PI / 2) < (2 * Math.PI) / 1024);
    await until(a, () => me().x === seen().x, "a sees its own move");
    // A shot is seen by both as a call on the shooter.
    const shot = b.expect("shot");
    a.call("shoot", [1, 0]);
    const [x1] = /** @type {number[]} */ (await shot);
    assert.ok(Math.abs(x1 - seen().x) < 1, `the tracer starts at the shooter: ${x1}`);
    // a leaves: b's view drops it.
    const gone = new Promise((resolve) => b.on("destroy", (view) => { if (view.id === a.me) resolve(view); }));
    await a.close();
    assert.equal((await gone).attrs.name, "ada");
    assert.equal(b.entities.has(/** @type {number} */ (a.me)), false);
  } finally {
    await a.close();
    await b.close();
  }
});
