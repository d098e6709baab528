"""The demo page in real Chromium: it boots, the UI writes to IndexedDB, data survives reloads."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Demo


def add_through_ui(demo: Demo, *titles: str) -> None:
    page = demo.page
    for title in titles:
        before = page.locator("#todo-list li").count()
        page.fill("#new-todo", title)
        page.click("#add-todo")
        expect(page.locator("#todo-list li")).to_have_count(before + 1)


def test_demo_boots_and_manages_todos_through_the_ui(demo: Demo) -> None:
    demo.open()
    page = demo.page
    boot = page.evaluate("window.pysyncBoot")
    assert boot["python"].startswith("3.14")
    assert boot["pysync"]
    steps = boot["timings"]
    assert 0 < steps["pyodide"] <= steps["pysync"] <= steps["app"], steps
    expect(page.locator("#boot-status")).to_be_hidden()
    expect(page.locator("#storage-info")).to_have_text(
        "stored in IndexedDB database pysync-demo, 0 records"
    )

    add_through_ui(demo, "buy milk", "write docs")
    items = page.locator("#todo-list li")
    expect(items.locator(".title")).to_have_text(["buy milk", "write docs"])
    expect(page.locator("#todo-count")).to_have_text("2 of 2 todos left")
    expect(page.locator("#storage-info")).to_have_text(
        "stored in IndexedDB database pysync-demo, 2 records"
    )

    items.nth(0).locator("input[type=checkbox]").check()
    expect(items.nth(0)).to_have_class("done")
    expect(page.locator("#todo-count")).to_have_text("1 of 2 todos left")
    shot = demo.screenshot("demo")
    assert shot.stat().st_size > 0

    page.get_by_role("button", name="Delete write docs").click()
    expect(items).to_have_count(1)
    expect(page.locator("#storage-info")).to_have_text(
        "stored in IndexedDB database pysync-demo, 1 record"
    )
    # The UI state is what IndexedDB holds, read by a fresh query in Python.
    stored = demo.run(
        """
        import app
        [(t["title"], t["done"]) for t in await app.app.db.query("todos")]
        """
    )
    assert stored == [["buy milk", True]]
    assert demo.console_errors == []


def test_data_survives_a_reload(demo: Demo) -> None:
    demo.open()
    add_through_ui(demo, "one", "two", "three")
    demo.page.locator("#todo-list li").nth(1).locator("input[type=checkbox]").check()
    expect(demo.page.locator("#todo-list li.done")).to_have_count(1)
    demo.run(
        """
        import app
        await app.app.db.put_many(
            "todos",
            [{"id": f"bulk-{i:03}", "title": f"bulk {i}", "done": False, "created": 1e12 + i}
             for i in range(100)],
        )
        """
    )

    demo.reload()
    page = demo.page
    titles = page.locator("#todo-list li .title")
    expect(titles).to_have_count(103)
    assert titles.all_inner_texts()[:4] == ["one", "two", "three", "bulk 0"]
    expect(page.locator("#todo-list li.done .title")).to_have_text(["two"])
    expect(page.locator("#storage-info")).to_have_text(
        "stored in IndexedDB database pysync-demo, 103 records"
    )
    # Read back through a new connection of its own, not the app's.
    stored = demo.run(
        """
        import app, pysync
        db = await pysync.open_indexeddb(app.SCHEMA)
        try:
            todos = await db.query("todos", index="by_created")
        finally:
            db.close()
        {"count": len(todos), "done": [t["title"] for t in todos if t["done"]],
         "last": todos[-1]}
        """
    )
    assert stored["count"] == 103
    assert stored["done"] == ["two"]
    assert stored["last"] == {
        "id": "bulk-099",
        "title": "bulk 99",
        "done": False,
        "created": 1e12 + 99,
    }
    assert demo.console_errors == []
