"""ReplaySource and the synthetic demo sequence, on real files written to tmp (fresh machine)."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.capture import EndOfStream, build_source
from facegate.capture.replay import ReplaySource
from facegate.capture.synthetic import DemoSequence, demo_frames, write_image_folder, write_video
from facegate.errors import CaptureError, CaptureFatal, ConfigError
from facegate.types import Frame


@pytest.fixture(scope="module")
def demo() -> DemoSequence:
    return demo_frames(person_frames=6, empty_frames=4)


@pytest.fixture()
def video(tmp_path: Path, demo: DemoSequence) -> Path:
    return write_video(demo.frames, tmp_path / "demo.avi", fps=25.0)


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    return images


def drain(source: ReplaySource, limit: int = 10_000) -> list[Frame]:
    frames: list[Frame] = []
    with pytest.raises(EndOfStream):
        while len(frames) < limit:
            frame = source.read(1.0)
            if frame is not None:
                frames.append(frame)
    return frames


# -- the demo sequence ------------------------------------------------------------------------------------
def test_demo_sequence_layout_is_person_gap_person_gap(demo: DemoSequence) -> None:
    assert len(demo) == 20
    assert demo.segments() == [("obama", 0, 6), (None, 6, 10), ("biden", 10, 16), (None, 16, 20)]
    for image in demo.frames:
        assert image.shape == (360, 640, 3)
        assert image.dtype == np.uint8
        assert image.flags.c_contiguous


def test_demo_sequence_is_deterministic_and_seeded() -> None:
    a = demo_frames(person_frames=3, empty_frames=2, seed=7)
    b = demo_frames(person_frames=3, empty_frames=2, seed=7)
    c = demo_frames(person_frames=3, empty_frames=2, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    assert not np.array_equal(a.frames[0], c.frames[0])


def test_demo_frames_move_like_a_handheld_camera(demo: DemoSequence) -> None:
    first, second = (f.astype(np.int16) for f in demo.frames[:2])
    # Consecutive frames of one person differ (motion + noise) but show the same scene.
    diff = np.abs(first - second).mean()
    assert 2.0 < diff < 60.0


def test_faces_only_in_person_frames(demo: DemoSequence) -> None:
    cascade = cv2.CascadeClassifier(str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml"))
    for image, label in zip(demo.frames, demo.labels, strict=True):
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
        if label is None:
            assert len(faces) == 0
        else:
            assert len(faces) >= 1
            x, _y, w, h = max(faces, key=lambda b: b[2] * b[3])
            # A door-camera face: large and near the middle of the frame.
            assert 110 <= h <= 220
            assert abs((x + w / 2) - 320) < 60


# -- video files ------------------------------------------------------------------------------------------
def test_video_fast_replays_every_frame_then_ends(video: Path, demo: DemoSequence) -> None:
    source = ReplaySource("cam", path=video, pacing="fast")
    assert source.finite
    source.open()
    frames = drain(source)
    assert [f.index for f in frames] == list(range(len(demo)))
    assert all(f.camera == "cam" and f.image.shape == (360, 640, 3) for f in frames)
    assert source.nominal_fps == pytest.approx(25.0)
    # The decoded pictures are the written ones (MJPG is lossy: close, not equal).
    for frame, original in zip(frames, demo.frames, strict=True):
        assert np.abs(frame.image.astype(np.int16) - original).mean() < 4.0
    # The end is sticky.
    with pytest.raises(EndOfStream):
        source.read(0.1)
    source.close()


def test_video_realtime_is_paced_by_the_file_rate(video: Path, demo: DemoSequence) -> None:
    source = ReplaySource("cam", path=video, pacing="realtime")
    source.open()
    start = time.monotonic()
    frames = drain(source)
    elapsed = time.monotonic() - start
    assert len(frames) == len(demo)
    # 20 frames at 25 fps take 0.76 s from first to last; generous bounds, this is not a timing test.
    span = frames[-1].monotonic - frames[0].monotonic
    assert span >= (len(frames) - 1) / 25.0 * 0.9
    assert elapsed < 10.0
    assert all(b.monotonic > a.monotonic for a, b in itertools.pairwise(frames))


def test_realtime_read_returns_none_instead_of_blocking_past_the_timeout(demo: DemoSequence) -> None:
    source = ReplaySource("cam", frames=demo.frames[:3], pacing="realtime", fps=2.0)
    source.open()
    assert source.read(1.0) is not None
    # The next frame is due in 0.5 s: a 0.05 s read must come back empty-handed.
    assert source.read(0.05) is None
    frame = None
    while frame is None:
        frame = source.read(1.0)
    assert frame.index == 1


def test_loop_restarts_and_counts_loops(video: Path, demo: DemoSequence) -> None:
    source = ReplaySource("cam", path=video, pacing="fast", loop=True)
    assert not source.finite
    source.open()
    frames = [source.read(1.0) for _ in range(len(demo) * 2 + 3)]
    assert all(f is not None for f in frames)
    assert source.loops_completed == 2
    indices = [f.index for f in frames if f is not None]
    assert indices == list(range(len(indices)))
    first, again = frames[0], frames[len(demo)]
    assert first is not None and again is not None
    assert np.array_equal(first.image, again.image)


def test_resize_option(video: Path) -> None:
    source = ReplaySource("cam", path=video, pacing="fast", width=320, height=180)
    source.open()
    frame = source.read(1.0)
    assert frame is not None and frame.image.shape == (180, 320, 3)


def test_missing_path_on_first_open_is_fatal(tmp_path: Path) -> None:
    source = ReplaySource("cam", path=tmp_path / "nope.mp4")
    with pytest.raises(CaptureFatal, match="does not exist"):
        source.open()


def test_not_a_video_is_fatal(tmp_path: Path) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CaptureFatal):
        ReplaySource("cam", path=bogus).open()


def test_file_vanishing_mid_replay_is_transient_and_resumes(tmp_path: Path, video: Path) -> None:
    expected = decode_all(video)
    source = ReplaySource("cam", path=video, pacing="fast")
    source.open()
    got = [source.read(1.0) for _ in range(7)]
    stash = video.rename(tmp_path / "stash.avi")
    with pytest.raises(CaptureError, match="vanished"):
        source.read(1.0)
    source.close()
    with pytest.raises(CaptureError):  # transient now that the source has worked once
        source.open()
    stash.rename(video)
    source.open()
    rest = drain(source)
    frames = [f for f in got if f is not None] + rest
    assert [f.index for f in frames] == list(range(len(expected)))
    for frame, image in zip(frames, expected, strict=True):
        assert np.array_equal(frame.image, image)  # resumed exactly where it stopped


# -- image folders and memory -----------------------------------------------------------------------------
def test_image_folder_skips_corrupt_and_non_image_files(
    tmp_path: Path, demo: DemoSequence, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "frames"
    paths = write_image_folder(demo.frames[:5], folder, suffix=".jpg")
    corrupt = folder / "frame_00002b.jpg"  # sorts between frame 2 and 3
    corrupt.write_bytes(paths[2].read_bytes()[:200])  # truncated JPEG
    (folder / "frame_00001b.jpg").write_bytes(b"GIF89a not really")  # not an image at all
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.jpg").write_bytes(b"")
    source = build_source("cam", {"type": "replay", "path": str(folder), "pacing": "fast"})
    assert isinstance(source, ReplaySource)
    source.open()
    with caplog.at_level(logging.WARNING, logger="facegate.capture.replay"):
        frames = drain(source)
    assert len(frames) == 5
    assert source.skipped_files == 2
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "frame_00002b.jpg" in warned and "frame_00001b.jpg" in warned
    assert "notes.txt" not in warned
    for frame, original in zip(frames, demo.frames[:5], strict=True):
        assert np.abs(frame.image.astype(np.int16) - original).mean() < 6.0


def test_folder_of_only_bad_images_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff broken")
    source = ReplaySource("cam", path=tmp_path, pacing="fast", loop=True)
    source.open()
    with pytest.raises(CaptureFatal, match="no decodable frames"):
        source.read(1.0)


def test_in_memory_frames_are_copies(demo: DemoSequence) -> None:
    source = ReplaySource("cam", frames=demo.frames[:2], pacing="fast", loop=True)
    source.open()
    first = source.read(1.0)
    assert first is not None
    first.image[:] = 0  # a consumer drawing on its frame ...
    source.read(1.0)
    again = source.read(1.0)
    assert again is not None and np.array_equal(again.image, demo.frames[0])  # ... changes no later frame
    assert source.nominal_fps == 5.0  # the documented default for frames without a rate


def test_bad_options_are_config_errors(demo: DemoSequence) -> None:
    with pytest.raises(ConfigError):
        ReplaySource("cam")
    with pytest.raises(ConfigError):
        ReplaySource("cam", frames=demo.frames, pacing="slow")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ReplaySource("cam", frames=demo.frames, width=100)
    with pytest.raises(ConfigError, match=r"\(replay\): invalid options: .speed. is not an option of .replay."):
        build_source("cam", type="replay", path="x.mp4", speed=2)
    with pytest.raises(ConfigError, match="valid: replay, opencv, picamera2"):
        build_source("cam", type="webcam")


def test_synthetic_source_type(demo: DemoSequence) -> None:
    source = build_source("front", type="synthetic", pacing="fast", person_frames=6, empty_frames=4)
    source.open()
    frames = drain(source)  # type: ignore[arg-type]
    assert len(frames) == len(demo)
    assert np.array_equal(frames[0].image, demo.frames[0])


# -- the shared evaluation clip ---------------------------------------------------------------------------
@pytest.mark.shared
def test_hamilton_clip_replays_275_frames(shared_data: Path) -> None:
    source = build_source("stage", type="replay", path=str(shared_data / "video" / "short_hamilton_clip.mp4"),
                          pacing="fast")
    source.open()
    frames = drain(source)  # type: ignore[arg-type]
    assert len(frames) == 275
    assert {f.image.shape for f in frames} == {(360, 640, 3)}
    assert source.nominal_fps == pytest.approx(29.97, abs=0.01)
