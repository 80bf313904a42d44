"""Wyrm plugins in Python: declare entity types, and the `entities` export.

A plugin's ``app.py``::

    import wyrm
    from wyrm import own_client, server

    plugin = wyrm.Plugin("greeter", "1.0.0")

    @plugin.entity(attrs={"name": "all_clients"})
    class Member:
        def __init__(self):          # fresh private state
            self.greeted = 0

        @own_client
        def hello(self, ctx, name):  # args: the MessagePack array, unpacked
            self.greeted += 1
            ctx.set_attr("name", name)
            ctx.call_client("on_hello", name, self.greeted)

        def on_client_disconnected(self, ctx):
            ctx.destroy_entity()

    Entities = plugin.export()       # what componentize-py looks for

The build (``wyrm build``) stages this file next to the plugin; it is never
copied into a plugin's folder. See README.md beside it for the state format
and how MessagePack values map to Python values.
"""

import struct
import sys
# componentize-py snapshots the interpreter after importing the app at build
# time; a module first imported later (inside a call) is not in the
# component. So everything this file needs is imported here.
import traceback

try:
    from wit_world import exports as _exports
    from wit_world.imports import host as _host
    from wit_world.imports import storage as _storage
    from wit_world.imports import types as _types
    from componentize_py_types import Err as _Err
except ModuleNotFoundError as _missing:  # pragma: no cover - outside a build
    # Only the codec works without the generated bindings (handy for testing
    # it with a normal Python); anything else fails when it reaches the host.
    if _missing.name not in ("wit_world", "componentize_py_types"):
        raise
    _exports = _host = _storage = _types = None

    class _Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value


__all__ = [
    "Plugin", "Ctx", "Error", "Ext", "Caller", "Placement",
    "server", "own_client", "all_clients",
    "encode", "decode", "log",
]


class Error(Exception):
    """An error a method returns to its caller: raise ``wyrm.Error("bad name")``
    and the client gets exactly ``bad name`` in an error frame. Host imports
    that fail raise it too, so an unhandled one ends the call the same way."""


# --------------------------------------------------------------------------
# MessagePack
# --------------------------------------------------------------------------


class Ext:
    """A MessagePack extension value (``code`` -128..127, ``data`` bytes),
    kept as is so it survives a decode/encode round trip."""

    __slots__ = ("code", "data")

    def __init__(self, code, data):
        self.code = code
        self.data = bytes(data)

    def __eq__(self, other):
        return isinstance(other, Ext) and (self.code, self.data) == (other.code, other.data)

    def __hash__(self):
        return hash((self.code, self.data))

    def __repr__(self):
        return "Ext(%d, %r)" % (self.code, self.data)


_pack_B = struct.Struct(">B").pack
_pack_H = struct.Struct(">H").pack
_pack_I = struct.Struct(">I").pack
_pack_Q = struct.Struct(">Q").pack
_pack_b = struct.Struct(">b").pack
_pack_h = struct.Struct(">h").pack
_pack_i = struct.Struct(">i").pack
_pack_q = struct.Struct(">q").pack
_pack_d = struct.Struct(">d").pack
# Deeper values are refused: each level costs Python (and wasm) stack, and a
# client controls what it sends.
_MAX_DEPTH = 100
_FIXEXT_CODE = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
_FIXEXT_LEN = {c: n for n, c in _FIXEXT_CODE.items()}


def _enc_len(out, n, fix, fixmax, c8, c16, c32, what):
    if n <= fixmax:
        out.append(fix | n)
    elif c8 is not None and n < 0x100:
        out.append(c8)
        out.append(n)
    elif n < 0x10000:
        out.append(c16)
        out += _pack_H(n)
    elif n < 0x100000000:
        out.append(c32)
        out += _pack_I(n)
    else:
        raise Error("cannot encode value: %s of %d items is too long for MessagePack" % (what, n))


