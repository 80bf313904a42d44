// What can go wrong, as classes a caller can tell apart with `instanceof`.

/** The error codes of `Error` frames (docs/protocol.md §5). */
export const ErrorCode = Object.freeze({
  MALFORMED: 1,
  FRAME_TOO_LARGE: 2,
  NO_SUCH_ENTITY: 3,
  NO_SUCH_METHOD: 4,
  NOT_ALLOWED: 5,
  CALL_FAILED: 6,
  PLUGIN_FAULT: 7,
  OVERLOADED: 8,
  INTERNAL: 9,
  UNSUPPORTED_VERSION: 10,
  TIMED_OUT: 11,
});

/** @typedef {keyof typeof ErrorCode} ErrorCodeName */

/** @type {Map<number, ErrorCodeName>} */
const NAMES = new Map(
  /** @type {[ErrorCodeName, number][]} */ (Object.entries(ErrorCode)).map(([name, code]) => [code, name]),
);

/**
 * The name of error code `code`; a code this SDK does not know is treated
 * like INTERNAL, as the protocol asks.
 * @param {number} code
 * @returns {ErrorCodeName}
 */
export function codeName(code) {
  return NAMES.get(code) ?? "INTERNAL";
}

/** Something the server refused or failed: an `Error` frame. */
export class WyrmError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {number} reqId the failed call's request id; 0 when no request is concerned
   */
  constructor(code, message, reqId) {
    super(`${codeName(code)}: ${message}`);
    this.name = "WyrmError";
    /** The code as sent (see {@link ErrorCode}). */
    this.code = code;
    /** Its name; INTERNAL for a code this SDK does not know. */
    this.codeName = codeName(code);
    /** The server's own words. */
    this.detail = message;
    this.reqId = reqId;
  }
}

/** The connection closed (or could not open) before what was awaited came. */
export class ConnectionClosedError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ConnectionClosedError";
  }
}

/** What was awaited did not come in time. */
export class TimeoutError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TimeoutError";
  }
}

/**
 * The server sent something this SDK cannot read: a malformed frame, or
 * another protocol version. The connection is closed.
 */
export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}
