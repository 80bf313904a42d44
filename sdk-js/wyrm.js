// Wyrm's JavaScript helper: write a plugin as one `definePlugin({...})` call.
//
// This file is embedded in the `wyrm` binary and copied next to a plugin's
// `plugin.js` at build time (plugins import it as "./wyrm.js" and never carry
// a copy). It has no dependencies: a small MessagePack codec, the private
// state table, and `ctx`, a thin wrapper over the host imports that takes
// and gives plain JS values. It behaves like the Rust SDK's runtime
// (sdk-guest/src/runtime.rs); see README.md next to it.

import * as host from "wyrm:game/host@0.3.0";
import * as storage from "wyrm:game/storage@0.3.0";

export { host, storage };

// ---------------------------------------------------------------------------
// Errors

/** An error whose message goes back to the caller as is (a client gets it
 * as an error frame). Throwing a plain string does the same. */
export class WyrmError extends Error {
  constructor(message) {
    super(message);
    this.name = "WyrmError";
  }
}

// The bindings turn a thrown value with an own `payload` into the `err` case
// of a `result<_, string>` export; anything else would trap the instance.
function exportError(message) {
  const e = new Error(message);
  e.payload = String(message);
  return e;
}

// The message of anything a plugin (or the host) threw.
function messageOf(e) {
  if (typeof e === "string") return e;
  if (e && typeof e === "object" && Object.prototype.hasOwnProperty.call(e, "payload")) {
    return String(e.payload);
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

// Calls a host import that returns `result<T, string>`: its `err` arrives
// as a thrown value with the message in `payload`.
function hostTry(f) {
  try {
    return f();
  } catch (e) {
    throw new WyrmError(messageOf(e));
  }
}

// ---------------------------------------------------------------------------
// MessagePack
//
// Decoding: nil -> null, bool -> boolean, int -> number when it is a safe
// integer (|n| <= 2^53 - 1), else BigInt; float32/64 -> number; str ->
// string; bin -> Uint8Array; array -> Array; map -> plain object when every
// key is a string that JS would not reorder (not an array index like "7")
// and not repeated, else a Map (keeps any keys, in order); ext -> Ext.
//
// Encoding: null/undefined -> nil; integral numbers in [-2^63, 2^64) and
// BigInts -> int (smallest form); other numbers (and -0) -> float64;
// Uint8Array/ArrayBuffer -> bin; Array -> array; Map -> map; Ext -> ext;
// other objects -> map of their own enumerable string keys.

/** A MessagePack extension value: a type tag (-128..127) and raw bytes. */
export class Ext {
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
}

const MAX_DEPTH = 512;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();
const MIN_I64 = -(2n ** 63n);
const MAX_U64 = 2n ** 64n - 1n;
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  tagged(tag, size, write) {
    this.reserve(1 + size);
    this.buf[this.len] = tag;
    write(this.view, this.len + 1);
    this.len += 1 + size;
  }
  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  finish() {
    return this.buf.slice(0, this.len);
  }
}

function writeInt(w, n) {
  // n is a BigInt already range-checked.
  if (n >= 0n) {
    if (n < 128n) w.u8(Number(n));
    else if (n < 256n) w.tagged(0xcc, 1, (v, o) => v.setUint8(o, Number(n)));
    else if (n < 65536n) w.tagged(0xcd, 2, (v, o) => v.setUint16(o, Number(n)));
    else if (n < 4294967296n) w.tagged(0xce, 4, (v, o) => v.setUint32(o, Number(n)));
    else w.tagged(0xcf, 8, (v, o) => v.setBigUint64(o, n));
  } else {
    if (n >= -32n) w.u8(Number(n) & 0xff);
    else if (n >= -128n) w.tagged(0xd0, 1, (v, o) => v.setInt8(o, Number(n)));
    else if (n >= -32768n) w.tagged(0xd1, 2, (v, o) => v.setInt16(o, Number(n)));
    else if (n >= -2147483648n) w.tagged(0xd2, 4, (v, o) => v.setInt32(o, Number(n)));
    else w.tagged(0xd3, 8, (v, o) => v.setBigInt64(o, n));
  }
}

function writeLen(w, n, fix, fixMax, t8, t16, t32) {
  if (fix !== null && n <= fixMax) w.u8(fix | n);
  else if (t8 !== null && n < 256) w.tagged(t8, 1, (v, o) => v.setUint8(o, n));
  else if (n < 65536) w.tagged(t16, 2, (v, o) => v.setUint16(o, n));
  else w.tagged(t32, 4, (v, o) => v.setUint32(o, n));
}

function writeValue(w, x, depth) {
  if (depth > MAX_DEPTH) throw new WyrmError("cannot encode value: nested too deeply");
  if (x === null || x === undefined) return w.u8(0xc0);
  switch (typeof x) {
    case "boolean":
      return w.u8(x ? 0xc3 : 0xc2);
    case "number":
      if (Number.isInteger(x) && !Object.is(x, -0) && x >= -(2 ** 63) && x < 2 ** 64) {
        return writeInt(w, BigInt(x));
      }
      return w.tagged(0xcb, 8, (v, o) => v.setFloat64(o, x));
    case "bigint":
      if (x < MIN_I64 || x > MAX_U64) {
        throw new WyrmError(`cannot encode ${x}: MessagePack integers are 64-bit`);
      }
      return writeInt(w, x);
    case "string": {
      const b = utf8Encoder.encode(x);
      writeLen(w, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
      return w.bytes(b);
    }
    case "object":
      break;
    default:
      throw new WyrmError(`cannot encode a ${typeof x} as MessagePack`);
  }
  if (x instanceof Uint8Array || x instanceof ArrayBuffer || x instanceof DataView) {
    const b =
      x instanceof ArrayBuffer ? new Uint8Array(x) : new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    writeLen(w, b.length, null, 0, 0xc4, 0xc5, 0xc6);
    return w.bytes(b);
  }
  if (Array.isArray(x)) {
    writeLen(w, x.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const item of x) writeValue(w, item, depth + 1);
    return;
  }
  if (x instanceof Ext) {
    const n = x.data.length;
    const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
    if (fixed !== undefined) w.u8(fixed);
    else writeLen(w, n, null, 0, 0xc7, 0xc8, 0xc9);
    w.u8(x.type & 0xff);
    return w.bytes(x.data);
  }
  if (x instanceof Map) {
    writeLen(w, x.size, 0x80, 15, null, 0xde, 0xdf);
    for (const [k, v] of x) {
      writeValue(w, k, depth + 1);
      writeValue(w, v, depth + 1);
    }
    return;
  }
  const keys = Object.keys(x);
  writeLen(w, keys.length, 0x80, 15, null, 0xde, 0xdf);
  for (const k of keys) {
    writeValue(w, k, depth + 1);
    writeValue(w, x[k], depth + 1);
  }
}

/** Encodes a JS value as MessagePack bytes (a Uint8Array). */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value, 0);
  return w.finish();
}

