"""Where the report finds a data-efficiency curve, and the check of its points.

The method's claim is strongest where labelled data is scarce, so ``report.html`` draws the curve
(with :func:`.plot.curve_svg`) whenever there is one. A curve is a list of points, each a mapping::

    {"fraction": 0.25, "mode": "saliency", "mean": 61.2, "lower": 58.3, "upper": 64.1}

- ``fraction``: share of the train split the students trained on, in (0, 1];
- ``mode``: the training mode (a ``student.modes`` name);
- ``mean``: test accuracy in percent (0-100), over the seeds;
- ``lower``, ``upper``: the interval around ``mean``, in percent; optional (None or absent: no
  band at that point). ``saliency-distill curve`` gives a 95% cluster bootstrap over the test
  examples; :func:`curve_from_records` gives ± 1 std over seeds.

Extra keys (``seeds``) are kept and ignored. At most one point per (mode, fraction). This is the
shape of the ``points`` that ``saliency-distill curve`` writes to ``report/curve.json``
(:func:`saliency_distill.study.curve_points`), so they can be passed as they are.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError

logger = logging.getLogger(__name__)

CURVE_FILE = "curve.json"  # written into the report folder by ``saliency-distill curve``


def _number(point: Mapping[str, Any], key: str, i: int, optional: bool = False) -> float | None:
    value = point.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"curve point #{i}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def check_curve(points: Sequence[Mapping[str, Any]], modes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The points checked (:class:`DataError` naming the first bad one) and sorted by mode, those in
    ``modes`` first and in its order (the table's, so that a line has its bar's colour), then by
    fraction."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, float]] = set()
    for i, point in enumerate(points):
        mode = point.get("mode") if isinstance(point, Mapping) else None
        if not isinstance(mode, str) or not mode:
            raise DataError(f"curve point #{i} needs a 'mode' name, got {point!r}")
        fraction, mean = _number(point, "fraction", i), _number(point, "mean", i)
        if not 0 < fraction <= 1:
            raise DataError(f"curve point #{i}: 'fraction' must be in (0, 1], got {fraction}")
        if (mode, fraction) in seen:
            raise DataError(f"curve point #{i}: a second point for {mode!r} at fraction {fraction}")
        seen.add((mode, fraction))
        lower, upper = _number(point, "lower", i, optional=True), _number(point, "upper", i, optional=True)
        if (lower is not None and lower > mean) or (upper is not None and upper < mean):
            raise DataError(f"curve point #{i}: the interval [{lower}, {upper}] does not hold the mean {mean}")
        out.append({**point, "fraction": fraction, "mode": mode, "mean": mean, "lower": lower, "upper": upper})
    order = {m: k for k, m in enumerate(dict.fromkeys([*modes, *(p["mode"] for p in out)]))}
    return sorted(out, key=lambda p: (order[p["mode"]], p["fraction"]))


def curve_from_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Points from result records that carry a numeric ``fraction`` (as the records of
    ``saliency-distill curve`` do): per (mode, fraction) the mean ``accuracy`` over the seeds in %
    and a band of ± 1 sample std (none from one seed), clipped to 0-100. None unless some mode
    has two fractions or more: one fraction is a table row, not a curve."""
    groups: dict[tuple[str, float], list[float]] = {}
    for record in records:
        mode, fraction, accuracy = record.get("mode"), record.get("fraction"), record.get("accuracy")
        if isinstance(mode, str) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         for v in (fraction, accuracy)):
            groups.setdefault((mode, float(fraction)), []).append(100.0 * float(accuracy))
    fractions_per_mode: dict[str, int] = {}
    for mode, _ in groups:
        fractions_per_mode[mode] = fractions_per_mode.get(mode, 0) + 1
    if max(fractions_per_mode.values(), default=0) < 2:
        return None
    points = []
    for (mode, fraction), values in groups.items():
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else None
        points.append({"fraction": fraction, "mode": mode, "mean": mean, "seeds": len(values),
                       "lower": None if std is None else max(0.0, mean - std),
                       "upper": None if std is None else min(100.0, mean + std)})
    return check_curve(points)


def read_curve(report_folder: str | Path) -> list[dict[str, Any]] | None:
    """The ``points`` of ``curve.json`` in the report folder, None without the file. An unreadable
    file is logged and skipped: the curve is an optional figure and must not cost the report."""
    path = Path(report_folder) / CURVE_FILE
    if not path.is_file():
        return None
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["points"]
        return check_curve(points) or None
    except (ValueError, KeyError, TypeError, DataError) as e:
        logger.warning("%s: no data-efficiency curve in the report (%s)", path, e)
        return None


def find_curve(curve: Sequence[Mapping[str, Any]] | None, records: Sequence[Mapping[str, Any]],
               report_folder: str | Path) -> tuple[list[dict[str, Any]] | None, str]:
    """The curve a report shows and the caption that says what its bands are: ``curve`` when
    given, else ``curve.json`` in the report folder, else one read off the ``records``."""
    if curve is not None:
        return check_curve(curve) or None, "Shaded: the interval given with each point."
    if (points := read_curve(report_folder)) is not None:
        return points, (f"From {CURVE_FILE} (saliency-distill curve): mean over seeds; shaded: 95% "
                        "cluster-bootstrap interval over the test examples.")
    return curve_from_records(records), "Mean over seeds; shaded: ± 1 std over seeds."
