"""The ``motes`` package as the guest sees it: ``App`` and its decorators, nothing else.

Inside the component the app's module runs without the host's ``motes`` (which needs
msgspec and sockets). Declaring motes only records them here; the host's own ``App``
already validated every option when the app was bundled.
"""

from __future__ import annotations

from typing import Any


class App:
    def __init__(self, name: str, **_options: Any) -> None:
        self.name = name
        self.motes: dict[str, Any] = {}

    def mote(self, fn: Any = None, /, **options: Any) -> Any:
        def register(target: Any) -> Any:
            self.motes[options.get("name") or target.__name__] = target
            return target

        return register(fn) if fn is not None else register

    actor = mote

    def flow(self, *_args: Any, **_kwargs: Any) -> None:
        """Flows are wired by the host; inside a mote they mean nothing."""