class Reader {
  constructor(bytes) {
    this.b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.v = new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength);
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.b.length) throw new WyrmError("cannot decode value: truncated MessagePack");
    const at = this.pos;
    this.pos += n;
    return at;
  }
  // A container of n items needs at least n bytes more: refuse a length
  // that cannot fit before allocating for it.
  items(n) {
    if (n > this.b.length - this.pos) throw new WyrmError("cannot decode value: truncated MessagePack");
    return n;
  }
  bytes(n) {
    const at = this.need(n);
    return this.b.slice(at, at + n);
  }
}

function safeInt(n) {
  // n is a BigInt; small ones become numbers.
  return n >= -9007199254740991n && n <= 9007199254740991n ? Number(n) : n;
}

function readMap(r, n, depth) {
  n = r.items(n);
  const entries = [];
  let plain = true;
  const seen = new Set();
  for (let i = 0; i < n; i++) {
    const k = readValue(r, depth + 1);
    const v = readValue(r, depth + 1);
    if (typeof k !== "string" || ARRAY_INDEX.test(k) || seen.has(k)) plain = false;
    else seen.add(k);
    entries.push([k, v]);
  }
  if (!plain) return new Map(entries);
  const obj = {};
  for (const [k, v] of entries) {
    if (k === "__proto__") {
      Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
    } else {
      obj[k] = v;
    }
  }
  return obj;
}

