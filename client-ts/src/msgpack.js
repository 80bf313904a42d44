// MessagePack, as call arguments and attribute values travel (docs/protocol.md
// §3). Integers beyond Number.MAX_SAFE_INTEGER decode as BigInt and BigInt
// encodes as a 64-bit integer; maps decode to plain objects without a
// prototype (keys as strings); binary decodes to Uint8Array; extension types
// decode to `{ ext, data }`.

/** A value MessagePack carries, as this SDK reads and writes it. */
/** @typedef {null | boolean | number | bigint | string | Uint8Array | MsgArray | MsgMap | Ext | undefined} MsgValue */
/** @typedef {MsgValue[]} MsgArray */
/** @typedef {{ [key: string]: MsgValue }} MsgMap */
/** @typedef {{ ext: number, data: Uint8Array }} Ext */

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/** The deepest nesting decoded: deeper input is refused, not a stack overflow. */
const MAX_DEPTH = 512;

/** A growable byte buffer the encoder writes into. */
class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }

  /** @param {number} n */
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }

  /** @param {number} b */
  u8(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** @param {number} marker @param {number} v */
  u16(marker, v) {
    this.reserve(3);
    this.buf[this.len] = marker;
    this.view.setUint16(this.len + 1, v);
    this.len += 3;
  }

  /** @param {number} marker @param {number} v */
  u32(marker, v) {
    this.reserve(5);
    this.buf[this.len] = marker;
    this.view.setUint32(this.len + 1, v);
    this.len += 5;
  }

  /** @param {number} marker @param {bigint} v */
  u64(marker, v) {
    this.reserve(9);
    this.buf[this.len] = marker;
    this.view.setBigUint64(this.len + 1, BigInt.asUintN(64, v));
    this.len += 9;
  }

  /** @param {Uint8Array} bytes */
  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
}

/**
 * Encodes `value` as MessagePack. `undefined` encodes as nil; an object's
 * keys as strings (a `Map`, also taken, keeps its keys as they are).
 * @param {MsgValue | Map<MsgValue, MsgValue>} value
 * @returns {Uint8Array}
 */
export function encode(value) {
  const w = new Writer();
  put(w, value, 0);
  return w.buf.slice(0, w.len);
}

/**
 * @param {Writer} w
 * @param {MsgValue | Map<MsgValue, MsgValue>} v
 * @param {number} depth
 */
function put(w, v, depth) {
  if (depth > MAX_DEPTH) throw new TypeError(`MessagePack: nested deeper than ${MAX_DEPTH}`);
  if (v === null || v === undefined) return w.u8(0xc0);
  if (v === false) return w.u8(0xc2);
  if (v === true) return w.u8(0xc3);
  if (typeof v === "number") return putNumber(w, v);
  if (typeof v === "bigint") {
    if (v < -(2n ** 63n) || v >= 2n ** 64n) throw new RangeError(`MessagePack: ${v} does not fit 64 bits`);
    return v >= 0n ? w.u64(0xcf, v) : w.u64(0xd3, v);
  }
  if (typeof v === "string") {
    const b = te.encode(v);
    const n = b.length;
    if (n < 32) w.u8(0xa0 | n);
    else if (n < 0x100) { w.u8(0xd9); w.u8(n); }
    else if (n < 0x10000) w.u16(0xda, n);
    else w.u32(0xdb, n);
    return w.raw(b);
  }
  if (v instanceof Uint8Array) {
    const n = v.length;
    if (n < 0x100) { w.u8(0xc4); w.u8(n); }
    else if (n < 0x10000) w.u16(0xc5, n);
    else w.u32(0xc6, n);
    return w.raw(v);
  }
  if (Array.isArray(v)) {
    const n = v.length;
    if (n < 16) w.u8(0x90 | n);
    else if (n < 0x10000) w.u16(0xdc, n);
    else w.u32(0xdd, n);
    for (const item of v) put(w, item, depth + 1);
    return;
  }
  if (isExt(v)) {
    const n = v.data.length;
    const fixed = [1, 2, 4, 8, 16].indexOf(n);
    if (fixed >= 0) w.u8(0xd4 + fixed);
    else if (n < 0x100) { w.u8(0xc7); w.u8(n); }
    else if (n < 0x10000) w.u16(0xc8, n);
    else w.u32(0xc9, n);
    w.u8(v.ext & 0xff);
    return w.raw(v.data);
  }
  if (typeof v === "object") {
    /** @type {[MsgValue, MsgValue][]} */
    const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
    const n = entries.length;
    if (n < 16) w.u8(0x80 | n);
    else if (n < 0x10000) w.u16(0xde, n);
    else w.u32(0xdf, n);
    for (const [k, x] of entries) {
      put(w, k, depth + 1);
      put(w, x, depth + 1);
    }
    return;
  }
  throw new TypeError(`MessagePack: cannot encode a ${typeof v}`);
}

/**
 * @param {unknown} v
 * @returns {v is Ext}
 */
function isExt(v) {
  if (v === null || typeof v !== "object" || v instanceof Map) return false;
  const keys = Object.keys(v);
  return keys.length === 2 && "ext" in v && "data" in v && typeof v.ext === "number" && v.data instanceof Uint8Array;
}

/**
 * @param {Writer} w
 * @param {number} v
 */
