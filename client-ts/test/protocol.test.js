// Tests of the SDK's codec without a server: the Positions decoder (the
// examples in docs/protocol.md §4 and protocol/src/positions.rs, malformed
// bodies, and random frames from an encoder that mirrors the Rust
// `PositionsWriter`), MessagePack, attribute changes, the other frames,
// and a connection against a stand-in WebSocket server.
//
//   node --test client-ts/test/

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { lz4Decompress } from "../src/lz4.js";
import {
  PositionTable, ProtocolError, WyrmError, ConnectionClosedError, ErrorCode, applyAttr, connect, decodeServer,
  encodeCall, encodeHello, msgpack,
} from "../src/index.js";

// Maps decode without a prototype: this makes them plain to compare.
const plain = (v) => {
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
};
const hex = (s) => Uint8Array.from(s.trim().split(/\s+/), (b) => parseInt(b, 16));
const TAU = 2 * Math.PI;

// ---------------------------------------------------------------------------
// Encoding, as the server does it (protocol/src/positions.rs)
// ---------------------------------------------------------------------------

function putVarint(out, v) {
  // v: a Number (exact below 2^53) or a BigInt.
  let b = BigInt(v);
  while (b >= 0x80n) { out.push(Number(b & 0x7fn) | 0x80); b >>= 7n; }
  out.push(Number(b));
}
const putSigned = (out, v) => putVarint(out, v >= 0 ? 2 * v : -2 * v - 1);

function yawDelta(from, to) {
  const d = (((to - from) % 1024) + 1024) % 1024;
  return d >= 512 ? d - 1024 : d;
}

let skipEscapes = 0; // entries written with a skip of 7 or more

/** Mirrors `PositionsWriter`: bind/update with ascending slots. */
class Writer {
  constructor(res) { this.out = [0x88, res & 0xff]; this.next = 0; }
  head(slot, flags) {
    assert.ok(slot >= this.next, "slots must ascend");
    const skip = slot - this.next;
    this.next = slot + 1;
    if (skip < 7) this.out.push(flags | (skip << 4));
    else { this.out.push(flags | (7 << 4)); putVarint(this.out, skip - 7); skipEscapes++; }
  }
  bind(slot, entity, q) {
    const mask = (q.x !== 0) * 1 + (q.y !== 0) * 2 + (q.z !== 0) * 4 + (q.yaw !== 0) * 8;
    this.head(slot, 0x80 | mask);
    putVarint(this.out, entity);
    if (q.x !== 0) putSigned(this.out, q.x);
    if (q.y !== 0) putSigned(this.out, q.y);
    if (q.z !== 0) putSigned(this.out, q.z);
    if (q.yaw !== 0) putVarint(this.out, q.yaw);
  }
  update(slot, from, to) {
    const dx = from.x !== to.x, dy = from.y !== to.y, dz = from.z !== to.z, dyaw = from.yaw !== to.yaw;
    if (!dx && !dy && !dz && !dyaw) return false;
    this.head(slot, dx * 1 + dy * 2 + dz * 4 + dyaw * 8);
    if (dx) putSigned(this.out, to.x - from.x);
    if (dy) putSigned(this.out, to.y - from.y);
    if (dz) putSigned(this.out, to.z - from.z);
    if (dyaw) putSigned(this.out, yawDelta(from.yaw, to.yaw));
    return true;
  }
  frame() { return Uint8Array.from(this.out); }
}

function destroyFrame(entity) {
  const b = new Uint8Array(9);
  b[0] = 0x83;
  new DataView(b.buffer).setBigUint64(1, BigInt(entity), true);
  return b;
}

const q = (x, y, z, yaw) => ({ x, y, z, yaw });
const place = (entity, p, res) => ({ entity, x: p.x * 2 ** res, y: p.y * 2 ** res, z: p.z * 2 ** res, yaw: (p.yaw * TAU) / 1024 });

// ---------------------------------------------------------------------------
// The Positions decoder
// ---------------------------------------------------------------------------

test("Hello is 04 03 00 in protocol 3", () => {
  assert.deepEqual([...encodeHello(3)], [0x04, 0x03, 0x00]);
});