function readArray(r, n, depth) {
  n = r.items(n);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1);
  return out;
}

function readStr(r, n) {
  const at = r.need(n);
  return utf8Decoder.decode(r.b.subarray(at, at + n));
}

function readExt(r, n) {
  const type = r.v.getInt8(r.need(1));
  return new Ext(type, r.bytes(n));
}

function readValue(r, depth) {
  if (depth > MAX_DEPTH) throw new WyrmError("cannot decode value: nested too deeply");
  const t = r.b[r.need(1)];
  if (t <= 0x7f) return t;
  if (t >= 0xe0) return t - 256;
  if (t <= 0x8f) return readMap(r, t & 0x0f, depth);
  if (t <= 0x9f) return readArray(r, t & 0x0f, depth);
  if (t <= 0xbf) return readStr(r, t & 0x1f);
  const v = r.v;
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.bytes(v.getUint8(r.need(1)));
    case 0xc5: return r.bytes(v.getUint16(r.need(2)));
    case 0xc6: return r.bytes(v.getUint32(r.need(4)));
    case 0xc7: return readExt(r, v.getUint8(r.need(1)));
    case 0xc8: return readExt(r, v.getUint16(r.need(2)));
    case 0xc9: return readExt(r, v.getUint32(r.need(4)));
    case 0xca: return v.getFloat32(r.need(4));
    case 0xcb: return v.getFloat64(r.need(8));
    case 0xcc: return v.getUint8(r.need(1));
    case 0xcd: return v.getUint16(r.need(2));
    case 0xce: return v.getUint32(r.need(4));
    case 0xcf: return safeInt(v.getBigUint64(r.need(8)));
    case 0xd0: return v.getInt8(r.need(1));
    case 0xd1: return v.getInt16(r.need(2));
    case 0xd2: return v.getInt32(r.need(4));
    case 0xd3: return safeInt(v.getBigInt64(r.need(8)));
    case 0xd4: return readExt(r, 1);
    case 0xd5: return readExt(r, 2);
    case 0xd6: return readExt(r, 4);
    case 0xd7: return readExt(r, 8);
    case 0xd8: return readExt(r, 16);
    case 0xd9: return readStr(r, v.getUint8(r.need(1)));
    case 0xda: return readStr(r, v.getUint16(r.need(2)));
    case 0xdb: return readStr(r, v.getUint32(r.need(4)));
    case 0xdc: return readArray(r, v.getUint16(r.need(2)), depth);
    case 0xdd: return readArray(r, v.getUint32(r.need(4)), depth);
    case 0xde: return readMap(r, v.getUint16(r.need(2)), depth);
    case 0xdf: return readMap(r, v.getUint32(r.need(4)), depth);
    default: throw new WyrmError(`cannot decode value: invalid MessagePack byte 0x${t.toString(16)}`);
  }
}

/** Decodes one MessagePack value from bytes; trailing bytes are an error. */
export function decode(bytes) {
  const r = new Reader(bytes);
  const value = readValue(r, 0);
  if (r.pos !== r.b.length) throw new WyrmError("cannot decode value: trailing bytes after MessagePack");
  return value;
}

// ---------------------------------------------------------------------------
// Host values

/** Turns an entity id (BigInt, or a safe integer number) into the BigInt
 * the host takes. */
