"""Face alignment: landmarks -> similarity transform -> a chip in the embedder's template.

The template comes from the embedder's manifest (:class:`~facegate.inference.manifest.AlignmentSpec`),
never from constants here. Two methods:

``dlib``
    dlib's ``get_face_chip_details`` + ``extract_image_chip`` as dlib itself computes them, so chips
    match the ones dlib's ResNet was trained on: the least-squares similarity transform maps template
    points ``(padding + p) / (2 * padding + 1) * size`` onto the landmarks; dlib then describes the
    chip as a rectangle ``size * scale`` wide (its corner-to-corner span one pixel less) centred on the
    image of the template centre ``size / 2`` and rotated by the transform's angle, so chip pixel 0 and
    ``size - 1`` land on the rectangle's edges: the sampling step is ``(size * scale - 1) / (size - 1)``
    and the template centre lands on chip pixel ``(size - 1) / 2``. While the rectangle halved is
    still larger than the chip, the source is reduced with dlib's ``pyramid_down<2>`` (5-tap
    ``[1 4 6 4 1]`` filter, integer arithmetic, the same odd ``p / 2 - (1.25, 0.75)`` coordinate map),
    then sampled bilinearly; values are truncated to uint8 and pixels whose 2x2 neighbourhood leaves
    the source are black.

``plain``
    a least-squares similarity transform of the available template points onto the landmarks (e.g.
    ArcFace's 112x112 five points), sampled with :func:`cv2.warpAffine` (bilinear, black border).

Landmark names use the subject's perspective and coordinates put the origin at the top-left pixel's
corner (see :mod:`facegate.types`); dlib's and OpenCV's geometry put it at that pixel's centre, so
points are shifted by half a pixel on the way in and ``AlignedFace.transform`` back on the way out.
When a detection lacks the template's points, the aligner's :class:`~facegate.landmarks.base.Landmarker` adds them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import ConfigError, NoFaceError
from facegate.inference.manifest import AlignmentSpec
from facegate.landmarks.base import Landmarker, has_points, points_of
from facegate.orientation import UpsideDownFaceError, is_upright, upright_in_chip
from facegate.types import LANDMARK_NAMES, AlignedFace, FaceDetection, FaceQuality, ImageBGR

logger = logging.getLogger(__name__)

Float64Array = NDArray[np.float64]

#: eye-centre estimates by preference: the mean of dlib's corners (precise), else the detector's eyes
_EYE_PAIRS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("left_eye_outer", "left_eye_inner"), ("right_eye_outer", "right_eye_inner")),
    (("left_eye",), ("right_eye",)),
)
_NOSE_NAMES: tuple[str, ...] = ("nose_bottom", "nose")


# -- geometry ------------------------------------------------------------------------------------


def similarity_transform(src: Float64Array, dst: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` ``(N, 2)`` onto ``dst``.

    Returns ``(m, t)``: ``dst ~ src @ m.T + t`` with ``m`` a 2x2 scaled rotation.
    """
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    a = src - src_mean
    b = dst - dst_mean
    norm = float((a * a).sum())
    if norm <= 0.0:
        raise NoFaceError("degenerate landmarks: all template points coincide")
    p = float((a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum()) / norm
    q = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / norm
    m = np.array([[p, -q], [q, p]])
    return m, dst_mean - m @ src_mean


def _affine_from_3(src: Float64Array, dst: Float64Array) -> Float64Array:
    """The 2x3 affine matrix mapping three ``src`` points exactly onto ``dst``."""
    a = np.hstack([src, np.ones((3, 1))])
    solved: Float64Array = np.linalg.solve(a, dst).T
    return solved


def _rotate(center: Float64Array, points: Float64Array, angle: float) -> Float64Array:
    c, s = math.cos(angle), math.sin(angle)
    d = points - center
    return np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1) + center