function putNumber(w, v) {
  if (Number.isSafeInteger(v)) {
    if (v >= 0) {
      if (v < 0x80) return w.u8(v);
      if (v < 0x100) { w.u8(0xcc); return w.u8(v); }
      if (v < 0x10000) return w.u16(0xcd, v);
      if (v < 0x100000000) return w.u32(0xce, v);
      return w.u64(0xcf, BigInt(v));
    }
    if (v >= -32) return w.u8(v & 0xff);
    if (v >= -0x80) { w.u8(0xd0); return w.u8(v & 0xff); }
    if (v >= -0x8000) return w.u16(0xd1, v & 0xffff);
    if (v >= -0x80000000) return w.u32(0xd2, v >>> 0);
    return w.u64(0xd3, BigInt(v));
  }
  w.reserve(9);
  w.buf[w.len] = 0xcb;
  w.view.setFloat64(w.len + 1, v);
  w.len += 9;
}

/**
 * Decodes one value starting at `pos`.
 * @param {Uint8Array} bytes
 * @param {number} pos
 * @returns {[MsgValue, number]} the value, and where the next byte is
 */
export function decodeAt(bytes, pos) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  /** @param {number} n */
  const need = (n) => {
    if (pos + n > bytes.length) throw new RangeError("MessagePack: truncated");
  };
  /** @param {number} n @returns {number | bigint} */
  const uint = (n) => {
    need(n);
    /** @type {number | bigint} */
    let r;
    if (n === 1) r = dv.getUint8(pos);
    else if (n === 2) r = dv.getUint16(pos);
    else if (n === 4) r = dv.getUint32(pos);
    else {
      const big = dv.getBigUint64(pos);
      r = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    pos += n;
    return r;
  };
  /** @param {number} n @returns {number} a length (u8, u16 or u32) */
  const len = (n) => /** @type {number} */ (uint(n));
  /** @param {number} n @returns {number | bigint} */
  const int = (n) => {
    need(n);
    /** @type {number | bigint} */
    let r;
    if (n === 1) r = dv.getInt8(pos);
    else if (n === 2) r = dv.getInt16(pos);
    else if (n === 4) r = dv.getInt32(pos);
    else {
      const big = dv.getBigInt64(pos);
      r = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    pos += n;
    return r;
  };
  /** @param {number} n */
  const str = (n) => {
    need(n);
    const s = td.decode(bytes.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  /** @param {number} n */
  const bin = (n) => {
    need(n);
    const b = bytes.slice(pos, pos + n);
    pos += n;
    return b;
  };
  /** @param {number} n @returns {Ext} */
  const ext = (n) => {
    const type = /** @type {number} */ (int(1));
    return { ext: type, data: bin(n) };
  };
  /** @param {number} depth @returns {MsgValue} */
  const val = (depth) => {
    if (depth > MAX_DEPTH) throw new RangeError(`MessagePack: nested deeper than ${MAX_DEPTH}`);
    const m = len(1);
    if (m < 0x80) return m;
    if (m < 0x90) return map(m & 0x0f, depth);
    if (m < 0xa0) return arr(m & 0x0f, depth);
    if (m < 0xc0) return str(m & 0x1f);
    if (m >= 0xe0) return m - 0x100;
    switch (m) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(len(1));
      case 0xc5: return bin(len(2));
      case 0xc6: return bin(len(4));
      case 0xc7: return ext(len(1));
      case 0xc8: return ext(len(2));
      case 0xc9: return ext(len(4));
      case 0xca: { need(4); const f = dv.getFloat32(pos); pos += 4; return f; }
      case 0xcb: { need(8); const f = dv.getFloat64(pos); pos += 8; return f; }
      case 0xcc: return uint(1);
      case 0xcd: return uint(2);
      case 0xce: return uint(4);
      case 0xcf: return uint(8);
      case 0xd0: return int(1);
      case 0xd1: return int(2);
      case 0xd2: return int(4);
      case 0xd3: return int(8);
      case 0xd4: return ext(1);
      case 0xd5: return ext(2);
      case 0xd6: return ext(4);
      case 0xd7: return ext(8);
      case 0xd8: return ext(16);
      case 0xd9: return str(len(1));
      case 0xda: return str(len(2));
      case 0xdb: return str(len(4));
      case 0xdc: return arr(len(2), depth);
      case 0xdd: return arr(len(4), depth);
      case 0xde: return map(len(2), depth);
      case 0xdf: return map(len(4), depth);
      default: throw new RangeError(`MessagePack: unused marker 0x${m.toString(16)}`);
    }
  };
  /** @param {number} n @param {number} depth */
  const arr = (n, depth) => {
    // Each item takes at least a byte: a count past the input is a lie.
    need(n);
    /** @type {MsgValue[]} */
    const a = [];
    for (let k = 0; k < n; k++) a.push(val(depth + 1));
    return a;
  };
  /** @param {number} n @param {number} depth */
  const map = (n, depth) => {
    need(2 * n);
    /** @type {{ [key: string]: MsgValue }} */
    const o = Object.create(null);
    for (let k = 0; k < n; k++) {
      const key = val(depth + 1);
      o[String(key)] = val(depth + 1);
    }
    return o;
  };
  const v = val(0);
  return [v, pos];
}

/**
 * Decodes exactly one value filling `bytes`.
 * @param {Uint8Array} bytes
 * @returns {MsgValue}
 */
export function decode(bytes) {
  const [v, end] = decodeAt(bytes, 0);
  if (end !== bytes.length) throw new RangeError(`MessagePack: ${bytes.length - end} trailing bytes`);
  return v;
}
