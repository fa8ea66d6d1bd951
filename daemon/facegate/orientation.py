"""Face orientation: is a detection upright in its own frame, and finding faces in rotated photos.

Face detectors and embedders are trained on upright faces. A photo taken sideways or upside down
either shows no face to the detector, or (worse) a face whose landmarks the detector labelled as if it
were upright: the eye the detector calls "right" is then the person's left eye, and a similarity
transform (which never mirrors) turns the chip upside down. Such a chip still produces an embedding,
and a 180-degree-rotated photo of one person was measured closer than the threshold to another person.

:func:`is_upright` checks the landmark geometry: in the face's own frame, defined by the eye axis from
the person's right eye to their left eye, "down" is that axis turned a quarter turn clockwise (image
coordinates, y down), and the mouth (or, without a mouth point, the nose) must lie on that side of the
eyes. The aligner also checks its chip (:func:`upright_in_chip`): the 5-point landmarker places its
points as if the face were upright, so a sideways face found by a rotation-tolerant detector would
still be cut turned by 90 degrees. Neither check sees everything: BlazeFace also finds sideways and
upside-down faces, at a lower score, with all its points laid out as if the face were upright. So
:func:`detect_any_orientation` keeps only faces that pass both checks, reads the image turned by 0, 90,
270 and 180 degrees and keeps the orientation the detector is most confident about; detections and
chip transforms are reported in the original image's coordinates. Box-only detectors (MMOD, Haar)
cannot take part: their eye points are estimated from the box and look upright in any rotation, so the
engine reads a photo's orientation with the default detector and runs theirs at that rotation
(:func:`faces_at_rotation`). The daemon's frames use ``cameras[].rotation`` instead, one pass.

The turned readings are screened first when the caller can do it cheaply (the engine: the detector run
on a small copy of its already downscaled detection image, turned by 90/180/270, instead of turning the
full-size photo and downscaling it again): only a reading whose screen score comes within
:data:`SCREEN_MARGIN` of what it must beat is read in full. The screen only decides which readings need
the full one; every face returned still comes from a full reading, so the outcome is that of the
unscreened search whenever the screen's score is within the margin of the full reading's (measured:
0.0073 at most over the 1,596 turned readings of the 133 identity photos turned four ways, against a
margin of 0.05). An upright face the detector is surer of than of any wrong reading measured
(:data:`CONFIDENT_UPRIGHT`) ends the search before the turned readings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import ConfigError, NoFaceError
from facegate.types import AlignedFace, Box, FaceDetection, ImageBGR

ROTATIONS: Final = (0, 90, 180, 270)
_CODES: Final = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
#: orientations tried when no upright face is found: the two sideways ones (the common case of a phone
#: photo saved without its EXIF orientation), then upside down
SEARCH_ORDER: Final = (90, 270, 180)

_EYES: Final = ((("right_eye",), ("left_eye",)), (("right_eye_outer", "right_eye_inner"),
                                                  ("left_eye_outer", "left_eye_inner")))
_LOWER_FACE: Final = (("mouth",), ("mouth_right", "mouth_left"), ("nose_bottom",), ("nose",))


def rotate_image(image: ImageBGR, degrees: int) -> ImageBGR:
    """``image`` turned clockwise by ``degrees`` (0, 90, 180 or 270; a lossless pixel permutation)."""
    if degrees not in ROTATIONS:
        raise ConfigError(f"rotation must be one of {ROTATIONS} (degrees clockwise), got {degrees!r}")
    if degrees == 0:
        return image
    return np.ascontiguousarray(cv2.rotate(image, _CODES[degrees]))


def _mean_of(detection: FaceDetection, names: Sequence[str]) -> NDArray[np.float64] | None:
    points = [detection.point(n) for n in names]
    if any(p is None for p in points):
        return None
    mean: NDArray[np.float64] = np.asarray(points, dtype=np.float64).mean(axis=0)
    return mean


def is_upright(detection: FaceDetection) -> bool | None:
    """True when the mouth (or nose) lies below the eyes in the face's own frame, False when above;
    None when the detection lacks the points to tell (the skip detector, eyes only)."""
    eyes = next(((r, le) for rn, ln in _EYES if (r := _mean_of(detection, rn)) is not None
                 and (le := _mean_of(detection, ln)) is not None), None)
    if eyes is None:
        return None
    right, left = eyes
    lower = next((p for names in _LOWER_FACE if (p := _mean_of(detection, names)) is not None), None)
    if lower is None:
        return None
    axis = left - right
    down = np.array([-axis[1], axis[0]])
    return float(np.dot(lower - (left + right) / 2.0, down)) > 0.0


class UpsideDownFaceError(NoFaceError):
    """The chip of a detection would not be upright (its landmarks disagree with an upright face)."""


def upright_in_chip(detection: FaceDetection, to_chip: NDArray[np.floating]) -> bool | None:
    """Whether the chip that ``to_chip`` (2x3, source -> chip pixels) cuts shows ``detection`` upright.

    The detector's own eyes and mouth (or nose) are mapped into the chip: the person's left eye must lie
    right of their right eye and the mouth clearly below the eyes (by a quarter of the eye distance).
    This catches a landmarker that placed its points on a face it took for upright (a sideways face
    aligned from such points gives a chip turned by 90 degrees). None when the points are missing.
    """
    right, left = _mean_of(detection, ("right_eye",)), _mean_of(detection, ("left_eye",))
    lower = next((p for names in _LOWER_FACE if (p := _mean_of(detection, names)) is not None), None)
    if right is None or left is None or lower is None:
        return None
    m = np.asarray(to_chip, dtype=np.float64)
    (rx, ry), (lx, ly), (_, my) = (m[:, :2] @ p + m[:, 2] for p in (right, left, lower))
    iod = float(np.hypot(lx - rx, ly - ry))
    return bool(lx > rx and my - (ry + ly) / 2.0 > 0.25 * iod)


def _unrotate_points(points: NDArray[np.float64], degrees: int, height: int, width: int) -> NDArray[np.float32]:
    """Points of the image turned clockwise by ``degrees`` -> the original ``height`` x ``width`` image."""
    x, y = points[:, 0], points[:, 1]
    if degrees == 90:  # rotated (x', y') = (H - y, x)
        out = np.stack([y, height - x], axis=1)
    elif degrees == 180:  # (W - x, H - y)
        out = np.stack([width - x, height - y], axis=1)
    elif degrees == 270:  # (y, W - x)
        out = np.stack([width - y, x], axis=1)
    else:
        out = points
    return np.asarray(out, dtype=np.float32)


def unrotate_detection(detection: FaceDetection, degrees: int, shape: tuple[int, ...]) -> FaceDetection:
    """A detection found in the image turned clockwise by ``degrees``, in the original image's pixels."""
    height, width = int(shape[0]), int(shape[1])
    b = detection.box
    corners = _unrotate_points(np.array([[b.x1, b.y1], [b.x2, b.y2]], dtype=np.float64), degrees, height, width)
    (x1, y1), (x2, y2) = corners.min(axis=0), corners.max(axis=0)
    landmarks = (_unrotate_points(np.asarray(detection.landmarks, dtype=np.float64), degrees, height, width)
                 if len(detection.landmark_names) else detection.landmarks)
    return FaceDetection(Box(float(x1), float(y1), float(x2), float(y2)), detection.score, landmarks,
                         detection.landmark_names, detection.detector)


