"""The client side: ``connect()`` to a mesh, then call, map, use actors, deploy, inspect."""

from .durable import CallHandle, Flow, QueueStat
from .mesh import ActorRef, Mesh, connect

__all__ = ["ActorRef", "CallHandle", "Flow", "Mesh", "QueueStat", "connect"]
