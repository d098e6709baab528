"""The outbox: local changes waiting to be pushed, and how new edits fold into them.

An entry describes one record's pending change::

    {"n": 17, "mid": "…", "collection": "todos", "id": "a", "op": "put" | "patch" | "delete",
     "value": {...} (put), "set": {...}, "inc": {...} (patch),
     "base": {...} | None, "base_v": 3 | None, "base_m": "…" | None, "new": bool,
     "follows": "…" | None, "hlc": "…",
     "group": "…" | None, "state": "pending" | "inflight" | "rejected",
     "error": None | {"code": …, "message": …, "at": ms (when refused)},
     "since": 41, "sent": ms (once sent), "merged": bool (a conflict's result),
     "unsure": bool (rejected after an attempt whose outcome is unknown),
     "row": 16 (an entry of a transaction: the n of the row holding it, see _outbox_rows)}

``base`` is the record as the server had it when the first folded edit was made
(the common ancestor of a three-way merge), ``base_v`` and ``base_m`` the
version and mutation id of that server state (what the push's condition must
find); ``new`` says the record did not exist anywhere but here. ``follows`` is
the mutation id of the record's earlier entry this one waits for: its base is
set once that one lands. ``group`` ties the entries of
one multi-record transaction together. ``since`` is a changelog seq at or below the
head when the entry was first sent (the pull's cursor then): its write cannot
appear in the changelog at or before it.
``merged`` marks the put that a conflict's merge queued: its ``inc`` keeps this
device's deltas (already in ``value``), which another conflict re-applies to
the server's newer value, so an increment survives any number of conflicts.

Folding rules (only into an entry still ``pending``; never into one in flight,
whose edit must be pushed again on top of the version its push creates):
put then anything keeps the first base; a delete of a record created here
cancels the entry; increments add up; a later ``set`` of a field overrides an
earlier increment of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Entry = dict[str, Any]
Op = Literal["put", "patch", "delete"]

OUTBOX = "_outbox"
PENDING, INFLIGHT, REJECTED = "pending", "inflight", "rejected"


@dataclass
class Edit:
    """One local edit of one record."""

    op: Op
    value: dict[str, Any] | None = None
    set: dict[str, Any] = field(default_factory=dict)
    inc: dict[str, int | float] = field(default_factory=dict)


def fold(entry: Entry, edit: Edit, hlc: str) -> Entry | None:
    """``entry`` with ``edit`` folded in, or ``None`` when they cancel out."""
    out = {**entry, "hlc": hlc}
    if edit.op == "delete":
        if entry["new"] and entry["op"] != "delete":
            return None
        out.update(op="delete", value=None, set={}, inc={})
    elif edit.op == "put":
        out.update(op="put", value=edit.value, set={}, inc={}, merged=False)
    elif entry["op"] == "patch":
        sets = {**entry["set"], **edit.set}
        incs = {k: v for k, v in entry["inc"].items() if k not in edit.set}
        for name, delta in edit.inc.items():
            if name in sets:
                sets[name] = sets[name] + delta
            else:
                incs[name] = incs.get(name, 0) + delta
        out.update(set=sets, inc=incs)
    else:  # a patch after a put: still a put, of the patched value
        assert entry["value"] is not None, "a patch needs an existing record"
        out.update(value=apply_patch(entry["value"], edit.set, edit.inc))
        if entry.get("merged"):  # a conflict's result keeps its deltas apart (see ``merged``)
            incs = {k: v for k, v in entry["inc"].items() if k not in edit.set}
            for name, delta in edit.inc.items():
                incs[name] = incs.get(name, 0) + delta
            out.update(inc=incs)
    return out


def apply_patch(
    doc: dict[str, Any], sets: dict[str, Any], incs: dict[str, int | float]
) -> dict[str, Any]:
    """``doc`` with fields set and counters incremented (a missing counter counts from 0)."""
    out = {**doc, **sets}
    for name, delta in incs.items():
        out[name] = out.get(name, 0) + delta
    return out


def replay(doc: dict[str, Any] | None, entries: list[Entry]) -> dict[str, Any] | None:
    """``doc`` with the edits of ``entries`` applied in order (``None``: deleted)."""
    for entry in entries:
        if entry["op"] == "put":
            doc = dict(entry["value"])
        elif entry["op"] == "delete":
            doc = None
        else:
            doc = apply_patch(doc or {"id": entry["id"]}, entry["set"], entry["inc"])
    return doc
