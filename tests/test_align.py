"""The aligner: dlib-exact face chips, the plain template method, quality, and the default chain."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.align import (
    Aligner,
    build_aligner,
    dlib_chip_details,
    extract_dlib_chip,
    pyramid_down2,
    similarity_transform,
)
from facegate.detectors.base import FaceDetector
from facegate.errors import ConfigError, ModelNotInstalledError, NoFaceError
from facegate.inference.manifest import AlignmentSpec, ModelZoo, bundled_models_dir
from facegate.landmarks.base import DLIB5_NAMES, points_of
from facegate.types import Box, FaceDetection, ImageBGR
from tests.fixtures.images import read_bgr

SAMPLES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
# ArcFace's 112x112 five points (insightface), as a manifest would give them, normalised to [0, 1]
ARCFACE = AlignmentSpec(
    size=112,
    padding=0.0,
    points=("right_eye", "left_eye", "nose", "mouth_right", "mouth_left"),
    template=((38.2946 / 112, 51.6963 / 112), (73.5318 / 112, 51.5014 / 112), (56.0252 / 112, 71.7366 / 112),
              (41.5493 / 112, 92.3655 / 112), (70.7299 / 112, 92.2041 / 112)),
    method="plain",
)


@pytest.fixture(scope="module")
def dlib_spec() -> AlignmentSpec:
    manifest = ModelZoo((bundled_models_dir(),)).family("embedder", "Dlib")
    assert manifest.alignment is not None and manifest.alignment.method == "dlib"
    return manifest.alignment


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    from facegate.detectors.registry import build_detector

    try:
        return build_detector("mediapipe")
    except ModelNotInstalledError as err:
        pytest.skip(f"BlazeFace model not installed yet: {err}")


def _largest(detector: FaceDetector, image: ImageBGR) -> FaceDetection:
    found = detector.detect(image)
    assert found, "no face found"
    return max(found, key=lambda d: d.box.area)


def _sample(samples_dir: Path, name: str) -> ImageBGR:
    return read_bgr(samples_dir / name)


def test_chips_are_150px_uint8_with_sane_quality(detector, dlib_spec: AlignmentSpec, samples_dir: Path,  # type: ignore[no-untyped-def]
                                                 astronaut_bgr: ImageBGR) -> None:
    aligner = build_aligner(dlib_spec)
    images = [_sample(samples_dir, n) for n in SAMPLES] + [astronaut_bgr]
    for image in images:
        det = _largest(detector, image)
        face = aligner.align(image, det)
        assert face.image.shape == (150, 150, 3) and face.image.dtype == np.uint8
        assert face.template == "dlib:150"
        assert set(DLIB5_NAMES) <= set(face.detection.landmark_names)
        iod = float(np.linalg.norm(np.subtract(det.left_eye, det.right_eye)))
        assert face.quality.face_size == pytest.approx(iod, rel=0.25)
        assert face.quality.sharpness > 10.0
        assert abs(face.quality.yaw) < 0.35
        # the transform takes the five points close to dlib's template positions in the chip
        pts = points_of(face.detection, DLIB5_NAMES)
        mapped = pts @ face.transform[:, :2].T + face.transform[:, 2]
        template = (0.25 + np.asarray(dlib_spec.template)) / 1.5 * 150
        # a least-squares fit of a rigid template to a real (slightly turned) face leaves a few pixels
        assert float(np.linalg.norm(mapped - template, axis=1).mean()) < 5.0
        assert np.abs(mapped - template).max() < 10.0


def test_rotated_photo_gives_nearly_the_same_chip(detector, dlib_spec: AlignmentSpec, samples_dir: Path  # type: ignore[no-untyped-def]
                                                  ) -> None:
    aligner = build_aligner(dlib_spec)
    image = _sample(samples_dir, "obama.jpg")
    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 20.0, 1.0)
    rotated = np.asarray(cv2.warpAffine(image, rot, (w, h), flags=cv2.INTER_LINEAR), dtype=np.uint8)
    upright = aligner.align(image, _largest(detector, image)).image.astype(np.float64)
    turned = aligner.align(rotated, _largest(detector, rotated)).image.astype(np.float64)
    centre = (slice(30, 120), slice(30, 120))  # the face, away from the black corners of the rotation
    assert float(np.abs(upright[centre] - turned[centre]).mean()) < 10.0
    # and it is really the face that lines up: a 20 degree misalignment would differ far more
    off = cv2.warpAffine(upright, cv2.getRotationMatrix2D((75, 75), 20.0, 1.0), (150, 150))
    aligned_diff = float(np.abs(upright[centre] - turned[centre]).mean())
    assert float(np.abs(upright[centre] - off[centre]).mean()) > 2 * aligned_diff


def test_mirrored_photo_flips_the_yaw_sign(detector, dlib_spec: AlignmentSpec, samples_dir: Path) -> None:  # type: ignore[no-untyped-def]
    aligner = build_aligner(dlib_spec)
    image = _sample(samples_dir, "obama2.jpg")
    mirrored = np.ascontiguousarray(image[:, ::-1])
    a = aligner.align(image, _largest(detector, image)).quality.yaw
    b = aligner.align(mirrored, _largest(detector, mirrored)).quality.yaw
    assert a == pytest.approx(-b, abs=0.08)


def test_plain_template_puts_the_eyes_on_the_template(detector, samples_dir: Path) -> None:  # type: ignore[no-untyped-def]
    aligner = build_aligner(ARCFACE)
    assert aligner.landmarker is None  # BlazeFace's own points are enough
    image = _sample(samples_dir, "biden.jpg")
    det = _largest(detector, image)
    face = aligner.align(image, det)
    assert face.image.shape == (112, 112, 3) and face.template == "plain:112"
    eyes = np.array([det.right_eye, det.left_eye]) @ face.transform[:, :2].T + face.transform[:, 2]
    target = np.asarray(ARCFACE.template[:2]) * 112
    assert np.abs(eyes - target).max() < 6.0


def test_dlib_template_needs_a_landmarker(dlib_spec: AlignmentSpec) -> None:
    with pytest.raises(ConfigError, match="landmarker"):
        build_aligner(dlib_spec, landmarks="none")
    aligner = Aligner(dlib_spec, None)
    det = FaceDetection(box=Box(10, 10, 60, 60), score=0.9,
                        landmarks=np.array([[20, 30], [50, 30]], dtype=np.float32),
                        landmark_names=("right_eye", "left_eye"))
    with pytest.raises(NoFaceError, match="left_eye_outer"):
        aligner.align(np.zeros((80, 80, 3), np.uint8), det)


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, t = 0.3, 1.7, np.array([12.0, -4.0])
    m = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    got_m, got_t = similarity_transform(src, src @ m.T + t)
    np.testing.assert_allclose(got_m, m, atol=1e-9)
    np.testing.assert_allclose(got_t, t, atol=1e-9)


def test_pyramid_down_matches_its_definition() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (23, 30, 3), dtype=np.uint8)
    out = pyramid_down2(image)
    assert out.shape == (10, 13, 3)
    k = np.array([1, 4, 6, 4, 1])
    kernel = np.outer(k, k)
    r, c = 4, 7
    patch = image[2 * r : 2 * r + 5, 2 * c : 2 * c + 5].astype(np.int64)
    np.testing.assert_array_equal(out[r, c], (patch * kernel[:, :, None]).sum(axis=(0, 1)) // 256)


@pytest.mark.slow
@pytest.mark.convert
def test_chip_is_bit_exact_with_dlib_get_face_chip(dlib_spec: AlignmentSpec, samples_dir: Path,
                                                   astronaut_bgr: ImageBGR) -> None:
    dlib = pytest.importorskip("dlib")
    from facegate.convert.shape_predictor import SOURCE, dlib_rect
    from facegate.convert.sources import fetch

    predictor = dlib.shape_predictor(str(fetch(SOURCE)))
    # dlib's own template, unrounded, so the comparison isolates the chip extraction
    template = np.array([(0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                         (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                         (0.4901123135679, 0.6277975316475)])
    images = [_sample(samples_dir, n) for n in SAMPLES] + [astronaut_bgr]
    for image in images:
        for scale in (0.5, 1.0, 1.6):  # 1.6: the pyramid is used
            img = np.ascontiguousarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR),
                                       dtype=np.uint8)
            rect = dlib_rect(img)
            assert rect is not None
            rgb = np.ascontiguousarray(img[:, :, ::-1])
            shape = predictor(rgb, dlib.rectangle(*rect))
            ref = dlib.get_face_chip(rgb, shape, 150, 0.25)[:, :, ::-1]
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            ours = extract_dlib_chip(img, dlib_chip_details(pts, template, 150, 0.25))
            assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
            # through the Aligner (manifest template rounded to 4 decimals, corner-origin points)
            det = FaceDetection(box=Box(*rect), score=1.0,
                                landmarks=(pts + 0.5).astype(np.float32), landmark_names=DLIB5_NAMES)
            chip = Aligner(dlib_spec).align(img, det).image
            assert float(np.abs(chip.astype(float) - ref.astype(float)).mean()) < 1.0


@pytest.mark.shared
@pytest.mark.slow
def test_default_chain_accuracy_on_peer_pairs(shared_data: Path) -> None:
    from facegate.evaluation.landmark_choice import THRESHOLD, run_facegate_chains, score
    from facegate.evaluation.pairs import read_pairs
    from facegate.landmarks.registry import DEFAULT_LANDMARKER

    try:
        ModelZoo().family("embedder", "Dlib")
        ModelZoo().family("detector", "mediapipe")
    except ModelNotInstalledError as err:
        pytest.skip(f"default chain models not installed yet: {err}")
    pairs = [p for p in read_pairs(shared_data / "pairs.csv") if p.peer]
    images = sorted({p.img_a for p in pairs} | {p.img_b for p in pairs})
    (result,) = run_facegate_chains(shared_data, images, (DEFAULT_LANDMARKER,))
    peer = next(r for r in score(result, pairs) if r.subset == "peer")
    assert peer.pairs == len(pairs) > 400
    assert peer.accuracy >= 0.975, f"accuracy at euclidean {THRESHOLD}: {peer.accuracy:.4f}"
