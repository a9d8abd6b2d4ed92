"""The throughput chart as shapes for an SVG drawn on the server (no JavaScript, no library).

One bar per minute, completed jobs stacked under failed ones, the height scaled to the busiest
minute; the template (`_chart.html`) draws the shapes, so every label goes through Jinja's
escaping like the rest of the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

WIDTH = 720
HEIGHT = 160
# Room on the left for the scale's labels and at the bottom for the time axis.
LEFT = 44
BOTTOM = 18
TOP = 6


@dataclass(frozen=True)
class Bar:
    """One minute's bar: completed (`y`, `height`) with failed on top (`failed_y`, `failed_height`)."""

    x: float
    width: float
    y: float
    height: float
    failed_y: float
    failed_height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """What `_chart.html` draws: the bars, the scale's top value, and the axis labels."""

    width: int
    height: int
    left: int
    plot_top: int
    plot_bottom: int
    bars: tuple[Bar, ...]
    scale: int
    completed: int
    failed: int
    first_label: str
    last_label: str


def throughput_chart(minutes: tuple[tuple[datetime, int, int], ...]) -> Chart:
    """The chart of (minute, completed, failed) buckets, oldest first."""
    plot_bottom = HEIGHT - BOTTOM
    plot_height = plot_bottom - TOP
    busiest = max((done + failed for _, done, failed in minutes), default=0)
    scale = _round_up(busiest)
    slot = (WIDTH - LEFT) / max(len(minutes), 1)
    bars = []
    for index, (minute, done, failed) in enumerate(minutes):
        done_height = plot_height * done / scale
        failed_height = plot_height * failed / scale
        y = plot_bottom - done_height
        bars.append(
            Bar(
                x=round(LEFT + index * slot + 1, 2),
                width=round(max(slot - 2, 1), 2),
                y=round(y, 2),
                height=round(done_height, 2),
                failed_y=round(y - failed_height, 2),
                failed_height=round(failed_height, 2),
                label=f"{minute.astimezone(UTC):%H:%M} UTC: {done:,} completed, {failed:,} failed",
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_top=TOP,
        plot_bottom=plot_bottom,
        bars=tuple(bars),
        scale=scale,
        completed=sum(done for _, done, _ in minutes),
        failed=sum(failed for _, _, failed in minutes),
        first_label=f"{minutes[0][0].astimezone(UTC):%H:%M}" if minutes else "",
        last_label=f"{minutes[-1][0].astimezone(UTC):%H:%M} UTC" if minutes else "",
    )


def _round_up(value: int) -> int:
    """The scale's top: `value` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power
