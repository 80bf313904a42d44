// The ways to reach a server (docs/protocol.md §2): WebSocket, one frame per
// binary message, in browsers and Node; TCP, each frame after its u32
// little-endian length, in Node only (`node:net` is loaded only when a
// `tcp://` address is used, so browsers never ask for it).

import { ConnectionClosedError, ProtocolError } from "./errors.js";

/**
 * An open connection that carries whole frames.
 * @typedef {object} Transport
 * @property {(frame: Uint8Array) => boolean} send sends one frame; false once closed
 * @property {() => void} close closes; `onClose` follows
 * @property {(frame: Uint8Array) => void} onFrame set by the owner: each frame received
 * @property {(why: Error | null) => void} onClose set by the owner: called once, with what went wrong (null for a clean close)
 */

/**
 * A WebSocket class with the browser's API: the global one, or Node's `ws`
 * package (`import WebSocket from "ws"`).
 * @typedef {new (url: string, protocols?: string | string[], options?: object) => WebSocketLike} WebSocketClass
 */

/**
 * @typedef {object} WebSocketLike
 * @property {string} binaryType
 * @property {number} readyState
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: { data: unknown }) => void) | null} onmessage
 * @property {((ev: any) => void) | null} onerror
 * @property {((ev: { code?: number, reason?: string }) => void) | null} onclose
 * @property {(data: Uint8Array) => void} send
 * @property {() => void} close
 */

/**
 * @typedef {object} TransportOptions
 * @property {WebSocketClass} [WebSocket] the WebSocket class to use (default: the global one)
 * @property {number} [maxFrame] the largest frame accepted from the server, in bytes (default 16 MiB)
 * @property {TlsOptions} [tls] in Node, for `tls://` and `wss://`: whom to trust (a browser trusts what the system does)
 */

/**
 * @typedef {object} TlsOptions
 * @property {string} [ca] PEM text of the authorities to trust, instead of the system's
 * @property {string} [servername] the name the server's certificate must be for (default: the address's host)
 */

const DEFAULT_MAX_FRAME = 16 << 20;

/**
 * Opens a transport to `url`: `ws://host:port/ws`, `wss://…`, or (Node)
 * `tcp://host:port`, `tls://host:port`. Resolves once it is open.
 * @param {string} url
 * @param {TransportOptions} [options]
 * @returns {Promise<Transport>}
 */
export function openTransport(url, options = {}) {
  const scheme = url.slice(0, url.indexOf(":"));
  if (scheme === "ws" || scheme === "wss") return openWebSocket(url, options);
  if (scheme === "tcp" || scheme === "tls") return openTcp(url, options);
  return Promise.reject(new TypeError(`cannot connect to ${url}: the address must start with ws://, wss://, tcp:// or tls://`));
}

/**
 * @param {string} url
 * @param {TransportOptions} options
 * @returns {Promise<Transport>}
 */
function openWebSocket(url, options) {
  const WS = options.WebSocket ?? /** @type {WebSocketClass | undefined} */ (/** @type {any} */ (globalThis).WebSocket);
  if (!WS) {
    return Promise.reject(
      new TypeError("this runtime has no WebSocket: pass one as the `WebSocket` option (in Node 20, `import WebSocket from \"ws\"`), or use a tcp:// address"),
    );
  }
  return new Promise((resolve, reject) => {
    // Node's `ws` takes TLS options third; a browser is not given any.
    const ws = options.tls ? new WS(url, undefined, { ...options.tls }) : new WS(url);
    ws.binaryType = "arraybuffer";
    // Node's `ws` hands out its own buffers as they are, where an
    // ArrayBuffer would be a copy of each message; a browser ignores a
    // type it does not know and keeps "arraybuffer".
    ws.binaryType = "nodebuffer";
    let open = false;
    let closed = false;
    /** @type {Transport} */
    const t = {
      send(frame) {
        if (closed || ws.readyState !== 1) return false;
        ws.send(frame);
        return true;
      },
      close() {
        if (closed) return;
        try {
          ws.close();
        } catch {
          // Already closing.
        }
      },
      onFrame() {},
      onClose() {},
    };
    /** @param {Error | null} why */
    const end = (why) => {
      if (closed) return;
      closed = true;
      if (!open) reject(why ?? new ConnectionClosedError(`${url} closed before it opened`));
      else t.onClose(why);
    };
    ws.onopen = () => {
      open = true;
      resolve(t);
    };
    ws.onmessage = (ev) => {
      if (closed) return;
      const data = ev.data;
      if (data instanceof ArrayBuffer) t.onFrame(new Uint8Array(data));
      else if (ArrayBuffer.isView(data)) t.onFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      else {
        end(new ProtocolError("the server sent a text message"));
        t.close();
      }
    };
    // A browser says nothing useful in an error event (Node's `ws` says
    // why); the close says the rest.
    ws.onerror = (ev) => {
      const why = ev && typeof ev.message === "string" && ev.message ? `: ${ev.message}` : "";
      if (!open) end(new ConnectionClosedError(`cannot connect to ${url}${why}`));
    };
    ws.onclose = (ev) => {
      const clean = ev.code === 1000 || ev.code === 1005;
      end(clean ? null : new ConnectionClosedError(`connection to ${url} closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`));
    };
  });
}

