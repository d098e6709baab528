"""A catch-up pull applies a changelog page in slices of APPLY_CHUNK entries, each in
its own transaction with the cursor at its last entry: no page makes one long task,
and a pull cut off between slices resumes after what it applied."""

from __future__ import annotations

from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, Sync
from pysync._sync import _pull
from pysync.testing import MemoryBrowser, MemoryDynamo

SCHEMA = AppSchema(1, {"todos": CollectionSpec()})


async def no_sleep(_: float) -> None:
    return None


async def test_a_page_is_applied_in_slices_with_the_cursor_at_each_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = MemoryDynamo()
    reader = await pysync.connect("app", "alice", SCHEMA, platform=MemoryBrowser().tab())
    writer = await pysync.connect("app", "alice", SCHEMA, platform=MemoryBrowser().tab())
    reading = Sync(reader, db.connection(), sleep=no_sleep)
    await reading.pull()  # a base sync of nothing: from here on, the changelog
    start = await reading.puller.cursor()
    assert start is not None
    for first in range(0, 250, 50):
        async with writer.transaction() as tx:
            for i in range(first, first + 50):
                tx.put("todos", {"id": f"t{i:03d}", "n": i})
    await Sync(writer, db.connection(), sleep=no_sleep).push()

    slices: list[tuple[int, int | None]] = []
    apply = _pull.Puller.apply

    async def spy(self: _pull.Puller, changes: list[Any], *args: Any, **kwargs: Any) -> None:
        slices.append((len(changes), kwargs.get("cursor")))
        if len(slices) == 2:
            raise ConnectionError("the tab closes between two slices")
        await apply(self, changes, *args, **kwargs)

    monkeypatch.setattr(_pull.Puller, "apply", spy)
    with pytest.raises(ConnectionError):
        await reading.pull()
    assert slices[0] == (_pull.APPLY_CHUNK, start + _pull.APPLY_CHUNK)
    assert await reading.puller.cursor() == start + _pull.APPLY_CHUNK  # the first slice stays
    assert await reader["todos"].count() == _pull.APPLY_CHUNK

    slices.clear()
    monkeypatch.setattr(_pull.Puller, "apply", apply)
    report = await reading.pull()
    assert report.applied == 250 - _pull.APPLY_CHUNK
    assert await reading.puller.cursor() == start + 250
    docs = await reader["todos"].query()
    assert [d["n"] for d in docs] == list(range(250))
    for replica in (reader, writer):
        replica.close()
