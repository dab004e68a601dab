"""The live web dashboard (``motes dashboard``) and its JSON API; blocks' views."""

from .server import Dashboard

__all__ = ["Dashboard"]