export function toId(id) {
  if (typeof id === "bigint" && id >= 0n && id <= MAX_U64) return id;
  if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) return BigInt(id);
  throw new WyrmError(`not an entity id: ${String(id)}`);
}

function optId(id) {
  return id === undefined || id === null ? null : id;
}

// An attribute path: "name", or ["inventory", 0, "count"] (strings are map
// keys, numbers list indexes).
function toPath(path) {
  const steps = Array.isArray(path) ? path : [path];
  if (steps.length === 0 || typeof steps[0] !== "string") {
    throw new WyrmError("an attribute path starts with the attribute's name");
  }
  return steps.map((s) => {
    if (typeof s === "string") return { tag: "key", val: s };
    if (Number.isInteger(s) && s >= 0 && s <= 0xffffffff) return { tag: "index", val: s };
    throw new WyrmError(`bad attribute path step ${String(s)}: use a string key or a list index`);
  });
}

function toTags(filter) {
  const pairs = filter instanceof Map ? [...filter] : Array.isArray(filter) ? filter : Object.entries(filter);
  return pairs.map(([key, value]) => ({ key: String(key), value: String(value) }));
}

function toPos(p) {
  return { x: Number(p.x) || 0, y: Number(p.y) || 0, z: Number(p.z) || 0 };
}

function bytesOrNil(value) {
  return value === undefined ? new Uint8Array(0) : encode(value);
}

const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

// Where a new entity lives: `{ at: "here" }` (the default: this entity's
// game, readable and changeable in place at once) or `{ at: "anywhere" }`
// (whichever game the server chooses by load; reach it by messages).
const LOCALITIES = new Set(["here", "anywhere"]);

function toLocality(opts) {
  const at = opts === undefined || opts === null || opts.at === undefined ? "here" : opts.at;
  if (!LOCALITIES.has(at)) throw new WyrmError(`bad locality ${String(at)}: "here" or "anywhere"`);
  return at;
}

/** Writes a log line attributed to the plugin (level: "trace", "debug",
 * "info", "warn" or "error"). */
export function log(level, message) {
  host.log(LEVELS.has(level) ? level : "info", String(message));
}

// ---------------------------------------------------------------------------
// ctx: one entity's view of the host during one call

/** What a method or hook gets as its first argument: the entity (`id`,
 * `typeName`, `caller`), its private `state` (read it, change it, or
 * replace it), and the host's functions. Ids may be BigInt or number;
 * the host's ids come back as BigInt. */
export class Ctx {
  constructor(id, typeName, caller, state) {
    /** The entity's id (BigInt). */
    this.id = id;
    /** The entity's type name. */
    this.typeName = typeName;
    /** Who called: `{ kind: "server" | "own-client" | "other-client", entity: BigInt | null }`. */
    this.caller = caller;
    /** The entity's private state; replacing it is allowed. */
    this.state = state;
  }

  /** Whether a client (the owner or another) made this call. */
  get calledByClient() {
    return this.caller.kind !== "server";
  }

  // ---- entities ----
  /** Creates an entity; returns its id (BigInt). `opts.at`: "here" (the
   * default: on this entity's game) or "anywhere" (the server chooses by
   * load; read it with `askAttr`, not `getAttr`). */
  createEntity(typeName, attrs, opts = {}) {
    const at = toLocality(opts);
    return hostTry(() => host.createEntity(typeName, bytesOrNil(attrs), at));
  }
  destroyEntity(id = this.id) {
    hostTry(() => host.destroyEntity(toId(id)));
  }
  /** The type name of a live entity on this entity's game, or null (for
   * any entity: `askEntityType`). */
  entityType(id) {
    return host.entityType(toId(id)) ?? null;
  }
  /** Asks for the type name of entity `id`, wherever it lives: `method` is
   * called on this entity with `[error, typeName | null, context]`. */
  askEntityType(id, method, context = null) {
    host.askEntityType(toId(id), this.replyTo(method, context));
  }
  service(typeName) {
    return optId(host.service(typeName));
  }