test("a Compressed frame is the frame it holds; LZ4 input that lies is refused", () => {
  const t = new PositionTable();
  const inner = [...callOwn("x", ["abcabcabcabcabcabc"])];
  // Literals only (token 0xf0 and length bytes), which any LZ4 decoder reads.
  const literalsOnly = (bytes) => {
    const n = bytes.length, out = [];
    if (n < 15) out.push(n << 4);
    else { out.push(0xf0); let r = n - 15; while (r >= 255) { out.push(255); r -= 255; } out.push(r); }
    return [...out, ...bytes];
  };
  const frame = (codec, size, data) => Uint8Array.from([0x8b, codec, size & 0xff, (size >> 8) & 0xff, 0, 0, ...data]);
  assert.deepEqual(decodeServer(frame(1, inner.length, literalsOnly(inner)), t), { type: "callOwn", method: "x", args: ["abcabcabcabcabcabc"] });
  // A match: "abc", then 15 copied from 3 back, overlapping what it writes.
  const text = new TextEncoder().encode("abcabcabcabcabcabc");
  const matched = [0x3b, 0x61, 0x62, 0x63, 0x03, 0x00];
  assert.deepEqual(lz4Decompress(Uint8Array.from(matched), 18), text);
  assert.throws(() => lz4Decompress(Uint8Array.from([0x3b, 0x61, 0x62, 0x63, 0x04, 0x00]), 18), /reaches before the start/);
  assert.throws(() => lz4Decompress(Uint8Array.from(matched), 17), /past the output/);
  assert.throws(() => lz4Decompress(Uint8Array.from(matched), 19), /not the 19 said/);
  assert.throws(() => lz4Decompress(Uint8Array.from([0xf0]), 10), /past the end/);
});

test("the example in docs/protocol.md §4", () => {
  const t = new PositionTable();
  const f = decodeServer(hex("88 fb 83 2a 80 05 7f 8b ac 02 20 40 80 04"), t);
  assert.equal(f.type, "positions");
  assert.deepEqual(f.entries, [
    { entity: 42, x: 10, y: -2, z: 0, yaw: 0 },
    { entity: 300, x: 0.5, y: 1, z: 0, yaw: Math.PI },
  ]);
  const g = decodeServer(hex("88 fb 11 10"), t);
  assert.deepEqual(g.entries, [{ entity: 300, x: 0.75, y: 1, z: 0, yaw: Math.PI }]);
  // Nothing else moved: entity 42 is where it was.
  assert.deepEqual(t.slots[0], { entity: 42, qx: 320, qy: -64, qz: 0, qyaw: 0 });
  // The writer here makes the same bytes.
  const w = new Writer(-5);
  w.bind(0, 42, q(320, -64, 0, 0));
  w.bind(1, 300, q(16, 32, 0, 512));
  assert.deepEqual([...w.frame()], [...hex("88 fb 83 2a 80 05 7f 8b ac 02 20 40 80 04")]);
  const u = new Writer(-5);
  u.update(1, q(16, 32, 0, 512), q(24, 32, 0, 512));
  assert.deepEqual([...u.frame()], [...hex("88 fb 11 10")]);
});

test("the byte example in positions.rs: skip, x and yaw wrapping past 1023", () => {
  const t = new PositionTable();
  const w = new Writer(-5);
  w.bind(0, 42, q(320, -64, 0, 0));
  w.bind(3, 7, q(1, 2, 3, 1023));
  decodeServer(w.frame(), t);
  const f = decodeServer(Uint8Array.from([0x88, 0xfb, (3 << 4) | 1 | 8, 8, 6]), t);
  assert.deepEqual(f.entries, [place(7, q(5, 2, 3, 2), -5)]);
  assert.deepEqual(f.entries[0], { entity: 7, x: 5 / 32, y: 2 / 32, z: 3 / 32, yaw: (2 * TAU) / 1024 });
});

