"""The storage contract: what every backend guarantees, as runnable checks.

Each check is an ``async`` function taking a :class:`StoreFactory`; it opens its
own uniquely named database, raises ``AssertionError`` on a broken promise and
deletes the database at the end. Run one with :func:`run`, list them with
:data:`CHECKS`. pysync runs them against IndexedDB in Chromium and against the
in-memory backend in CPython, so the fast tests prove what the browser does.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from .. import _errors as errors
from .._store import Database, Index, KeyRange, Schema, StoreSchema, Transaction
from ._factories import StoreFactory

Check = Callable[[StoreFactory], Awaitable[None]]
CHECKS: dict[str, Check] = {}
_names = itertools.count()


def check(func: Check) -> Check:
    """Register ``func`` as a contract check."""
    CHECKS[func.__name__] = func
    return func


async def run(name: str, factory: StoreFactory) -> None:
    """Run the check called ``name`` against ``factory``'s backend."""
    await CHECKS[name](factory)


def _schema(version: int = 1, *stores: StoreSchema) -> Schema:
    return Schema(f"contract-{next(_names)}-{id(stores)}", version, stores or _STORES)


_STORES = (
    StoreSchema(
        "items",
        indexes=(
            Index("by_n", "n"),
            Index("by_tag", "tags", multi_entry=True),
            Index("by_owner_n", ("owner", "n")),
            Index("by_email", "email", unique=True),
            Index("by_city", "address.city"),
        ),
    ),
    StoreSchema("log", key_path="seq"),
)