  // ---- messages (args: an array of positional values) ----
  call(id, method, args = []) {
    host.callEntity(toId(id), method, encode(args));
  }
  callClient(method, args = []) {
    return host.callClient(this.id, method, encode(args));
  }
  callClientOf(id, method, args = []) {
    return host.callClient(toId(id), method, encode(args));
  }
  callFilteredClients(filter, method, args = []) {
    host.callFilteredClients(toTags(filter), method, encode(args));
  }
  broadcast(method, args = []) {
    host.broadcast(method, encode(args));
  }
  giveClientTo(from, to) {
    hostTry(() => host.giveClientTo(toId(from), toId(to)));
  }
  setClientTag(key, value, id = this.id) {
    hostTry(() => host.setClientTag(toId(id), key, String(value)));
  }
  removeClientTag(key, id = this.id) {
    hostTry(() => host.setClientTag(toId(id), key, undefined));
  }

  // ---- spaces (positions are {x, y, z}) ----
  createSpace(typeName, kind, attrs, opts = {}) {
    const at = toLocality(opts);
    return hostTry(() => host.createSpace(typeName, kind, bytesOrNil(attrs), at));
  }
  spaceKind(id) {
    return host.spaceKind(toId(id)) ?? null;
  }
  enterSpace(space, pos, yaw = 0, id = this.id) {
    hostTry(() => host.enterSpace(toId(id), toId(space), toPos(pos), yaw));
  }
  leaveSpace(id = this.id) {
    hostTry(() => host.leaveSpace(toId(id)));
  }
  setPosition(pos, yaw = 0, id = this.id) {
    hostTry(() => host.setPosition(toId(id), toPos(pos), yaw));
  }
  placement(id = this.id) {
    return host.placementOf(toId(id)) ?? null;
  }
  allowClientMoves(allowed, id = this.id) {
    hostTry(() => host.allowClientMoves(toId(id), Boolean(allowed)));
  }
  aoi(id = this.id) {
    return [...host.aoiOf(toId(id))];
  }
  entitiesNear(space, center, radius) {
    return [...host.entitiesNear(toId(space), toPos(center), radius)];
  }
  callAoiClients(method, args = [], id = this.id) {
    host.callAoiClients(toId(id), method, encode(args));
  }

  // ---- attributes (path: "name" or ["name", 0, "key"]) ----
  /** The value at `path`, or `undefined` when nothing is there. `id` must
   * be on this entity's game (for any entity: `askAttr`). */
  getAttr(path, id = this.id) {
    const bytes = hostTry(() => host.attrGet(toId(id), toPath(path)));
    return bytes === undefined || bytes === null ? undefined : decode(bytes);
  }
  /** Asks for the value at `path` of entity `id`, wherever it lives:
   * `method` is called on this entity with `[error, value, context]`
   * (value null when nothing is there). */
  askAttr(id, path, method, context = null) {
    host.askAttr(toId(id), toPath(path), this.replyTo(method, context));
  }
  setAttr(path, value, id = this.id) {
    hostTry(() => host.attrSet(toId(id), toPath(path), encode(value)));
  }
  deleteAttr(path, id = this.id) {
    hostTry(() => host.attrDelete(toId(id), toPath(path)));
  }
  appendAttr(path, value, id = this.id) {
    hostTry(() => host.attrAppend(toId(id), toPath(path), encode(value)));
  }