def _enc(out, v, depth):
    t = type(v)
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif t is int or (isinstance(v, int) and t is not bool):
        if 0 <= v:
            if v < 0x80:
                out.append(v)
            elif v < 0x100:
                out.append(0xCC)
                out.append(v)
            elif v < 0x10000:
                out.append(0xCD)
                out += _pack_H(v)
            elif v < 0x100000000:
                out.append(0xCE)
                out += _pack_I(v)
            elif v < 0x10000000000000000:
                out.append(0xCF)
                out += _pack_Q(v)
            else:
                raise Error("cannot encode value: integer %d is above 2^64-1" % v)
        elif v >= -32:
            out.append(v & 0xFF)
        elif v >= -0x80:
            out.append(0xD0)
            out += _pack_b(v)
        elif v >= -0x8000:
            out.append(0xD1)
            out += _pack_h(v)
        elif v >= -0x80000000:
            out.append(0xD2)
            out += _pack_i(v)
        elif v >= -0x8000000000000000:
            out.append(0xD3)
            out += _pack_q(v)
        else:
            raise Error("cannot encode value: integer %d is below -2^63" % v)
    elif t is float or isinstance(v, float):
        out.append(0xCB)
        out += _pack_d(v)
    elif t is str or isinstance(v, str):
        b = v.encode("utf-8")
        _enc_len(out, len(b), 0xA0, 31, 0xD9, 0xDA, 0xDB, "a string")
        out += b
    elif t is bytes or isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        _enc_len(out, len(b), 0, -1, 0xC4, 0xC5, 0xC6, "binary")
        out += b
    else:
        if depth > _MAX_DEPTH:
            raise Error("cannot encode value: nested more than %d levels deep" % _MAX_DEPTH)
        if t is list or t is tuple or isinstance(v, (list, tuple)):
            _enc_len(out, len(v), 0x90, 15, None, 0xDC, 0xDD, "an array")
            for x in v:
                _enc(out, x, depth + 1)
        elif t is dict or isinstance(v, dict):
            _enc_len(out, len(v), 0x80, 15, None, 0xDE, 0xDF, "a map")
            for k, x in v.items():
                _enc(out, k, depth + 1)
                _enc(out, x, depth + 1)
        elif t is Ext:
            n = len(v.data)
            fixext = _FIXEXT_CODE.get(n)
            if fixext is not None:
                out.append(fixext)
            else:
                _enc_len(out, n, 0, -1, 0xC7, 0xC8, 0xC9, "an extension")
            out += _pack_b(v.code)
            out += v.data
        else:
            raise Error("cannot encode value: %s is not a MessagePack type "
                        "(use None, bool, int, float, str, bytes, list, tuple, dict)"
                        % t.__name__)


def encode(value):
    """``value`` as MessagePack bytes (see README.md for the mapping)."""
    out = bytearray()
    _enc(out, value, 0)
    return bytes(out)


_unpack = struct.unpack_from


class _Decoder:
    __slots__ = ("b", "i")

    def __init__(self, b):
        self.b = b
        self.i = 0

    def take(self, n):
        i = self.i
        j = i + n
        if j > len(self.b):
            raise Error("cannot decode value: MessagePack data ends too early")
        self.i = j
        return self.b[i:j]

    def num(self, fmt, n):
        i = self.i
        if i + n > len(self.b):
            raise Error("cannot decode value: MessagePack data ends too early")
        self.i = i + n
        return _unpack(fmt, self.b, i)[0]

    def str_(self, n):
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Error("cannot decode value: a string is not valid UTF-8") from None

    def value(self, depth=0):
        b = self.b
        i = self.i
        if i >= len(b):
            raise Error("cannot decode value: MessagePack data ends too early")
        c = b[i]
        self.i = i + 1
        if c <= 0x7F:
            return c
        if c >= 0xE0:
            return c - 0x100
        if 0xA0 <= c <= 0xBF:
            return self.str_(c & 0x1F)
        if 0x90 <= c <= 0x9F:
            return self.array(c & 0x0F, depth)
        if 0x80 <= c <= 0x8F:
            return self.map(c & 0x0F, depth)
        if c == 0xC0:
            return None
        if c == 0xC2:
            return False
        if c == 0xC3:
            return True
        if c == 0xCC:
            return self.num(">B", 1)
        if c == 0xCD:
            return self.num(">H", 2)
        if c == 0xCE:
            return self.num(">I", 4)
        if c == 0xCF:
            return self.num(">Q", 8)
        if c == 0xD0:
            return self.num(">b", 1)
        if c == 0xD1:
            return self.num(">h", 2)
        if c == 0xD2:
            return self.num(">i", 4)
        if c == 0xD3:
            return self.num(">q", 8)
        if c == 0xCA:
            return self.num(">f", 4)
        if c == 0xCB:
            return self.num(">d", 8)
        if c == 0xD9:
            return self.str_(self.num(">B", 1))
        if c == 0xDA:
            return self.str_(self.num(">H", 2))
        if c == 0xDB:
            return self.str_(self.num(">I", 4))
        if c == 0xC4:
            return bytes(self.take(self.num(">B", 1)))
        if c == 0xC5:
            return bytes(self.take(self.num(">H", 2)))
        if c == 0xC6:
            return bytes(self.take(self.num(">I", 4)))
        if c == 0xDC:
            return self.array(self.num(">H", 2), depth)
        if c == 0xDD:
            return self.array(self.num(">I", 4), depth)
        if c == 0xDE:
            return self.map(self.num(">H", 2), depth)
        if c == 0xDF:
            return self.map(self.num(">I", 4), depth)
        fixext = _FIXEXT_LEN.get(c)
        if fixext is not None:
            code = self.num(">b", 1)
            return Ext(code, self.take(fixext))
        if c in (0xC7, 0xC8, 0xC9):
            n = self.num((">B", ">H", ">I")[c - 0xC7], 1 << (c - 0xC7))
            code = self.num(">b", 1)
            return Ext(code, self.take(n))
        raise Error("cannot decode value: 0x%02x is not a MessagePack type" % c)

    def array(self, n, depth):
        if depth > _MAX_DEPTH:
            raise Error("cannot decode value: nested more than %d levels deep" % _MAX_DEPTH)
        # Every item takes at least one byte: refuse impossible lengths
        # before allocating for them.
        if n > len(self.b) - self.i:
            raise Error("cannot decode value: MessagePack data ends too early")
        v = self.value
        out = []
        for _ in range(n):
            out.append(v(depth + 1))
        return out

    def map(self, n, depth):
        if depth > _MAX_DEPTH:
            raise Error("cannot decode value: nested more than %d levels deep" % _MAX_DEPTH)
        if 2 * n > len(self.b) - self.i:
            raise Error("cannot decode value: MessagePack data ends too early")
        out = {}
        for _ in range(n):
            k = self.value(depth + 1)
            if type(k) is list:
                k = _hashable(k)
            elif type(k) is dict:
                raise Error("cannot decode value: a map key is a map")
            out[k] = self.value(depth + 1)
        return out