@dataclass(frozen=True, slots=True)
class _DRect:
    """dlib's ``drectangle``: inclusive corners, ``width = right - left + 1``."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def area(self) -> float:
        if self.left > self.right or self.top > self.bottom:
            return 0.0
        return (self.right - self.left + 1.0) * (self.bottom - self.top + 1.0)

    @property
    def center(self) -> Float64Array:
        return np.array([(self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0])

    def corners(self) -> Float64Array:
        """tl, tr, bl, br."""
        return np.array([[self.left, self.top], [self.right, self.top],
                         [self.left, self.bottom], [self.right, self.bottom]])

    def down(self) -> _DRect:
        # pyramid_down<2>::rect_down: each corner p -> p / 2 - (1.25, 0.75)
        return _DRect(self.left / 2 - 1.25, self.top / 2 - 0.75, self.right / 2 - 1.25, self.bottom / 2 - 0.75)

    def shifted(self, dx: float, dy: float) -> _DRect:
        return _DRect(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)


_PYR_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32)


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def pyramid_down2(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """dlib's ``pyramid_down<2>`` of a uint8 ``(H, W, C)`` image: ``((H-3)//2, (W-3)//2, C)``.

    Output pixel ``(r, c)`` is the ``[1 4 6 4 1]^2 / 256`` weighted sum (floored) of source rows
    ``2r..2r+4`` and columns ``2c..2c+4``.
    """
    h, w = image.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, *image.shape[2:]), dtype=np.uint8)
    nc = (w - 3) // 2
    nr = (h - 3) // 2
    # every partial sum is an integer below 2**24, so float32 filtering is exact
    filtered = cv2.sepFilter2D(image, cv2.CV_32F, _PYR_TAPS, _PYR_TAPS, borderType=cv2.BORDER_REPLICATE)
    if filtered.ndim == 2 and image.ndim == 3:
        filtered = filtered[:, :, None]
    kept = filtered[2 : 2 + 2 * nr : 2, 2 : 2 + 2 * nc : 2]
    out: NDArray[np.uint8] = np.floor(kept / 256.0).astype(np.uint8)
    return out


def _bilinear_dlib(image: NDArray[np.uint8], xs: Float64Array, ys: Float64Array) -> NDArray[np.uint8]:
    """dlib's ``interpolate_bilinear`` at ``(xs, ys)`` (same shape): truncated, black off-image.

    The arithmetic is dlib's, in float64 and in its order, so truncation lands on the same integers.
    """
    h, w = image.shape[:2]
    src = np.ascontiguousarray(image).reshape(h * w, -1)
    left = np.floor(xs).astype(np.int64)
    top = np.floor(ys).astype(np.int64)
    inside = ((left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)).reshape(-1)
    flat = np.where(inside, (top * w + left).reshape(-1), 0)
    fx = (xs - left).reshape(-1, 1)
    fy = (ys - top).reshape(-1, 1)
    gx = 1.0 - fx
    tl = src.take(flat, axis=0)
    tr = src.take(flat + 1, axis=0)
    bl = src.take(flat + w, axis=0)
    br = src.take(flat + w + 1, axis=0)
    value = (1.0 - fy) * (gx * tl + fx * tr) + fy * (gx * bl + fx * br)
    value[~inside] = 0.0
    out: NDArray[np.uint8] = value.astype(np.uint8).reshape(*xs.shape, src.shape[1])  # truncation, like dlib
    return out


@dataclass(frozen=True, slots=True)
class DlibChip:
    """A dlib ``chip_details``: the rectangle (source pixels) and angle a chip covers."""

    rect: _DRect
    angle: float
    size: int

    def chip_to_source(self) -> Float64Array:
        """2x3 affine matrix mapping chip pixels to source pixels (before any pyramid)."""
        return self._chip_to_rect(self.rect)

    def _chip_to_rect(self, rect: _DRect) -> Float64Array:
        corners = rect.corners()
        rotated = _rotate(rect.center, corners[[0, 1, 2]], self.angle)
        last = float(self.size - 1)
        chip = np.array([[0.0, 0.0], [last, 0.0], [0.0, last]])
        return _affine_from_3(chip, rotated)


def dlib_chip_details(points: Float64Array, template: Float64Array, size: int, padding: float) -> DlibChip:
    """dlib's ``get_face_chip_details`` for ``points`` ``(N, 2)`` matched to ``template`` ``(N, 2)``."""
    chip_points = (padding + template) / (2 * padding + 1) * size
    m, t = similarity_transform(chip_points, points)
    p = m @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    center = m @ np.array([size / 2.0, size / 2.0]) + t
    span = size * scale - 1.0  # centered_drect subtracts one from the width
    rect = _DRect(center[0] - span / 2, center[1] - span / 2, center[0] + span / 2, center[1] + span / 2)
    return DlibChip(rect=rect, angle=angle, size=size)