  // ---- timers ----
  /** Calls `method` with `args` on this entity (or `opts.id`) after
   * `delayMs`, then every `delayMs` if `opts.repeat`. Returns the timer id. */
  setTimer(delayMs, method, args = [], opts = {}) {
    if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 0xffffffff) {
      throw new WyrmError(`bad timer delay ${String(delayMs)}: milliseconds from 0 to 2^32-1`);
    }
    const id = toId(opts.id ?? this.id);
    return hostTry(() => host.setTimer(id, delayMs, Boolean(opts.repeat), method, encode(args)));
  }
  cancelTimer(timer) {
    return host.cancelTimer(BigInt(timer));
  }

  // ---- passwords: the answer is a call of `method` on this entity ----
  hashPassword(password, method, context = null) {
    host.hashPassword(this.id, password, method, encode(context));
  }
  verifyPassword(password, hash, method, context = null) {
    host.verifyPassword(this.id, password, hash, method, encode(context));
  }

  // ---- storage (and askEntityType / askAttr): answers are calls of
  // `method` on this entity with args [error, value, context] ----
  replyTo(method, context = null) {
    return { entity: this.id, method, context: encode(context) };
  }
  /** Loads saved entity `id` (answers with value = the id). `opts.at`:
   * "here" (the default: on this entity's game) or "anywhere" (the server
   * chooses by load). An entity loaded already stays where it is. */
  loadEntity(id, method, context = null, opts = {}) {
    const at = toLocality(opts);
    storage.loadEntity(toId(id), at, this.replyTo(method, context));
  }
  saveNow(method, context = null) {
    storage.saveEntity(this.id, method === undefined ? undefined : this.replyTo(method, context));
  }
  entityExists(id, method, context = null) {
    storage.entityExists(toId(id), this.replyTo(method, context));
  }
  savedIds(typeName, method, context = null) {
    storage.savedIds(typeName, this.replyTo(method, context));
  }
  kvGet(key, method, context = null) {
    storage.kvGet(key, this.replyTo(method, context));
  }
  kvPut(key, value, method, context = null) {
    storage.kvPut(key, encode(value), method === undefined ? undefined : this.replyTo(method, context));
  }
  kvGetOrPut(key, value, method, context = null) {
    storage.kvGetOrPut(key, encode(value), this.replyTo(method, context));
  }
  kvRange(prefix, method, context = null) {
    storage.kvRange(prefix, this.replyTo(method, context));
  }
  emitStat(name, fields = {}) {
    storage.emitStat(name, encode(fields));
  }

  // ---- misc ----
  log(level, message) {
    log(level, message);
  }
  /** Wall-clock milliseconds since the Unix epoch (a number). */
  nowMs() {
    return Number(host.nowMs());
  }
}

// ---------------------------------------------------------------------------
// definePlugin: the `entities` export

const EXPOSURES = { server: "server", ownclient: "own-client", allclients: "all-clients" };
const FLAGS = { persistent: "persistent", ownclient: "ownClient", allclients: "allClients" };
const HOOKS = ["created", "destroyed", "clientConnected", "clientDisconnected", "tick", "aoiEnter", "aoiLeave"];

// "own-client", "own_client" and "ownClient" all name the same thing.
function squash(name) {
  return String(name).toLowerCase().replace(/[-_]/g, "");
}