test("a heading wraps the short way: 1020 -> 3 is +7, 3 -> 1020 is -7", () => {
  const t = new PositionTable();
  const w = new Writer(-5);
  w.bind(0, 9, q(0, 0, 0, 1020));
  decodeServer(w.frame(), t);
  const up = new Writer(-5);
  up.update(0, q(0, 0, 0, 1020), q(0, 0, 0, 3));
  assert.deepEqual([...up.frame()], [0x88, 0xfb, 0x08, 14]); // svarint +7
  assert.equal(decodeServer(up.frame(), t).entries[0].yaw, (3 * TAU) / 1024);
  const down = new Writer(-5);
  down.update(0, q(0, 0, 0, 3), q(0, 0, 0, 1020));
  assert.deepEqual([...down.frame()], [0x88, 0xfb, 0x08, 13]); // svarint -7
  assert.equal(decodeServer(down.frame(), t).entries[0].yaw, (1020 * TAU) / 1024);
});

test("rebinding moves an entity out of its old slot; Destroy frees its slot", () => {
  const t = new PositionTable();
  const w = new Writer(0);
  w.bind(0, 1, q(0, 0, 0, 0));
  w.bind(1, 2, q(1, 0, 0, 0));
  decodeServer(w.frame(), t);
  // Entity 1 moves to slot 5; slot 1 is given to entity 3.
  const w2 = new Writer(0);
  w2.bind(1, 3, q(1, 0, 0, 0));
  w2.bind(5, 1, q(5, 0, 0, 0));
  decodeServer(w2.frame(), t);
  assert.equal(t.slotOf.size, 2);
  assert.equal(t.slotOf.get(1), 5);
  assert.equal(t.slotOf.get(2), undefined);
  assert.ok(!t.slots[0]);
  const d = decodeServer(destroyFrame(3), t);
  assert.deepEqual(d, { type: "destroy", entity: 3 });
  assert.ok(!t.slots[1]);
  // An update of a slot that holds nothing is malformed.
  const w3 = new Writer(0);
  w3.update(1, q(0, 0, 0, 0), q(1, 0, 0, 0));
  assert.throws(() => decodeServer(w3.frame(), t), /holds no entity/);
  // ... and so is one of a slot never bound.
  assert.throws(() => decodeServer(hex("88 00 31 02"), new PositionTable()), /holds no entity/);
});

test("ViewReset (8a) forgets every slot", () => {
  const t = new PositionTable();
  const w = new Writer(0);
  w.bind(0, 1, q(0, 0, 0, 0));
  w.bind(3, 2, q(1, 0, 0, 0));
  decodeServer(w.frame(), t);
  assert.deepEqual(decodeServer(hex("8a"), t), { type: "viewReset" });
  assert.equal(t.slotOf.size, 0);
  assert.ok(!t.slots[0] && !t.slots[3]);
  // An update of a slot from before the reset is malformed now.
  const w2 = new Writer(0);
  w2.update(0, q(0, 0, 0, 0), q(1, 0, 0, 0));
  assert.throws(() => decodeServer(w2.frame(), t), /holds no entity/);
});

test("large skips, extreme values, an empty frame", () => {
  const t = new PositionTable();
  const w = new Writer(0);
  w.bind(1000, 2 ** 53 - 1, q(-(2 ** 31), 2 ** 31 - 1, -1, 512));
  w.bind(1001, 5, q(0, 0, 0, 0));
  const f = decodeServer(w.frame(), t);
  assert.deepEqual(f.entries, [
    { entity: 2 ** 53 - 1, x: -(2 ** 31), y: 2 ** 31 - 1, z: -1, yaw: Math.PI },
    { entity: 5, x: 0, y: 0, z: 0, yaw: 0 },
  ]);
  assert.deepEqual(decodeServer(hex("88 fb"), t).entries, []);
  // Resolution 2^8 and 2^-16.
  const c = new Writer(8);
  c.update(1000, q(-(2 ** 31), 2 ** 31 - 1, -1, 512), q(3, 2 ** 31 - 1, -1, 512));
  assert.equal(decodeServer(c.frame(), t).entries[0].x, 3 * 256);
  const fine = new Writer(-16);
  fine.update(1001, q(0, 0, 0, 0), q(1, 0, 0, 1023));
  assert.deepEqual(decodeServer(fine.frame(), t).entries[0], { entity: 5, x: 2 ** -16, y: 0, z: 0, yaw: (1023 * TAU) / 1024 });
});

