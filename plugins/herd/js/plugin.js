// A herd: many small entities with private state, in JavaScript, for tests
// of checkpoints and revival at scale (tests/tests/recovery.rs). A client's
// Shepherd spawns Sheep, each numbered in its private state; an audit asks
// every Sheep whether it still knows its number.

import { definePlugin } from "./wyrm.js";

/** The id of sheep `number`, from the shepherd's runs. */
function idOf(runs, number) {
  for (const [first, id, count] of runs) {
    if (number >= first && number < first + count) return BigInt(id) + BigInt(number - first);
  }
  throw new Error(`no sheep ${number}`);
}

export const entities = definePlugin({
  name: "herd-js",
  version: "1.0.0",
  types: {
    Shepherd: {
      // Every sheep spawned, as runs of consecutive ids: [first number,
      // first id, count]. (A list of 20,000 ids in one entity's state
      // would take longer than a call may to save.)
      state: () => ({ runs: [], sheep: 0 }),
      methods: {
        spawn: {
          exposure: "own-client",
          call(ctx, n) {
            const s = ctx.state;
            for (let i = 0; i < n; i++) {
              const number = s.sheep;
              const id = BigInt(ctx.createEntity("Sheep", {}));
              const last = s.runs[s.runs.length - 1];
              if (last && BigInt(last[1]) + BigInt(last[2]) === id && last[0] + last[2] === number) {
                last[2] += 1;
              } else {
                s.runs.push([number, id, 1]);
              }
              s.sheep += 1;
              ctx.call(id, "number", [number]);
            }
            // Queued behind the numbering, so it answers once all is done.
            ctx.call(ctx.id, "spawned", []);
          },
        },
        spawned: {
          exposure: "server",
          call(ctx) {
            ctx.callClient("on_spawned", [ctx.state.sheep]);
          },
        },
        // Checks every sheep, a thousand per call (one call may not
        // run long), then answers.
        audit: {
          exposure: "own-client",
          call(ctx) {
            ctx.call(ctx.id, "audit_from", [0]);
          },
        },
        audit_from: {
          exposure: "server",
          call(ctx, from) {
            const s = ctx.state;
            const to = Math.min(from + 1000, s.sheep);
            for (let number = from; number < to; number++) {
              ctx.call(idOf(s.runs, number), "check", [number, ctx.id]);
            }
            ctx.call(ctx.id, to < s.sheep ? "audit_from" : "audited", to < s.sheep ? [to] : []);
          },
        },
        audited: {
          exposure: "server",
          call(ctx) {
            ctx.callClient("on_audited", [ctx.state.sheep]);
          },
        },
        // Runs past any deadline: the instance is stopped and replaced.
        spin: {
          exposure: "own-client",
          call() {
            for (;;) {
              // nothing
            }
          },
        },
      },
    },
    Sheep: {
      state: () => ({ number: -1 }),
      methods: {
        number: {
          exposure: "server",
          call(ctx, n) {
            ctx.state.number = n;
          },
        },
        check: {
          exposure: "server",
          call(ctx, n, shepherd) {
            if (ctx.state.number !== n) {
              ctx.callClientOf(shepherd, "on_stray", [n, ctx.state.number]);
            }
          },
        },
      },
    },
  },
});
