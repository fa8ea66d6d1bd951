"""User-imported detectors: "ssd", "yunet" and "retinaface" (facegate ships none of their weights).

``facegate models import FILE --as ssd|yunet|retinaface`` checks a file with
:func:`check_detector_file` and writes its manifest; the factories here build a detector from that
manifest, or say how to import one when none is installed. ``.onnx`` files run through OpenCV's DNN
module (YuNet through ``cv2.FaceDetectorYN``), ``.tflite`` files through LiteRT.

* ``ssd``: OpenCV's res10 300x300 SSD as DeepFace uses it: BGR minus (104, 177, 123), output
  ``(1, 1, N, 7)`` rows ``[image, class, score, x1, y1, x2, y2]`` in [0, 1]; the eyes come from the
  Haar eye cascade inside the box (DeepFace does the same), else from the box geometry.
* ``yunet``: boxes, five landmarks (right eye, left eye, nose, right and left mouth corner, in the
  subject's perspective) and scores from ``cv2.FaceDetectorYN``.
* ``retinaface``: a prior-box head (the Pytorch_Retinaface layout): ``loc (1, N, 4)``,
  ``conf (1, N, 2)``, ``landmarks (1, N, 10)`` over priors of strides 8/16/32 with two sizes each,
  decoded with variances (0.1, 0.2); the frame is letterboxed into the file's input size.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.detectors.base import FaceDetector
from facegate.detectors.letterbox import letterbox
from facegate.detectors.nms import hard_nms
from facegate.detectors.options import DetectorOptions, HaarOptions, RetinaFaceOptions, SsdOptions, YunetOptions
from facegate.errors import ConfigError, ImageError, ModelError, ModelNotInstalledError
from facegate.inference.manifest import ModelManifest, ModelZoo, default_zoo, verify_file
from facegate.types import Box, FaceDetection, FloatArray, ImageBGR

logger = logging.getLogger(__name__)

IMPORTABLE = ("ssd", "yunet", "retinaface")
RETINAFACE_PROBE = 640
YUNET_POINTS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


# -- file checks (import time) ---------------------------------------------------------------------


def retinaface_priors(width: int, height: int, steps: tuple[int, ...] = (8, 16, 32),
                      min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))) -> FloatArray:
    """Prior boxes ``(N, 4)`` ``(cx, cy, w, h)`` normalised to the input, in the export's order."""
    rows: list[tuple[float, float, float, float]] = []
    for step, sizes in zip(steps, min_sizes, strict=True):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for size in sizes:
                    rows.append(((j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height))
    return np.asarray(rows, dtype=np.float32)


def _run_onnx(path: Path, shape: tuple[int, int, int, int]) -> tuple[tuple[str, ...], list[NDArray[np.float32]]]:
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(np.zeros(shape, dtype=np.float32))
        names = tuple(net.getUnconnectedOutLayersNames())
        outs = [np.asarray(o, dtype=np.float32) for o in net.forward(list(names))]
    except cv2.error as err:
        raise ModelError(f"{path.name}: OpenCV's DNN module cannot run it on a {shape} input: "
                         f"{str(err).strip().splitlines()[-1]}") from err
    return names, outs


def _tflite_io(path: Path) -> tuple[tuple[int, ...], list[tuple[str, tuple[int, ...]]]]:
    from facegate.inference.tflite import TfliteModel

    model = TfliteModel(path, num_threads=1)
    return model.inputs[0].shape, [(o.name, o.shape) for o in model.outputs]


def check_detector_file(
    name: str, path: Path, size: tuple[int, int] | None
) -> tuple[int, int, Literal["NHWC", "NCHW"], list[tuple[str, str | int]]]:
    """``(width, height, layout, [(role, tensor)])`` of a detector file that fits ``name``; a
    :class:`ModelError` naming what was expected and what was found otherwise."""
    onnx = path.suffix.casefold() == ".onnx"
    if name == "yunet":
        try:
            yunet = cv2.FaceDetectorYN.create(str(path), "", (320, 320))
            yunet.detect(np.zeros((320, 320, 3), dtype=np.uint8))
        except cv2.error as err:
            raise ModelError(f"{path.name} is not a YuNet model cv2.FaceDetectorYN can run: "
                             f"{str(err).strip().splitlines()[-1]}") from err
        return 320, 320, "NCHW", []
    if name == "ssd":
        width, height = size or (300, 300)
        if onnx:
            names, outs = _run_onnx(path, (1, 3, height, width))
            shapes = [(n, tuple(o.shape)) for n, o in zip(names, outs, strict=True)]
            layout: Literal["NHWC", "NCHW"] = "NCHW"
        else:
            in_shape, io = _tflite_io(path)
            if in_shape not in ((1, height, width, 3), (1, 3, height, width)):
                raise ModelError(f"{path.name} does not fit ssd: input shape expected (1, {height}, {width}, 3), "
                                 f"got {in_shape}")
            layout = "NHWC" if in_shape[3] == 3 else "NCHW"
            shapes = io
        for tensor, shape in shapes:
            if len(shape) == 4 and shape[:2] == (1, 1) and shape[3] == 7:
                return width, height, layout, [("detections", tensor)]
        raise ModelError(f"{path.name} does not fit ssd: output shape expected (1, 1, N, 7), "
                         f"got {', '.join(str(s) for _, s in shapes)}")
    if name == "retinaface":
        if onnx:
            width = height = RETINAFACE_PROBE
            names, outs = _run_onnx(path, (1, 3, height, width))
            shapes = [(n, tuple(o.shape)) for n, o in zip(names, outs, strict=True)]
            layout = "NCHW"
        else:
            in_shape, shapes = _tflite_io(path)
            if len(in_shape) != 4 or 3 not in (in_shape[1], in_shape[3]):
                raise ModelError(f"{path.name} does not fit retinaface: input expected (1, H, W, 3), got {in_shape}")
            layout = "NHWC" if in_shape[3] == 3 else "NCHW"
            height, width = (in_shape[1], in_shape[2]) if layout == "NHWC" else (in_shape[2], in_shape[3])
        n = retinaface_priors(width, height).shape[0]
        roles: dict[int, str] = {4: "loc", 2: "conf", 10: "landmarks"}
        found: dict[str, str | int] = {}
        for tensor, shape in shapes:
            if len(shape) == 3 and shape[0] == 1 and shape[1] == n and shape[2] in roles:
                found[roles[shape[2]]] = tensor
        if len(found) != 3:
            raise ModelError(f"{path.name} does not fit retinaface at {width}x{height}: outputs expected "
                             f"(1, {n}, 4), (1, {n}, 2), (1, {n}, 10), got {', '.join(str(s) for _, s in shapes)}")
        return width, height, layout, sorted(found.items())
    raise ConfigError(f"{name!r} is not an importable detector; importable: {', '.join(IMPORTABLE)}")


# -- running ---------------------------------------------------------------------------------------


class _Runner:
    """One forward pass of an ONNX (OpenCV DNN) or TFLite file; outputs by manifest role."""

    def __init__(self, manifest: ModelManifest, num_threads: int) -> None:
        self.manifest = manifest
        path = verify_file(manifest)
        self._roles = {o.role: o.tensor for o in manifest.outputs}
        self._lock = threading.Lock()
        self._net: Any = None
        self._tflite: Any = None
        if manifest.format == "onnx":
            try:
                self._net = cv2.dnn.readNetFromONNX(str(path))
            except cv2.error as err:
                raise ModelError(f"OpenCV cannot load {path.name}: {err}") from err
        else:
            from facegate.inference.tflite import TfliteModel

            self._tflite = TfliteModel(path, num_threads=num_threads)

    def run(self, nchw: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        if self._net is not None:
            names = [str(t) for t in self._roles.values()]
            with self._lock:
                self._net.setInput(nchw)
                outs = self._net.forward(names)
            return {role: np.asarray(o, dtype=np.float32) for role, o in zip(self._roles, outs, strict=True)}
        spec = self.manifest.input
        x = nchw if spec is not None and spec.layout == "NCHW" else np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
        outs = self._tflite.run([x])
        return {role: outs[self._tflite.output_index(t)] for role, t in self._roles.items()}


def _blob(image: ImageBGR, manifest: ModelManifest, width: int, height: int) -> NDArray[np.float32]:
    spec = manifest.input
    if spec is None:
        raise ModelError(f"manifest {manifest.name} has no input spec")
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if image.shape[1] > width
                         else cv2.INTER_LINEAR)
    if spec.colour == "RGB":
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    mean = np.broadcast_to(np.asarray(spec.normalisation.mean, dtype=np.float32), (3,))
    std = np.broadcast_to(np.asarray(spec.normalisation.std, dtype=np.float32), (3,))
    x = (resized.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _check_image(name: str, image: ImageBGR) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"{name}: want a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")


class _Base(FaceDetector):
    def __init__(self, manifest: ModelManifest, options: DetectorOptions) -> None:
        self.manifest = manifest
        self.options = options
        self.min_score = float(options.score_threshold if options.score_threshold is not None
                               else manifest.decoder.get("min_score", 0.5))

    def _finish(self, faces: list[FaceDetection]) -> list[FaceDetection]:
        faces = [f for f in faces if min(f.box.width, f.box.height) >= self.options.min_face_px]
        faces.sort(key=lambda f: -f.score)
        return faces[: self.options.max_faces] if self.options.max_faces is not None else faces


class SsdDetector(_Base):
    """OpenCV's res10 SSD (DeepFace's "ssd") with Haar-cascade eyes."""

    name = "ssd"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1, options: DetectorOptions | None = None,
                 zoo: ModelZoo | None = None) -> None:
        super().__init__(manifest, options or SsdOptions())
        if manifest.input is None:
            raise ModelError(f"manifest {manifest.name} has no input spec")
        self.width, self.height = manifest.input.width, manifest.input.height
        self._runner = _Runner(manifest, num_threads)
        from facegate.detectors.haar import build as build_haar

        self._eyes = build_haar(HaarOptions(), zoo=zoo)

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        _check_image(self.name, image)
        out = self._runner.run(_blob(image, self.manifest, self.width, self.height))["detections"].reshape(-1, 7)
        h, w = image.shape[:2]
        gray: NDArray[np.uint8] = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        faces: list[FaceDetection] = []
        for row in out:
            score = float(row[2])
            if score < self.min_score:
                continue
            x1, y1 = max(0.0, float(row[3]) * w), max(0.0, float(row[4]) * h)
            x2, y2 = min(float(w), float(row[5]) * w), min(float(h), float(row[6]) * h)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            box = Box(x1, y1, x2, y2)
            eyes = self._eyes.find_eyes(gray, (round(x1), round(y1), round(x2 - x1), round(y2 - y1)))
            if eyes is None:
                from facegate.detectors.box_eyes import eyes_from_box

                eyes = eyes_from_box(box, self._eyes.decoder.eye_fallback)
            faces.append(FaceDetection(box=box, score=score, landmarks=eyes, landmark_names=("right_eye", "left_eye"),
                                       detector=self.name))
        return self._finish(faces)


