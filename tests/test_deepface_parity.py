"""DeepFace parity where a user's code touches it: dict-style results, find's DataFrame columns,
DeepFace's extra parameters, a callable distance metric, ``dir(facegate)`` and the wrong-model gallery."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import facegate
from facegate import api
from facegate.engine import get_engine
from facegate.errors import ConfigError, GalleryError, ModelNotInstalledError
from facegate.gallery.records import EnrollItem
from facegate.gallery.store import SqliteGallery
from facegate.types import Embedding

#: DeepFace's find DataFrame columns (deepface/modules/recognition.py), in its order
DEEPFACE_FIND_COLUMNS = ["identity", "hash", "target_x", "target_y", "target_w", "target_h", "source_x",
                         "source_y", "source_w", "source_h", "threshold", "distance"]


@pytest.fixture(scope="module")
def photo_db(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepFace's db_path layout: one folder of photos per person."""
    db = tmp_path_factory.mktemp("db")
    (db / "barack_obama").mkdir()
    (db / "joe_biden").mkdir()
    shutil.copy(samples_dir / "obama.jpg", db / "barack_obama" / "obama.jpg")
    shutil.copy(samples_dir / "obama2.jpg", db / "barack_obama" / "obama2.jpg")
    shutil.copy(samples_dir / "biden.jpg", db / "joe_biden" / "biden.jpg")
    return db


def euclid(a: Any, b: Any) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_results_read_like_deepface_dicts(samples_dir: Path, photo_db: Path) -> None:
    r = facegate.verify(str(samples_dir / "obama.jpg"), str(samples_dir / "obama3.jpg"))
    assert r["verified"] is True and r["distance"] == r.distance and r.get("threshold") == r.threshold
    assert {"verified", "distance", "threshold", "model", "distance_metric", "facial_areas", "time"} <= set(r.keys())
    assert "facial_areas" in r and r["facial_areas"]["img1"]["w"] > 50 and dict(r)["model"] == "Dlib"
    assert r.get("no_such_key", 7) == 7
    with pytest.raises(KeyError, match="keys: verified"):
        r["no_such_key"]
    (rep,) = facegate.represent(str(samples_dir / "obama.jpg"))
    assert len(rep["embedding"]) == 128 and rep["facial_area"]["left_eye"] is not None
    assert rep["face_confidence"] == rep.face_confidence
    (face,) = facegate.extract_faces(str(samples_dir / "obama.jpg"))
    assert face["face"].shape == (150, 150, 3) and face["confidence"] > 0.5
    (attrs,) = facegate.analyze(str(samples_dir / "obama.jpg"), actions=("age", "gender"))
    assert attrs["dominant_gender"] == "Man" and 20 < attrs["age"] < 80 and "region" in attrs
    (found,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db)
    assert found["identity"] == "barack_obama" and found["candidates"][0]["person_id"] == "barack_obama"


def test_find_dataframe_has_deepface_columns(samples_dir: Path, photo_db: Path) -> None:
    (frame,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db, return_type="dataframe")
    assert list(frame.columns)[:12] == DEEPFACE_FIND_COLUMNS
    # folder mode: identity is the matched image's path, as DeepFace gives it; nearest first, within threshold
    assert set(frame["identity"]) == {str(photo_db / "barack_obama" / "obama.jpg"),
                                      str(photo_db / "barack_obama" / "obama2.jpg")}
    assert list(frame["distance"]) == sorted(frame["distance"]) and (frame["distance"] <= frame["threshold"]).all()
    assert frame["threshold"].iloc[0] == pytest.approx(api.threshold_for(get_engine("mediapipe", "Dlib"), "euclidean"))
    (result,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db)
    assert tuple(frame[["source_x", "source_y", "source_w", "source_h"]].iloc[0]) == (
        result.facial_area.x, result.facial_area.y, result.facial_area.w, result.facial_area.h)
    assert all(len(h) == 64 for h in frame["hash"])  # sha256 of each gallery photo
    # DeepFace's batched=True: the same rows as dicts
    (records,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db, batched=True)
    assert [r["identity"] for r in records] == list(frame["identity"])
    assert set(DEEPFACE_FIND_COLUMNS) <= set(records[0])