function isPlainObject(x) {
  if (x === null || typeof x !== "object") return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

// The default import of saved state: the fresh state's fields, each taken
// from the saved map when it has it (missing fields keep their default,
// unknown ones are dropped).
function mergeState(fresh, saved) {
  if (!isPlainObject(fresh)) return saved;
  const get =
    saved instanceof Map ? (k) => [saved.has(k), saved.get(k)] :
    isPlainObject(saved) ? (k) => [Object.prototype.hasOwnProperty.call(saved, k), saved[k]] :
    null;
  if (get === null) throw new WyrmError("cannot decode state: expected a map");
  for (const k of Object.keys(fresh)) {
    const [has, v] = get(k);
    if (has) fresh[k] = v;
  }
  return fresh;
}

function compileType(name, t) {
  if (!t || typeof t !== "object") throw new Error(`entity type ${name}: expected an object`);
  const attrs = Object.entries(t.attrs ?? {}).map(([attr, flags]) => {
    const f = { persistent: false, ownClient: false, allClients: false };
    for (const flag of Array.isArray(flags) ? flags : [flags]) {
      const key = FLAGS[squash(flag)];
      if (!key) throw new Error(`${name}.${attr}: unknown attribute flag ${flag} (persistent, own-client, all-clients)`);
      f[key] = true;
    }
    return { name: attr, flags: f };
  });
  const methods = new Map();
  for (const [m, spec] of Object.entries(t.methods ?? {})) {
    const def = typeof spec === "function" ? { call: spec } : spec;
    if (typeof def?.call !== "function") throw new Error(`${name}.${m}: a method needs a call(ctx, ...args) function`);
    const exposure = EXPOSURES[squash(def.exposure ?? "server")];
    if (!exposure) throw new Error(`${name}.${m}: unknown exposure ${def.exposure} (server, own-client, all-clients)`);
    methods.set(m, { exposure, call: def.call });
  }
  const hooks = t.hooks ?? {};
  for (const h of Object.keys(hooks)) {
    if (!HOOKS.includes(h)) throw new Error(`${name}: unknown hook ${h} (${HOOKS.join(", ")})`);
  }
  const fresh = typeof t.state === "function" ? t.state : () => ({});
  const events = typeof hooks.aoiEnter === "function" || typeof hooks.aoiLeave === "function";
  return {
    name,
    attrs,
    methods,
    hooks,
    fresh,
    save: typeof t.save === "function" ? t.save : (s) => s,
    restore: typeof t.migrate === "function" ? t.migrate : (_from, saved) => mergeState(fresh(), saved),
    aoi: t.aoi ? { radius: t.aoi.radius, hysteresis: t.aoi.hysteresis ?? 0, events } : undefined,
  };
}

/**
 * Declares a plugin and returns the `entities` export:
 * `export const entities = definePlugin({ name, version, types: { ... } })`.
 * See README.md for the shape of a type.
 */
export function definePlugin(def) {
  const types = Object.entries(def.types ?? {}).map(([n, t]) => compileType(n, t));
  const name = String(def.name);
  const version = String(def.version);
  // Private state by entity id (BigInt): { kind, state }.
  const table = new Map();
  const SERVER = { kind: "server", entity: null };

  function typeAt(kind) {
    const t = types[kind];
    if (!t) throw new WyrmError(`unknown entity kind ${kind}: plugin ${name} declares ${types.length} type(s)`);
    return t;
  }

  function kindOf(typeName) {
    const k = types.findIndex((t) => t.name === typeName);
    return k < 0 ? null : k;
  }

  // Runs f(ctx, type) on the entity, creating fresh state first if the
  // table does not know it (a new entity, or state lost in a crash).
  function withEntity(entity, caller, f) {
    let slot = table.get(entity.id);
    if (!slot) {
      slot = { kind: entity.kind, state: typeAt(entity.kind).fresh() };
      table.set(entity.id, slot);
    }
    const ty = typeAt(slot.kind);
    const ctx = new Ctx(entity.id, ty.name, caller, slot.state);
    try {
      return f(ctx, ty);
    } finally {
      slot.state = ctx.state;
    }
  }

  // Runs f and turns what it throws into the `err` of an export.
  function guarded(what, f) {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof WyrmError) && e instanceof Error && typeof e.stack === "string") {
        log("warn", `${name}: ${what}: ${e.name}: ${e.message}\n${e.stack}`);
      }
      throw exportError(messageOf(e));
    }
  }

  function runHook(entity, hook, ...args) {
    withEntity(entity, SERVER, (ctx, ty) => {
      const h = ty.hooks[hook];
      if (typeof h === "function") h(ctx, ...args);
    });
  }

  // Hooks whose export returns nothing: an error is only logged.
  function loggedHook(entity, hook, ...args) {
    try {
      runHook(entity, hook, ...args);
    } catch (e) {
      log("warn", `${name}: ${hook} hook of entity ${entity.id} failed: ${messageOf(e)}`);
    }
  }

  return {
    init() {
      return {
        name,
        version,
        entityTypes: types.map((t) => ({
          name: t.name,
          attrs: t.attrs,
          methods: [...t.methods].map(([m, s]) => ({ name: m, exposure: s.exposure })),
          aoi: t.aoi,
        })),
      };
    },

    created(entity) {
      guarded("created", () => runHook(entity, "created"));
    },

    destroyed(entity) {
      loggedHook(entity, "destroyed");
      table.delete(entity.id);
    },

    clientConnected(entity) {
      loggedHook(entity, "clientConnected");
    },

    clientDisconnected(entity) {
      loggedHook(entity, "clientDisconnected");
    },

    call(entity, method, args, caller) {
      guarded(`call of ${method}`, () =>
        withEntity(entity, { kind: caller.kind, entity: optId(caller.entity) }, (ctx, ty) => {
          const m = ty.methods.get(method);
          if (!m) throw new WyrmError(`unknown method ${ty.name}.${method}`);
          // No arguments may also come as nothing or nil, as the Rust and
          // Python helpers take them.
          let list = [];
          if (args.length > 0 && !(args.length === 1 && args[0] === 0xc0)) {
            try {
              list = decode(args);
            } catch (e) {
              throw new WyrmError(`bad args for ${ty.name}.${method}: ${messageOf(e)}`);
            }
          }
          if (!Array.isArray(list)) {
            throw new WyrmError(`bad args for ${ty.name}.${method}: expected an array of arguments`);
          }
          if (list.length < m.call.length - 1) {
            throw new WyrmError(
              `bad args for ${ty.name}.${method}: expected ${m.call.length - 1} argument(s), got ${list.length}`,
            );
          }
          m.call(ctx, ...list);
        }),
      );
    },

    tick(space, dtMs) {
      loggedHook(space, "tick", dtMs);
    },

    aoiEvents(events) {
      for (const ev of events) {
        loggedHook(ev.watcher, ev.entered ? "aoiEnter" : "aoiLeave", ev.other);
      }
    },

    exportEntities(ids) {
      return guarded("export-entities", () => {
        const out = [];
        for (const id of ids) {
          const slot = table.get(id);
          if (slot) {
            const ty = typeAt(slot.kind);
            let data;
            try {
              data = encode(ty.save(slot.state));
            } catch (e) {
              throw new WyrmError(`cannot export ${ty.name} ${id}: ${messageOf(e)}`);
            }
            out.push({ entity: { id, kind: slot.kind }, typeName: ty.name, data });
          } else {
            // Never touched by this instance: "start fresh", if the type is ours.
            const typeName = host.entityType(id);
            if (typeName === undefined || typeName === null) continue;
            const kind = kindOf(typeName);
            if (kind === null) continue;
            out.push({ entity: { id, kind }, typeName, data: new Uint8Array(0) });
          }
        }
        return out;
      });
    },

    // The entities moved to another game: drop their state, no hook runs.
    forgetEntities(ids) {
      for (const id of ids) table.delete(id);
    },

    importEntities(fromVersion, states) {
      guarded("import-entities", () => {
        // Rebuild everything first: one failure refuses the whole import.
        const rebuilt = [];
        for (const s of states) {
          const kind = kindOf(s.typeName);
          if (kind === null) {
            throw new WyrmError(
              `cannot import entity ${s.entity.id}: plugin ${name} ${version} has no entity type ${s.typeName}`,
            );
          }
          const ty = types[kind];
          let state;
          try {
            state = s.data.length === 0 ? ty.fresh() : ty.restore(fromVersion, decode(s.data));
          } catch (e) {
            throw new WyrmError(`cannot import ${s.typeName} ${s.entity.id} from version ${fromVersion}: ${messageOf(e)}`);
          }
          rebuilt.push([s.entity.id, { kind, state }]);
        }
        for (const [id, slot] of rebuilt) table.set(id, slot);
      });
    },
  };
}