test("malformed Positions bodies are refused", () => {
  const bad = (bytes, re, t = new PositionTable()) => assert.throws(() => decodeServer(hex(bytes), t), re);
  bad("88", /truncated at resolution/);
  bad("88 09", /resolution/); // 2^9
  bad("88 ef", /resolution/); // 2^-17
  bad("88 00 81", /truncated at entity/);
  bad("88 00 81 2a", /truncated at x/);
  bad("88 00 88 2a", /truncated at yaw/);
  bad("88 00 88 2a 80 08", /yaw 1024/); // a bind's yaw must be below 1024
  bad("88 00 81 2a 80 80 80 80 10", /x out of range/); // 2^31 is not an i32
  bad("88 00 f0 80 80 40", /slot/); // skip 7 + 2^20
  bad("88 00 80 ff ff ff ff ff ff ff ff ff 01", /beyond 2\^53/); // entity u64::MAX
  bad("88 00 80 ff ff ff ff ff ff ff ff ff 02", /bad varint/); // bits past 64
  bad("88 00 80 ff ff ff ff ff ff ff ff ff ff 01", /bad varint/); // 11 bytes
  const t = new PositionTable();
  decodeServer(hex("88 00 80 01"), t); // slot 0: entity 1 at the origin
  bad("88 00 08 82 08", /yaw turn 513/, t);
  bad("88 00 01 81 80 80 80 10", /x out of range/, t); // 0 - 2^31 - 1
  // -512 and 512 are both turns half way round.
  assert.equal(decodeServer(hex("88 00 08 80 08"), t).entries[0].yaw, Math.PI);
  assert.equal(decodeServer(hex("88 00 08 ff 07"), t).entries[0].yaw, 0);
});

