// A small Wyrm client for Node (docs/protocol.md, version 3) over
// WebSocket: the frame codec, MessagePack for call arguments and attribute
// values, position sync, and a connection class that keeps the own entity
// and the positions of everything it sees. The codec follows the browser
// one in examples/arena/web/index.html (its PositionTable is a copy of the
// one here); it is written for Node 20, which has no global WebSocket, so
// the connection uses the `ws` package.

import WebSocket from "ws";

// ---------------------------------------------------------------------------
// MessagePack. Integers beyond Number.MAX_SAFE_INTEGER decode as BigInt;
// BigInt encodes as (u)int64. Maps decode to plain objects.
// ---------------------------------------------------------------------------

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/** Encodes `value` as MessagePack. */
export function msgpackEncode(value) {
  const out = [];
  const u8 = (b) => out.push(b & 0xff);
  const be = (n, bytes) => {
    for (let i = bytes - 1; i >= 0; i--) u8(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn));
  };
  const raw = (bytes) => { for (const b of bytes) out.push(b); };
  function enc(v) {
    if (v === null || v === undefined) return u8(0xc0);
    if (v === false) return u8(0xc2);
    if (v === true) return u8(0xc3);
    if (typeof v === "bigint") {
      if (v >= 0n) { u8(0xcf); return be(v, 8); }
      u8(0xd3); return be(BigInt.asUintN(64, v), 8);
    }
    if (typeof v === "number") {
      if (Number.isSafeInteger(v)) {
        if (v >= 0) {
          if (v < 0x80) return u8(v);
          if (v < 0x100) { u8(0xcc); return u8(v); }
          if (v < 0x10000) { u8(0xcd); return be(v, 2); }
          if (v < 0x100000000) { u8(0xce); return be(v, 4); }
          u8(0xcf); return be(v, 8);
        }
        if (v >= -32) return u8(v);
        if (v >= -0x80) { u8(0xd0); return u8(v); }
        if (v >= -0x8000) { u8(0xd1); return be(v & 0xffff, 2); }
        if (v >= -0x80000000) { u8(0xd2); return be(v >>> 0, 4); }
        u8(0xd3); return be(BigInt.asUintN(64, BigInt(v)), 8);
      }
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v);
      u8(0xcb); return raw(b);
    }
    if (typeof v === "string") {
      const b = te.encode(v), n = b.length;
      if (n < 32) u8(0xa0 | n);
      else if (n < 0x100) { u8(0xd9); u8(n); }
      else if (n < 0x10000) { u8(0xda); be(n, 2); }
      else { u8(0xdb); be(n, 4); }
      return raw(b);
    }
    if (v instanceof Uint8Array) {
      const n = v.length;
      if (n < 0x100) { u8(0xc4); u8(n); }
      else if (n < 0x10000) { u8(0xc5); be(n, 2); }
      else { u8(0xc6); be(n, 4); }
      return raw(v);
    }
    if (Array.isArray(v)) {
      const n = v.length;
      if (n < 16) u8(0x90 | n);
      else if (n < 0x10000) { u8(0xdc); be(n, 2); }
      else { u8(0xdd); be(n, 4); }
      return v.forEach(enc);
    }
    const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
    const n = entries.length;
    if (n < 16) u8(0x80 | n);
    else if (n < 0x10000) { u8(0xde); be(n, 2); }
    else { u8(0xdf); be(n, 4); }
    for (const [k, x] of entries) { enc(k); enc(x); }
  }
  enc(value);
  return new Uint8Array(out);
}

