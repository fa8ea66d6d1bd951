"""The ``evaluate --roc`` picture, drawn with OpenCV (no plotting library is a dependency).

Log-scale FAR on x (from the smallest FAR the pairs can measure, 1 / impostor pairs, to 1), TAR on y
zoomed to the range the curves occupy at those FARs (a good model sits at 0.98-1.0, which a 0..1 axis
presses against the top edge), both axes with labelled ticks and a light grid. The legend gives each
curve's AUC; the operating point of the threshold in use is marked on each curve with its TAR and FAR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import FacegateError

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: BGR, distinguishable for the common colour-vision deficiencies (Okabe-Ito blue, vermillion, green, purple)
COLOURS = [(178, 114, 0), (0, 94, 213), (115, 158, 0), (167, 121, 204)]


@dataclass(frozen=True, slots=True)
class RocSeries:
    """One curve: FAR/TAR per distance threshold, its AUC and the operating point at ``threshold``."""

    label: str
    far: NDArray[np.float64]
    tar: NDArray[np.float64]
    auc: float
    threshold: float
    point_far: float
    point_tar: float


def roc_series(label: str, distances: NDArray[np.float64], same: NDArray[np.bool_], threshold: float) -> RocSeries:
    """A :class:`RocSeries` from pair distances, labels and the threshold in use (accept ``d <= t``)."""
    from facegate.evaluation.metrics import roc

    curve = roc(distances, same)
    accepted = distances <= threshold
    point_tar = float(accepted[same].mean()) if same.any() else 0.0
    point_far = float(accepted[~same].mean()) if (~same).any() else 0.0
    return RocSeries(label, curve.far, curve.tar, float(curve.auc), float(threshold), point_far, point_tar)


def _tar_range(series: Sequence[RocSeries], far_floor: float) -> tuple[float, float, float]:
    """(lowest TAR shown, 1.0, tick step): the lowest TAR any curve reaches at FAR >= ``far_floor``."""
    lowest = 1.0
    for s in series:
        visible = s.tar[s.far >= far_floor]
        lowest = min(lowest, float(visible.min()) if visible.size else 0.0, s.point_tar)
    span = 1.0 - lowest
    step = next((st for st in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2) if span / st <= 8), 0.2)
    bottom = max(0.0, math.floor((lowest - step / 2) / step) * step)
    return bottom, 1.0, step


def _same_curves(series: Sequence[RocSeries]) -> list[list[int]]:
    """Indices of series grouped by identical curves (cosine, euclidean_l2 and angular rank pairs the
    same way, so their ROCs coincide: one legend entry instead of curves hidden under each other)."""
    groups: list[list[int]] = []
    for i, s in enumerate(series):
        for group in groups:
            first = series[group[0]]
            if (first.far.shape == s.far.shape and np.array_equal(first.far, s.far)
                    and np.array_equal(first.tar, s.tar) and first.point_tar == s.point_tar
                    and first.point_far == s.point_far):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _text(canvas: NDArray[np.uint8], text: str, org: tuple[int, int], scale: float = 0.45,
          colour: tuple[int, int, int] = (40, 40, 40), thickness: int = 1) -> None:
    cv2.putText(canvas, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def roc_plot_png(series: Sequence[RocSeries], path: Path, *, n_impostor: int, title: str = "ROC") -> None:
    """Writes the plot of ``series`` to ``path`` (PNG). ``n_impostor`` sets the log axis' left end."""
    if not series:
        raise FacegateError("no ROC curve to plot")
    w, h = 900, 620
    left, right, top, bottom = 80, 30, 50, 70
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    lo = math.floor(math.log10(1.0 / max(1, n_impostor)))
    tar_lo, tar_hi, step = _tar_range(series, 10.0**lo)

    def px(far: float, tar: float) -> tuple[int, int]:
        lx = (max(lo, math.log10(max(far, 1e-12))) - lo) / -lo
        ly = (min(tar_hi, max(tar_lo, tar)) - tar_lo) / (tar_hi - tar_lo)
        return round(x0 + lx * (x1 - x0)), round(y1 - ly * (y1 - y0))

    grid = (228, 228, 228)
    for e in range(lo, 1):
        for minor in range(2, 10) if e < 0 else ():
            gx, _ = px(minor * 10.0**e, tar_lo)
            cv2.line(canvas, (gx, y0), (gx, y1), (242, 242, 242), 1)
        gx, _ = px(10.0**e, tar_lo)
        cv2.line(canvas, (gx, y0), (gx, y1), grid, 1)
        cv2.line(canvas, (gx, y1), (gx, y1 + 6), (0, 0, 0), 1)
        label = "1" if e == 0 else f"1e{e}"
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        _text(canvas, label, (gx - tw // 2, y1 + 22))
    n_ticks = round((tar_hi - tar_lo) / step)
    for i in range(n_ticks + 1):
        tar = tar_lo + i * step
        _, gy = px(1.0, tar)
        cv2.line(canvas, (x0, gy), (x1, gy), grid, 1)
        cv2.line(canvas, (x0 - 6, gy), (x0, gy), (0, 0, 0), 1)
        label = f"{100 * tar:.1f}%" if step < 0.01 else f"{100 * tar:.0f}%"
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        _text(canvas, label, (x0 - 10 - tw, gy + th // 2))
    cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 0, 0), 1)
    _text(canvas, "false accept rate (FAR, log scale)", ((x0 + x1) // 2 - 130, h - 18), 0.5)
    ylabel = np.full((24, 260, 3), 255, dtype=np.uint8)
    _text(ylabel, "true accept rate (TAR)", (10, 17), 0.5)
    rotated = cv2.rotate(ylabel, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ry = (y0 + y1) // 2 - rotated.shape[0] // 2
    canvas[ry:ry + rotated.shape[0], 4:4 + rotated.shape[1]] = rotated
    _text(canvas, title, (x0, 30), 0.6, (0, 0, 0), 1)

    groups = _same_curves(series)
    legend = [(" = ".join(series[j].label for j in group), series[group[0]]) for group in groups]
    rows = [f"{label}: AUC {s.auc:.4f}; t={s.threshold:.3f} -> TAR {100 * s.point_tar:.1f}%, "
            f"FAR {100 * s.point_far:.2f}%" for label, s in legend]
    for i, (_, s) in enumerate(legend):
        colour = COLOURS[i % len(COLOURS)]
        pts = np.array([px(float(f), float(t)) for f, t in zip(s.far, s.tar, strict=True)], dtype=np.int32)
        cv2.polylines(canvas, [pts], False, colour, 2, cv2.LINE_AA)
    for i, (_, s) in enumerate(legend):  # operating points on top of every curve
        colour = COLOURS[i % len(COLOURS)]
        cx, cy = px(s.point_far, s.point_tar)
        cv2.circle(canvas, (cx, cy), 7, (255, 255, 255), 4, cv2.LINE_AA)
        cv2.circle(canvas, (cx, cy), 7, colour, 2, cv2.LINE_AA)
    # legend, bottom right inside the axes (the curves live at the top), on a white box
    widths = [cv2.getTextSize(r, FONT, 0.45, 1)[0][0] for r in rows]
    box_w, box_h = max(widths) + 60, 22 * len(rows) + 28
    bx, by = x1 - box_w - 8, y1 - box_h - 8
    cv2.rectangle(canvas, (bx, by), (bx + box_w, by + box_h), (255, 255, 255), -1)
    cv2.rectangle(canvas, (bx, by), (bx + box_w, by + box_h), (160, 160, 160), 1)
    _text(canvas, "o = operating point at the threshold t in use", (bx + 10, by + 18), 0.42, (90, 90, 90))
    for i, row in enumerate(rows):
        colour = COLOURS[i % len(COLOURS)]
        ly = by + 40 + 22 * i
        cv2.line(canvas, (bx + 10, ly - 5), (bx + 40, ly - 5), colour, 3, cv2.LINE_AA)
        _text(canvas, row, (bx + 48, ly), 0.45, (0, 0, 0))
    if not cv2.imwrite(str(path), canvas):
        raise FacegateError(f"cannot write {path}")


__all__ = ["RocSeries", "roc_plot_png", "roc_series"]
