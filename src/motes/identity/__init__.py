"""Keys and signatures for nodes, people, apps and datasets."""

from .keys import NodeKey

__all__ = ["NodeKey"]
