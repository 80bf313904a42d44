// The JavaScript helper (sdk-js/wyrm.js) under Node.js, driven by the Rust
// fuzzer (fuzz/src/targets/external.rs) over stdin/stdout:
//
//   in:  u32 LE length, then the input
//   out: u8 verdict (0 accepted, 1 rejected, 2 property failed),
//        u32 LE length, then a message (UTF-8)
//
//   node wyrm_js.mjs msgpack|args|state path/to/wyrm.js
//
// Modes: `msgpack`, one value through decode (anything it throws must be a
// WyrmError) and encode (decode(encode(v)) re-encodes to the same bytes);
// `args`, byte 0 picks a method (none, one, pair, mixed), the rest is its
// arguments, through the `call` export; `state`, byte 0 picks type Fields
// or Any, the rest is the state, through `importEntities`, exported and
// imported again.
//
// wyrm.js imports the host's functions as ES modules the component model
// provides; here they are plain objects: `log` records, anything else
// throws (nothing in these paths reaches the host).

import { readFileSync, readSync, writeSync } from "node:fs";

const [mode, sdkPath] = process.argv.slice(2);
if (!["msgpack", "args", "state"].includes(mode) || !sdkPath) {
  process.stderr.write("usage: node wyrm_js.mjs msgpack|args|state path/to/wyrm.js\n");
  process.exit(2);
}

const logs = [];
function stub(name, known) {
  return new Proxy(known, {
    get(target, key) {
      if (key in target) return target[key];
      return () => {
        throw new Error(`the fuzz harness has no host: ${name}.${String(key)} was called`);
      };
    },
  });
}
globalThis.__wyrmFuzzHost = stub("host", { log: (level, message) => logs.push(`${level}: ${message}`) });
globalThis.__wyrmFuzzStorage = stub("storage", {});

let source = readFileSync(sdkPath, "utf8");
let replaced = 0;
source = source.replace(/^import \* as (host|storage) from "wyrm:game\/(?:host|storage)@[^"]+";$/gm, (_, name) => {
  replaced += 1;
  return `const ${name} = globalThis.__wyrmFuzz${name[0].toUpperCase()}${name.slice(1)};`;
});
if (replaced !== 2) {
  process.stderr.write(`wyrm_js.mjs: expected wyrm.js to import host and storage (found ${replaced})\n`);
  process.exit(2);
}
const sdk = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
const { decode, encode, WyrmError, definePlugin } = sdk;

const ACCEPTED = 0, REJECTED = 1, FAILED = 2;

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describe(e) {
  return e instanceof Error ? `${e.name}: ${e.message}` : `${typeof e} ${String(e)}`;
}

// [verdict, message] for one MessagePack value.
function checkValue(bytes) {
  let v;
  try {
    v = decode(bytes);
  } catch (e) {
    if (e instanceof WyrmError) return [REJECTED, e.message];
    return [FAILED, `decode threw ${describe(e)}`];
  }
  let once, twice;
  try {
    once = encode(v);
    twice = encode(decode(once));
  } catch (e) {
    return [FAILED, `a decoded value does not re-encode and decode: ${describe(e)}`];
  }
  if (!sameBytes(once, twice)) return [FAILED, "re-encoding a decoded value is not stable"];
  return [ACCEPTED, ""];
}

let broken = null;

const entities = definePlugin({
  name: "fuzz",
  version: "1.0.0",
  types: {
    Fields: {
      state: () => ({ n: 0, name: "", tags: [], pos: null, scores: {}, shape: "Empty", small: 0 }),
      methods: {
        none: { exposure: "own-client", call() {} },
        one: {
          exposure: "own-client",
          call(ctx, v) {
            const [verdict, why] = checkValue(encode(v));
            if (verdict !== ACCEPTED) broken = `one: an argument re-encoded does not check: ${why}`;
          },
        },
        pair: {
          exposure: "own-client",
          call(ctx, s, n) {
            ctx.state.name = s;
            ctx.state.n = n;
          },
        },
        mixed: {
          exposure: "own-client",
          call(ctx, b, d, tags, w, shape) {
            ctx.state.tags = tags;
            ctx.state.shape = shape;
          },
        },
      },
    },
    Any: {
      state: () => ({ value: null }),
      migrate: (_from, saved) => ({ value: saved }),
      save: (s) => s.value,
    },
  },
});

const METHODS = ["none", "one", "pair", "mixed"];
const TYPES = ["Fields", "Any"];