// A small deterministic PRNG (mulberry32), so a failure can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("random binds, updates, rebinds and Destroys decode as written", () => {
  const seed = Number(process.env.SEED ?? 20240611);
  const r = rng(seed);
  const int = (n) => Math.floor(r() * n);
  const pick = (xs) => xs[int(xs.length)];
  const I32_MIN = -(2 ** 31), I32_MAX = 2 ** 31 - 1;
  const clampI32 = (v) => Math.max(I32_MIN, Math.min(I32_MAX, v));
  const coord = () => (r() < 0.1 ? pick([I32_MIN, I32_MAX, 0, -1, 1]) : int(200001) - 100000);
  const randomQ = () => q(r() < 0.2 ? 0 : coord(), r() < 0.2 ? 0 : coord(), r() < 0.6 ? 0 : coord(), r() < 0.2 ? 0 : int(1024));
  const moved = (p) => {
    const n = { ...p };
    const d = () => (r() < 0.7 ? int(129) - 64 : r() < 0.5 ? int(2 ** 20) - 2 ** 19 : int(2 ** 33) - 2 ** 32);
    if (r() < 0.6) n.x = clampI32(n.x + d());
    if (r() < 0.6) n.y = clampI32(n.y + d());
    if (r() < 0.15) n.z = clampI32(n.z + d());
    if (r() < 0.4) n.yaw = r() < 0.2 ? pick([0, 3, 1020, 1023, 511, 512, 513]) : (n.yaw + int(1024)) % 1024;
    return n;
  };
  let nextEntity = 1;
  const newEntity = () => (r() < 0.05 ? 2 ** 53 - 1 - int(1000) : nextEntity++);

  // What the server last sent this connection: slot -> {entity, q}.
  const sent = new Map();
  const slotOf = new Map();
  const t = new PositionTable();
  let ops = 0, frames = 0, destroys = 0, rebinds = 0;
  const escapesBefore = skipEscapes;

  for (let round = 0; round < 2000; round++) {
    if (sent.size > 0 && r() < 0.15) {
      // A Destroy of a placed entity (or, now and then, of one never placed).
      const entity = r() < 0.9 ? pick([...slotOf.keys()]) : 2 ** 40 + round;
      const slot = slotOf.get(entity);
      if (slot !== undefined) { sent.delete(slot); slotOf.delete(entity); }
      assert.deepEqual(decodeServer(destroyFrame(entity), t), { type: "destroy", entity });
      destroys++; ops++;
    } else {
      // One Positions frame: some slots, each at most once, ascending.
      const res = int(25) - 16;
      const w = new Writer(res);
      const expected = [];
      const maxSlot = r() < 0.05 ? 5000 : 40;
      const slots = new Set();
      const n = 1 + int(8);
      for (let k = 0; k < n; k++) slots.add(r() < 0.5 && sent.size ? pick([...sent.keys()]) : int(maxSlot));
      for (const slot of [...slots].sort((a, b) => a - b)) {
        const held = sent.get(slot);
        const roll = r();
        let entity, to;
        if (held && roll < 0.75) {
          // Update (possibly with nothing changed: no entry).
          to = r() < 0.1 ? held.q : moved(held.q);
          if (w.update(slot, held.q, to)) expected.push(place(held.entity, to, res));
          held.q = to;
          ops++;
          continue;
        }
        // Bind: a new entity, or one already placed elsewhere (it moves to
        // this slot), replacing whatever the slot held.
        if (slotOf.size && r() < 0.3) { entity = pick([...slotOf.keys()]); rebinds++; } else entity = newEntity();
        to = randomQ();
        if (held) slotOf.delete(held.entity);
        const prev = slotOf.get(entity);
        if (prev !== undefined && prev !== slot) sent.delete(prev);
        sent.set(slot, { entity, q: to });
        slotOf.set(entity, slot);
        w.bind(slot, entity, to);
        expected.push(place(entity, to, res));
        ops++;
      }
      const f = decodeServer(w.frame(), t);
      assert.equal(f.type, "positions");
      assert.deepEqual(f.entries, expected, `seed ${seed}, round ${round}`);
      for (const e of f.entries) assert.ok(e.yaw >= 0 && e.yaw < TAU);
      frames++;
    }
    // The decoder's table is the server's view of this connection.
    assert.equal(t.slotOf.size, slotOf.size, `seed ${seed}, round ${round}`);
    for (const [entity, slot] of slotOf) {
      assert.equal(t.slotOf.get(entity), slot);
      const s = sent.get(slot);
      assert.deepEqual(t.slots[slot], { entity, qx: s.q.x, qy: s.q.y, qz: s.q.z, qyaw: s.q.yaw });
    }
    const bound = t.slots.filter(Boolean).length;
    assert.equal(bound, sent.size);
  }
  const skips = skipEscapes - escapesBefore;
  assert.ok(ops > 5000 && frames > 1000 && destroys > 100 && rebinds > 100 && skips > 100, JSON.stringify({ ops, frames, destroys, rebinds, skips }));
});

test("CallOwn decodes to a method and its arguments", () => {
  const args = msgpack.encode(["ann", "lobby", "hi"]);
  const bytes = Uint8Array.from([0x89, 7, 0, ...new TextEncoder().encode("on_chat"), ...args]);
  assert.deepEqual(decodeServer(bytes, new PositionTable()), { type: "callOwn", method: "on_chat", args: ["ann", "lobby", "hi"] });
  assert.throws(() => decodeServer(Uint8Array.from([0x89, 7, 0, 0x61]), new PositionTable()), /truncated/);
});

// ---------------------------------------------------------------------------
// MessagePack, attributes, the other frames
// ---------------------------------------------------------------------------

test("MessagePack round-trips every kind of value, in the shortest form", () => {
  const values = [
    null, true, false, 0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
    2n ** 64n - 1n, -(2n ** 63n), 0.5, -1.25, 1e300, "", "a", "x".repeat(31), "x".repeat(32), "é".repeat(200),
    "y".repeat(70000), new Uint8Array([1, 2, 3]), new Uint8Array(300), [], [1, [2, [3]]], Array.from({ length: 20 }, (_, i) => i),
    { a: 1, b: { c: [null, "d"] } }, { ext: 5, data: new Uint8Array([1, 2, 3, 4]) }, { ext: -1, data: new Uint8Array(3) },
  ];
  for (const v of values) {
    const back = msgpack.decode(msgpack.encode(v));
    assert.deepEqual(plain(back), v);
  }
  const sizes = [[0, 1], [127, 1], [128, 2], [-32, 1], [-33, 2], [256, 3], [65536, 5], [2 ** 32, 9], [0.5, 9], ["a", 2]];
  for (const [v, n] of sizes) assert.equal(msgpack.encode(v).length, n, `${v}`);
  // A Map keeps its keys as they are.
  assert.deepEqual([...msgpack.encode(new Map([[1, "a"]]))], [0x81, 0x01, 0xa1, 0x61]);
  assert.throws(() => msgpack.decode(hex("92 01")), /truncated/);
  assert.throws(() => msgpack.decode(hex("01 02")), /trailing/);
  assert.throws(() => msgpack.decode(hex("c1")), /unused marker/);
  assert.throws(() => msgpack.decode(hex("dd ff ff ff ff")), /truncated/, "a count past the input");
  assert.throws(() => msgpack.decode(new Uint8Array(600).fill(0x91)), /deeper/);
  assert.throws(() => msgpack.decode(hex("a2 c3 28")), TypeError, "invalid UTF-8");
});

