"""The pysync demo: an offline-first todo list written in Python, kept in IndexedDB.

``loader.js`` boots Pyodide, installs the pysync wheel, imports this module and
awaits :func:`main`. The page is drawn by :func:`render` from a :class:`View`
(plain data read from the store), never patched piecemeal: a change writes to
the store, reads the view back and renders it. Later features (sync status,
conflicts) add fields to :class:`View` and a section to :func:`render`.

The DOM is touched through ``js.document``; each event listener is one
``create_proxy`` kept in :class:`Listeners` and destroyed when the app closes.
Lists use event delegation, so re-rendering creates no proxies.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import js
from pyodide.ffi import create_proxy

from pysync import Database, Index, PysyncError, Schema, StoreSchema, Transaction, open_indexeddb

TODOS = "todos"

SCHEMA = Schema(
    "pysync-demo",
    1,
    # Booleans are not IndexedDB keys, so "done" is not indexed; creation time is.
    (StoreSchema(TODOS, indexes=(Index("by_created", "created"),)),),
)


# -- data ----------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """Everything the page shows, read from the store in one go."""

    todos: list[dict[str, Any]]
    database: str
    records: int
    error: str | None = None

    @property
    def open_count(self) -> int:
        return sum(1 for todo in self.todos if not todo["done"])


async def read_view(db: Database, error: str | None = None) -> View:
    """The current view: the todos in creation order, and the record count."""

    def body(tx: Transaction) -> tuple[Any, list[Any]]:
        todos = tx.query(TODOS, index="by_created")
        counts = [tx.count(store.name) for store in db.schema.stores]
        return todos, counts

    todos, counts = await db.run([s.name for s in db.schema.stores], "readonly", body)
    return View(todos.result, db.name, sum(c.result for c in counts), error)


_last_created = 0.0


def _created() -> float:
    """Now, in seconds, strictly after the previous call (it orders the list)."""
    global _last_created
    _last_created = max(time.time(), _last_created + 1e-6)
    return _last_created


async def add_todo(db: Database, title: str) -> dict[str, Any]:
    todo = {"id": uuid.uuid4().hex, "title": title, "done": False, "created": _created()}
    await db.put(TODOS, todo)
    return todo


async def toggle_todo(db: Database, todo_id: str) -> None:
    """Flip ``done``: the read and the write are one transaction."""

    def body(tx: Transaction) -> None:
        def flip(todo: dict[str, Any] | None) -> None:
            if todo is not None:
                tx.put(TODOS, {**todo, "done": not todo["done"]})

        tx.get(TODOS, todo_id).then(flip)

    await db.run(TODOS, "readwrite", body)


async def delete_todo(db: Database, todo_id: str) -> None:
    await db.delete(TODOS, todo_id)


# -- DOM -----------------------------------------------------------------------


def element(tag: str, text: str | None = None, **attributes: str) -> Any:
    """A new DOM element; ``data_x`` attributes become ``data-x``."""
    node = js.document.createElement(tag)
    if text is not None:
        node.textContent = text
    for name, value in attributes.items():
        node.setAttribute(name.replace("_", "-"), value)
    return node


def render_todo(todo: dict[str, Any]) -> Any:
    item = element("li", data_id=todo["id"], **{"class": "done" if todo["done"] else "open"})
    label = element("label")
    checkbox = element("input", type="checkbox", data_action="toggle")
    checkbox.checked = todo["done"]
    label.append(checkbox, element("span", todo["title"], **{"class": "title"}))
    delete = element("button", "✕", type="button", data_action="delete")
    delete.setAttribute("aria-label", f"Delete {todo['title']}")
    item.append(label, delete)
    return item


def render(root: Any, view: View) -> None:
    """Draw ``view`` into the page (idempotent: the same view gives the same DOM)."""
    doc = js.document
    doc.getElementById("todo-list").replaceChildren(*[render_todo(t) for t in view.todos])
    total = len(view.todos)
    doc.getElementById(
        "todo-count"
    ).textContent = f"{view.open_count} of {total} {'todo' if total == 1 else 'todos'} left"
    doc.getElementById("storage-info").textContent = (
        f"stored in IndexedDB database {view.database}, "
        f"{view.records} {'record' if view.records == 1 else 'records'}"
    )
    banner = doc.getElementById("app-error")
    banner.textContent = view.error or ""
    banner.hidden = view.error is None
    root.dataset.todos = str(total)
    root.hidden = False


class Listeners:
    """DOM event listeners backed by proxies that are destroyed on :meth:`close`."""

    def __init__(self) -> None:
        self._bound: list[tuple[Any, str, Any]] = []

    def add(self, target: Any, event: str, handler: Callable[[Any], None]) -> None:
        proxy = create_proxy(handler)
        target.addEventListener(event, proxy)
        self._bound.append((target, event, proxy))

    def close(self) -> None:
        for target, event, proxy in self._bound:
            target.removeEventListener(event, proxy)
            proxy.destroy()
        self._bound.clear()


# -- the app -------------------------------------------------------------------


class TodoApp:
    """Wires the page to the store: events run actions, actions end in a re-render."""

    def __init__(self, db: Database, root: Any) -> None:
        self.db = db
        self.root = root
        self.listeners = Listeners()
        self._tasks: set[asyncio.Task[None]] = set()
        self._renders = 0
        doc = js.document
        self.listeners.add(doc.getElementById("new-todo-form"), "submit", self._on_submit)
        todo_list = doc.getElementById("todo-list")
        self.listeners.add(todo_list, "change", self._on_list_event)
        self.listeners.add(todo_list, "click", self._on_list_event)

    async def refresh(self, error: str | None = None) -> None:
        """Read the view from the store and render it, unless a newer refresh started."""
        self._renders += 1
        ticket = self._renders
        view = await read_view(self.db, error)
        if ticket == self._renders:
            render(self.root, view)

    def run(self, action: Awaitable[object]) -> None:
        """Run ``action`` in the background, then re-render; a failure shows in the page."""

        async def act() -> None:
            try:
                await action
            except PysyncError as error:
                await self.refresh(f"Could not save: {error}")
            except Exception as error:
                traceback.print_exc()  # the full traceback in the console
                await self.refresh(f"Unexpected error: {type(error).__name__}: {error}")
            else:
                await self.refresh()

        task = asyncio.ensure_future(act())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every action started so far has finished (for tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_submit(self, event: Any) -> None:
        event.preventDefault()
        field = js.document.getElementById("new-todo")
        title = str(field.value).strip()
        if title:
            field.value = ""
            self.run(add_todo(self.db, title))

    def _on_list_event(self, event: Any) -> None:
        action = event.target.dataset.action
        wanted = {"change": "toggle", "click": "delete"}[event.type]
        if action != wanted:
            return
        todo_id = event.target.closest("li").dataset.id
        self.run((toggle_todo if action == "toggle" else delete_todo)(self.db, todo_id))

    def close(self) -> None:
        self.listeners.close()
        self.db.close()


app: TodoApp | None = None


async def main() -> TodoApp:
    """Open the store, render the first view, start listening. Called by loader.js."""
    global app
    if app is not None:
        app.close()
    db = await open_indexeddb(SCHEMA)
    app = TodoApp(db, js.document.getElementById("app"))
    await app.refresh()
    return app
