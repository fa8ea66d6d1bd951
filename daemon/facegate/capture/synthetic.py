"""A short, deterministic "door camera" sequence built from the bundled public-domain photos.

``facegate demo`` and the end-to-end tests replay it on machines without any camera or test data:
person A appears for a while (small synthetic camera motion: translation, zoom, roll, gain and
sensor noise), the doorway is empty, then person B appears, then it is empty again. The photos are
official White House photographs shipped in ``facegate/samples`` (see ``ATTRIBUTION.md``).

Everything is seeded, so the same arguments give bit-identical frames on one machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facegate.capture.replay import Pacing, ReplaySource
from facegate.errors import ImageError
from facegate.images import load_image
from facegate.types import ImageBGR

if TYPE_CHECKING:
    from facegate.capture.options import SyntheticOptions

logger = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"

#: Face boxes ``(x, y, w, h)`` in the bundled photos (OpenCV's frontal Haar cascade, checked by eye),
#: so building the demo needs no detector. Other photos are located with the Haar cascade.
_KNOWN_FACES: dict[str, tuple[int, int, int, int]] = {
    "obama.jpg": (342, 95, 300, 300),
    "obama2.jpg": (139, 243, 343, 343),
    "obama3.jpg": (630, 255, 331, 331),
    "biden.jpg": (433, 211, 314, 314),
}


@dataclass(frozen=True, slots=True)
class DemoSequence:
    """Frames (BGR uint8 ``(H, W, 3)``) and, per frame, the stem of the photo shown (``None`` = empty)."""

    frames: tuple[ImageBGR, ...]
    labels: tuple[str | None, ...]
    fps: float

    def __len__(self) -> int:
        return len(self.frames)

    def segments(self) -> list[tuple[str | None, int, int]]:
        """``(label, first, last_exclusive)`` runs of equal labels, in order."""
        runs: list[tuple[str | None, int, int]] = []
        start = 0
        for i in range(1, len(self.labels) + 1):
            if i == len(self.labels) or self.labels[i] != self.labels[start]:
                runs.append((self.labels[start], start, i))
                start = i
        return runs


def sample_path(name: str | Path) -> Path:
    """A bundled sample by file name, or any existing path unchanged."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = SAMPLES_DIR / path.name
    if candidate.is_file():
        return candidate
    raise ImageError(f"{name}: not a file and not a bundled sample in {SAMPLES_DIR}")


def _face_box(path: Path, image: ImageBGR) -> tuple[int, int, int, int]:
    known = _KNOWN_FACES.get(path.name)
    if known is not None and path.parent == SAMPLES_DIR:
        return known
    cascade = cv2.CascadeClassifier(str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml"))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    side = max(24, min(gray.shape) // 10)
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(boxes) == 0:
        raise ImageError(f"{path}: no face found to centre the synthetic camera on")
    x, y, w, h = max((tuple(int(v) for v in b) for b in boxes), key=lambda b: b[2] * b[3])
    return x, y, w, h


def background(size: tuple[int, int], rng: np.random.Generator) -> ImageBGR:
    """A plain hallway: wall gradient, a door frame, a floor and fixed texture; no faces. ``size`` is (W, H)."""
    width, height = size
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    wall = np.empty((height, width, 3), dtype=np.float32)
    for channel, (top, bottom) in enumerate(((178.0, 150.0), (196.0, 170.0), (205.0, 186.0))):
        wall[:, :, channel] = top + (bottom - top) * rows
    floor_y = int(height * 0.82)
    wall[floor_y:, :, :] = (70.0, 90.0, 110.0)
    left, right = int(width * 0.30), int(width * 0.70)
    cv2.rectangle(wall, (left, int(height * 0.06)), (right, floor_y), (60.0, 75.0, 95.0), thickness=10)
    cv2.rectangle(wall, (int(width * 0.05), int(height * 0.25)), (int(width * 0.18), int(height * 0.5)),
                  (120.0, 140.0, 160.0), thickness=-1)
    texture = cv2.GaussianBlur(rng.normal(0.0, 6.0, (height, width)).astype(np.float32), (0, 0), 1.5)[:, :, None]
    return np.asarray(np.clip(wall + texture, 0, 255), dtype=np.uint8)


def _motion(rng: np.random.Generator, count: int) -> np.ndarray:
    """Smooth camera shake per frame: columns dx, dy (pixels), zoom (factor), roll (degrees), gain."""
    t = np.arange(count, dtype=np.float64)
    amplitudes = np.array([10.0, 5.0, 0.04, 2.5, 0.05])
    periods = rng.uniform(8.0, 20.0, size=5)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=5)
    wave = np.sin(2.0 * np.pi * t[:, None] / periods[None, :] + phases[None, :])
    jitter = rng.normal(0.0, 0.15, size=(count, 5))
    motion = amplitudes[None, :] * (wave + jitter)
    motion[:, 2] += 1.0
    motion[:, 4] += 1.0
    return motion


class _SensorNoise:
    """Gaussian noise per frame, cut at random offsets from one larger field (fresh normals per frame are slow)."""

    _MARGIN = 64

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], sigma: float) -> None:
        width, height = size
        self._rng = rng
        self._size = size
        self._field = rng.standard_normal((height + self._MARGIN, width + self._MARGIN, 3), dtype=np.float32)
        self._field *= sigma

    def apply(self, image: ImageBGR, gain: float) -> ImageBGR:
        width, height = self._size
        oy, ox = (int(v) for v in self._rng.integers(0, self._MARGIN, size=2))
        noisy = image.astype(np.float32)
        noisy *= gain
        noisy += self._field[oy : oy + height, ox : ox + width]
        np.clip(noisy, 0, 255, out=noisy)
        return np.asarray(noisy, dtype=np.uint8)


