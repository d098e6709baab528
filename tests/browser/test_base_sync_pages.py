"""A base sync's pages made into records in JavaScript store what the Python path stores.

In the page, ``pysync._sync._images`` converts each Query page in JavaScript and puts
the records without entering Python; the Python path stays the reference (and takes
any page with an item it does not convert exactly). Here the same pages go both
ways into two IndexedDB replicas in Chromium, and every stored record, every index
and every tombstone must come out the same.
"""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["pysync"])
async def test_pages_made_in_javascript_store_what_the_python_path_stores(selenium):
    import json
    import random

    import js

    import pysync
    from pysync import AppSchema, CollectionSpec, Index
    from pysync._sync import _images
    from pysync._sync._pull import Puller, PullReport

    rng = random.Random(12)
    schema = AppSchema(
        1,
        {
            "items": CollectionSpec(
                indexes=(
                    Index("by_n", "n"),
                    Index("by_done", "done"),
                    Index("by_tag", "meta.tag"),
                    Index("by_pair", ("n", "title")),
                    Index("by_tags", "tags", multi_entry=True),
                )
            ),
            "other": CollectionSpec(),
            "constructor": CollectionSpec(),
        },
    )
    ns = "pages"

    def text():
        return "".join(rng.choice("ab é😀\u00a0#/.\\\"'") for _ in range(rng.randrange(0, 8)))

    def number():
        return rng.choice(
            [
                str(rng.randrange(-1000, 1000)),
                str(rng.randrange(10**14, 10**15)),
                f"{rng.uniform(-1e6, 1e6):.{rng.randrange(1, 9)}f}",
                "-0",
                "0.0",
                "3.000",
                "-12.5",
                "0.000001",
            ]
        )

    def value(depth=0):
        kind = rng.choice(["S", "N", "BOOL", "NULL", "L", "M", "SS", "NS"][: 8 if depth < 2 else 4])
        if kind == "S":
            return {"S": text()}
        if kind == "N":
            return {"N": number()}
        if kind == "BOOL":
            return {"BOOL": rng.random() < 0.5}
        if kind == "NULL":
            return {"NULL": True}
        if kind == "L":
            return {"L": [value(depth + 1) for _ in range(rng.randrange(0, 4))]}
        if kind == "SS":
            return {"SS": [text() + str(i) for i in range(rng.randrange(1, 4))]}
        if kind == "NS":
            return {"NS": [str(i) for i in range(rng.randrange(1, 4))]}
        names = ["a", "10", "2", "x.y", "", "constructor", "toString", "_ix", "é"]
        return {"M": {rng.choice(names): value(depth + 1) for _ in range(rng.randrange(0, 4))}}

    def item(collection, key, **extra):
        raw = f"n:{key}" if isinstance(key, int) else key
        attrs = {
            "pk": {"S": "u#pages"},
            "sk": {"S": f"{ns}/{collection}#{raw}"},
            "id": {"N": str(key)} if isinstance(key, int) else {"S": key},
            "_c": {"S": "c"},
            "_ttl": {"N": "1800000000"},
        }
        if rng.random() < 0.9:
            attrs["_v"] = {"N": str(rng.randrange(1, 50))}
        if rng.random() < 0.9:
            attrs["_m"] = {"S": f"m{rng.randrange(1000)}"}
        if rng.random() < 0.9:
            attrs["_hlc"] = {"S": f"{rng.randrange(10**12):013d}-0000-dev"}
        for name in ["title", "n", "done", "meta", "tags", "10", "note", "_ix"]:
            if rng.random() < 0.6:
                attrs[name] = value()
        if rng.random() < 0.5:
            attrs["done"] = {"BOOL": rng.random() < 0.5}
        if rng.random() < 0.5:
            attrs["meta"] = {"M": {"tag": value(2)}}
        if rng.random() < 0.1 and not extra:  # an odd item stays alive: it is what's odd
            attrs["_del"] = {"BOOL": True}
        attrs.update(extra)
        return attrs

    def page(n, start):
        out = []
        for i in range(start, start + n):
            collection = rng.choice(["items", "items", "items", "other", "ghost", "constructor"])
            out.append(item(collection, i if rng.random() < 0.2 else f"k{i:05d}"))
        return out

    # A page of plain items of all kinds (made in JavaScript), and pages that each
    # hold one item the Python path must take.
    plain = page(150, 0)
    plain.append({"pk": {"S": "u#pages"}, "sk": {"S": f"{ns}/items"}, "id": {"S": "nohash"}})
    plain.append({"pk": {"S": "u#pages"}, "sk": {"S": "other-app/items#x"}, "id": {"S": "x"}})
    odd = [
        {"raw": {"B": "AAE="}},
        {"big": {"N": "12345678901234567"}},
        {"exp": {"N": "1e3"}},
        {"__proto__": {"S": "x"}},
        {"_v": {"S": "1"}},
        {"_hlc": {"N": "5"}},
        {"_del": {"S": "yes"}},
        {"id": {"N": "1.5"}},
        {"set": {"BS": ["AAE="]}},
    ]
    pages = [plain] + [
        [*page(20, 1000 + 100 * i), item("items", f"odd{i}", **o)] for i, o in enumerate(odd)
    ]

    async def replica(name):
        await pysync.delete_indexeddb(f"pysync:{name}:u1")
        db = await pysync.connect(name, "u1", schema)
        return db, Puller(db, None, "table", "u#pages", ns)

    js_db, js_puller = await replica("pages-js")
    py_db, py_puller = await replica("pages-py")
    # What the tombstones will delete: their items, alive, stored both ways first.
    doomed = [{k: v for k, v in i.items() if k != "_del"} for p in pages for i in p if "_del" in i]
    assert len(doomed) > 5
    for puller in (js_puller, py_puller):
        changes = await puller._page_changes(doomed, 6, set())
        await puller.apply(changes, PullReport(), cursor=None, force=True, observe=False)
    prefix = f"{ns}/"
    specs = _images.specs(schema, js_db.store.schema)
    made_in_js = []
    js_seen, py_seen, js_latest, py_latest = set(), set(), "", ""
    for items in pages:
        body = json.dumps({"Items": items, "Count": len(items)})
        converted = _images.convert(js.JSON.parse(body), prefix, specs, 7)
        made_in_js.append(isinstance(converted, _images.Page))
        if isinstance(converted, _images.Page):
            changes = js_puller._staged_changes(converted, 7, js_seen)
            records = converted.records
            js_latest = max(js_latest, converted.hlc)
        else:
            assert converted == json.loads(body)
            changes = await js_puller._page_changes(converted["Items"], 7, js_seen)
            records = None
            js_latest = max([js_latest, *(c.hlc for c in changes)])
        await js_puller.apply(
            changes, PullReport(), cursor=None, force=True, observe=False, images=records
        )
        changes = await py_puller._page_changes(items, 7, py_seen)
        py_latest = max([py_latest, *(c.hlc for c in changes)])
        await py_puller.apply(changes, PullReport(), cursor=None, force=True, observe=False)

    assert made_in_js == [True] + [False] * len(odd), str(made_in_js)
    # An item the Python path refuses goes there too, to be refused the same way.
    refused = json.dumps({"Items": [item("items", "r", __pysync_types__={"S": "x"})]})
    assert isinstance(_images.convert(js.JSON.parse(refused), prefix, specs, 7), dict)
    assert js_seen == py_seen
    assert len(py_seen) > 200
    assert js_latest == py_latest != ""
    for collection in ["items", "other", "constructor"]:
        js_records = await js_db.store.query(collection)
        py_records = await py_db.store.query(collection)
        assert repr(js_records) == repr(py_records), collection
        assert len(py_records) > 10
    for index in ["by_n", "by_done", "by_tag", "by_pair", "by_tags"]:
        js_ids = [r["id"] for r in await js_db.store.query("items", index=index)]
        py_ids = [r["id"] for r in await py_db.store.query("items", index=index)]
        assert js_ids == py_ids, index
    for db in (js_db, py_db):  # the tombstones deleted what was there
        for doc in doomed:
            collection = doc["sk"]["S"].split("/")[1].split("#")[0]
            if collection != "ghost":
                key = int(doc["id"]["N"]) if "N" in doc["id"] else doc["id"]["S"]
                assert await db.store.get(collection, key) is None
    for db in (js_db, py_db):
        db.close()
    for name in ("pages-js", "pages-py"):
        await pysync.delete_indexeddb(f"pysync:{name}:u1")
