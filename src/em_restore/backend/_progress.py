"""Progress events and the generator protocol shared by every long computation.

Every long backend call is a generator that yields :class:`Progress` (or richer events)
and *returns* its result; the CLI, the widgets and the tests drive it with the helpers
here. This module sits at the bottom of the backend: it imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "drain", "drive", "relay"]


@dataclass(frozen=True)
class Progress:
    """One step of a long computation: ``done`` of ``total`` units, and what runs."""

    done: int
    total: int
    message: str = ""


def drive(gen: Generator[Any, None, Any], on_event: Callable[[Any], Any] | None = None) -> Any:
    """Run a generator to its end, showing ``on_event`` every event; return its value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


def drain(gen: Generator[Any, None, Any]) -> Any:
    """Run a generator to its end, ignoring its events; return its value."""
    return drive(gen)


def relay(gen: Generator[Progress, None, Any], prefix: str) -> Generator[Progress, None, Any]:
    """Pass a nested generator's progress on with ``prefix`` on its message; return its value."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield Progress(p.done, p.total, prefix + p.message)
