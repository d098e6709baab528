"""The base sync's faster per-item conversions give exactly what the plain ones gave.

The conversions a pull makes of every item (``from_item`` with its number parsing,
the index keys, the store codec's ``encode``) were rewritten for speed. The plain
versions they replaced are kept here as references, and for a wide range of values
(Hypothesis) the new ones must give the same results, compared with their types
(``1``, ``1.0`` and ``True`` differ), their key order and their sidecar, or raise
the same exception. A base sync through :class:`MemoryDynamo` into a replica stores
the records the references make of the server's items.
"""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pysync
from pysync import AppSchema, CollectionSpec, Index, Sync
from pysync._errors import ValidationError
from pysync._marshal import from_attr, from_item, to_item
from pysync._schema import INDEX_FIELD, index_value, set_index_keys, with_index_keys
from pysync._store import _codec
from pysync._store._keys import MAX_SAFE_INT
from pysync._store._schema import extract_key
from pysync._sync._items import SYSTEM, parse_sort_key, sort_key
from pysync.testing import MemoryBrowser, MemoryDynamo

PROFILE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the references: the code before the speed-up ---------------------------------------


def ref_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        return int(number) if number.is_integer() and "e" not in text.lower() else number


def ref_from_attr(attr: dict[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return ref_number(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: ref_from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [ref_from_attr(v) for v in value]
    if kind == "B":
        return base64.b64decode(value)
    if kind in ("SS", "BS"):
        return [ref_from_attr({kind[0]: v}) for v in value]
    if kind == "NS":
        return [ref_number(v) for v in value]
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def ref_from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: ref_from_attr(v) for k, v in item.items()}


def ref_with_index_keys(spec: CollectionSpec, record: dict[str, Any]) -> dict[str, Any]:
    keys = {}
    for index in spec.indexes:
        value = extract_key(record, index.key_path)
        if value is not None:
            keys[index.name] = index_value(value)
    out = {k: v for k, v in record.items() if k != INDEX_FIELD}
    if keys:
        out[INDEX_FIELD] = keys
    return out


def ref_encode(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValidationError(f"a record must be a dict, not {type(record).__name__}")
    if _codec.SIDECAR in record:
        raise ValidationError(f"{_codec.SIDECAR!r} is a reserved field name")
    marks: dict[str, list[list[str | int]]] = {}
    copy = _ref_encode_dict(record, (), marks)
    if marks:
        copy[_codec.SIDECAR] = marks
    return copy


def _ref_encode_dict(value: dict[Any, Any], path: tuple[Any, ...], marks: Any) -> dict[str, Any]:
    for key in value:
        if type(key) is not str:
            raise ValidationError(f"field names must be str, not {key!r} at {_codec._show(path)}")
    return _ref_encode_items({}, value.items(), path, marks)  # type: ignore[no-any-return]


def _ref_encode_items(out: Any, items: Any, path: tuple[Any, ...], marks: Any) -> Any:
    for key, item in items:
        kind = type(item)
        if (
            kind is str
            or kind is bool
            or item is None
            or (kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT)
            or (kind is float and not item.is_integer())
        ):
            out[key] = item
        else:
            out[key] = _ref_encode_value(item, (*path, key), marks)
    return out


def _ref_encode_value(value: Any, path: tuple[Any, ...], marks: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            marks.setdefault("n", []).append(list(path))
        return value
    if kind is float:
        if value.is_integer():
            marks.setdefault("f", []).append(list(path))
        return value
    if kind is dict:
        return _ref_encode_dict(value, path, marks)
    if kind is list or kind is tuple:
        return _ref_encode_items([None] * len(value), enumerate(value), path, marks)
    if kind is bytes or kind is bytearray:
        marks.setdefault("b", []).append(list(path))
        return bytes(value)
    raise ValidationError(
        f"unsupported value of type {kind.__name__} at {_codec._show(path)}: use str, int, "
        "float, bool, None, bytes, dict or list"
    )


# -- comparing with types ---------------------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` as a tree that compares types, key order and float signs too."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def outcome(function: Any, *args: Any, message: bool = False) -> Any:
    """What ``function(*args)`` gives (typed), or the type of what it raises (and its
    text if ``message``)."""
    try:
        return ("ok", typed(function(*args)))
    except Exception as error:
        return ("raised", type(error).__name__, str(error) if message else "")


# -- values -----------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["id", "title", "n", "tags", "_v", "_seq", "_ix", "_m", "pk", "a.b", ""]),
    st.text(max_size=6),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 3.0, -2.0, 1.5, 1e16, 1e22, 2.0**53, 2.0**60, 1e-7, 5e-324]),
)
ints = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 10**30, -(2**80)]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, st.text(max_size=8), st.binary())
#: Document values DynamoDB can hold, as Python values (what ``to_item`` takes).
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(names, inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(names, values, max_size=8)

#: Texts of DynamoDB numbers and of things that are not quite numbers.
number_texts = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{1,25}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.from_regex(r"\A[+-]?\.[0-9]{1,5}\Z"),
    st.sampled_from(
        [
            "0",
            "-0",
            "3.0",
            "3.",
            "-0.0",
            "1E3",
            "1e3",
            "1e400",
            "-1e400",
            "1E-400",
            "1_000",
            " 12 ",
            "\u0661\u0662",
            "1.5e1",
            "NaN",
            "nan",
            "Infinity",
            "-inf",
            "",
            "e",
            ".",
            "0x10",
            "12abc",
            "9" * 40,
            "9" * 40 + ".0",
        ]
    ),
    st.text(alphabet="0123456789+-.eE_ ", max_size=8),
)
b64 = st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode())
raw_scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=6)),
    st.builds(lambda n: {"N": n}, number_texts),
    st.builds(lambda n: {"N": n}, st.sampled_from([5, 1.5, -2.0, None, True])),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda b: {"B": b}, b64),
    st.builds(lambda m: {"SS": m}, st.lists(st.text(max_size=4), min_size=1, max_size=3)),
    st.builds(lambda m: {"NS": m}, st.lists(number_texts, min_size=1, max_size=3)),
    st.builds(lambda m: {"BS": m}, st.lists(b64, min_size=1, max_size=3)),
)
#: Attribute values as they come in DynamoDB's JSON, now and then malformed.
raw_attrs = st.recursive(
    raw_scalars,
    lambda inner: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(names, inner, max_size=4)),
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=4)),
        st.just({}),
        st.builds(lambda a, b: {"S": a, "N": b}, st.text(max_size=2), number_texts),
        st.builds(lambda v: {"X": v}, st.text(max_size=2)),
    ),
    max_leaves=10,
)


