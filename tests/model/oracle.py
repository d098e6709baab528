"""The oracle: what must hold once faults stop and every device has synced to quiescence.

It reads only what any observer can see: the documents of each device, its
outbox (mutation ids, states, errors) and ``_conflicts`` records, the server's
items, the changelog (every entry, recorded by the runner before any expiry),
and the runner's own log of what it did (each local edit with the document it
was made on and the outbox entry it went into; each outside write with the item
before and after). The promises are stated in :mod:`tests.model`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .program import APP, COUNTERS

Doc = dict[str, Any]
Item = dict[str, Any]


# -- DynamoDB values, read without pysync's own code ------------------------------------


def plain(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as Python (the kinds the model writes)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        if inner.lstrip("-").isdigit():
            return int(inner)  # exact, also beyond 2**53
        number = float(inner)
        return int(number) if number == int(number) else number
    if kind == "BOOL":
        return inner
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    raise ValueError(f"unexpected attribute value {value}")


def doc_of(item: Item | None) -> Doc | None:
    """The document an item shows: ``None`` when absent or a tombstone (``_del``)."""
    if item is None or "_del" in item:
        return None
    return {k: plain(v) for k, v in item.items() if k not in ("pk", "sk") and k[0] != "_"}


def system_of(item: Item | None) -> dict[str, Any]:
    return {} if item is None else {k: plain(v) for k, v in item.items() if k[0] == "_"}


def record_key(sk: str) -> str:
    """The model's name of a record, ``<collection>#<id>``, from its item's sort key
    (``<app>/<collection>#<id>``; a key outside the app's namespace is left whole,
    so it matches no record of the model)."""
    prefix = f"{APP}/"
    return sk[len(prefix) :] if sk.startswith(prefix) else sk


def split_key(key: str) -> tuple[str, str]:
    """The collection and id of a record key (see :func:`record_key`)."""
    collection, _, item_id = key.partition("#")
    return collection, item_id


def canon(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True)


# -- what happened ------------------------------------------------------------------------


@dataclass
class EditRecord:
    """One local edit that committed on a device."""

    n: int  # order among all writes of the run (local and outside)
    step: int
    dev: int
    coll: str
    id: str
    op: str  # put, add, patch, increment, delete
    values: dict[str, Any]  # fields set (put/add: the whole document without id)
    by: int  # increment
    pre: Doc | None
    post: Doc | None
    mid: str | None
    entry: int | None = None  # the outbox entry it went into (by number)
    mids: list[str] = field(default_factory=list)  # every id that entry was sent under
    status: str = "pending"  # acked, discarded, cancelled, pending

    @property
    def key(self) -> str:
        return f"{self.coll}#{self.id}"


@dataclass
class OutsideRecord:
    """One write straight to DynamoDB by a writer that is not pysync."""

    n: int
    step: int
    kind: str  # put, recreate, update, increment, delete, ttl
    key: str
    contract: bool  # a new unique _m and _v + 1
    old: Item | None
    new: Item | None  # the item it left (None: deleted)
    values: dict[str, Any]
    by: int = 0

    @property
    def keeps_m(self) -> bool:
        """A write that left ``_m`` as it was (the consumer stamps it)."""
        return not self.contract and self.new is not None


@dataclass
class Write:
    """One entry of a record's server history."""

    seq: int
    key: str
    old: Item | None
    new: Item | None
    who: str  # pysync, outside, stamp, probe, delete
    mid: str | None = None
    outside: OutsideRecord | None = None