// The `err` of an export arrives as a thrown value with `payload`.
function payloadOf(e) {
  return e && typeof e === "object" && "payload" in e ? String(e.payload) : null;
}

// A log line about something that was not a WyrmError is a bug in the
// helper (or what it called), not bad input.
function unexpectedLogs() {
  const bad = logs.filter((l) => l.startsWith("warn: fuzz:") || l.startsWith("error:"));
  logs.length = 0;
  return bad;
}

// Every helper takes no bytes, nil and an empty array as no arguments.
function noArgs(method, args) {
  return method === "none" && (args.length === 0 || (args.length === 1 && (args[0] === 0xc0 || args[0] === 0x90)));
}

function runArgs(input) {
  if (input.length === 0) return [REJECTED, "empty input"];
  const method = METHODS[input[0] % 4];
  const args = input.subarray(1);
  if (args.length > 0) {
    const [verdict, why] = checkValue(args);
    if (verdict === FAILED) return [verdict, why];
  }
  broken = null;
  try {
    entities.call({ id: 1n, kind: 0 }, method, args, { kind: "own-client", entity: 1n });
  } catch (e) {
    const msg = payloadOf(e);
    const bad = unexpectedLogs();
    if (bad.length) return [FAILED, `Fields.${method}: ${bad.join("; ")}`];
    if (noArgs(method, args)) return [FAILED, `a method without parameters refused no arguments: ${msg}`];
    if (msg !== null && msg.startsWith(`bad args for Fields.${method}: `)) return [REJECTED, msg];
    return [FAILED, `Fields.${method} failed with ${msg ?? describe(e)}`];
  }
  const bad = unexpectedLogs();
  if (bad.length) return [FAILED, `Fields.${method}: ${bad.join("; ")}`];
  if (broken) return [FAILED, broken];
  return [ACCEPTED, ""];
}

function importOne(kind, data) {
  entities.importEntities("1.0.0", [{ entity: { id: 7n, kind }, typeName: TYPES[kind], data }]);
}

function exportOne() {
  const out = entities.exportEntities([7n]);
  if (out.length !== 1) throw new Error(`exported ${out.length} states for one entity`);
  return out[0].data;
}

function runState(input) {
  if (input.length === 0) return [REJECTED, "empty input"];
  const kind = input[0] % 2;
  const data = input.subarray(1);
  if (data.length > 0) {
    const [verdict, why] = checkValue(data);
    if (verdict === FAILED) return [verdict, why];
  }
  try {
    importOne(kind, data);
  } catch (e) {
    const msg = payloadOf(e);
    const bad = unexpectedLogs();
    if (bad.length) return [FAILED, bad.join("; ")];
    if (msg !== null && msg.startsWith("cannot import ")) return [REJECTED, msg];
    return [FAILED, `import failed with ${msg ?? describe(e)}`];
  }
  try {
    const first = exportOne();
    importOne(kind, first);
    const second = exportOne();
    if (!sameBytes(first, second)) return [FAILED, "export, import, export is not stable"];
  } catch (e) {
    return [FAILED, `an imported state does not export and import again: ${payloadOf(e) ?? describe(e)}`];
  }
  const bad = unexpectedLogs();
  if (bad.length) return [FAILED, bad.join("; ")];
  return [ACCEPTED, ""];
}

const run = { msgpack: checkValue, args: runArgs, state: runState }[mode];

function readExact(n) {
  const buf = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    let k;
    try {
      k = readSync(0, buf, got, n - got, null);
    } catch (e) {
      if (e.code === "EAGAIN") continue;
      if (e.code === "EOF") return null;
      throw e;
    }
    if (k === 0) return null;
    got += k;
  }
  return buf;
}

function reply(verdict, message) {
  const text = Buffer.from(String(message).slice(0, 2000), "utf8");
  const head = Buffer.alloc(5);
  head[0] = verdict;
  head.writeUInt32LE(text.length, 1);
  writeSync(1, Buffer.concat([head, text]));
}

for (;;) {
  const head = readExact(4);
  if (head === null) break;
  const input = readExact(head.readUInt32LE(0));
  if (input === null) break;
  let verdict, message;
  try {
    [verdict, message] = run(new Uint8Array(input.buffer, input.byteOffset, input.length));
  } catch (e) {
    [verdict, message] = [FAILED, `the harness caught ${describe(e)}\n${e?.stack ?? ""}`];
  }
  reply(verdict, message);
}
