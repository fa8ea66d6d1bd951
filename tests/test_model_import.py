"""``facegate models import``: small models built here, checked against the name's spec, installed
into a temporary user model directory, and used through the registries and ``verify``.

Building the test models needs TensorFlow (TFLite) or the ``onnx`` package (ONNX): both come with the
convert extra, so those tests are convert-marked; the not-installed errors need nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from facegate.errors import ConfigError, ModelError, ModelNotInstalledError
from facegate.inference.manifest import default_zoo, sha256_file
from facegate.model_import import ImportOptions
from facegate.types import ImageBGR
from tests.conftest import tensorflow_or_skip


@pytest.fixture()
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty user model directory for this test; caches that index models are cleared."""
    from facegate import engine

    target = tmp_path / "user-models"
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(target))
    default_zoo.cache_clear()
    engine._ENGINES.clear()
    yield target
    default_zoo.cache_clear()
    engine._ENGINES.clear()


def _tiny_tflite(path: Path, size: int, dim: int, seed: int = 0) -> Path:
    """A deterministic (1, size, size, 3) -> (1, dim) network: 8x8 average pooling then a dense layer."""
    tf = tensorflow_or_skip()
    rng = np.random.default_rng(seed)
    cells = 8 * 8 * 3
    weights = tf.constant(rng.normal(size=(cells, dim)).astype(np.float32))

    def body(x: object) -> object:
        pooled = tf.nn.avg_pool2d(x, size // 8, size // 8, "VALID")
        return tf.matmul(tf.reshape(pooled, [-1, cells]), weights)

    forward = tf.function(body, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
    path.write_bytes(converter.convert())
    return path


def _tiny_onnx(path: Path, size: int, dim: int, seed: int = 0) -> Path:
    """(1, 3, size, size) -> (1, dim): average pooling to 4x4, flatten, MatMul."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    cells = 3 * 4 * 4
    kernel = size // 4
    weights = numpy_helper.from_array(rng.normal(size=(cells, dim)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "w"], ["embedding"]),
        ],
        "tiny_embedder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


# -- not installed: no model file needed -------------------------------------------------------------


@pytest.mark.parametrize("name", ["VGG-Face", "Facenet", "Facenet512", "OpenFace", "DeepFace", "ArcFace", "SFace",
                                  "GhostFaceNet"])
def test_missing_embedder_explains_how_to_import_it(name: str, user_dir: Path) -> None:
    from facegate.embedders.registry import build_embedder

    with pytest.raises(ModelNotInstalledError, match=rf"facegate models import FILE --as {name}"):
        build_embedder(name)


def test_unknown_import_name_and_file_type_are_config_errors(tmp_path: Path, user_dir: Path) -> None:
    from facegate.model_import import import_model

    model = tmp_path / "m.tflite"
    model.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="importable names"):
        import_model(model, "Dlib2")
    text = tmp_path / "m.pb"
    text.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"\.tflite and \.onnx"):
        import_model(text, "ArcFace")


# -- TFLite round trip ---------------------------------------------------------------------------------


@pytest.mark.convert
def test_tflite_import_round_trip_and_verify(tmp_path: Path, user_dir: Path, samples_dir: Path) -> None:
    import facegate
    from facegate.embedders.registry import build_embedder
    from facegate.model_import import import_model

    source = _tiny_tflite(tmp_path / "arcface_tiny.tflite", 112, 512)
    manifest = import_model(source, "arcface")  # names are case-insensitive

    # manifest and copied file
    assert manifest.path is not None and manifest.path.parent == user_dir
    assert manifest.family == "ArcFace" and manifest.kind == "embedder" and manifest.format == "tflite"
    assert manifest.sha256 == sha256_file(source) == sha256_file(manifest.model_path)
    assert manifest.embedding_dim == 512
    assert manifest.alignment is not None and manifest.alignment.size == 112
    assert manifest.alignment.method == "plain"
    assert manifest.thresholds["cosine"] == pytest.approx(0.68)
    assert manifest.thresholds["euclidean_l2"] == pytest.approx(1.13)
    on_disk = yaml.safe_load(manifest.path.read_text(encoding="utf-8"))
    assert on_disk["name"] == manifest.name and on_disk["source"]["path"] == "arcface_tiny.tflite"

    # registry entry
    embedder = build_embedder("ArcFace")
    assert embedder.dim == 512 and embedder.model_id == manifest.model_id
    chips = [np.full((112, 112, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    vectors = embedder.embed(chips)
    assert vectors.shape == (3, 512) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[1], vectors[2])

    # the public API through it
    result = facegate.verify(str(samples_dir / "obama.jpg"), str(samples_dir / "obama2.jpg"), model_name="ArcFace",
                             distance_metric="cosine")
    assert result.model == "ArcFace"
    assert result.threshold == pytest.approx(0.68)
    assert 0.0 <= result.distance <= 2.0


@pytest.mark.convert
def test_existing_import_needs_force(tmp_path: Path, user_dir: Path) -> None:
    from facegate.model_import import import_model

    first = _tiny_tflite(tmp_path / "a.tflite", 160, 128, seed=1)
    second = _tiny_tflite(tmp_path / "b.tflite", 160, 128, seed=2)
    import_model(first, "Facenet")
    with pytest.raises(ConfigError, match="--force"):
        import_model(second, "Facenet")
    replaced = import_model(second, "Facenet", ImportOptions(force=True))
    assert replaced.sha256 == sha256_file(second)


@pytest.mark.convert
@pytest.mark.parametrize(
    ("name", "size", "dim", "message"),
    [
        ("ArcFace", 128, 512, r"input shape expected \(1, 112, 112, 3\) NHWC .* got \(1, 128, 128, 3\)"),
        ("ArcFace", 112, 256, r"output shape expected \(1, 512\), got \(1, 256\)"),
        ("Facenet512", 160, 128, r"output shape expected \(1, 512\), got \(1, 128\)"),
        ("OpenFace", 112, 128, r"expected \(1, 96, 96, 3\)"),
    ],
)
def test_shape_mismatch_is_rejected_naming_expected_and_found(
    tmp_path: Path, user_dir: Path, name: str, size: int, dim: int, message: str
) -> None:
    from facegate.model_import import import_model

    source = _tiny_tflite(tmp_path / "bad.tflite", size, dim)
    with pytest.raises(ModelError, match=message):
        import_model(source, name)
    assert not user_dir.exists() or not list(user_dir.iterdir())  # nothing installed


@pytest.mark.convert
def test_cli_import(tmp_path: Path, user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facegate.cli import EXIT_OK, main

    source = _tiny_tflite(tmp_path / "ghost.tflite", 112, 512)
    assert main(["models", "import", str(source), "--as", "GhostFaceNet", "--json"]) == EXIT_OK
    out = capsys.readouterr().out
    assert '"family": "GhostFaceNet"' in out and '"embedding_dim": 512' in out
    assert main(["models", "verify", "--dir", str(user_dir)]) == EXIT_OK
    bad = _tiny_tflite(tmp_path / "bad.tflite", 112, 100)
    assert main(["models", "import", str(bad), "--as", "SFace"]) != EXIT_OK
    assert "expected (1, 128)" in capsys.readouterr().err


# -- ONNX through OpenCV's DNN module --------------------------------------------------------------


@pytest.mark.convert
def test_onnx_import_runs_through_opencv_dnn(tmp_path: Path, user_dir: Path, samples_dir: Path,
                                             astronaut_bgr: ImageBGR) -> None:
    import facegate
    from facegate.embedders.onnx_embedder import OnnxDnnEmbedder
    from facegate.embedders.registry import build_embedder
    from facegate.model_import import import_model

    source = _tiny_onnx(tmp_path / "sface.onnx", 112, 128)
    manifest = import_model(source, "SFace")
    assert manifest.format == "onnx" and manifest.input is not None
    assert manifest.input.layout == "NCHW" and manifest.input.colour == "RGB"
    embedder = build_embedder("SFace")
    assert isinstance(embedder, OnnxDnnEmbedder)
    chip = np.ascontiguousarray(astronaut_bgr[80:192, 180:292])
    got = embedder.embed([chip, chip[:, ::-1].copy()])
    assert got.shape == (2, 128)
    # the same arithmetic in numpy: RGB, 4x4 block means, times the weights
    import onnx
    from onnx import numpy_helper

    weights = numpy_helper.to_array(onnx.load(str(source)).graph.initializer[0])
    rgb = chip[:, :, ::-1].astype(np.float64)
    pooled = rgb.reshape(4, 28, 4, 28, 3).mean(axis=(1, 3)).transpose(2, 0, 1).reshape(-1)
    np.testing.assert_allclose(got[0], pooled @ weights, rtol=1e-4, atol=1e-3)

    result = facegate.verify(str(samples_dir / "obama.jpg"), str(samples_dir / "biden.jpg"), model_name="SFace",
                             distance_metric="cosine")
    assert result.threshold == pytest.approx(0.593)

    wrong = _tiny_onnx(tmp_path / "wrong.onnx", 112, 64)
    with pytest.raises(ModelError, match=r"output shape expected \(1, 128\), got \(1, 64\)"):
        import_model(wrong, "SFace", ImportOptions(force=True))


# -- detectors ------------------------------------------------------------------------------------------


def _constant_onnx(path: Path, size: tuple[int, int], outputs: dict[str, np.ndarray]) -> Path:
    """An ONNX model whose outputs are fixed arrays (plus 0 x the input's mean, so the input is used):
    what a detector would output for one particular frame, to test the decoding and plumbing."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    width, height = size
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=1),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero")]
    value_infos = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_const"))
        z = "z" if value.ndim == 4 else f"z_{name}"
        if value.ndim != 4:
            inits.append(numpy_helper.from_array(np.asarray([1, 1, 1], np.int64), f"shape_{name}"))
            nodes.append(helper.make_node("Reshape", ["z", f"shape_{name}"], [z]))
        nodes.append(helper.make_node("Add", [f"{name}_const", z], [name]))
        value_infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "constant_detector",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, height, width])],
                              value_infos, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