def test_to_pandas_without_pandas_says_so(samples_dir: Path, photo_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (result,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db)
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an installation without pandas looks like
    with pytest.raises(ConfigError, match="needs pandas"):
        result.to_pandas()


def test_deepface_parameters_are_accepted(samples_dir: Path, photo_db: Path) -> None:
    a, b = str(samples_dir / "obama.jpg"), str(samples_dir / "obama2.jpg")
    plain = facegate.verify(a, b)
    grown = facegate.verify(a, b, expand_percentage=20, normalization="base", silent=True, anti_spoofing=False)
    assert grown.distance == pytest.approx(plain.distance)  # the chip is placed by landmarks
    small, big = plain.facial_areas["img1"], grown.facial_areas["img1"]
    assert small is not None and big is not None
    # DeepFace's expansion: w + int(w * p / 100), centred, clipped to the image
    assert big.w == small.w + int(small.w * 20 / 100) and big.x == max(0, small.x - int(small.w * 20 / 100 / 2))
    (rep,) = facegate.represent(a, expand_percentage=20, normalization="base", silent=True)
    assert rep.facial_area == big
    (found,) = facegate.find(b, db_path=photo_db, expand_percentage=20, normalization="base", silent=True,
                             refresh_database=False)
    assert found.identity == "barack_obama" and found.facial_area.w > small.w
    calls: list[Callable[[], object]] = [
        lambda: facegate.verify(a, b, normalization="Facenet"),
        lambda: facegate.represent(a, normalization="Facenet"),
        lambda: facegate.find(a, db_path=photo_db, normalization="Facenet"),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"normalization='Facenet'.*only 'base'"):
            call()
    with pytest.raises(ConfigError, match="unknown normalization"):
        facegate.verify(a, b, normalization="zscore")
    spoof_checks: list[Callable[[], object]] = [
        lambda: facegate.verify(a, b, anti_spoofing=True),
        lambda: facegate.represent(a, anti_spoofing=True),
        lambda: facegate.find(a, db_path=photo_db, anti_spoofing=True),
    ]
    for call in spoof_checks:
        with pytest.raises(ModelNotInstalledError):
            call()


def test_callable_distance_metric(samples_dir: Path, photo_db: Path) -> None:
    a, b, c = (str(samples_dir / n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    named = facegate.verify(a, b)
    thr = named.threshold
    custom = facegate.verify(a, b, distance_metric=euclid, threshold=thr)
    assert custom.distance == pytest.approx(named.distance, abs=1e-5) and custom.verified
    assert custom.distance_metric == "euclid"
    assert not facegate.verify(a, c, distance_metric=euclid, threshold=thr).verified
    with pytest.raises(ConfigError, match="pass threshold"):
        facegate.verify(a, b, distance_metric=euclid)
    (found,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db, distance_metric=euclid,
                             threshold=thr)
    (reference,) = facegate.find(str(samples_dir / "obama3.jpg"), db_path=photo_db)
    assert found.identity == reference.identity == "barack_obama"
    assert [m.person_id for m in found.candidates] == [m.person_id for m in reference.candidates]
    assert found.candidates[0].distance == pytest.approx(reference.candidates[0].distance, abs=1e-5)
    assert [r.identity for r in found.rows] == [r.identity for r in reference.rows]


def test_dir_lists_the_api() -> None:
    listed = dir(facegate)
    for name in ("verify", "find", "represent", "extract_faces", "analyze", "build_model", "enroll",
                 "VerifyResult", "FindResult", "__version__"):
        assert name in listed and name in facegate.__all__
    for name in facegate.__all__:
        assert getattr(facegate, name) is not None


def test_find_against_a_gallery_of_another_model(samples_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "arcface.sqlite"
    with SqliteGallery(path, model_id="ArcFace_v1") as other:
        other.enroll("alice", "Alice", [EnrollItem(Embedding(np.full(512, 0.04, np.float32), "ArcFace_v1"))])
    with pytest.raises(GalleryError, match="holds embeddings of ArcFace_v1, not of dlib_resnet_v1"):
        facegate.find(str(samples_dir / "obama.jpg"), gallery=path)


def test_skip_reports_no_eyes_through_the_dict_view(samples_dir: Path) -> None:
    rep = api.represent(str(samples_dir / "obama.jpg"), detector_backend="skip")[0]
    assert isinstance(rep, api.Representation)
    assert rep["facial_area"]["left_eye"] is None and rep["facial_area"]["right_eye"] is None
