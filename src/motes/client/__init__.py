"""The client side: ``connect()`` to a mesh, then call, map, use actors, deploy, inspect."""

from .mesh import ActorRef, Mesh, connect

__all__ = ["ActorRef", "Mesh", "connect"]