def _same(actual: Any, expected: Any, path: str = "value") -> None:
    """Assert equal values of identical types, recursively (NaN equals NaN)."""
    if type(actual) is not type(expected):
        raise AssertionError(
            f"{path}: {actual!r} is a {type(actual).__name__}, "
            f"expected {expected!r} ({type(expected).__name__})"
        )
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            raise AssertionError(f"{path}: keys {sorted(actual)} != {sorted(expected)}")
        for key in expected:
            _same(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list):
        if len(actual) != len(expected):
            raise AssertionError(f"{path}: {len(actual)} items, expected {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        if not math.isnan(actual):
            raise AssertionError(f"{path}: {actual!r} != nan")
    elif actual != expected:
        raise AssertionError(f"{path}: {actual!r} != {expected!r}")


async def _raises(kind: type[BaseException], action: Awaitable[Any]) -> BaseException:
    try:
        await action
    except kind as error:
        return error
    raise AssertionError(f"expected {kind.__name__}")


async def _ids(db: Database, store: str = "items") -> list[Any]:
    return [r["id"] for r in await db.query(store)]


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


class _Opened:
    """``async with _Opened(factory, schema) as db``: open, then close and delete."""

    def __init__(self, factory: StoreFactory, schema: Schema | None = None) -> None:
        self.factory = factory
        self.schema = schema or _schema()

    async def __aenter__(self) -> Database:
        self.db = await self.factory.open(self.schema)
        return self.db

    async def __aexit__(self, *exc: object) -> None:
        self.db.close()
        await self.factory.delete(self.schema.name)


VALUES: dict[str, Any] = {
    "str": "héllo \U0001f600 \x00 end",
    "empty_str": "",
    "int": 42,
    "negative": -7,
    "max_number": 2**53 - 2,
    "max_safe": 2**53 - 1,
    "beyond_2_53": 2**53 + 1,
    "huge": 10**30,
    "huge_negative": -(2**80) - 3,
    "float": 0.1,
    "integral_float": 3.0,
    "negative_zero_float": -0.0,
    "inf": math.inf,
    "nan": math.nan,
    "true": True,
    "false": False,
    "none": None,
    "bytes": bytes(range(256)),
    "empty_bytes": b"",
    "nested": {"a": [1, 2.0, {"b": b"\x01", "c": [None, True, 2**64]}], "d": {}},
    "empty_list": [],
    "list_of_lists": [[1.0], [[b"x"]], []],
}


@check
async def values_round_trip_exactly(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        record = {"id": "all", **VALUES}
        await db.put("items", record)
        _same(await db.get("items", "all"), record)
        (listed,) = await db.query("items")
        _same(listed, record)
        # Each value alone, so one failure does not hide another.
        await db.put_many("items", [{"id": name, "v": value} for name, value in VALUES.items()])
        for name, value in VALUES.items():
            got = await db.get("items", name)
            _same(got, {"id": name, "v": value}, name)


#: Values a batch may hold with no bytes and no int beyond 2**53. IndexedDB hands such
#: batches to JavaScript as one JSON text, where None must still read back as None.
PLAIN_VALUES: dict[str, Any] = {
    "none": None,
    "null_text": "null",
    "nested_nones": {"a": [None, {"b": None}, [None]], "c": None, "null": "null"},
    "str": 'héllo \U0001f600 \x00 "quoted" \\ end',
    "max_number": 2**53 - 2,
    "negative": -7,
    "float": 0.1,
    "integral_float": 3.0,
    "negative_zero_float": -0.0,
    "big_float": 1e300,
    "true": True,
    "empty_dict": {},
    "empty_list": [],
    "list": [1, "a", [2.5]],
}


@check
async def plain_batches_round_trip_exactly(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        records = [{"id": name, "v": value} for name, value in PLAIN_VALUES.items()]
        await db.put_many("items", records)
        _same(await db.query("items"), sorted(records, key=lambda r: r["id"]))
        # NaN and infinities have no JSON form: a batch holding one still round-trips.
        odd: list[dict[str, Any]] = [
            {"id": "nan", "v": math.nan},
            {"id": "inf", "v": [None, -math.inf]},
        ]
        await db.put_many("items", odd)
        for record in odd:
            _same(await db.get("items", record["id"]), record, record["id"])


@check
async def tuples_are_stored_as_lists(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put("items", {"id": "t", "pair": (1, "a")})
        _same(await db.get("items", "t"), {"id": "t", "pair": [1, "a"]})


@check
async def returned_records_are_copies(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        tags = ["x"]
        await db.put("items", {"id": "a", "tags": tags})
        tags.append("changed-after-put")
        got = await db.get("items", "a")
        assert got is not None
        got["tags"].append("changed-after-get")
        _same(await db.get("items", "a"), {"id": "a", "tags": ["x"]})


@check
async def get_put_delete_count_clear(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        assert await db.get("items", "missing") is None
        await db.put_many("items", [{"id": f"k{i}", "n": i} for i in range(10)])
        assert await db.count("items") == 10
        got = await db.get_many("items", ["k3", "nope", "k1"])
        _same(got, [{"id": "k3", "n": 3}, None, {"id": "k1", "n": 1}])
        _same(await db.get_many("items", []), [])
        await db.put("items", {"id": "k3", "n": 33})
        _same(await db.get("items", "k3"), {"id": "k3", "n": 33})
        await db.delete("items", "k3")
        await db.delete_many("items", ["k1", "k2", "never-there"])
        assert await db.count("items") == 7
        assert await db.get("items", "k3") is None
        await db.clear("items")
        assert await db.count("items") == 0


@check
async def primary_key_ranges_limit_offset_reverse(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put_many("items", [{"id": f"k{i:02}"} for i in range(20)])
        assert await _ids(db) == [f"k{i:02}" for i in range(20)]
        between = KeyRange.bound("k05", "k09", upper_open=True)
        assert [r["id"] for r in await db.query("items", range=between)] == [
            "k05",
            "k06",
            "k07",
            "k08",
        ]
        page = await db.query("items", range=KeyRange.at_least("k10"), limit=3, offset=2)
        assert [r["id"] for r in page] == ["k12", "k13", "k14"]
        back = await db.query("items", reverse=True, limit=2)
        assert [r["id"] for r in back] == ["k19", "k18"]
        back_off = await db.query("items", reverse=True, offset=18)
        assert [r["id"] for r in back_off] == ["k01", "k00"]
        assert await db.query("items", limit=0) == []
        assert await db.query("items", offset=50) == []
        assert [r["id"] for r in await db.query("items", range=KeyRange.only("k07"))] == ["k07"]
        below = await db.query("items", range=KeyRange.at_most("k02", open=True))
        assert [r["id"] for r in below] == ["k00", "k01"]
        assert await db.count("items", range=KeyRange.bound("k00", "k04")) == 5
        prefixed = await db.query("items", range=KeyRange.prefix("k1"))
        assert len(prefixed) == 10


@check
async def keys_without_records(factory: StoreFactory) -> None:
    """``keys`` gives the primary keys in key order, within a range, up to a limit,
    of every kind; ``key_slices`` walks them all once, in order."""
    async with _Opened(factory) as db:
        ids: list[Any] = [f"k{i:02}" for i in range(20)]
        await db.put_many("items", [{"id": k} for k in ids])

        def keys(**options: Any) -> Callable[[Transaction], Any]:
            return lambda tx: tx.keys("items", **options)

        assert (await db.run("items", "readonly", keys())).result == ids
        between = KeyRange.bound("k05", "k08", lower_open=True)
        assert (await db.run("items", "readonly", keys(range=between))).result == ids[6:9]
        assert (await db.run("items", "readonly", keys(limit=3))).result == ids[:3]
        assert (await db.run("items", "readonly", keys(limit=0))).result == []
        await _raises(errors.DataError, db.run("items", "readonly", keys(limit=-1)))
        odd: list[Any] = [0, 2.5, (1, "a"), b"\x00", "z"]
        await db.put_many("items", [{"id": k} for k in odd])
        everything = (await db.run("items", "readonly", keys())).result
        _same(everything, [0, 2.5, *ids, "z", b"\x00", (1, "a")], "keys of every kind")
        walked = [key async for chunk in db.key_slices("items", 7) for key in chunk]
        _same(walked, everything, "key_slices")
        assert [len(chunk) async for chunk in db.key_slices("items", 5)] == [5, 5, 5, 5, 5]


@check
async def index_queries(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put_many(
            "items",
            [
                {
                    "id": "a",
                    "n": 3,
                    "owner": "u1",
                    "tags": ["red", "big", "red"],
                    "address": {"city": "Oslo"},
                },
                {"id": "b", "n": 1, "owner": "u2", "tags": ["blue"], "address": {"city": "Rome"}},
                {"id": "c", "n": 2, "owner": "u1", "tags": []},
                {"id": "d", "n": 3, "owner": "u2", "tags": ["red"], "address": {"city": "Oslo"}},
                {"id": "e", "owner": "u1", "n": "not-a-number-sorts-after-numbers"},
                {"id": "f", "n": None, "tags": "red"},
            ],
        )
        by_n = await db.query("items", index="by_n")
        # Numbers before strings; equal index keys in primary key order; None not indexed.
        assert [r["id"] for r in by_n] == ["b", "c", "a", "d", "e"]
        threes = await db.query("items", index="by_n", range=KeyRange.only(3))
        assert [r["id"] for r in threes] == ["a", "d"]
        assert await db.count("items", index="by_n", range=KeyRange.bound(1, 2)) == 2
        desc = await db.query("items", index="by_n", reverse=True, limit=3)
        assert [r["id"] for r in desc] == ["e", "d", "a"]
        red = await db.query("items", index="by_tag", range=KeyRange.only("red"))
        # Multi-entry: a repeated tag indexes the record once; a non-list value is one key.
        assert [r["id"] for r in red] == ["a", "d", "f"]
        owner = await db.query(
            "items", index="by_owner_n", range=KeyRange.bound(("u1", 0), ("u1", 10))
        )
        assert [r["id"] for r in owner] == ["c", "a"]
        oslo = await db.query("items", index="by_city", range=KeyRange.only("Oslo"))
        assert [r["id"] for r in oslo] == ["a", "d"]
        skipped = await db.query("items", index="by_n", offset=1, limit=2)
        assert [r["id"] for r in skipped] == ["c", "a"]


@check
async def key_order_matches_indexeddb(factory: StoreFactory) -> None:
    keys: list[Any] = [
        "b",
        -1,
        2.5,
        b"\x00",
        ("a", 1),
        "a",
        10,
        b"",
        ("a",),
        "\uffff",
        "\U00010000",
        (),
    ]
    expected = [-1, 2.5, 10, "a", "b", "\U00010000", "\uffff", b"", b"\x00", (), ("a",), ("a", 1)]
    async with _Opened(factory) as db:
        await db.put_many("items", [{"id": k} for k in keys])
        got = [r["id"] for r in await db.query("items")]
        # Array keys come back as lists.
        _same(got, [list(k) if isinstance(k, tuple) else k for k in expected])
        one = await db.get("items", ("a", 1))
        assert one is not None


@check
async def multi_store_transaction_commits_together(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:

        def body(tx: Transaction) -> None:
            tx.put_many("items", [{"id": f"i{i}"} for i in range(50)])
            tx.put("log", {"seq": 1, "what": "added 50"})

        await db.run(["items", "log"], "readwrite", body)
        assert await db.count("items") == 50
        _same(await db.get("log", 1), {"seq": 1, "what": "added 50"})


@check
async def failed_request_aborts_every_write(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put("items", {"id": "existing", "email": "taken@example.com", "n": 1})

        def body(tx: Transaction) -> None:
            tx.put_many(
                "items", [{"id": f"new{i}", "email": f"{i}@example.com"} for i in range(100)]
            )
            tx.put("log", {"seq": 7})
            tx.put("items", {"id": "existing", "email": "taken@example.com", "n": 2})
            tx.put("items", {"id": "clash", "email": "taken@example.com"})  # unique index
            tx.put_many("items", [{"id": f"late{i}"} for i in range(10)])

        error = await _raises(errors.ConstraintError, db.run(["items", "log"], "readwrite", body))
        assert isinstance(error, errors.StoreError)
        assert error.name == "ConstraintError"
        assert await _ids(db) == ["existing"]
        _same(
            await db.get("items", "existing"),
            {"id": "existing", "email": "taken@example.com", "n": 1},
        )
        assert await db.count("log") == 0


@check
async def exception_in_body_aborts(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:

        def body(tx: Transaction) -> None:
            tx.put("items", {"id": "a"})
            raise KeyError("app bug")

        await _raises(KeyError, db.run("items", "readwrite", body))
        assert await db.count("items") == 0


@check
async def callbacks_read_then_write_atomically(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put("items", {"id": "counter", "n": 0})

        def increment(tx: Transaction) -> None:
            tx.get("items", "counter").then(
                lambda rec: tx.put("items", {**rec, "n": rec["n"] + 1}) if rec else None
            )

        # Concurrent read-modify-write transactions must not lose an update.
        await asyncio.gather(*(db.run("items", "readwrite", increment) for _ in range(25)))
        _same(await db.get("items", "counter"), {"id": "counter", "n": 25})

        def chain(tx: Transaction) -> Any:
            tx.put("items", {"id": "x", "n": 1})
            tx.get("items", "x").then(
                lambda rec: tx.put("items", {"id": "y", "n": (rec or {})["n"] + 1})
            )
            return tx.count("items")

        counted = await db.run("items", "readwrite", chain)
        # Requests run in order: the count sees x but not y (made later, in a callback).
        assert counted.result == 2
        _same(await db.get("items", "y"), {"id": "y", "n": 2})


@check
async def failing_callback_aborts(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:

        def body(tx: Transaction) -> None:
            tx.put("items", {"id": "a"})
            tx.get("items", "a").then(lambda rec: 1 / 0)

        await _raises(ZeroDivisionError, db.run("items", "readwrite", body))
        assert await db.count("items") == 0


@check
async def await_inside_a_transaction_is_refused(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:

        async def body(tx: Transaction) -> None:
            tx.put("items", {"id": "before"})
            await asyncio.sleep(0.01)
            tx.put("items", {"id": "after"})

        error = await _raises(
            errors.TransactionInactiveError,
            db.run("items", "readwrite", body),
        )
        assert "synchronous" in str(error)
        assert await db.count("items") == 0

        kept: list[Transaction] = []
        await db.run("items", "readwrite", kept.append)
        await asyncio.sleep(0.01)
        late = await _raises(
            errors.TransactionInactiveError, _call(kept[0].put, "items", {"id": 1})
        )
        assert "already finished" in str(late)
        assert await db.count("items") == 0


@check
async def invalid_requests_fail_clearly_and_write_nothing(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        bad_keys: list[Any] = [True, None, math.nan, 2**60, 2**53 - 1, {"a": 1}, [1, None]]
        for key in bad_keys:
            await _raises(errors.DataError, db.put("items", {"id": key}))
            await _raises(errors.DataError, db.get("items", key))
        await _raises(errors.DataError, db.put("items", {"no_id": 1}))
        await _raises(errors.DataError, db.put("items", "not a dict"))  # type: ignore[arg-type]
        bad_values: list[Any] = [{1, 2}, object(), 1j, {1: "int key"}]
        for value in bad_values:
            await _raises(errors.ValidationError, db.put("items", {"id": "v", "x": value}))
        await _raises(errors.ValidationError, db.put("items", {"id": "v", "__pysync_types__": 1}))
        await _raises(errors.NotFoundError, db.get("nope", "k"))
        await _raises(errors.NotFoundError, db.query("items", index="nope"))
        await _raises(errors.DataError, db.query("items", range=KeyRange.bound("b", "a")))
        await _raises(errors.DataError, db.query("items", limit=-1))
        await _raises(
            errors.ReadOnlyError, db.run("items", "readonly", lambda tx: tx.put("items", {"id": 1}))
        )
        await _raises(
            errors.NotFoundError, db.run("items", "readwrite", lambda tx: tx.put("log", {"seq": 1}))
        )

        def half_bad(tx: Transaction) -> None:
            tx.put("items", {"id": "good"})
            tx.put("items", {"id": "bad", "x": {1, 2}})

        await _raises(errors.ValidationError, db.run("items", "readwrite", half_bad))
        assert await db.count("items") == 0


@check
async def data_survives_reopening(factory: StoreFactory) -> None:
    schema = _schema()
    db = await factory.open(schema)
    await db.put_many("items", [{"id": i, "n": float(i)} for i in range(5)])
    db.close()
    await _raises(errors.DatabaseClosedError, db.get("items", 1))
    again = await factory.open(schema)
    _same(await again.get("items", 4), {"id": 4, "n": 4.0})
    assert await again.count("items") == 5
    again.close()
    await factory.delete(schema.name)
    fresh = await factory.open(schema)
    assert await fresh.count("items") == 0
    fresh.close()
    await factory.delete(schema.name)


@check
async def version_upgrades_keep_data(factory: StoreFactory) -> None:
    v1 = _schema(1, StoreSchema("notes"))
    db = await factory.open(v1)
    await db.put_many("notes", [{"id": "a", "tag": "x"}, {"id": "b", "tag": "y"}])
    db.close()

    changed_same_version = Schema(v1.name, 1, (StoreSchema("notes", indexes=(Index("t", "tag"),)),))
    await _raises(errors.SchemaError, factory.open(changed_same_version))

    v2 = Schema(
        v1.name, 2, (StoreSchema("notes", indexes=(Index("by_tag", "tag"),)), StoreSchema("extra"))
    )
    db = await factory.open(v2)
    tagged = await db.query("notes", index="by_tag", range=KeyRange.only("y"))
    assert [r["id"] for r in tagged] == ["b"]
    await db.put("extra", {"id": 1})
    db.close()

    await _raises(errors.VersionError, factory.open(v1))

    # A unique index the stored data violates: the upgrade fails and changes nothing.
    v3 = Schema(
        v1.name,
        3,
        (StoreSchema("notes", indexes=(Index("u", "same", unique=True),)), StoreSchema("extra")),
    )
    db = await factory.open(v2)
    await db.put_many("notes", [{"id": "c", "same": 1}, {"id": "d", "same": 1}])
    db.close()
    await _raises(errors.StoreError, factory.open(v3))
    db = await factory.open(v2)
    assert await db.count("notes") == 4
    assert await db.count("extra") == 1
    db.close()

    # A store dropped from the declaration keeps its data.
    v4 = Schema(v1.name, 4, (StoreSchema("notes"),))
    db = await factory.open(v4)
    assert await db.count("notes") == 4
    db.close()
    db = await factory.open(Schema(v1.name, 5, (StoreSchema("notes"), StoreSchema("extra"))))
    assert await db.count("extra") == 1
    db.close()
    await factory.delete(v1.name)


@check
async def request_result_is_known_after_the_transaction(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        seen: list[bool] = []

        def body(tx: Transaction) -> Any:
            request = tx.count("items")
            try:
                request.result  # noqa: B018 - reading it is the check
            except errors.StoreError:
                seen.append(True)
            return request

        request = await db.run("items", "readonly", body)
        assert seen == [True]
        assert request.done
        assert request.result == 0


@check
async def many_keys_read_like_one_at_a_time(factory: StoreFactory) -> None:
    """Reads of many keys give what reading each alone gives, however the keys spread:
    all absent, a few present among many absent, every key present, keys far apart in
    a full store, repeated keys, and keys of every kind (a backend may read many keys
    differently from few: IndexedDB first asks which keys of the range exist)."""
    async with _Opened(factory) as db:
        keys: list[Any] = [f"k{i:03d}" for i in range(0, 200, 2)]
        await db.put_many("items", [{"id": k, "n": i} for i, k in enumerate(keys)])
        odd_keys: list[Any] = [f"k{i:03d}" for i in range(1, 40, 2)]
        mixed: list[Any] = [
            *odd_keys[:6],
            "k004",
            "k010",
            "k004",
            *odd_keys[6:9],
            -math.inf,
            math.inf,
            b"\x00",
            (1, "a"),
            2.5,
            0,
        ]
        spread: list[Any] = [keys[0], keys[-1], keys[50], keys[20], "zzz", "a"]
        for asked in (odd_keys, mixed, keys, spread, keys[10:16], [*keys[:3], "nope"]):
            alone = [await db.get("items", k) for k in asked]
            _same(await db.get_many("items", asked), alone, f"get_many({asked!r})")

        def lookup(asked: list[Any]) -> Callable[[Transaction], Any]:
            return lambda tx: tx.lookup("items", "by_n", asked)

        for asked in ([1000 + i for i in range(10)], [*range(5), 500, 5.5, 7], [3, 3, 4, 4]):
            found = (await db.run("items", "readonly", lookup(asked))).result
            one_by_one = [(await db.run("items", "readonly", lookup([k]))).result[0] for k in asked]
            _same(found, one_by_one, f"lookup({asked!r})")


@check
async def lookup_keys_names_the_matches_without_reading_them(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put_many(
            "items",
            [
                {"id": "a", "tags": ["x", "y", ["t", 1]]},
                {"id": "b", "tags": ["y"]},
                {"id": "c", "tags": [["t", 1], "z"]},
                {"id": "d"},
            ],
        )
        # Over 4 keys too: the helper probes the index range first.
        for asked in (["y", "x", "nope"], [("t", 1), "z", "y", "x", "w", ("t", 2)], []):

            def both(tx: Transaction, asked: list[Any] = asked) -> tuple[Any, Any]:
                return tx.lookup_keys("items", "by_tag", asked), tx.lookup("items", "by_tag", asked)

            keys, records = await db.run("items", "readonly", both)
            want = [[r["id"] for r in group] for group in records.result]
            assert keys.result == want, (asked, keys.result, want)
        found = await db.run(
            "items", "readonly", lambda tx: tx.lookup_keys("items", "by_tag", ["y", ("t", 1)])
        )
        assert found.result == [["a", "b"], ["a", "c"]], found.result


@check
async def lookup_returns_every_match_per_key(factory: StoreFactory) -> None:
    async with _Opened(factory) as db:
        await db.put_many(
            "items",
            [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 1}, {"id": "d"}],
        )
        found = await db.run("items", "readonly", lambda tx: tx.lookup("items", "by_n", [1, 3, 2]))
        got = [[r["id"] for r in group] for group in found.result]
        assert got == [["a", "c"], [], ["b"]], got
        empty = await db.run("items", "readonly", lambda tx: tx.lookup("items", "by_n", []))
        assert empty.result == []