# -- DynamoDB JSON to Python ------------------------------------------------------------


@PROFILE
@given(text=number_texts)
def test_numbers_parse_as_before(text: str) -> None:
    assert outcome(from_attr, {"N": text}) == outcome(ref_from_attr, {"N": text})


@PROFILE
@given(attr=raw_attrs)
def test_attribute_values_convert_as_before(attr: dict[str, Any]) -> None:
    assert outcome(from_attr, attr) == outcome(ref_from_attr, attr)
    item = {"a": attr, "b": {"S": "x"}, "c": {"L": [attr, {"N": "1"}]}}
    assert outcome(from_item, item) == outcome(ref_from_item, item)


@PROFILE
@given(document=documents)
def test_documents_round_trip_as_before(document: dict[str, Any]) -> None:
    item = to_item(document)
    got = from_item(item)
    assert typed(got) == typed(ref_from_item(item))
    assert typed(got) == typed(_as_dynamodb_keeps(document))


def _as_dynamodb_keeps(value: Any) -> Any:
    """``value`` as it comes back from DynamoDB: tuples as lists, bytearrays as bytes,
    and an integral float written without an exponent as an int."""
    if isinstance(value, dict):
        return {k: _as_dynamodb_keeps(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_dynamodb_keeps(v) for v in value]
    if isinstance(value, float) and value.is_integer() and "e" not in repr(value):
        return int(value)
    return value


def test_exact_values_come_back_exactly() -> None:
    document = {
        "big": 2**64 + 1,
        "negative_big": -(10**30),
        "integral_float": 3.0,
        "exponent_float": 1e22,
        "float": 0.1,
        "negative_zero": -0.0,
        "bytes": bytes(range(256)),
        "flag": False,
        "none": None,
        "nested": {"a": [1, {"b": b"\x00", "c": [True, 2.5]}], "d": {}},
        "tags": ["a", "b"],
    }
    got = from_item(to_item(document))
    assert typed(got) == typed({**document, "integral_float": 3, "negative_zero": 0})
    sets = {"ss": {"SS": ["b", "a"]}, "ns": {"NS": ["1", "2.5", "3.0"]}, "bs": {"BS": ["AAE="]}}
    assert typed(from_item(sets)) == typed(
        {"ss": ["b", "a"], "ns": [1, 2.5, 3], "bs": [b"\x00\x01"]}
    )


# -- index keys -------------------------------------------------------------------------

index_paths = st.one_of(
    st.sampled_from(["n", "done", "tags", "a.b", "a.b.c", "_ix", "_ix.x", "missing"]),
    st.tuples(st.sampled_from(["n", "done", "a.b"]), st.sampled_from(["title", "tags", "n"])),
)
specs = st.lists(index_paths, max_size=3).map(
    lambda paths: CollectionSpec(tuple(Index(f"i{k}", path) for k, path in enumerate(paths)))
)
index_values = st.one_of(
    scalars,
    st.lists(st.one_of(st.booleans(), st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(
        st.sampled_from(["b", "c", "x"]), st.one_of(scalars, st.booleans()), max_size=3
    ),
)
records = st.dictionaries(
    st.sampled_from(["id", "n", "done", "tags", "title", "a", "_ix", "_v", "z"]),
    index_values,
    max_size=8,
)


@PROFILE
@given(spec=specs, record=records)
def test_index_keys_as_before(spec: CollectionSpec, record: dict[str, Any]) -> None:
    before = typed(record)
    expected = typed(ref_with_index_keys(spec, record))
    assert typed(with_index_keys(spec, record)) == expected
    assert typed(record) == before  # with_index_keys leaves its argument alone
    mine = dict(record)
    assert set_index_keys(spec, mine) is mine
    assert typed(mine) == expected


# -- the store codec --------------------------------------------------------------------

codec_scalars = st.one_of(
    scalars,
    st.sampled_from([math.nan, math.inf, -math.inf, 2**53, -(2**53), 10**20, 1.0, -0.0]),
    st.binary(max_size=3).map(bytearray),
)
codec_values = st.recursive(
    codec_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(names, inner, max_size=4),
    ),
    max_leaves=14,
)
codec_records = st.dictionaries(names, codec_values, max_size=8)
#: Things a record may not hold: each makes encode refuse the record.
refused = st.one_of(
    st.sets(st.integers(), max_size=2),
    st.just(object()),
    st.just(1j),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.just({_codec.SIDECAR: 1}),
)


def _containers(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [id(value), *(i for v in value.values() for i in _containers(v))]
    if isinstance(value, list):
        return [id(value), *(i for v in value for i in _containers(v))]
    return []


@PROFILE
@given(record=codec_records)
def test_encode_as_before(record: dict[str, Any]) -> None:
    got = _codec.encode(record)
    assert typed(got) == typed(ref_encode(record))
    # A deep copy: no list or dict of the record is shared with what the store keeps.
    assert not set(_containers(got)) & set(_containers(record))
    decoded = _codec.decode(got)
    assert typed(decoded) == typed(_codec.decode(ref_encode(record)))


@PROFILE
@given(record=codec_records, bad=refused, at=st.integers(0, 8), nested=st.booleans())
def test_encode_refuses_as_before(record: dict[str, Any], bad: Any, at: int, nested: bool) -> None:
    fields = list(record.items())
    fields.insert(min(at, len(fields)), ("bad", [bad] if nested else bad))
    spoiled = dict(fields)
    if nested:  # a fault in a later field too: the same one must be reported first
        spoiled["later"] = {1: "x"}
    assert outcome(_codec.encode, spoiled, message=True) == outcome(
        ref_encode, spoiled, message=True
    )


# -- a pull -----------------------------------------------------------------------------

SCHEMA = AppSchema(
    1,
    {
        "docs": CollectionSpec(
            indexes=(Index("by_n", "n"), Index("by_flag", "flag"), Index("by_pair", ("n", "a.b")))
        ),
        "other": CollectionSpec(),
    },
)
APP = "app"
SCOPE = "u#eq"
TABLE = "pysync"


async def no_sleep(_: float) -> None:
    return None


def put(
    db: MemoryDynamo, k: int, document: dict[str, Any], raw: dict[str, Any], dead: bool
) -> None:
    """Write document ``k`` (of collection ``target(k)``) as the server would hold it."""
    collection, key = target(k)
    system: dict[str, Any] = {"_v": k + 1, "_m": f"m{k:04d}", "_hlc": f"{k:015d}-0-c", "_c": "c"}
    if dead:
        system["_del"] = True  # a tombstone
    item = {**to_item({**document, "id": key, **system}), **raw}
    item |= {"pk": {"S": SCOPE}, "sk": {"S": sort_key(APP, collection, key)}}
    db.handle("PutItem", {"TableName": TABLE, "Item": item})


def target(k: int) -> tuple[str, str | int]:
    return ("docs" if k % 3 else "other"), (k if k % 2 else f"d{k}")


def expected_records(images: dict[str, Any], seqs: dict[str, int]) -> dict[str, Any]:
    """The records the references make of the server's items (``images``, by sort key:
    what the pull read), by collection; ``seqs``: the ``_seq`` of each sort key."""
    records: dict[str, list[dict[str, Any]]] = {c: [] for c in SCHEMA.collections}
    for sk, item in images.items():
        parsed = parse_sort_key(sk, APP)
        if parsed is None:
            continue
        values = ref_from_item(item)
        system = {k: values.pop(k) for k in SYSTEM if k in values}
        if system.get("_del"):
            continue
        fields = {"_v": int(system["_v"]), "_m": system.get("_m"), "_seq": seqs[sk]}
        collection = parsed[0]
        records[collection].append(
            ref_with_index_keys(SCHEMA.collections[collection], {**values, **fields})
        )
    for found in records.values():
        found.sort(key=lambda r: (isinstance(r["id"], str), r["id"]))  # IndexedDB's key order
    return records


def table_images(db: MemoryDynamo) -> dict[str, Any]:
    """The app's items in the data table, by sort key (what a base sync reads)."""
    items = db.handle(
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :ns)",
            "ExpressionAttributeValues": {":p": {"S": SCOPE}, ":ns": {"S": f"{APP}/"}},
        },
    )["Items"]
    return {item["sk"]["S"]: item for item in items}


def changelog_images(db: MemoryDynamo, after: int) -> dict[str, tuple[int, Any]]:
    """The seq and the new image (``None``: deleted) of each sort key's last changelog
    entry after ``after`` (what a catch-up pull reads)."""
    entries = db.handle(
        "Query",
        {
            "TableName": f"{TABLE}_changes",
            "KeyConditionExpression": "pk = :p AND sk > :c",
            "ExpressionAttributeValues": {":p": {"S": SCOPE}, ":c": {"N": str(after)}},
        },
    )["Items"]
    return {e["key"]["S"]: (int(e["sk"]["N"]), e.get("item", {}).get("M")) for e in entries}


async def pulls_match(
    documents: list[dict[str, Any]], raw: list[dict[str, Any]], dead: list[bool]
) -> None:
    db = MemoryDynamo()
    count = len(documents)
    for k, document in enumerate(documents):
        put(db, k, document, raw[k % len(raw)] if raw else {}, dead[k % len(dead)])
    # Items the replica must pass over: another app's, and a key that is not a document's.
    for sk in ("other-app/docs#x", f"{APP}/no-hash"):
        db.handle("PutItem", {"TableName": TABLE, "Item": to_item({"pk": SCOPE, "sk": sk})})
    db.deliver()
    replica = await pysync.connect(APP, "eq", SCHEMA, platform=MemoryBrowser().tab())
    try:
        sync = Sync(replica, db.connection(), sleep=no_sleep)
        report = await sync.pull()
        assert report.base_sync
        cursor = await sync.puller.cursor()
        assert cursor is not None
        images = table_images(db)
        seqs = dict.fromkeys(images, cursor)
        await same_records(replica, expected_records(images, seqs))

        # Then the changelog's way: the documents change places, some go away.
        for k in range(count):
            if dead[(k + 1) % len(dead)] and k % 2:
                collection, key = target(k)
                db.handle(
                    "DeleteItem",
                    {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": SCOPE}, "sk": {"S": sort_key(APP, collection, key)}},
                    },
                )
            else:
                put(db, k, documents[(k + 1) % count], raw[k % len(raw)] if raw else {}, False)
        db.deliver()
        report = await sync.pull()
        assert not report.base_sync
        for sk, (seq, image) in changelog_images(db, cursor).items():
            if image is None:
                images.pop(sk, None)
            else:
                images[sk], seqs[sk] = image, seq
        await same_records(replica, expected_records(images, seqs))
    finally:
        replica.close()


async def same_records(replica: pysync.Replica, expected: dict[str, Any]) -> None:
    for collection, records in expected.items():
        assert typed(await replica.store.query(collection)) == typed(records)


#: Raw attributes a writer that bypasses pysync may leave (sets, numbers in any form).
well_formed_raw = st.dictionaries(
    st.sampled_from(["s", "n", "tags", "_seq", "_ix"]),
    st.one_of(
        st.builds(
            lambda m: {"SS": m}, st.lists(st.text(max_size=3), min_size=1, max_size=3, unique=True)
        ),
        st.builds(
            lambda m: {"NS": m},
            st.lists(
                st.sampled_from(["1", "2.5", "3.0", "1E3", "-0"]),
                min_size=1,
                max_size=3,
                unique=True,
            ),
        ),
        st.builds(
            lambda m: {"BS": m}, st.lists(b64.filter(bool), min_size=1, max_size=2, unique=True)
        ),
        st.builds(lambda n: {"N": n}, st.sampled_from(["3.0", "1e22", "12345678901234567890"])),
    ),
    max_size=3,
)
server_documents = st.dictionaries(
    st.sampled_from(["title", "n", "flag", "a", "tags", "score", "_seq", "_ix", "blob"]),
    st.one_of(values, st.dictionaries(st.sampled_from(["b", "c"]), scalars, max_size=2)),
    max_size=6,
)


@settings(PROFILE, max_examples=100)
@given(
    documents=st.lists(server_documents, min_size=1, max_size=12),
    raw=st.lists(well_formed_raw, max_size=3),
    dead=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_pulls_store_what_the_references_make_of_the_items(
    documents: list[dict[str, Any]], raw: list[dict[str, Any]], dead: list[bool]
) -> None:
    asyncio.run(pulls_match(documents, raw, dead))
