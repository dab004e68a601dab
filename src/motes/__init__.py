"""Motes: run small Python motes across the machines you already own, as one mesh.

Public names only; see the README for a tour.
"""

from . import errors
from .app import App, Command
from .errors import MotesError, RemoteError

__version__ = "0.1.0"

__all__ = ["App", "Command", "MotesError", "RemoteError", "__version__", "connect", "errors"]


def __getattr__(name: str) -> object:
    # The client pulls in nats-py; importing `motes` just to declare an App should not.
    if name == "connect":
        from .client import connect

        return connect
    raise AttributeError(f"module 'motes' has no attribute {name!r}")
