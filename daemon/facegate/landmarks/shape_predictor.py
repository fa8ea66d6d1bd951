"""dlib's 5-point shape predictor (an ensemble of regression trees) in numpy.

This re-implements the run-time half of dlib's ``shape_predictor`` (Kazemi & Sullivan, "One
Millisecond Face Alignment with an Ensemble of Regression Trees", CVPR 2014) from the weights that
``facegate.convert.shape_predictor`` extracts into an ``.npz``:

* a shape is ``P`` points in the unit square of the face rectangle; it starts at the mean shape;
* each of ``C`` cascades samples ``F`` pixels at fixed offsets (``deltas``) from their nearest mean
  shape point (``anchor_idx``), carried along by the similarity transform from the mean shape to the
  current shape, rounded to whole pixels; the intensity is dlib's ``(r + g + b) // 3``;
* each of its ``T`` trees is complete of depth ``D``: node ``i`` goes left (``2i + 1``) when
  ``value[idx1] - value[idx2] > thresh``, else right; the leaf's ``(P, 2)`` vector is added to the
  shape. All trees of a cascade see the same pixels, so they are walked together, level by level.

dlib's coordinates put the origin at the top-left pixel's centre, facegate's at its corner: the
landmarker converts both ways. dlib rounds the final points to whole pixels;
:meth:`ShapePredictor.predict` returns them unrounded (more precise for alignment) unless
``round_points`` is set.

The predictor was trained on rectangles from dlib's HOG face detector, so a detector's box is first
mapped to such a rectangle with the linear :class:`RectMapping` stored in the manifest's decoder block.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest, default_zoo, verify_file
from facegate.landmarks.base import DLIB5_NAMES, Landmarker, with_points
from facegate.types import Box, FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

#: arrays of the ``.npz`` and the dtypes they keep at run time: a stored dtype in the list is kept as
#: is, any other is converted to the last
NPZ_ARRAYS: dict[str, tuple[str, ...]] = {
    "initial_shape": ("float32",),  # (P, 2) mean shape in the rectangle's unit square
    "split_idx": ("uint16",),  # (C, T, S, 2) feature indices compared by each split node (1/4 of intp)
    # (C, T, S): int8 floor(thresh) as shipped (exact: the compared pixel differences are integers)
    "split_thresh": ("int8", "float32"),
    # (C, T, L, P, 2) shape increments: float16 as shipped, kept so in memory (2.4 MB instead of 4.8; the
    # predictor widens the leaves it gathers through a lookup table, exactly), float32 also accepted
    "leaf_values": ("float16", "float32"),
    "anchor_idx": ("intp",),  # (C, F) mean-shape point each feature pixel hangs off
    "deltas": ("float32",),  # (C, F, 2) offset of each feature pixel from its anchor
}


@functools.cache
def _float16_table() -> NDArray[np.float32]:
    """Every float16 bit pattern's float32 value (exact), 256 kB."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    return bits.view(np.float16).astype(np.float32)


def _runtime_dtype(array: NDArray[Any], accepted: tuple[str, ...]) -> NDArray[Any]:
    dtypes = [np.dtype(name) for name in accepted]
    dtype = array.dtype if array.dtype in dtypes else dtypes[-1]
    return np.ascontiguousarray(array, dtype=dtype)


