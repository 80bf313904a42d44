// The frames of the client protocol (docs/protocol.md §3, §4): encoders for
// what a client sends, a decoder for what the server sends. Integers are
// little-endian; a `str` is a u16 length and UTF-8.

import * as msgpack from "./msgpack.js";
import { codeName, ProtocolError } from "./errors.js";
import { lz4Decompress } from "./lz4.js";
import { entityId } from "./positions.js";

/** @typedef {import("./msgpack.js").MsgValue} MsgValue */
/** @typedef {import("./positions.js").Place} Place */
/** @typedef {import("./positions.js").PositionTable} PositionTable */
/** @typedef {(string | number)[]} AttrPath */

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 4;

/** The largest frame a `Compressed` frame may hold, by default. */
const DEFAULT_MAX_FRAME = 16 << 20;

/**
 * A frame from the server.
 * @typedef {{ type: "welcome", version: number, maxFrame: number, compress: string | null, compressMin: number }
 *   | { type: "error", reqId: number, code: number, codeName: string, message: string }
 *   | { type: "create", entity: number, typeName: string, own: boolean, attrs: MsgValue }
 *   | { type: "destroy", entity: number }
 *   | { type: "call", entity: number, method: string, args: MsgValue[] }
 *   | { type: "callOwn", method: string, args: MsgValue[] }
 *   | { type: "attr", entity: number, op: "set" | "delete" | "append", path: AttrPath, value: MsgValue }
 *   | { type: "pong", nonce: bigint }
 *   | { type: "positions", entries: Place[] }
 *   | { type: "viewReset" }
 *   | { type: "unknown", code: number }} ServerFrame
 */

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/**
 * `0x04` Hello: the first frame of every connection; from protocol 4, with
 * what the client asks for (`compress`: the codecs it reads).
 * @param {number} [version]
 * @param {{ compress?: string[] }} [options]
 */
export function encodeHello(version = PROTOCOL_VERSION, options = {}) {
  const opts = version >= 4 ? msgpack.encode({ compress: options.compress ?? [] }) : new Uint8Array(0);
  const buf = new Uint8Array(3 + opts.length);
  buf[0] = 0x04;
  new DataView(buf.buffer).setUint16(1, version, true);
  buf.set(opts, 3);
  return buf;
}

/**
 * `0x01` Call: `method(...args)` on `entity`.
 * @param {number} reqId
 * @param {number} entity
 * @param {string} method
 * @param {MsgValue[]} args
 */
export function encodeCall(reqId, entity, method, args) {
  const m = te.encode(method);
  if (m.length > 0xffff) throw new RangeError(`method name of ${m.length} bytes: at most 65535`);
  const a = msgpack.encode(args);
  const buf = new Uint8Array(15 + m.length + a.length);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x01;
  dv.setUint32(1, reqId, true);
  dv.setBigUint64(5, BigInt(entity), true);
  dv.setUint16(13, m.length, true);
  buf.set(m, 15);
  buf.set(a, 15 + m.length);
  return buf;
}

/**
 * `0x02` Ping.
 * @param {bigint | number} nonce
 */
export function encodePing(nonce) {
  const buf = new Uint8Array(9);
  buf[0] = 0x02;
  new DataView(buf.buffer).setBigUint64(1, BigInt(nonce), true);
  return buf;
}

/**
 * `0x03` Move: the own entity to (x, y, z), heading `yaw` radians.
 * @param {number} x @param {number} y @param {number} z @param {number} yaw
 */
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

const OPS = /** @type {const} */ (["set", "delete", "append"]);

/**
 * Decodes one server frame (type byte + body). A type this SDK does not know
 * comes back as `{type: "unknown"}`, to be skipped (§6). `positions` is the
 * connection's table: a Positions frame is applied to it (its `entries` are
 * the places it gave), a Destroy frees the entity's slot and a ViewReset
 * clears it. A `Compressed` frame comes back as the frame it holds (of at
 * most `maxFrame` bytes). Throws a ProtocolError on a malformed frame.
 * @param {Uint8Array} bytes
 * @param {PositionTable} positions
 * @param {number} [maxFrame]
 * @returns {ServerFrame}
 */