def _hashable(v):
    if type(v) is list:
        return tuple(_hashable(x) for x in v)
    if type(v) is dict:
        raise Error("cannot decode value: a map key holds a map")
    return v


def decode(data):
    """The value MessagePack ``data`` holds; the whole input must be one
    value. Raises :class:`Error` for anything malformed."""
    d = _Decoder(data if type(data) is bytes else bytes(data))
    v = d.value()
    if d.i != len(d.b):
        raise Error("cannot decode value: %d byte(s) after the value" % (len(d.b) - d.i))
    return v


def _encode_args(args):
    return encode(list(args))


# --------------------------------------------------------------------------
# Declaring entity types
# --------------------------------------------------------------------------

_SERVER, _OWN, _ALL = "server", "own_client", "all_clients"


def _expose(exposure):
    def mark(fn):
        if not callable(fn):
            raise TypeError("@%s marks a method" % exposure)
        fn._wyrm_exposure = exposure
        return fn
    return mark


server = _expose(_SERVER)
server.__doc__ = "Marks a method only the server may call (other entities, timers, replies)."
own_client = _expose(_OWN)
own_client.__doc__ = "Marks a method the server and the entity's own client may call."
all_clients = _expose(_ALL)
all_clients.__doc__ = "Marks a method the server and any client that knows the entity may call."

_HOOKS = {
    "on_created": 0, "on_destroyed": 0, "on_client_connected": 0,
    "on_client_disconnected": 0, "on_tick": 1, "on_aoi_enter": 1, "on_aoi_leave": 1,
}
_FLAG_NAMES = ("persistent", "own_client", "all_clients")


def _parse_flags(type_name, attr, flags):
    if isinstance(flags, str):
        parts = [] if flags.strip() in ("", "none") else flags.split("|")
    else:
        parts = list(flags)
    out = []
    for p in parts:
        p = p.strip().replace("-", "_")
        if p not in _FLAG_NAMES:
            raise TypeError(
                "%s: attribute %r has unknown flag %r: expected persistent, own_client, "
                "all_clients (combined with '|'), or 'none'" % (type_name, attr, p))
        if p not in out:
            out.append(p)
    return out


def _arity(fn, skip):
    """(fewest, most or None for any) positional arguments `fn` takes after
    its first `skip` (self, ctx)."""
    code = fn.__code__
    total = code.co_argcount - skip
    defaults = len(fn.__defaults__ or ())
    most = None if code.co_flags & 0x04 else total  # CO_VARARGS
    return max(total - defaults, 0), most


class _Method:
    __slots__ = ("name", "exposure", "fn", "fewest", "most")

    def __init__(self, name, exposure, fn):
        self.name = name
        self.exposure = exposure
        self.fn = fn
        self.fewest, self.most = _arity(fn, 2)


