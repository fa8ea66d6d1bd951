"""Non-maximum suppression on numpy arrays.

Boxes are ``(N, 4)`` float32 ``(x1, y1, x2, y2)`` in any consistent unit; scores ``(N,)``; optional
keypoints ``(N, K, 2)`` travel with their box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Suppressed:
    """NMS output, best score first: ``boxes (M, 4)``, ``scores (M,)``, ``keypoints (M, K, 2)``."""

    boxes: FloatArray
    scores: FloatArray
    keypoints: FloatArray


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise IoU ``(N, M)`` of ``a (N, 4)`` and ``b (M, 4)`` xyxy boxes."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0.0, None) * np.clip(iy2 - iy1, 0.0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.where(union > 0.0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)
    return out


def _empty_like(keypoints: FloatArray) -> Suppressed:
    return Suppressed(
        np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, *keypoints.shape[1:]), np.float32)
    )


def _keypoints_or_empty(boxes: FloatArray, keypoints: FloatArray | None) -> FloatArray:
    if keypoints is None:
        return np.zeros((boxes.shape[0], 0, 2), np.float32)
    return keypoints


def weighted_nms(
    boxes: FloatArray,
    scores: FloatArray,
    keypoints: FloatArray | None = None,
    *,
    iou_threshold: float,
    max_out: int | None = None,
) -> Suppressed:
    """MediaPipe's weighted NMS.

    Going down the scores, each remaining box gathers every remaining box that overlaps it by more
    than ``iou_threshold``; the cluster becomes one detection whose box and keypoints are the
    score-weighted mean of its members and whose score is the best member's. Averaging is why
    BlazeFace's landmarks are steadier than any single anchor's.
    """
    kps = _keypoints_or_empty(boxes, keypoints)
    if boxes.shape[0] == 0:
        return _empty_like(kps)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, kps = boxes[order], scores[order], kps[order]
    overlap = iou_matrix(boxes, boxes)
    alive = np.ones(boxes.shape[0], dtype=bool)
    out_boxes: list[FloatArray] = []
    out_scores: list[float] = []
    out_kps: list[FloatArray] = []
    for i in range(boxes.shape[0]):
        if not alive[i]:
            continue
        members = alive & (overlap[i] > iou_threshold)
        members[i] = True
        alive &= ~members
        weights = scores[members]
        total = float(weights.sum())
        if total > 0.0:
            out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0) / total)
            out_kps.append((kps[members] * weights[:, None, None]).sum(axis=0) / total)
        else:
            out_boxes.append(boxes[i])
            out_kps.append(kps[i])
        out_scores.append(float(scores[i]))
        if max_out is not None and len(out_scores) >= max_out:
            break
    return Suppressed(
        np.asarray(out_boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(out_scores, dtype=np.float32),
        np.asarray(out_kps, dtype=np.float32).reshape(len(out_kps), *kps.shape[1:]),
    )


def hard_nms(
    boxes: FloatArray,
    scores: FloatArray,
    keypoints: FloatArray | None = None,
    *,
    iou_threshold: float,
    max_out: int | None = None,
) -> Suppressed:
    """Classic NMS: keep the best box, drop every box overlapping it by more than ``iou_threshold``."""
    kps = _keypoints_or_empty(boxes, keypoints)
    if boxes.shape[0] == 0:
        return _empty_like(kps)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, kps = boxes[order], scores[order], kps[order]
    overlap = iou_matrix(boxes, boxes)
    alive = np.ones(boxes.shape[0], dtype=bool)
    keep: list[int] = []
    for i in range(boxes.shape[0]):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= overlap[i] <= iou_threshold
        if max_out is not None and len(keep) >= max_out:
            break
    idx = np.asarray(keep, dtype=np.intp)
    return Suppressed(boxes[idx], scores[idx], kps[idx])


__all__ = ["Suppressed", "hard_nms", "iou_matrix", "weighted_nms"]