@dataclass(frozen=True, slots=True)
class RectMapping:
    """Maps a detector box to the dlib-HOG-style rectangle the predictor was trained on.

    With the box centre ``(cx, cy)`` and size ``(w, h)``: the rectangle's centre is
    ``(cx + dx * w, cy + dy * h)`` and its corner-to-corner span ``s * w`` (dlib's ``right - left``,
    one less than its width), square.
    """

    dx: float = 0.0
    dy: float = 0.0
    s: float = 1.0

    def rect(self, box: Box) -> tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` in source pixels (floats; dlib's are whole pixels)."""
        cx, cy = box.center
        w, h = box.width, box.height
        x = cx + self.dx * w
        y = cy + self.dy * h
        half = self.s * w / 2.0
        return x - half, y - half, x + half, y + half

    @classmethod
    def from_options(cls, options: Any) -> RectMapping:
        if not isinstance(options, dict):
            raise ModelError(f"rect mapping must be a mapping of dx, dy, s, got {options!r}")
        try:
            return cls(dx=float(options["dx"]), dy=float(options["dy"]), s=float(options["s"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"invalid rect mapping {options!r}: {err}") from err


@dataclass(frozen=True, slots=True)
class ShapePredictorWeights:
    """The regression-tree ensemble, shapes as in :data:`NPZ_ARRAYS`."""

    initial_shape: NDArray[np.float32]
    split_idx: NDArray[np.uint16]
    split_thresh: NDArray[Any]  # int8 or float32
    leaf_values: NDArray[Any]  # float16 or float32
    anchor_idx: NDArray[np.intp]
    deltas: NDArray[np.float32]

    @property
    def num_parts(self) -> int:
        return int(self.initial_shape.shape[0])

    @property
    def depth(self) -> int:
        """Levels of split nodes (trees are complete: ``S = 2**depth - 1``)."""
        return int(self.split_thresh.shape[2] + 1).bit_length() - 1

    @classmethod
    def load(cls, path: Path) -> ShapePredictorWeights:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: _runtime_dtype(npz[name], accepted) for name, accepted in NPZ_ARRAYS.items()}
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"cannot read shape predictor weights {path.name}: {err}") from err
        weights = cls(**arrays)
        weights.validate(path.name)
        return weights

    def validate(self, label: str) -> None:
        c, t, s, _ = self.split_idx.shape
        parts = self.num_parts
        leaves = s + 1
        if leaves & (leaves - 1):
            raise ModelError(f"{label}: trees with {s} splits are not complete")
        expected = {
            "split_thresh": (c, t, s),
            "leaf_values": (c, t, leaves, parts, 2),
            "anchor_idx": (c, self.deltas.shape[1]),
            "deltas": (c, self.anchor_idx.shape[1], 2),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ModelError(f"{label}: {name} has shape {getattr(self, name).shape}, want {shape}")
        if int(self.split_idx.max()) >= self.deltas.shape[1] or int(self.anchor_idx.max()) >= parts:
            raise ModelError(f"{label}: feature or anchor index out of range")


def _similarity_2x2(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scale-rotation part of the least-squares similarity transform mapping ``src`` onto ``dst``."""
    a = src - src.mean(axis=0)
    b = dst - dst.mean(axis=0)
    norm = float((a * a).sum())
    if norm == 0.0:
        return np.eye(2)
    p = float((a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum()) / norm
    q = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / norm
    return np.array([[p, -q], [q, p]])


def _intensities(image: NDArray[np.uint8], xs: NDArray[np.int64], ys: NDArray[np.int64]) -> NDArray[np.float32]:
    """dlib's ``get_pixel_intensity`` at whole-pixel positions: ``(r+g+b)//3`` (0 outside the image)."""
    h, w = image.shape[:2]
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    if image.flags.c_contiguous:
        flat = np.where(inside, ys * w + xs, 0)
        gathered = image.reshape(h * w, -1).take(flat, axis=0)
    else:  # a view: index it in place rather than copying the whole frame
        gathered = image[np.where(inside, ys, 0), np.where(inside, xs, 0)].reshape(xs.shape[0], -1)
    values = gathered[:, :3].astype(np.int32).sum(axis=1) // min(3, gathered.shape[1])
    return np.where(inside, values, 0).astype(np.float32)


class ShapePredictor:
    """Runs a :class:`ShapePredictorWeights` ensemble on an image and a dlib-style rectangle."""

    def __init__(self, weights: ShapePredictorWeights) -> None:
        self.weights = weights
        cascades, trees, splits, _ = weights.split_idx.shape
        leaves = splits + 1
        self._depth = weights.depth
        self._splits = splits
        # flat per-cascade tables: 1-D ``take`` is several times faster than 2-D fancy indexing; the
        # feature indices stay uint16 (0.45 MB for both tables instead of 1.8 MB of intp)
        self._idx1 = np.ascontiguousarray(weights.split_idx[..., 0].reshape(cascades, trees * splits))
        self._idx2 = np.ascontiguousarray(weights.split_idx[..., 1].reshape(cascades, trees * splits))
        self._thresh = np.ascontiguousarray(weights.split_thresh.reshape(cascades, trees * splits))
        leaf_rows = np.ascontiguousarray(weights.leaf_values.reshape(cascades, trees * leaves, -1))
        # float16 leaves are gathered as their bit patterns and widened by a 65,536-entry table: as fast
        # as gathering float32 rows, where numpy's float16 -> float32 cast made a prediction ~40% slower
        # (3.3 against 2.3 ms), and bit-identical to widening the whole table at load
        self._widen = _float16_table() if leaf_rows.dtype == np.float16 else None
        self._leaves = leaf_rows.view(np.uint16) if self._widen is not None else leaf_rows
        self._split_base = np.arange(trees, dtype=np.intp) * splits
        self._leaf_base = np.arange(trees, dtype=np.intp) * leaves - splits
        self._initial64 = weights.initial_shape.astype(np.float64)

    def predict(
        self,
        image: NDArray[np.uint8],
        rect: tuple[float, float, float, float],
        *,
        round_points: bool = False,
    ) -> NDArray[np.float64]:
        """Points ``(P, 2)`` float64 in ``image`` pixels.

        ``image`` is BGR/RGB uint8 ``(H, W, 3)`` (the intensity is channel-order free) or gray
        ``(H, W)``; ``rect`` is ``(left, top, right, bottom)`` as dlib stores rectangles (``right -
        left`` is the span between the outer pixel centres).
        """
        w = self.weights
        left, top, right, bottom = (float(v) for v in rect)
        sx, sy = right - left, bottom - top
        shape = w.initial_shape.copy()  # float32, accumulated like dlib
        parts = shape.shape[0]
        for cascade in range(w.split_idx.shape[0]):
            m = _similarity_2x2(self._initial64, shape.astype(np.float64)).astype(np.float32)
            norm_pts = w.deltas[cascade] @ m.T + shape[w.anchor_idx[cascade]]
            px = np.floor(left + norm_pts[:, 0].astype(np.float64) * sx + 0.5).astype(np.int64)
            py = np.floor(top + norm_pts[:, 1].astype(np.float64) * sy + 0.5).astype(np.int64)
            values = _intensities(image, px, py)
            # every split of every tree decided at once (a few large numpy calls instead of many small
            # ones per level: ~2x faster), then each tree walks its own decisions
            go_left = (values.take(self._idx1[cascade]) - values.take(self._idx2[cascade])) > self._thresh[cascade]
            node = np.zeros(self._split_base.shape[0], dtype=np.intp)
            for _ in range(self._depth):
                node = 2 * node + 2 - go_left.take(self._split_base + node)
            increments = self._leaves[cascade].take(self._leaf_base + node, axis=0)
            if self._widen is not None:
                increments = self._widen.take(increments)
            # dlib adds the leaves one tree after another in float32; cumsum keeps that order (a
            # pairwise sum differs in the last bits, which can move a rounded feature pixel later on)
            increments[0] += shape.reshape(-1)
            shape = np.cumsum(increments, axis=0, dtype=np.float32)[-1].reshape(parts, 2)
        out = np.empty(shape.shape, dtype=np.float64)
        out[:, 0] = left + shape[:, 0].astype(np.float64) * sx
        out[:, 1] = top + shape[:, 1].astype(np.float64) * sy
        if round_points:
            out = np.floor(out + 0.5)
        return out


class ShapePredictorLandmarker(Landmarker):
    """Adds dlib's five points to a detection by running the regression trees in its box."""

    name = "shape_predictor"
    point_names = DLIB5_NAMES

    def __init__(self, manifest: ModelManifest | None = None, *, num_threads: int = 1) -> None:
        del num_threads  # numpy code: single-threaded by design
        self.manifest = manifest if manifest is not None else default_zoo().family("landmarks", "shape_predictor")
        path = verify_file(self.manifest)
        self.predictor = ShapePredictor(ShapePredictorWeights.load(path))
        decoder = self.manifest.decoder
        names = tuple(decoder.get("point_names", DLIB5_NAMES))
        if names != DLIB5_NAMES or self.predictor.weights.num_parts != len(names):
            raise ModelError(f"{self.manifest.name}: point_names {names} do not match the 5-point model")
        mappings = decoder.get("rect_mapping", {})
        if not isinstance(mappings, dict) or "default" not in mappings:
            raise ModelError(f"{self.manifest.name}: decoder.rect_mapping needs a 'default' entry")
        self.mappings = {str(k): RectMapping.from_options(v) for k, v in mappings.items()}

    def rect_for(self, detection: FaceDetection) -> tuple[float, float, float, float]:
        """The dlib-HOG-style rectangle (dlib's pixel-centre coordinates) for a detection, by the
        mapping fitted for its detector."""
        mapping = self.mappings.get(detection.detector, self.mappings["default"])
        return mapping.rect(centre_coordinates(detection.box))

    def landmarks(self, image: ImageBGR, detection: FaceDetection) -> FaceDetection:
        points = self.predictor.predict(image, self.rect_for(detection))
        return with_points(detection, DLIB5_NAMES, points + 0.5)


def centre_coordinates(box: Box) -> Box:
    """``box`` (origin at the top-left pixel's corner, facegate's convention) in dlib's coordinates,
    where the top-left pixel's centre is the origin."""
    return Box(box.x1 - 0.5, box.y1 - 0.5, box.x2 - 0.5, box.y2 - 0.5)


__all__ = [
    "NPZ_ARRAYS",
    "RectMapping",
    "ShapePredictor",
    "ShapePredictorLandmarker",
    "ShapePredictorWeights",
    "centre_coordinates",
]
