"""Placement: a pure state machine (``state``), its rules (``policy``), its I/O shell."""

from .state import SchedulerState

__all__ = ["SchedulerState"]