/**
 * @param {string} url
 * @param {TransportOptions} options
 * @returns {Promise<Transport>}
 */
async function openTcp(url, options) {
  const { host, port } = hostPort(url);
  const secure = url.startsWith("tls:");
  const net = await import("node:net");
  const tls = secure ? await import("node:tls") : null;
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  return new Promise((resolve, reject) => {
    const socket = tls
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...options.tls })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    let open = false;
    let closed = false;
    /** @type {Uint8Array[]} */
    let chunks = [];
    let buffered = 0;
    /** @type {Transport} */
    const t = {
      send(frame) {
        if (closed) return false;
        const out = new Uint8Array(4 + frame.length);
        new DataView(out.buffer).setUint32(0, frame.length, true);
        out.set(frame, 4);
        socket.write(out);
        return true;
      },
      close() {
        if (!closed) socket.end();
      },
      onFrame() {},
      onClose() {},
    };
    /** @param {Error | null} why */
    const end = (why) => {
      if (closed) return;
      closed = true;
      socket.destroy();
      if (!open) reject(why ?? new ConnectionClosedError(`${url} closed before it opened`));
      else t.onClose(why);
    };
    socket.once(secure ? "secureConnect" : "connect", () => {
      open = true;
      resolve(t);
    });
    socket.on("data", (/** @type {Uint8Array} */ data) => {
      chunks.push(data);
      buffered += data.length;
      // Cut whole frames; keep the rest for the next read.
      let all = chunks.length === 1 ? chunks[0] : concat(chunks, buffered);
      let at = 0;
      while (!closed && all.length - at >= 4) {
        const len = new DataView(all.buffer, all.byteOffset + at, 4).getUint32(0, true);
        if (len === 0 || len > maxFrame) {
          end(new ProtocolError(len === 0 ? "a frame of length 0" : `a frame of ${len} bytes, more than the ${maxFrame} accepted`));
          return;
        }
        if (all.length - at - 4 < len) break;
        t.onFrame(all.subarray(at + 4, at + 4 + len));
        at += 4 + len;
      }
      all = all.subarray(at);
      chunks = all.length ? [all] : [];
      buffered = all.length;
    });
    socket.on("error", (e) => end(new ConnectionClosedError(open ? `connection to ${url} failed: ${e.message}` : `cannot connect to ${url}: ${e.message}`)));
    socket.on("close", () => end(buffered ? new ConnectionClosedError(`connection to ${url} closed in the middle of a frame`) : null));
  });
}

/**
 * @param {Uint8Array[]} chunks
 * @param {number} total
 */
function concat(chunks, total) {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * @param {string} url `tcp://host:port` or `tls://host:port`
 * @returns {{ host: string, port: number }}
 */
function hostPort(url) {
  const rest = url.slice("tcp://".length).replace(/\/.*$/, "");
  const colon = rest.lastIndexOf(":");
  const port = Number(rest.slice(colon + 1));
  const host = rest.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  if (colon < 0 || !host || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new TypeError(`cannot connect to ${url}: expected ${url.slice(0, 3)}://host:port`);
  }
  return { host, port };
}
