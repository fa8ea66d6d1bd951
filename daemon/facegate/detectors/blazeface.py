"""MediaPipe BlazeFace face detectors ("mediapipe" short range, "mediapipe_full" full range).

Which one: short range (128x128 input, anchors every 8/16 input pixels) is tuned for faces that fill
a good part of the frame: a person at a door camera, a selfie, an enrolment photo. It misses faces
smaller than roughly 1/8 of the frame's longer side (on the dlib group photos, faces ~1/12 of the
width, it finds 15 of 49). Full range (192x192, one anchor every 4 input pixels) finds 47 of those 49:
use ``mediapipe_full`` for large frames with small or distant faces (hallways, groups), at about
2.5x the inference time (x86, one thread: 5.3 ms vs 2.1 ms).

The image is letterboxed (aspect ratio kept, centred, padded with the manifest's ``pad_value``), so
boxes and landmarks map back to source pixels exactly.

Every decoder constant (anchor layout, coordinate scales, score clipping and threshold, NMS,
keypoint names) comes from the model's manifest ``decoder`` block, validated by
:class:`BlazeFaceDecoder`; anchors are computed once per detector.
"""

from __future__ import annotations

import logging
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.detectors.base import FaceDetector
from facegate.detectors.letterbox import Letterbox, letterbox
from facegate.detectors.nms import Suppressed, hard_nms, weighted_nms
from facegate.detectors.options import BlazeFaceFullOptions, BlazeFaceOptions
from facegate.detectors.ssd_anchors import AnchorSpec, ssd_anchors
from facegate.errors import ImageError, ModelError
from facegate.inference.manifest import ModelManifest, ModelZoo, NormalisationSpec, default_zoo, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.types import LANDMARK_NAMES, Box, FaceDetection, FloatArray, ImageBGR

logger = logging.getLogger(__name__)

#: manifest family of each registry name
FAMILIES: dict[str, str] = {"mediapipe": "mediapipe", "mediapipe_full": "mediapipe_full"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnchorOptions(_Strict):
    """MediaPipe ``SsdAnchorsCalculatorOptions`` (the input size comes from the manifest's input)."""

    strides: tuple[int, ...] = Field(min_length=1, description="feature-map stride of each anchor layer")
    min_scale: float = Field(gt=0.0, description="anchor scale of the first layer (unused with fixed_anchor_size)")
    max_scale: float = Field(gt=0.0, description="anchor scale of the last layer (unused with fixed_anchor_size)")
    aspect_ratios: tuple[float, ...] = Field(default=(1.0,), min_length=1)
    anchor_offset_x: float = Field(default=0.5, ge=0.0, le=1.0, description="anchor centre within its cell")
    anchor_offset_y: float = Field(default=0.5, ge=0.0, le=1.0)
    interpolated_scale_aspect_ratio: float = Field(
        default=1.0, ge=0.0, description="adds one anchor per layer between two scales; 0 disables it"
    )
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = Field(default=True, description="anchors are points: w = h = 1")

    @model_validator(mode="after")
    def _check(self) -> AnchorOptions:
        if any(s <= 0 for s in self.strides):
            raise ValueError(f"strides must be positive, got {list(self.strides)}")
        if any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"aspect ratios must be positive, got {list(self.aspect_ratios)}")
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} exceeds max_scale {self.max_scale}")
        return self


class BlazeFaceDecoder(_Strict):
    """The manifest ``decoder`` block of a BlazeFace model (MediaPipe's TensorsToDetections options)."""

    anchors: AnchorOptions
    num_anchors: int = Field(gt=0, description="rows of the regressor and score outputs")
    num_coords: int = Field(gt=0, description="values per anchor in the regressor output")
    box_coord_offset: int = Field(default=0, ge=0, description="index of the box centre x (cx, cy, w, h follow)")
    keypoint_coord_offset: int = Field(default=4, ge=0, description="index of the first keypoint x")
    keypoint_names: tuple[str, ...] = Field(min_length=2, description="keypoint order, subject's perspective")
    coordinate_scale: tuple[float, float, float, float] = Field(
        description="divisors of x, y, w, h (MediaPipe x_scale, y_scale, w_scale, h_scale), in input pixels"
    )
    score_clip: float = Field(gt=0.0, description="logits are clipped to +-score_clip before the sigmoid")
    min_score: float = Field(gt=0.0, lt=1.0, description="default detection threshold on the sigmoid score")
    nms_method: Literal["weighted", "hard"] = "weighted"
    nms_iou: float = Field(gt=0.0, lt=1.0, description="boxes overlapping more than this are merged")
    pad_value: int = Field(default=0, ge=0, le=255, description="letterbox fill, in pixel values")

    @model_validator(mode="after")
    def _check(self) -> BlazeFaceDecoder:
        unknown = [n for n in self.keypoint_names if n not in LANDMARK_NAMES]
        if unknown:
            raise ValueError(f"unknown keypoint names {unknown}; valid: {list(LANDMARK_NAMES)}")
        if len(set(self.keypoint_names)) != len(self.keypoint_names):
            raise ValueError(f"duplicate keypoint names in {list(self.keypoint_names)}")
        if "right_eye" not in self.keypoint_names or "left_eye" not in self.keypoint_names:
            raise ValueError("keypoint_names must contain right_eye and left_eye")
        if self.box_coord_offset + 4 > self.num_coords:
            raise ValueError(f"box_coord_offset {self.box_coord_offset} + 4 exceeds num_coords {self.num_coords}")
        end = self.keypoint_coord_offset + 2 * len(self.keypoint_names)
        if end > self.num_coords:
            raise ValueError(f"{len(self.keypoint_names)} keypoints from offset {self.keypoint_coord_offset} "
                             f"need {end} coords, num_coords is {self.num_coords}")
        if any(s <= 0 for s in self.coordinate_scale):
            raise ValueError(f"coordinate_scale must be positive, got {list(self.coordinate_scale)}")
        return self


