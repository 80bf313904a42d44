"""The Python helper (sdk-python/wyrm.py) under CPython, driven by the Rust
fuzzer (fuzz/src/targets/external.rs) over stdin/stdout:

  in:  u32 LE length, then the input
  out: u8 verdict (0 accepted, 1 rejected, 2 property failed),
       u32 LE length, then a message (UTF-8)

  python3 wyrm_py.py msgpack|args|state path/to/sdk-python

Modes: ``msgpack``, one value through decode (anything it raises must be
wyrm.Error) and encode (decode(encode(v)) re-encodes to the same bytes);
``args``, byte 0 picks a method (none, one, pair, mixed), the rest is its
arguments, through the plugin's call; ``state``, byte 0 picks type Fields or
Any, the rest is the state, through import, exported (saved) and imported
again.

Outside a component build the helper has no host (its bindings are
missing): only the codec and the runtime's tables work, which is what these
paths use. ``log`` is replaced to record instead of print.
"""

import struct
import sys
import traceback

ACCEPTED, REJECTED, FAILED = 0, 1, 2

if len(sys.argv) != 3 or sys.argv[1] not in ("msgpack", "args", "state"):
    sys.stderr.write("usage: python3 wyrm_py.py msgpack|args|state path/to/sdk-python\n")
    sys.exit(2)
MODE = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import wyrm  # noqa: E402

LOGS = []
wyrm.log = lambda level, message: LOGS.append("%s: %s" % (level, message))


def describe(e):
    return "%s: %s" % (type(e).__name__, e)


def check_value(data):
    """(verdict, message) for one MessagePack value."""
    try:
        v = wyrm.decode(data)
    except wyrm.Error as e:
        return REJECTED, str(e)
    except Exception as e:  # anything else is a bug
        return FAILED, "decode raised %s\n%s" % (describe(e), traceback.format_exc())
    try:
        once = wyrm.encode(v)
        twice = wyrm.encode(wyrm.decode(once))
    except Exception as e:
        return FAILED, "a decoded value does not re-encode and decode: %s\n%s" % (
            describe(e), traceback.format_exc())
    if once != twice:
        return FAILED, "re-encoding a decoded value is not stable"
    return ACCEPTED, ""


BROKEN = []
plugin = wyrm.Plugin("fuzz", "1.0.0")


@plugin.entity()
class Fields:
    def __init__(self):
        self.n = 0
        self.name = ""
        self.tags = []
        self.pos = None
        self.scores = {}
        self.shape = "Empty"
        self.small = 0

    @wyrm.own_client
    def none(self, ctx):
        pass

    @wyrm.own_client
    def one(self, ctx, v):
        verdict, why = check_value(wyrm.encode(v))
        if verdict != ACCEPTED:
            BROKEN.append("one: an argument re-encoded does not check: %s" % why)

    @wyrm.own_client
    def pair(self, ctx, s, n):
        self.name = s
        self.n = n

    @wyrm.own_client
    def mixed(self, ctx, b, d, tags, w, shape):
        self.tags = tags
        self.shape = shape


@plugin.entity()
class Any:
    """Any map, kept as it came (the helper's state is a map)."""

    def __init__(self):
        self.value = {}

    @staticmethod
    def migrate(from_version, state):
        a = Any()
        a.value = state
        return a

    def save_state(self):
        return self.value


METHODS = ("none", "one", "pair", "mixed")
TYPES = ("Fields", "Any")


class Ref:
    def __init__(self, id, kind):
        self.id = id
        self.kind = kind


class State:
    def __init__(self, id, kind, data):
        self.entity = Ref(id, kind)
        self.type_name = TYPES[kind]
        self.data = data


def run_args(data):
    if not data:
        return REJECTED, "empty input"
    method = METHODS[data[0] % 4]
    args = bytes(data[1:])
    if args:
        verdict, why = check_value(args)
        if verdict == FAILED:
            return verdict, why
    del BROKEN[:]
    del LOGS[:]
    err = plugin._call(Ref(1, 0), method, args, None)
    if LOGS:
        return FAILED, "Fields.%s: %s" % (method, "; ".join(LOGS))
    if BROKEN:
        return FAILED, BROKEN[0]
    if err is None:
        return ACCEPTED, ""
    # Every helper takes no bytes, nil and an empty array as no arguments.
    if method == "none" and args in (b"", b"\xc0", b"\x90"):
        return FAILED, "a method without parameters refused no arguments: %s" % err
    if err.startswith("bad arguments for Fields.%s: " % method):
        return REJECTED, err
    return FAILED, "Fields.%s failed with %s" % (method, err)


def export_one(kind):
    """What export-entities would send for entity 7 (the runtime's own
    export needs the bindings' types, so this runs its body)."""
    k, state = plugin._table[7]
    if k != kind:
        raise AssertionError("entity 7 has kind %d, imported as %d" % (k, kind))
    return plugin.types[k].save(state)


def run_state(data):
    if not data:
        return REJECTED, "empty input"
    kind = data[0] % 2
    state = bytes(data[1:])
    if state:
        verdict, why = check_value(state)
        if verdict == FAILED:
            return verdict, why
    try:
        plugin._import("1.0.0", [State(7, kind, state)])
    except wyrm._Err as e:
        msg = str(e.value)
        if msg.startswith("cannot import "):
            return REJECTED, msg
        return FAILED, "import failed with %s" % msg
    try:
        first = export_one(kind)
        plugin._import("1.0.0", [State(7, kind, first)])
        second = export_one(kind)
    except Exception as e:
        return FAILED, "an imported state does not export and import again: %s\n%s" % (
            describe(e), traceback.format_exc())
    if first != second:
        return FAILED, "export, import, export is not stable"
    return ACCEPTED, ""


RUN = {"msgpack": check_value, "args": run_args, "state": run_state}[MODE]


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def main():
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    while True:
        head = read_exact(inp, 4)
        if head is None:
            return
        data = read_exact(inp, struct.unpack("<I", head)[0])
        if data is None:
            return
        try:
            verdict, message = RUN(data)
        except Exception as e:  # the harness itself, or something uncaught
            verdict, message = FAILED, "uncaught %s\n%s" % (describe(e), traceback.format_exc())
        text = message.encode("utf-8", "replace")[:2000]
        out.write(struct.pack("<BI", verdict, len(text)) + text)
        out.flush()


main()
