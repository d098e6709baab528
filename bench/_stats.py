"""Summary statistics shared by the benchmarks."""

from __future__ import annotations

import statistics
from typing import Any


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, quartiles, extremes and every run, in milliseconds rounded to 0.01."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    return {
        "median": round(statistics.median(ordered), 2),
        "p25": round(q[0], 2),
        "p75": round(q[2], 2),
        "min": round(ordered[0], 2),
        "max": round(ordered[-1], 2),
        "runs": [round(v, 2) for v in values],
    }
