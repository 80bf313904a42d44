// Bytes a client receives with and without compression, on the examples'
// real traffic: N chatters log in (each gets the lobby's history) and talk;
// N arena players log in, walk and shoot. Prints one line per run.
//
//   node client-ts/bench/traffic.mjs chat ws://127.0.0.1:8080/ws [players]
//   node client-ts/bench/traffic.mjs arena ws://127.0.0.1:8090/ws [players]

import WebSocket from "ws";
import { connect } from "../src/index.js";

const [kind, url, n = "20"] = process.argv.slice(2);
const players = Number(n);
const tag = `${process.pid % 10000}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(compression) {
  const clients = [];
  let bytes = 0, frames = 0, packed = 0;
  for (let i = 0; i < players; i++) {
    const c = await connect(url, { WebSocket, compression });
    c.on("received", (b) => { bytes += b.length; frames++; if (b[0] === 0x8b) packed++; });
    clients.push(c);
    const name = `${compression ? "z" : "p"}${tag}${i}`;
    if (kind === "chat") {
      await c.request("register", [name, "pw-secret"], "on_register");
      await c.request("login", [name, "pw-secret"], "on_login");
      for (let k = 0; k < 5; k++) c.call("say", [`line ${k} from ${name}: anyone up for a round in the arena?`]);
    } else {
      c.call("login", [name]);
    }
  }
  if (kind === "arena") {
    await sleep(500);
    for (let t = 0; t < 60; t++) {
      for (const c of clients) {
        const me = c.entities.get(c.me);
        if (me && me.placed) c.move(me.x + Math.cos(t / 5) * 10, me.y + Math.sin(t / 5) * 10, 0, t / 5);
        if (t % 10 === 0) c.call("shoot", [1, 0]);
      }
      await sleep(50);
    }
  }
  await sleep(1000);
  for (const c of clients) await c.close();
  return { bytes, frames, packed };
}

const off = await run(false);
const on = await run(true);
console.log(JSON.stringify({ kind, players, off, on, saved_pct: +(100 * (1 - on.bytes / off.bytes)).toFixed(1) }));