def _rotation_matrix(degrees: int, height: int, width: int) -> NDArray[np.float64]:
    """3x3 map of original pixels -> pixels of the image turned clockwise by ``degrees``."""
    rows = {0: [[1, 0, 0], [0, 1, 0]], 90: [[0, -1, height], [1, 0, 0]], 180: [[-1, 0, width], [0, -1, height]],
            270: [[0, 1, 0], [-1, 0, width]]}[degrees]
    return np.vstack([np.asarray(rows, dtype=np.float64), [0.0, 0.0, 1.0]])


def unrotate_face(face: AlignedFace, degrees: int, shape: tuple[int, ...]) -> AlignedFace:
    """A face aligned in the image turned by ``degrees``, described in the original image: its detection
    in original pixels and its transform composed with the turn (the chip itself is unchanged)."""
    if degrees == 0:
        return face
    turn = _rotation_matrix(degrees, int(shape[0]), int(shape[1]))
    transform = (np.asarray(face.transform, dtype=np.float64) @ turn).astype(np.float32)
    return AlignedFace(face.image, unrotate_detection(face.detection, degrees, shape), transform, face.template,
                       face.quality)


Found = list[tuple[FaceDetection, AlignedFace]]

#: the detector score a face found in a turned image needs (the detector's own threshold applies as the
#: image is): turned photos' right orientations scored 0.88-0.99, false detections in turned face-less
#: pictures about 0.5
TURNED_MIN_SCORE: Final = 0.7
#: how far below the score a turned reading must beat its screen score may be and the reading is still
#: done in full (7x the largest screen error measured, see the module docstring)
SCREEN_MARGIN: Final = 0.05
#: per detector (registry name): an upright face scoring at least this ends the search, no turned
#: reading is looked at. Calibrated on the 133 identity photos turned four ways: BlazeFace short range's
#: wrong readings (a turned photo read sideways or upside down) scored 0.935 at most, raw, before the
#: upright checks; 16 of the 54 photos of ``bench --photo`` score 0.96 or more upright. Detectors
#: without a calibrated value (other score scales: MTCNN gives 0.99 to almost anything) always search.
CONFIDENT_UPRIGHT: Final[dict[str, float]] = {"mediapipe": 0.96}