class _Type:
    """One declared entity type: its class, declarations and dispatch table."""

    def __init__(self, cls, name, attrs, aoi):
        self.cls = cls
        self.name = name
        self.attrs = [(a, _parse_flags(name, a, f)) for a, f in attrs.items()]
        self.methods = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                exposure = getattr(fn, "_wyrm_exposure", None)
                if exposure is not None:
                    if attr in _HOOKS:
                        raise TypeError("%s.%s is a hook; it cannot be a method too" % (name, attr))
                    self.methods[attr] = _Method(attr, exposure, fn)
        self.hooks = {h: getattr(cls, h) for h in _HOOKS if callable(getattr(cls, h, None))}
        wants_events = "on_aoi_enter" in self.hooks or "on_aoi_leave" in self.hooks
        if aoi is None:
            if wants_events:
                raise TypeError("%s: on_aoi_enter / on_aoi_leave need an area of interest: "
                                "@plugin.entity(aoi=(radius, hysteresis))" % name)
            self.aoi = None
        else:
            radius, hysteresis = aoi if isinstance(aoi, (tuple, list)) else (aoi, 0.0)
            self.aoi = (float(radius), float(hysteresis), wants_events)

    def fresh(self):
        return self.cls()

    def restore(self, from_version, data):
        if not data:
            return self.cls()
        state = decode(data)
        if not isinstance(state, dict):
            raise Error("the state is not a MessagePack map")
        migrate = getattr(self.cls, "migrate", None)
        if migrate is not None:
            return migrate(from_version, state)
        obj = self.cls()
        # Fields missing from the data keep their fresh value; fields this
        # version does not have are dropped (README.md: state format).
        known = vars(obj)
        for k, v in state.items():
            if isinstance(k, str) and k in known and not k.startswith("_"):
                setattr(obj, k, v)
        return obj

    def save(self, obj):
        save_state = getattr(obj, "save_state", None)
        if save_state is not None:
            state = save_state()
        else:
            state = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        return encode(state)


