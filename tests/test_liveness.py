"""Liveness: blinks and 3-D head motion over a track, against photos held in front of the camera.

Fresh-machine tests use the bundled public-domain photos as the attack material (a still frame
repeated, a hand-held print, a print tilted in 3-D) and real models throughout. With
``../shared/data``, real video must pass (Lin-Manuel Miranda singing in the Hamilton clip; people
walking towards the camera in the Royal Opera House clip) and prints of the 133 identity photos must
not. The measured rates are printed (``pytest -s``) and summarised in the liveness module's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.analysis.liveness import (
    LEFT_EYE,
    RIGHT_EYE,
    LivenessChecker,
    LivenessMode,
    LivenessSettings,
    build_liveness,
    check_frames,
    eye_aspect_ratio,
    homography_residual,
    mean_ear,
)
from facegate.decision import DecisionConfig, OffLiveness
from facegate.detectors.registry import build_detector
from facegate.errors import ConfigError
from facegate.images import load_image
from facegate.landmarks.facemesh import FaceMeshLandmarker
from facegate.types import Box, FaceDetection, Frame, ImageBGR
from tests.fixtures.print_attacks import print_attack_frames

FPS = 10.0


@pytest.fixture(scope="module")
def detector() -> Any:
    return build_detector("mediapipe")


@pytest.fixture(scope="module")
def mesh() -> FaceMeshLandmarker:
    return FaceMeshLandmarker()


def largest(detector: Any, image: ImageBGR) -> FaceDetection:
    faces: list[FaceDetection] = detector.detect(image)
    assert faces, "no face found"
    return max(faces, key=lambda d: d.box.area)


def feed(checker: LivenessChecker, detector: Any, frames: list[ImageBGR], fps: float = FPS,
         track_id: int = 1) -> list[str]:
    """Every frame through the checker as one track; the verdict after each frame."""
    states: list[str] = []
    for i, image in enumerate(frames):
        faces = detector.detect(image)
        if faces:
            face = max(faces, key=lambda d: d.box.area)
            checker.update(track_id, face, Frame(image=image, index=i, monotonic=i / fps, wall=i / fps))
        states.append(checker.verdict(track_id))
    return states


# -- geometry -----------------------------------------------------------------------------------------


def test_eye_aspect_ratio_of_an_open_and_a_closed_eye() -> None:
    mesh = np.zeros((468, 2))
    # p1 (0,0) .. p4 (30,0); lids 6 px above and below: EAR = (12 + 12) / 60
    for idx, (x, y) in zip(RIGHT_EYE, [(0, 0), (10, -6), (20, -6), (30, 0), (20, 6), (10, 6)], strict=True):
        mesh[idx] = (x, y)
    assert eye_aspect_ratio(mesh, RIGHT_EYE) == pytest.approx(0.4)
    for idx, (x, y) in zip(LEFT_EYE, [(50, 0), (60, -1), (70, -1), (80, 0), (70, 1), (60, 1)], strict=True):
        mesh[idx] = (x, y)
    assert eye_aspect_ratio(mesh, LEFT_EYE) == pytest.approx(4 / 60)
    assert mean_ear(mesh) == pytest.approx((0.4 + 4 / 60) / 2)


def _face_points() -> np.ndarray:
    """A rough 3-D face: an ellipsoid cap (cheeks and outline far back, nose tip forward), mm."""
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1, 1, 60), rng.uniform(-1, 1, 60)
    keep = u * u + v * v <= 1
    x, y = 70 * u[keep], 90 * v[keep]
    z = -40 * (u[keep] ** 2 + v[keep] ** 2)
    nose = np.array([[0.0, 10.0, 25.0], [0.0, 25.0, 20.0]])
    return np.vstack([np.stack([x, y, z], axis=1), nose])


def _project(points: np.ndarray, yaw_deg: float, distance: float = 600.0, focal: float = 800.0) -> np.ndarray:
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    cam = points @ rot.T + (0, 0, distance)
    return np.stack([focal * cam[:, 0] / cam[:, 2], focal * cam[:, 1] / cam[:, 2]], axis=1)


def test_a_plane_fits_a_homography_and_a_turning_head_does_not() -> None:
    face = _face_points()
    flat = face * (1, 1, 0)  # the same face printed on paper
    iod = 60.0
    # a print tilted 30 degrees: exactly a homography
    assert homography_residual(_project(flat, 0.0), _project(flat, 30.0)) / iod < 1e-6
    # the 3-D head turned 15 degrees: parallax the homography cannot absorb
    assert homography_residual(_project(face, 0.0), _project(face, 15.0)) / iod > 0.02


# -- settings -----------------------------------------------------------------------------------------


def test_settings_validate_and_off_has_no_checker() -> None:
    with pytest.raises(ConfigError, match="mode"):
        LivenessSettings(mode="wink")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LivenessSettings(blink_closed_ratio=0.9, blink_open_ratio=0.8)
    assert isinstance(build_liveness(LivenessSettings(mode="off")), OffLiveness)
    with pytest.raises(ConfigError, match="off"):
        LivenessChecker(LivenessSettings(mode="off"), mesh=lambda image, det: None)


def test_settings_from_the_config_section(caplog: pytest.LogCaptureFixture) -> None:
    models = pytest.importorskip("facegate.config.models")
    cfg = models.LivenessConfig(mode="motion", window_s=4.0, on_fail="undecided", motion_min_parallax=0.05)
    settings = LivenessSettings.from_config(cfg)
    assert (settings.mode, settings.window_s, settings.on_fail) == ("motion", 4.0, "undecided")
    checker = build_liveness(cfg)
    assert isinstance(checker, LivenessChecker) and checker.settings.mode == "motion"
    assert "may pass" not in caplog.text
    # a threshold inside the noise of tilted prints is accepted, with a warning
    assert LivenessSettings.from_config(models.LivenessConfig(mode="motion", motion_min_parallax=0.02)) \
        .motion_min_parallax == 0.02
    assert "printed photos may pass" in caplog.text


# -- blinks on a real face mesh with scripted eyelids ---------------------------------------------------


class ScriptedEyes:
    """FaceMesh of a real photo with the eyelids opened/closed to a scripted fraction."""

    def __init__(self, base: np.ndarray, openness: list[float]) -> None:
        self.base = base
        self.openness = openness
        self.calls = 0

    def __call__(self, image: ImageBGR, detection: FaceDetection) -> tuple[np.ndarray, float]:
        factor = self.openness[self.calls]
        self.calls += 1
        mesh = self.base.copy()
        for eye in (RIGHT_EYE, LEFT_EYE):
            p1, p4 = mesh[eye[0]], mesh[eye[3]]
            axis = (p4 - p1) / np.linalg.norm(p4 - p1)
            for i in (eye[1], eye[2], eye[4], eye[5]):
                rel = mesh[i] - p1
                along = axis * float(rel @ axis)
                mesh[i] = p1 + along + (rel - along) * factor
        return mesh, 1.0


@pytest.fixture(scope="module")
def obama_mesh(samples_dir: Path, detector: Any, mesh: FaceMeshLandmarker) -> tuple[ImageBGR, FaceDetection,
                                                                                     np.ndarray]:
    image = load_image(samples_dir / "obama2.jpg")
    det = largest(detector, image)
    points, presence = mesh.mesh_points(image, det)
    assert presence > 0.9
    return image, det, points


def scripted_verdicts(obama_mesh: Any, openness: list[float], settings: LivenessSettings,
                      fps: float = 15.0) -> tuple[LivenessChecker, list[str]]:
    image, det, base = obama_mesh
    checker = LivenessChecker(settings, mesh=ScriptedEyes(base, openness))
    states: list[str] = []
    for i in range(len(openness)):
        checker.update(7, det, Frame(image=image, index=i, monotonic=i / fps))
        states.append(checker.verdict(7))
    return checker, states


def test_a_blink_is_detected(obama_mesh: Any) -> None:
    # 15 fps: eyes open, closed for 2 frames (0.13 s, a normal blink), open again
    openness = [1.0] * 8 + [0.5, 0.15, 0.2, 0.7] + [1.0] * 8
    checker, states = scripted_verdicts(obama_mesh, openness, LivenessSettings(mode="blink"))
    assert checker.evidence(7).blinks == 1
    assert states[:9] == ["undecided"] * 9 and states[-1] == "live"


def test_slowly_narrowing_eyes_and_long_closures_are_not_blinks(obama_mesh: Any) -> None:
    # looking down: the eyes narrow over a second and stay narrow, then a 1 s closure
    narrowing = list(np.linspace(1.0, 0.3, 15)) + [0.3] * 10 + [1.0] * 5 + [0.1] * 15 + [1.0] * 5
    checker, states = scripted_verdicts(obama_mesh, narrowing, LivenessSettings(mode="blink", window_s=100.0))
    assert checker.evidence(7).blinks == 0
    assert "live" not in states


def test_a_blink_alone_does_not_pass_blink_and_motion(obama_mesh: Any) -> None:
    openness = [1.0] * 8 + [0.2, 0.2] + [1.0] * 45
    checker, states = scripted_verdicts(obama_mesh, openness, LivenessSettings(mode="blink+motion"))
    evidence = checker.evidence(7)
    assert evidence.blinks == 1 and evidence.parallax < 0.01  # the same head pose every frame
    assert "live" not in states and states[-1] == "spoof"  # 3.6 s without motion


# -- photo attacks with real models (fresh machine) -------------------------------------------------------


@pytest.mark.parametrize("mode", ["blink", "motion", "blink+motion"])
def test_a_still_photo_is_a_spoof(samples_dir: Path, detector: Any, mode: str) -> None:
    still = load_image(samples_dir / "obama2.jpg")
    checker = LivenessChecker(LivenessSettings(mode=mode))  # type: ignore[arg-type]
    states = feed(checker, detector, [still] * 40)  # 4 s at 10 fps
    assert "live" not in states
    assert states[-1] == "spoof"
    assert states.index("spoof") / FPS >= checker.settings.window_s


def test_a_still_photo_with_on_fail_undecided_never_decides(samples_dir: Path, detector: Any) -> None:
    still = load_image(samples_dir / "biden.jpg")
    checker = LivenessChecker(LivenessSettings(mode="motion", on_fail="undecided"))
    assert set(feed(checker, detector, [still] * 40)) == {"undecided"}


@pytest.fixture(scope="module")
def sample_faces(samples_dir: Path, astronaut_bgr: ImageBGR, detector: Any) -> dict[str, tuple[ImageBGR, Box]]:
    out = {"astronaut": (astronaut_bgr, largest(detector, astronaut_bgr).box)}
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        image = load_image(samples_dir / name)
        out[name] = (image, largest(detector, image).box)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_hand_held_prints_of_the_sample_photos_are_spoofs(sample_faces: dict[str, tuple[ImageBGR, Box]],
                                                          detector: Any, tilt: float) -> None:
    checker = LivenessChecker(LivenessSettings(mode="motion"))
    for k, (name, (photo, box)) in enumerate(sorted(sample_faces.items())):
        frames = print_attack_frames(photo, box, rng=np.random.default_rng(k), count=40, tilt=tilt)
        states = feed(checker, detector, frames, track_id=k)
        evidence = checker.evidence(k)
        assert "live" not in states, name
        assert states[-1] == "spoof", name
        assert evidence.parallax < 0.6 * checker.settings.motion_min_parallax, name


def test_check_frames_on_a_shaken_photo(samples_dir: Path) -> None:
    synthetic = pytest.importorskip("facegate.capture.synthetic")
    sequence = synthetic.demo_frames(("obama3.jpg",), person_frames=40, empty_frames=0)
    evidence = check_frames(list(sequence.frames), fps=sequence.fps, mode="motion")
    # the verdict is final once the 3 s window has passed: later frames are not looked at
    assert evidence.state == "spoof" and evidence.frames >= 25 and evidence.span_s >= 3.0
    assert evidence.parallax < 0.025


# -- the pipeline: a print of an enrolled person is not recognized -------------------------------------


class _Rig:
    def __init__(self, db: Path, samples_dir: Path) -> None:
        from facegate.align import build_aligner
        from facegate.embedders.registry import build_embedder
        from facegate.gallery import EnrollItem, SqliteGallery
        from facegate.matcher import Matcher
        from facegate.types import Embedding

        self.detector = build_detector("mediapipe")
        self.embedder = build_embedder("Dlib")
        self.aligner = build_aligner(self.embedder.alignment)
        self.gallery = SqliteGallery(db, model_id=self.embedder.model_id)
        self.matcher = Matcher(self.gallery, self.embedder.model_id, metric="euclidean",
                               threshold=self.embedder.thresholds)

        def enroll(person: str, name: str, image: ImageBGR) -> None:
            chip = self.aligner.align(image, largest(self.detector, image))
            vector = self.embedder.embed([chip.image])[0]
            self.gallery.enroll(person, name, [EnrollItem(Embedding(vector, self.embedder.model_id))])

        self.enroll = enroll
        enroll("obama", "Barack Obama", load_image(samples_dir / "obama.jpg"))

    def pipeline(self, **kwargs: Any) -> Any:
        from facegate.pipeline import Pipeline

        return Pipeline(self.detector, self.aligner, self.embedder, self.matcher, **kwargs)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[_Rig]:
    pytest.importorskip("facegate.gallery")
    r = _Rig(tmp_path_factory.mktemp("liveness") / "gallery.db", samples_dir)
    yield r
    r.gallery.close()


def run_pipeline(pipeline: Any, images: list[ImageBGR], fps: float = FPS) -> list[Any]:
    events = []
    for i, image in enumerate(images):
        events += pipeline.step(Frame(image=image, camera="door", index=i, monotonic=i / fps, wall=1e9 + i / fps))
    return events


@pytest.mark.parametrize("attack", ["still", "hand-held", "tilted"])
def test_a_print_of_an_enrolled_person_gives_a_spoof_event(rig: _Rig, sample_faces: Any, attack: str) -> None:
    photo, box = sample_faces["obama2.jpg"]
    if attack == "still":
        frames = print_attack_frames(photo, box, rng=np.random.default_rng(5), count=1, tilt=0.0) * 50
    else:
        frames = print_attack_frames(photo, box, rng=np.random.default_rng(6), count=50,
                                     tilt=0.0 if attack == "hand-held" else 20.0)
    # without liveness the print is recognized: liveness is what stops it
    plain = run_pipeline(rig.pipeline(decision_config=DecisionConfig(cooldown_s=0.0)), frames)
    assert [(e.type, e.person_id) for e in plain] == [("recognized", "obama")]
    modes: tuple[LivenessMode, ...] = ("motion", "blink", "blink+motion")
    for mode in modes:
        checker = build_liveness(LivenessSettings(mode=mode))
        events = run_pipeline(rig.pipeline(decision_config=DecisionConfig(liveness_required=True, cooldown_s=0.0),
                                           liveness=checker), frames)
        assert [(e.type, e.person_id) for e in events] == [("spoof", None)], mode


# -- real video (shared data) ---------------------------------------------------------------------------


def read_video(path: Path, first: int = 0, last: int | None = None) -> tuple[list[ImageBGR], float]:
    capture = cv2.VideoCapture(str(path))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    frames: list[ImageBGR] = []
    index = -1
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        index += 1
        if index < first:
            continue
        if last is not None and index > last:
            break
        frames.append(np.ascontiguousarray(frame))
    capture.release()
    return frames, fps


@pytest.fixture(scope="module")
def hamilton(shared_data: Path) -> tuple[list[ImageBGR], float]:
    return read_video(shared_data / "video" / "short_hamilton_clip.mp4", 95, 210)


@pytest.mark.parametrize("step", [1, 3])
def test_a_singing_face_passes_motion(hamilton: tuple[list[ImageBGR], float], detector: Any, step: int) -> None:
    frames, fps = hamilton
    checker = LivenessChecker(LivenessSettings(mode="motion"))
    states = feed(checker, detector, frames[::step], fps=fps / step)
    first_live = states.index("live") if "live" in states else None
    assert first_live is not None and first_live * step / fps <= 2.0
    # no blink in this segment (checked frame by frame), so blink modes must wait and fail
    blink = LivenessChecker(LivenessSettings(mode="blink"))
    assert "live" not in feed(blink, detector, frames[::step], fps=fps / step)


def test_the_pipeline_recognizes_a_live_enrolled_face(rig: _Rig, hamilton: tuple[list[ImageBGR], float],
                                                      shared_data: Path) -> None:
    photo = load_image(shared_data / "identities" / "lin_manuel_miranda" / "1.jpg")
    rig.enroll("lin", "Lin-Manuel Miranda", photo)
    frames, fps = hamilton
    checker = build_liveness(LivenessSettings(mode="motion"))
    events = run_pipeline(rig.pipeline(decision_config=DecisionConfig(liveness_required=True), liveness=checker),
                          frames, fps=fps)
    assert [(e.type, e.person_id) for e in events][:1] == [("recognized", "lin")]


def test_people_walking_towards_the_camera_pass_motion(shared_data: Path) -> None:
    from facegate.tracker import Tracker

    frames, fps = read_video(shared_data / "video" / "royal_opera_house_walk.mp4")
    detector = build_detector("mediapipe_full")
    checker = LivenessChecker(LivenessSettings(mode="motion"))
    tracker = Tracker()
    seen: dict[int, int] = {}
    for i, image in enumerate(frames):
        faces = [d for d in detector.detect(image) if math.dist(d.left_eye, d.right_eye) >= 20.0]
        update = tracker.update("walk", [d.box for d in faces], i / fps)
        for det, track in zip(faces, update.tracks, strict=True):
            checker.update(track.track_id, det, Frame(image=image, index=i, monotonic=i / fps))
            seen[track.track_id] = seen.get(track.track_id, 0) + 1
    usable = {t: checker.evidence(t) for t in seen if checker.evidence(t).frames >= 4}
    live = [t for t, e in usable.items() if e.state == "live"]
    assert len(usable) >= 3
    assert len(live) >= 2
    assert all(e.state != "spoof" for e in usable.values())  # all shorter than the 3 s window


@pytest.mark.slow
def test_prints_of_the_identity_photos_do_not_pass(shared_data: Path, detector: Any) -> None:
    full = build_detector("mediapipe_full")
    photos = sorted((shared_data / "identities").glob("*/*.jpg"))[::7]
    checker = LivenessChecker(LivenessSettings(mode="motion", window_s=100.0))
    parallax: dict[float, list[float]] = {0.0: [], 20.0: []}
    for k, path in enumerate(photos):
        photo = load_image(path)
        faces = detector.detect(photo) or full.detect(photo)
        if not faces:
            continue
        box = max(faces, key=lambda d: d.box.area).box
        for tilt, values in parallax.items():
            track = 2 * k + int(tilt > 0)
            frames = print_attack_frames(photo, box, rng=np.random.default_rng(track), count=30, tilt=tilt)
            assert "live" not in feed(checker, detector, frames, track_id=track), (path.name, tilt)
            evidence = checker.evidence(track)
            if evidence.frames >= 5:
                values.append(evidence.parallax)
    for tilt, values in parallax.items():
        assert len(values) >= 15, tilt
        assert max(values) < checker.settings.motion_min_parallax, (tilt, max(values))
