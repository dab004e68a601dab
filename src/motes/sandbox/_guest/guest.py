"""The component's entry: imports the app's module, serves ``call`` by mote name.

``mote_target`` (written beside it at build time) names the app's module and app; each
call brings [mote name, args, kwargs, the guest paths of its view]. Errors go back as a
map the host turns into typed errors: ``remote`` (the mote raised), ``bad_argument``
(arguments do not fit its signature), ``encode`` (its result cannot be sent),
``memory`` (the heap hit the store's limit), ``denied`` (it reached for what its view
does not hold: a path outside its preopens, or a socket).
"""

import inspect
import os
import sys
import traceback

import _msgpack
import mote_target
import motes_shim
import wit_world
from componentize_py_types import Err

sys.modules["motes"] = motes_shim
__import__(mote_target.MODULE)
_module = sys.modules[mote_target.MODULE]
_apps = [v for v in vars(_module).values() if isinstance(v, motes_shim.App)]
_app = next(a for a in _apps if a.name == mote_target.APP)
_NET_MODULES = {"socket", "_socket", "ssl", "select", "selectors", "asyncio"}


def _outside_view(path, view):
    if not isinstance(path, str) or not path:
        return False
    full = os.path.normpath(path if path.startswith("/") else "/" + path)
    return not any(full == v or full.startswith(v.rstrip("/") + "/") for v in view)


def _fail(kind, exc, message=None):
    report = {
        "kind": kind,
        "type": type(exc).__name__,
        "message": message if message is not None else str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    raise Err(_msgpack.encode(report))


def _classify(exc, view):
    if isinstance(exc, MemoryError):
        _fail("memory", exc)
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in _NET_MODULES:
        _fail("denied", exc, "network: a wasm mote has no sockets")
    if isinstance(exc, OSError) and _outside_view(exc.filename, view):
        _fail("denied", exc, f"{exc.filename}: outside the mote's view {view}")
    if isinstance(exc, PermissionError):
        # A guest has no users: only the sandbox refuses (a symlink out of the view, a
        # read-only directory).
        _fail("denied", exc, f"{exc.filename}: {exc.strerror} in the mote's view {view}")
    if isinstance(exc, OSError) and exc.filename is None and "socket" in str(exc).lower():
        _fail("denied", exc, "network: a wasm mote has no sockets")
    _fail("remote", exc)


class WitWorld(wit_world.WitWorld):
    def call(self, payload):
        name, args, kwargs, view = _msgpack.decode(payload)
        fn = _app.motes[name]
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as exc:
            _fail("bad_argument", exc)
        try:
            result = fn(*args, **kwargs)
        except Err:
            raise
        except Exception as exc:
            _classify(exc, view)
        try:
            return _msgpack.encode(result)
        except (TypeError, ValueError, OverflowError) as exc:
            _fail("encode", exc, f"{type(result).__name__}: {exc}")
        except MemoryError as exc:
            _fail("memory", exc)
