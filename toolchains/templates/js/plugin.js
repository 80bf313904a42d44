// {{name}}: game logic for Wyrm, in JavaScript. `wyrm build .` turns it
// into a component; `./wyrm.js` (the helper) is supplied by the build.

import { definePlugin, WyrmError } from "./wyrm.js";

export const entities = definePlugin({
  name: "{{name}}",
  version: "0.1.0",
  types: {
    // The entity every connecting client is bound to. `state` is its
    // private state: it survives a hot swap (saved as a MessagePack map).
    Player: {
      attrs: { name: ["all-clients"] },
      state: () => ({ greetings: 0 }),
      methods: {
        // The client says who it is; it hears back a greeting and how many
        // it has had.
        hello: {
          exposure: "own-client",
          call(ctx, name) {
            if (typeof name !== "string" || name === "") {
              throw new WyrmError("a name, please");
            }
            ctx.state.greetings += 1;
            ctx.setAttr("name", name);
            ctx.callClient("on_hello", [`Hello, ${name}!`, ctx.state.greetings]);
          },
        },
      },
    },
  },
});