test("attribute changes follow the server's rules", () => {
  let t = applyAttr(Object.create(null), "set", ["a", "b"], 1);
  assert.deepEqual(plain(t), { a: { b: 1 } });
  t = applyAttr(t, "append", ["list"], "x");
  t = applyAttr(t, "append", ["list"], "y");
  assert.deepEqual(t.list, ["x", "y"]);
  t = applyAttr(t, "set", ["list", 1], "z");
  assert.deepEqual(t.list, ["x", "z"]);
  assert.throws(() => applyAttr(t, "set", ["list", 2], "w"), /past the end/);
  t = applyAttr(t, "delete", ["list", 0], undefined);
  assert.deepEqual(t.list, ["z"]);
  // Deleting what is not there changes nothing.
  assert.equal(applyAttr(t, "delete", ["nope", "deeper"], undefined), t);
  t = applyAttr(t, "delete", ["a"], undefined);
  assert.deepEqual(Object.keys(t), ["list"]);
  assert.throws(() => applyAttr(t, "append", ["list", 0], 1), /non-list/);
  assert.deepEqual(applyAttr(t, "set", [], [1]), [1]);
});

test("Call, Hello and the frames a server sends decode as docs/protocol.md §8 shows", () => {
  // say("hello") on entity 42, req_id 1.
  assert.deepEqual([...encodeCall(1, 42, "say", ["hello"])], [...hex("01 01 00 00 00 2a 00 00 00 00 00 00 00 03 00 73 61 79 91 a5 68 65 6c 6c 6f")]);
  const t = new PositionTable();
  assert.deepEqual(decodeServer(hex("80 03 00 00 00 01 00"), t), { type: "welcome", version: 3, maxFrame: 65536, compress: null, compressMin: 0 });
  // Protocol 4: options follow, a map.
  assert.deepEqual(
    plain(decodeServer(Uint8Array.from([0x80, 4, 0, 0, 0, 1, 0, ...msgpack.encode({ compress: "lz4", compress_min: 256, later: 1 })]), t)),
    { type: "welcome", version: 4, maxFrame: 65536, compress: "lz4", compressMin: 256 },
  );
  assert.deepEqual([...encodeHello(3)], [0x04, 0x03, 0x00]);
  assert.deepEqual([...encodeHello(4, { compress: ["lz4"] })], [...hex("04 04 00 81 a8 63 6f 6d 70 72 65 73 73 91 a3 6c 7a 34")]);
  const create = decodeServer(hex("82 2a 00 00 00 00 00 00 00 06 00 41 76 61 74 61 72 01 81 a4 6e 61 6d 65 a3 61 6e 6e"), t);
  assert.deepEqual(plain(create), { type: "create", entity: 42, typeName: "Avatar", own: true, attrs: { name: "ann" } });
  assert.deepEqual(decodeServer(hex("85 2a 00 00 00 00 00 00 00 00 91 a4 72 6f 6f 6d a5 6c 6f 62 62 79"), t),
    { type: "attr", entity: 42, op: "set", path: ["room"], value: "lobby" });
  assert.deepEqual(decodeServer(hex("85 2a 00 00 00 00 00 00 00 01 92 a4 72 6f 6f 6d 03"), t),
    { type: "attr", entity: 42, op: "delete", path: ["room", 3], value: undefined });
  assert.deepEqual(decodeServer(hex("81 01 00 00 00 04 00 0d 00 6e 6f 20 6d 65 74 68 6f 64 20 73 79 61"), t),
    { type: "error", reqId: 1, code: 4, codeName: "NO_SUCH_METHOD", message: "no method sya" });
  assert.deepEqual(decodeServer(hex("86 07 00 00 00 00 00 00 00"), t), { type: "pong", nonce: 7n });
  assert.deepEqual(decodeServer(hex("f0 01 02"), t), { type: "unknown", code: 0xf0 }, "an unknown type is skipped");
  // Malformed: each is refused with a ProtocolError.
  for (const [bytes, re] of [
    ["80 03 00 00", /truncated at max_frame/],
    ["80 04 00 00 00 01 00", /MessagePack/],
    ["80 04 00 00 00 01 00 91 01", /not a map/],
    ["8b 02 05 00 00 00 50 61 62 63 64 65", /codec 2/],
    ["8b 01 00 00 00 02 50 61 62 63 64 65", /of 33554432 bytes/],
    ["8b 01 05 00 00 00 50 61 62 63", /does not decompress/],
    ["8b 01 03 00 00 00 30 8b 00 00", /inside another/],
    ["83 2a 00 00 00 00 00 00 00 00", /trailing/],
    ["84 2a 00 00 00 00 00 00 00 01 00 61 01", /not an array/],
    ["85 2a 00 00 00 00 00 00 00 03 90", /bad attr op/],
    ["85 2a 00 00 00 00 00 00 00 00 a1 61 01", /path is not an array/],
    ["89 02 00 ff fe 90", /UTF-8/],
    ["82 2a 00 00 00 00 00 00 00 01 00 41 01 c1", /MessagePack/],
  ]) assert.throws(() => decodeServer(hex(bytes), t), (e) => e instanceof ProtocolError && re.test(e.message), bytes);
});