/** Decodes one MessagePack value at `pos`; returns `[value, nextPos]`. */
export function msgpackDecodeAt(bytes, pos) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  function need(n) { if (pos + n > bytes.length) throw new Error("MessagePack truncated"); }
  function u(n) {
    need(n); let r;
    if (n === 1) r = dv.getUint8(pos);
    else if (n === 2) r = dv.getUint16(pos);
    else if (n === 4) r = dv.getUint32(pos);
    else { r = dv.getBigUint64(pos); if (r <= BigInt(Number.MAX_SAFE_INTEGER)) r = Number(r); }
    pos += n; return r;
  }
  function i(n) {
    need(n); let r;
    if (n === 1) r = dv.getInt8(pos);
    else if (n === 2) r = dv.getInt16(pos);
    else if (n === 4) r = dv.getInt32(pos);
    else {
      r = dv.getBigInt64(pos);
      if (r >= BigInt(Number.MIN_SAFE_INTEGER) && r <= BigInt(Number.MAX_SAFE_INTEGER)) r = Number(r);
    }
    pos += n; return r;
  }
  function str(n) { need(n); const s = td.decode(bytes.subarray(pos, pos + n)); pos += n; return s; }
  function bin(n) { need(n); const b = bytes.slice(pos, pos + n); pos += n; return b; }
  function arr(n) { const a = []; for (let k = 0; k < n; k++) a.push(val()); return a; }
  function map(n) {
    const o = Object.create(null);
    for (let k = 0; k < n; k++) { const key = val(); o[String(key)] = val(); }
    return o;
  }
  function ext(n) { const type = i(1); return { ext: type, data: bin(n) }; }
  function val() {
    const m = u(1);
    if (m < 0x80) return m;
    if (m < 0x90) return map(m & 0x0f);
    if (m < 0xa0) return arr(m & 0x0f);
    if (m < 0xc0) return str(m & 0x1f);
    if (m >= 0xe0) return m - 0x100;
    switch (m) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u(1));
      case 0xc5: return bin(u(2));
      case 0xc6: return bin(u(4));
      case 0xc7: return ext(u(1));
      case 0xc8: return ext(u(2));
      case 0xc9: return ext(u(4));
      case 0xca: { need(4); const f = dv.getFloat32(pos); pos += 4; return f; }
      case 0xcb: { need(8); const f = dv.getFloat64(pos); pos += 8; return f; }
      case 0xcc: return u(1);
      case 0xcd: return u(2);
      case 0xce: return u(4);
      case 0xcf: return u(8);
      case 0xd0: return i(1);
      case 0xd1: return i(2);
      case 0xd2: return i(4);
      case 0xd3: return i(8);
      case 0xd4: return ext(1);
      case 0xd5: return ext(2);
      case 0xd6: return ext(4);
      case 0xd7: return ext(8);
      case 0xd8: return ext(16);
      case 0xd9: return str(u(1));
      case 0xda: return str(u(2));
      case 0xdb: return str(u(4));
      case 0xdc: return arr(u(2));
      case 0xdd: return arr(u(4));
      case 0xde: return map(u(2));
      case 0xdf: return map(u(4));
      default: throw new Error("MessagePack: unused marker 0x" + m.toString(16));
    }
  }
  const v = val();
  return [v, pos];
}

/** Decodes exactly one MessagePack value filling `bytes`. */
export function msgpackDecode(bytes) {
  const [v, end] = msgpackDecodeAt(bytes, 0);
  if (end !== bytes.length) throw new Error(`MessagePack: ${bytes.length - end} trailing bytes`);
  return v;
}

// ---------------------------------------------------------------------------
// Frames (docs/protocol.md §3, §4). Integers little-endian; str = u16
// length + UTF-8. Entity ids are Numbers here (they stay below 2^53).
// ---------------------------------------------------------------------------

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 3;

/** Error codes (docs/protocol.md §5). */
export const ERROR_NAMES = {
  1: "MALFORMED", 2: "FRAME_TOO_LARGE", 3: "NO_SUCH_ENTITY", 4: "NO_SUCH_METHOD",
  5: "NOT_ALLOWED", 6: "CALL_FAILED", 7: "PLUGIN_FAULT", 8: "OVERLOADED", 9: "INTERNAL",
  10: "UNSUPPORTED_VERSION",
  11: "TIMED_OUT",
};

function entityId(big) {
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`entity id ${big} is beyond 2^53`);
  return Number(big);
}

/** `0x04` Hello: the first frame of every connection. */
export function encodeHello(version) {
  const buf = new Uint8Array(3);
  buf[0] = 0x04;
  new DataView(buf.buffer).setUint16(1, version, true);
  return buf;
}

/** `0x01` Call: `method(args)` on `entity`. */
export function encodeCall(reqId, entity, method, args) {
  const m = te.encode(method), a = msgpackEncode(args);
  const buf = new Uint8Array(1 + 4 + 8 + 2 + m.length + a.length);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x01;
  dv.setUint32(1, reqId, true);
  dv.setBigUint64(5, BigInt(entity), true);
  dv.setUint16(13, m.length, true);
  buf.set(m, 15);
  buf.set(a, 15 + m.length);
  return buf;
}

/** `0x02` Ping. */
export function encodePing(nonce) {
  const buf = new Uint8Array(9);
  buf[0] = 0x02;
  new DataView(buf.buffer).setBigUint64(1, BigInt(nonce), true);
  return buf;
}

