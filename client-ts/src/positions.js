// Position sync (docs/protocol.md §4, `0x88` Positions; the Rust reference
// is wyrm_protocol::PositionTable). Each connection keeps a table slot ->
// {entity, qx, qy, qz, qyaw}; an entry binds a slot to an entity (absolute
// place) or updates a bound slot (differences). Quantized values are
// integers, exact as Numbers; a place is x = qx * 2^res, yaw = qyaw * 2π /
// 1024 in [0, 2π).

import { ProtocolError } from "./errors.js";

/** Where an entity is, as a Positions frame gave it. */
/** @typedef {{ entity: number, x: number, y: number, z: number, yaw: number }} Place */
/** @typedef {{ entity: number, qx: number, qy: number, qz: number, qyaw: number }} Slot */

const YAW_STEPS = 1024;
const MAX_SLOT = 1 << 20;

/**
 * An entity id from the wire: a Number, which holds every id a server hands
 * out (they stay far below 2^53).
 * @param {bigint | number} id
 * @returns {number}
 */
export function entityId(id) {
  if (typeof id === "number") return id;
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`entity id ${id} is beyond 2^53`);
  return Number(id);
}

export class PositionTable {
  constructor() {
    /** @type {(Slot | null)[]} */
    this.slots = [];
    /** @type {Map<number, number>} */
    this.slotOf = new Map();
  }

  /**
   * Applies the body of one Positions frame (what follows its type byte).
   * Throws a ProtocolError on a malformed body (the table may then hold part
   * of it: the connection is to be dropped).
   * @param {Uint8Array} body
   * @returns {Place[]} the places it gave, in frame order
   */
  apply(body) {
    let pos = 0;
    /** @param {string} what */
    const byte = (what) => {
      if (pos >= body.length) throw new ProtocolError(`positions truncated at ${what}`);
      return body[pos++];
    };
    // LEB128, at most 10 bytes (a u64): exact below 2^53 as a Number; ids
    // are read as BigInt so a larger one is caught, not rounded.
    /** @param {string} what @returns {number} */
    const varint = (what) => {
      let v = 0;
      for (let shift = 0; shift < 64; shift += 7) {
        const b = byte(what);
        const bits = b & 0x7f;
        if (shift === 63 && bits > 1) break;
        v += bits * 2 ** shift;
        if (b < 0x80) return v;
      }
      throw new ProtocolError(`positions: bad varint at ${what}`);
    };
    /** @param {string} what @returns {bigint} */
    const bigVarint = (what) => {
      let v = 0n;
      for (let shift = 0n; shift < 64n; shift += 7n) {
        const b = byte(what);
        const bits = BigInt(b & 0x7f);
        if (shift === 63n && bits > 1n) break;
        v |= bits << shift;
        if (b < 0x80) return v;
      }
      throw new ProtocolError(`positions: bad varint at ${what}`);
    };
    // Zigzag: 0, 1, 2, 3, 4, ... stand for 0, -1, 1, -2, 2, ...
    /** @param {string} what */
    const svarint = (what) => {
      const z = varint(what);
      return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
    };
    /** @param {number} v @param {string} what */
    const i32 = (v, what) => {
      if (!(v >= -0x80000000 && v <= 0x7fffffff)) throw new ProtocolError(`positions: ${what} out of range`);
      return v;
    };
    const res = (byte("resolution") << 24) >> 24;
    if (res < -16 || res > 8) throw new ProtocolError(`positions: bad resolution 2^${res}`);
    const step = 2 ** res;
    /** @type {Place[]} */
    const out = [];
    let next = 0;
    while (pos < body.length) {
      const head = body[pos++];
      let skip = (head >> 4) & 7;
      if (skip === 7) skip += varint("slot skip");
      const slot = next + skip;
      if (slot > MAX_SLOT) throw new ProtocolError(`positions: slot ${slot} is beyond ${MAX_SLOT}`);
      next = slot + 1;
      /** @type {Slot} */
      let s;
      if (head & 0x80) {
        s = { entity: entityId(bigVarint("entity")), qx: 0, qy: 0, qz: 0, qyaw: 0 };
        if (head & 1) s.qx = i32(svarint("x"), "x");
        if (head & 2) s.qy = i32(svarint("y"), "y");
        if (head & 4) s.qz = i32(svarint("z"), "z");
        if (head & 8) {
          s.qyaw = varint("yaw");
          if (s.qyaw >= YAW_STEPS) throw new ProtocolError(`positions: yaw ${s.qyaw} is not below ${YAW_STEPS}`);
        }
        this.bind(slot, s);
      } else {
        const held = this.slots[slot];
        if (!held) throw new ProtocolError(`positions: an update of slot ${slot}, which holds no entity`);
        s = held;
        if (head & 1) s.qx = i32(s.qx + svarint("x"), "x");
        if (head & 2) s.qy = i32(s.qy + svarint("y"), "y");
        if (head & 4) s.qz = i32(s.qz + svarint("z"), "z");
        if (head & 8) {
          const d = svarint("yaw");
          if (d < -YAW_STEPS / 2 || d > YAW_STEPS / 2) throw new ProtocolError(`positions: yaw turn ${d} out of range`);
          s.qyaw = (((s.qyaw + d) % YAW_STEPS) + YAW_STEPS) % YAW_STEPS;
        }
      }
      out.push({ entity: s.entity, x: s.qx * step, y: s.qy * step, z: s.qz * step, yaw: (s.qyaw * 2 * Math.PI) / YAW_STEPS });
    }
    return out;
  }

  /** Forgets every slot (a ViewReset: the view starts over). */
  clear() {
    this.slots = [];
    this.slotOf = new Map();
  }

  /**
   * Forgets `entity` (destroyed in this connection's view): its slot is free.
   * @param {number} entity
   */
  forget(entity) {
    const slot = this.slotOf.get(entity);
    if (slot === undefined) return;
    this.slotOf.delete(entity);
    this.slots[slot] = null;
  }

  /**
   * Puts `s` in `slot`, replacing what it held and taking its entity out of
   * any other slot.
   * @param {number} slot
   * @param {Slot} s
   */
  bind(slot, s) {
    const old = this.slots[slot];
    if (old && old.entity !== s.entity) this.slotOf.delete(old.entity);
    const prev = this.slotOf.get(s.entity);
    if (prev !== undefined && prev !== slot) this.slots[prev] = null;
    this.slots[slot] = s;
    this.slotOf.set(s.entity, slot);
  }
}
