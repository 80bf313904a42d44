// A connection to a Wyrm server, holding what a game client holds: its own
// entity, the entities it sees with their attributes and places, and the
// calls it waits on.

import { applyAttr } from "./attrs.js";
import { ConnectionClosedError, ProtocolError, TimeoutError, WyrmError, ErrorCode } from "./errors.js";
import { PROTOCOL_VERSION, decodeServer, encodeCall, encodeHello, encodeMove, encodePing } from "./frames.js";
import { PositionTable } from "./positions.js";
import { openTransport } from "./transport.js";

/** @typedef {import("./msgpack.js").MsgValue} MsgValue */
/** @typedef {import("./frames.js").ServerFrame} ServerFrame */
/** @typedef {import("./frames.js").AttrPath} AttrPath */
/** @typedef {import("./positions.js").Place} Place */
/** @typedef {import("./transport.js").Transport} Transport */
/** @typedef {import("./transport.js").TransportOptions} TransportOptions */

/**
 * An entity as this client sees it. `attrs` is the attribute tree the
 * server lets it see, kept up to date; the place is the last one a
 * Positions frame gave (`placed` is false until one has).
 * @typedef {object} EntityView
 * @property {number} id
 * @property {string} type the entity type's name, e.g. `Avatar`
 * @property {boolean} own whether it is this client's own entity
 * @property {MsgValue} attrs
 * @property {number} x
 * @property {number} y
 * @property {number} z
 * @property {number} yaw heading in radians, in [0, 2π)
 * @property {boolean} placed
 */

/**
 * A method the server called on the client. `own` is true when it was made
 * on the client's own entity (a `CallOwn` frame, or a `Call` naming it).
 * @typedef {{ entity: number, method: string, args: MsgValue[], own: boolean }} ServerCall
 */

/** @typedef {{ op: "set" | "delete" | "append", path: AttrPath, value: MsgValue }} AttrChange */

/**
 * The events a {@link Client} emits, and what each handler gets.
 * @typedef {object} ClientEvents
 * @property {[Uint8Array]} received every frame's bytes (type byte and body), as they came
 * @property {[ServerFrame]} frame every frame, as decoded, before it is applied
 * @property {[EntityView]} create an entity came into view (or became the own one)
 * @property {[EntityView]} destroy an entity left the view
 * @property {[EntityView, AttrChange]} attr an attribute of an entity changed (already applied)
 * @property {[Place[]]} positions places changed (already applied to the views)
 * @property {[ServerCall]} call the server called a method on the client
 * @property {[]} viewReset the view starts over: every entity is forgotten and sent again
 * @property {[WyrmError]} error an `Error` frame (also given to the request it fails, if any)
 * @property {[Error | null]} close the connection is closed: why, or null for a clean close
 */

/**
 * @typedef {object} ConnectOptions
 * @property {number} [timeoutMs] how long to wait for the server's welcome and own entity (default 10 s)
 * @property {TransportOptions["WebSocket"]} [WebSocket] the WebSocket class (default: the global one; in Node 20, pass `ws`'s)
 * @property {number} [maxFrame] the largest frame accepted from the server (default 16 MiB)
 * @property {number} [keepAliveMs] on TCP, a Ping after this long without sending (default 10 s; the server drops a client silent for 30 s)
 * @property {TransportOptions["tls"]} [tls] in Node, for `tls://` and `wss://`: `{ ca }` to trust an authority the system does not (a development certificate)
 * @property {boolean} [compression] ask the server to compress the frames worth it (LZ4); on by default
 */

/**
 * @typedef {object} RequestOptions
 * @property {number} [entity] the entity to call (default: the own entity)
 * @property {number} [timeoutMs] how long to wait for the reply (default 10 s)
 */

