"""The pysync demo: a task board written in Python, offline first, synced through DynamoDB.

``loader.js`` boots Pyodide, installs the pysync wheel, imports this module and
awaits :func:`main`. Everything here uses pysync's public API as an app would:

* sign-in: ``pysync dev``'s dev-only ``POST /dev/token`` mints a user's token
  (a real app gets it from its identity provider); the session is kept in
  ``localStorage`` so the app opens offline with the last user;
* two spaces, each a replica (``pysync.connect``) synced by a :class:`pysync.Sync`
  to one scope: "My board" (``u#<user>``, private) and "Team board" (``s#team``,
  shared by every user the dev stack signs in);
* the page is drawn from live queries (``Collection.watch``) and the replicas'
  :class:`pysync.Status`; edits write locally and the background sync
  (``Sync.start`` + ``Sync.listen``) pushes them and brings others' edits in;
* the conflicts panel reads ``Replica.conflicts()``, the rejected panel the
  outbox's rejected entries with ``Replica.retry``/``discard``.

The DOM is touched through ``js.document``; listeners are ``create_proxy``
objects kept in :class:`Listeners` and destroyed when the app closes. Lists use
event delegation, so re-rendering creates no proxies.
"""

from __future__ import annotations

import asyncio
import json
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import js
from pyodide.ffi import create_proxy, to_js

import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, PysyncError, Replica, Status, Sync

SCHEMA = AppSchema(1, {"lists": CollectionSpec(), "tasks": CollectionSpec()})
SESSION_KEY = "pysync-demo:session"
OFFLINE_KEY = "pysync-demo:work-offline"
#: Refresh the token this long before it expires.
REFRESH_MARGIN_MS = 5 * 60 * 1000
SHARED_SCOPE = "s#team"


@dataclass(frozen=True)
class SpaceSpec:
    """One board: the local app name (also its key namespace) and the scope it syncs."""

    key: str
    label: str
    app: str
    shared: bool


MINE = SpaceSpec("mine", "My board", "board", shared=False)
TEAM = SpaceSpec("team", "Team board", "board-team", shared=True)


# -- session -------------------------------------------------------------------


@dataclass
class Session:
    """The signed-in user and their token (a JWT the proxy verifies)."""

    user: str
    token: str
    scopes: list[str]
    expires_ms: int

    def save(self) -> None:
        js.localStorage.setItem(SESSION_KEY, json.dumps(self.__dict__))

    @classmethod
    def load(cls) -> Session | None:
        raw = js.localStorage.getItem(SESSION_KEY)
        try:
            return cls(**json.loads(raw)) if raw else None
        except (TypeError, ValueError):
            return None

    def current_token(self) -> str:
        """The token for the next request (the sync calls this each time)."""
        return self.token


async def sign_in(user: str) -> Session:
    """Ask the dev stack for ``user``'s token (``pysync dev`` only; see docs/demo.md)."""
    options = {
        "method": "POST",
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"user": user}),
    }
    try:
        response = await js.fetch(
            "/dev/token", to_js(options, dict_converter=js.Object.fromEntries)
        )
    except Exception as error:
        raise SignInError("sign-in needs the server: it is not reachable") from error
    body = json.loads(await response.text() or "{}")
    if not response.ok:
        raise SignInError(body.get("error") or f"sign-in refused: HTTP {response.status}")
    expires = int(js.Date.now()) + int(body["expires_in"]) * 1000
    return Session(body["user"], body["token"], list(body["scopes"]), expires)


class SignInError(Exception):
    """Sign-in failed; the message is for the page."""


# -- a space: one replica synced with one scope ----------------------------------


