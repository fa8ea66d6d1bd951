"""dlib's MMOD CNN face detector ("dlib"), converted to TFLite, with dlib's own decoding.

dlib runs the network once over a *tiled pyramid*: the frame and its successive ``5/6`` reductions
(``pyramid_down<6>``) packed into one image with 10 px between tiles and an 11 px outer border,
every reduction bilinearly resized from the previous tile (align-corners sampling, edge clamped),
padding at the mean colour (zero after normalisation). Every output cell scoring above 0 is a
detection: it maps back to the input through the three stride-2 5x5 convolutions (``8 * cell + 14``),
an 80x80 window is centred there, assigned to the nearest tile and scaled up by that tile's
pyramid level (``p * 6/5 + 0.3`` per level), rounded to integers; then greedy NMS with dlib's
overlap test (IoU > 0.338 or one box covering the other). This module reproduces each step, so
boxes equal dlib's up to the network's float rounding.

MMOD gives no landmarks: eyes are estimated from the box with fractions fitted by the converter
(:mod:`facegate.detectors.box_eyes`). Scores are dlib's confidences mapped through the logistic
function (dlib's threshold 0 becomes 0.5).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facegate.detectors.base import FaceDetector
from facegate.detectors.box_eyes import EyeFractions, eyes_from_box
from facegate.detectors.options import MmodOptions
from facegate.errors import ImageError, ModelError
from facegate.inference.manifest import ModelManifest, ModelZoo, default_zoo, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.types import Box, FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

FAMILY = "dlib"
LANDMARK_NAMES = ("right_eye", "left_eye")
F32 = NDArray[np.float32]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MmodDecoder(_Strict):
    """The manifest ``decoder`` block (dlib's input-layer and loss-layer settings)."""

    pyramid_rate: float = Field(gt=0.0, lt=1.0, description="size ratio of successive pyramid levels")
    pyramid_padding: int = Field(ge=0, description="pixels between tiles")
    pyramid_outer_padding: int = Field(ge=0, description="pixels around the tiled image")
    min_level_height: int = Field(ge=1, description="the pyramid stops before a level this short")
    pad_rgb: tuple[float, float, float] = Field(description="padding colour (the input mean, zero once normalised)")
    window: tuple[int, int] = Field(description="detection window (width, height) in tile pixels")
    stride: int = Field(gt=0, description="input pixels per output cell")
    offset: int = Field(ge=0, description="input position of output cell 0")
    min_score: float = Field(description="dlib confidence threshold (dlib's adjust_threshold)")
    nms_iou: float = Field(gt=0.0, le=1.0)
    nms_covered: float = Field(gt=0.0, le=1.0, description="suppress when the overlap covers this much of a box")
    eye_fallback: EyeFractions


def parse_decoder(manifest: ModelManifest) -> MmodDecoder:
    try:
        return MmodDecoder.model_validate(manifest.decoder)
    except ValidationError as err:
        raise ModelError(f"model manifest {manifest.name}: invalid MMOD decoder options: {err}") from err


@dataclass(frozen=True, slots=True)
class Rect:
    """dlib ``rectangle``: inclusive integer corners."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


def _resize_matrix(src: int, dst: int) -> tuple[NDArray[np.intp], NDArray[np.intp], F32]:
    """dlib's float ``resize_image`` along one axis: ``x = i * (src-1)/(dst-1)``, neighbour clamped."""
    scale = (src - 1) / max(dst - 1, 1)
    x = np.arange(dst, dtype=np.float64) * scale
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, (x - lo).astype(np.float32)


@dataclass(frozen=True, slots=True)
class TiledPyramid:
    """dlib's ``compute_tiled_image_pyramid_details`` for one frame size."""

    rects: tuple[Rect, ...]
    height: int
    width: int
    rate: float

    @classmethod
    def for_size(cls, nr: int, nc: int, *, rate: float, padding: int, outer_padding: int,
                 min_height: int) -> TiledPyramid:
        sizes = [(nr, nc)]
        while True:
            nr, nc = math.floor(rate * nr), math.floor(rate * nc)
            if nr * nc == 0 or nr < min_height:
                break
            sizes.append((nr, nc))
        total_height = sum(h + padding for h, _ in sizes) - 2 * padding
        height = prev_width = 0
        first_h, first_w = sizes[0]
        for h, w in sizes:
            if w <= first_w - prev_width - padding and (height - first_h) * 2 >= total_height - first_h:
                break
            height += h + padding
            prev_width = w
        height -= padding
        rects: list[Rect] = []
        y = outer_padding
        i = 0
        while y < height + outer_padding and i < len(sizes):
            h, w = sizes[i]
            rects.append(Rect(outer_padding, y, outer_padding + w - 1, y + h - 1))
            y += h + padding
            i += 1
        y -= padding
        first = rects[0]
        while i < len(sizes):
            h, w = sizes[i]
            right, bottom = outer_padding + first_w - 1, y - 1
            rect = Rect(right - (w - 1), bottom - (h - 1), right, bottom)
            overlaps = not (rect.left > first.right or rect.right < first.left or rect.top > first.bottom
                            or rect.bottom < first.top)
            if overlaps:
                break
            rects.append(rect)
            y -= h + padding
            i += 1
        return cls(tuple(rects), height + 2 * outer_padding, first_w + 2 * outer_padding, rate)

    def build(self, rgb: F32, pad: tuple[float, float, float]) -> F32:
        """The tiled image ``(height, width, 3)`` float32 of ``rgb`` (float32 ``(H, W, 3)``).

        Works on channel planes (twice as fast as interleaved pixels) and returns a contiguous copy.
        """
        canvas = np.empty((3, self.height, self.width), dtype=np.float32)
        for c in range(3):
            canvas[c] = pad[c]
        previous: F32 = np.ascontiguousarray(rgb.transpose(2, 0, 1))
        r0 = self.rects[0]
        canvas[:, r0.top : r0.bottom + 1, r0.left : r0.right + 1] = previous
        for rect in self.rects[1:]:
            ylo, yhi, fy = _resize_matrix(previous.shape[1], rect.height)
            xlo, xhi, fx = _resize_matrix(previous.shape[2], rect.width)
            top, bottom = previous[:, ylo], previous[:, yhi]
            rows = top + (bottom - top) * fy[None, :, None]
            left, right = rows[:, :, xlo], rows[:, :, xhi]
            level: F32 = left + (right - left) * fx[None, None, :]
            canvas[:, rect.top : rect.bottom + 1, rect.left : rect.right + 1] = level
            previous = level
        out: F32 = np.ascontiguousarray(canvas.transpose(1, 2, 0))
        return out

    def nearest(self, x: float, y: float) -> int:
        """dlib's ``nearest_rect``: the tile containing ``(x, y)``, else the closest one."""
        best, best_dist = 0, math.inf
        for i, r in enumerate(self.rects):
            if r.left <= x <= r.right and r.top <= y <= r.bottom:
                return i
            dx = max(r.left - x, 0.0, x - r.right)
            dy = max(r.top - y, 0.0, y - r.bottom)
            dist = math.hypot(dx, dy)
            if dist < best_dist:
                best, best_dist = i, dist
        return best

    def to_image(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """dlib's ``tiled_pyramid_to_image`` for a ``drectangle``."""
        level = self.nearest(round((x1 + x2) / 2.0), round((y1 + y2) / 2.0))
        origin = self.rects[level]
        coords = [x1 - origin.left, y1 - origin.top, x2 - origin.left, y2 - origin.top]
        up = 1.0 / self.rate
        for _ in range(level):
            coords = [c * up + 0.3 for c in coords]
        return coords[0], coords[1], coords[2], coords[3]


def _dlib_round(v: float) -> int:
    return math.floor(v + 0.5)


def overlaps(a: Rect, b: Rect, iou: float, covered: float) -> bool:
    """dlib's ``test_box_overlap`` on inclusive rectangles."""
    iw = min(a.right, b.right) - max(a.left, b.left) + 1
    ih = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = float(iw * ih)
    outer = float((max(a.right, b.right) - min(a.left, b.left) + 1) * (max(a.bottom, b.bottom) - min(a.top, b.top) + 1))
    return inner / outer > iou or inner / (a.width * a.height) > covered or inner / (b.width * b.height) > covered


class MmodDetector(FaceDetector):
    """dlib's CNN face detector on a TFLite network; boxes as dlib reports them."""

    tells_orientation = False

    name = "dlib"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1, options: MmodOptions | None = None) -> None:
        self.manifest = manifest
        self.options = options or MmodOptions()
        self.decoder = parse_decoder(manifest)
        self.model = TfliteModel(verify_file(manifest), num_threads=num_threads)
        self._out = self.model.output_index(manifest.output("scores").tensor)
        self._pyramids: dict[tuple[int, int], TiledPyramid] = {}
        threshold = self.options.score_threshold
        self.raw_threshold = self.decoder.min_score if threshold is None else _logit(threshold)

    def pyramid(self, height: int, width: int) -> TiledPyramid:
        key = (height, width)
        found = self._pyramids.get(key)
        if found is None:
            d = self.decoder
            found = TiledPyramid.for_size(height, width, rate=d.pyramid_rate, padding=d.pyramid_padding,
                                          outer_padding=d.pyramid_outer_padding, min_height=d.min_level_height)
            if len(self._pyramids) > 8:
                self._pyramids.clear()
            self._pyramids[key] = found
        return found

    def scores(self, rgb: F32) -> tuple[F32, TiledPyramid]:
        """Raw scores ``(H', W')`` of the tiled pyramid of ``rgb`` (float32 RGB ``(H, W, 3)``)."""
        pyramid = self.pyramid(rgb.shape[0], rgb.shape[1])
        tiled = pyramid.build(rgb, self.decoder.pad_rgb)
        self.model.resize_input((1, tiled.shape[0], tiled.shape[1], 3))
        out = self.model.run([tiled[None]])[self._out]
        return out[0, :, :, 0], pyramid

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"{self.name}: want a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
        if min(image.shape[:2]) < 2:
            return []
        rgb = np.ascontiguousarray(image[:, :, ::-1], dtype=np.float32)
        raw, pyramid = self.scores(rgb)
        d = self.decoder
        ys, xs = np.nonzero(raw > self.raw_threshold)
        order = np.argsort(-raw[ys, xs], kind="stable")
        half_w, half_h = (d.window[0] - 1) / 2.0, (d.window[1] - 1) / 2.0
        kept: list[tuple[Rect, float]] = []
        for i in order:
            px = float(xs[i] * d.stride + d.offset)
            py = float(ys[i] * d.stride + d.offset)
            x1, y1, x2, y2 = pyramid.to_image(px - half_w, py - half_h, px + half_w, py + half_h)
            rect = Rect(_dlib_round(x1), _dlib_round(y1), _dlib_round(x2), _dlib_round(y2))
            if any(overlaps(k, rect, d.nms_iou, d.nms_covered) for k, _ in kept):
                continue
            kept.append((rect, float(raw[ys[i], xs[i]])))
        return self._faces(kept, image.shape[1], image.shape[0])

    def _faces(self, kept: list[tuple[Rect, float]], width: int, height: int) -> list[FaceDetection]:
        faces: list[FaceDetection] = []
        for rect, raw in kept:
            # dlib's inclusive integer corners -> corner-origin box
            x1, y1, x2, y2 = float(rect.left), float(rect.top), float(rect.right + 1), float(rect.bottom + 1)
            if min(x2 - x1, y2 - y1) < self.options.min_face_px:
                continue
            box = Box(max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if box.width <= 0 or box.height <= 0:
                continue
            # eyes from the unclipped box: clipping a face cut by the frame edge would move them
            eyes = eyes_from_box(Box(x1, y1, x2, y2), self.decoder.eye_fallback)
            faces.append(FaceDetection(box=box, score=_logistic(raw), landmarks=eyes, landmark_names=LANDMARK_NAMES,
                                       detector=self.name))
            if self.options.max_faces is not None and len(faces) >= self.options.max_faces:
                break
        return faces


def _logistic(x: float) -> float:
    return 0.5 * (math.tanh(0.5 * x) + 1.0)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def build(options: MmodOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> MmodDetector:
    """The "dlib" detector."""
    manifest = (zoo or default_zoo()).family("detector", FAMILY, options.variant)
    return MmodDetector(manifest, num_threads=num_threads, options=options)


__all__ = ["FAMILY", "MmodDecoder", "MmodDetector", "MmodOptions", "Rect", "TiledPyramid", "build", "overlaps"]