#: the astronaut's face (BlazeFace's reference box) in skimage.data.astronaut() (512 x 512)
FACE = (178.0, 81.0, 272.0, 175.0)


@pytest.mark.convert
def test_ssd_import_and_detection(tmp_path: Path, user_dir: Path, astronaut_bgr: ImageBGR) -> None:
    from facegate.detectors.registry import build_detector
    from facegate.model_import import import_model
    from facegate.types import Box

    x1, y1, x2, y2 = (v / 512 for v in FACE)
    rows = np.array([[[[0, 1, 0.98, x1, y1, x2, y2], [0, 1, 0.2, 0.0, 0.0, 0.5, 0.5]]]], np.float32)
    manifest = import_model(_constant_onnx(tmp_path / "ssd.onnx", (300, 300), {"detections": rows}), "ssd")
    assert manifest.kind == "detector" and manifest.family == "ssd"
    detector = build_detector("ssd")
    (face,) = detector.detect(astronaut_bgr)  # the 0.2 row is below the 0.5 threshold
    assert face.box.iou(Box(*FACE)) > 0.99 and face.score == pytest.approx(0.98)
    assert face.left_eye[0] > face.right_eye[0]  # Haar eyes, subject's perspective

    bad = _constant_onnx(tmp_path / "bad.onnx", (300, 300), {"detections": rows[..., :6]})
    with pytest.raises(ModelError, match=r"output shape expected \(1, 1, N, 7\), got \(1, 1, 2, 6\)"):
        import_model(bad, "ssd", ImportOptions(force=True))


