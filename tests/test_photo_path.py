"""The photo path: the edge-padded second detector pass runs only where it can add a face; the bench's modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.bench.photo import bench_photo, photos_in
from facegate.detectors.edge_pad import EdgePaddedDetector, touches_border
from facegate.detectors.registry import build_detector
from facegate.images import load_image
from facegate.types import ImageBGR


@pytest.fixture(scope="module")
def detectors() -> tuple[EdgePaddedDetector, EdgePaddedDetector]:
    inner = build_detector("mediapipe")
    return EdgePaddedDetector(inner, 0.2), EdgePaddedDetector(inner, 0.2, always=True)


def _boxes(dets: list) -> list[tuple[float, ...]]:  # type: ignore[type-arg]
    return [(d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in dets]


def test_no_second_pass_when_every_face_is_inside(detectors: tuple[EdgePaddedDetector, EdgePaddedDetector],
                                                  samples_dir: Path) -> None:
    skip, always = detectors
    image = load_image(samples_dir / "obama.jpg")
    found = skip.detect(image)
    assert len(found) == 1 and skip.padded_passes == 0
    assert _boxes(found) == _boxes(always.detect(image)) and always.padded_passes == 1


def test_second_pass_runs_for_a_face_at_the_border_and_for_no_face(
        detectors: tuple[EdgePaddedDetector, EdgePaddedDetector], samples_dir: Path, coffee_bgr: ImageBGR) -> None:
    skip, _ = detectors
    image = load_image(samples_dir / "obama.jpg")
    face = skip.detect(image)[0].box
    cut: ImageBGR = np.ascontiguousarray(image[:, int(face.x1 + 0.45 * face.width):])  # the face cut in half
    before = skip.padded_passes
    found = skip.detect(cut)
    assert len(found) == 1 and touches_border(found, cut.shape[1], cut.shape[0])
    assert skip.padded_passes == before + 1
    assert skip.detect(coffee_bgr) == [] and skip.padded_passes == before + 2


def test_needs_padded_pass_is_what_detect_decides(detectors: tuple[EdgePaddedDetector, EdgePaddedDetector],
                                                  samples_dir: Path, coffee_bgr: ImageBGR) -> None:
    skip, always = detectors
    image = load_image(samples_dir / "obama.jpg")
    face = skip.detect(image)[0].box
    cut: ImageBGR = np.ascontiguousarray(image[:, int(face.x1 + 0.45 * face.width):])
    for picture in (image, cut, coffee_bgr):
        plain = skip.inner.detect(picture)
        for detector in (skip, always):
            before = detector.padded_passes
            detector.detect(picture)
            assert detector.needs_padded_pass(plain, picture.shape) == (detector.padded_passes == before + 1)
    # a wider margin asks for the pass sooner (the orientation screen uses twice the default)
    inside = skip.inner.detect(image)
    w = image.shape[1]
    assert not skip.needs_padded_pass(inside, image.shape)
    assert skip.needs_padded_pass(inside, image.shape, margin=inside[0].box.x1 / w + 0.01)


def test_touches_border_uses_the_margin(samples_dir: Path,
                                        detectors: tuple[EdgePaddedDetector, EdgePaddedDetector]) -> None:
    image = load_image(samples_dir / "obama.jpg")
    found = detectors[0].detect(image)
    h, w = image.shape[:2]
    assert not touches_border(found, w, h)
    assert touches_border(found, w, h, margin=found[0].box.x1 / w + 0.01)


def test_photo_bench_compares_the_modes_on_real_files(samples_dir: Path) -> None:
    photos = photos_in(samples_dir, min_pixels=100_000)
    assert [p.name for p in photos] == ["biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg"]
    rows, agreements = bench_photo(photos[:2], rounds=1, with_reference=False)
    by_mode = {r.mode: r for r in rows}
    assert set(by_mode) == {"always-pad", "four-pass", "screened"}
    # one padded pass per detector call with the pass always on (every orientation read in full);
    # skipping it where no face touches the border leaves fewer, screening the turned readings fewer still
    always, skipped, screened = (by_mode[m].padded_passes for m in ("always-pad", "four-pass", "screened"))
    assert isinstance(always, int) and isinstance(skipped, int) and isinstance(screened, int)
    assert always >= 8
    assert screened <= skipped < always
    assert by_mode["screened"].vs_default == 1.0
    by_pair = {a.modes: a for a in agreements}
    assert set(by_pair) == {"always-pad vs screened", "four-pass vs screened"}
    for agreement in agreements:
        assert agreement.same_face_count == 2 and agreement.min_cosine == pytest.approx(1.0, abs=1e-6)
    assert by_pair["four-pass vs screened"].identical_embeddings == 2