// ---------------------------------------------------------------------------
// A connection, against a stand-in server
// ---------------------------------------------------------------------------

// A Welcome; from protocol 4 with options (none: an empty map).
const welcome = (version) => Uint8Array.from([0x80, version & 0xff, version >> 8, 0, 0, 1, 0, ...(version >= 4 ? [0x80] : [])]);
function create(entity, type, own) {
  const t = new TextEncoder().encode(type);
  const b = new Uint8Array(1 + 8 + 2 + t.length + 1 + 1);
  const dv = new DataView(b.buffer);
  b[0] = 0x82;
  dv.setBigUint64(1, BigInt(entity), true);
  dv.setUint16(9, t.length, true);
  b.set(t, 11);
  b[11 + t.length] = own ? 1 : 0;
  b[12 + t.length] = 0x80; // no attributes
  return b;
}
function errorFrame(code, message, reqId = 0) {
  const m = new TextEncoder().encode(message);
  const b = new Uint8Array(1 + 4 + 2 + 2 + m.length);
  const dv = new DataView(b.buffer);
  b[0] = 0x81;
  dv.setUint32(1, reqId, true);
  dv.setUint16(5, code, true);
  dv.setUint16(7, m.length, true);
  b.set(m, 9);
  return b;
}
function callOwn(method, args) {
  return Uint8Array.from([0x89, method.length, 0, ...new TextEncoder().encode(method), ...msgpack.encode(args)]);
}

/** A WebSocket server that runs `script(socket, firstFrame)` per connection. */
async function server(script) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.once("listening", resolve));
  wss.on("connection", (s) => {
    s.once("message", (data) => script(s, new Uint8Array(data)));
  });
  const close = () => new Promise((r) => { for (const s of wss.clients) s.terminate(); wss.close(r); });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, close };
}

