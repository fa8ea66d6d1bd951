"""The TFLite embedder on the bundled dlib ResNet models (no dlib, no TensorFlow needed).

Chips are made here with OpenCV from 5 landmarks measured once with dlib's 5-point predictor on
the public-domain sample photos (in the predictor's point order, which the manifest's alignment
block names), so the test exercises the manifest's template too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.embedders.registry import EMBEDDERS, build_embedder
from facegate.embedders.tflite_embedder import MAX_BATCH, TfliteEmbedder
from facegate.errors import ConfigError, ImageError, ModelError, ModelNotInstalledError
from facegate.inference.manifest import AlignmentSpec, ModelZoo, bundled_models_dir, load_manifest
from facegate.types import ImageBGR

#: dlib 5-point landmarks (x, y) per sample photo: left eye outer/inner, right eye outer/inner,
#: bottom of the nose (subject's perspective), measured with shape_predictor_5_face_landmarks.dat
SAMPLE_LANDMARKS: dict[str, list[tuple[float, float]]] = {
    "obama.jpg": [(570, 216), (528, 215), (424, 217), (463, 216), (496, 295)],
    "obama2.jpg": [(398, 387), (347, 382), (231, 372), (276, 377), (290, 471)],
    "obama3.jpg": [(882, 409), (834, 398), (709, 390), (761, 390), (802, 467)],
    "biden.jpg": [(672, 356), (627, 347), (510, 320), (556, 331), (582, 428)],
}

DEEPFACE_NAMES = ("VGG-Face", "Facenet", "Facenet512", "OpenFace", "DeepFace", "ArcFace", "SFace", "GhostFaceNet")


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) mapping ``src`` points onto ``dst``."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    a = (s0 * d0).sum()
    b = (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()
    rot = np.array([[a, -b], [b, a]]) / (s0**2).sum()
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def make_chip(image: Any, points: list[tuple[float, float]], alignment: AlignmentSpec) -> ImageBGR:
    pad, size = alignment.padding, alignment.size
    target = (pad + np.asarray(alignment.template)) / (2 * pad + 1) * size
    src = np.asarray(points, dtype=np.float64)
    m = _similarity(src, target)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:  # shrink first so bilinear sampling does not alias
        f = 2 * scale
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        m = _similarity(src * f, target)
    return np.asarray(cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR), dtype=np.uint8)


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    return ModelZoo((bundled_models_dir(),))


@pytest.fixture(scope="module")
def int8(zoo: ModelZoo) -> TfliteEmbedder:
    emb = EMBEDDERS.get("Dlib")(variant="int8", zoo=zoo)
    assert isinstance(emb, TfliteEmbedder)
    return emb


@pytest.fixture(scope="module")
def fp32(zoo: ModelZoo) -> TfliteEmbedder:
    emb = EMBEDDERS.get("Dlib")(variant="fp32", zoo=zoo)
    assert isinstance(emb, TfliteEmbedder)
    return emb


@pytest.fixture(scope="module")
def chips(samples_dir: Path, int8: TfliteEmbedder) -> dict[str, ImageBGR]:
    out = {}
    for name, points in SAMPLE_LANDMARKS.items():
        image = cv2.imread(str(samples_dir / name), cv2.IMREAD_COLOR)
        assert image is not None, name
        out[name] = make_chip(image, points, int8.alignment)
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> Any:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_variants_share_one_vector_space(int8: TfliteEmbedder, fp32: TfliteEmbedder, zoo: ModelZoo) -> None:
    assert int8.model_id == fp32.model_id == "dlib_resnet_v1"
    assert int8.dim == fp32.dim == 128
    assert int8.name == "Dlib"
    assert int8.thresholds == fp32.thresholds  # calibrated once per vector space
    assert set(int8.thresholds) == {"cosine", "euclidean", "euclidean_l2", "angular"}
    assert zoo.family("embedder", "dlib").variant == "int8"  # the default variant
    assert int8.alignment == fp32.alignment
    assert int8.alignment.size == 150 and int8.alignment.method == "dlib"


def test_template_is_in_subject_perspective(int8: TfliteEmbedder) -> None:
    points = dict(zip(int8.alignment.points, int8.alignment.template, strict=True))
    # the person's left eye is on the image's right
    assert points["left_eye_outer"][0] > points["left_eye_inner"][0] > points["right_eye_inner"][0]
    assert points["right_eye_inner"][0] > points["right_eye_outer"][0]
    assert points["nose_bottom"][1] > points["left_eye_outer"][1]


def test_embeds_real_faces(int8: TfliteEmbedder, fp32: TfliteEmbedder, chips: dict[str, ImageBGR]) -> None:
    names = list(chips)
    batch = [chips[n] for n in names]
    e8, e32 = int8.embed(batch), fp32.embed(batch)
    assert e8.shape == e32.shape == (4, 128)
    assert e8.dtype == e32.dtype == np.float32
    assert _cos(e8, e32).min() >= 0.999

    for emb in (e8, e32):
        v = dict(zip(names, emb, strict=True))

        def dist(a: str, b: str, v: dict[str, np.ndarray] = v) -> float:
            return float(np.linalg.norm(v[a] - v[b]))

        assert dist("obama.jpg", "obama2.jpg") < dist("obama.jpg", "biden.jpg")
        # face_recognition's own expectations at dlib's threshold
        assert dist("obama.jpg", "obama2.jpg") < 0.6
        assert dist("obama.jpg", "obama3.jpg") < 0.6
        assert dist("obama.jpg", "biden.jpg") > 0.6


def test_batches_match_single_chips(fp32: TfliteEmbedder, chips: dict[str, ImageBGR]) -> None:
    many = [c for c in chips.values() for _ in range(5)]  # 20 chips: more than one interpreter batch
    assert len(many) > MAX_BATCH
    together = fp32.embed(many)
    alone = np.concatenate([fp32.embed([c]) for c in many])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert fp32.embed([]).shape == (0, 128)


def test_other_sizes_are_resized(fp32: TfliteEmbedder, chips: dict[str, ImageBGR]) -> None:
    chip = chips["obama.jpg"]
    bigger = np.asarray(cv2.resize(chip, (300, 300), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    cos = _cos(fp32.embed([chip]), fp32.embed([bigger]))
    assert cos[0] > 0.98


def test_rejects_non_chips(fp32: TfliteEmbedder) -> None:
    grey: Any = np.zeros((150, 150), dtype=np.uint8)
    floats: Any = np.zeros((150, 150, 3), dtype=np.float32)
    for bad in (grey, floats):
        with pytest.raises(ImageError):
            fp32.embed([bad])


def _copy_model(tmp_path: Path, name: str) -> Path:
    source = bundled_models_dir() / f"{name}.yaml"
    manifest = load_manifest(source)
    shutil.copy(source, tmp_path / source.name)
    shutil.copy(manifest.model_path, tmp_path / manifest.file)
    return tmp_path / f"{name}.yaml"


def test_flipped_bytes_are_rejected(tmp_path: Path) -> None:
    yaml_path = _copy_model(tmp_path, "dlib_resnet_int8")
    model = tmp_path / "dlib_resnet_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"dlib_resnet_int8\.tflite"):
        TfliteEmbedder(load_manifest(yaml_path))


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    yaml_path = _copy_model(tmp_path, "dlib_resnet_int8")
    model = tmp_path / "dlib_resnet_int8.tflite"
    model.write_bytes(model.read_bytes()[: 100_000])
    with pytest.raises(ModelError, match=r"dlib_resnet_int8\.tflite"):
        TfliteEmbedder(load_manifest(yaml_path))


def test_default_factory_builds_int8() -> None:
    emb = build_embedder()
    assert emb.name == "Dlib" and emb.model_id == "dlib_resnet_v1"
    assert isinstance(emb, TfliteEmbedder) and emb.manifest.variant == "int8"
    assert build_embedder("dlib", variant="fp32").dim == 128


@pytest.mark.parametrize("name", DEEPFACE_NAMES)
def test_deepface_names_explain_how_to_install(name: str, tmp_path: Path) -> None:
    assert name in EMBEDDERS
    with pytest.raises(ModelNotInstalledError) as info:
        EMBEDDERS.get(name)(zoo=ModelZoo((bundled_models_dir(), tmp_path)))
    message = str(info.value)
    assert "never downloads" in message
    assert f"facegate models import FILE --as {name}" in message


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="ArcFace"):
        build_embedder("NoSuchNet")


def test_missing_variant_is_not_installed(zoo: ModelZoo) -> None:
    with pytest.raises(ModelNotInstalledError, match="fp16"):
        EMBEDDERS.get("Dlib")(variant="fp16", zoo=zoo)
