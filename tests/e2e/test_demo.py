"""The demo app driven as a person would: clicks and typing in real Chromium, on the dev stack.

Every test signs in a user of its own (``POST /dev/token`` through the sign-in
form), so tests never see each other's private boards; the team board (scope
``s#team``) is shared by all, so tests name their team lists uniquely.
Screenshots land in test-results/; with ``PYSYNC_UPDATE_SCREENSHOTS=1`` they
are also copied to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests._browser_config import ROOT, config

from .conftest import OUTPUT_DIR, Demo, DemoServer, new_demo

PHONE = {"width": 390, "height": 844}
SCREENSHOTS = ROOT / "docs" / "screenshots"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


class Board:
    """The demo page of one device, with the actions a person takes."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.page: Page = demo.page

    def open(self) -> Board:
        self.demo.open()
        return self

    def sign_in(self, user: str) -> None:
        self.page.fill("#signin-name", user)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        expect(self.page.locator("#user")).to_have_text(user)
        expect(self.page.locator("#board-screen")).to_be_visible()

    def tab(self, label: str) -> None:
        self.page.get_by_role("tab", name=label).click()
        expect(self.page.get_by_role("tab", name=label)).to_have_attribute("aria-selected", "true")

    def add_list(self, name: str) -> Locator:
        self.page.fill("#new-list-name", name)
        self.page.click("#add-list")
        column = self.list(name)
        expect(column).to_have_count(1)
        return column

    def list(self, name: str) -> Locator:
        return self.page.locator("section.list").filter(
            has=self.page.locator("h3.list-name", has_text=re.compile(f"^{re.escape(name)}$"))
        )

    def add_task(self, list_name: str, title: str) -> Locator:
        column = self.list(list_name)
        column.get_by_label(f"New task in {list_name}").fill(title)
        column.get_by_role("button", name="Add").click()
        task = self.task(title, list_name)
        expect(task).to_have_count(1)
        return task

    def task(self, title: str, list_name: str | None = None) -> Locator:
        where = self.list(list_name) if list_name else self.page
        return where.locator("li.task").filter(
            has=self.page.locator(".title", has_text=re.compile(f"^{re.escape(title)}$"))
        )

    def edit(self, title: str, new_title: str | None = None, notes: str | None = None) -> None:
        self.page.get_by_role("button", name=f"Edit {title}").click()
        form = self.page.locator("form.edit-form")
        if new_title is not None:
            form.get_by_label("Title").fill(new_title)
        if notes is not None:
            form.get_by_label("Notes").fill(notes)
        form.get_by_role("button", name="Save").click()
        expect(form).to_have_count(0)

    def vote(self, title: str, list_name: str | None = None) -> None:
        self.task(title, list_name).get_by_role("button", name=f"Vote for {title}").click()

    def status(self, name: str) -> Locator:
        return self.page.locator(f"#status-{name}")

    def synced(self) -> None:
        """Wait until nothing is pending and a sync has completed."""
        expect(self.status("pending")).to_have_text("0 pending")
        expect(self.status("synced")).to_have_text(re.compile("^synced "))

    def shoot(self, name: str) -> Path:
        path = self.demo.screenshot(name)
        if os.environ.get("PYSYNC_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SCREENSHOTS / path.name)
        return path


def expected_refusals(board: Board, status: int) -> None:
    """Chromium logs each refused request as a console error: drop the expected ones."""
    errors = board.demo.console_errors
    errors[:] = [e for e in errors if f"status of {status} " not in e]


def expected_network_failures(board: Board) -> None:
    """Drop the console errors of requests made while the network or server was gone."""
    errors = board.demo.console_errors
    errors[:] = [e for e in errors if "net::ERR_" not in e]


@pytest.fixture
def devices(browser: Browser, server_url: str) -> Iterator[list[Board]]:
    """Fresh devices (browser contexts, so separate IndexedDB) on the demo server."""
    opened: list[Demo] = []

    def make(viewport: dict[str, int] = config.VIEWPORT) -> Board:
        demo = new_demo(browser, server_url, viewport)
        demo.page.on(
            "response",
            lambda r: r.status >= 400 and demo.console_log.append(f"HTTP {r.status} {r.url}"),
        )
        opened.append(demo)
        return Board(demo).open()

    boards: list[Board] = []
    boards.append(make())
    boards.append(make())
    try:
        yield boards
    finally:
        for demo in opened:
            demo.context.close()
    for demo in opened:
        assert demo.console_errors == [], (demo.console_errors, demo.console_log[-20:])


def test_two_devices_edit_offline_reload_and_converge_with_the_merge_shown(
    devices: list[Board],
) -> None:
    a, b = devices
    user = unique("ann")
    a.sign_in(user)
    b.sign_in(user)
    a.add_list("Home")
    a.add_task("Home", "milk")
    # B sees it without pressing anything: pushed, streamed, pulled through the feed.
    expect(b.task("milk")).to_have_count(1)
    expect(b.status("realtime")).to_have_text("live")
    a.synced()

    # A goes offline and edits; B stays online and edits the same task.
    a.demo.wait_until_stored_for_offline()
    a.demo.context.set_offline(True)
    expect(a.status("net")).to_have_text("offline")
    a.edit("milk", new_title="oat milk")
    a.vote("oat milk")
    # One pending change: the vote folds into the edit of the same task.
    expect(a.status("pending")).to_have_text("1 pending")
    b.page.get_by_label("Done: milk").check()
    b.vote("milk")
    b.edit("milk", new_title="soy milk")
    b.synced()

    # Both reload: B online, A still offline (the service worker serves the app).
    b.demo.reload()
    a.demo.reload()
    expect(a.task("oat milk")).to_have_count(1)
    expect(a.status("pending")).to_have_text("1 pending")
    expect(b.task("soy milk")).to_have_count(1)

    # A comes back: its edits meet B's. Different fields merge, both votes count,
    # and the title both changed goes to the later edit (B's, by hybrid logical clock).
    a.demo.context.set_offline(False)
    a.synced()
    for device in (a, b):
        task = device.task("soy milk")
        expect(task).to_have_count(1)
        expect(task.locator(".vote")).to_have_text("▲ 2")
        expect(task.locator("input.done-box")).to_be_checked()
    conflict = a.page.locator("li.conflict")
    expect(conflict).to_have_count(1)
    expect(conflict.locator(".strategy")).to_have_text("decided by lww")
    expect(conflict.locator("dd.base")).to_contain_text('"title": "milk"')
    expect(conflict.locator("dd.local")).to_contain_text('"title": "oat milk"')
    expect(conflict.locator("dd.remote")).to_contain_text('"title": "soy milk"')
    expect(conflict.locator("dd.result")).to_contain_text('"done": true')
    expect(conflict.locator("dd.result")).to_contain_text('"votes": 2')
    expect(conflict.locator("dd.result")).to_contain_text('"title": "soy milk"')
    expect(a.page.locator("#conflicts-title")).to_have_text("Conflicts (1)")
    # Chromium logs the requests that failed while offline, and the push that met B's
    # version (a failed condition, HTTP 400): both expected here.
    expected_refusals(a, 400)
    expected_network_failures(a)
    a.shoot("demo-conflict")
    a.page.get_by_role("button", name="Dismiss all").click()
    expect(conflict).to_have_count(0)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[DemoServer]:
    """A dev stack of this test's own, keeping DynamoDB Local's data across restarts."""
    data = tmp_path / "dynamodb"
    data.mkdir()
    server = DemoServer(OUTPUT_DIR / "e2e-server-restart.log", ["--data-dir", str(data)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_with_the_server_stopped_a_reload_opens_the_app_with_its_data_and_outbox(
    browser: Browser, restartable: DemoServer
) -> None:
    user = unique("down")
    board = Board(new_demo(browser, restartable.url)).open()
    other: Board | None = None
    try:
        board.sign_in(user)
        board.add_list("Trip")
        board.add_task("Trip", "passport")
        board.synced()
        board.demo.wait_until_stored_for_offline()

        restartable.stop()
        board.add_task("Trip", "tickets")
        board.vote("passport")
        expect(board.status("pending")).to_have_text("2 pending")
        board.demo.reload()  # the service worker serves the app; the data is local
        expect(board.page.locator("#user")).to_have_text(user)
        expect(board.task("tickets")).to_have_count(1)
        expect(board.task("passport").locator(".vote")).to_have_text("▲ 1")
        expect(board.status("pending")).to_have_text("2 pending")
        board.shoot("demo-server-down")

        restartable.start()  # same port, same data: the changes go out by themselves
        expect(board.status("pending")).to_have_text("0 pending", timeout=30_000)
        other = Board(new_demo(browser, restartable.url)).open()
        other.sign_in(user)
        expect(other.task("tickets")).to_have_count(1)
        expect(other.task("passport").locator(".vote")).to_have_text("▲ 1")
        expected_network_failures(board)
        for device in (board, other):
            assert device.demo.console_errors == [], device.demo.console_log[-20:]
    finally:
        board.demo.context.close()
        if other is not None:
            other.demo.context.close()


def test_a_rejected_change_is_shown_retried_and_discarded(devices: list[Board]) -> None:
    a, _ = devices
    a.sign_in(unique("rex"))
    a.add_list("Notes")
    a.add_task("Notes", "essay")
    a.synced()
    # More than DynamoDB's 400 KB item limit: the server refuses it for good.
    a.edit("essay", notes="x" * 450_000)
    rejected = a.page.locator("li.rejected")
    expect(rejected).to_have_count(1)
    expect(rejected.locator(".reason")).to_contain_text("ValidationException")
    expect(rejected.locator(".reason")).to_contain_text("size")
    expect(a.page.locator("#rejected-title")).to_have_text("Rejected changes (1)")
    # The page keeps the edit locally meanwhile; a later edit waits behind it.
    a.edit("essay", new_title="short essay")
    expect(a.status("pending")).to_have_text("1 pending")
    a.shoot("demo-rejected")

    first_attempt = rejected.get_attribute("data-refused")
    rejected.get_by_role("button", name="Retry").click()
    # Sent again and refused again, with the same reason.
    expect(rejected).not_to_have_attribute("data-refused", first_attempt or "")
    expect(rejected).to_have_count(1)
    expect(rejected.locator(".reason")).to_contain_text("ValidationException")

    rejected.get_by_role("button", name="Discard").click()
    expect(rejected).to_have_count(0)
    # The server's version with the later edit on top: the title change lands, the
    # oversized notes are gone.
    task = a.task("short essay")
    expect(task).to_have_count(1)
    expect(task.locator(".notes")).to_have_count(0)
    a.synced()
    expect(a.page.locator("#rejected-title")).to_have_text("Rejected changes (0)")
    expected_refusals(a, 400)


def test_private_boards_stay_private_and_the_team_board_is_shared(
    devices: list[Board], server_url: str
) -> None:
    first, second = devices
    ann, bob = unique("ann"), unique("bob")
    first.sign_in(ann)
    first.add_list("Ann's secrets")
    first.add_task("Ann's secrets", "diary")
    team_list = unique("Team ")
    first.tab("Team board")
    expect(first.page.locator("#space-scope")).to_contain_text("scope s#team")
    first.add_list(team_list)
    first.add_task(team_list, "plan trip")
    first.synced()

    second.sign_in(bob)
    second.synced()
    expect(second.list("Ann's secrets")).to_have_count(0)
    expect(second.task("diary")).to_have_count(0)
    second.tab("Team board")
    expect(second.task("plan trip", team_list)).to_have_count(1)
    # Ann is typing a task when Bob's edits arrive: they show, her typing stays.
    typing = first.list(team_list).get_by_label(f"New task in {team_list}")
    typing.fill("half typed")
    second.add_task(team_list, "book hotel")
    second.vote("plan trip", team_list)
    expect(first.task("book hotel", team_list)).to_have_count(1)
    expect(first.task("plan trip", team_list).locator(".vote")).to_have_text("▲ 1")
    expect(typing).to_have_value("half typed")

    # The proxy enforces it: Bob's token cannot read Ann's scope.
    refused = second.page.evaluate(
        """async ([ann]) => {
            const {token} = JSON.parse(localStorage.getItem("pysync-demo:session"));
            const response = await fetch("/dynamodb", {
                method: "POST",
                headers: {"authorization": "Bearer " + token,
                          "content-type": "application/x-amz-json-1.0",
                          "x-amz-target": "DynamoDB_20120810.Query"},
                body: JSON.stringify({TableName: "pysync", KeyConditionExpression: "pk = :p",
                                      ExpressionAttributeValues: {":p": {S: "u#" + ann}}}),
            });
            return [response.status, (await response.json())["__type"]];
        }""",
        [ann],
    )
    assert refused[0] == 403, refused
    assert refused[1].endswith("AccessDeniedException"), refused
    expected_refusals(second, 403)


def test_work_offline_stops_all_traffic_and_resumes(devices: list[Board], server_url: str) -> None:
    a, _ = devices
    a.sign_in(unique("wo"))
    a.add_list("Errands")
    a.synced()
    expect(a.status("realtime")).to_have_text("live")

    a.page.get_by_label("Work offline").check()
    expect(a.status("net")).to_have_text("working offline")
    # From here on (a request already on its way when the switch flipped may finish).
    requests: list[str] = []
    a.page.on("request", lambda request: requests.append(request.url))
    expect(a.status("realtime")).to_have_text("not live")
    a.add_task("Errands", "post office")
    a.vote("post office")
    expect(a.status("pending")).to_have_text("1 pending")
    a.page.wait_for_timeout(1500)  # give a leaking background sync time to show
    assert [u for u in requests if "/dynamodb" in u or "/changes" in u or "/dev/" in u] == []

    # The switch survives a reload (the setting is the user's).
    a.demo.reload()
    expect(a.page.get_by_label("Work offline")).to_be_checked()
    expect(a.status("pending")).to_have_text("1 pending")
    a.page.get_by_label("Work offline").uncheck()
    a.synced()
    expect(a.status("realtime")).to_have_text("live")
    assert any("/dynamodb" in u for u in requests)


def test_tabs_show_leader_and_follower_and_share_the_sync_status(
    browser: Browser, server_url: str
) -> None:
    first = Board(new_demo(browser, server_url)).open()
    try:
        first.sign_in(unique("tab"))
        second = Board(Demo(first.demo.context.new_page(), first.demo.context, server_url))
        second.open()
        expect(first.status("role")).to_have_text("leader tab")
        expect(second.status("role")).to_have_text("follower tab")
        # The follower shows the leader's sync (its own tab makes no requests).
        second.add_list("Shared between tabs")
        expect(first.list("Shared between tabs")).to_have_count(1)
        second.synced()
        expect(second.status("realtime")).to_have_text("live")
        # The leader closes: the follower takes over.
        first.page.close()
        expect(second.status("role")).to_have_text("leader tab")
        second.add_task("Shared between tabs", "still syncing")
        second.synced()
    finally:
        first.demo.context.close()


def test_sign_out_asks_before_leaving_unsynced_changes_and_keeps_them(
    devices: list[Board],
) -> None:
    a, _ = devices
    user = unique("so")
    a.sign_in(user)
    a.add_list("Keep")
    a.synced()
    a.page.get_by_label("Work offline").check()
    a.add_task("Keep", "unsynced")
    # no_wait_after: the confirm() the click opens blocks the page, and Playwright would
    # otherwise wait on it for navigations the click may have scheduled (a 30 s timeout).
    with a.page.expect_event("dialog") as asked:
        a.page.click("#signout", no_wait_after=True)
    assert "1 change(s)" in asked.value.message
    asked.value.dismiss()
    expect(a.page.locator("#user")).to_have_text(user)  # cancelled: still signed in
    expect(a.task("unsynced")).to_have_count(1)

    with a.page.expect_event("dialog") as asked_again:  # as above: no handler race
        a.page.click("#signout", no_wait_after=True)
    asked_again.value.accept()
    expect(a.page.locator("#signin-screen")).to_be_visible()
    # Signing in needs the server: back online, the same user finds the change and
    # it syncs.
    a.page.get_by_label("Work offline").uncheck()
    a.sign_in(user)
    expect(a.task("unsynced")).to_have_count(1)
    a.synced()


def test_the_app_looks_tidy_on_desktop_and_phone(browser: Browser, server_url: str) -> None:
    for name, viewport in (("desktop", config.VIEWPORT), ("phone", PHONE)):
        board = Board(new_demo(browser, server_url, viewport)).open()
        try:
            board.shoot(f"demo-signin-{name}")
            board.sign_in(unique("shot"))
            board.add_list("Groceries")
            for title in ("milk", "bread", "coffee beans"):
                board.add_task("Groceries", title)
            board.vote("coffee beans")
            board.page.get_by_label("Done: bread").check()
            board.add_list("Weekend")
            board.add_task("Weekend", "fix the bike")
            board.edit("fix the bike", notes="the rear brake squeaks; new pads")
            board.synced()
            # Nothing sticks out sideways on a phone.
            overflow = board.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"
            board.shoot(f"demo-board-{name}")
            assert board.demo.console_errors == []
        finally:
            board.demo.context.close()


def test_status_texts_say_what_the_replicas_report(devices: list[Board]) -> None:
    """The status bar's wording for all spaces together (the function the page uses)."""
    texts = devices[0].demo.run(
        """
        import app
        from pysync import Status
        both = [
            Status(pending=2, leader=True, last_synced=2000, realtime=True),
            Status(pending=1, last_synced=1000, realtime=True, progress="pulling page 2"),
        ]
        first = [Status(syncing=True), Status(online=False)]
        [app.describe_status(both, False, lambda ms: f"@{ms}"), app.describe_status(first, True)]
        """
    )
    assert texts[0] == {
        "net": "online",
        "role": "leader tab",
        "pending": "3 pending",
        "progress": "pulling page 2",
        "synced": "synced @1000",
        "realtime": "live",
        "error": "",
    }
    assert texts[1]["net"] == "working offline"
    assert texts[1]["progress"] == "first sync: syncing"
    assert texts[1]["synced"] == "never synced"
    assert texts[1]["realtime"] == "not live"
    assert texts[1]["role"] == "follower tab"