@pytest.mark.convert
def test_retinaface_import_decodes_priors(tmp_path: Path, user_dir: Path, astronaut_bgr: ImageBGR) -> None:
    from facegate.detectors.onnx_dnn import retinaface_priors
    from facegate.detectors.registry import build_detector
    from facegate.model_import import import_model
    from facegate.types import Box

    priors = retinaface_priors(640, 640)
    n = priors.shape[0]
    assert n == (80 * 80 + 40 * 40 + 20 * 20) * 2
    # the astronaut (512x512) letterboxed into 640x640 is scaled by 1.25: pick the stride-16,
    # size-128 prior nearest the face centre and make it fire
    cx, cy = (FACE[0] + FACE[2]) / 2 * 1.25 / 640, (FACE[1] + FACE[3]) / 2 * 1.25 / 640
    candidates = np.flatnonzero(np.isclose(priors[:, 2], 128 / 640))
    best = candidates[np.argmin(np.hypot(priors[candidates, 0] - cx, priors[candidates, 1] - cy))]
    conf = np.tile(np.array([4.0, -4.0], np.float32), (1, n, 1))
    conf[0, best] = (-4.0, 4.0)
    marks = np.zeros((1, n, 10), np.float32)
    marks[0, best, 0], marks[0, best, 2] = -2.0, 2.0  # right eye left of the prior centre, left eye right
    source = _constant_onnx(tmp_path / "retina.onnx", (640, 640),
                            {"loc": np.zeros((1, n, 4), np.float32), "conf": conf, "landmarks": marks})
    import_model(source, "retinaface")
    (face,) = build_detector("retinaface").detect(astronaut_bgr)
    assert face.box.iou(Box(*FACE)) > 0.6
    assert face.score == pytest.approx(1 / (1 + np.exp(-8.0)), rel=1e-4)
    assert face.left_eye[0] > face.right_eye[0]


