"""A self-contained SVG bar chart of mean accuracy per mode, drawn by hand (no plotting library).

One bar per mode (class ``bar``) with the mean accuracy in percent, an error bar of one
standard deviation (class ``errorbar``), the value above it, a 0-100 % y axis with gridlines and,
optionally, the teacher's accuracy as a dashed horizontal line. Every piece of text goes
through :func:`xml.sax.saxutils.escape`, so any mode name or title yields well-formed XML.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from ..io import atomic_open

logger = logging.getLogger(__name__)

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
CHAR_WIDTH = 7.0  # rough width of one 12 px character, to wrap mode names to their bar
LINE_HEIGHT = 15.0
MAX_LABEL_LINES = 3
BAND = 120.0  # horizontal pixels per mode
HALO = ' stroke="#fff" stroke-width="3" paint-order="stroke"'  # keeps text readable over lines


@dataclass(frozen=True)
class Frame:
    """Pixel geometry of the plot area inside the SVG."""

    width: float
    height: float
    left: float = 64.0
    right: float = 24.0
    top: float = 72.0
    bottom: float = 64.0

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom

    def y(self, percent: float) -> float:
        """Pixel row of a percentage, clipped to the 0-100 axis."""
        percent = min(100.0, max(0.0, percent))
        return self.plot_bottom - percent / 100.0 * (self.plot_bottom - self.top)


def _text(x: float, y: float, content: str, *, size: int = 12, anchor: str = "middle",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f"{escape(content)}</text>")


def _y_axis(frame: Frame) -> list[str]:
    parts = []
    for tick in range(0, 101, 10):
        y = frame.y(tick)
        colour = "#333" if tick == 0 else "#e3e3e3"
        parts.append(f'<line class="grid" x1="{frame.left:.1f}" y1="{y:.1f}" '
                     f'x2="{frame.width - frame.right:.1f}" y2="{y:.1f}" stroke="{colour}"/>')
        parts.append(_text(frame.left - 8, y + 4, str(tick), size=11, anchor="end"))
    mid = (frame.top + frame.plot_bottom) / 2
    parts.append(_text(18, mid, "accuracy (%)", extra=f' transform="rotate(-90 18 {mid:.1f})"'))
    parts.append(f'<line x1="{frame.left:.1f}" y1="{frame.top:.1f}" x2="{frame.left:.1f}" '
                 f'y2="{frame.plot_bottom:.1f}" stroke="#333"/>')
    return parts


def _error_bar(x: float, frame: Frame, mean: float, std: float) -> list[str]:
    lo, hi = frame.y(mean - std), frame.y(mean + std)
    cap = 6.0
    style = 'stroke="#222" stroke-width="1.5"'
    return [
        f'<g class="errorbar"><line x1="{x:.1f}" y1="{lo:.1f}" x2="{x:.1f}" y2="{hi:.1f}" {style}/>',
        f'<line x1="{x - cap:.1f}" y1="{hi:.1f}" x2="{x + cap:.1f}" y2="{hi:.1f}" {style}/>',
        f'<line x1="{x - cap:.1f}" y1="{lo:.1f}" x2="{x + cap:.1f}" y2="{lo:.1f}" {style}/></g>',
    ]


def wrap_label(text: str, max_chars: int, max_lines: int = MAX_LABEL_LINES) -> list[str]:
    """``text`` split into at most ``max_lines`` lines of ``max_chars``, the last one cut with '…'."""
    lines = textwrap.wrap(text, width=max(1, max_chars), break_long_words=True) or [""]
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = lines[: max_lines - 1] + [last[: max(0, max_chars - 1)] + "…"]
    return lines


def _mode_label(x: float, frame: Frame, lines: list[str]) -> str:
    """Mode name under its bar, one ``tspan`` per wrapped line."""
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if i == 0 else LINE_HEIGHT:.0f}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return (f'<text class="mode" x="{x:.1f}" y="{frame.plot_bottom + 18:.1f}" font-size="12" '
            f'text-anchor="middle">{spans}</text>')


def _bar(i: int, row: Mapping[str, Any], frame: Frame, band: float, label: list[str]) -> list[str]:
    """Bar, error bar, value label and (wrapped) mode label of the ``i``-th mode."""
    centre = frame.left + band * (i + 0.5)
    width = band * 0.6
    mean = row.get("accuracy_mean")
    std = row.get("accuracy_std") or 0.0
    pct, spread = (None, 0.0) if mean is None else (100.0 * mean, 100.0 * std)
    top = frame.y(pct or 0.0)
    colour = PALETTE[i % len(PALETTE)]
    parts = [f'<rect class="bar" x="{centre - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" '
             f'height="{frame.plot_bottom - top:.1f}" fill="{colour}"><title>{escape(str(row["mode"]))}'
             f"</title></rect>"]
    if pct is not None and spread > 0:
        parts += _error_bar(centre, frame, pct, spread)
    value = "n/a" if pct is None else f"{pct:.1f}"
    value_y = max(frame.top - 4, frame.y((pct or 0.0) + spread) - 6)
    parts.append(_text(centre, value_y, value, extra=' class="value" font-weight="bold"' + HALO))
    parts.append(_mode_label(centre, frame, label))
    return parts


def _teacher_line(frame: Frame, percent: float) -> list[str]:
    """Dashed line across the plot at the teacher's accuracy, labelled in a legend above the plot
    (a label on the line itself would collide with the value labels of bars near it)."""
    y = frame.y(percent)
    x2 = frame.width - frame.right
    dash = 'stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 4"'
    legend_y = frame.top - 22
    return [
        f'<line class="teacher" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" {dash}/>',
        f'<line x1="{x2 - 150:.1f}" y1="{legend_y - 4:.1f}" x2="{x2 - 122:.1f}" y2="{legend_y - 4:.1f}" {dash}/>',
        _text(x2 - 116, legend_y, f"teacher {percent:.1f}%", size=12, anchor="start",
              extra=' class="teacher-label" fill="#c0392b"'),
    ]


def _level_line(frame: Frame, percent: float, name: str, slot: int) -> list[str]:
    """A grey dotted line at a no-learning level (chance, majority class), its legend left of the
    teacher's."""
    y = frame.y(percent)
    x2 = frame.width - frame.right
    dash = 'stroke="#7f7f7f" stroke-width="1.2" stroke-dasharray="2 3"'
    legend_x, legend_y = x2 - 150 - 170 * slot, frame.top - 22
    return [
        f'<line class="{name.split()[0]}" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" {dash}/>',
        f'<line x1="{legend_x:.1f}" y1="{legend_y - 4:.1f}" x2="{legend_x + 28:.1f}" y2="{legend_y - 4:.1f}" {dash}/>',
        _text(legend_x + 34, legend_y, f"{name} {percent:.1f}%", size=12, anchor="start",
              extra=f' class="{name.split()[0]}-label" fill="#595959"'),
    ]


