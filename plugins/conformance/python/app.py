"""The conformance plugin in Python: `Room` and `Member` exactly as
plugins/conformance/README.md specifies them. The Rust, JavaScript and C
folders beside this one implement the same contract, and a server can swap
between all four with the private state carried over."""

import wyrm
from wyrm import own_client, server

# Lines of history the room keeps.
HISTORY = 20

plugin = wyrm.Plugin("conformance-python", "1.0.0-python")


def chars_between(s, least, most):
    """Whether `s` is a string of `least` to `most` characters (code points)."""
    return isinstance(s, str) and least <= len(s) <= most


@plugin.entity(attrs={"topic": "persistent"})
class Room:
    """The service: recent lines and how many were ever posted."""

    def __init__(self):
        self.lines = []
        self.posts = 0

    @server
    def join(self, ctx, member, name):
        """A member said hello: send it the history."""
        ctx.call_client_of(member, "on_history", self.lines, self.posts)

    @server
    def post(self, ctx, member, name, text):
        """A member said something: keep it and tell everyone."""
        self.posts += 1
        self.lines.append([name, text])
        del self.lines[:-HISTORY]
        ctx.broadcast("on_said", name, text, self.posts)


@plugin.entity(attrs={"name": "all_clients", "said": "own_client"})
class Member:
    """A connected client's entity."""

    def __init__(self):
        self.said = 0

    @own_client
    def hello(self, ctx, name):
        if not chars_between(name, 1, 20):
            raise wyrm.Error("bad name")
        ctx.set_attr("name", name)
        room = ctx.service("Room")
        if room is None:
            raise wyrm.Error("no room")
        ctx.call(room, "join", ctx.id, name)

    @own_client
    def say(self, ctx, text):
        name = ctx.get_attr("name")
        if name is None:
            raise wyrm.Error("say hello first")
        if not chars_between(text, 1, 200):
            raise wyrm.Error("bad text")
        self.said += 1
        ctx.set_attr("said", self.said)
        room = ctx.service("Room")
        if room is None:
            raise wyrm.Error("no room")
        ctx.call(room, "post", ctx.id, name, text)

    @own_client
    def echo(self, ctx, value):
        ctx.call_client("on_echo", value)

    @own_client
    def remind(self, ctx, delay_ms, text):
        ctx.set_timer(delay_ms, "reminded", text)

    @server
    def reminded(self, ctx, text):
        ctx.call_client("on_reminder", text, self.said)

    @own_client
    def fail(self, ctx, message):
        raise wyrm.Error(message)

    @own_client
    def kind_of(self, ctx, id):
        ctx.ask_entity_type(id, "told", "kind")

    @own_client
    def peek(self, ctx, id, attr):
        ctx.ask_attr(id, [attr], "told", attr)

    @server
    def told(self, ctx, error, value, context):
        """The answer of kind_of, peek and spawn, passed on as it came."""
        ctx.call_client("on_told", context, error, value)

    @own_client
    def spawn(self, ctx, name):
        id = ctx.create_entity("Member", {"name": name}, at="anywhere")
        ctx.call_client("on_spawned", id)
        ctx.ask_attr(id, ["name"], "told", "spawned")
        ctx.destroy_entity(id)

    def on_client_disconnected(self, ctx):
        ctx.destroy_entity()


# The `entities` export componentize-py looks for.
Entities = plugin.export()
