"""{{name}}: game logic for Wyrm, in Python. `wyrm build .` turns it into a
component; the `wyrm` module (the helper) is supplied by the build."""

import wyrm
from wyrm import own_client

plugin = wyrm.Plugin("{{name}}", "0.1.0")


@plugin.entity(attrs={"name": "all_clients"})
class Player:
    """The entity every connecting client is bound to. Its instance
    attributes are its private state: they survive a hot swap (saved as a
    MessagePack map)."""

    def __init__(self):
        self.greetings = 0

    @own_client
    def hello(self, ctx, name):
        """The client says who it is; it hears back a greeting and how many
        it has had."""
        if not isinstance(name, str) or not name:
            raise wyrm.Error("a name, please")
        self.greetings += 1
        ctx.set_attr("name", name)
        ctx.call_client("on_hello", f"Hello, {name}!", self.greetings)


# The `entities` export componentize-py looks for.
Entities = plugin.export()
