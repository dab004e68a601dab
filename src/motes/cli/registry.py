"""The one registry of ``motes`` commands.

Each command declares its name (``"flow set"`` for a subcommand), its help, its
arguments and what it needs:

- ``MESH``: ``(mesh, args) -> View``; the CLI opens the one connection, renders the view
  as a table or (``--json``) as JSON, and exits with its code;
- ``STREAM``: ``(mesh, args) -> int``; it writes as data arrives (``logs -f``, ``cat``);
- ``LOCAL``: ``(config, args) -> int``; it manages processes here (``up``, ``down``).
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["COMMANDS", "Command", "Kind", "arg", "command"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class Kind(enum.Enum):
    MESH = "mesh"
    STREAM = "stream"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Arg:
    names: tuple[str, ...]
    options: dict[str, Any]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names, **self.options)


def arg(*names: str, **options: Any) -> Arg:
    """One argument, as ``argparse.add_argument`` takes it."""
    return Arg(names, options)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    kind: Kind
    run: Callable[..., Awaitable[Any]]
    args: tuple[Arg, ...] = ()
    json: bool = False
    """Whether the command takes ``--json``."""


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, *args: Arg, kind: Kind = Kind.MESH, json: bool = False
) -> Callable[[F], F]:
    """Register the decorated coroutine as the command ``name``."""

    def register(fn: F) -> F:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, kind, fn, tuple(args), json)
        return fn

    return register