class History:
    """Every changelog entry seen (the runner shows it the changelog before entries expire)."""

    def __init__(self) -> None:
        self.entries: dict[int, Item] = {}
        self.problems: list[str] = []
        #: Each expiry: (the newest seq it removed, the newest seq there was).
        self.expiries: list[tuple[int, int]] = []
        #: Entries the changelog held back while its consumer was stopped, appended after
        #: a device's clock moved past ``QUIET_MS`` in that stop: (stop, first seq, last).
        self.held: list[tuple[int, int, int]] = []
        #: Writes applied again because their first landing expired unseen, or stayed
        #: unseen past ``QUIET_MS`` (documented limits).
        self.explained: list[str] = []

    def expired(self, keep: int) -> None:
        """The entries of the changelog but the newest ``keep`` expire now."""
        head = max(self.entries, default=0)
        self.expiries.append((head - keep, head))

    def lost_between(self, first: int, second: int) -> bool:
        """Whether entry ``first`` expired before entry ``second`` was appended: a write
        whose outcome was unknown then could no longer be told from the changelog
        (docs/sync.md: it is taken as not landed, and an increment counts twice)."""
        return any(gone >= first and head < second for gone, head in self.expiries)

    def held_together(self, first: int, second: int) -> bool:
        """Whether entries ``first`` and ``second`` were both held back by one stop of the
        consumer in which a device's clock moved past ``QUIET_MS``: the second write may
        have been sent while the changelog did not show the first, after the device had
        waited long enough to take the silence for "did not land" (docs/sync.md: the
        consumer must run)."""

        def stops(seq: int) -> set[int]:
            return {stop for stop, lo, hi in self.held if lo <= seq <= hi}

        return bool(stops(first) & stops(second))

    def unseen(self, first: int, second: int) -> bool:
        """Whether the write of entry ``second`` could not see entry ``first`` by a
        documented limit: ``first`` expired, or stayed unseen past ``QUIET_MS``."""
        return self.lost_between(first, second) or self.held_together(first, second)

    def observe(self, entries: Iterable[Item]) -> None:
        for entry in entries:
            seq = int(entry["sk"]["N"])
            if seq == 0:
                continue
            known = self.entries.setdefault(seq, entry)
            if known != entry:
                self.problems.append(f"changelog entry {seq} changed: {known} -> {entry}")

    def writes(self, outside: list[OutsideRecord]) -> dict[str, list[Write]]:
        """The writes of each record, in order, attributed to their writer."""
        seqs = sorted(self.entries)
        if seqs != list(range(1, len(seqs) + 1)):
            missing = sorted(set(range(1, (seqs or [0])[-1] + 1)) - set(seqs))
            self.problems.append(f"changelog entries never seen: {missing[:20]}")
        pending: dict[str, list[OutsideRecord]] = {}
        for record in outside:
            pending.setdefault(record.key, []).append(record)
        last: dict[str, Item | None] = {}
        out: dict[str, list[Write]] = {}
        for seq in seqs:
            entry = self.entries[seq]
            key = record_key(entry["key"]["S"])
            old = last.get(key)
            new = entry["item"]["M"] if entry.get("op", {}).get("S") == "put" else None
            if new is None and entry.get("op", {}).get("S") == "put":
                self.problems.append(f"entry {seq} has no image (trunc)")
            write = Write(seq, key, old, new, "pysync")
            mine = pending.get(key, [])
            m = system_of(new).get("_m")
            if new is None:
                write.who = "delete"
                match = next((o for o in mine if o.new is None), None)
                if match is not None:
                    mine.remove(match)
                    write.outside = match
            elif mine and _same(mine[0].new, new):
                write.who, write.outside = "outside", mine.pop(0)
            elif isinstance(m, str) and m.startswith("stamp:"):
                write.who = "stamp"
            elif isinstance(m, str) and m.startswith("probe:"):
                write.who = "probe"
            else:
                write.mid = m if isinstance(m, str) else None
            last[key] = new
            out.setdefault(key, []).append(write)
        for left in pending.values():
            for record in left:
                self.problems.append(f"outside write never in the changelog: {record}")
        return out


def _same(a: Item | None, b: Item | None) -> bool:
    if a is None or b is None:
        return a is b
    return {k: plain(v) for k, v in a.items()} == {k: plain(v) for k, v in b.items()}


# -- the check ------------------------------------------------------------------------------


@dataclass
class DeviceEnd:
    """What a device shows at the end."""

    docs: dict[str, dict[str, Doc]]
    outbox_at_rest: list[dict[str, Any]]  # at the first quiescence (before rejections resolve)
    outbox: list[dict[str, Any]]  # at the end
    conflicts: list[dict[str, Any]]
    states: dict[str, list[Doc | None]] = field(default_factory=dict)  # every state seen, by key


@dataclass
class Evidence:
    server: list[Item]  # the final data items of the scope
    devices: list[DeviceEnd]
    edits: list[EditRecord]
    outside: list[OutsideRecord]
    history: History
    stamping: bool
    quiet: bool
    problems: list[str] = field(default_factory=list)  # found while running (local promises)


