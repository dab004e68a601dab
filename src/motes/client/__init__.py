"""The client side: ``connect()`` to a mesh, then call, map, use actors, deploy, inspect."""

from .calls import ActorRef
from .durable import CallHandle, Flow, QueueStat
from .events import MeshEvent
from .mesh import Mesh, connect

__all__ = ["ActorRef", "CallHandle", "Flow", "Mesh", "MeshEvent", "QueueStat", "connect"]
