"""MTCNN ("mtcnn"): P-Net proposals over an image pyramid, refined by R-Net, then O-Net with 5 landmarks.

The cascade follows facenet-pytorch's ``detect_face`` (whose weights the models are converted from):

1. pyramid: scales ``12 / min_face_size * factor**k`` while the short side stays >= 12 px; each level
   is the image area-resized to ``int(side * scale + 1)``; P-Net (fully convolutional, resized per
   level) gives a face probability and box offsets per 12x12 window at stride 2; windows above the
   first threshold become boxes, NMS (IoU 0.5) per level, then NMS (0.7) over all levels;
2. boxes are regressed, squared, cropped (clipped to the image) and resized to 24x24 for R-Net
   (every resize is PyTorch's "area" interpolation, i.e. adaptive average pooling, computed from one
   integral image of the frame);
   survivors of the second threshold are NMS-ed, regressed and squared;
3. the same at 48x48 for O-Net, which adds five landmarks; final NMS uses the "Min" overlap.

Coordinates are facenet-pytorch's: boxes and landmarks in source pixels, the same numbers its
``MTCNN.detect`` returns. Keypoints are named in the subject's perspective from the manifest.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.detectors.base import FaceDetector
from facegate.detectors.options import MtcnnOptions
from facegate.errors import ImageError, ModelError
from facegate.inference.manifest import ModelManifest, ModelZoo, default_zoo, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.types import LANDMARK_NAMES, Box, FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

FAMILY = "mtcnn"
#: P-Net interpreters kept (one per pyramid level size): two frame sizes' worth
MAX_CACHED_LEVELS = 24
F64 = NDArray[np.float64]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MtcnnNms(_Strict):
    pnet_scale: float = Field(gt=0.0, lt=1.0, description="IoU threshold of the NMS within one pyramid level")
    pnet: float = Field(gt=0.0, lt=1.0, description="IoU threshold of the NMS over all P-Net proposals")
    rnet: float = Field(gt=0.0, lt=1.0)
    onet: float = Field(gt=0.0, lt=1.0, description="overlap threshold (intersection over the smaller box)")


class MtcnnDecoder(_Strict):
    """The P-Net manifest's ``decoder`` block: the cascade's constants and the other two nets."""

    rnet: str = Field(description="manifest name of R-Net")
    onet: str = Field(description="manifest name of O-Net")
    min_face_size: float = Field(gt=0.0, description="smallest face searched, pixels")
    scale_factor: float = Field(gt=0.0, lt=1.0, description="pyramid step")
    thresholds: tuple[float, float, float] = Field(description="face probability thresholds of P-, R-, O-Net")
    nms: MtcnnNms
    keypoint_names: tuple[str, str, str, str, str]

    @model_validator(mode="after")
    def _check(self) -> MtcnnDecoder:
        unknown = [n for n in self.keypoint_names if n not in LANDMARK_NAMES]
        if unknown or "right_eye" not in self.keypoint_names or "left_eye" not in self.keypoint_names:
            raise ValueError(f"keypoint_names {list(self.keypoint_names)} must be LANDMARK_NAMES with both eyes")
        return self


def parse_decoder(manifest: ModelManifest) -> MtcnnDecoder:
    try:
        return MtcnnDecoder.model_validate(manifest.decoder)
    except ValidationError as err:
        raise ModelError(f"model manifest {manifest.name}: invalid MTCNN decoder options: {err}") from err


# -- box arithmetic (facenet-pytorch's conventions) -------------------------------------------------


def nms(boxes: F64, scores: F64, threshold: float, mode: Literal["union", "min"] = "union") -> NDArray[np.intp]:
    """Indices kept by greedy NMS, best score first.

    ``union``: torchvision's IoU (areas without the +1); ``min``: facenet-pytorch's ``nms_numpy`` with
    the "Min" overlap (intersection over the smaller box, +1 pixel areas).
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    plus = 1.0 if mode == "min" else 0.0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def square(boxes: F64) -> F64:
    """facenet-pytorch's ``rerec``: the square with side max(w, h) and the same centre."""
    out: F64 = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: F64, offsets: F64) -> F64:
    """facenet-pytorch's ``bbreg``: corners moved by offsets times the +1 width/height."""
    out: F64 = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    out[:, 0] += offsets[:, 0] * w
    out[:, 1] += offsets[:, 1] * h
    out[:, 2] += offsets[:, 2] * w
    out[:, 3] += offsets[:, 3] * h
    return out


def integral_image(rgb: NDArray[np.float32]) -> F64:
    """``(H + 1, W + 1, 3)`` float64 running sums: ``S[i, j] = rgb[:i, :j].sum(axis=(0, 1))``."""
    h, w = rgb.shape[:2]
    out = np.zeros((h + 1, w + 1, rgb.shape[2]), dtype=np.float64)
    np.cumsum(np.cumsum(rgb, axis=0, dtype=np.float64), axis=1, out=out[1:, 1:])
    return out