class YunetDetector(_Base):
    """OpenCV Zoo's YuNet through ``cv2.FaceDetectorYN``."""

    name = "yunet"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1,
                 options: DetectorOptions | None = None) -> None:
        super().__init__(manifest, options or YunetOptions())
        del num_threads
        d = manifest.decoder
        try:
            self._yn: Any = cv2.FaceDetectorYN.create(str(verify_file(manifest)), "", (320, 320), self.min_score,
                                                      float(d.get("nms_iou", 0.3)), int(d.get("top_k", 5000)))
        except cv2.error as err:
            raise ModelError(f"cv2.FaceDetectorYN cannot load {manifest.file}: {err}") from err
        self._lock = threading.Lock()

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        _check_image(self.name, image)
        h, w = image.shape[:2]
        with self._lock:
            self._yn.setInputSize((w, h))
            _, found = self._yn.detect(image)
        faces: list[FaceDetection] = []
        for row in (found if found is not None else []):
            x, y, bw, bh = (float(v) for v in row[:4])
            box = Box(max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            if box.width <= 0 or box.height <= 0:
                continue
            points = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
            faces.append(FaceDetection(box=box, score=float(row[14]), landmarks=points, landmark_names=YUNET_POINTS,
                                       detector=self.name))
        return self._finish(faces)


class RetinaFaceDetector(_Base):
    """RetinaFace (prior-box head) on a letterboxed frame."""

    name = "retinaface"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1,
                 options: DetectorOptions | None = None) -> None:
        super().__init__(manifest, options or RetinaFaceOptions())
        spec = manifest.input
        if spec is None:
            raise ModelError(f"manifest {manifest.name} has no input spec")
        d = manifest.decoder
        self.width, self.height = spec.width, spec.height
        self.priors = retinaface_priors(self.width, self.height, tuple(d.get("steps", (8, 16, 32))),
                                        tuple(tuple(s) for s in d.get("min_sizes", ((16, 32), (64, 128), (256, 512)))))
        self.variances = tuple(float(v) for v in d.get("variances", (0.1, 0.2)))
        self.nms_iou = float(d.get("nms_iou", 0.4))
        self._runner = _Runner(manifest, num_threads)

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        _check_image(self.name, image)
        canvas, placement = letterbox(image, self.width, self.height)
        out = self._runner.run(_blob(canvas, self.manifest, self.width, self.height))
        loc, conf, marks = out["loc"][0], out["conf"][0], out["landmarks"][0]
        e = np.exp(conf - conf.max(axis=1, keepdims=True))
        scores = (e[:, 1] / e.sum(axis=1)).astype(np.float32)
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        p = self.priors[keep]
        v0, v1 = self.variances
        centre = p[:, :2] + loc[keep, :2] * v0 * p[:, 2:]
        size = p[:, 2:] * np.exp(loc[keep, 2:] * v1)
        scale = np.asarray([self.width, self.height], dtype=np.float32)
        boxes = np.concatenate([(centre - size / 2) * scale, (centre + size / 2) * scale], axis=1).astype(np.float32)
        points = ((p[:, None, :2] + marks[keep].reshape(-1, 5, 2) * v0 * p[:, None, 2:]) * scale).astype(np.float32)
        found = hard_nms(boxes, scores[keep], points, iou_threshold=self.nms_iou)
        corners = placement.to_source(found.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        pts = placement.to_source(found.keypoints)
        h, w = image.shape[:2]
        faces = []
        for i in range(corners.shape[0]):
            x1, y1, x2, y2 = (float(c) for c in corners[i])
            box = Box(max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            if box.width <= 0 or box.height <= 0:
                continue
            faces.append(FaceDetection(box=box, score=float(found.scores[i]), landmarks=pts[i],
                                       landmark_names=YUNET_POINTS, detector=self.name))
        return self._finish(faces)


# -- factories -------------------------------------------------------------------------------------


def _manifest(name: str, zoo: ModelZoo | None, variant: str | None) -> ModelManifest:
    try:
        return (zoo or default_zoo()).family("detector", name, variant)
    except ModelNotInstalledError as err:
        from facegate.model_import import not_shipped_reason

        raise ModelNotInstalledError(
            f"detector {name!r} is not installed: {not_shipped_reason(name)}. Install a file you have the right "
            f"to use with `facegate models import FILE --as {name}` (.onnx or .tflite), or use 'mediapipe', "
            "'opencv' or 'dlib' (or 'mediapipe_full' / 'mtcnn' once built: `facegate models build --only blazeface` / "
            "`--only mtcnn`)"
        ) from err


def build_ssd(options: SsdOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> SsdDetector:
    return SsdDetector(_manifest("ssd", zoo, options.variant), num_threads=num_threads, options=options, zoo=zoo)


def build_yunet(options: YunetOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> YunetDetector:
    return YunetDetector(_manifest("yunet", zoo, options.variant), num_threads=num_threads, options=options)


def build_retinaface(
    options: RetinaFaceOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None
) -> RetinaFaceDetector:
    return RetinaFaceDetector(_manifest("retinaface", zoo, options.variant), num_threads=num_threads, options=options)


__all__ = [
    "IMPORTABLE",
    "RetinaFaceDetector",
    "SsdDetector",
    "YunetDetector",
    "build_retinaface",
    "build_ssd",
    "build_yunet",
    "check_detector_file",
    "retinaface_priors",
]