def check(ev: Evidence) -> list[str]:
    """Every broken promise, one line each, starting with its name."""
    failures = list(ev.problems)
    if not ev.quiet:
        failures.append("P0 quiescence: the devices did not reach a round that changes nothing")
    writes = ev.history.writes(ev.outside)
    failures += [f"H history: {p}" for p in ev.history.problems]
    final = {record_key(item["sk"]["S"]): item for item in ev.server}
    server_docs: dict[str, dict[str, Doc]] = {}
    for record, item in final.items():
        doc = doc_of(item)
        if doc is not None:
            coll, key = split_key(record)
            server_docs.setdefault(coll, {})[key] = doc
    failures += _convergence(ev, server_docs)
    failures += _outboxes(ev)
    conflicts = [(i, c) for i, d in enumerate(ev.devices) for c in d.conflicts]
    failures += _conflict_sides(ev, writes, conflicts)
    failures += _landed(ev, writes, conflicts)
    failures += _applied_once(ev, writes)
    failures += _values(ev, writes, final, conflicts)
    failures += _counters(ev, writes)
    if ev.stamping:
        failures += _stamped(writes, final)
    return failures


def _convergence(ev: Evidence, server: dict[str, dict[str, Doc]]) -> list[str]:
    out = []
    for i, device in enumerate(ev.devices):
        for coll in sorted(set(device.docs) | set(server)):
            mine, theirs = device.docs.get(coll, {}), server.get(coll, {})
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    out.append(
                        f"P1 convergence: dev{i} {coll}#{key} = {mine.get(key)}, "
                        f"server {theirs.get(key)}"
                    )
    return out


def _outboxes(ev: Evidence) -> list[str]:
    out = []
    for i, device in enumerate(ev.devices):
        blocked = _blocked(device.outbox_at_rest)
        for entry in device.outbox_at_rest:
            error = entry.get("error")
            if (
                entry.get("state") != "rejected"
                and (entry.get("collection"), entry.get("id")) in blocked
            ):
                continue  # behind a rejected change of its record (until retried or discarded)
            if entry.get("state") != "rejected":
                out.append(f"P2 outbox: dev{i} keeps {entry.get('state')} {_entry(entry)} at rest")
            elif not (isinstance(error, dict) and error.get("code") and "message" in error):
                out.append(f"P2 outbox: dev{i} rejected {_entry(entry)} without a reason")
        for entry in device.outbox:
            out.append(f"P2 outbox: dev{i} still holds {_entry(entry)} after resolving")
    return out


def _blocked(outbox: list[dict[str, Any]]) -> set[tuple[Any, Any]]:
    """Records whose changes wait behind a rejected one: its record's, and (a
    transaction lands whole) those of a transaction holding a waiting change."""
    blocked = {(e.get("collection"), e.get("id")) for e in outbox if e.get("state") == "rejected"}
    while True:
        groups = {
            e.get("group")
            for e in outbox
            if e.get("group") is not None and (e.get("collection"), e.get("id")) in blocked
        }
        more = {(e.get("collection"), e.get("id")) for e in outbox if e.get("group") in groups}
        if more <= blocked:
            return blocked
        blocked |= more


def _entry(entry: dict[str, Any]) -> str:
    return f"{entry.get('collection')}#{entry.get('id')} {entry.get('op')} mid={entry.get('mid')}"


def _server_docs(history: list[Write]) -> list[Doc | None]:
    return [None, *(doc_of(w.new) for w in history)]


