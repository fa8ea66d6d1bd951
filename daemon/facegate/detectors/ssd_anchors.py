"""MediaPipe's SSD anchor generator (``SsdAnchorsCalculator``) as pure numpy.

Anchors are returned as ``(N, 4)`` float32 rows ``(cx, cy, w, h)`` normalised to the model input
(0..1), in the order the model emits its predictions: layer groups of equal stride, then feature-map
rows, then columns, then the anchors of one cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class AnchorSpec:
    """The options of MediaPipe's ``SsdAnchorsCalculatorOptions`` that BlazeFace-style models use."""

    input_width: int
    input_height: int
    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def _cell_shapes(spec: AnchorSpec, first: int, last: int) -> list[tuple[float, float]]:
    """``(width, height)`` of every anchor of one cell for the layers ``first..last-1`` (same stride)."""
    num_layers = len(spec.strides)
    ratios: list[float] = []
    scales: list[float] = []
    for layer in range(first, last):
        scale = _scale(spec.min_scale, spec.max_scale, layer, num_layers)
        if layer == 0 and spec.reduce_boxes_in_lowest_layer:
            ratios += [1.0, 2.0, 0.5]
            scales += [0.1, scale, scale]
            continue
        for ratio in spec.aspect_ratios:
            ratios.append(ratio)
            scales.append(scale)
        if spec.interpolated_scale_aspect_ratio > 0.0:
            following = 1.0 if layer == num_layers - 1 else _scale(
                spec.min_scale, spec.max_scale, layer + 1, num_layers
            )
            scales.append(math.sqrt(scale * following))
            ratios.append(spec.interpolated_scale_aspect_ratio)
    return [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios, strict=True)]


def ssd_anchors(spec: AnchorSpec) -> NDArray[np.float32]:
    """All anchors ``(N, 4)`` float32 ``(cx, cy, w, h)``; ``w = h = 1`` with ``fixed_anchor_size``."""
    strides: Sequence[int] = spec.strides
    groups: list[NDArray[np.float32]] = []
    first = 0
    while first < len(strides):
        last = first
        while last < len(strides) and strides[last] == strides[first]:
            last += 1
        shapes = np.asarray(_cell_shapes(spec, first, last), dtype=np.float64)  # (A, 2)
        rows = math.ceil(spec.input_height / strides[first])
        cols = math.ceil(spec.input_width / strides[first])
        ys, xs = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
        cx = (xs + spec.anchor_offset_x) / cols
        cy = (ys + spec.anchor_offset_y) / rows
        per_cell = shapes.shape[0]
        group = np.empty((rows, cols, per_cell, 4), dtype=np.float64)
        group[..., 0] = cx[:, :, None]
        group[..., 1] = cy[:, :, None]
        if spec.fixed_anchor_size:
            group[..., 2:] = 1.0
        else:
            group[..., 2] = shapes[None, None, :, 0]
            group[..., 3] = shapes[None, None, :, 1]
        groups.append(group.reshape(-1, 4).astype(np.float32))
        first = last
    return np.concatenate(groups, axis=0)


__all__ = ["AnchorSpec", "ssd_anchors"]