/** `0x03` Move: x, y, z, yaw as f32. */
export function encodeMove(x, y, z, yaw) {
  const buf = new Uint8Array(17);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x03;
  dv.setFloat32(1, x, true);
  dv.setFloat32(5, y, true);
  dv.setFloat32(9, z, true);
  dv.setFloat32(13, yaw, true);
  return buf;
}

/**
 * Decodes one server frame (type byte + body) into a plain object with a
 * `type` field; unknown frame types come back as `{type: "unknown"}` so a
 * client can skip them (§6). Throws on a malformed frame. `positions` is the
 * connection's PositionTable: Positions frames are applied to it (their
 * `entries` are the places they gave) and a Destroy frees the entity's slot.
 */
export function decodeServer(bytes, positions) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n, what) => { if (pos + n > bytes.length) throw new Error(`frame truncated at ${what}`); };
  const u8 = (w) => { need(1, w); return dv.getUint8(pos++); };
  const u16 = (w) => { need(2, w); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (w) => { need(4, w); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = (w) => { need(8, w); const v = dv.getBigUint64(pos, true); pos += 8; return v; };
  const id = (w) => entityId(u64(w));
  const str = (w) => {
    const n = u16(w); need(n, w);
    const s = td.decode(bytes.subarray(pos, pos + n)); pos += n; return s;
  };
  const rest = () => { const r = bytes.subarray(pos); pos = bytes.length; return r; };
  const type = u8("type");
  let f;
  switch (type) {
    case 0x80: f = { type: "welcome", version: u16("version"), maxFrame: u32("max_frame") }; break;
    case 0x81: {
      const reqId = u32("req_id"), code = u16("code");
      f = { type: "error", reqId, code, codeName: ERROR_NAMES[code] || `code ${code}`, message: str("message") };
      break;
    }
    case 0x82: {
      const entity = id("entity"), typeName = str("type"), own = u8("own") !== 0;
      f = { type: "create", entity, typeName, own, attrs: msgpackDecode(rest()) };
      break;
    }
    case 0x83: f = { type: "destroy", entity: id("entity") }; break;
    case 0x84: {
      const entity = id("entity"), method = str("method");
      f = { type: "call", entity, method, args: msgpackDecode(rest()) };
      break;
    }
    case 0x85: {
      const entity = id("entity"), op = u8("op");
      if (op > 2) throw new Error(`bad attr op ${op}`);
      const [path, after] = msgpackDecodeAt(bytes, pos);
      if (!Array.isArray(path)) throw new Error("attr path is not an array");
      pos = after;
      const value = op === 1 ? undefined : msgpackDecode(rest());
      f = { type: "attr", entity, op: ["set", "delete", "append"][op], path, value };
      break;
    }
    case 0x86: f = { type: "pong", nonce: u64("nonce") }; break;
    case 0x88: f = { type: "positions", entries: positions.apply(rest()) }; break;
    case 0x8a: f = { type: "viewReset" }; break;
    case 0x89: {
      const method = str("method");
      f = { type: "callOwn", method, args: msgpackDecode(rest()) };
      break;
    }
    default: return { type: "unknown", code: type };
  }
  if (pos !== bytes.length) throw new Error("trailing bytes after frame");
  if (f.type === "destroy") positions.forget(f.entity);
  if (f.type === "viewReset") positions.clear();
  return f;
}

// ---------------------------------------------------------------------------
// Position sync (docs/protocol.md §4, `0x88` Positions; the Rust reference is
// wyrm_protocol::PositionTable). Each connection keeps a table slot ->
// {entity, qx, qy, qz, qyaw} and entity -> slot; an entry binds a slot to an
// entity (absolute place) or updates a bound slot (differences). Quantized
// values are integers (exact as Numbers); a place is x = qx * 2^res, yaw =
// qyaw * 2π / 1024 in [0, 2π).
// ---------------------------------------------------------------------------

const YAW_STEPS = 1024;
const MAX_SLOT = 1 << 20;

export class PositionTable {
  constructor() {
    this.slots = [];
    this.slotOf = new Map();
  }

  // Applies the body of one Positions frame (what follows its type byte) and
  // returns the places it gave, [{entity, x, y, z, yaw}] in frame order.
  // Throws on a malformed body (the table may then hold part of it).
  apply(body) {
    let pos = 0;
    const byte = (w) => {
      if (pos >= body.length) throw new Error("positions truncated at " + w);
      return body[pos++];
    };
    // LEB128, at most 10 bytes (a u64): a BigInt when `big`, else a Number,
    // exact below 2^53 (the callers check far smaller ranges).
    const varint = (w, big) => {
      let v = big ? 0n : 0;
      for (let shift = 0; shift < 64; shift += 7) {
        const b = byte(w), bits = b & 0x7f;
        if (shift === 63 && bits > 1) break;
        v += big ? BigInt(bits) << BigInt(shift) : bits * 2 ** shift;
        if (b < 0x80) return v;
      }
      throw new Error("positions: bad varint at " + w);
    };
    // Zigzag: 0, 1, 2, 3, 4, ... stand for 0, -1, 1, -2, 2, ...
    const svarint = (w) => { const z = varint(w); return z % 2 === 1 ? -(z + 1) / 2 : z / 2; };
    const i32 = (v, w) => {
      if (!(v >= -0x80000000 && v <= 0x7fffffff)) throw new Error("positions: " + w + " out of range");
      return v;
    };
    const res = (byte("resolution") << 24) >> 24;
    if (res < -16 || res > 8) throw new Error("positions: bad resolution 2^" + res);
    const step = 2 ** res, out = [];
    let next = 0;
    while (pos < body.length) {
      const head = body[pos++];
      let skip = (head >> 4) & 7;
      if (skip === 7) skip += varint("slot skip");
      const slot = next + skip;
      if (slot > MAX_SLOT) throw new Error("positions: slot " + slot + " is beyond " + MAX_SLOT);
      next = slot + 1;
      let s;
      if (head & 0x80) {
        s = { entity: entityId(varint("entity", true)), qx: 0, qy: 0, qz: 0, qyaw: 0 };
        if (head & 1) s.qx = i32(svarint("x"), "x");
        if (head & 2) s.qy = i32(svarint("y"), "y");
        if (head & 4) s.qz = i32(svarint("z"), "z");
        if (head & 8) {
          s.qyaw = varint("yaw");
          if (s.qyaw >= YAW_STEPS) throw new Error("positions: yaw " + s.qyaw + " is not below " + YAW_STEPS);
        }
        this.bind(slot, s);
      } else {
        s = this.slots[slot];
        if (!s) throw new Error("positions: an update of slot " + slot + ", which holds no entity");
        if (head & 1) s.qx = i32(s.qx + svarint("x"), "x");
        if (head & 2) s.qy = i32(s.qy + svarint("y"), "y");
        if (head & 4) s.qz = i32(s.qz + svarint("z"), "z");
        if (head & 8) {
          const d = svarint("yaw");
          if (d < -YAW_STEPS / 2 || d > YAW_STEPS / 2) throw new Error("positions: yaw turn " + d + " out of range");
          s.qyaw = (((s.qyaw + d) % YAW_STEPS) + YAW_STEPS) % YAW_STEPS;
        }
      }
      out.push({ entity: s.entity, x: s.qx * step, y: s.qy * step, z: s.qz * step, yaw: (s.qyaw * 2 * Math.PI) / YAW_STEPS });
    }
    return out;
  }

  // Forgets every slot (a ViewReset: the view starts over).
  clear() {
    this.slots = [];
    this.slotOf = new Map();
  }

  // Forgets `entity` (destroyed in this connection's view): its slot is free.
  forget(entity) {
    const slot = this.slotOf.get(entity);
    if (slot === undefined) return;
    this.slotOf.delete(entity);
    this.slots[slot] = null;
  }

  // Puts `s` in `slot`, replacing what it held and taking its entity out of
  // any other slot.
  bind(slot, s) {
    const old = this.slots[slot];
    if (old && old.entity !== s.entity) this.slotOf.delete(old.entity);
    const prev = this.slotOf.get(s.entity);
    if (prev !== undefined && prev !== slot) this.slots[prev] = null;
    this.slots[slot] = s;
    this.slotOf.set(s.entity, slot);
  }
}

// ---------------------------------------------------------------------------
// A connection.
// ---------------------------------------------------------------------------

/**
 * One client connection over WebSocket (`ws://host:port/ws`). Keeps what a
 * game client keeps: its own entity, the entities it sees (`entities`: id
 * -> {type, attrs, x, y, z, yaw}), the connection's position table. Hooks:
 * `onFrame(f)` for every frame (a CallOwn comes as a `call` on the own
 * entity), `onPositions(entries)` after positions are applied, `onClose()`.
 */
export class WyrmClient {
  /** Connects and resolves once `Welcome` and the own entity have arrived. */
  static connect(url, { timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const c = new WyrmClient(url);
      const timer = setTimeout(() => { c.close(); reject(new Error(`no own entity from ${url} within ${timeoutMs} ms`)); }, timeoutMs);
      c._ready = () => { clearTimeout(timer); resolve(c); };
      c._fail = (e) => { clearTimeout(timer); reject(e); };
    });
  }

  constructor(url) {
    this.url = url;
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.ws.binaryType = "nodebuffer";
    this.version = null;
    this.me = null;
    this.entities = new Map();
    this.positions = new PositionTable();
    this.errors = [];
    this.reqId = 0;
    this.open = false;
    this.onFrame = null;
    this.onPositions = null;
    this.onClose = null;
    this._ready = null;
    this._fail = null;
    this._gaveUp = false;
    this.ws.on("open", () => {
      this.open = true;
      this.send(encodeHello(PROTOCOL_VERSION));
    });
    this.ws.on("message", (data, isBinary) => {
      if (this._gaveUp) return;
      if (!isBinary) { this._problem(new Error("text message from the server")); return; }
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let f;
      try { f = decodeServer(bytes, this.positions); } catch (e) { this._problem(e); return; }
      this._handle(f);
    });
    this.ws.on("error", (e) => this._problem(e));
    this.ws.on("close", () => {
      this.open = false;
      if (this._fail) { this._fail(new Error(`connection to ${url} closed before the own entity came`)); this._fail = null; this._ready = null; }
      if (this.onClose) this.onClose();
    });
  }

  _problem(e) {
    this.errors.push(String(e && e.message ? e.message : e));
    if (this._fail) { const fail = this._fail; this._fail = null; this._ready = null; fail(e); }
  }

  /** Stops for good (the server speaks another protocol): says why, closes. */
  _giveUp(e) {
    this._gaveUp = true;
    this._problem(e);
    this.close();
  }

  _handle(f) {
    switch (f.type) {
      case "welcome":
        this.version = f.version;
        if (f.version !== PROTOCOL_VERSION) this._giveUp(new Error(`server speaks protocol ${f.version}, this client speaks ${PROTOCOL_VERSION}`));
        break;
      case "create":
        this.entities.set(f.entity, { type: f.typeName, attrs: f.attrs, x: 0, y: 0, z: 0, yaw: 0 });
        if (f.own) {
          this.me = f.entity;
          if (this._ready) { const ready = this._ready; this._ready = null; this._fail = null; ready(); }
        }
        break;
      case "destroy":
        this.entities.delete(f.entity);
        break;
      case "viewReset":
        this.entities.clear();
        break;
      case "positions":
        for (const p of f.entries) {
          const e = this.entities.get(p.entity);
          if (e) { e.x = p.x; e.y = p.y; e.z = p.z; e.yaw = p.yaw; }
        }
        if (this.onPositions) this.onPositions(f.entries);
        break;
      case "callOwn":
        f = { type: "call", entity: this.me, method: f.method, args: f.args };
        break;
      case "error":
        // UNSUPPORTED_VERSION: the server closes the connection after it.
        if (f.code === 10) this._giveUp(new Error(`server refused protocol ${PROTOCOL_VERSION}: ${f.message}`));
        else this.errors.push(`${f.codeName}: ${f.message}`);
        break;
      default:
        break;
    }
    if (this.onFrame) this.onFrame(f);
  }

  /** Sends a raw frame; false when the connection is not open. */
  send(bytes) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(bytes, { binary: true });
    return true;
  }

  /** Calls `method(...args)` on the own entity; returns the req_id. */
  call(method, args = []) {
    const reqId = ++this.reqId;
    this.send(encodeCall(reqId, this.me, method, args));
    return reqId;
  }

  /** Moves the own entity. */
  move(x, y, z = 0, yaw = 0) {
    return this.send(encodeMove(x, y, z, yaw));
  }

  /** Sends a ping. */
  ping(nonce) {
    return this.send(encodePing(nonce));
  }

  /** Closes the connection; resolves when it is closed. */
  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) { resolve(); return; }
      this.ws.once("close", () => resolve());
      try { this.ws.close(); } catch { resolve(); }
      // A peer that does not answer the close handshake: cut it.
      setTimeout(() => { try { this.ws.terminate(); } catch { /* already gone */ } resolve(); }, 2000).unref();
    });
  }
}