class Plugin:
    """A plugin: a name, a version and entity types, declared in order (a
    type's position is the ``kind`` the host passes back)."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.types = []
        self._by_name = {}
        self._table = {}  # entity id -> [kind, state]

    def entity(self, attrs=None, aoi=None, name=None):
        """Class decorator declaring an entity type.

        ``attrs``: attribute name -> flags (``"persistent"``,
        ``"own_client"``, ``"all_clients"``, combined with ``|``, or
        ``"none"``). ``aoi``: ``(radius, hysteresis)`` for an entity that sees
        others in a space. ``name``: the type name (default: the class name).
        """
        def declare(cls):
            ty = _Type(cls, name or cls.__name__, dict(attrs or {}), aoi)
            if ty.name in self._by_name:
                raise TypeError("entity type %s is declared twice" % ty.name)
            self._by_name[ty.name] = len(self.types)
            self.types.append(ty)
            return cls
        return declare

    def export(self):
        """The class componentize-py instantiates for the ``entities``
        export: assign it to ``Entities`` in ``app.py``."""
        plugin = self
        base = _exports.Entities if _exports is not None else object

        class Entities(base):
            def init(self):
                return plugin._init()

            def created(self, entity):
                _check(plugin._hook(entity, "on_created", ()))

            def destroyed(self, entity):
                plugin._log_failed(entity, "on_destroyed", plugin._hook(entity, "on_destroyed", ()))
                plugin._table.pop(entity.id, None)

            def client_connected(self, entity):
                plugin._log_failed(entity, "on_client_connected",
                                   plugin._hook(entity, "on_client_connected", ()))

            def client_disconnected(self, entity):
                plugin._log_failed(entity, "on_client_disconnected",
                                   plugin._hook(entity, "on_client_disconnected", ()))

            def call(self, entity, method, args, caller):
                _check(plugin._call(entity, method, args, caller))

            def tick(self, space, dt_ms):
                plugin._log_failed(space, "on_tick", plugin._hook(space, "on_tick", (dt_ms,)))

            def aoi_events(self, events):
                for ev in events:
                    hook = "on_aoi_enter" if ev.entered else "on_aoi_leave"
                    plugin._log_failed(ev.watcher, hook, plugin._hook(ev.watcher, hook, (ev.other,)))

            def export_entities(self, ids):
                return plugin._export(ids)

            def forget_entities(self, ids):
                # Moved to another game: drop their state, no hook runs.
                for eid in ids:
                    plugin._table.pop(eid, None)

            def import_entities(self, from_version, states):
                plugin._import(from_version, states)

        Entities.__qualname__ = "Entities"
        return Entities

    # ---- the runtime (mirrors sdk-guest/src/runtime.rs) ----

    def _type(self, kind):
        if 0 <= kind < len(self.types):
            return self.types[kind]
        raise Error("unknown entity kind %d: plugin %s declares %d type(s)"
                    % (kind, self.name, len(self.types)))

    def _slot(self, entity):
        """The entity's [kind, state], fresh state first if the table does not
        know the id (a new entity, or one whose state was lost)."""
        slot = self._table.get(entity.id)
        if slot is None:
            slot = [entity.kind, self._type(entity.kind).fresh()]
            self._table[entity.id] = slot
        return slot

    def _run(self, entity, caller, what, body):
        """Runs ``body(type, state, ctx)``; returns None or an error string."""
        try:
            kind, state = self._slot(entity)
            ty = self._type(kind)
            return body(ty, state, Ctx(entity.id, ty.name, caller))
        except Error as e:
            return str(e)
        except Exception as e:  # a bug in the plugin: tell the caller, log where
            log("error", "%s: %s of entity %d raised:\n%s"
                % (self.name, what, entity.id, traceback.format_exc()))
            return "%s raised %s: %s" % (what, type(e).__name__, e)

    def _hook(self, entity, hook, extra):
        def body(ty, state, ctx):
            fn = ty.hooks.get(hook)
            if fn is not None:
                fn(state, ctx, *extra)
        return self._run(entity, _SERVER_CALLER, hook, body)

    def _call(self, entity, method, args, caller):
        def body(ty, state, ctx):
            m = ty.methods.get(method)
            if m is None:
                raise Error("unknown method %s.%s" % (ty.name, method))
            if not args or args == b"\xc0":
                values = []
            else:
                try:
                    values = decode(args)
                except Error as e:
                    raise Error("bad arguments for %s.%s: %s" % (ty.name, method, e)) from None
                if type(values) is not list:
                    raise Error("bad arguments for %s.%s: expected a MessagePack array of "
                                "arguments" % (ty.name, method))
            n = len(values)
            if n < m.fewest or (m.most is not None and n > m.most):
                want = (str(m.fewest) if m.most == m.fewest else
                        "%d or more" % m.fewest if m.most is None else
                        "%d to %d" % (m.fewest, m.most))
                raise Error("bad arguments for %s.%s: expected %s argument(s), got %d"
                            % (ty.name, method, want, n))
            m.fn(state, ctx, *values)
        return self._run(entity, Caller(caller), "%s.%s" % (self._type_name(entity), method), body)

    def _type_name(self, entity):
        slot = self._table.get(entity.id)
        kind = slot[0] if slot is not None else entity.kind
        return self.types[kind].name if 0 <= kind < len(self.types) else "?"

    def _log_failed(self, entity, hook, error):
        if error is not None:
            log("warn", "%s: %s hook of entity %d failed: %s" % (self.name, hook, entity.id, error))

    def _init(self):
        T = _types
        flag_bits = {"persistent": T.AttrFlags.PERSISTENT, "own_client": T.AttrFlags.OWN_CLIENT,
                     "all_clients": T.AttrFlags.ALL_CLIENTS}
        exposures = {_SERVER: T.Exposure.SERVER, _OWN: T.Exposure.OWN_CLIENT,
                     _ALL: T.Exposure.ALL_CLIENTS}
        entity_types = []
        for ty in self.types:
            attrs = []
            for name, flags in ty.attrs:
                bits = T.AttrFlags(0)
                for f in flags:
                    bits |= flag_bits[f]
                attrs.append(T.AttrDecl(name=name, flags=bits))
            methods = [T.MethodDecl(name=m.name, exposure=exposures[m.exposure])
                       for m in ty.methods.values()]
            aoi = None if ty.aoi is None else T.AoiDecl(
                radius=ty.aoi[0], hysteresis=ty.aoi[1], events=ty.aoi[2])
            entity_types.append(T.EntityType(name=ty.name, attrs=attrs, methods=methods, aoi=aoi))
        return T.PluginInfo(name=self.name, version=self.version, entity_types=entity_types)

    def _export(self, ids):
        """Each entity's state; ids the table does not know (never touched by
        this instance) go out with empty data ("start fresh"), their type
        asked of the host; ids of no type of this plugin are left out."""
        out = []
        for eid in ids:
            slot = self._table.get(eid)
            if slot is not None:
                kind, state = slot
                ty = self._type(kind)
                try:
                    data = ty.save(state)
                except Exception as e:
                    raise _Err("cannot export %s %d: %s" % (ty.name, eid, e)) from None
                out.append(_types.EntityState(entity=_types.EntityRef(id=eid, kind=kind),
                                              type_name=ty.name, data=data))
            else:
                name = _host.entity_type(eid)
                kind = self._by_name.get(name) if name is not None else None
                if kind is None:
                    continue
                out.append(_types.EntityState(entity=_types.EntityRef(id=eid, kind=kind),
                                              type_name=name, data=b""))
        return out

    def _import(self, from_version, states):
        """Rebuilds every state, then takes them all over, or none if any
        fails. Types are matched by name."""
        rebuilt = []
        for s in states:
            kind = self._by_name.get(s.type_name)
            if kind is None:
                raise _Err("cannot import entity %d: plugin %s %s has no entity type %s"
                           % (s.entity.id, self.name, self.version, s.type_name))
            try:
                state = self.types[kind].restore(from_version, s.data)
            except Exception as e:
                raise _Err("cannot import %s %d from version %s: %s"
                           % (s.type_name, s.entity.id, from_version, e)) from None
            rebuilt.append((s.entity.id, [kind, state]))
        self._table.update(rebuilt)


def _check(error):
    if error is not None:
        raise _Err(error)


# --------------------------------------------------------------------------
# The context of a call: host imports with plain Python values
# --------------------------------------------------------------------------


class Caller:
    """Who made a call: ``kind`` is ``"server"``, ``"own_client"`` or
    ``"other_client"``; ``entity`` the calling client's (or entity's) id, or
    None for the host itself (timers, replies, hooks)."""

    __slots__ = ("kind", "entity")
    _KINDS = ("server", "own_client", "other_client")

    def __init__(self, raw=None):
        if raw is None:
            self.kind, self.entity = "server", None
        else:
            self.kind, self.entity = self._KINDS[raw.kind.value], raw.entity

    def __repr__(self):
        return "Caller(%s, %r)" % (self.kind, self.entity)


_SERVER_CALLER = Caller()


class Placement:
    """Where an entity is: ``space`` (id), ``pos`` ``(x, y, z)`` and ``yaw``
    (radians)."""

    __slots__ = ("space", "pos", "yaw")

    def __init__(self, space, pos, yaw):
        self.space, self.pos, self.yaw = space, pos, yaw

    def __repr__(self):
        return "Placement(%d, %r, %r)" % (self.space, self.pos, self.yaw)


def _ok(f, *a):
    """Calls a host import that returns a WIT result, raising Error on err."""
    try:
        return f(*a)
    except _Err as e:
        raise Error(str(e.value)) from None


def _path(path):
    """A path: "name", or a list/tuple of keys (str) and list indices (int)."""
    if isinstance(path, str):
        return [_types.PathSegment_Key(path)]
    segs = []
    for p in path:
        if isinstance(p, str):
            segs.append(_types.PathSegment_Key(p))
        elif isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 1 << 32:
            segs.append(_types.PathSegment_Index(p))
        else:
            raise Error("bad attribute path segment %r: use a str key or an int index" % (p,))
    if not segs or not isinstance(segs[0], _types.PathSegment_Key):
        raise Error("an attribute path starts with the attribute's name")
    return segs


def _pos(p):
    """A position from (x, y) or (x, y, z)."""
    p = tuple(p)
    if len(p) == 2:
        p += (0.0,)
    if len(p) != 3:
        raise Error("a position is (x, y) or (x, y, z), not %r" % (p,))
    return _types.Position(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _attrs(attrs):
    return b"" if attrs is None else encode(attrs)


_LEVELS = ("trace", "debug", "info", "warn", "error")

# Where a new entity lives: "here" (this entity's game: readable and
# changeable in place at once) or "anywhere" (the game the server chooses by
# load: reach it by messages, read it with ask_attr).
_LOCALITIES = ("here", "anywhere")


def _locality(at):
    if at not in _LOCALITIES:
        raise Error("bad locality %r: 'here' or 'anywhere'" % (at,))
    return _types.Locality(_LOCALITIES.index(at))


def log(level, message):
    """Writes a log line attributed to the plugin; ``level`` is one of
    trace, debug, info, warn, error."""
    if _host is None:
        print("[%s] %s" % (level, message), file=sys.stderr)
        return
    try:
        lvl = _types.LogLevel(_LEVELS.index(level))
    except ValueError:
        lvl = _types.LogLevel.INFO
    _host.log(lvl, str(message))


class Ctx:
    """The context of one call: the entity (``id``, ``type_name``), the
    ``caller``, and the host imports. Arguments of calls are given as
    positional Python values (``ctx.call(room, "join", ctx.id, name)``) and
    sent as a MessagePack array. Methods ending in ``_of`` act on another
    entity; the others on this one. Failures raise :class:`Error`."""

    __slots__ = ("id", "type_name", "caller")

    def __init__(self, id, type_name, caller):
        self.id = id
        self.type_name = type_name
        self.caller = caller

    @property
    def called_by_client(self):
        """Whether a client (own or other) made this call."""
        return self.caller.kind != "server"

    # ---- entities ----
    def create_entity(self, type_name, attrs=None, *, at="here"):
        """Creates an entity with initial attributes (a dict, or None); returns
        its id. ``at``: ``"here"`` (this entity's game) or ``"anywhere"``
        (the game the server chooses by load; read it with ``ask_attr``)."""
        return _ok(_host.create_entity, type_name, _attrs(attrs), _locality(at))

    def destroy_entity(self, id=None):
        """Destroys entity ``id`` (default: this one) after the call returns."""
        _ok(_host.destroy_entity, self.id if id is None else id)

    def entity_type(self, id):
        """The type name of a live entity on this entity's game, or None (for
        any entity: ``ask_entity_type``)."""
        return _host.entity_type(id)

    def ask_entity_type(self, id, method, context=None):
        """The type name of entity ``id``, wherever it lives; answers with
        value = the name, or None if no such entity is alive."""
        _host.ask_entity_type(id, self._reply(method, context))

    def service(self, type_name):
        """The id of the service entity of ``type_name``, or None."""
        return _host.service(type_name)

    # ---- messages ----
    def call(self, id, method, *args):
        """Calls ``method`` on entity ``id`` as the server."""
        _host.call_entity(id, method, _encode_args(args))

    def call_client(self, method, *args):
        """Calls ``method`` on this entity's client; False if none is bound."""
        return _host.call_client(self.id, method, _encode_args(args))

    def call_client_of(self, id, method, *args):
        """Calls ``method`` on the client bound to ``id``; False if none."""
        return _host.call_client(id, method, _encode_args(args))

    def call_filtered_clients(self, tags, method, *args):
        """Calls ``method`` on every client whose tags include all of ``tags`` (a dict)."""
        filt = [_types.Tag(key=k, value=v) for k, v in dict(tags).items()]
        _host.call_filtered_clients(filt, method, _encode_args(args))

    def broadcast(self, method, *args):
        """Calls ``method`` on every connected client."""
        _host.broadcast(method, _encode_args(args))

    def give_client_to(self, from_id, to_id):
        """Moves the client bound to ``from_id`` to ``to_id``."""
        _ok(_host.give_client_to, from_id, to_id)

    def set_client_tag(self, key, value, id=None):
        """Sets (or with value None removes) a tag on the client of ``id`` (default: this one)."""
        _ok(_host.set_client_tag, self.id if id is None else id, key, value)

    # ---- spaces ----
    def create_space(self, type_name, kind, attrs=None, *, at="here"):
        """Creates an entity that is a space of ``kind`` on the game ``at``
        says (as ``create_entity``); returns its id."""
        return _ok(_host.create_space, type_name, kind, _attrs(attrs), _locality(at))

    def space_kind(self, id):
        """The kind of space ``id``, or None."""
        return _host.space_kind(id)

    def enter_space(self, space, pos, yaw=0.0, id=None):
        """Puts ``id`` (default: this entity) into ``space`` at ``pos`` (x, y, z)."""
        _ok(_host.enter_space, self.id if id is None else id, space, _pos(pos), float(yaw))

    def leave_space(self, id=None):
        """Takes ``id`` (default: this entity) out of its space."""
        _ok(_host.leave_space, self.id if id is None else id)

    def set_position(self, pos, yaw=0.0, id=None):
        """Moves ``id`` (default: this entity) within its space."""
        _ok(_host.set_position, self.id if id is None else id, _pos(pos), float(yaw))

    def placement(self, id=None):
        """Where ``id`` (default: this entity) is, as a :class:`Placement`, or None."""
        p = _host.placement_of(self.id if id is None else id)
        return None if p is None else Placement(p.space, (p.pos.x, p.pos.y, p.pos.z), p.yaw)

    def allow_client_moves(self, allowed, id=None):
        """Whether the client of ``id`` (default: this entity) may move it."""
        _ok(_host.allow_client_moves, self.id if id is None else id, bool(allowed))

    def aoi(self, id=None):
        """The entities ``id`` (default: this entity) sees."""
        return _host.aoi_of(self.id if id is None else id)

    def entities_near(self, space, center, radius):
        """The entities in ``space`` within ``radius`` of ``center``."""
        return _host.entities_near(space, _pos(center), float(radius))

    def call_aoi_clients(self, method, *args):
        """Calls ``method`` on every client that sees this entity."""
        _host.call_aoi_clients(self.id, method, _encode_args(args))

    # ---- attributes ----
    def get_attr(self, path, default=None):
        """The value at ``path`` ("name" or ["name", key, index, ...]), or ``default``."""
        return self.get_attr_of(self.id, path, default)

    def get_attr_of(self, id, path, default=None):
        """The value at ``path`` of entity ``id`` (on this entity's game), or
        ``default``."""
        raw = _ok(_host.attr_get, id, _path(path))
        return default if raw is None else decode(raw)

    def ask_attr(self, id, path, method, context=None):
        """The value at ``path`` of entity ``id``, wherever it lives; answers
        with value = it, or None if nothing is there."""
        _host.ask_attr(id, _path(path), self._reply(method, context))

    def set_attr(self, path, value):
        """Sets the value at ``path`` (pushed to the clients its flags name)."""
        _ok(_host.attr_set, self.id, _path(path), encode(value))

    def set_attr_of(self, id, path, value):
        """Sets the value at ``path`` of entity ``id``."""
        _ok(_host.attr_set, id, _path(path), encode(value))

    def delete_attr(self, path, id=None):
        """Removes the value at ``path`` (no error if absent)."""
        _ok(_host.attr_delete, self.id if id is None else id, _path(path))

    def append_attr(self, path, value, id=None):
        """Appends ``value`` to the list at ``path``, creating it if absent."""
        _ok(_host.attr_append, self.id if id is None else id, _path(path), encode(value))

    # ---- timers ----
    def set_timer(self, delay_ms, method, *args, repeat=False, id=None):
        """Calls ``method(*args)`` on ``id`` (default: this entity) after
        ``delay_ms``, then every ``delay_ms`` if ``repeat``; returns the timer id."""
        return _ok(_host.set_timer, self.id if id is None else id, int(delay_ms), bool(repeat),
                   method, _encode_args(args))

    def cancel_timer(self, timer):
        """Cancels a timer; False if it already fired or is unknown."""
        return _host.cancel_timer(timer)

    # ---- passwords ----
    def hash_password(self, password, method, context=None):
        """Hashes ``password`` off the game thread; then ``method(hash, context)`` runs."""
        _host.hash_password(self.id, password, method, encode(context))

    def verify_password(self, password, hash, method, context=None):
        """Checks ``password`` against ``hash``; then ``method(ok, context)`` runs."""
        _host.verify_password(self.id, password, hash, method, encode(context))

    # ---- storage (and ask_entity_type, ask_attr): answers come as
    # method(error, value, context) ----
    def _reply(self, method, context):
        return _storage.ReplyTo(entity=self.id, method=method, context=encode(context))

    def load_entity(self, id, method, context=None, *, at="here"):
        """Loads saved entity ``id`` on the game ``at`` says (``"here"`` or
        ``"anywhere"``: the server chooses by load); answers with value = the
        id. An entity loaded already stays where it is."""
        _storage.load_entity(id, _locality(at), self._reply(method, context))

    def save_now(self, method=None, context=None):
        """Saves this entity's persistent attributes now; answers (if
        ``method``) with value = the id once on disk."""
        _storage.save_entity(self.id, None if method is None else self._reply(method, context))

    def entity_exists(self, id, method, context=None):
        """Whether ``id`` is loaded or saved; answers with value = bool."""
        _storage.entity_exists(id, self._reply(method, context))

    def saved_ids(self, type_name, method, context=None):
        """The saved ids of ``type_name``; answers with value = a list of ids."""
        _storage.saved_ids(type_name, self._reply(method, context))

    def kv_get(self, key, method, context=None):
        """The value under ``key`` (or None); answers with value = it."""
        _storage.kv_get(key, self._reply(method, context))

    def kv_put(self, key, value, method=None, context=None):
        """Stores ``value`` under ``key``; answers (if ``method``) once on disk."""
        _storage.kv_put(key, encode(value), None if method is None else self._reply(method, context))

    def kv_get_or_put(self, key, value, method, context=None):
        """Stores ``value`` unless ``key`` has one; answers with whichever is stored."""
        _storage.kv_get_or_put(key, encode(value), self._reply(method, context))

    def kv_range(self, prefix, method, context=None):
        """Every key starting with ``prefix``; answers with [[key, value], ...]."""
        _storage.kv_range(prefix, self._reply(method, context))

    def emit_stat(self, name, fields):
        """Records a stats event: a name and a dict of fields."""
        _storage.emit_stat(name, encode(fields))

    # ---- misc ----
    def log(self, level, message):
        """Writes a log line (trace, debug, info, warn, error)."""
        log(level, message)

    def now_ms(self):
        """Wall-clock time in milliseconds since the Unix epoch."""
        return _host.now_ms()
