"""Blocks: small JSON/Markdown records kept in the mesh, shown as tables, kanban boards
or wiki pages, whose cells motes can compute anywhere on the mesh (``mesh.blocks``)."""

from ..wire.blocks import CellResult, Compute
from ._model import Block, BlockChange
from .cells import Cell, CellStatus, Recomputer
from .client import Blocks

__all__ = [
    "Block",
    "BlockChange",
    "Blocks",
    "Cell",
    "CellResult",
    "CellStatus",
    "Compute",
    "Recomputer",
]
