"""Small charts as inline SVG: no library, no script, no outside reference.

Each function returns one ``<svg>`` element as a string, ready to be put into an HTML page
(inline SVG needs no namespace there). Colours and sizes are presentation attributes, never
``style`` attributes, so the charts show under a strict Content-Security-Policy. Every text
is escaped; every chart has a ``<title>`` for screen readers, and its numbers are also in
the report's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#999999")  # Okabe & Ito: told apart with any colour vision
AXIS = "#555555"
GRID = "#dddddd"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def colour(index: int) -> str:
    """Return the palette colour of a series by its index."""
    return PALETTE[index % len(PALETTE)]


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    """Return an svg element of the given size with a title and a body."""
    return (f'<svg class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" {FONT}>'
            f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = AXIS) -> str:
    """Return an escaped text element."""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">'
            f"{escape(text)}</text>")


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str) -> str:
    """Return a rectangle with a tooltip."""
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{fill}"><title>{escape(tip)}</title></rect>')


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    """Return a one-line legend of coloured squares and names."""
    parts = []
    for i, name in enumerate(names):
        parts.append(_rect(x, y - 9, 10, 10, colour(i), name))
        parts.append(_text(x + 14, y, name))
        x += 24 + 7 * len(name)
    return parts


def _nice_top(value: float) -> float:
    """Return a round number at least value (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if factor * step >= value:
            return factor * step
    return 10 * step


def empty_chart(title: str, message: str, width: int = 640, height: int = 60) -> str:
    """Return a chart that only says there is nothing to show."""
    return _svg(width, height, title, [_text(width / 2, height / 2 + 4, message, "middle")])


def stacked_columns(title: str, labels: Sequence[str],
                    series: Sequence[tuple[str, Sequence[float]]],
                    width: int = 640, height: int = 240) -> str:
    """Return vertical columns, one per label, stacked from the series (name, values)."""
    if not labels:
        return empty_chart(title, "no data")
    left, right, top, bottom = 44, 10, 26, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    top_value = _nice_top(max(totals))
    step = plot_w / len(labels)
    body = _legend([name for name, _ in series], left, 14)
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                    f'stroke="{GRID}"/>')
        body.append(_text(left - 4, y + 4, f"{top_value * fraction:g}", "end"))
    for i, label in enumerate(labels):
        base = float(top + plot_h)
        for s, (name, values) in enumerate(series):
            h = plot_h * values[i] / top_value
            base -= h
            body.append(_rect(left + i * step + step * 0.1, base, step * 0.8, h, colour(s),
                              f"{label} {name}: {values[i]:g}"))
    shown = sorted({0, len(labels) - 1, *range(0, len(labels), max(1, len(labels) // 6))})
    for i in shown:
        body.append(_text(left + (i + 0.5) * step, height - bottom + 16, labels[i], "middle"))
    return _svg(width, height, title, body)


def share_bars(title: str, rows: Sequence[tuple[str, Sequence[float]]],
               names: Sequence[str], width: int = 640) -> str:
    """Return one horizontal 100 % bar per row (label, parts), parts in the order of names."""
    if not rows:
        return empty_chart(title, "no data")
    left, right, top, bar, gap = 90, 50, 26, 22, 10
    height = top + len(rows) * (bar + gap) + 6
    plot_w = width - left - right
    body = _legend(names, left, 14)
    for r, (label, parts) in enumerate(rows):
        y = top + r * (bar + gap)
        body.append(_text(left - 6, y + bar / 2 + 4, label, "end"))
        whole = sum(parts)
        x = float(left)
        for p, value in enumerate(parts):
            w = plot_w * value / whole if whole else 0.0
            share = value / whole if whole else 0.0
            body.append(_rect(x, y, w, bar, colour(p), f"{label} {names[p]}: {share:.0%}"))
            if w >= 34:
                body.append(_text(x + w / 2, y + bar / 2 + 4, f"{share:.0%}", "middle", "#ffffff"))
            x += w
        if not whole:
            body.append(_text(left, y + bar / 2 + 4, "no data"))
    return _svg(width, height, title, body)


def horizontal_bars(title: str, rows: Sequence[tuple[str, float]], unit: str = "",
                    width: int = 640) -> str:
    """Return one horizontal bar per row (label, value), longest bar = largest value."""
    if not rows:
        return empty_chart(title, "no data")
    left, right, top, bar, gap = 260, 50, 8, 18, 8
    height = top + len(rows) * (bar + gap) + 4
    plot_w = width - left - right
    largest = max(value for _, value in rows) or 1.0
    body = []
    for r, (label, value) in enumerate(rows):
        y = top + r * (bar + gap)
        shown = label if len(label) <= 38 else label[:37] + "…"
        body.append(_text(left - 6, y + bar / 2 + 4, shown, "end"))
        w = plot_w * value / largest
        body.append(_rect(left, y, w, bar, colour(0), f"{label}: {value:g}{unit}"))
        body.append(_text(left + w + 4, y + bar / 2 + 4, f"{value:g}{unit}"))
    return _svg(width, height, title, body)


def reliability(title: str, points: Sequence[tuple[float, float, int]],
                size: int = 300) -> str:
    """Return predicted (x) against observed (y) rates with the diagonal; dot area ~ count."""
    if not points:
        return empty_chart(title, "no data", width=size)
    pad = 40
    plot = size - 2 * pad

    def at(x: float, y: float) -> tuple[float, float]:
        """Return the picture coordinates of rates x and y."""
        return pad + plot * x, size - pad - plot * y

    body = [f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" '
            f'stroke="{GRID}"/>']
    (x0, y0), (x1, y1) = at(0, 0), at(1, 1)
    body.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{AXIS}" '
                'stroke-dasharray="4 3"/>')
    for value in (0.0, 0.5, 1.0):
        x, y = at(value, value)
        body.append(_text(x, size - pad + 16, f"{value:g}", "middle"))
        body.append(_text(pad - 6, y + 4, f"{value:g}", "end"))
    body.append(_text(size / 2, size - 6, "predicted probability", "middle"))
    body.append(_text(pad, pad - 8, "observed helpful or resolved"))
    largest = max(count for _, _, count in points) or 1
    line = " ".join(f"{at(x, y)[0]:.1f},{at(x, y)[1]:.1f}" for x, y, _ in points)
    body.append(f'<polyline points="{line}" fill="none" stroke="{colour(0)}"/>')
    for x, y, count in points:
        cx, cy = at(x, y)
        radius = 3 + 7 * (count / largest) ** 0.5
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{colour(0)}">'
                    f"<title>{escape(f'predicted {x:.2f}, observed {y:.2f}, {count} results')}"
                    "</title></circle>")
    return _svg(size, size, title, body)