test("a connection says Hello first, keeps its view and answers requests", { timeout: 10000 }, async () => {
  let first = null;
  const srv = await server((s, hello) => {
    first = hello;
    s.send(welcome(4));
    s.send(create(42, "Player", true));
    s.send(create(300, "Player", false));
    s.on("message", (data) => {
      const f = new Uint8Array(data);
      if (f[0] === 0x02) {
        // A ping: the places, a call, a Destroy, a place again, the pong.
        for (const out of [hex("88 fb 83 2a 80 05 7f 8b ac 02 20 40 80 04"), callOwn("hit", [5]),
          hex("83 2c 01 00 00 00 00 00 00"), hex("88 fb 91 ac 02 20"), Uint8Array.from([0x86, ...f.subarray(1)])]) s.send(out);
      } else if (f[0] === 0x01) {
        // A call: "login" is answered on_login, "bad" refused with its req_id.
        const reqId = new DataView(f.buffer, f.byteOffset).getUint32(1, true);
        const method = new TextDecoder().decode(f.subarray(15, 15 + f[13]));
        if (method === "login") s.send(callOwn("on_login", [true, ""]));
        else s.send(errorFrame(6, "no such name", reqId));
      }
    });
  });
  const c = await connect(srv.url, { WebSocket }).catch(async (e) => { await srv.close(); throw e; });
  try {
    const places = [], calls = [];
    c.on("positions", (entries) => places.push(entries));
    c.on("call", (call) => calls.push(call));
    const rtt = await c.ping();
    assert.ok(rtt >= 0);
    assert.deepEqual([...first], [...encodeHello(4, { compress: ["lz4"] })]);
    assert.equal(c.me, 42);
    assert.equal(c.maxFrame, 65536);
    assert.deepEqual(places[0].find((e) => e.entity === c.me), { entity: 42, x: 10, y: -2, z: 0, yaw: 0 });
    assert.deepEqual(calls, [{ entity: 42, method: "hit", args: [5], own: true }]);
    assert.deepEqual(places[1], [{ entity: 300, x: 0.5, y: 0, z: 0, yaw: 0 }]);
    const me = c.entities.get(42);
    assert.deepEqual({ ...me, attrs: null }, { id: 42, type: "Player", own: true, attrs: null, x: 10, y: -2, z: 0, yaw: 0, placed: true });
    assert.deepEqual(await c.request("login", ["ann"], "on_login"), [true, ""]);
    const errors = [];
    c.on("error", (e) => errors.push(e));
    await assert.rejects(c.request("bad", [], "on_bad"), (e) => e instanceof WyrmError && e.code === ErrorCode.CALL_FAILED && e.detail === "no such name");
    assert.equal(errors.length, 1, "an error event too");
  } finally {
    await c.close();
    await srv.close();
  }
});

test("what waits is told when the connection closes", { timeout: 10000 }, async () => {
  const srv = await server((s) => {
    s.send(welcome(4));
    s.send(create(1, "Player", true));
    s.on("message", () => s.terminate());
  });
  const c = await connect(srv.url, { WebSocket });
  try {
    const closed = new Promise((resolve) => c.on("close", resolve));
    await assert.rejects(c.request("login", [], "on_login"), ConnectionClosedError);
    assert.ok((await closed) instanceof ConnectionClosedError, "closed by the peer, not cleanly");
    assert.equal(c.open, false);
    assert.throws(() => c.call("again"), ConnectionClosedError);
  } finally {
    await srv.close();
  }
});

test("a server of another version is given up on, clearly", { timeout: 10000 }, async () => {
  const srv = await server((s) => { s.send(welcome(2)); s.send(hex("87 00 00")); });
  try {
    await assert.rejects(connect(srv.url, { WebSocket }), /the server speaks protocol 2; this client speaks 4/);
  } finally {
    await srv.close();
  }
});

test("UNSUPPORTED_VERSION is reported with its message", { timeout: 10000 }, async () => {
  const srv = await server((s) => {
    s.send(errorFrame(10, "this server speaks protocols 5 to 6; the client speaks 4"));
    s.close();
  });
  try {
    await assert.rejects(connect(srv.url, { WebSocket }), /refused protocol 4: this server speaks protocols 5 to 6/);
  } finally {
    await srv.close();
  }
});

test("an address that is not ws://, wss://, tcp:// or tls:// is refused", async () => {
  await assert.rejects(connect("http://127.0.0.1:1/"), /must start with ws:\/\/, wss:\/\/, tcp:\/\/ or tls:\/\//);
  await assert.rejects(connect("tcp://nohost"), /tcp:\/\/host:port/);
});