def iter_demo_frames(
    people: Sequence[str | Path] = ("obama.jpg", "biden.jpg"),
    *,
    size: tuple[int, int] = (640, 360),
    person_frames: int = 15,
    empty_frames: int = 8,
    face_height: float = 0.42,
    noise: float = 3.0,
    seed: int = 0,
) -> Iterator[tuple[ImageBGR, str | None]]:
    """The frames of :func:`demo_frames` one at a time, each with its label (the person's photo stem or
    None), so a caller writing them to disk never holds the sequence (46 frames of 640x360: 32 MB)."""
    if person_frames < 1 or empty_frames < 0 or not people:
        raise ValueError("need at least one person and one frame per person")
    rng = np.random.default_rng(seed)
    width, height = size
    wall = background(size, rng)
    sensor = _SensorNoise(rng, size, noise)
    for person in people:
        path = sample_path(person)
        photo = load_image(path)
        fx, fy, fw, fh = _face_box(path, photo)
        # Shrink once with area averaging (warpAffine has no anti-aliasing), then move with small warps.
        scale = face_height * height / fh
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        photo = np.asarray(cv2.resize(photo, None, fx=scale, fy=scale, interpolation=interpolation), dtype=np.uint8)
        face_centre = ((fx + fw / 2.0) * scale, (fy + fh / 2.0) * scale)
        for dx, dy, zoom, roll, gain in _motion(rng, person_frames):
            matrix = cv2.getRotationMatrix2D(face_centre, float(roll), float(zoom))
            matrix[0, 2] += width / 2.0 + dx - face_centre[0]
            matrix[1, 2] += height * 0.42 + dy - face_centre[1]
            # BORDER_TRANSPARENT composites the photo over the hallway where the photo ends.
            canvas = wall.copy()
            cv2.warpAffine(photo, matrix, (width, height), dst=canvas, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_TRANSPARENT)
            yield sensor.apply(canvas, float(gain)), path.stem
        for dx, dy, zoom, roll, gain in _motion(rng, empty_frames):
            matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), float(roll) * 0.3, float(zoom))
            matrix[0, 2] += dx
            matrix[1, 2] += dy
            shaken = np.asarray(cv2.warpAffine(wall, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REFLECT), dtype=np.uint8)
            yield sensor.apply(shaken, float(gain)), None


def demo_frames(
    people: Sequence[str | Path] = ("obama.jpg", "biden.jpg"),
    *,
    size: tuple[int, int] = (640, 360),
    person_frames: int = 15,
    empty_frames: int = 8,
    face_height: float = 0.42,
    noise: float = 3.0,
    fps: float = 10.0,
    seed: int = 0,
) -> DemoSequence:
    """Each person in ``people`` for ``person_frames`` frames, each followed by ``empty_frames`` empty ones.

    ``size`` is ``(W, H)``; faces are about ``face_height * H`` pixels tall, near the frame centre.
    """
    pairs = list(iter_demo_frames(people, size=size, person_frames=person_frames, empty_frames=empty_frames,
                                  face_height=face_height, noise=noise, seed=seed))
    logger.debug("built %d demo frames of %dx%d from %s", len(pairs), size[0], size[1], list(people))
    return DemoSequence(frames=tuple(f for f, _ in pairs), labels=tuple(label for _, label in pairs), fps=fps)


def demo_source(
    camera: str = "demo",
    *,
    pacing: Pacing = "realtime",
    loop: bool = False,
    people: Sequence[str] = ("obama.jpg", "biden.jpg"),
    person_frames: int = 15,
    empty_frames: int = 8,
    fps: float = 10.0,
    seed: int = 0,
) -> ReplaySource:
    """A :class:`ReplaySource` over :func:`demo_frames` (registered as source type ``synthetic``)."""
    sequence = demo_frames(people, person_frames=person_frames, empty_frames=empty_frames, fps=fps, seed=seed)
    return ReplaySource(camera, frames=sequence.frames, pacing=pacing, fps=fps, loop=loop)


def build(camera: str, options: SyntheticOptions) -> ReplaySource:
    """The registry's factory (source type ``synthetic``): :func:`demo_source` from validated options."""
    return demo_source(camera, pacing=options.pacing, loop=options.loop, people=options.people,
                       person_frames=options.person_frames, empty_frames=options.empty_frames, fps=options.fps,
                       seed=options.seed)


def write_video(frames: Sequence[ImageBGR], path: str | Path, *, fps: float = 10.0, fourcc: str = "MJPG") -> Path:
    """Encode BGR frames of one size into a video file (``MJPG`` in ``.avi`` or ``mp4v`` in ``.mp4``)."""
    out = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise ImageError(f"{out}: OpenCV cannot write {fourcc} video here")
    try:
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} in a {width}x{height} video")
            writer.write(frame)
    finally:
        writer.release()
    return out


def write_image_folder(frames: Iterable[ImageBGR], folder: str | Path, *, suffix: str = ".png") -> list[Path]:
    """Write frames as ``frame_00000<suffix>`` ... into ``folder`` (created); returns the paths in order."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i, frame in enumerate(frames):
        target = out / f"frame_{i:05d}{suffix}"
        if not cv2.imwrite(str(target), frame):
            raise ImageError(f"{target}: OpenCV cannot write this image type")
        paths.append(target)
    return paths


__all__ = [
    "SAMPLES_DIR",
    "DemoSequence",
    "background",
    "build",
    "demo_frames",
    "demo_source",
    "iter_demo_frames",
    "sample_path",
    "write_image_folder",
    "write_video",
]