def _faces_at(detect: Callable[[ImageBGR], list[FaceDetection]],
              align: Callable[[ImageBGR, FaceDetection], AlignedFace], image: ImageBGR, degrees: int,
              min_score: float = -1.0, must_beat: float = -1.0,
              detections: list[FaceDetection] | None = None) -> Found:
    """Faces found with ``image`` turned by ``degrees``; none unless one scores above ``must_beat``.

    ``detections``: those of the turned image when the caller already has them. Alignment (landmarks
    and chip) is the expensive part, so an orientation whose best raw detection cannot beat the best
    found so far is not aligned at all: the outcome is the same, as alignment only ever removes candidates.
    """
    turned = rotate_image(image, degrees)
    raw = detect(turned) if detections is None else detections
    candidates = [d for d in raw if d.score >= min_score and is_upright(d) is not False]
    if max((d.score for d in candidates), default=-1.0) <= must_beat:
        return []
    found: Found = []
    for d in candidates:
        try:
            face = align(turned, d)
        except UpsideDownFaceError:
            continue
        found.append((unrotate_detection(d, degrees, image.shape) if degrees else d,
                      unrotate_face(face, degrees, image.shape)))
    return found


def faces_at_rotation(detect: Callable[[ImageBGR], list[FaceDetection]],
                      align: Callable[[ImageBGR, FaceDetection], AlignedFace], image: ImageBGR,
                      degrees: int) -> Found:
    """Upright faces of ``image`` read turned by ``degrees`` (an orientation decided elsewhere), in the
    original image's coordinates; upside-down detections and chips are dropped as in the search."""
    return _faces_at(detect, align, image, degrees)


def _best_score(found: Found) -> float:
    return max((d.score for d, _ in found), default=-1.0)


def detect_any_orientation(detect: Callable[[ImageBGR], list[FaceDetection]],
                           align: Callable[[ImageBGR, FaceDetection], AlignedFace], image: ImageBGR, *,
                           upright: list[FaceDetection] | None = None,
                           screen: Callable[[int], float] | None = None,
                           confident: float | None = None) -> tuple[Found, int]:
    """Upright faces of ``image`` (detection and aligned chip, in the original image's coordinates) and
    the rotation (degrees clockwise) they were found at; ``([], 0)`` when no orientation shows one.

    A detection whose landmarks are upside down is dropped, and so is one whose chip would not be
    upright (:class:`UpsideDownFaceError` from ``align``). The image is read in all four orientations
    and the one whose best face the detector is most confident about wins (the image as it is on a
    tie). No score threshold can replace the comparison: upright faces of the 133 evaluation photos
    scored 0.76-0.98 with BlazeFace, and sideways or upside-down readings of turned photos (with
    landmarks laid out as if upright, which no geometric check can see) 0.80-0.92, while the right
    orientation of those photos scored 0.88-0.99; no upright photo was beaten by a turned reading.
    A turned reading must also score :data:`TURNED_MIN_SCORE`: three more looks at a picture without a
    face are three more chances of a false detection (skimage's coffee cup: 0.54 and 0.53 sideways).

    ``upright``: the detections of ``image`` as it is, when the caller already has them. ``screen``
    (degrees -> best detector score of a cheap reading turned by that much, -1 for none): a turned
    reading whose screen score is :data:`SCREEN_MARGIN` short of both :data:`TURNED_MIN_SCORE` and the
    best face so far is not read in full; without it every orientation is. ``confident``: an upright
    face scoring at least this is taken without looking at turned readings (:data:`CONFIDENT_UPRIGHT`).
    """
    best, best_degrees = _faces_at(detect, align, image, 0, detections=upright), 0
    if confident is not None and _best_score(best) >= confident:
        return best, 0
    for degrees in SEARCH_ORDER:
        must_beat = _best_score(best)
        if screen is not None and screen(degrees) + SCREEN_MARGIN < max(TURNED_MIN_SCORE, must_beat):
            continue
        turned = _faces_at(detect, align, image, degrees, TURNED_MIN_SCORE, must_beat)
        if _best_score(turned) > _best_score(best):
            best, best_degrees = turned, degrees
    return best, best_degrees if best else 0


__all__ = ["CONFIDENT_UPRIGHT", "ROTATIONS", "SCREEN_MARGIN", "SEARCH_ORDER", "TURNED_MIN_SCORE", "UpsideDownFaceError",
           "detect_any_orientation", "faces_at_rotation", "is_upright", "rotate_image", "unrotate_detection",
           "unrotate_face", "upright_in_chip"]
