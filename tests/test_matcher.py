"""Distance metrics and the 1:N matcher.

Metric maths is checked against scipy's and numpy's reference formulas on synthetic vectors; the
decision logic on hand-built galleries where the right answer is known; ranking against a brute
force reference; and once on real dlib embeddings of the sample photos.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from facegate.errors import ConfigError, EmbeddingError
from facegate.matcher import (
    ArrayGallery,
    GallerySnapshot,
    Matcher,
    distance,
    distances,
    l2_normalize,
)
from facegate.types import METRICS, Embedding

scipy_distance = pytest.importorskip("scipy.spatial.distance")

MODEL = "test_model"


def _reference(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        return float(scipy_distance.cosine(a64, b64))
    if metric == "euclidean":
        return float(scipy_distance.euclidean(a64, b64))
    if metric == "euclidean_l2":
        return float(scipy_distance.euclidean(a64 / np.linalg.norm(a64), b64 / np.linalg.norm(b64)))
    cos = 1.0 - float(scipy_distance.cosine(a64, b64))
    return math.acos(min(1.0, max(-1.0, cos))) / math.pi


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("scale", [0.01, 1.0, 40.0])
def test_distances_match_reference_formulas(metric: str, scale: float) -> None:
    rng = np.random.default_rng(7)
    matrix = (rng.standard_normal((300, 128)) * scale).astype(np.float32)
    probe = (rng.standard_normal(128) * scale).astype(np.float32)
    # include the probe itself and its negation: the extremes of every metric
    matrix[0] = probe
    matrix[1] = -probe
    got = distances(probe, matrix, metric)
    assert got.dtype == np.float32 and got.shape == (300,)
    want = np.array([_reference(probe, row, metric) for row in matrix])
    # float32 with the expanded euclidean loses ~sqrt(float32 eps) x the norms near zero (cancellation)
    atol = 1e-3 * (float(np.linalg.norm(probe)) if metric == "euclidean" else 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)
    assert got[0] == pytest.approx(0.0, abs=atol)
    extreme = {"cosine": 2.0, "euclidean": 2 * float(np.linalg.norm(probe)), "euclidean_l2": 2.0, "angular": 1.0}
    assert got[1] == pytest.approx(extreme[metric], rel=1e-4)
    # 1:1 distance is computed in float64: exact
    for i in (2, 3, 4):
        assert distance(probe, matrix[i], metric) == pytest.approx(_reference(probe, matrix[i], metric), rel=1e-9)
    assert distance(probe, probe, metric) == pytest.approx(0.0, abs=1e-6)


def test_metric_and_shape_errors() -> None:
    v = np.ones(4, dtype=np.float32)
    with pytest.raises(ConfigError, match="unknown distance metric 'manhattan'"):
        distances(v, np.ones((2, 4), np.float32), "manhattan")
    with pytest.raises(ValueError, match="manhattan"):  # DeepFace callers catch ValueError
        distance(v, v, "manhattan")
    with pytest.raises(EmbeddingError, match=r"\(4,\).*\(2, 3\)"):
        distances(v, np.ones((2, 3), np.float32))
    with pytest.raises(EmbeddingError):
        distance(v, np.ones(5, np.float32))


def test_l2_normalize() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-20, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert not np.any(out[1])  # the zero vector stays zero, no NaN
    assert np.all(np.isfinite(out))


# -- the matcher ----------------------------------------------------------------------------------


def _gallery(rows: dict[str, list[list[float]]], names: dict[str, str] | None = None) -> ArrayGallery:
    ids = [pid for pid, vecs in rows.items() for _ in vecs]
    matrix = np.array([v for vecs in rows.values() for v in vecs], dtype=np.float32)
    return ArrayGallery(GallerySnapshot.from_rows(ids, matrix, model_id=MODEL, names=names))


def _emb(*values: float) -> Embedding:
    return Embedding(np.array(values, dtype=np.float32), MODEL)


def test_best_person_topk_and_margin() -> None:
    # three people on the unit circle; the probe points at bob, then carol, then alice
    g = _gallery(
        {"alice": [[1.0, 0.0]], "bob": [[0.0, 1.0]], "carol": [[0.6, 0.8]]},
        names={"alice": "Alice", "bob": "Bob B.", "carol": "Carol"},
    )
    m = Matcher(g, MODEL, metric="euclidean", threshold=0.5, k=3)
    r = m.match(_emb(0.0, 1.0))
    assert r.person_id == "bob" and r.name == "Bob B." and r.is_known
    assert [c.person_id for c in r.candidates] == ["bob", "carol", "alice"]
    assert r.distance == pytest.approx(0.0, abs=1e-3)
    assert r.candidates[1].distance == pytest.approx(math.sqrt(0.6**2 + 0.2**2), rel=1e-4)
    assert r.margin == pytest.approx(r.candidates[1].distance - r.distance)
    assert r.metric == "euclidean" and r.threshold == 0.5
    assert len(m.match(_emb(0.0, 1.0), k=1).candidates) == 1


def test_unknown_when_beyond_threshold_or_margin_too_small() -> None:
    g = _gallery({"alice": [[1.0, 0.0]], "bob": [[0.0, 1.0]]})
    m = Matcher(g, MODEL, metric="cosine", threshold=0.1, margin=0.05)
    far = m.match(_emb(-1.0, -1.0))  # closest is still 1.7 away in cosine
    assert far.person_id is None and far.name is None and not far.is_known
    assert far.distance > 0.1
    assert far.candidates  # candidates are reported for unknown too
    # close to alice, but bob is nearly as close: margin below the required 0.05
    between = np.array([1.0, 0.98], dtype=np.float32)
    r = m.match(Embedding(between, MODEL), threshold=0.5)
    assert r.candidates[0].person_id == "alice"
    assert 0 < r.margin < 0.05
    assert r.person_id is None
    assert m.match(Embedding(between, MODEL), threshold=0.5, margin=0.0).person_id == "alice"


def test_tie_is_unknown() -> None:
    g = _gallery({"twin-a": [[1.0, 2.0, 3.0]], "twin-b": [[1.0, 2.0, 3.0]]})
    m = Matcher(g, MODEL, metric="euclidean", threshold=10.0, margin=0.0)
    r = m.match(_emb(1.0, 2.0, 3.5))
    assert r.margin == 0.0
    assert r.person_id is None
    assert {c.person_id for c in r.candidates} == {"twin-a", "twin-b"}
    assert r.candidates[0].person_id == "twin-a"  # ties ordered by person id, reproducibly


def test_single_person_and_empty_gallery() -> None:
    one = Matcher(_gallery({"solo": [[1.0, 0.0]]}), MODEL, threshold=0.1, margin=0.2)
    r = one.match(_emb(1.0, 0.01))
    assert r.person_id == "solo" and r.margin == math.inf
    empty = Matcher(ArrayGallery(GallerySnapshot.empty(MODEL)), MODEL, threshold=0.1)
    r = empty.match(_emb(1.0, 0.0))
    assert r.person_id is None and r.distance == math.inf and r.candidates == ()


def test_mean_and_min_aggregation_differ_as_documented() -> None:
    # ann: one photo exactly at the probe and one far away; ben: two photos moderately close
    g = _gallery({"ann": [[1.0, 0.0], [-1.0, 0.0]], "ben": [[0.8, 0.6], [0.8, -0.6]]})
    probe = _emb(1.0, 0.0)
    by_min = Matcher(g, MODEL, metric="euclidean", threshold=3.0, aggregate="min").match(probe)
    by_mean = Matcher(g, MODEL, metric="euclidean", threshold=3.0, aggregate="mean").match(probe)
    assert by_min.candidates[0].person_id == "ann"
    assert by_min.distance == pytest.approx(0.0, abs=1e-3)
    assert by_mean.candidates[0].person_id == "ben"
    assert by_mean.distance == pytest.approx(math.sqrt(0.2**2 + 0.6**2), rel=1e-4)
    assert by_mean.candidates[1].distance == pytest.approx(1.0, rel=1e-3)  # mean of 0 and 2


@pytest.mark.parametrize("aggregate", ["min", "mean"])
@pytest.mark.parametrize("metric", METRICS)
def test_ranking_matches_brute_force(metric: str, aggregate: str) -> None:
    rng = np.random.default_rng(11)
    counts = rng.integers(1, 6, size=40)
    ids = [f"p{i:02d}" for i, c in enumerate(counts) for _ in range(c)]
    matrix = rng.standard_normal((len(ids), 32)).astype(np.float32)
    order = rng.permutation(len(ids))  # rows need not arrive grouped
    snap = GallerySnapshot.from_rows([ids[i] for i in order], matrix[order], model_id=MODEL)
    m = Matcher(ArrayGallery(snap), MODEL, metric=metric, threshold=10.0, k=7, aggregate=aggregate)  # type: ignore[arg-type]
    for _ in range(10):
        probe = rng.standard_normal(32).astype(np.float32)
        per_person: dict[str, list[float]] = {}
        for pid, row in zip(ids, matrix, strict=True):
            per_person.setdefault(pid, []).append(_reference(probe, row, metric))
        agg = {p: (min(d) if aggregate == "min" else float(np.mean(d))) for p, d in per_person.items()}
        want = sorted(agg, key=lambda p: (agg[p], p))[:7]
        r = m.match(Embedding(probe, MODEL))
        assert [c.person_id for c in r.candidates] == want
        for c in r.candidates:
            assert c.distance == pytest.approx(agg[c.person_id], rel=1e-4, abs=2e-3)


def test_float16_storage_agrees_with_float32() -> None:
    rng = np.random.default_rng(3)
    ids = [f"p{i}" for i in range(2000) for _ in range(2)]
    snap = GallerySnapshot.from_rows(ids, rng.standard_normal((4000, 128)).astype(np.float32), model_id=MODEL)
    m32 = Matcher(ArrayGallery(snap), MODEL, threshold=1.0, storage="float32")
    m16 = Matcher(ArrayGallery(snap), MODEL, threshold=1.0, storage="float16")
    for i in range(5):
        probe = Embedding(snap.matrix[i * 7] + 0.1 * rng.standard_normal(128).astype(np.float32), MODEL)
        a, b = m32.match(probe), m16.match(probe)
        assert a.candidates[0].person_id == b.candidates[0].person_id
        assert b.distance == pytest.approx(a.distance, abs=2e-3)


def test_refuses_other_model_or_dimension() -> None:
    m = Matcher(_gallery({"a": [[1.0, 0.0, 0.0]]}), MODEL, threshold=0.5)
    with pytest.raises(EmbeddingError, match=r"'other_model'.*'test_model'"):
        m.match(Embedding(np.ones(3, np.float32), "other_model"))
    with pytest.raises(EmbeddingError, match=r"\(4,\).*3-d"):
        m.match(Embedding(np.ones(4, np.float32), MODEL))
    with pytest.raises(ValueError, match="NaN"):
        m.match(Embedding(np.array([1.0, np.nan, 0.0], np.float32), MODEL))
    with pytest.raises(EmbeddingError, match="zero vector"):
        m.match(Embedding(np.zeros(3, np.float32), MODEL))


def test_thresholds_per_metric() -> None:
    g = _gallery({"a": [[1.0, 0.0]], "b": [[0.0, 1.0]]})
    m = Matcher(g, MODEL, metric="cosine", threshold={"cosine": 0.07, "euclidean": 0.6})
    assert m.match(_emb(1.0, 0.0)).threshold == 0.07
    assert m.match(_emb(1.0, 0.0), metric="euclidean").threshold == 0.6
    with pytest.raises(ConfigError, match="no threshold for metric 'angular'"):
        m.match(_emb(1.0, 0.0), metric="angular")
    with pytest.raises(ConfigError):
        Matcher(g, MODEL, threshold=0.1, aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Matcher(g, MODEL, threshold=0.1, margin=-1.0)


class _MutableSource:
    def __init__(self) -> None:
        self.revision = 0
        self.snap = GallerySnapshot.empty(MODEL)
        self.loads = 0

    def snapshot(self, model_id: str) -> GallerySnapshot:
        self.loads += 1
        return self.snap


def test_refreshes_only_when_revision_moves() -> None:
    src = _MutableSource()
    m = Matcher(src, MODEL, threshold=0.1)
    assert m.match(_emb(1.0, 0.0)).person_id is None
    m.match(_emb(1.0, 0.0))
    assert src.loads == 1
    src.snap = GallerySnapshot.from_rows(["x"], np.array([[1.0, 0.0]], np.float32), model_id=MODEL, revision=1)
    src.revision = 1
    assert m.match(_emb(1.0, 0.0)).person_id == "x"
    assert src.loads == 2


def test_real_dlib_embeddings(sample_embeddings: dict[str, Embedding]) -> None:
    """Obama's photos against a gallery of Obama and Biden with the model's own thresholds."""
    from facegate.embedders.registry import build_embedder

    thresholds = build_embedder("Dlib").thresholds
    obama, obama2, obama3, biden = (sample_embeddings[k] for k in ("obama", "obama2", "obama3", "biden"))
    assert obama.model_id == "dlib_resnet_v1" and obama.dim == 128
    snap = GallerySnapshot.from_rows(
        ["obama", "obama", "biden"], np.stack([obama.vector, obama2.vector, biden.vector]), model_id=obama.model_id
    )
    for metric in ("euclidean", "cosine", "euclidean_l2"):
        m = Matcher(ArrayGallery(snap), obama.model_id, metric=metric, threshold=thresholds)
        r = m.match(obama3)
        assert r.person_id == "obama", (metric, r)
        assert r.margin > 0
        r = m.match(biden)
        assert r.person_id == "biden", (metric, r)
    # Biden is unknown to an Obama-only gallery at dlib's threshold
    only_obama = GallerySnapshot.from_rows(["obama", "obama"], np.stack([obama.vector, obama2.vector]),
                                           model_id=obama.model_id)
    r = Matcher(ArrayGallery(only_obama), obama.model_id, metric="euclidean", threshold=thresholds).match(biden)
    assert r.person_id is None and r.distance > thresholds["euclidean"]


def test_worker_threads_give_the_same_answer() -> None:
    rng = np.random.default_rng(5)
    ids = [f"p{i:05d}" for i in range(30_000) for _ in range(2)]
    snap = GallerySnapshot.from_rows(ids, rng.standard_normal((60_000, 16)).astype(np.float32), model_id=MODEL)
    one = Matcher(ArrayGallery(snap), MODEL, threshold=1.0)
    three = Matcher(ArrayGallery(snap), MODEL, threshold=1.0, num_threads=3)
    try:
        for i in range(4):
            probe = Embedding(snap.matrix[i * 997], MODEL)
            assert one.match(probe) == three.match(probe)
    finally:
        three.close()
    with pytest.raises(ConfigError):
        Matcher(ArrayGallery(snap), MODEL, threshold=1.0, num_threads=0)
