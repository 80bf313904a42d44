// The conformance plugin in JavaScript: `Room` and `Member` exactly as
// plugins/conformance/README.md specifies them, with the same private state
// as the Rust, Python and C versions so a server can swap between them.

import { definePlugin, WyrmError } from "./wyrm.js";

/** Lines of history the room keeps. */
const HISTORY = 20;

/** Whether `s` is a string of `min` to `max` characters (code points). */
function charsBetween(s, min, max) {
  if (typeof s !== "string") return false;
  const n = [...s].length;
  return n >= min && n <= max;
}

function room(ctx) {
  const id = ctx.service("Room");
  if (id === null) throw new WyrmError("no room");
  return id;
}

export const entities = definePlugin({
  name: "conformance-js",
  version: "1.0.0-js",
  types: {
    // The service: recent lines and how many were ever posted.
    Room: {
      attrs: { topic: ["persistent"] },
      state: () => ({ lines: [], posts: 0 }),
      methods: {
        join: {
          exposure: "server",
          call(ctx, member, _name) {
            ctx.callClientOf(member, "on_history", [ctx.state.lines, ctx.state.posts]);
          },
        },
        post: {
          exposure: "server",
          call(ctx, _member, name, text) {
            const s = ctx.state;
            s.posts += 1;
            s.lines.push([name, text]);
            if (s.lines.length > HISTORY) s.lines.shift();
            ctx.broadcast("on_said", [name, text, s.posts]);
          },
        },
      },
    },

    // A connected client's entity.
    Member: {
      attrs: { name: ["all-clients"], said: ["own-client"] },
      state: () => ({ said: 0 }),
      methods: {
        hello: {
          exposure: "own-client",
          call(ctx, name) {
            if (!charsBetween(name, 1, 20)) throw new WyrmError("bad name");
            ctx.setAttr("name", name);
            ctx.call(room(ctx), "join", [ctx.id, name]);
          },
        },
        say: {
          exposure: "own-client",
          call(ctx, text) {
            const name = ctx.getAttr("name");
            if (name === undefined) throw new WyrmError("say hello first");
            if (!charsBetween(text, 1, 200)) throw new WyrmError("bad text");
            ctx.state.said += 1;
            ctx.setAttr("said", ctx.state.said);
            ctx.call(room(ctx), "post", [ctx.id, name, text]);
          },
        },
        echo: {
          exposure: "own-client",
          call(ctx, value) {
            ctx.callClient("on_echo", [value]);
          },
        },
        remind: {
          exposure: "own-client",
          call(ctx, delayMs, text) {
            ctx.setTimer(delayMs, "reminded", [text]);
          },
        },
        reminded: {
          exposure: "server",
          call(ctx, text) {
            ctx.callClient("on_reminder", [text, ctx.state.said]);
          },
        },
        fail: {
          exposure: "own-client",
          call(_ctx, message) {
            throw new WyrmError(String(message));
          },
        },
        kind_of: {
          exposure: "own-client",
          call(ctx, id) {
            ctx.askEntityType(id, "told", "kind");
          },
        },
        peek: {
          exposure: "own-client",
          call(ctx, id, attr) {
            ctx.askAttr(id, [attr], "told", attr);
          },
        },
        // The answer of kind_of, peek and spawn, passed on as it came.
        told: {
          exposure: "server",
          call(ctx, error, value, context) {
            ctx.callClient("on_told", [context, error, value]);
          },
        },
        spawn: {
          exposure: "own-client",
          call(ctx, name) {
            const id = ctx.createEntity("Member", { name }, { at: "anywhere" });
            ctx.callClient("on_spawned", [id]);
            ctx.askAttr(id, ["name"], "told", "spawned");
            ctx.destroyEntity(id);
          },
        },
      },
      hooks: {
        clientDisconnected(ctx) {
          try {
            ctx.destroyEntity();
          } catch (e) {
            ctx.log("warn", `cannot destroy member: ${e.message}`);
          }
        },
      },
    },
  },
});
