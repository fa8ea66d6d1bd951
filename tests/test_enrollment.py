"""Enrolment rules with the real default chain: raising when nothing is stored, which face of a group
photo is taken, and the human-face confirmation that keeps cats and dogs out of the gallery."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import facegate
from facegate.cli import main
from facegate.engine import get_engine
from facegate.enrollment import EnrollOutcome, choose_face
from facegate.errors import EnrollmentError
from facegate.gallery.store import SqliteGallery
from facegate.images import load_image
from facegate.types import ImageBGR


def _canvas_with(faces: list[tuple[ImageBGR, float, tuple[int, int]]], size: tuple[int, int]) -> ImageBGR:
    """A grey canvas with each photo scaled by ``scale`` and centred at ``(x, y)``."""
    w, h = size
    canvas = np.full((h, w, 3), 128, dtype=np.uint8)
    for photo, scale, (x, y) in faces:
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        canvas[y - sh // 2:y - sh // 2 + sh, x - sw // 2:x - sw // 2 + sw] = small
    return canvas


def _head(samples_dir: Path, name: str) -> ImageBGR:
    """A head-and-shoulders crop of a sample photo (its largest face, 2x the box)."""
    image = load_image(samples_dir / name)
    det = max(get_engine().detect(image), key=lambda d: d.box.area)
    cx, cy = det.box.center
    half = det.box.width
    y1, x1 = max(0, round(cy - half)), max(0, round(cx - half))
    return np.ascontiguousarray(image[y1:round(cy + half), x1:round(cx + half)])


def test_enroll_raises_listing_every_refused_photo(tmp_path: Path, samples_dir: Path, coffee_bgr: ImageBGR) -> None:
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), coffee_bgr)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 broken")
    obama, biden = _head(samples_dir, "obama.jpg"), _head(samples_dir, "biden.jpg")
    side = max(obama.shape[0], biden.shape[0])
    pair = tmp_path / "pair.jpg"
    cv2.imwrite(str(pair), _canvas_with([(obama, 1.0, (side // 2, side // 2)),
                                         (biden, obama.shape[0] / biden.shape[0], (3 * side // 2 + 2, side // 2))],
                                        (2 * side + 4, side)))
    db = tmp_path / "g.sqlite3"
    with pytest.raises(EnrollmentError) as caught:
        facegate.enroll("nobody", "Nobody", [coffee, broken, pair], gallery=db)
    message = str(caught.value)
    for label, reason in ((coffee, "no_face"), (broken, "bad_image"), (pair, "several_faces")):
        assert f"{label}: {reason}" in message, message
    assert "face_index" in message  # the ambiguous photo says how to choose
    outcome = caught.value.outcome
    assert isinstance(outcome, EnrollOutcome)
    assert [p.status for p in outcome.photos] == ["no_face", "bad_image", "several_faces"]
    with SqliteGallery(db) as gallery:
        assert gallery.people() == []
    # ValueError, as DeepFace raises on bad input
    with pytest.raises(ValueError, match="nothing enrolled"):
        facegate.enroll("nobody", "Nobody", [coffee], gallery=db)
    # partial success keeps the outcome object
    mixed = facegate.enroll("joe_biden", "Joe Biden", [coffee, samples_dir / "biden.jpg"], gallery=db)
    assert [p.status for p in mixed.photos] == ["no_face", "ok"] and mixed.stored == 1


def test_group_photo_subject_choice_and_face_index(tmp_path: Path, samples_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    engine = get_engine()
    obama, biden = _head(samples_dir, "obama.jpg"), _head(samples_dir, "biden.jpg")
    side = obama.shape[0]
    # news-photo layout: the subject large and central, another person smaller at the edge
    # the other person ~0.64 of the subject's area ("similar size" by area alone), at the left edge
    width, height = int(2.4 * side), int(1.2 * side)
    scale = 0.75 * side / biden.shape[0]
    news = _canvas_with([(obama, 1.0, (width // 2, height // 2)),
                         (biden, scale, (int(0.5 * biden.shape[1] * scale) + 2, height // 2))], (width, height))
    results = engine.represent(news, enforce_detection=False)
    assert len(results) == 2
    areas = sorted(r.detection.box.area for r in results)
    assert 0.5 <= areas[0] / areas[1] < 0.8
    choice = choose_face(results, "news", (news.shape[1], news.shape[0]))
    assert "most central" in choice.note
    assert choice.face.embedding is not None
    taken = choice.face.embedding.vector

    def dist(name: str) -> float:
        vector = engine.represent(load_image(samples_dir / name))[0].embedding
        assert vector is not None
        return float(np.linalg.norm(vector.vector - taken))

    assert dist("obama2.jpg") < 0.6 < dist("biden.jpg")  # the subject, not the bystander

    # two similar faces side by side: refused, then chosen by number
    pair = _canvas_with([(obama, 1.0, (side // 2, side // 2)),
                         (biden, side / biden.shape[0], (3 * side // 2, side // 2))], (2 * side + 4, side))
    path = tmp_path / "pair.jpg"
    cv2.imwrite(str(path), pair)
    db = tmp_path / "g.sqlite3"
    with pytest.raises(EnrollmentError, match="several_faces"):
        facegate.enroll("joe_biden", "Joe Biden", [path], gallery=db)
    biden_faces = sorted(engine.detect(pair), key=lambda d: d.box.area, reverse=True)
    index = next(i for i, d in enumerate(biden_faces) if d.box.center[0] > side)  # the right-hand face
    outcome = facegate.enroll("joe_biden", "Joe Biden", [path], gallery=db, face_index=index)
    assert outcome.stored == 1 and "as asked" in outcome.photos[0].detail
    assert facegate.find(samples_dir / "biden.jpg", gallery=db)[0].identity == "Joe Biden"
    with pytest.raises(EnrollmentError, match="out of range"):
        facegate.enroll("x", "X", [path], gallery=db, face_index=5)
    # `facegate detect` numbers the faces the same way (largest first)
    assert main(["detect", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["faces"]
    assert [f["box"]["w"] * f["box"]["h"] for f in listed] == sorted(
        (f["box"]["w"] * f["box"]["h"] for f in listed), reverse=True)
    assert listed[index]["box"]["x"] > side // 2  # face `index` is the right-hand one there too
    # the CLI takes --face too and keeps its per-photo table
    assert main(["enroll", "Joe Biden", str(path), "--gallery", str(tmp_path / "c.sqlite3"), "--face",
                 str(index)]) == 0


def test_enrolment_refuses_a_cat(tmp_path: Path, samples_dir: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    cat = tmp_path / "chelsea.png"
    cv2.imwrite(str(cat), np.ascontiguousarray(skimage_data.chelsea()[:, :, ::-1]))
    assert get_engine().detect(load_image(cat)), "BlazeFace sees a face in the cat (the reason for the check)"
    db = tmp_path / "g.sqlite3"
    with pytest.raises(EnrollmentError, match="not confirmed as a human face"):
        facegate.enroll("cat", "Cat", [cat], gallery=db)
    outcome = facegate.enroll("barack_obama", "Barack Obama", [cat, samples_dir / "obama.jpg"], gallery=db)
    assert [p.status for p in outcome.photos] == ["no_face", "ok"]


def test_enrolment_refuses_the_dlib_dogs(tmp_path: Path, shared_data: Path) -> None:
    dogs = shared_data / "detection" / "dlib_dogs.jpg"
    assert get_engine().detect(load_image(dogs))
    with pytest.raises(EnrollmentError, match="not confirmed as a human face"):
        facegate.enroll("dog", "Dog", [dogs], gallery=tmp_path / "g.sqlite3")


def test_every_identity_photo_passes_the_human_face_check(shared_data: Path) -> None:
    from facegate.enrollment import subject_face

    engine = get_engine()
    refused = []
    for path in sorted((shared_data / "identities").glob("*/*.jpg")):
        try:
            subject_face(engine, load_image(path), str(path))
        except facegate.errors.NoFaceError as err:
            refused.append(str(err))
        except facegate.errors.FacegateError:
            continue  # several faces: not this check's business
    assert refused == []


def test_enrolment_warns_when_a_new_person_lands_on_an_existing_one(tmp_path: Path, samples_dir: Path) -> None:
    db = tmp_path / "g.sqlite3"
    assert facegate.enroll("barack", "Barack", [samples_dir / "obama.jpg"], gallery=db).warnings == ()
    assert facegate.enroll("joe", "Joe", [samples_dir / "biden.jpg"], gallery=db).warnings == ()
    # the same face under another name stands in for twins or faces the model separates poorly
    twin = facegate.enroll("twin", "Twin", [samples_dir / "obama2.jpg"], gallery=db)
    assert twin.stored == 1 and len(twin.warnings) == 1 and "'barack'" in twin.warnings[0]
    assert twin.to_dict()["warnings"] == list(twin.warnings)
