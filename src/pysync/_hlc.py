"""Hybrid logical clocks: timestamps that order events across devices.

A timestamp is (wall milliseconds, counter, node). It never goes backwards on
one node, even when the wall clock does, stays close to real time, and orders
causally related events correctly across nodes (``receive``). Its string form
sorts like the timestamp itself, so it can be stored and compared as text.
"""

from __future__ import annotations

from dataclasses import dataclass

_WALL_DIGITS = 15
_COUNTER_DIGITS = 6


@dataclass(frozen=True, order=True)
class Timestamp:
    """One hybrid-logical-clock reading."""

    wall: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.wall:0{_WALL_DIGITS}d}-{self.counter:0{_COUNTER_DIGITS}d}-{self.node}"

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """The timestamp whose string form is ``text``."""
        try:
            wall, counter, node = text.split("-", 2)
            return cls(int(wall), int(counter), node)
        except ValueError:
            raise ValueError(f"not a hybrid logical clock timestamp: {text!r}") from None


ZERO = Timestamp(0, 0, "")


def tick(last: Timestamp, physical_ms: int, node: str) -> Timestamp:
    """The timestamp of a local event after ``last``, at wall time ``physical_ms``."""
    if physical_ms > last.wall:
        return Timestamp(physical_ms, 0, node)
    return Timestamp(last.wall, last.counter + 1, node)


def receive(last: Timestamp, remote: Timestamp, physical_ms: int, node: str) -> Timestamp:
    """The local clock after seeing ``remote``: later than both, close to real time."""
    wall = max(last.wall, remote.wall, physical_ms)
    if wall == last.wall == remote.wall:
        counter = max(last.counter, remote.counter) + 1
    elif wall == last.wall:
        counter = last.counter + 1
    elif wall == remote.wall:
        counter = remote.counter + 1
    else:
        counter = 0
    return Timestamp(wall, counter, node)