def extract_dlib_chip(image: NDArray[np.uint8], chip: DlibChip) -> NDArray[np.uint8]:
    """dlib's ``extract_image_chip`` (bilinear, pyramid for large reductions) -> ``(size, size, C)``."""
    size = chip.size
    target_area = float(size * size)
    h, w = image.shape[:2]
    depth = 0
    grow = 2.0
    rect = chip.rect.down()
    while rect.area > target_area:
        rect = rect.down()
        depth += 1
        grow = grow * 2 + 2
    rotated = _rotate(chip.rect.center, chip.rect.corners(), chip.angle)
    # grow_rect(rot_rect, grow).intersect(get_rect(img)), converted to an integer dlib rectangle
    bl = max(float(rotated[:, 0].min()) - grow, 0.0)
    bt = max(float(rotated[:, 1].min()) - grow, 0.0)
    br = min(float(rotated[:, 0].max()) + grow, float(w - 1))
    bb = min(float(rotated[:, 1].max()) + grow, float(h - 1))
    x0, y0, x1, y1 = _round(bl), _round(bt), _round(br), _round(bb)
    if x1 < x0 or y1 < y0:
        return np.zeros((size, size, *image.shape[2:]), dtype=np.uint8)
    source = image[y0 : y1 + 1, x0 : x1 + 1]
    local = chip.rect.shifted(-x0, -y0)
    for _ in range(depth):
        source = pyramid_down2(source)
        local = local.down()
    if source.shape[0] == 0:
        return np.zeros((size, size, *image.shape[2:]), dtype=np.uint8)
    matrix = chip._chip_to_rect(local)
    grid = np.arange(size, dtype=np.float64)
    cols, rows = np.meshgrid(grid, grid)
    xs = matrix[0, 0] * cols + matrix[0, 1] * rows + matrix[0, 2]
    ys = matrix[1, 0] * cols + matrix[1, 1] * rows + matrix[1, 2]
    return _bilinear_dlib(source, xs, ys)


# -- quality -------------------------------------------------------------------------------------


def _named_mean(detection: FaceDetection, names: tuple[str, ...]) -> Float64Array | None:
    if not has_points(detection, names):
        return None
    mean: Float64Array = points_of(detection, names).mean(axis=0)
    return mean


def eye_centres(detection: FaceDetection) -> tuple[Float64Array, Float64Array] | None:
    """``(left, right)`` eye centres of the person (source pixels), from whichever points exist."""
    for left_names, right_names in _EYE_PAIRS:
        left = _named_mean(detection, left_names)
        right = _named_mean(detection, right_names)
        if left is not None and right is not None:
            return left, right
    return None


def face_quality(detection: FaceDetection, chip: NDArray[np.uint8]) -> FaceQuality:
    """Inter-ocular distance (px), variance of the chip's Laplacian, and yaw in [-1, 1].

    Yaw is the nose's offset from the eye midpoint along the eye line, in half inter-ocular
    distances: 0 frontal, positive when the nose is nearer the person's left eye (the face turned
    towards the person's left, larger x in the image).
    """
    gray = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY) if chip.ndim == 3 else chip
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    eyes = eye_centres(detection)
    if eyes is None:
        return FaceQuality(face_size=0.0, sharpness=sharpness, yaw=0.0)
    left, right = eyes
    axis = left - right
    iod = float(np.hypot(axis[0], axis[1]))
    yaw = 0.0
    nose = next((p for n in _NOSE_NAMES if (p := detection.point(n)) is not None), None)
    if nose is not None and iod > 0:
        mid = (left + right) / 2.0
        offset = float(np.dot(np.asarray(nose) - mid, axis / iod))
        yaw = max(-1.0, min(1.0, 2.0 * offset / iod))
    return FaceQuality(face_size=iod, sharpness=sharpness, yaw=yaw)


# -- the aligner ---------------------------------------------------------------------------------


