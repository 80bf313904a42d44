// Applying an `Attr` frame to an entity's attribute tree, by the rules the
// server used to make the change (docs/protocol.md §4; the Rust reference is
// wyrm_protocol::attr), so the client's copy stays identical to the
// server's:
//
// - set: creates missing map entries on the way (as maps) and may replace a
//   list element that exists; an empty path replaces the whole tree;
// - append: also creates the list itself;
// - delete: of something absent is not an error; deleting a list element
//   shifts the rest down.

/** @typedef {import("./msgpack.js").MsgValue} MsgValue */
/** @typedef {import("./frames.js").AttrPath} AttrPath */
/** @typedef {{ [key: string]: MsgValue }} MsgMap */

/**
 * `v` as a map, if it is one.
 * @param {MsgValue} v
 * @returns {MsgMap | null}
 */
const asMap = (v) =>
  v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array) ? /** @type {MsgMap} */ (v) : null;
/** @param {string | number} s @returns {s is number} */
const isIndex = (s) => typeof s === "number";

/**
 * The child of `v` at `step`, creating a missing map entry (a list when
 * `makeList`).
 * @param {MsgValue} v
 * @param {string | number} step
 * @param {boolean} makeList
 * @returns {MsgValue}
 */
function stepInto(v, step, makeList) {
  const map = asMap(v);
  if (map && !isIndex(step)) {
    if (!Object.prototype.hasOwnProperty.call(map, step)) map[step] = makeList ? [] : Object.create(null);
    return map[step];
  }
  if (Array.isArray(v) && isIndex(step)) {
    if (step >= v.length) throw new RangeError(`index ${step} is past the end of a list of ${v.length}`);
    return v[step];
  }
  throw new TypeError(`cannot use ${isIndex(step) ? "index" : "key"} ${step} here`);
}

/**
 * Walks `path` from `holder.root`, creating missing map entries (as maps,
 * or a list for the last step when `lastIsList`) and replacing nil on the
 * way by a map.
 * @param {{ root: MsgValue }} holder
 * @param {AttrPath} path
 * @param {boolean} lastIsList
 * @returns {{ parent: any, key: string | number, v: MsgValue }} the value reached, at `parent[key]`
 */
function walkCreating(holder, path, lastIsList) {
  /** @type {any} */
  let parent = holder;
  /** @type {string | number} */
  let key = "root";
  let v = holder.root;
  for (let n = 0; n < path.length; n++) {
    if (v === null || v === undefined) {
      v = Object.create(null);
      parent[key] = v;
    }
    parent = v;
    key = path[n];
    v = stepInto(v, path[n], lastIsList && n + 1 === path.length);
  }
  return { parent, key, v };
}

/**
 * Applies one attribute change to `root` and returns the new root (the same
 * object, changed, unless the whole tree was replaced). Throws if the
 * change does not fit the tree: the client's copy no longer matches the
 * server's.
 * @param {MsgValue} root
 * @param {"set" | "delete" | "append"} op
 * @param {AttrPath} path
 * @param {MsgValue} value
 * @returns {MsgValue}
 */
export function applyAttr(root, op, path, value) {
  const holder = { root };
  if (op === "set") {
    if (path.length === 0) return value;
    const last = path[path.length - 1];
    const w = walkCreating(holder, path.slice(0, -1), false);
    let target = w.v;
    if ((target === null || target === undefined) && !isIndex(last)) {
      target = Object.create(null);
      w.parent[w.key] = target;
    }
    const map = asMap(target);
    if (map && !isIndex(last)) map[last] = value;
    else if (Array.isArray(target) && isIndex(last)) {
      if (last >= target.length) throw new RangeError(`index ${last} is past the end of a list of ${target.length}`);
      target[last] = value;
    } else throw new TypeError(`cannot set ${path.join("/")}`);
    return holder.root;
  }
  if (op === "delete") {
    if (path.length === 0) return null;
    /** @type {MsgValue} */
    let parent = root;
    for (const step of path.slice(0, -1)) {
      const map = asMap(parent);
      if (map && !isIndex(step) && Object.prototype.hasOwnProperty.call(map, step)) parent = map[step];
      else if (Array.isArray(parent) && isIndex(step) && step < parent.length) parent = parent[step];
      else return root;
    }
    const last = path[path.length - 1];
    const map = asMap(parent);
    if (map && !isIndex(last)) delete map[last];
    else if (Array.isArray(parent) && isIndex(last)) {
      if (last < parent.length) parent.splice(last, 1);
    } else if (parent !== null && parent !== undefined) throw new TypeError(`cannot delete ${path.join("/")}`);
    return root;
  }
  if (op === "append") {
    if (holder.root === null || holder.root === undefined) holder.root = path.length === 0 ? [] : Object.create(null);
    const w = walkCreating(holder, path, true);
    if (!Array.isArray(w.v)) throw new TypeError(`append to a non-list at ${path.join("/")}`);
    w.v.push(value);
    return holder.root;
  }
  throw new TypeError(`bad attr op ${op}`);
}
