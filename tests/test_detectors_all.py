"""Every shipped detector on real images (fresh machine: bundled models only), and the pure parts
of the opencv / mtcnn / dlib backends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facegate.detectors.base import FaceDetector
from facegate.detectors.registry import DETECTORS, build_detector
from facegate.errors import ConfigError, ModelNotInstalledError
from facegate.types import Box, ImageBGR

SHIPPED = ("mediapipe", "mediapipe_full", "opencv", "mtcnn", "dlib")


@pytest.fixture(scope="module", params=SHIPPED)
def detector(request: pytest.FixtureRequest) -> FaceDetector:
    return build_detector(str(request.param))


def test_finds_exactly_one_astronaut_with_eyes_in_subject_order(detector: FaceDetector,
                                                                astronaut_bgr: ImageBGR) -> None:
    faces = detector.detect(astronaut_bgr)
    assert len(faces) == 1, [f.box for f in faces]
    face = faces[0]
    # the astronaut's face: BlazeFace's reference box is (178, 81)-(272, 175)
    assert face.box.iou(Box(178.0, 81.0, 272.0, 175.0)) > 0.5
    assert face.left_eye[0] > face.right_eye[0]  # the person's left eye has the larger x
    for x, y in (face.left_eye, face.right_eye):
        assert face.box.x1 <= x <= face.box.x2 and face.box.y1 <= y <= face.box.y1 + 0.6 * face.box.height
    assert 0.0 < face.score <= 1.0
    assert face.detector == detector.name


def test_finds_no_face_in_coffee(detector: FaceDetector, coffee_bgr: ImageBGR) -> None:
    assert detector.detect(coffee_bgr) == []


def test_every_registry_entry_constructs_or_points_at_models_import(astronaut_bgr: ImageBGR) -> None:
    for name in DETECTORS.names():
        try:
            built = build_detector(name)
        except ModelNotInstalledError as err:
            assert name in ("ssd", "retinaface", "yunet")
            assert f"facegate models import FILE --as {name}" in str(err)
            continue
        assert built.name == name
        assert built.detect(astronaut_bgr)


@pytest.mark.parametrize("name", ["opencv", "mtcnn", "dlib"])
def test_options_are_validated(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        build_detector(name, no_such_option=1)
    with pytest.raises(ModelNotInstalledError):
        build_detector(name, variant="fp64")


@pytest.mark.parametrize("name", ["opencv", "mtcnn", "dlib"])
def test_max_faces_and_min_face_size(name: str, samples_dir: object, astronaut_bgr: ImageBGR) -> None:
    two = np.ascontiguousarray(np.concatenate([astronaut_bgr, astronaut_bgr[:, ::-1]], axis=1))
    assert len(build_detector(name).detect(two)) == 2
    assert len(build_detector(name, max_faces=1).detect(two)) == 1
    assert build_detector(name, min_face_size=400).detect(two) == []


def test_mtcnn_gives_five_landmarks_inside_the_box(astronaut_bgr: ImageBGR) -> None:
    (face,) = build_detector("mtcnn").detect(astronaut_bgr)
    assert face.landmark_names == ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
    pts = face.landmarks
    assert np.all(pts[:, 0] > face.box.x1) and np.all(pts[:, 0] < face.box.x2)
    assert pts[2, 1] > pts[:2, 1].max() and pts[3:, 1].min() > pts[2, 1]  # eyes above nose above mouth
    assert pts[4, 0] > pts[3, 0]  # the person's left mouth corner has the larger x


def test_haar_box_geometry_eyes_when_the_eye_cascade_is_off(astronaut_bgr: ImageBGR) -> None:
    from facegate.detectors.box_eyes import eyes_from_box
    from facegate.detectors.haar import HaarDetector

    det = build_detector("opencv", detect_eyes=False)
    assert isinstance(det, HaarDetector)
    (face,) = det.detect(astronaut_bgr)
    np.testing.assert_allclose(face.landmarks, eyes_from_box(face.box, det.decoder.eye_fallback))
    (with_cascade,) = build_detector("opencv").detect(astronaut_bgr)
    # the fitted fallback lands within a tenth of the face width of the cascade's eyes
    assert np.abs(with_cascade.landmarks - face.landmarks).max() < 0.1 * face.box.width


# -- pure parts ---------------------------------------------------------------------------------------


def test_mtcnn_nms_union_and_min() -> None:
    from facegate.detectors.mtcnn import nms

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # (1,1)-(11,11) overlaps box 0 by IoU 0.68
    # "Min": the best box lies inside boxes 0 and 1, so it covers all of the smaller of each pair
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [3, 2]


def test_mtcnn_square_and_regress() -> None:
    from facegate.detectors.mtcnn import regress, square

    sq = square(np.array([[10.0, 20.0, 30.0, 60.0, 0.9]]))
    np.testing.assert_allclose(sq, [[0.0, 20.0, 40.0, 60.0, 0.9]])
    moved = regress(np.array([[0.0, 0.0, 9.0, 9.0, 1.0]]), np.array([[0.1, -0.1, 0.2, 0.0]]))
    np.testing.assert_allclose(moved[0, :4], [1.0, -1.0, 11.0, 9.0])


def test_tiled_pyramid_layout_matches_dlib_rules() -> None:
    from facegate.detectors.mmod import TiledPyramid

    p = TiledPyramid.for_size(480, 640, rate=5 / 6, padding=10, outer_padding=11, min_height=5)
    first = p.rects[0]
    assert (first.left, first.top, first.width, first.height) == (11, 11, 640, 480)
    assert p.width == 640 + 22
    sizes = [(r.height, r.width) for r in p.rects]
    for (h0, w0), (h1, w1) in itertools.pairwise(sizes):
        assert (h1, w1) == (int(5 * h0 / 6), int(5 * w0 / 6))
    for i, a in enumerate(p.rects):  # tiles never overlap and stay inside the canvas
        assert a.left >= 0 and a.top >= 0 and a.right < p.width and a.bottom < p.height
        for b in p.rects[i + 1 :]:
            assert a.right < b.left or b.right < a.left or a.bottom < b.top or b.bottom < a.top


def test_tiled_pyramid_levels_are_align_corner_bilinear_reductions() -> None:
    from facegate.detectors.mmod import TiledPyramid

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(60, 80, 3)).astype(np.float32)
    p = TiledPyramid.for_size(60, 80, rate=5 / 6, padding=10, outer_padding=11, min_height=5)
    tiled = p.build(img, (1.0, 2.0, 3.0))
    r0, r1 = p.rects[0], p.rects[1]
    np.testing.assert_array_equal(tiled[r0.top : r0.bottom + 1, r0.left : r0.right + 1], img)
    level = tiled[r1.top : r1.bottom + 1, r1.left : r1.right + 1]
    # corners of a level sample the previous level's corners exactly
    np.testing.assert_allclose(level[0, 0], img[0, 0], rtol=1e-6)
    np.testing.assert_allclose(level[-1, -1], img[-1, -1], rtol=1e-6)
    np.testing.assert_array_equal(tiled[0, 0], [1.0, 2.0, 3.0])  # padding is the given colour


def test_dlib_overlap_test() -> None:
    from facegate.detectors.mmod import Rect, overlaps

    a = Rect(0, 0, 9, 9)
    assert overlaps(a, Rect(2, 2, 11, 11), 0.338, 1.0)  # IoU 64/136 = 0.47
    assert not overlaps(a, Rect(6, 6, 15, 15), 0.338, 1.0)  # IoU 16/184
    assert overlaps(a, Rect(2, 2, 5, 5), 0.338, 0.99)  # fully covered
    assert not overlaps(a, Rect(10, 10, 12, 12), 0.338, 1.0)
