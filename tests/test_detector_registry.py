"""The detector registry: every entry constructs or raises its documented error; the skip detector."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.detectors.base import FaceDetector
from facegate.detectors.registry import DEFAULT_DETECTOR, DETECTORS, build_detector
from facegate.detectors.skip import SkipDetector
from facegate.errors import ConfigError, ModelNotInstalledError
from facegate.types import ImageBGR

#: must work in every checkout: their models ship with facegate (or need none)
BUILT_IN = ("mediapipe", "mediapipe_full", "skip")
#: names reserved for other backends; until implemented they raise ModelNotInstalledError
RESERVED = ("opencv", "mtcnn", "dlib", "ssd", "retinaface", "yunet")


def test_registry_lists_every_documented_name() -> None:
    names = DETECTORS.names()
    assert set(BUILT_IN + RESERVED) <= set(names)
    assert DEFAULT_DETECTOR == "mediapipe"


@pytest.mark.parametrize("name", DETECTORS.names())
def test_every_registry_entry_constructs_or_says_why_not(name: str, astronaut_bgr: ImageBGR) -> None:
    try:
        detector = build_detector(name, num_threads=1)
    except ModelNotInstalledError as err:
        assert name not in BUILT_IN
        text = str(err)
        # a placeholder says so; a real backend without weights points at `models import`
        assert "not available yet" in text or "facegate models import" in text
        assert name in text
        return
    assert isinstance(detector, FaceDetector)
    assert detector.name == name
    faces = detector.detect(astronaut_bgr)
    assert isinstance(faces, list) and faces  # every working backend finds the astronaut
    assert all(f.detector == name for f in faces)
    if name == "skip":  # nothing was detected, so no eye is invented
        assert faces[0].landmark_names == () and faces[0].point("left_eye") is None
        return
    assert faces[0].left_eye[0] > faces[0].right_eye[0]


@pytest.mark.parametrize("name", ["ssd", "retinaface", "yunet"])
def test_import_only_backends_point_at_models_import(name: str) -> None:
    try:
        build_detector(name)
    except ModelNotInstalledError as err:
        assert "facegate models import" in str(err)
    else:  # pragma: no cover - only once a user has imported the weights
        pass


def test_unknown_name_is_a_config_error_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'blazeface'.*mediapipe"):
        build_detector("blazeface")


def test_names_are_case_insensitive() -> None:
    assert build_detector("MediaPipe").name == "mediapipe"
    assert DETECTORS.canonical("SKIP") == "skip"


def test_default_is_blazeface_short_range() -> None:
    detector = build_detector()
    assert detector.name == "mediapipe"


def test_skip_detector_returns_the_whole_image_as_one_face() -> None:
    image = np.zeros((150, 120, 3), dtype=np.uint8)
    faces = build_detector("skip").detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert (face.box.x1, face.box.y1, face.box.x2, face.box.y2) == (0.0, 0.0, 120.0, 150.0)
    assert face.score == 1.0 and face.detector == "skip"
    # nothing was detected, so no eye position is invented
    assert face.landmark_names == () and face.landmarks.shape == (0, 2)
    assert face.point("left_eye") is None and face.point("right_eye") is None


def test_skip_ignores_common_options_and_rejects_others() -> None:
    assert isinstance(build_detector("skip", variant=None, score_threshold=0.5, min_face_px=32), SkipDetector)
    with pytest.raises(ConfigError, match="'scale_factor' is not an option of 'skip'"):
        build_detector("skip", scale_factor=1.1)


def test_skip_reports_no_eyes_and_still_embeds(astronaut_bgr: ImageBGR) -> None:
    """DeepFace's skip gives left_eye/right_eye None; the whole image is resized into the chip."""
    from facegate import api

    crop = astronaut_bgr[40:260, 150:330]
    (rep,) = api.represent(crop, detector_backend="skip")
    assert isinstance(rep, api.Representation)
    area = rep.to_dict()["facial_area"]
    assert area["left_eye"] is None and area["right_eye"] is None
    assert (area["w"], area["h"]) == (180, 220)
    assert len(rep.embedding) == 128 and any(rep.embedding)
    (face,) = api.extract_faces(crop, detector_backend="skip")
    assert face.facial_area.left_eye is None and face.face.shape[:2] == (150, 150)