def _bins(start: NDArray[np.int64], length: NDArray[np.int64], out: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Adaptive-pooling bin edges ``(N, out)``: ``floor(i * L / out)`` to ``ceil((i + 1) * L / out)``."""
    i = np.arange(out, dtype=np.int64)[None, :]
    lo = (i * length[:, None]) // out
    hi = -((-(i + 1) * length[:, None]) // out)
    return start[:, None] + lo, start[:, None] + hi


def area_resize(integral: F64, top: NDArray[np.int64], left: NDArray[np.int64], height: NDArray[np.int64],
                width: NDArray[np.int64], out_h: int, out_w: int) -> NDArray[np.float32]:
    """PyTorch's ``interpolate(mode="area")`` (adaptive average pooling) of ``N`` windows of the image
    whose :func:`integral_image` is given -> ``(N, out_h, out_w, 3)`` float32. facenet-pytorch resizes
    every pyramid level and crop this way; OpenCV's INTER_AREA weighs partial pixels instead."""
    y0, y1 = _bins(top, height, out_h)
    x0, x1 = _bins(left, width, out_w)
    a, b = y0[:, :, None], y1[:, :, None]
    c, d = x0[:, None, :], x1[:, None, :]
    total = integral[b, d] - integral[a, d] - integral[b, c] + integral[a, c]
    count = ((b - a) * (d - c))[..., None].astype(np.float64)
    out: NDArray[np.float32] = (total / count).astype(np.float32)
    return out


def crops(integral: F64, boxes: F64) -> tuple[F64, NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64],
                                              NDArray[np.int64], NDArray[np.int64]]:
    """facenet-pytorch's ``pad``: boxes truncated, clipped to ``1..w`` / ``1..h``; the crop is rows
    ``y-1:ey`` and columns ``x-1:ex``. Returns the valid boxes, the mask, and crop top, left,
    height, width."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(b[:, 0], 1)
    y = np.maximum(b[:, 1], 1)
    ex = np.minimum(b[:, 2], w)
    ey = np.minimum(b[:, 3], h)
    valid = (ey > y - 1) & (ex > x - 1)
    return boxes[valid], valid, (y - 1)[valid], (x - 1)[valid], (ey - y + 1)[valid], (ex - x + 1)[valid]


class MtcnnDetector(FaceDetector):
    """MTCNN around three TFLite nets; faces best first."""

    name = "mtcnn"

    def __init__(self, pnet: ModelManifest, rnet: ModelManifest, onet: ModelManifest, *, num_threads: int = 1,
                 options: MtcnnOptions | None = None) -> None:
        self.manifest = pnet
        self.options = options or MtcnnOptions()
        self.decoder = parse_decoder(pnet)
        self._pnet_path = verify_file(pnet)
        self._num_threads = num_threads
        self.pnet = TfliteModel(self._pnet_path, num_threads=num_threads)
        # one P-Net interpreter per pyramid level size: re-planning an interpreter for another input
        # size costs about as much as running it, and a camera's frames all have the same size
        self._levels: OrderedDict[tuple[int, int], TfliteModel] = OrderedDict()
        self.rnet = TfliteModel(verify_file(rnet), num_threads=num_threads)
        self.onet = TfliteModel(verify_file(onet), num_threads=num_threads)
        self._out: dict[str, dict[str, int]] = {}
        for key, manifest, model, roles in (("pnet", pnet, self.pnet, ("scores", "regressors")),
                                            ("rnet", rnet, self.rnet, ("scores", "regressors")),
                                            ("onet", onet, self.onet, ("scores", "regressors", "landmarks"))):
            self._out[key] = {r: model.output_index(manifest.output(r).tensor) for r in roles}
        t = self.decoder.thresholds
        last = self.options.score_threshold if self.options.score_threshold is not None else t[2]
        self.thresholds = (t[0], t[1], last)
        self.min_face = self.options.pyramid_min_face or self.decoder.min_face_size

    def scales(self, height: int, width: int) -> list[float]:
        m = 12.0 / self.min_face
        short = min(height, width) * m
        out: list[float] = []
        scale = m
        while short >= 12.0:
            out.append(scale)
            scale *= self.decoder.scale_factor
            short *= self.decoder.scale_factor
        return out

    def _pnet_for(self, height: int, width: int) -> TfliteModel:
        key = (height, width)
        model = self._levels.get(key)
        if model is None:
            model = TfliteModel(self._pnet_path, num_threads=self._num_threads)
            model.resize_input((1, height, width, 3))
            self._levels[key] = model
            while len(self._levels) > MAX_CACHED_LEVELS:
                self._levels.popitem(last=False)
        else:
            self._levels.move_to_end(key)
        return model

    def proposals(self, integral: F64) -> F64:
        """Stage 1 on the image's :func:`integral_image`: ``(N, 9)`` float64 rows
        ``x1, y1, x2, y2, score, dx1, dy1, dx2, dy2``."""
        h, w = integral.shape[0] - 1, integral.shape[1] - 1
        zero = np.zeros(1, dtype=np.int64)
        full_h, full_w = np.asarray([h], dtype=np.int64), np.asarray([w], dtype=np.int64)
        out = self._out["pnet"]
        per_scale: list[F64] = []
        for scale in self.scales(h, w):
            sh, sw = int(h * scale + 1), int(w * scale + 1)
            level = area_resize(integral, zero, zero, full_h, full_w, sh, sw)
            result = self._pnet_for(sh, sw).run([level])
            prob = result[out["scores"]][0, :, :, 0]
            reg = result[out["regressors"]][0]
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if ys.size == 0:
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float64)
            q1 = np.floor((2.0 * cells + 1.0) / scale)
            q2 = np.floor((2.0 * cells + 12.0) / scale)
            rows = np.concatenate([q1, q2, prob[ys, xs][:, None].astype(np.float64),
                                   reg[ys, xs].astype(np.float64)], axis=1)
            per_scale.append(rows[nms(rows[:, :4], rows[:, 4], self.decoder.nms.pnet_scale)])
        if not per_scale:
            return np.zeros((0, 9))
        boxes = np.concatenate(per_scale)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], self.decoder.nms.pnet)]
        w_ = boxes[:, 2] - boxes[:, 0]
        h_ = boxes[:, 3] - boxes[:, 1]
        refined: F64 = boxes.copy()
        refined[:, 0] += boxes[:, 5] * w_
        refined[:, 1] += boxes[:, 6] * h_
        refined[:, 2] += boxes[:, 7] * w_
        refined[:, 3] += boxes[:, 8] * h_
        refined[:, :5] = square(refined[:, :5])[:, :5]
        return refined

    def _run(self, key: str, model: TfliteModel, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        result = model.run([batch])
        return {role: result[i] for role, i in self._out[key].items()}

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"{self.name}: want a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
        integral = integral_image(np.ascontiguousarray(image[:, :, ::-1]).astype(np.float32))
        boxes = self.proposals(integral)[:, :5]
        if boxes.shape[0] == 0:
            return []
        # stage 2: R-Net
        boxes, _, top, left, height, width = crops(integral, boxes)
        if boxes.shape[0] == 0:
            return []
        batch = area_resize(integral, top, left, height, width, 24, 24)
        out = self._run("rnet", self.rnet, batch)
        score = out["scores"][:, 0].astype(np.float64)
        passed = score > self.thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        offsets = out["regressors"][passed].astype(np.float64)
        keep = nms(boxes[:, :4], boxes[:, 4], self.decoder.nms.rnet)
        boxes = square(regress(boxes[keep], offsets[keep]))
        if boxes.shape[0] == 0:
            return []
        # stage 3: O-Net
        boxes, _, top, left, height, width = crops(integral, boxes)
        if boxes.shape[0] == 0:
            return []
        batch = area_resize(integral, top, left, height, width, 48, 48)
        out = self._run("onet", self.onet, batch)
        score = out["scores"][:, 0].astype(np.float64)
        passed = score > self.thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        offsets = out["regressors"][passed].astype(np.float64)
        marks = out["landmarks"][passed].astype(np.float64)
        w = boxes[:, 2] - boxes[:, 0] + 1.0
        h = boxes[:, 3] - boxes[:, 1] + 1.0
        px = w[:, None] * marks[:, :5] + boxes[:, 0:1] - 1.0
        py = h[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1.0
        points = np.stack([px, py], axis=2)
        boxes = regress(boxes, offsets)
        keep = nms(boxes[:, :4], boxes[:, 4], self.decoder.nms.onet, mode="min")
        return self._faces(boxes[keep], points[keep], image.shape[1], image.shape[0])

    def _faces(self, boxes: F64, points: F64, width: int, height: int) -> list[FaceDetection]:
        faces: list[FaceDetection] = []
        for i in range(boxes.shape[0]):
            x1, y1, x2, y2, score = (float(v) for v in boxes[i])
            if min(x2 - x1, y2 - y1) < self.options.min_face_px:
                continue
            box = Box(max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if box.width <= 0 or box.height <= 0:
                continue
            faces.append(FaceDetection(box=box, score=score, landmarks=points[i].astype(np.float32),
                                       landmark_names=self.decoder.keypoint_names, detector=self.name))
            if self.options.max_faces is not None and len(faces) >= self.options.max_faces:
                break
        return faces


def build(options: MtcnnOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> MtcnnDetector:
    """The "mtcnn" detector."""
    zoo = zoo or default_zoo()
    pnet = zoo.family("detector", FAMILY, options.variant)
    decoder = parse_decoder(pnet)
    return MtcnnDetector(pnet, zoo.get(decoder.rnet), zoo.get(decoder.onet), num_threads=num_threads, options=options)


__all__ = ["FAMILY", "MtcnnDecoder", "MtcnnDetector", "MtcnnOptions", "build", "crops", "nms", "regress", "square"]