@dataclass
class Space:
    """A board: its replica, its sync, and what the page shows of it."""

    spec: SpaceSpec
    scope: str
    replica: Replica
    sync: Sync
    lists: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    async def add_list(self, name: str) -> None:
        order = max((lst.get("order", 0) for lst in self.lists), default=0) + 1
        await self.replica["lists"].add({"id": _new_id(), "name": name, "order": order})

    async def delete_list(self, list_id: str) -> None:
        """The list and its tasks, as one transaction (all or nothing, here and on the server)."""
        doomed = [t["id"] for t in self.tasks if t["list"] == list_id]
        for start in range(0, len(doomed) + 1, 99):  # a transaction changes at most 100
            async with self.replica.transaction() as tx:
                for task_id in doomed[start : start + 99]:
                    tx.delete("tasks", task_id)
                if start + 99 >= len(doomed):
                    tx.delete("lists", list_id)

    async def add_task(self, list_id: str, title: str) -> None:
        mine = [t for t in self.tasks if t["list"] == list_id]
        order = max((t.get("order", 0) for t in mine), default=0) + 1
        task = {"id": _new_id(), "list": list_id, "title": title, "done": False}
        await self.replica["tasks"].add({**task, "order": order, "votes": 0, "notes": ""})

    async def move_task(self, task_id: str, step: int) -> None:
        """Swap a task with its neighbour: both orders change in one transaction."""
        task = next(t for t in self.tasks if t["id"] == task_id)
        siblings = self.tasks_of(task["list"])
        i = next(i for i, t in enumerate(siblings) if t["id"] == task_id)
        j = i + step
        if 0 <= j < len(siblings):
            other = siblings[j]
            async with self.replica.transaction() as tx:
                tx.patch("tasks", task_id, {"order": other.get("order", 0)})
                tx.patch("tasks", other["id"], {"order": task.get("order", 0)})

    def tasks_of(self, list_id: str) -> list[dict[str, Any]]:
        mine = [t for t in self.tasks if t["list"] == list_id]
        return sorted(mine, key=lambda t: (t.get("order", 0), t["id"]))

    async def read_panels(self) -> None:
        """Re-read the recorded conflicts and the rejected changes."""
        self.conflicts = await self.replica.conflicts()
        self.rejected = [e for e in await self.replica.outbox() if e["state"] == "rejected"]


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


# -- DOM -----------------------------------------------------------------------


def element(tag: str, text: str | None = None, **attributes: str) -> Any:
    """A new DOM element; ``data_x`` attributes become ``data-x``, ``cls`` is ``class``."""
    node = js.document.createElement(tag)
    if text is not None:
        node.textContent = text
    for name, value in attributes.items():
        node.setAttribute("class" if name == "cls" else name.replace("_", "-"), value)
    return node


def button(text: str, action: str, label: str | None = None, **attributes: str) -> Any:
    node = element("button", text, type="button", data_action=action, **attributes)
    if label:
        node.setAttribute("aria-label", label)
    return node


def by_id(name: str) -> Any:
    return js.document.getElementById(name)


def data(node: Any, name: str) -> str | None:
    """The ``data-<name>`` attribute of ``node`` (``None`` when absent)."""
    # Pyodide turns JS null into ``jsnull``, not None: test the type.
    value = node.getAttribute(f"data-{name}") if node else None
    return value if isinstance(value, str) else None


def render_task(task: dict[str, Any], editing: bool) -> Any:
    title = str(task.get("title", ""))
    item = element("li", data_id=task["id"], cls="task done" if task.get("done") else "task")
    box = element("input", type="checkbox", data_action="toggle", cls="done-box")
    box.checked = bool(task.get("done"))
    box.setAttribute("aria-label", f"Done: {title}")
    if editing:
        form = element("form", cls="edit-form", data_id=task["id"])
        field_ = element("input", cls="edit-title", name="title", maxlength="500")
        field_.value = title
        field_.setAttribute("aria-label", "Title")
        notes = element("textarea", cls="edit-notes", name="notes", rows="2")
        notes.value = str(task.get("notes", ""))
        notes.setAttribute("aria-label", "Notes")
        save = element("button", "Save", type="submit", cls="save")
        cancel = button("Cancel", "cancel-edit")
        form.append(field_, notes, save, cancel)
        item.append(box, form)
        return item
    text = element("div", cls="task-text")
    text.append(element("span", title, cls="title"))
    if task.get("notes"):
        notes_text = str(task["notes"])
        short = notes_text if len(notes_text) <= 120 else notes_text[:117] + "…"
        text.append(element("span", short, cls="notes"))
    votes = button(f"▲ {task.get('votes', 0)}", "vote", f"Vote for {title}", cls="vote")
    tools = element("span", cls="tools")
    tools.append(
        votes,
        button("↑", "up", f"Move {title} up", cls="up"),
        button("↓", "down", f"Move {title} down", cls="down"),
        button("✎", "edit", f"Edit {title}", cls="edit"),
        button("✕", "delete", f"Delete {title}", cls="delete"),
    )
    item.append(box, text, tools)
    return item


