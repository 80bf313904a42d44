// The Wyrm client SDK: connect to a Wyrm game server from a browser or
// Node, call methods on entities, and keep a live view of what the server
// shows (entities, attributes, positions). docs/protocol.md is the protocol
// it speaks; this is its one JavaScript implementation.
//
//   import { connect } from "@wyrm/client";
//   const client = await connect("ws://127.0.0.1:8080/ws");
//   const [ok, why] = await client.request("login", ["ann", "pw"], "on_login");
//   client.on("call", ({ method, args }) => console.log(method, args));

export { connect, Client } from "./client.js";
export { ErrorCode, WyrmError, ConnectionClosedError, TimeoutError, ProtocolError, codeName } from "./errors.js";
export { PROTOCOL_VERSION, decodeServer, encodeCall, encodeHello, encodeMove, encodePing } from "./frames.js";
export { PositionTable } from "./positions.js";
export { applyAttr } from "./attrs.js";
export * as msgpack from "./msgpack.js";

/** @typedef {import("./client.js").EntityView} EntityView */
/** @typedef {import("./client.js").ServerCall} ServerCall */
/** @typedef {import("./client.js").ClientEvents} ClientEvents */
/** @typedef {import("./client.js").ConnectOptions} ConnectOptions */
/** @typedef {import("./client.js").RequestOptions} RequestOptions */
/** @typedef {import("./frames.js").ServerFrame} ServerFrame */
/** @typedef {import("./msgpack.js").MsgValue} MsgValue */
/** @typedef {import("./positions.js").Place} Place */
