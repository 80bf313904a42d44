// The Colyseus side of the benchmark: one room type, "bench", written the
// way the Colyseus documentation writes a room. Its state is a MapSchema of
// players with x and y; a client's "move" message sets its own player's x
// and y; Colyseus sends every client the state's changes every `patchRate`
// (50 ms = 20 Hz, its default, set explicitly here).
//
//   node colyseus-server.mjs [--port 2567] [--host 127.0.0.1]
//
// Prints one line `listening <port>` on stdout when it accepts clients.

import { Server, Room } from "colyseus";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { MapSchema, schema } from "@colyseus/schema";

/** The room's size: players start anywhere in [0, SIZE)². */
const SIZE = 1000;

const Player = schema({ x: "number", y: "number" }, "Player");
const BenchState = schema({ players: { map: Player } }, "BenchState");

class BenchRoom extends Room {
  onCreate() {
    this.state = new BenchState({ players: new MapSchema() });
    this.patchRate = 50;
    this.onMessage("move", (client, m) => {
      const p = this.state.players.get(client.sessionId);
      if (!p || typeof m !== "object" || m === null) return;
      if (Number.isFinite(m.x)) p.x = m.x;
      if (Number.isFinite(m.y)) p.y = m.y;
    });
  }

  onJoin(client) {
    this.state.players.set(
      client.sessionId,
      new Player({ x: Math.random() * SIZE, y: Math.random() * SIZE }),
    );
  }

  onLeave(client) {
    this.state.players.delete(client.sessionId);
  }
}

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("--port", "2567"));
const host = arg("--host", "127.0.0.1");

const gameServer = new Server({
  transport: new WebSocketTransport({ perMessageDeflate: false }),
  greet: false,
});
gameServer.define("bench", BenchRoom);
await gameServer.listen(port, host);
console.log(`listening ${port}`);