@pytest.mark.convert
def test_yunet_import_rejects_other_models(tmp_path: Path, user_dir: Path) -> None:
    from facegate.model_import import import_model

    not_yunet = _constant_onnx(tmp_path / "x.onnx", (320, 320), {"y": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ModelError, match="not a YuNet model"):
        import_model(not_yunet, "yunet")


# -- why a model is not shipped; fitting an imported model's thresholds ----------------------------------


@pytest.mark.parametrize(("name", "licence"), [("yunet", "MIT"), ("SFace", "Apache-2.0")])
def test_missing_yunet_and_sface_say_why_exactly(name: str, licence: str, user_dir: Path) -> None:
    """OpenCV Zoo's READMEs: YuNet MIT, SFace Apache-2.0 -- redistributable; what is missing is a pip package."""
    from facegate.detectors.registry import build_detector
    from facegate.embedders.registry import build_embedder

    with pytest.raises(ModelNotInstalledError) as err:
        build_detector(name) if name == "yunet" else build_embedder(name)
    text = str(err.value)
    assert f"{licence} licence" in text and "may be redistributed" in text and "no pip package" in text
    assert "no redistributable" not in text and f"facegate models import FILE --as {name}" in text


@pytest.mark.convert
def test_imported_model_warns_and_calibrate_fits_its_thresholds(
    tmp_path: Path, user_dir: Path, shared_data: Path, samples_dir: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import facegate
    from facegate.cli import EXIT_OK, main
    from facegate.embedders.registry import build_embedder
    from facegate.model_import import import_model

    source = _tiny_onnx(tmp_path / "arcface.onnx", 112, 512)
    with caplog.at_level("WARNING", logger="facegate.model_import"):
        manifest = import_model(source, "ArcFace")
    assert "DeepFace's published ArcFace thresholds" in caplog.text
    assert "facegate evaluate --calibrate IDENTITIES_DIR -m ArcFace --write" in caplog.text
    assert manifest.operating_point == {"thresholds": "deepface-defaults"}
    assert manifest.thresholds["cosine"] == pytest.approx(0.68)

    # a small identity folder: 8 people of the evaluation data
    data = tmp_path / "identities"
    data.mkdir()
    for person in sorted(p for p in (shared_data / "identities").iterdir() if p.is_dir())[:8]:
        (data / person.name).symlink_to(person, target_is_directory=True)
    assert main(["evaluate", "--calibrate", str(data), "-m", "ArcFace", "--write", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    fitted = {m: v["threshold"] for m, v in report["metrics"].items()}
    assert report["written"] == str(manifest.path) and report["people"] == 8

    default_zoo.cache_clear()
    embedder = build_embedder("ArcFace")
    assert embedder.thresholds == pytest.approx(fitted)
    assert fitted["cosine"] != pytest.approx(0.68)  # a random projection is not on DeepFace's scale
    on_disk = yaml.safe_load(manifest.path.read_text(encoding="utf-8"))  # type: ignore[union-attr]
    assert on_disk["operating_point"]["deepface_thresholds"]["cosine"] == pytest.approx(0.68)
    assert "fitted by facegate evaluate --calibrate" in on_disk["operating_point"]["thresholds"]
    result = facegate.verify(str(samples_dir / "obama.jpg"), str(samples_dir / "biden.jpg"), model_name="ArcFace",
                             distance_metric="cosine")
    assert result.threshold == pytest.approx(fitted["cosine"])


def test_calibrate_refuses_to_write_a_bundled_model() -> None:
    from facegate.model_calibration import imported_manifest

    with pytest.raises(ConfigError, match="bundled model"):
        imported_manifest("Dlib")