export function decodeServer(bytes, positions, maxFrame = DEFAULT_MAX_FRAME) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  /** @param {number} n @param {string} what */
  const need = (n, what) => {
    if (pos + n > bytes.length) throw new ProtocolError(`frame truncated at ${what}`);
  };
  /** @param {string} what */
  const u8 = (what) => { need(1, what); return dv.getUint8(pos++); };
  /** @param {string} what */
  const u16 = (what) => { need(2, what); const v = dv.getUint16(pos, true); pos += 2; return v; };
  /** @param {string} what */
  const u32 = (what) => { need(4, what); const v = dv.getUint32(pos, true); pos += 4; return v; };
  /** @param {string} what */
  const u64 = (what) => { need(8, what); const v = dv.getBigUint64(pos, true); pos += 8; return v; };
  /** @param {string} what */
  const id = (what) => entityId(u64(what));
  /** @param {string} what */
  const str = (what) => {
    const n = u16(what);
    need(n, what);
    try {
      return td.decode(bytes.subarray(pos, (pos += n)));
    } catch {
      throw new ProtocolError(`invalid UTF-8 in ${what}`);
    }
  };
  /** The rest of the frame, one MessagePack value. @param {string} what */
  const value = (what) => {
    const rest = bytes.subarray(pos);
    pos = bytes.length;
    try {
      return msgpack.decode(rest);
    } catch (e) {
      throw new ProtocolError(`bad MessagePack in ${what}: ${e instanceof Error ? e.message : e}`);
    }
  };
  /** @param {string} what @returns {MsgValue[]} */
  const args = (what) => {
    const v = value(what);
    if (!Array.isArray(v)) throw new ProtocolError(`${what} is not an array`);
    return v;
  };
  const type = u8("type");
  /** @type {ServerFrame} */
  let f;
  switch (type) {
    case 0x80: {
      const version = u16("version");
      const max = u32("max_frame");
      f = { type: "welcome", version, maxFrame: max, compress: null, compressMin: 0 };
      if (version >= 4) {
        const options = value("welcome options");
        if (options === null || typeof options !== "object" || Array.isArray(options)) throw new ProtocolError("welcome options are not a map");
        const o = /** @type {{ [key: string]: MsgValue }} */ (options);
        if (typeof o.compress === "string") f.compress = o.compress;
        if (typeof o.compress_min === "number") f.compressMin = o.compress_min;
      }
      break;
    }
    case 0x81: {
      const reqId = u32("req_id");
      const code = u16("code");
      f = { type: "error", reqId, code, codeName: codeName(code), message: str("message") };
      break;
    }
    case 0x82: {
      const entity = id("entity");
      const typeName = str("type");
      const own = u8("own") !== 0;
      f = { type: "create", entity, typeName, own, attrs: value("attrs") };
      break;
    }
    case 0x83:
      f = { type: "destroy", entity: id("entity") };
      positions.forget(f.entity);
      break;
    case 0x84: {
      const entity = id("entity");
      const method = str("method");
      f = { type: "call", entity, method, args: args("args") };
      break;
    }
    case 0x85: {
      const entity = id("entity");
      const op = u8("op");
      const name = OPS[op];
      if (name === undefined) throw new ProtocolError(`bad attr op ${op}`);
      /** @type {MsgValue} */
      let path;
      try {
        [path, pos] = msgpack.decodeAt(bytes, pos);
      } catch (e) {
        throw new ProtocolError(`bad MessagePack in attr path: ${e instanceof Error ? e.message : e}`);
      }
      if (!Array.isArray(path) || !path.every((s) => typeof s === "string" || (typeof s === "number" && Number.isInteger(s) && s >= 0))) {
        throw new ProtocolError("attr path is not an array of keys and indexes");
      }
      const v = name === "delete" ? undefined : value("attr value");
      f = { type: "attr", entity, op: name, path: /** @type {AttrPath} */ (path), value: v };
      break;
    }
    case 0x86:
      f = { type: "pong", nonce: u64("nonce") };
      break;
    case 0x88: {
      const body = bytes.subarray(pos);
      pos = bytes.length;
      f = { type: "positions", entries: positions.apply(body) };
      break;
    }
    case 0x89: {
      const method = str("method");
      f = { type: "callOwn", method, args: args("args") };
      break;
    }
    case 0x8a:
      f = { type: "viewReset" };
      positions.clear();
      break;
    case 0x8b: {
      const codec = u8("codec");
      const size = u32("size");
      if (codec !== 1) throw new ProtocolError(`a Compressed frame of codec ${codec}, not LZ4`);
      if (size === 0 || size > maxFrame) throw new ProtocolError(`a Compressed frame of ${size} bytes`);
      let inner;
      try {
        inner = lz4Decompress(bytes.subarray(pos), size);
      } catch (e) {
        throw new ProtocolError(`a Compressed frame that does not decompress: ${e instanceof Error ? e.message : e}`);
      }
      if (inner[0] === 0x8b) throw new ProtocolError("a Compressed frame inside another");
      return decodeServer(inner, positions, maxFrame);
    }
    default:
      return { type: "unknown", code: type };
  }
  if (pos !== bytes.length) throw new ProtocolError(`trailing bytes after a ${f.type} frame`);
  return f;
}
