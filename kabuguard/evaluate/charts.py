"""Inline SVG charts for the report: no plotting library, no script, nothing fetched.

A report mailed to a fraud team lead or opened on an air-gapped analyst desk must render
as it is, so the charts are plain SVG markup built here; every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

WIDTH = 720
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 34, 40
_BAR_ROW = 22
# Category labels of horizontal bars: about 7.5 px a character at 12 px, up to half the chart (room
# for "… before their campaign's first hijack"); a longer one is cut, whole in its tooltip.
_CHAR_PX = 7.5
_LABEL_MAX = WIDTH // 2


def _text(x: float, y: float, value: str, anchor: str = "start", cls: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{css}>{escape(value)}</text>'


def _svg(title: str, height: int, body: list[str], colors: dict[str, str]) -> str:
    """The chart with its title on top left and, for more than one series, a legend top right."""
    legend = _legend(colors) if len(colors) > 1 else []
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{_text(8, 18, title, cls='title')}{''.join(body + legend)}</svg>"
    )


def _legend(colors: dict[str, str], y: float = 18) -> list[str]:
    widths = [24 + 7 * len(name) for name in colors]
    out, x = [], float(WIDTH - _RIGHT - sum(widths))
    for (name, color), width in zip(colors.items(), widths, strict=True):
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 14, y, name))
        x += width
    return out


def nice_step(top: float, ticks: int = 4) -> float:
    """A 1-2-5 step so that `ticks` steps cover `top`: axes people can read at a glance.

    >>> nice_step(730), nice_step(0.42), nice_step(0)
    (200, 0.2, 1.0)
    """
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw)


def _y_axis(top: float, height: int, fmt: Callable[[float], str], whole: bool) -> tuple[float, list[str]]:
    """Gridlines and labels for a vertical scale from 0; returns the scale's maximum.

    `whole` keeps the step at 1 or more, so a count axis never reads 0, 0, 1, 1.
    """
    step = max(nice_step(top), 1.0) if whole else nice_step(top)
    limit = step * max(1, math.ceil(top / step))
    plot = height - _TOP - _BOTTOM
    out = []
    for i in range(int(round(limit / step)) + 1):
        y = height - _BOTTOM - plot * i * step / limit
        out.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(_text(_LEFT - 6, y + 4, fmt(i * step), "end", "tick"))
    return limit, out


def stacked_columns(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colors: dict[str, str],
    line: tuple[str, str, Sequence[float]] | None = None,
    height: int = 260,
) -> str:
    """Columns per x position, the series stacked in the order of `colors`.

    `line` (name, color, values) is drawn over the columns on the same scale, to compare
    what was done with what was happening (interventions against fraud, say).
    """
    n = len(x_labels)
    totals = [sum(series[name][i] for name in colors) for i in range(n)]
    top = max(totals + (list(line[2]) if line else []), default=0)
    limit, body = _y_axis(top, height, _count, whole=True)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    for i in range(n):
        base = float(height - _BOTTOM)
        for name, color in colors.items():
            h = plot_h * series[name][i] / limit
            if h > 0:
                body.append(
                    f'<rect x="{_LEFT + i * slot + 1:.1f}" y="{base - h:.1f}" width="{max(slot - 2, 1):.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{escape(f"{x_labels[i]} {name}: {series[name][i]:,}")}'
                    f"</title></rect>"
                )
            base -= h
    legend = dict(colors)
    if line is not None:
        name, color, values = line
        points = " ".join(
            f"{_LEFT + (i + 0.5) * slot:.1f},{height - _BOTTOM - plot_h * v / limit:.1f}"
            for i, v in enumerate(values)
        )
        body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        legend[name] = color
    every = max(1, math.ceil(n / 6))
    body += [
        _text(_LEFT + (i + 0.5) * slot, height - _BOTTOM + 16, x_labels[i], "middle", "tick")
        for i in range(0, n, every)
    ]
    return _svg(title, height, body, legend)


def step_lines(
    title: str, series: Mapping[str, Sequence[float]], colors: dict[str, str], height: int = 240
) -> str:
    """Histograms over [0, 1] drawn as step lines, so two distributions can overlap legibly."""
    top = max((max(v, default=0) for v in series.values()), default=0)
    limit, body = _y_axis(top, height, _percent, whole=False)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    for name, color in colors.items():
        values = series[name]
        width = plot_w / max(len(values), 1)
        points = []
        for i, v in enumerate(values):
            y = height - _BOTTOM - plot_h * v / limit
            points += [f"{_LEFT + i * width:.1f},{y:.1f}", f"{_LEFT + (i + 1) * width:.1f},{y:.1f}"]
        body.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>')
    for score in (0, 0.25, 0.5, 0.75, 1):
        body.append(_text(_LEFT + plot_w * score, height - _BOTTOM + 16, f"{score:g}", "middle", "tick"))
    body.append(_text(WIDTH - _RIGHT, height - 6, "score", "end", "tick"))
    return _svg(title, height, body, colors)


def horizontal_bars(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    colors: dict[str, str],
    fmt: Callable[[float], str],
    limit: float | None = None,
    missing: str = "n/a",
) -> str:
    """One row per category, one bar per series; a missing value is written `missing`, not drawn as 0.

    `limit` is the value of a full-width bar (1.0 for shares that should read against 100%);
    by default the largest value.
    """
    label_w = min(_LABEL_MAX, 16 + _CHAR_PX * max((len(c) for c in categories), default=0))
    fits = int((label_w - 16) / _CHAR_PX)
    rows = len(categories) * len(series)
    gap = 8
    height = _TOP + rows * _BAR_ROW + len(categories) * gap + 12
    if limit is None:
        limit = max((v for values in series.values() for v in values if v is not None), default=0) or 1.0
    plot_w = WIDTH - label_w - _RIGHT - 70
    body, y = [], float(_TOP)
    for i, category in enumerate(categories):
        label_y = y + _BAR_ROW * len(series) / 2 + 4
        if len(category) <= fits:
            body.append(_text(label_w - 8, label_y, category, "end"))
        else:  # cut to fit, whole in its tooltip
            cut = _text(label_w - 8, label_y, category[: fits - 1] + "…", "end")
            body.append(f"<g><title>{escape(category)}</title>{cut}</g>")
        for name, color in colors.items():
            value = series[name][i]
            if value is None:
                body.append(_text(label_w, y + 15, missing, cls="tick"))
            else:
                w = max(plot_w * value / limit, 1)
                body.append(
                    f'<rect x="{label_w}" y="{y + 3:.1f}" width="{w:.1f}" height="{_BAR_ROW - 6}" fill="{color}">'
                    f"<title>{escape(f'{category} {name}: {fmt(value)}')}</title></rect>"
                )
                body.append(_text(label_w + w + 4, y + 15, fmt(value), cls="tick"))
            y += _BAR_ROW
        y += gap
    return _svg(title, int(height), body, colors)


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float) -> str:
    return f"{value * 100:g}%"
