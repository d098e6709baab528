"""Queued writes that go out as few ``put_many`` / ``delete_many`` requests."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Transaction


class Writes:
    """The writes of one transaction, issued per store in as few requests as possible.

    Each store request from Python costs a conversion and a call into JavaScript, so a
    transaction of 10,000 documents would make 20,000 of them. Consecutive puts (or
    deletes) to one store go out as one ``put_many`` (``delete_many``) instead; each
    store still receives its writes in the order they were made, and stores do not
    depend on each other's order.
    """

    def __init__(self) -> None:
        self._runs: dict[str, list[tuple[Literal["put", "delete"], list[Any]]]] = {}

    def put(self, store: str, record: dict[str, Any]) -> None:
        """Queue a put of ``record`` into ``store``."""
        self._add(store, "put", record)

    def delete(self, store: str, key: Any) -> None:
        """Queue a delete of the record with primary key ``key`` from ``store``."""
        self._add(store, "delete", key)

    def _add(self, store: str, kind: Literal["put", "delete"], item: Any) -> None:
        runs = self._runs.setdefault(store, [])
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(item)
        else:
            runs.append((kind, [item]))

    def issue(self, tx: Transaction) -> None:
        """Make the queued requests in ``tx`` and forget them."""
        for store, runs in self._runs.items():
            for kind, items in runs:
                if kind == "put":
                    tx.put_many(store, items)
                else:
                    tx.delete_many(store, items)
        self._runs = {}
