"""The DeepFace-style public API on public-domain photos, real models, real SQLite galleries."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

import facegate
from facegate.enrollment import EnrollOutcome
from facegate.errors import ConfigError, EmbeddingError, EnrollmentError, ImageError, NoFaceError
from facegate.gallery.store import SqliteGallery
from tests.fixtures.images import read_bgr


@pytest.fixture(scope="module")
def obama(samples_dir: Path) -> Path:
    return samples_dir / "obama.jpg"


def test_verify_same_and_different_people(samples_dir: Path) -> None:
    same = facegate.verify(samples_dir / "obama.jpg", samples_dir / "obama2.jpg")
    same3 = facegate.verify(str(samples_dir / "obama.jpg"), str(samples_dir / "obama3.jpg"))
    other = facegate.verify(samples_dir / "obama.jpg", samples_dir / "biden.jpg")
    assert same.verified and same3.verified and not other.verified
    assert same.distance < 0.6 and same3.distance < 0.6 and other.distance > 0.6
    # DeepFace's confidence bands: 51..100 when verified, 0..49 when not
    assert 51 <= same.confidence <= 100 and 0 <= other.confidence <= 49
    d = same.to_dict()
    for key in ("verified", "distance", "threshold", "confidence", "model", "detector_backend",
                "similarity_metric", "facial_areas", "time"):
        assert key in d
    assert d["model"] == "Dlib" and d["detector_backend"] == "mediapipe"
    assert 0.55 <= d["threshold"] <= 0.65  # calibrated euclidean threshold (dlib publishes 0.6)
    for side in ("img1", "img2"):
        area = d["facial_areas"][side]
        assert set(area) == {"x", "y", "w", "h", "left_eye", "right_eye"}
        # the person's left eye has the larger x (DeepFace's convention)
        assert area["left_eye"][0] > area["right_eye"][0]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "euclidean_l2", "angular"])
def test_every_metric_separates_the_samples(samples_dir: Path, metric: str) -> None:
    same = facegate.verify(samples_dir / "obama.jpg", samples_dir / "obama2.jpg", distance_metric=metric)
    other = facegate.verify(samples_dir / "obama.jpg", samples_dir / "biden.jpg", distance_metric=metric)
    assert same.distance < other.distance
    assert same.verified and not other.verified
    assert same.to_dict()["distance_metric"] == metric


def test_verify_accepts_embeddings_and_rejects_wrong_dimensions(obama: Path, samples_dir: Path) -> None:
    rep = facegate.represent(obama)
    assert isinstance(rep, list)
    vector = list(rep[0].embedding)
    result = facegate.verify(vector, samples_dir / "obama2.jpg")
    assert result.verified and result.facial_areas["img1"] is None
    with pytest.raises(EmbeddingError, match=r"Dlib.*128|128.*Dlib") as err:
        facegate.verify(vector[:64], samples_dir / "obama2.jpg")
    assert isinstance(err.value, ValueError)  # DeepFace raises ValueError


def test_represent_fields_batches_and_l2(samples_dir: Path) -> None:
    reps = facegate.represent(samples_dir / "obama.jpg")
    assert len(reps) == 1
    rep = reps[0]
    assert len(rep.embedding) == 128
    assert set(rep.to_dict()) == {"embedding", "facial_area", "face_confidence"}
    assert 0.5 < rep.face_confidence <= 1.0
    batch = facegate.represent([samples_dir / "obama.jpg", samples_dir / "biden.jpg"])
    assert len(batch) == 2 and all(len(b) == 1 for b in batch)
    np.testing.assert_allclose(batch[0][0].embedding, rep.embedding, atol=1e-6)
    unit = facegate.represent(samples_dir / "obama.jpg", l2_normalize=True)[0]
    assert np.linalg.norm(unit.embedding) == pytest.approx(1.0, abs=1e-5)


def test_image_inputs_path_array_bytes_base64(obama: Path) -> None:
    data = obama.read_bytes()
    array = read_bgr(obama)
    b64 = base64.b64encode(data).decode()
    vectors = [facegate.represent(src)[0].embedding for src in
               (obama, str(obama), array, data, b64, f"data:image/jpeg;base64,{b64}")]
    for v in vectors[1:]:
        np.testing.assert_allclose(v, vectors[0], atol=1e-5)


def test_extract_faces_fields_and_eye_order(obama: Path, astronaut_bgr: np.ndarray) -> None:
    faces = facegate.extract_faces(obama)
    assert len(faces) == 1
    face = faces[0]
    assert face.face.shape == (150, 150, 3) and face.face.dtype == np.float32
    assert float(face.face.min()) >= 0.0 and float(face.face.max()) <= 1.0
    d = face.to_dict()
    assert set(d) == {"face", "facial_area", "confidence"}
    assert d["facial_area"]["left_eye"][0] > d["facial_area"]["right_eye"][0]
    crop = facegate.extract_faces(astronaut_bgr, align=False, normalize_face=False, color_face="bgr")[0]
    area = crop.facial_area
    assert crop.face.dtype == np.uint8 and crop.face.shape[:2] == (area.h, area.w)
    grown = facegate.extract_faces(astronaut_bgr, align=False, expand_percentage=20)[0]
    assert grown.face.shape[0] > crop.face.shape[0]


def test_black_image_with_and_without_enforce_detection() -> None:
    black = np.zeros((480, 640, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError) as err:
        facegate.represent(black)
    assert isinstance(err.value, ValueError)
    with pytest.raises(NoFaceError):
        facegate.extract_faces(black)
    with pytest.raises(NoFaceError):
        facegate.verify(black, black)
    reps = facegate.represent(black, enforce_detection=False)
    assert len(reps) == 1 and reps[0].face_confidence == 0
    faces = facegate.extract_faces(black, enforce_detection=False)
    assert len(faces) == 1 and faces[0].confidence == 0


def test_skip_detector_uses_the_whole_image(obama: Path) -> None:
    chip = facegate.extract_faces(obama, normalize_face=False, color_face="bgr")[0].face
    direct = facegate.represent(obama)[0].embedding
    skipped = facegate.represent(np.ascontiguousarray(chip), detector_backend="skip")[0]
    assert skipped.facial_area.w == 150
    assert np.linalg.norm(np.asarray(skipped.embedding) - np.asarray(direct)) < 0.1


def test_unknown_metric_and_model_give_clear_errors(obama: Path) -> None:
    with pytest.raises(ConfigError, match="distance_metric"):
        facegate.verify(obama, obama, distance_metric="manhattan")
    with pytest.raises(ValueError, match=r"models import"):
        facegate.represent(obama, model_name="ArcFace")
    with pytest.raises(ConfigError, match="valid"):
        facegate.represent(obama, detector_backend="no-such-detector")


def test_bad_inputs_are_rejected_with_the_input_named(tmp_path: Path, obama: Path) -> None:
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ImageError, match=r"missing\.jpg.*not found"):
        facegate.represent(missing)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg.*empty"):
        facegate.represent(empty)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(obama.read_bytes()[:5000])
    with pytest.raises(ImageError, match=r"truncated\.jpg"):
        facegate.represent(truncated)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.jpg.*not a supported image"):
        facegate.represent(text)
    with pytest.raises(ImageError, match="base64"):
        facegate.represent("data:image/jpeg;base64,@@@@")


def test_unusual_image_formats_decode(tmp_path: Path, obama: Path) -> None:
    bgr = read_bgr(obama)
    reference = facegate.represent(bgr)[0].embedding
    webp = tmp_path / "actually_webp.jpg"
    ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 100])
    assert ok
    webp.write_bytes(buf.tobytes())
    rgba = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    sixteen = bgr.astype(np.uint16) * 257
    for source in (webp, rgba, sixteen):
        v = facegate.represent(source)[0].embedding
        assert np.linalg.norm(np.asarray(v) - np.asarray(reference)) < 0.1
    assert len(facegate.represent(gray)) == 1


def test_enormous_image_is_downscaled_for_detection(tmp_path: Path, obama: Path) -> None:
    bgr = read_bgr(obama)
    big = cv2.resize(bgr, (bgr.shape[1] * 8, bgr.shape[0] * 8), interpolation=cv2.INTER_LINEAR)  # ~66 MP
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    faces = facegate.extract_faces(path)
    assert len(faces) == 1
    area = faces[0].facial_area
    # decoded at reduced size (> 40 MP), detected, box in the decoded image's pixels
    assert area.w > 100


def test_find_and_enroll_round_trip(tmp_path: Path, samples_dir: Path) -> None:
    db = tmp_path / "gallery.sqlite3"
    outcome = facegate.enroll("barack_obama", "Barack Obama", [samples_dir / "obama.jpg", samples_dir / "obama3.jpg"],
                              gallery=db)
    assert outcome.stored == 2 and [p.status for p in outcome.photos] == ["ok", "ok"]
    assert facegate.enroll("joe_biden", "Joe Biden", [samples_dir / "biden.jpg"], gallery=db).stored == 1
    results = facegate.find(samples_dir / "obama2.jpg", gallery=db)
    assert len(results) == 1
    best = results[0]
    assert best.identity == "Barack Obama" and best.person_id == "barack_obama"
    assert best.candidates[0].distance < 0.6 < best.candidates[1].distance
    assert best.margin == pytest.approx(best.candidates[1].distance - best.candidates[0].distance, abs=1e-5)
    # a strict threshold makes the same face unknown
    assert facegate.find(samples_dir / "obama2.jpg", gallery=db, threshold=0.1)[0].identity is None
    # a margin larger than the gap also refuses to name anyone
    assert facegate.find(samples_dir / "obama2.jpg", gallery=db, margin=1.0)[0].identity is None


def test_enrolment_reports_each_photo_and_writes_nothing_when_all_fail(tmp_path: Path, samples_dir: Path,
                                                                       coffee_bgr: np.ndarray) -> None:
    db = tmp_path / "g.sqlite3"
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), coffee_bgr)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(EnrollmentError) as caught:
        facegate.enroll("nobody", "Nobody", [coffee, broken], gallery=db)
    outcome = caught.value.outcome
    assert isinstance(outcome, EnrollOutcome)
    assert [p.status for p in outcome.photos] == ["no_face", "bad_image"]
    with SqliteGallery(db) as gallery:
        assert gallery.people() == []
    mixed = facegate.enroll("joe_biden", "Joe Biden", [coffee, samples_dir / "biden.jpg"], gallery=db)
    assert [p.status for p in mixed.photos] == ["no_face", "ok"] and mixed.stored == 1


def test_find_on_a_folder_of_people_keeps_in_sync(tmp_path: Path, samples_dir: Path) -> None:
    folder = tmp_path / "people"
    (folder / "Barack Obama").mkdir(parents=True)
    (folder / "Joe Biden").mkdir()
    (folder / "Barack Obama" / "a.jpg").write_bytes((samples_dir / "obama.jpg").read_bytes())
    (folder / "Joe Biden" / "a.jpg").write_bytes((samples_dir / "biden.jpg").read_bytes())
    first = facegate.find(samples_dir / "obama2.jpg", db_path=folder)
    assert first[0].identity == "Barack Obama"
    # removing Obama's photos removes him from the synced gallery
    (folder / "Barack Obama" / "a.jpg").unlink()
    again = facegate.find(samples_dir / "obama2.jpg", db_path=folder)
    assert again[0].identity is None
    assert [c.identity for c in again[0].candidates] == ["Joe Biden"]


def test_analyze_and_build_model_are_part_of_the_facade(obama: Path) -> None:
    results = facegate.analyze(obama)
    assert len(results) == 1
    d = results[0].to_dict()
    for key in ("region", "face_confidence", "age", "dominant_gender", "gender", "dominant_emotion", "emotion"):
        assert key in d
    assert d["dominant_gender"] == "Man" and d["region"]["left_eye"][0] > d["region"]["right_eye"][0]
    embedder = facegate.build_model("Dlib")
    assert embedder.dim == 128 and embedder.model_id == "dlib_resnet_v1"
    with pytest.raises(ConfigError, match="task"):
        facegate.build_model("Dlib", task="painting")