def parse_decoder(manifest: ModelManifest) -> BlazeFaceDecoder:
    """The validated decoder block; :class:`ModelError` naming the manifest when it is invalid."""
    try:
        return BlazeFaceDecoder.model_validate(manifest.decoder)
    except ValidationError as err:
        raise ModelError(f"model manifest {manifest.name}: invalid BlazeFace decoder options: {err}") from err


def anchor_spec(decoder: BlazeFaceDecoder, width: int, height: int) -> AnchorSpec:
    a = decoder.anchors
    return AnchorSpec(
        input_width=width, input_height=height, strides=a.strides, min_scale=a.min_scale, max_scale=a.max_scale,
        aspect_ratios=a.aspect_ratios, anchor_offset_x=a.anchor_offset_x, anchor_offset_y=a.anchor_offset_y,
        interpolated_scale_aspect_ratio=a.interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer=a.reduce_boxes_in_lowest_layer, fixed_anchor_size=a.fixed_anchor_size,
    )


def sigmoid_scores(logits: FloatArray, clip: float) -> FloatArray:
    """``(N,)`` logits -> ``(N,)`` float32 probabilities, clipped first as MediaPipe does."""
    z = np.clip(logits.astype(np.float32), -clip, clip)
    # tanh form: exp(100) overflows float32, tanh saturates quietly.
    out: FloatArray = (0.5 * (np.tanh(0.5 * z) + 1.0)).astype(np.float32)
    return out


