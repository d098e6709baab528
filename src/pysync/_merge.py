"""Conflict resolution: a three-way merge with a strategy for true conflicts.

Fields changed only on one side take that side's value; fields changed on both
sides to different values go to the strategy: last writer wins by hybrid
logical clock (the default), the server wins, the client wins, or the app's own
``resolve(base, local, remote) -> merged`` for the whole document. A document
deleted on one side and edited on the other is a conflict of the whole document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

Doc = dict[str, Any]
Resolver = Callable[[Doc | None, Doc | None, Doc | None], Doc | None]
Strategy = Literal["lww", "server", "client"] | Resolver

_MISSING = object()


def merge(
    base: Doc | None,
    local: Doc | None,
    remote: Doc | None,
    strategy: Strategy,
    local_wins_by_clock: bool,
) -> Doc | None:
    """The merged document (``None`` = deleted).

    ``local_wins_by_clock`` says whether the local edit's clock is later than the
    remote write's (used by ``"lww"``).
    """
    if local == remote or remote == base:
        return local  # nothing to decide: the same result, or no change on the server
    if local == base:
        return remote
    if callable(strategy):
        if base is not None and local is not None and remote is not None:
            merged = _fields(base, local, remote)
            if merged is not None:
                return merged
        return strategy(base, local, remote)
    if local is None or remote is None:
        # One side deleted, the other edited: no field-wise answer.
        return _pick(strategy, local, remote, local_wins_by_clock)
    merged = _fields(base or {}, local, remote, strategy, local_wins_by_clock)
    assert merged is not None
    return merged


def _pick(strategy: str, local: Doc | None, remote: Doc | None, local_later: bool) -> Doc | None:
    if strategy == "server":
        return remote
    if strategy == "client":
        return local
    return local if local_later else remote


def _fields(
    base: Doc,
    local: Doc,
    remote: Doc,
    strategy: str | None = None,
    local_later: bool = False,
) -> Doc | None:
    """Field-wise merge; ``None`` if a field truly conflicts and no strategy is given."""
    out: Doc = {}
    for name in {**base, **local, **remote}:
        b = base.get(name, _MISSING)
        mine = local.get(name, _MISSING)
        theirs = remote.get(name, _MISSING)
        if mine == theirs or theirs == b:
            value = mine
        elif mine == b:
            value = theirs
        elif strategy is None:
            return None
        else:
            value = _pick(strategy, {"v": mine}, {"v": theirs}, local_later)["v"]  # type: ignore[index]
        if value is not _MISSING:
            out[name] = value
    return out
