"""Code that runs inside a WebAssembly mote, not in the host's interpreter.

``guest.py`` is the component's entry (the ``mote`` world of ``mote.wit``): it imports
the app's module at build time, so the pre-initialised snapshot starts with it loaded,
and dispatches each call by mote name. ``_msgpack.py`` is the pure-Python codec the
guest speaks with the host (msgspec is not pure Python); ``motes_shim.py`` stands in for
the ``motes`` package there, so ``@app.mote`` records functions the same way. Only the
codec is imported by the host side, by its tests.
"""
