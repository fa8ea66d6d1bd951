"""Pictures people read: the ROC plot, labels of ``--draw`` outputs, ``detect``'s exit code on a face-less
image, and the runtime's XNNPACK notice kept off the terminal unless ``--verbose``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.cli import EXIT_NO_FACE, EXIT_OK, main
from facegate.commands.drawing import draw_labelled_box, label_geometry
from facegate.evaluation.roc_plot import _tar_range, roc_plot_png, roc_series
from tests.fixtures.images import read_bgr

XNNPACK_NOTICE = "Created TensorFlow Lite XNNPACK delegate"


def synthetic_pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(400, dtype=bool), np.zeros(600, dtype=bool)]
    distances = np.r_[rng.normal(0.4, 0.08, 400), rng.normal(0.85, 0.08, 600)].astype(np.float64)
    return distances, same


def test_roc_series_operating_point_and_auc() -> None:
    distances, same = synthetic_pairs()
    s = roc_series("euclidean", distances, same, 0.6)
    assert s.point_tar == pytest.approx(float((distances[same] <= 0.6).mean()))
    assert s.point_far == pytest.approx(float((distances[~same] <= 0.6).mean()))
    assert 0.99 < s.auc <= 1.0
    # the TAR axis is zoomed onto what the curve reaches at FAR >= 1e-3 (not pressed against 100 %)
    low, high, step = _tar_range([s], 1e-3)
    assert high == 1.0 and 0.5 < low < 1.0 and step <= 0.1
    assert low <= float(s.tar[s.far >= 1e-3].min())


def test_roc_plot_marks_the_operating_point(tmp_path: Path) -> None:
    distances, same = synthetic_pairs()
    curves = [roc_series("euclidean", distances, same, 0.6), roc_series("cosine", distances ** 2, same, 0.36)]
    out = tmp_path / "roc.png"
    roc_plot_png(curves, out, n_impostor=600, title="ROC test")
    image = read_bgr(out)
    assert image.shape == (620, 900, 3)
    # squared distances rank pairs identically: one curve, one legend row, not two curves on top of each other
    blue = np.all(image == (178, 114, 0), axis=2)
    vermillion = np.all(np.abs(image.astype(int) - (0, 94, 213)) < 8, axis=2)
    assert blue.sum() > 500 and vermillion.sum() < 50


@pytest.mark.parametrize("box", [(0, 0, 120, 90), (500, 0, 640, 100), (600, 380, 640, 480), (-20, -10, 700, 490),
                                 (300, 200, 360, 260)])
def test_labels_stay_inside_the_image(box: tuple[int, int, int, int]) -> None:
    text = "Man 100%, 39 y, happy 94%"
    for thickness in (1, 2):
        (x, y), scale, (band_w, _) = label_geometry(text, box, (640, 480), thickness)
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        assert x >= 0 and x + band_w <= 640, (box, x, band_w)
        assert y - th >= 0 and y + base <= 480, (box, y)


def test_a_label_wider_than_the_image_is_shrunk() -> None:
    canvas = np.zeros((60, 80, 3), dtype=np.uint8)
    draw_labelled_box(canvas, (5, 20, 70, 55), "a label far wider than this tiny image", (0, 200, 255))
    band = np.all(canvas == (0, 200, 255), axis=2)
    assert band[:, 0].any() or band[:, 1].any()  # the band starts at the left edge ...
    assert not band[:, 79].all()  # ... and ends inside the right edge


def test_analyze_draw_keeps_the_label_of_a_face_at_the_top_edge(samples_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    crop = read_bgr(samples_dir / "obama.jpg")[150:460, 200:640]  # the face touches the top edge
    src, out = tmp_path / "edge.jpg", tmp_path / "drawn.png"
    cv2.imwrite(str(src), crop)
    assert main(["analyze", str(src), "--draw", str(out)]) == EXIT_OK
    drawn = read_bgr(out)
    band = np.all(np.abs(drawn.astype(int) - (0, 200, 255)) < 4, axis=2)
    # rows crossed by the filled label band, not by the box's 1-pixel top and bottom lines (y 2 and 269)
    rows = [y for y in np.flatnonzero(band.sum(axis=1) > 60) if band[y - 1:y + 2].sum(axis=1).min() > 60]
    assert len(rows) >= 10, "the label band is drawn whole"
    assert min(rows) > 269 and max(rows) < drawn.shape[0], "no room above the face: the label goes below the box"


def test_detect_without_a_face_exits_no_face(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, dtype=np.uint8))
    assert main(["detect", str(blank)]) == EXIT_NO_FACE
    assert "0 face(s)" in capsys.readouterr().out
    assert main(["detect", str(blank), "--json"]) == EXIT_NO_FACE
    assert '"faces": []' in capsys.readouterr().out


def test_xnnpack_notice_only_with_verbose(samples_dir: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    image = str(samples_dir / "obama.jpg")
    quiet = subprocess.run([sys.executable, "-m", "facegate", "detect", image], capture_output=True, text=True,
                           env=env, timeout=120, check=False)
    assert quiet.returncode == EXIT_OK and "1 face(s)" in quiet.stdout
    assert XNNPACK_NOTICE not in quiet.stderr, quiet.stderr
    verbose = subprocess.run([sys.executable, "-m", "facegate", "-v", "detect", image], capture_output=True,
                             text=True, env=env, timeout=120, check=False)
    assert verbose.returncode == EXIT_OK and XNNPACK_NOTICE in verbose.stderr