def decode_boxes(
    regressors: FloatArray, anchors: FloatArray, decoder: BlazeFaceDecoder, width: int, height: int
) -> tuple[FloatArray, FloatArray]:
    """Raw ``(N, num_coords)`` regressors -> boxes ``(N, 4)`` xyxy and keypoints ``(N, K, 2)``, input pixels.

    MediaPipe's decoding: offsets are in input pixels relative to the anchor centre, scaled by the
    anchor size (1 with fixed-size anchors).
    """
    sx, sy, sw, sh = decoder.coordinate_scale
    ax, ay, aw, ah = anchors[:, 0:1], anchors[:, 1:2], anchors[:, 2:3], anchors[:, 3:4]
    b = decoder.box_coord_offset
    cx = regressors[:, b : b + 1] / sx * aw + ax
    cy = regressors[:, b + 1 : b + 2] / sy * ah + ay
    half_w = regressors[:, b + 2 : b + 3] / sw * aw * 0.5
    half_h = regressors[:, b + 3 : b + 4] / sh * ah * 0.5
    boxes = np.concatenate([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    boxes *= np.asarray([width, height, width, height], dtype=np.float32)
    k = len(decoder.keypoint_names)
    o = decoder.keypoint_coord_offset
    kp = regressors[:, o : o + 2 * k].reshape(-1, k, 2)
    kx = kp[:, :, 0] / sx * aw + ax
    ky = kp[:, :, 1] / sy * ah + ay
    keypoints = np.stack([kx * width, ky * height], axis=2)
    return boxes.astype(np.float32), keypoints.astype(np.float32)


def _normalisation_lut(manifest_name: str, norm: NormalisationSpec) -> NDArray[np.float32]:
    """``(1, 256, 3)`` float32 table: pixel value -> normalised input value, per channel (one
    ``cv2.LUT`` call is ~40x faster than numpy's broadcast multiply-add on 128x128x3)."""
    if norm.in_graph:
        mean, std = np.zeros(3), np.ones(3)
    else:
        if len(norm.mean) not in (1, 3) or len(norm.std) not in (1, 3):
            raise ModelError(f"model manifest {manifest_name}: normalisation needs 1 or 3 means and stds")
        mean = np.broadcast_to(np.asarray(norm.mean, dtype=np.float64), (3,))
        std = np.broadcast_to(np.asarray(norm.std, dtype=np.float64), (3,))
    if np.any(std == 0):
        raise ModelError(f"model manifest {manifest_name}: normalisation std must not be 0")
    values = np.arange(256, dtype=np.float64)[:, None]
    table: NDArray[np.float32] = ((values - mean) / std).astype(np.float32)[None]
    return table


class BlazeFaceDetector(FaceDetector):
    """BlazeFace on a letterboxed input; returns faces best first, in source pixels."""

    def __init__(
        self,
        manifest: ModelManifest,
        *,
        name: str = "mediapipe",
        num_threads: int = 1,
        options: BlazeFaceOptions | BlazeFaceFullOptions | None = None,
    ) -> None:
        self.name = name
        self.manifest = manifest
        self.options = options or BlazeFaceOptions()
        self.decoder = parse_decoder(manifest)
        spec = manifest.input
        if spec is None or spec.layout != "NHWC" or spec.channels != 3 or spec.dtype != "float32":
            raise ModelError(f"model manifest {manifest.name}: BlazeFace needs a float32 NHWC 3-channel input spec")
        self.width, self.height = spec.width, spec.height
        # a size filter in source pixels would read a reduced copy differently
        self.input_size = None if self.options.min_face_px else (self.width, self.height)
        self._rgb = spec.colour == "RGB"
        self._lut = _normalisation_lut(manifest.name, spec.normalisation)
        self.anchors = ssd_anchors(anchor_spec(self.decoder, self.width, self.height))
        if self.anchors.shape[0] != self.decoder.num_anchors:
            raise ModelError(
                f"model manifest {manifest.name}: anchor options give {self.anchors.shape[0]} anchors, "
                f"decoder says num_anchors {self.decoder.num_anchors}"
            )
        self.model = TfliteModel(verify_file(manifest), num_threads=num_threads)
        self._reg = self.model.output_index(manifest.output("regressors").tensor)
        self._cls = self.model.output_index(manifest.output("scores").tensor)
        n, c = self.decoder.num_anchors, self.decoder.num_coords
        reg_shape, cls_shape = self.model.outputs[self._reg].shape, self.model.outputs[self._cls].shape
        if reg_shape[1:] != (n, c) or cls_shape[1:] != (n, 1):
            raise ModelError(
                f"{manifest.name}: outputs {reg_shape} / {cls_shape} do not match {n} anchors x {c} coords"
            )
        self.threshold = (
            self.options.score_threshold if self.options.score_threshold is not None else self.decoder.min_score
        )

    def preprocess(self, image: ImageBGR) -> tuple[NDArray[np.float32], Letterbox]:
        """BGR ``(H, W, 3)`` uint8 -> model input ``(1, h, w, 3)`` float32 and the :class:`Letterbox`."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"{self.name}: want a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
        canvas, placement = letterbox(image, self.width, self.height, pad_value=self.decoder.pad_value)
        if self._rgb:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.uint8, copy=False)
        x = cv2.LUT(canvas, self._lut).astype(np.float32, copy=False)
        return x[None], placement

    def raw_scores(self, image: ImageBGR) -> FloatArray:
        """Sigmoid score of every anchor ``(N,)`` for ``image``, before thresholding (diagnostics)."""
        x, _ = self.preprocess(image)
        outputs = self.model.run([x])
        return sigmoid_scores(outputs[self._cls][0, :, 0], self.decoder.score_clip)

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        x, placement = self.preprocess(image)
        outputs = self.model.run([x])
        scores = sigmoid_scores(outputs[self._cls][0, :, 0], self.decoder.score_clip)
        keep = np.flatnonzero(scores >= self.threshold)
        if keep.size == 0:
            return []
        boxes, keypoints = decode_boxes(outputs[self._reg][0, keep], self.anchors[keep], self.decoder,
                                        self.width, self.height)
        nms = weighted_nms if self.decoder.nms_method == "weighted" else hard_nms
        found: Suppressed = nms(boxes, scores[keep], keypoints, iou_threshold=self.decoder.nms_iou)
        corners = placement.to_source(found.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        points = placement.to_source(found.keypoints)
        h, w = image.shape[:2]
        faces: list[FaceDetection] = []
        for i in range(corners.shape[0]):
            x1, y1, x2, y2 = (float(v) for v in corners[i])
            if min(x2 - x1, y2 - y1) < self.options.min_face_px:
                continue
            box = Box(max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            if box.width <= 0 or box.height <= 0:
                continue
            faces.append(FaceDetection(box=box, score=float(found.scores[i]), landmarks=points[i],
                                       landmark_names=self.decoder.keypoint_names, detector=self.name))
            if self.options.max_faces is not None and len(faces) >= self.options.max_faces:
                break
        return faces


def build_blazeface(
    options: BlazeFaceOptions | BlazeFaceFullOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None
) -> BlazeFaceDetector:
    """The BlazeFace detector its options name ("mediapipe" short range, "mediapipe_full" full range).
    Raises :class:`~facegate.errors.ModelNotInstalledError` for a variant that is not installed."""
    name = options.backend
    manifest = (zoo or default_zoo()).family("detector", FAMILIES[name], options.variant)
    logger.debug("detector %s uses %s", name, manifest.name)
    return BlazeFaceDetector(manifest, name=name, num_threads=num_threads, options=options)


__all__ = [
    "AnchorOptions",
    "BlazeFaceDecoder",
    "BlazeFaceDetector",
    "BlazeFaceOptions",
    "anchor_spec",
    "build_blazeface",
    "decode_boxes",
    "parse_decoder",
    "sigmoid_scores",
]
