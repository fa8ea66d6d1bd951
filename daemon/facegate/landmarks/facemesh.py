"""dlib's five points from MediaPipe FaceMesh (468 points, TFLite, 192x192 RGB in [0, 1]).

The crop follows MediaPipe's face-landmark graph: a square ``roi_scale`` times the detector box's
longer side, centred on the box and rotated so the detector's eyes are level. Five mesh vertices
stand in for dlib's points (``decoder.mesh_indices``: 263/362 the person's left eye outer/inner
corner, 33/133 the right eye's, 2 the subnasale), then a per-point offset fitted at build time
against dlib's own predictor (``decoder.correction``, in units of the mesh's inter-ocular distance
along and across the eye line) moves them onto dlib's definition of those points.

Coordinates: like the detectors, source pixels with the origin at the top-left *corner*; mesh
outputs are in the same convention inside the 192x192 crop.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest, default_zoo, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.landmarks.base import DLIB5_NAMES, Landmarker, with_points
from facegate.types import FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

Float64Array = NDArray[np.float64]


def mesh_crop_matrix(detection: FaceDetection, size: int, roi_scale: float) -> Float64Array:
    """2x3 affine matrix taking source coordinates (corner origin) to crop coordinates (corner origin)."""
    cx, cy = detection.box.center
    side = roi_scale * max(detection.box.width, detection.box.height)
    if side <= 0:
        raise ModelError("cannot crop a face mesh ROI from an empty box")
    rx, ry = detection.right_eye
    lx, ly = detection.left_eye
    angle = math.atan2(ly - ry, lx - rx)  # the person's right eye -> left eye, level after rotation
    k = size / side
    c, s = math.cos(angle) * k, math.sin(angle) * k
    # rotate by -angle and scale about the box centre, which lands on the crop centre
    return np.array([[c, s, size / 2 - (c * cx + s * cy)], [-s, c, size / 2 - (-s * cx + c * cy)]])


def warp_crop(image: ImageBGR, matrix: Float64Array, size: int) -> NDArray[np.uint8]:
    """The ``(size, size, 3)`` BGR crop; ``matrix`` uses corner-origin coordinates on both sides."""
    # warpAffine samples pixel centres at integer coordinates: shift by half a pixel on both sides
    shift = matrix.copy()
    shift[:, 2] += matrix[:, :2].sum(axis=1) * 0.5 - 0.5
    crop = cv2.warpAffine(image, shift, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return np.asarray(crop, dtype=np.uint8)


def correct(points: Float64Array, correction: Float64Array) -> Float64Array:
    """Shift ``points`` (dlib order) by ``correction`` ``(5, 2)`` given in the points' own face frame.

    The frame: x along the person's right-eye -> left-eye line, y perpendicular (downwards in an
    upright face), both in units of the distance between the eye-corner midpoints.
    """
    left = points[0:2].mean(axis=0)
    right = points[2:4].mean(axis=0)
    axis = left - right
    iod = float(np.hypot(axis[0], axis[1]))
    if iod <= 0:
        return points
    ux = axis / iod
    uy = np.array([-ux[1], ux[0]])
    shifted: Float64Array = points + iod * (correction[:, :1] * ux + correction[:, 1:2] * uy)
    return shifted


def face_frame_residuals(points: Float64Array, targets: Float64Array) -> Float64Array:
    """``targets - points`` expressed in the face frame of ``points`` (the inverse of :func:`correct`)."""
    left = points[0:2].mean(axis=0)
    right = points[2:4].mean(axis=0)
    axis = left - right
    iod = float(np.hypot(axis[0], axis[1]))
    ux = axis / iod
    uy = np.array([-ux[1], ux[0]])
    d = targets - points
    return np.stack([d @ ux, d @ uy], axis=1) / iod


class FaceMesh:
    """The FaceMesh network: a BGR face crop in, 468 points ``(x, y, z)`` in crop pixels out."""

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1) -> None:
        self.manifest = manifest
        if manifest.input is None:
            raise ModelError(f"{manifest.name}: manifest has no input block")
        self.size = manifest.input.width
        self.scale = 1.0 / float(manifest.input.normalisation.std[0])
        self.model = TfliteModel(verify_file(manifest), num_threads=num_threads)
        self._points = self.model.output_index(manifest.output("landmarks").tensor)
        self._flag = self.model.output_index(manifest.output("face_flag").tensor)

    def run(self, crop: NDArray[np.uint8]) -> tuple[Float64Array, float]:
        """``(468, 3)`` points in crop pixels and the face-presence probability."""
        rgb = crop[:, :, ::-1].astype(np.float32) * np.float32(self.scale)
        out = self.model.run([rgb[None]])
        points = out[self._points].reshape(-1, 3).astype(np.float64)
        logit = float(out[self._flag].reshape(-1)[-1])
        return points, 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


class FaceMeshLandmarker(Landmarker):
    """Adds dlib's five points to a detection from a FaceMesh run on a rotated crop of its box."""

    name = "facemesh"
    point_names = DLIB5_NAMES

    def __init__(self, manifest: ModelManifest | None = None, *, num_threads: int = 1) -> None:
        manifest = manifest if manifest is not None else default_zoo().family("landmarks", "facemesh")
        self.mesh = FaceMesh(manifest, num_threads=num_threads)
        decoder = manifest.decoder
        try:
            self.indices = [int(i) for i in decoder["mesh_indices"]]
            self.roi_scale = float(decoder["roi_scale"])
            self.correction = np.asarray(decoder.get("correction", [[0.0, 0.0]] * 5), dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{manifest.name}: invalid decoder block: {err}") from err
        if len(self.indices) != len(DLIB5_NAMES) or self.correction.shape != (len(DLIB5_NAMES), 2):
            raise ModelError(f"{manifest.name}: mesh_indices and correction must list {len(DLIB5_NAMES)} points")

    def mesh_points(self, image: ImageBGR, detection: FaceDetection) -> tuple[Float64Array, float]:
        """All mesh points ``(468, 2)`` in source coordinates and the face-presence probability."""
        size = self.mesh.size
        matrix = mesh_crop_matrix(detection, size, self.roi_scale)
        points, flag = self.mesh.run(warp_crop(image, matrix, size))
        inverse = cv2.invertAffineTransform(matrix)
        source = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        return source, flag

    def raw_points(self, image: ImageBGR, detection: FaceDetection) -> Float64Array:
        """The five mesh vertices standing in for dlib's points, before the correction."""
        mesh, _ = self.mesh_points(image, detection)
        picked: Float64Array = mesh[self.indices]
        return picked

    def landmarks(self, image: ImageBGR, detection: FaceDetection) -> FaceDetection:
        points = correct(self.raw_points(image, detection), self.correction)
        return with_points(detection, DLIB5_NAMES, points)


__all__ = ["FaceMesh", "FaceMeshLandmarker", "correct", "face_frame_residuals", "mesh_crop_matrix", "warp_crop"]
