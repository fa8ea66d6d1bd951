"""Landmark providers: dlib's five points from the numpy shape predictor and from FaceMesh."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.detectors.base import FaceDetector
from facegate.errors import ConfigError, ModelError, ModelNotInstalledError
from facegate.inference.manifest import ModelZoo, bundled_models_dir
from facegate.landmarks.base import DLIB5_NAMES, Landmarker, points_of
from facegate.landmarks.registry import DEFAULT_LANDMARKER, LANDMARKERS, build_landmarker
from facegate.landmarks.shape_predictor import (
    RectMapping,
    ShapePredictor,
    ShapePredictorWeights,
    centre_coordinates,
)
from facegate.types import Box, FaceDetection, ImageBGR
from tests.fixtures.images import read_bgr

SAMPLES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


def _detector() -> FaceDetector:
    from facegate.detectors.registry import build_detector

    try:
        return build_detector("mediapipe")
    except ModelNotInstalledError as err:
        pytest.skip(f"BlazeFace model not installed yet: {err}")


def _largest(image: ImageBGR) -> FaceDetection:
    found = _detector().detect(image)
    assert found, "BlazeFace found no face in a frontal sample photo"
    return max(found, key=lambda d: d.box.area)


def _faces(samples_dir: Path, astronaut_bgr: ImageBGR) -> list[tuple[str, ImageBGR]]:
    images = [(name, read_bgr(samples_dir / name)) for name in SAMPLES]
    return [*images, ("astronaut", astronaut_bgr)]


@pytest.fixture(scope="module", params=["shape_predictor", "facemesh"])
def landmarker(request: pytest.FixtureRequest) -> Landmarker:
    return build_landmarker(request.param)


def test_registry_builds_every_entry_and_rejects_unknown_names() -> None:
    for name in LANDMARKERS.names():
        assert build_landmarker(name).name == name
    assert build_landmarker("auto").name == DEFAULT_LANDMARKER
    with pytest.raises(ConfigError, match="shape_predictor"):
        build_landmarker("sixty_eight_points")


def test_five_points_inside_the_face_with_subject_handedness(
    landmarker: Landmarker, samples_dir: Path, astronaut_bgr: ImageBGR
) -> None:
    for name, image in _faces(samples_dir, astronaut_bgr):
        det = _largest(image)
        out = landmarker.landmarks(image, det)
        assert out.landmark_names[: len(det.landmark_names)] == det.landmark_names, "detector points dropped"
        np.testing.assert_array_equal(out.landmarks[: len(det.landmark_names)], det.landmarks)
        pts = points_of(out, DLIB5_NAMES)
        box = det.box
        assert np.all((pts[:, 0] > box.x1) & (pts[:, 0] < box.x2) & (pts[:, 1] > box.y1) & (pts[:, 1] < box.y2)), name
        left_outer, left_inner, right_outer, right_inner, nose = pts
        # the person's left eye has the larger x in these frontal photos; corners ordered outer > inner
        assert left_outer[0] > left_inner[0] > right_inner[0] > right_outer[0], name
        assert nose[1] > max(left_inner[1], right_inner[1]), name
        # eye centres agree with the detector's eyes within a fifth of the inter-ocular distance
        iod = float(np.linalg.norm(np.subtract(det.left_eye, det.right_eye)))
        assert np.linalg.norm(pts[0:2].mean(axis=0) - det.left_eye) < 0.2 * iod, name
        assert np.linalg.norm(pts[2:4].mean(axis=0) - det.right_eye) < 0.2 * iod, name


def test_providers_agree_on_the_points(samples_dir: Path, astronaut_bgr: ImageBGR) -> None:
    sp = build_landmarker("shape_predictor")
    mesh = build_landmarker("facemesh")
    for name, image in _faces(samples_dir, astronaut_bgr):
        det = _largest(image)
        a = points_of(sp.landmarks(image, det), DLIB5_NAMES)
        b = points_of(mesh.landmarks(image, det), DLIB5_NAMES)
        iod = float(np.linalg.norm(a[0:2].mean(axis=0) - a[2:4].mean(axis=0)))
        assert float(np.linalg.norm(a - b, axis=1).max()) < 0.12 * iod, name


def test_shape_predictor_follows_the_face_when_the_photo_is_shifted(samples_dir: Path) -> None:
    image = read_bgr(samples_dir / "obama.jpg")
    lm = build_landmarker("shape_predictor")
    det = _largest(image)
    shifted = np.zeros_like(image)
    shifted[:, 40:] = image[:, :-40]
    det2 = _largest(shifted)
    a = points_of(lm.landmarks(image, det), DLIB5_NAMES)
    b = points_of(lm.landmarks(shifted, det2), DLIB5_NAMES)
    np.testing.assert_allclose(b - a, np.tile([40.0, 0.0], (5, 1)), atol=3.0)


def test_rect_mapping_is_square_and_centred_by_its_offsets() -> None:
    mapping = RectMapping(dx=0.1, dy=-0.05, s=0.9)
    left, top, right, bottom = mapping.rect(Box(100, 50, 200, 170))
    assert right - left == pytest.approx(90.0)
    assert bottom - top == pytest.approx(90.0)
    assert ((left + right) / 2, (top + bottom) / 2) == pytest.approx((160.0, 104.0))
    assert centre_coordinates(Box(1, 2, 3, 4)) == Box(0.5, 1.5, 2.5, 3.5)
    with pytest.raises(ModelError):
        RectMapping.from_options({"dx": 0.0})


def test_manifests_describe_the_shipped_files() -> None:
    zoo = ModelZoo((bundled_models_dir(),))
    sp = zoo.family("landmarks", "shape_predictor")
    assert sp.format == "npz" and sp.licence == "CC0-1.0"
    assert set(sp.decoder["rect_mapping"]) >= {"default", "mediapipe"}
    mesh = zoo.family("landmarks", "facemesh")
    assert mesh.input is not None and (mesh.input.width, mesh.input.height) == (192, 192)
    assert len(mesh.decoder["mesh_indices"]) == 5


def test_weights_with_inconsistent_shapes_are_rejected(tmp_path: Path) -> None:
    zoo = ModelZoo((bundled_models_dir(),))
    weights = ShapePredictorWeights.load(zoo.family("landmarks", "shape_predictor").model_path)
    arrays = {name: getattr(weights, name) for name in ShapePredictorWeights.__dataclass_fields__}
    arrays["leaf_values"] = arrays["leaf_values"][:, :, :8]
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match="leaf_values"):
        ShapePredictorWeights.load(path)
    with pytest.raises(ModelError):
        ShapePredictorWeights.load(tmp_path / "missing.npz")


def test_corrupted_model_file_is_refused(tmp_path: Path) -> None:
    import shutil

    from facegate.inference.manifest import load_manifest
    from facegate.landmarks.shape_predictor import ShapePredictorLandmarker

    src = ModelZoo((bundled_models_dir(),)).family("landmarks", "shape_predictor")
    assert src.path is not None
    shutil.copy(src.path, tmp_path / src.path.name)
    data = bytearray(src.model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / src.file).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        ShapePredictorLandmarker(load_manifest(tmp_path / src.path.name))


@pytest.mark.convert
def test_numpy_predictor_matches_dlib_on_dlib_rectangles(samples_dir: Path, astronaut_bgr: ImageBGR) -> None:
    dlib = pytest.importorskip("dlib")
    from facegate.convert.shape_predictor import SOURCE, dlib_rect, parse
    from facegate.convert.sources import fetch

    # the converter's exact float32 parse; the shipped file's float16 leaves: tests/test_shape_predictor_format.py
    src = fetch(SOURCE)
    ours = ShapePredictor(parse(src.read_bytes(), source=src.name).weights())
    theirs = dlib.shape_predictor(str(src))
    checked = 0
    for name, image in _faces(samples_dir, astronaut_bgr):
        for scale in (0.7, 1.0):
            img = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), dtype=np.uint8)
            rect = dlib_rect(img)
            assert rect is not None, name
            shape = theirs(np.ascontiguousarray(img[:, :, ::-1]), dlib.rectangle(*rect))
            ref = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            got = ours.predict(img, rect)
            # dlib rounds its output to whole pixels; ours is unrounded
            assert np.abs(got - ref).max() <= 0.5 + 1e-6, name
            np.testing.assert_array_equal(ours.predict(img, rect, round_points=True), ref)
            checked += 1
    assert checked == 10


@pytest.mark.convert
@pytest.mark.slow
def test_converter_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from facegate.convert.shape_predictor import SOURCE, parse, write_npz
    from facegate.convert.sources import fetch

    src = fetch(SOURCE)
    parsed = parse(src.read_bytes(), source=src.name)
    out = tmp_path / "sp.npz"
    write_npz(out, parsed.compact())
    manifest = ModelZoo((bundled_models_dir(),)).family("landmarks", "shape_predictor")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == manifest.sha256
    with pytest.raises(ModelError, match="truncated"):
        parse(src.read_bytes()[:1000])