def _frame(n_modes: int, label_lines: int, title_chars: int) -> Frame:
    """Wide enough for every bar and the (16 px bold) title; tall enough for wrapped labels."""
    extra = LINE_HEIGHT * (label_lines - 1)
    width = max(560.0, 64.0 + 24.0 + BAND * n_modes, 40.0 + 10.0 * title_chars)
    return Frame(width=width, height=440.0 + extra, bottom=56.0 + extra)


def _opening(frame: Frame, title: str) -> list[str]:
    """The start of a chart: the svg element, its title, a white background and the y axis."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{frame.width:.0f}" height="{frame.height:.0f}" '
        f'viewBox="0 0 {frame.width:.0f} {frame.height:.0f}" font-family="{FONT}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="background" width="{frame.width:.0f}" height="{frame.height:.0f}" fill="#fff"/>',
        _text(frame.width / 2, 26, title, size=16, extra=' class="title" font-weight="bold"'),
        *_y_axis(frame),
    ]


def accuracy_svg(rows: Sequence[Mapping[str, Any]], title: str, teacher_accuracy: float | None = None,
                 levels: Mapping[str, float] | None = None) -> str:
    """SVG text of a bar chart of ``accuracy_mean`` ± ``accuracy_std`` (fractions, drawn in %)
    per mode of :func:`~saliency_distill.reporting.table.aggregate` rows; ``teacher_accuracy``
    (a fraction) adds a dashed reference line, ``levels`` (``chance``, ``majority``: fractions)
    grey dotted ones, so that a student at chance shows as such."""
    max_chars = int(BAND * 0.9 / CHAR_WIDTH)
    labels = [wrap_label(str(row["mode"]), max_chars) for row in rows]
    frame = _frame(len(rows), max((len(lines) for lines in labels), default=1), len(title))
    band = frame.plot_width / max(1, len(rows))
    parts = _opening(frame, title)
    for i, (row, label) in enumerate(zip(rows, labels)):
        parts += _bar(i, row, frame, band, label)
    if teacher_accuracy is not None:
        parts += _teacher_line(frame, 100.0 * teacher_accuracy)
    names = {"chance": "chance", "majority": "majority class"}
    for slot, key in enumerate(k for k in ("chance", "majority") if (levels or {}).get(k) is not None):
        parts += _level_line(frame, 100.0 * levels[key], names[key], slot)  # type: ignore[index]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def curve_svg(points: Sequence[Mapping[str, Any]], title: str) -> str:
    """SVG text of a data-efficiency curve: accuracy (%) against the share of train data (%), one
    line per mode (class ``line``) through its points' ``mean`` and, where a point has ``lower``
    and ``upper``, a translucent interval band (class ``band``); the x axis is linear in the share.
    ``points``: dicts with ``fraction`` (0-1], ``mode``, ``mean``, ``lower``, ``upper`` (in %)."""
    modes = list(dict.fromkeys(str(p["mode"]) for p in points))
    legend_rows = min(3, max(1, len(modes)))  # legend above the plot, three modes per column
    frame = Frame(width=max(560.0, 40.0 + 10.0 * len(title)), height=460.0 + 16 * legend_rows, bottom=64.0,
                  top=56.0 + 16 * legend_rows)
    right = frame.width - frame.right

    def x(fraction: float) -> float:
        return frame.left + fraction * frame.plot_width

    parts = _opening(frame, title)
    for tick in range(0, 101, 25):
        parts.append(_text(x(tick / 100), frame.plot_bottom + 18, f"{tick}%", size=11))
    parts.append(_text((frame.left + right) / 2, frame.plot_bottom + 44, "share of the train split"))
    for i, mode in enumerate(modes):
        colour = PALETTE[i % len(PALETTE)]
        mine = sorted((p for p in points if str(p["mode"]) == mode), key=lambda p: float(p["fraction"]))
        banded = [p for p in mine if p.get("lower") is not None and p.get("upper") is not None]
        if banded:
            upper = [f"{x(float(p['fraction'])):.1f},{frame.y(float(p['upper'])):.1f}" for p in banded]
            lower = [f"{x(float(p['fraction'])):.1f},{frame.y(float(p['lower'])):.1f}" for p in reversed(banded)]
            parts.append(f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{colour}" '
                         'fill-opacity="0.15" stroke="none"/>')
        line = " ".join(f"{x(float(p['fraction'])):.1f},{frame.y(float(p['mean'])):.1f}" for p in mine)
        parts.append(f'<polyline class="line" points="{line}" fill="none" stroke="{colour}" stroke-width="2">'
                     f"<title>{escape(mode)}</title></polyline>")
        parts += [f'<circle cx="{x(float(p["fraction"])):.1f}" cy="{frame.y(float(p["mean"])):.1f}" r="3" '
                  f'fill="{colour}"/>' for p in mine]
        legend_y = 52.0 + 16 * (i % 3)
        legend_x = frame.left + 170 * (i // 3)
        parts.append(f'<line x1="{legend_x:.1f}" y1="{legend_y - 4:.1f}" x2="{legend_x + 24:.1f}" '
                     f'y2="{legend_y - 4:.1f}" stroke="{colour}" stroke-width="2"/>')
        parts.append(_text(legend_x + 30, legend_y, mode, size=12, anchor="start", extra=' class="legend"'))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_svg(path: str | os.PathLike[str], svg: str) -> None:
    """Write SVG text atomically."""
    with atomic_open(path) as f:
        f.write(svg)
    logger.debug("wrote %s", path)