def _conflict_sides(
    ev: Evidence, writes: dict[str, list[Write]], conflicts: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    """P6: a conflict's sides are true: remote a state the server had, local a state the
    device had (or a merge it made), base one of either.

    A counter's ``n`` is left out of the local side and the base (P7 owns it): both may
    hold what the device expected once an earlier change of the record lands.
    """
    out = []
    for dev, conflict in conflicts:
        key = f"{conflict['collection']}#{conflict['id']}"
        server = {canon(d) for d in _server_docs(writes.get(key, []))}
        seen = [*ev.devices[dev].states.get(key, []), None]
        seen += [c["result"] for d, c in conflicts if d == dev and _key(c) == key]
        # A change rebased by a discard goes on the discarded change's base: its edits
        # applied to that base are what it writes.
        for e in ev.edits:
            if e.dev == dev and e.key == key and e.status == "acked":
                seen += [_redo(e, pre) for pre in _under_discarded(ev.edits, e)]
        local = {_uncounted(key, d) for d in seen}
        where = f"dev{dev} {key} conflict {_brief(conflict)}"
        if canon(conflict.get("remote")) not in server:
            out.append(f"P6 conflict: remote side never on the server: {where}")
        if _uncounted(key, conflict.get("local")) not in local:
            out.append(f"P6 conflict: local side never on the device: {where}")
        base = local | {_uncounted(key, d) for d in _server_docs(writes.get(key, []))}
        if _uncounted(key, conflict.get("base")) not in base:
            out.append(f"P6 conflict: base neither on the server nor the device: {where}")
    return out


def _uncounted(key: str, doc: Doc | None) -> str:
    """A document as text, a counter's n left out."""
    if doc is not None and key.startswith(f"{COUNTERS}#"):
        doc = {k: v for k, v in doc.items() if k != "n"}
    return canon(doc)


def _key(conflict: dict[str, Any]) -> str:
    return f"{conflict['collection']}#{conflict['id']}"


def _brief(conflict: dict[str, Any]) -> str:
    parts = ("base", "local", "remote", "result")
    return "{" + ", ".join(f"{p}: {conflict.get(p)}" for p in parts) + "}"


def _landed(
    ev: Evidence, writes: dict[str, list[Write]], conflicts: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    """P3: an acknowledged edit's mutation landed, unless its conflict kept the server's side."""
    out = []
    landed = {(w.key, w.mid) for ws in writes.values() for w in ws if w.who == "pysync"}
    kept_remote = {
        (dev, _key(c)) for dev, c in conflicts if canon(c.get("result")) == canon(c.get("remote"))
    }
    seen: set[tuple[int, int]] = set()
    for edit in ev.edits:
        if edit.status != "acked" or edit.entry is None or (edit.dev, edit.entry) in seen:
            continue
        seen.add((edit.dev, edit.entry))
        if any((edit.key, m) in landed for m in edit.mids) or (edit.dev, edit.key) in kept_remote:
            continue
        out.append(
            f"P3 landed: dev{edit.dev}'s {edit.op} of {edit.key} (step {edit.step}, "
            f"sent as {edit.mids}) left the outbox but never reached the server"
        )
    return out


def _applied_once(ev: Evidence, writes: dict[str, list[Write]]) -> list[str]:
    """P4: a mutation id appears in one entry only, except the writes that kept it."""
    out = []
    owner: dict[str, str] = {}
    for key, history in writes.items():
        by_m: dict[str, list[Write]] = {}
        for w in history:
            m = system_of(w.new).get("_m")
            if isinstance(m, str) and w.who != "probe":  # a settle's marker, not a change
                by_m.setdefault(m, []).append(w)
        for m, group in by_m.items():
            later = [w for w in group[1:] if not (w.outside is not None and w.outside.keeps_m)]
            if later and all(ev.history.unseen(group[0].seq, w.seq) for w in later):
                ev.history.explained.append(f"{key} _m {m} in entries {[w.seq for w in group]}")
            elif later:
                seqs = [w.seq for w in group]
                out.append(f"P4 applied once: {key} _m {m} in entries {seqs}")
            if group[0].who == "pysync":
                if m in owner and owner[m] != key:
                    out.append(f"P4 applied once: mutation {m} wrote {owner[m]} and {key}")
                owner[m] = key
    # A change lands once, whatever ids it was sent under.
    landed: dict[str, int] = {
        w.mid: w.seq for ws in writes.values() for w in ws if w.who == "pysync" and w.mid
    }
    done: set[tuple[int, int]] = set()
    for e in ev.edits:
        if e.entry is None or (e.dev, e.entry) in done:
            continue
        done.add((e.dev, e.entry))
        seqs = sorted(landed[m] for m in e.mids if m in landed)
        if len(seqs) > 1 and all(ev.history.unseen(seqs[0], s) for s in seqs[1:]):
            ev.history.explained.append(f"dev{e.dev}'s change of {e.key} in entries {seqs}")
        elif len(seqs) > 1:
            out.append(
                f"P4 applied once: dev{e.dev}'s change of {e.key} (step {e.step}) landed in "
                f"entries {seqs} under ids {e.mids}"
            )
    return out


def _holds(doc: Doc | None, name: str | None, value: Any) -> bool:
    if name is None:
        return doc is None
    return doc is not None and name in doc and doc[name] == value


def _changes(
    op: str, values: dict[str, Any], pre: Doc | None, post: Doc | None, name: str | None, v: Any
) -> bool:
    """Whether a write made on ``pre`` (holding ``name = v``) replaced it."""
    return _holds(pre, name, v) and not _holds(post, name, v)


def _values(
    ev: Evidence,
    writes: dict[str, list[Write]],
    final: dict[str, Item],
    conflicts: list[tuple[int, dict[str, Any]]],
) -> list[str]:
    """P5: every value an acknowledged edit or an outside write set is in the final state,
    or was superseded by a write made on a state holding it, or is kept in a conflict."""
    out = []
    # Writes that replace values, each with the state it was made on and the one it left.
    replacing: list[tuple[int, str, Doc | None, Doc | None]] = []
    for e in ev.edits:
        if e.status == "acked" or (e.status == "pending" and e.mid is not None):
            replacing.append((e.n, e.key, e.pre, e.post))
            # An edit made on top of a discarded one goes on top of what that was made
            # on (discard rebases it): it replaces what the discarded edit replaced.
            for pre in _under_discarded(ev.edits, e):
                replacing.append((e.n, e.key, pre, e.post))
    for o in ev.outside:
        replacing.append((o.n, o.key, doc_of(o.old), doc_of(o.new)))
    for _, c in conflicts:
        for side in ("local", "remote"):
            replacing.append((-1, _key(c), c.get(side), c.get("result")))

    def superseded(n: int, key: str, name: str | None, v: Any) -> bool:
        """Whether a write made on a state holding ``name = v`` replaced it."""
        for m, k, pre, post in replacing:
            if k == key and m != n and _changes("", {}, pre, post, name, v):
                return True
        return False

    def recreated(key: str, entry: Write | None) -> bool:
        """Whether the record was created again after a deletion landed (``entry``)."""
        history = writes.get(key, [])
        after = history[history.index(entry) + 1 :] if entry in history else []
        return any(doc_of(w.old) is None and doc_of(w.new) is not None for w in after)

    def kept(key: str, name: str | None, v: Any) -> bool:
        return any(
            _key(c) == key and (_holds(c.get("local"), name, v) or _holds(c.get("remote"), name, v))
            for _, c in conflicts
        )

    def window(o: OutsideRecord) -> bool:
        """A write that kept `_m`, written over by pysync before the consumer stamped it."""
        if not o.keeps_m:
            return False
        history = writes.get(o.key, [])
        for i, w in enumerate(history):
            if w.outside is o:
                for later in history[i + 1 :]:  # other writes that kept _m: still the window
                    if later.who == "pysync":
                        return True
                    if later.outside is None or not later.outside.keeps_m:
                        return False
        return False

    def deletion(key: str, mid: str | None, o: OutsideRecord | None) -> Write | None:
        """The entry of the history where a delete landed."""
        for w in writes.get(key, []):
            ours = (o is not None and w.outside is o) or (mid is not None and w.mid == mid)
            if ours and (w.new is None or "_del" in w.new):
                return w
        return None

    claims: list[tuple[str, int, str, str | None, Any, OutsideRecord | None]] = []
    deletes: list[tuple[str, int, str, str | None, OutsideRecord | None]] = []

    def redone(key: str, n: int) -> bool:
        """Whether a later edit created the record again on a device where it was gone."""
        return any(
            e.key == key and e.n > n and e.pre is None and e.post is not None
            for e in ev.edits
            if e.status == "acked"
        )

    for e in ev.edits:
        if e.status != "acked":
            continue
        what = f"dev{e.dev} {e.op} (step {e.step})"
        if e.op == "delete":
            deletes.append((what, e.n, e.key, e.mid, None))
        elif e.op != "increment":
            claims += [(what, e.n, e.key, k, v, None) for k, v in e.values.items()]
    for o in ev.outside:
        what = f"outside {o.kind}{'' if o.contract else ' (no contract)'} (step {o.step})"
        if o.new is None:
            deletes.append((what, o.n, o.key, None, o))
        else:  # a counter's n is the increments' (P7), not a value
            counter = o.key.startswith(f"{COUNTERS}#")
            claims += [
                (what, o.n, o.key, k, v, o)
                for k, v in o.values.items()
                if not (counter and k == "n")
            ]
    for what, n, key, name, v, o in claims:
        now = doc_of(final.get(key))
        if _holds(now, name, v) or superseded(n, key, name, v) or kept(key, name, v):
            continue
        if o is not None and window(o):
            continue
        out.append(f"P5 lost: {name}={v!r} of {what} on {key}; final {now}")
    # A deletion: the record is absent at the end, or was created again after the
    # deletion landed, or the deletion is a side of a recorded conflict.
    for what, n, key, mid, o in deletes:
        now = doc_of(final.get(key))
        if now is None or kept(key, None, None):
            continue
        if recreated(key, deletion(key, mid, o)) or redone(key, n):
            continue
        out.append(f"P5 lost: the deletion of {what} on {key}; final {now}")
    return out


def _redo(edit: EditRecord, pre: Doc | None) -> Doc | None:
    """``edit`` made on ``pre`` instead."""
    if edit.op in ("put", "add"):
        return {"id": edit.id, **edit.values}
    if edit.op == "delete":
        return None
    doc = dict(pre or {"id": edit.id})
    if edit.op == "patch":
        return {**doc, **edit.values}
    return {**doc, "n": doc.get("n", 0) + edit.by}


def _under_discarded(edits: list[EditRecord], edit: EditRecord) -> list[Doc | None]:
    """The states the discarded edits below ``edit`` (same device and record) were made on."""
    found: list[Doc | None] = []
    top = edit.pre
    for e in reversed([e for e in edits if e.n < edit.n]):
        if e.dev == edit.dev and e.key == edit.key:
            if e.status != "discarded" or canon(e.post) != canon(top):
                break
            found.append(e.pre)
            top = e.pre
    return found


def _counters(ev: Evidence, writes: dict[str, list[Write]]) -> list[str]:
    """P7: every write to a live counter moved ``n`` by exactly the increments it carries."""
    out = []
    carried: dict[str, int] = {}
    for e in ev.edits:
        # Whatever became of the change afterwards (a discarded one may have landed),
        # under every id it was sent with (a merged change goes out under a new one).
        if e.op == "increment" and e.entry is not None:
            for mid in e.mids:
                carried[mid] = carried.get(mid, 0) + e.by
    for key, history in writes.items():
        if not key.startswith(f"{COUNTERS}#"):
            continue
        for i, w in enumerate(history):
            old, new = doc_of(w.old), doc_of(w.new)
            if old is None or new is None:
                continue  # a new incarnation starts, or this one ends
            # The documented window: a write that kept _m (and _v) can be written over
            # before the consumer stamps it; then the change counts from the state before.
            bases = [old]
            j = i - 1
            while w.who == "pysync" and j >= 0 and history[j].outside is not None:
                if not history[j].outside.keeps_m or doc_of(history[j].old) is None:
                    break
                bases.append(doc_of(history[j].old))
                j -= 1
            if w.who == "outside" and w.outside is not None:
                if w.outside.kind in ("put", "recreate"):
                    continue  # the writer set n anew
                expected = w.outside.by
            elif w.who == "pysync":
                expected = carried.get(w.mid or "", 0)
            else:
                expected = 0
            delta = new.get("n", 0) - old.get("n", 0)
            if all(new.get("n", 0) - (b or {}).get("n", 0) != expected for b in bases):
                who = w.who if w.mid is None else f"mutation {w.mid}"
                out.append(
                    f"P7 increments: {key} entry {w.seq} ({who}) moved n by {delta}, "
                    f"its increments add up to {expected} (n {old.get('n')} -> {new.get('n')})"
                )
    return out


def _stamped(writes: dict[str, list[Write]], final: dict[str, Item]) -> list[str]:
    """P8: each final item's (_v, _m) names one state of its record."""
    out = []
    for key, item in final.items():
        state = (system_of(item).get("_v"), system_of(item).get("_m"))
        for w in writes.get(key, []):
            if w.new is None:
                continue
            same = (system_of(w.new).get("_v"), system_of(w.new).get("_m")) == state
            if same and doc_of(w.new) != doc_of(item):
                out.append(f"P8 stamped: {key} ends as {state} that entry {w.seq} had too")
                break
    return out