def render_board(space: Space, editing: str | None) -> Any:
    board = element("div", cls="lists")
    for lst in sorted(space.lists, key=lambda x: (x.get("order", 0), x["id"])):
        name = str(lst.get("name", ""))
        column = element("section", cls="list", data_id=lst["id"])
        head = element("header")
        head.append(
            element("h3", name, cls="list-name"),
            button("✕", "delete-list", f"Delete list {name}", cls="delete-list"),
        )
        tasks = element("ul", cls="tasks")
        tasks.append(*[render_task(t, t["id"] == editing) for t in space.tasks_of(lst["id"])])
        form = element("form", cls="new-task", data_list=lst["id"], autocomplete="off")
        title = element("input", cls="new-task-title", name="title", maxlength="500")
        title.setAttribute("placeholder", "New task")
        title.setAttribute("aria-label", f"New task in {name}")
        title.required = True
        form.append(title, element("button", "Add", type="submit", cls="add-task"))
        column.append(head, tasks, form)
        board.append(column)
    if not space.lists:
        board.append(element("p", "No lists yet: add one above.", cls="empty"))
    return board


def _fields(doc: dict[str, Any] | None) -> str:
    if doc is None:
        return "(deleted)"
    shown = {k: v for k, v in doc.items() if k != "id"}
    text = json.dumps(shown, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "…"


def render_conflict(space: Space, conflict: dict[str, Any]) -> Any:
    item = element("li", cls="conflict", data_cid=conflict["cid"], data_space=space.spec.key)
    named = conflict.get("result") or conflict.get("local") or conflict.get("remote") or {}
    what = named.get("title") or named.get("name") or conflict["id"]
    title = f"{space.spec.label}: {conflict['collection'][:-1]} “{what}”"
    head = element("div", cls="conflict-head")
    head.append(
        element("strong", title),
        element("span", f"decided by {conflict.get('strategy')}", cls="strategy"),
        button("Dismiss", "dismiss", f"Dismiss conflict on {conflict['id']}", cls="dismiss"),
    )
    table = element("dl")
    for side in ("base", "local", "remote", "result"):
        table.append(element("dt", side), element("dd", _fields(conflict.get(side)), cls=side))
    item.append(head, table)
    return item


def render_rejected(space: Space, entry: dict[str, Any]) -> Any:
    item = element(
        "li",
        cls="rejected",
        data_mid=entry["mid"],
        data_space=space.spec.key,
        data_refused=str((entry.get("error") or {}).get("at", "")),  # new with each refusal
    )
    error = entry.get("error") or {}
    reason = f"{error.get('code', '?')}: {error.get('message', '')}"
    what = f"{space.spec.label}: {entry['op']} {entry['collection']} {entry['id']}"
    item.append(element("strong", what), element("span", reason, cls="reason"))
    if entry.get("unsure"):
        item.append(element("span", "(may have landed: a retry checks first)", cls="unsure"))
    item.append(button("Retry", "retry", cls="retry"), button("Discard", "discard", cls="discard"))
    return item


def _clock_time(ms: int) -> str:
    return str(js.Date.new(ms).toLocaleTimeString())


def describe_status(
    statuses: list[Status], work_offline: bool, time_of: Callable[[int], str] = _clock_time
) -> dict[str, str]:
    """The status bar's texts, for all spaces together."""
    online = all(s.online for s in statuses)
    net = "working offline" if work_offline else ("online" if online else "offline")
    progress = next((s.progress for s in statuses if s.progress), None)
    if progress is None and any(s.syncing for s in statuses):
        progress = "syncing"
    synced = [s.last_synced for s in statuses if s.last_synced is not None]
    never = not statuses or len(synced) < len(statuses)
    if progress and never:
        progress = f"first sync: {progress}"
    errors = [s.last_error for s in statuses if s.last_error]
    return {
        "net": net,
        "role": "leader tab" if statuses and statuses[0].leader else "follower tab",
        "pending": f"{sum(s.pending for s in statuses)} pending",
        "progress": progress or "idle",
        # The oldest of the spaces' last syncs: everything is at least that fresh.
        "synced": "never synced" if never else f"synced {time_of(min(synced))}",
        "realtime": "live" if statuses and all(s.realtime for s in statuses) else "not live",
        "error": errors[0] if errors else "",
    }


def _typed_tasks(board: Any) -> tuple[dict[str, str], str | None]:
    """What is typed in the new-task fields (by list), and which one has the focus."""
    typed, focused = {}, None
    for form in board.querySelectorAll("form.new-task"):
        field_ = form.elements.namedItem("title")
        typed[str(form.dataset.list)] = str(field_.value)
        if js.document.activeElement == field_:
            focused = str(form.dataset.list)
    return typed, focused


def _restore_typed_tasks(board: Any, state: tuple[dict[str, str], str | None]) -> None:
    """Put back what :func:`_typed_tasks` saw: a render never eats the user's typing."""
    typed, focused = state
    for form in board.querySelectorAll("form.new-task"):
        list_id = str(form.dataset.list)
        field_ = form.elements.namedItem("title")
        field_.value = typed.get(list_id, "")
        if list_id == focused:
            field_.focus()


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


class BoardApp:
    """Wires the page to the spaces: events run actions; data and status re-render."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.spaces: dict[str, Space] = {}
        self.current = MINE.key
        self.editing: str | None = None
        self.work_offline = js.localStorage.getItem(OFFLINE_KEY) == "1"
        self.listeners = Listeners()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stops: list[Callable[[], None]] = []
        self._render_soon: asyncio.Handle | None = None
        self._next_render = 0.0  # loop time before which the next drawing waits
        self._refresher: asyncio.Task[None] | None = None
        self._bind()

    # ---- events

    def _bind(self) -> None:
        add = self.listeners.add
        add(by_id("signin"), "click", self._on_signin_click)
        add(by_id("signin-form"), "submit", self._on_signin_submit)
        add(by_id("signout"), "click", lambda _: self.run(self.sign_out()))
        add(by_id("work-offline"), "change", self._on_work_offline)
        add(by_id("space-tabs"), "click", self._on_tab)
        add(by_id("new-list-form"), "submit", self._on_new_list)
        board = by_id("board")
        add(board, "click", self._on_board_click)
        add(board, "change", self._on_board_change)
        add(board, "submit", self._on_board_submit)
        add(board, "keydown", self._on_board_key)
        add(by_id("panels"), "click", self._on_panel_click)

    def _on_signin_click(self, event: Any) -> None:
        user = data(event.target, "user")
        if user:
            self.run(self.sign_in(str(user)))

    def _on_signin_submit(self, event: Any) -> None:
        event.preventDefault()
        name = str(by_id("signin-name").value).strip().lower()
        if name:
            self.run(self.sign_in(name))

    def _on_work_offline(self, event: Any) -> None:
        self.set_work_offline(bool(event.target.checked))

    def _on_tab(self, event: Any) -> None:
        key = data(event.target, "space")
        if key and key in self.spaces:
            self.current = str(key)
            self.editing = None
            self.render()

    def _on_new_list(self, event: Any) -> None:
        event.preventDefault()
        field_ = by_id("new-list-name")
        name = str(field_.value).strip()
        if name and self.space is not None:
            field_.value = ""
            self.run(self.space.add_list(name))

    def _task_id(self, event: Any) -> str:
        return str(data(event.target.closest("li"), "id"))

    def _on_board_click(self, event: Any) -> None:
        action, space = data(event.target, "action"), self.space
        if not action or space is None:
            return
        if action == "delete-list":
            self.run(space.delete_list(str(data(event.target.closest("section"), "id"))))
            return
        if action == "cancel-edit":
            self.editing = None
            self.render()
            return
        if action not in ("vote", "up", "down", "edit", "delete"):
            return
        task_id = self._task_id(event)
        tasks = space.replica["tasks"]
        if action == "vote":
            self.run(tasks.increment(task_id, "votes"))
        elif action in ("up", "down"):
            self.run(space.move_task(task_id, -1 if action == "up" else 1))
        elif action == "edit":
            self.editing = task_id
            self.render()
            asyncio.get_event_loop().call_soon(self._focus_edit)  # after the render
        else:
            self.run(tasks.delete(task_id))

    def _focus_edit(self) -> None:
        field_ = js.document.querySelector(".edit-form .edit-title")
        if field_:
            field_.focus()

    def _on_board_change(self, event: Any) -> None:
        if data(event.target, "action") == "toggle" and self.space is not None:
            done = bool(event.target.checked)
            self.run(self.space.replica["tasks"].patch(self._task_id(event), {"done": done}))

    def _on_board_submit(self, event: Any) -> None:
        event.preventDefault()
        form, space = event.target, self.space
        if space is None:
            return
        if form.classList.contains("new-task"):
            title = str(form.elements.namedItem("title").value).strip()
            if title:
                form.reset()
                self.run(space.add_task(str(form.dataset.list), title))
        elif form.classList.contains("edit-form"):
            task_id = str(form.dataset.id)
            task = next((t for t in space.tasks if t["id"] == task_id), {})
            edited = {
                "title": str(form.elements.namedItem("title").value).strip(),
                "notes": str(form.elements.namedItem("notes").value),
            }
            # Only what the user changed: an untouched field is no edit (and no conflict).
            changes = {k: v for k, v in edited.items() if v != task.get(k)}
            self.editing = None
            if changes:
                self.run(space.replica["tasks"].patch(task_id, changes))
            else:
                self.render()

    def _on_board_key(self, event: Any) -> None:
        if event.key == "Escape" and self.editing is not None:
            self.editing = None
            self.render()

    def _on_panel_click(self, event: Any) -> None:
        action = data(event.target, "action")
        if action == "dismiss-all":
            for space in self.spaces.values():
                self.run(space.replica.dismiss_conflict())
            return
        item = event.target.closest("li")
        if not action or not item:
            return
        space = self.spaces.get(str(item.dataset.space))
        if space is None:
            return
        replica = space.replica
        if action == "dismiss":
            self.run(replica.dismiss_conflict(str(item.dataset.cid)))
        elif action == "retry":
            self.run(replica.retry(str(item.dataset.mid)))
        elif action == "discard":
            self.run(replica.discard(str(item.dataset.mid)))

    # ---- actions

    @property
    def space(self) -> Space | None:
        return self.spaces.get(self.current)

    def run(self, action: Awaitable[object]) -> None:
        """Run ``action`` in the background; a failure shows in the page."""

        async def act() -> None:
            try:
                await action
            except PysyncError as error:
                self.show_error(f"Could not save: {type(error).__name__}: {error}")
            except SignInError as error:
                self.show_error(str(error))
            except Exception as error:
                traceback.print_exc()  # the full traceback in the console
                self.show_error(f"Unexpected error: {type(error).__name__}: {error}")
            else:
                self.show_error(None)

        task = asyncio.ensure_future(act())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every action started so far has finished (for tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def show_error(self, message: str | None) -> None:
        banner = by_id("app-error")
        banner.textContent = message or ""
        banner.hidden = message is None

    async def sign_in(self, user: str) -> None:
        if self.session is not None:
            await self.sign_out()
            if self.session is not None:  # the user kept the session
                return
        session = await sign_in(user)
        session.save()
        await self.open(session)

    async def open(self, session: Session) -> None:
        """Open the user's spaces (offline too: the replicas are local) and start syncing."""
        self.session = session
        specs = [MINE, *([TEAM] if SHARED_SCOPE in session.scopes else [])]
        for spec in specs:
            scope = SHARED_SCOPE if spec.shared else f"u#{session.user}"
            replica = await pysync.connect(spec.app, session.user, SCHEMA)
            remote = HttpRemote(js.location.origin + "/dynamodb", session.current_token)
            space = Space(spec, scope, replica, Sync(replica, remote, scope=scope))
            self.spaces[spec.key] = space
            self._watch(space)
            await space.read_panels()
        self.current = MINE.key
        if not self.work_offline:
            self._start_syncing()
        self.render()

    def _watch(self, space: Space) -> None:
        def lists(docs: list[dict[str, Any]]) -> None:
            space.lists = docs
            self.render()

        def tasks(docs: list[dict[str, Any]]) -> None:
            space.tasks = docs
            self.render()

        counts = (space.replica.status.conflicts, space.replica.status.rejected)

        def status(now: Status) -> None:
            nonlocal counts
            if (now.conflicts, now.rejected) != counts:
                counts = (now.conflicts, now.rejected)
                self.run(self._reread_panels(space))
            self.render_status()

        subscriptions = [space.replica["lists"].watch(lists), space.replica["tasks"].watch(tasks)]
        self._stops += [s.cancel for s in subscriptions]
        self._stops.append(space.replica.on_status(status))

    async def _reread_panels(self, space: Space) -> None:
        await space.read_panels()
        self.render()

    def _start_syncing(self) -> None:
        assert self.session is not None
        for space in self.spaces.values():
            space.sync.start()
            space.sync.listen(js.location.origin + "/changes", self.session.current_token)
        if self._refresher is None:
            self._refresher = asyncio.ensure_future(self._refresh_token())

    def _stop_syncing(self) -> None:
        for space in self.spaces.values():
            space.sync.stop()
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def _refresh_token(self) -> None:
        """Mint a fresh token before the current one expires (the dev stack's sign-in)."""
        while self.session is not None:
            wait_ms = self.session.expires_ms - REFRESH_MARGIN_MS - int(js.Date.now())
            await asyncio.sleep(max(wait_ms / 1000, 5.0))
            try:
                fresh = await sign_in(self.session.user)
            except Exception as error:  # offline: the sync reports the 401 when it matters
                js.console.warn(f"token refresh failed: {error}")
                continue
            self.session.token, self.session.expires_ms = fresh.token, fresh.expires_ms
            self.session.save()

    def set_work_offline(self, on: bool) -> None:
        """Stop (or restart) every request the app makes: sync, realtime, token refresh."""
        self.work_offline = on
        js.localStorage.setItem(OFFLINE_KEY, "1" if on else "0")
        if self.session is not None:
            (self._stop_syncing if on else self._start_syncing)()
        self.render_status()

    async def sign_out(self) -> None:
        """Sign out; changes not yet synced stay on this device unless the user says so."""
        if self.session is None:
            return
        statuses = [space.replica.status for space in self.spaces.values()]
        waiting = sum(status.pending + status.rejected for status in statuses)
        if waiting and not js.confirm(
            f"{waiting} change(s) by {self.session.user} have not reached the server yet. "
            "They stay on this device and sync at the next sign-in. Sign out?"
        ):
            return
        self.close_session()
        js.localStorage.removeItem(SESSION_KEY)
        self.render()

    def close_session(self) -> None:
        self._stop_syncing()
        for stop in self._stops:
            stop()
        self._stops.clear()
        for space in self.spaces.values():
            space.replica.close()
        self.spaces.clear()
        self.session = None
        self.editing = None

    # ---- rendering

    def render(self) -> None:
        """Draw the page soon (once for a burst of changes).

        A board of thousands of tasks takes a while to draw; while changes keep coming
        (a base sync applies a page at a time) the next drawing waits as long as the last
        one took, so the page spends at most half its time drawing and stays responsive.
        """
        if self._render_soon is None:
            loop = asyncio.get_event_loop()
            wait = max(0.0, self._next_render - loop.time())
            self._render_soon = loop.call_later(wait, self._render_now)

    def _render_now(self) -> None:
        loop = asyncio.get_event_loop()
        started = loop.time()
        try:
            self._draw()
        finally:
            self._render_soon = None
            self._next_render = loop.time() + (loop.time() - started)

    def _draw(self) -> None:
        signed_in = self.session is not None
        by_id("signin-screen").hidden = signed_in
        by_id("board-screen").hidden = not signed_in
        by_id("signout").hidden = not signed_in
        by_id("user").textContent = self.session.user if self.session else ""
        self.render_status()
        space = self.space
        if space is None:
            return
        for tab in js.document.querySelectorAll("#space-tabs button"):
            key = str(tab.dataset.space)
            tab.hidden = key not in self.spaces
            tab.setAttribute("aria-selected", "true" if key == self.current else "false")
        by_id("space-scope").textContent = f"{space.spec.label}: scope {space.scope}" + (
            ", shared with every signed-in user" if space.spec.shared else ", only you"
        )
        board = by_id("board")
        if self.editing is None or not js.document.querySelector(".edit-form"):
            typed = _typed_tasks(board)
            board.replaceChildren(render_board(space, self.editing))
            _restore_typed_tasks(board, typed)
        spaces = list(self.spaces.values())
        conflicts = [render_conflict(s, c) for s in spaces for c in s.conflicts]
        rejected = [render_rejected(s, e) for s in spaces for e in s.rejected]
        by_id("conflict-list").replaceChildren(*conflicts)
        by_id("rejected-list").replaceChildren(*rejected)
        by_id("conflicts-title").textContent = f"Conflicts ({len(conflicts)})"
        by_id("rejected-title").textContent = f"Rejected changes ({len(rejected)})"
        by_id("dismiss-all").hidden = not conflicts

    def render_status(self) -> None:
        statuses = [s.replica.status for s in self.spaces.values()]
        texts = describe_status(statuses, self.work_offline)
        for name, text in texts.items():
            by_id(f"status-{name}").textContent = text
        by_id("status-error").hidden = not texts["error"]
        by_id("work-offline").checked = self.work_offline
        js.document.body.dataset.net = texts["net"].replace(" ", "-")

    def close(self) -> None:
        self.close_session()
        self.listeners.close()


app: BoardApp | None = None


async def main() -> BoardApp:
    """Start the app: open the remembered user's boards, or show sign-in. Called by loader.js."""
    global app
    if app is not None:
        app.close()
    app = BoardApp()
    session = Session.load()
    if session is not None:
        await app.open(session)
    app.render()
    by_id("app").hidden = False
    return app
