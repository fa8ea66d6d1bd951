"""The detector comparison (``facegate evaluate --detection``): CSV parsing, scoring arithmetic, and
runs on real images (package samples, skimage images; the shared evaluation set when present)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.errors import ConfigError
from facegate.evaluation.detection import (
    DetectionCase,
    read_cases,
    run_detection_command,
    score_counts,
    table_rows,
)
from facegate.types import ImageBGR


def _csv(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    lines = ["file,faces,notes,source"] + [f'{f},{n},"{notes}",test' for f, n, notes in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_cases_parses_tags(tmp_path: Path) -> None:
    path = _csv(tmp_path / "d.csv", [("a.jpg", 2, "tags=group,partial; two people"), ("b.png", 0, "tags=negative"),
                                     ("c.jpg", 1, "no tags here")])
    cases = read_cases(path)
    assert cases[0] == DetectionCase("a.jpg", 2, frozenset({"group", "partial"}))
    assert cases[1].tags == frozenset({"negative"}) and cases[2].tags == frozenset()


def test_read_cases_rejects_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("file,faces\na.jpg,many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.csv:2"):
        read_cases(path)


def test_score_counts_arithmetic() -> None:
    cases = [
        DetectionCase("one.jpg", 1, frozenset({"single"})),
        DetectionCase("group.jpg", 4, frozenset({"group", "small"})),
        DetectionCase("rot.jpg", 1, frozenset({"rotated"})),
        DetectionCase("crowd.jpg", 239, frozenset({"crowd", "small"})),
        DetectionCase("dog.jpg", 0, frozenset({"negative"})),
        DetectionCase("noise.jpg", 0, frozenset({"negative"})),
    ]
    found = {"one.jpg": 1, "group.jpg": 6, "rot.jpg": 0, "crowd.jpg": 100, "dog.jpg": 2, "noise.jpg": 0}
    s = score_counts("x", cases, found, 12.5)
    assert s.exact_count == pytest.approx(1 / 3)  # one.jpg only; the crowd is not an exact count
    assert (s.faces_found, s.faces_expected) == (1 + 4 + 0 + 100, 1 + 4 + 1 + 239)  # 6 found in a 4-group count 4
    assert (s.false_positives, s.negatives) == (2, 2)
    assert s.recall_rotated == 0.0
    assert s.recall_small == pytest.approx((4 + 100) / (4 + 239))
    assert math.isnan(s.recall_partial)
    assert table_rows([s])[0][6] == "-"


def _write_images(folder: Path, astronaut: ImageBGR, coffee: ImageBGR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "astronaut.png"), astronaut)
    cv2.imwrite(str(folder / "coffee.png"), coffee)
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    cv2.imwrite(str(folder / "two.png"), two)
    cv2.imwrite(str(folder / "rotated.png"), cv2.rotate(astronaut, cv2.ROTATE_90_CLOCKWISE))


@pytest.mark.slow
def test_command_on_real_images(tmp_path: Path, astronaut_bgr: ImageBGR, coffee_bgr: ImageBGR,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _write_images(tmp_path / "detection", astronaut_bgr, coffee_bgr)
    csv_path = _csv(tmp_path / "detection.csv", [
        ("astronaut.png", 1, "tags=single"), ("two.png", 2, "tags=group"), ("rotated.png", 1, "tags=rotated"),
        ("coffee.png", 0, "tags=negative"),
    ])
    args = argparse.Namespace(detection=str(csv_path), detectors="opencv,mtcnn", json=True, threads=1, root=None)
    assert run_detection_command(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["detector"]: r for r in report["results"]}
    assert set(rows) == {"opencv", "mtcnn"}
    for row in rows.values():
        assert row["images"] == 4 and row["failed"] == 0
        assert row["false_positives"] == 0 and row["negatives"] == 1
        assert row["faces_found"] >= 3  # the upright astronauts
        assert row["median_ms_640x480"] > 0
    assert rows["opencv"]["recall_rotated"] == 0.0  # a frontal cascade does not see a face on its side

    args.json = False
    assert run_detection_command(args) == 0
    text = capsys.readouterr().out
    assert "exact count" in text and "opencv" in text and "mtcnn" in text


def test_unknown_detector_and_missing_csv(tmp_path: Path) -> None:
    args = argparse.Namespace(detection=str(tmp_path / "none.csv"), detectors="all", json=True, threads=1, root=None)
    with pytest.raises(ConfigError, match="no such file"):
        run_detection_command(args)
    _csv(tmp_path / "d.csv", [("x.png", 0, "")])
    args = argparse.Namespace(detection=str(tmp_path / "d.csv"), detectors="nope", json=True, threads=1, root=None)
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        run_detection_command(args)


@pytest.mark.slow
@pytest.mark.shared
def test_shared_detection_set_subset(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few labelled images of the evaluation set, read in place (never copied)."""
    wanted = {"deepface_couple.jpg", "fr_two_people.jpg", "dlib_dogs.jpg", "skimage_coffee.png", "fr_obama.jpg"}
    source = (shared_data / "detection.csv").read_text(encoding="utf-8").splitlines()
    subset = [source[0]] + [line for line in source[1:] if line.split(",")[0] in wanted]
    csv_path = tmp_path / "subset.csv"
    csv_path.write_text("\n".join(subset) + "\n", encoding="utf-8")
    args = argparse.Namespace(detection=str(csv_path), detectors="mediapipe,opencv", json=True, threads=1,
                              root=str(shared_data / "detection"))
    assert run_detection_command(args) == 0
    rows = {r["detector"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    for row in rows.values():
        assert row["images"] == len(wanted) and row["failed"] == 0
        assert row["faces_expected"] == 2 + 2 + 1
        assert row["faces_found"] >= 4
