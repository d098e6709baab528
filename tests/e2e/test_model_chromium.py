"""The model (tests/model) in Chromium: three browser contexts as devices, each replica on the
page's real IndexedDB, pushing through the real proxy to DynamoDB Local, pulling the changelog
the stream consumer writes; faults injected in the pages, real page reloads and closes.

Each program also runs in memory (the differential) and must give the same step log.
A short run of a few seeds (``PYSYNC_CHROMIUM_SEEDS``, default 3: about a minute);
``scripts/soak.py --runner chromium`` runs many.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections import Counter
from typing import Any

from tests.model.chromium import chromium_lab, page_events
from tests.model.program import Program, from_seed
from tests.model.runner import Outcome

SEEDS_FROM = 0
SEED_COUNT = max(1, int(os.environ.get("PYSYNC_CHROMIUM_SEEDS", "3")))
MAX_STEPS = 30
PAGE_SHARE = 0.5


def _ways(kinds: Counter[str]) -> set[str]:
    """``crash`` or ``reload`` (an upgrade reloads too), each as a page event or in the page."""
    return {kind.replace("upgrade", "reload") for kind in kinds}


def _programs() -> list[Program]:
    """The first seeds with three devices that, together, reload and crash both ways."""
    chosen: list[Program] = []
    kinds: Counter[str] = Counter()
    for seed in range(SEEDS_FROM, SEEDS_FROM + 500):
        program = from_seed(seed, max_steps=MAX_STEPS)
        if len(program["devices"]) != 3:
            continue
        events = page_events(program, PAGE_SHARE)
        if len(chosen) == SEED_COUNT - 1 and len(_ways(kinds + events)) < 4:
            continue  # the last one completes the four ways
        chosen.append(program)
        kinds += events
        if len(chosen) == SEED_COUNT:
            return chosen
    raise AssertionError("no seeds reload and crash both ways")


async def _run(programs: list[Program]) -> tuple[list[Outcome], Counter[str], list[Any]]:
    async with chromium_lab(devices=3, page_share=PAGE_SHARE) as lab:
        outcomes = [await lab.run(program) for program in programs]
        return outcomes, lab.counts, lab.divergences


def test_the_model_holds_with_three_chromium_devices() -> None:
    programs = _programs()
    # Its own thread and event loop: the package's sync Playwright may hold this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        outcomes, counts, divergences = pool.submit(asyncio.run, _run(programs)).result()
    failures = [outcome.report(tail=60) for outcome in outcomes if not outcome.ok]
    assert not failures, "\n\n".join(failures)
    # The real browser and stack did what the simulation did, step for step.
    assert divergences == []
    # Every reload, upgrade and crash was played the way drawn, both ways each.
    expected = sum((page_events(program, PAGE_SHARE) for program in programs), Counter())
    assert counts == expected
    assert _ways(counts) == {"crash:page", "crash:in page", "reload:page", "reload:in page"}