/** @typedef {{ method: string, resolve: (args: MsgValue[]) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> | null }} Waiter */

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Connects to a Wyrm server and resolves once it has welcomed the client and
 * given it its own entity. `url` is `ws://host:port/ws` (or `wss://`) in a
 * browser or Node, or `tcp://host:port` (or `tls://`) in Node.
 * @param {string} url
 * @param {ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function connect(url, options = {}) {
  const transport = await openTransport(url, options);
  const client = new Client(url, transport, options);
  await client.ready(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  return client;
}

export class Client {
  /**
   * Use {@link connect}.
   * @param {string} url
   * @param {Transport} transport
   * @param {ConnectOptions} options
   */
  constructor(url, transport, options) {
    this.url = url;
    /** The own entity's id; null until the server has given one. */
    /** @type {number | null} */
    this.me = null;
    /** Every entity in view, by id. */
    /** @type {Map<number, EntityView>} */
    this.entities = new Map();
    /** The largest frame the server accepts from this client (from its welcome). */
    this.maxFrame = 0;
    /** Whether the server may send frames compressed (from its welcome). */
    this.compressed = false;
    /** Whether the connection is open. */
    this.open = true;
    /** @private */
    this.transport = transport;
    /** @private */
    this.positions = new PositionTable();
    /** @private @type {{ [K in keyof ClientEvents]?: Set<(...args: any[]) => void> }} */
    this.handlers = {};
    /** @private */
    this.nextReq = 0;
    /** @private @type {Map<number, Waiter>} requests by req_id, waiting for their reply */
    this.requests = new Map();
    /** @private @type {Set<Waiter>} `expect`s, waiting for a call */
    this.expects = new Set();
    /** @private */
    this.nextNonce = 0n;
    /** @private @type {Map<bigint, (e: Error | null) => void>} pings waiting for their pong */
    this.pings = new Map();
    /** @private @type {((e: Error | null) => void) | null} */
    this.whenReady = null;
    /** @private @type {Error | null} */
    this.closedWith = null;
    /** @private */
    this.lastSend = Date.now();
    /** @private @type {ReturnType<typeof setInterval> | null} */
    this.keepAlive = null;
    transport.onFrame = (bytes) => this.receive(bytes);
    transport.onClose = (why) => this.closed(why);
    this.send(encodeHello(PROTOCOL_VERSION, { compress: options.compression === false ? [] : ["lz4"] }));
    /** @private */
    this.maxFrameIn = options.maxFrame;
    if (url.startsWith("tcp:") || url.startsWith("tls:")) {
      const every = options.keepAliveMs ?? 10_000;
      this.keepAlive = setInterval(() => {
        if (Date.now() - this.lastSend >= every) this.send(encodePing(0));
      }, Math.max(every / 4, 10));
      // A Node process may end with a client still open.
      /** @type {any} */ (this.keepAlive).unref?.();
    }
  }

  /**
   * Resolves once the own entity has come ({@link connect} waits for it).
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  ready(timeoutMs) {
    if (this.me !== null) return Promise.resolve();
    if (!this.open) return Promise.reject(this.closedWith ?? new ConnectionClosedError(`${this.url} closed`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.whenReady = null;
        this.close();
        reject(new TimeoutError(`no own entity from ${this.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.whenReady = (e) => {
        clearTimeout(timer);
        this.whenReady = null;
        if (e) reject(e);
        else resolve();
      };
    });
  }

  /**
   * Calls `handler` on each `event`; returns what stops it.
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {(...args: ClientEvents[K]) => void} handler
   * @returns {() => void}
   */
  on(event, handler) {
    const set = (this.handlers[event] ??= new Set());
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * @private
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {ClientEvents[K]} args
   */
  emit(event, ...args) {
    const set = this.handlers[event];
    if (!set) return;
    for (const h of set) h(...args);
  }

  /**
   * Calls `method(...args)` on `entity` (the own entity unless given),
   * without waiting: a failure comes as an `error` event with this call's
   * request id, which is returned.
   * @param {string} method
   * @param {MsgValue[]} [args]
   * @param {number} [entity]
   * @returns {number} the request id
   */
  call(method, args = [], entity) {
    const target = entity ?? this.me;
    if (target === null) throw new ConnectionClosedError("no own entity yet: wait for connect()");
    const reqId = (this.nextReq = (this.nextReq % 0xffffffff) + 1);
    if (!this.send(encodeCall(reqId, target, method, args))) {
      throw this.closedWith ?? new ConnectionClosedError(`${this.url} is closed`);
    }
    return reqId;
  }

  /**
   * Calls `method(...args)` and resolves with the arguments of the server's
   * next call of `reply` on this client (the game's answer, e.g. `login` →
   * `on_login`). Rejects with a {@link WyrmError} if the server refuses the
   * call, a {@link TimeoutError} if no reply comes in time, and a
   * {@link ConnectionClosedError} if the connection closes first.
   * @param {string} method
   * @param {MsgValue[]} args
   * @param {string} reply
   * @param {RequestOptions} [options]
   * @returns {Promise<MsgValue[]>}
   */
  request(method, args, reply, options = {}) {
    return new Promise((resolve, reject) => {
      const waiter = this.waiter(reply, resolve, reject, options.timeoutMs, `a reply ${reply} to ${method}`);
      this.expects.add(waiter);
      try {
        const reqId = this.call(method, args, options.entity);
        this.requests.set(reqId, waiter);
        const done = () => this.requests.delete(reqId);
        const { resolve: ok, reject: fail } = waiter;
        waiter.resolve = (v) => { done(); ok(v); };
        waiter.reject = (e) => { done(); fail(e); };
      } catch (e) {
        waiter.reject(/** @type {Error} */ (e));
      }
    });
  }

  /**
   * Resolves with the arguments of the server's next call of `method` on
   * this client.
   * @param {string} method
   * @param {{ timeoutMs?: number }} [options]
   * @returns {Promise<MsgValue[]>}
   */
  expect(method, options = {}) {
    return new Promise((resolve, reject) => {
      this.expects.add(this.waiter(method, resolve, reject, options.timeoutMs, `a call of ${method}`));
    });
  }

  /**
   * A waiter for a call of `method`, which forgets itself when it settles.
   * @private
   * @param {string} method
   * @param {(args: MsgValue[]) => void} resolve
   * @param {(e: Error) => void} reject
   * @param {number | undefined} timeoutMs
   * @param {string} what
   * @returns {Waiter}
   */
  waiter(method, resolve, reject, timeoutMs, what) {
    if (!this.open) {
      const w = { method, resolve() {}, reject() {}, timer: null };
      reject(this.closedWith ?? new ConnectionClosedError(`${this.url} is closed`));
      return w;
    }
    const ms = timeoutMs ?? DEFAULT_TIMEOUT_MS;
    /** @type {Waiter} */
    const w = {
      method,
      resolve: (args) => {
        settle();
        resolve(args);
      },
      reject: (e) => {
        settle();
        reject(e);
      },
      timer: setTimeout(() => w.reject(new TimeoutError(`no ${what} within ${ms} ms`)), ms),
    };
    const settle = () => {
      if (w.timer !== null) clearTimeout(w.timer);
      w.timer = null;
      this.expects.delete(w);
    };
    return w;
  }

  /**
   * Moves the own entity (when the game lets this client move it).
   * @param {number} x @param {number} y @param {number} [z] @param {number} [yaw] radians
   * @returns {boolean} false once closed
   */
  move(x, y, z = 0, yaw = 0) {
    return this.send(encodeMove(x, y, z, yaw));
  }

  /**
   * Pings the server; resolves with the round trip in milliseconds.
   * @param {{ timeoutMs?: number }} [options]
   * @returns {Promise<number>}
   */
  ping(options = {}) {
    const nonce = ++this.nextNonce;
    const started = performance.now();
    const ms = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(nonce);
        reject(new TimeoutError(`no pong within ${ms} ms`));
      }, ms);
      this.pings.set(nonce, (e) => {
        clearTimeout(timer);
        if (e) reject(e);
        else resolve(performance.now() - started);
      });
      if (!this.send(encodePing(nonce))) {
        clearTimeout(timer);
        this.pings.delete(nonce);
        reject(this.closedWith ?? new ConnectionClosedError(`${this.url} is closed`));
      }
    });
  }

  /**
   * Closes the connection; resolves once it is closed.
   * @returns {Promise<void>}
   */
  close() {
    if (!this.open) return Promise.resolve();
    return new Promise((resolve) => {
      this.on("close", () => resolve());
      this.transport.close();
    });
  }

  /**
   * @private
   * @param {Uint8Array} frame
   */
  send(frame) {
    if (!this.open) return false;
    this.lastSend = Date.now();
    return this.transport.send(frame);
  }

  /**
   * @private
   * @param {Uint8Array} bytes
   */
  receive(bytes) {
    this.emit("received", bytes);
    let f;
    try {
      f = decodeServer(bytes, this.positions, this.maxFrameIn);
    } catch (e) {
      this.fail(e instanceof ProtocolError ? e : new ProtocolError(String(e)));
      return;
    }
    this.emit("frame", f);
    switch (f.type) {
      case "welcome":
        if (f.version !== PROTOCOL_VERSION) {
          this.fail(new ProtocolError(`the server speaks protocol ${f.version}; this client speaks ${PROTOCOL_VERSION}`));
          return;
        }
        this.maxFrame = f.maxFrame;
        this.compressed = f.compress === "lz4";
        break;
      case "create": {
        /** @type {EntityView} */
        const view = { id: f.entity, type: f.typeName, own: f.own, attrs: f.attrs, x: 0, y: 0, z: 0, yaw: 0, placed: false };
        this.entities.set(f.entity, view);
        if (f.own) {
          const old = this.me === null ? undefined : this.entities.get(this.me);
          if (old && old !== view) old.own = false;
          this.me = f.entity;
        }
        this.emit("create", view);
        if (f.own && this.whenReady) this.whenReady(null);
        break;
      }
      case "destroy": {
        const view = this.entities.get(f.entity);
        this.entities.delete(f.entity);
        if (view) this.emit("destroy", view);
        break;
      }
      case "attr": {
        const view = this.entities.get(f.entity);
        if (!view) break;
        try {
          view.attrs = applyAttr(view.attrs, f.op, f.path, f.value);
        } catch (e) {
          this.fail(new ProtocolError(`an attribute change of entity ${f.entity} does not fit its attributes: ${e instanceof Error ? e.message : e}`));
          return;
        }
        this.emit("attr", view, { op: f.op, path: f.path, value: f.value });
        break;
      }
      case "positions":
        for (const p of f.entries) {
          const view = this.entities.get(p.entity);
          if (!view) continue;
          view.x = p.x;
          view.y = p.y;
          view.z = p.z;
          view.yaw = p.yaw;
          view.placed = true;
        }
        this.emit("positions", f.entries);
        break;
      case "call":
        this.called({ entity: f.entity, method: f.method, args: f.args, own: f.entity === this.me });
        break;
      case "callOwn":
        if (this.me !== null) this.called({ entity: this.me, method: f.method, args: f.args, own: true });
        break;
      case "viewReset":
        this.entities.clear();
        this.emit("viewReset");
        break;
      case "pong": {
        const done = this.pings.get(f.nonce);
        if (done) {
          this.pings.delete(f.nonce);
          done(null);
        }
        break;
      }
      case "error": {
        const e = new WyrmError(f.code, f.message, f.reqId);
        const request = f.reqId === 0 ? undefined : this.requests.get(f.reqId);
        if (request) request.reject(e);
        this.emit("error", e);
        // The server closes the connection after these.
        if (f.code === ErrorCode.UNSUPPORTED_VERSION) this.fail(new ProtocolError(`the server refused protocol ${PROTOCOL_VERSION}: ${f.message}`));
        break;
      }
      case "unknown":
        break;
    }
  }

  /**
   * @private
   * @param {ServerCall} call
   */
  called(call) {
    this.emit("call", call);
    // The oldest waiter for it takes it.
    for (const w of this.expects) {
      if (w.method === call.method) {
        w.resolve(call.args);
        break;
      }
    }
  }

  /**
   * Gives up on the connection: `why` goes to whatever waits, and it closes.
   * @private
   * @param {Error} why
   */
  fail(why) {
    this.closed(why);
    this.transport.close();
  }

  /**
   * @private
   * @param {Error | null} why
   */
  closed(why) {
    if (!this.open) return;
    this.open = false;
    this.closedWith = why ?? new ConnectionClosedError(`${this.url} closed`);
    if (this.keepAlive !== null) clearInterval(this.keepAlive);
    const gone = this.closedWith;
    if (this.whenReady) this.whenReady(gone);
    for (const w of [...this.expects]) w.reject(gone);
    this.requests.clear();
    for (const done of this.pings.values()) done(gone);
    this.pings.clear();
    this.emit("close", why);
  }
}
