"""Server-side SVG charts for the portal: no JavaScript library, no network, readable by screen readers.

Every chart is one inline <svg role="img"> with a <title> and a <desc>, labelled axes, and one
element per data point (class "point", with its own <title> tooltip and a data-value attribute),
so a page draws the same with or without scripts, and tests can count what was drawn.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 16, 48
_ids = itertools.count(1)


@dataclass(frozen=True)
class Point:
    label: str
    value: float


def _points(items) -> list[Point]:
    return [Point(str(label), float(value or 0)) for label, value in items]


def _money(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:,.6f}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 × a power of ten)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value)


def _open(title: str, desc: str, width: int = WIDTH, height: int = HEIGHT,
          css_class: str = "") -> tuple[str, list[str]]:
    uid = next(_ids)
    head = (f'<svg class="chart {css_class}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="chart-title-{uid} chart-desc-{uid}" preserveAspectRatio="xMidYMid meet" '
            f'xmlns="http://www.w3.org/2000/svg">'
            f'<title id="chart-title-{uid}">{escape(title)}</title><desc id="chart-desc-{uid}">{escape(desc)}</desc>')
    return head, []


def _y_axis(parts: list[str], top: float, plot_height: float, left: float, right: float, y_label: str) -> None:
    for i in range(5):
        value = top * i / 4
        y = MARGIN_TOP + plot_height - plot_height * i / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(_money(value))}</text>')
    mid = MARGIN_TOP + plot_height / 2
    parts.append(f'<text class="axis-label" x="14" y="{mid:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {mid:.1f})">{escape(y_label)}</text>')


def _short_label(label: str) -> str:
    """"2025-08-06" → "08-06" under the axis; the full date stays in the point's tooltip."""
    return label[5:] if len(label) == 10 and label[4] == "-" else label


def _empty(head: str, parts: list[str], message: str = "No spend in this period") -> SafeString:
    parts.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{escape(message)}</text>')
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 - every value is escaped above


def line_chart(*, title: str, desc: str, series, budget=None, forecast=None, x_label: str = "Day",
               y_label: str = "Spend (USD)") -> SafeString:
    """A line of (label, value) points, an optional horizontal budget line and a dashed forecast
    continuing after the last point."""
    points, predicted = _points(series), _points(forecast or [])
    head, parts = _open(title, desc, css_class="line-chart")
    if not points:
        return _empty(head, parts)
    budget_value = float(budget) if budget is not None else None
    top = _nice_max(max([p.value for p in points + predicted] + [budget_value or 0]))
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    count = len(points) + len(predicted)
    step = (right - left) / max(count - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        return left + index * step, MARGIN_TOP + plot_height - plot_height * value / top

    _y_axis(parts, top, plot_height, left, right, y_label)
    label_every = max(1, count // 6)
    for index, point in enumerate(points + predicted):
        if index % label_every == 0 or index == count - 1:
            x, _ = xy(index, 0)
            parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(_short_label(point.label))}</text>')
    parts.append(f'<text class="axis-label" x="{(left + right) / 2}" y="{HEIGHT - 8}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    if budget_value is not None:
        _, y = xy(0, budget_value)
        parts.append(f'<line class="budget-line" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}">'
                     f'<title>Budget {escape(_money(budget_value))}</title></line>')
        parts.append(f'<text class="budget-label" x="{right}" y="{y - 4:.1f}" text-anchor="end">'
                     f'Budget {escape(_money(budget_value))}</text>')
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, p.value) for i, p in enumerate(points)))
    parts.append(f'<polyline class="series" points="{path}"/>')
    if predicted:
        start = [xy(len(points) - 1, points[-1].value)]
        rest = [xy(len(points) + i, p.value) for i, p in enumerate(predicted)]
        parts.append('<polyline class="forecast" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in start + rest) + '"/>')
    for index, point in enumerate(points):
        x, y = xy(index, point.value)
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" data-value="{point.value}">'
                     f'<title>{escape(point.label)}: {escape(_money(point.value))}</title></circle>')
    for index, point in enumerate(predicted):
        x, y = xy(len(points) + index, point.value)
        parts.append(f'<circle class="point forecast-point" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                     f'data-value="{point.value}"><title>Forecast {escape(point.label)}: '
                     f'{escape(_money(point.value))}</title></circle>')
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 - every value is escaped above


def bar_chart(*, title: str, desc: str, items, x_label: str = "Spend (USD)", limit: int = 10) -> SafeString:
    """Horizontal bars, largest first: long names (models, categories) stay readable on a phone."""
    bars = sorted(_points(items), key=lambda p: -p.value)[:limit]
    row, label_width = 26, 170
    height = MARGIN_TOP + max(len(bars), 1) * row + MARGIN_BOTTOM
    head, parts = _open(title, desc, height=height, css_class="bar-chart")
    if not bars:
        return _empty(head, parts)
    top = _nice_max(max(p.value for p in bars))
    left, right = label_width, WIDTH - MARGIN_RIGHT - 70
    for i in range(5):
        x = left + (right - left) * i / 4
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" y2="{height - MARGIN_BOTTOM}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{height - MARGIN_BOTTOM + 16}" '
                     f'text-anchor="middle">{escape(_money(top * i / 4))}</text>')
    parts.append(f'<text class="axis-label" x="{(left + right) / 2}" y="{height - 8}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    for index, bar in enumerate(bars):
        y = MARGIN_TOP + index * row + 4
        width = (right - left) * bar.value / top
        name = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"
        parts.append(f'<text class="bar-label" x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>')
        parts.append(f'<rect class="point bar" x="{left}" y="{y}" width="{max(width, 1):.1f}" height="{row - 8}" '
                     f'data-value="{bar.value}"><title>{escape(bar.label)}: {escape(_money(bar.value))}</title></rect>')
        parts.append(f'<text class="bar-value" x="{left + max(width, 1) + 4:.1f}" y="{y + 13}">'
                     f'{escape(_money(bar.value))}</text>')
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 - every value is escaped above


def column_chart(*, title: str, desc: str, items, x_label: str = "Hour of day (UTC)",
                 y_label: str = "Spend (USD)") -> SafeString:
    """Vertical columns in the given order (e.g. the 24 hours of the day, zeros included)."""
    columns = _points(items)
    head, parts = _open(title, desc, css_class="column-chart")
    if not columns or not any(c.value for c in columns):
        return _empty(head, parts)
    top = _nice_max(max(c.value for c in columns))
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = (right - left) / len(columns)
    _y_axis(parts, top, plot_height, left, right, y_label)
    label_every = max(1, len(columns) // 8)
    for index, column in enumerate(columns):
        height = plot_height * column.value / top
        x = left + index * slot
        top_y = MARGIN_TOP + plot_height - height
        parts.append(f'<rect class="point column" x="{x + slot * 0.15:.1f}" y="{top_y:.1f}" '
                     f'width="{slot * 0.7:.1f}" height="{height:.1f}" data-value="{column.value}">'
                     f'<title>{escape(column.label)}: {escape(_money(column.value))}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text class="tick" x="{x + slot / 2:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(column.label)}</text>')
    parts.append(f'<text class="axis-label" x="{(left + right) / 2}" y="{HEIGHT - 8}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 - every value is escaped above