class Aligner:
    """Cuts the embedder's chip out of a source image for one detection.

    ``spec`` is the embedder's alignment block; ``landmarker`` supplies template points the detector
    does not give (None when the detector's own points suffice).
    """

    def __init__(self, spec: AlignmentSpec, landmarker: Landmarker | None = None) -> None:
        if len(spec.points) != len(spec.template):
            raise ConfigError(f"alignment template has {len(spec.template)} points for {len(spec.points)} names")
        if len(spec.points) < 2:
            raise ConfigError("an alignment template needs at least two points")
        self.spec = spec
        self.landmarker = landmarker
        self._template = np.asarray(spec.template, dtype=np.float64)

    @property
    def size(self) -> int:
        return self.spec.size

    def _points(self, image: ImageBGR, detection: FaceDetection) -> tuple[FaceDetection, list[int]]:
        names = self.spec.points
        if not has_points(detection, names) and self.landmarker is not None:
            detection = self.landmarker.landmarks(image, detection)
        available = [i for i, n in enumerate(names) if n in detection.landmark_names]
        if self.spec.method == "dlib" and len(available) != len(names):
            missing = [n for n in names if n not in detection.landmark_names]
            raise NoFaceError(f"dlib alignment needs the landmarks {missing}; configure a landmarker")
        if len(available) < 2:
            raise NoFaceError(f"alignment needs at least two of {list(names)}; the detection has "
                              f"{list(detection.landmark_names)}")
        return detection, available

    def align(self, image: ImageBGR, detection: FaceDetection) -> AlignedFace:
        """The chip ``(size, size, 3)`` BGR uint8 of ``detection`` in ``image`` (BGR uint8 HxWx3).

        A detection without any landmark (the ``skip`` detector: the caller says the box is the face)
        is resized into the chip as it is; nothing is guessed about where its eyes are.
        """
        if not detection.landmark_names:
            return box_chip(image, detection, self.size)
        if is_upright(detection) is False:
            raise UpsideDownFaceError("the face's landmarks are upside down (mouth above the eyes): its chip "
                                      "would be upside down; search the image in other orientations")
        detected = detection
        detection, available = self._points(image, detection)
        names = tuple(self.spec.points[i] for i in available)
        # dlib's geometry and OpenCV's warps put pixel centres at integer coordinates
        points = points_of(detection, names) - 0.5
        template = self._template[available]
        if self.spec.method == "dlib":
            chip_details = dlib_chip_details(points, template, self.size, self.spec.padding)
            chip = extract_dlib_chip(image, chip_details)
            to_source = chip_details.chip_to_source()
        else:
            chip, to_source = self._plain(image, points, template)
        to_chip = _corner_origin(np.asarray(cv2.invertAffineTransform(to_source), dtype=np.float64)).astype(np.float32)
        if upright_in_chip(detected, to_chip) is False:
            raise UpsideDownFaceError("the chip of this face would not be upright (the landmarks were placed as if a "
                                      "turned face were upright); search the image in other orientations")
        return AlignedFace(
            image=np.ascontiguousarray(chip),
            detection=detection,
            transform=to_chip,
            template=f"{self.spec.method}:{self.size}",
            quality=face_quality(detection, chip),
        )

    def _plain(self, image: ImageBGR, points: Float64Array, template: Float64Array
               ) -> tuple[NDArray[np.uint8], Float64Array]:
        pad = self.spec.padding
        chip_points = (pad + template) / (2 * pad + 1) * self.size
        m, t = similarity_transform(points, chip_points)
        to_chip = np.hstack([m, t[:, None]])
        chip = cv2.warpAffine(image, to_chip, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return np.asarray(chip, dtype=np.uint8), cv2.invertAffineTransform(to_chip).astype(np.float64)


def box_chip(image: ImageBGR, detection: FaceDetection, size: int) -> AlignedFace:
    """The detection's box resized to ``size`` x ``size`` (no landmarks: no rotation, no template fit).

    The quality's face size is an estimate (0.3 of the box width, the inter-ocular distance of a
    tight face crop) so that size gates still mean something; yaw is unknown and reported as 0.
    """
    b = detection.box
    h, w = image.shape[:2]
    x1, y1 = max(0, math.floor(b.x1)), max(0, math.floor(b.y1))
    x2, y2 = min(w, math.ceil(b.x2)), min(h, math.ceil(b.y2))
    if x2 <= x1 or y2 <= y1:
        raise NoFaceError(f"face box {b} lies outside the {w}x{h} image")
    crop = image[y1:y2, x1:x2]
    chip = np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    transform = np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy]], dtype=np.float32)
    gray = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
    quality = FaceQuality(face_size=(x2 - x1) * 0.3, sharpness=float(cv2.Laplacian(gray, cv2.CV_64F).var()), yaw=0.0)
    return AlignedFace(chip, detection, transform, "box", quality)


def _corner_origin(matrix: Float64Array) -> Float64Array:
    """An affine map between pixel-centre coordinates rewritten for corner-origin coordinates."""
    out = np.array(matrix, dtype=np.float64)
    out[:, 2] += 0.5 - 0.5 * out[:, :2].sum(axis=1)
    return out


def needs_landmarker(spec: AlignmentSpec) -> bool:
    """True when the template uses points no detector emits (e.g. dlib's eye corners)."""
    return any(name not in LANDMARK_NAMES for name in spec.points)


def build_aligner(alignment: AlignmentSpec, *, landmarks: str = "auto", num_threads: int = 1) -> Aligner:
    """An :class:`Aligner` for an embedder's alignment block.

    ``landmarks`` names the landmark provider (``"auto"``: the measured default, see
    :mod:`facegate.landmarks.registry`; ``"none"``: use the detector's points only).
    """
    if landmarks.casefold() == "none":
        if alignment.method == "dlib" or needs_landmarker(alignment):
            raise ConfigError(f"the {alignment.method} template needs {list(alignment.points)}: a landmarker "
                              "is required (landmarks='auto', 'shape_predictor' or 'facemesh')")
        return Aligner(alignment, None)
    if landmarks.casefold() == "auto" and not needs_landmarker(alignment):
        return Aligner(alignment, None)
    from facegate.landmarks.registry import build_landmarker

    return Aligner(alignment, build_landmarker(landmarks, num_threads=num_threads))


__all__ = [
    "Aligner",
    "DlibChip",
    "box_chip",
    "build_aligner",
    "dlib_chip_details",
    "extract_dlib_chip",
    "eye_centres",
    "face_quality",
    "needs_landmarker",
    "pyramid_down2",
    "similarity_transform",
]
