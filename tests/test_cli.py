"""The ``facegate`` command line: outputs, --json and the documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.cli import EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_NO_MATCH, EXIT_OK, EXIT_USAGE, main
from tests.fixtures.images import read_bgr


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_verify_exit_codes_and_json(samples_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, same = run_json(capsys, "verify", str(samples_dir / "obama.jpg"), str(samples_dir / "obama2.jpg"))
    assert code == EXIT_OK and isinstance(same, dict) and same["verified"] is True
    code, other = run_json(capsys, "verify", str(samples_dir / "obama.jpg"), str(samples_dir / "biden.jpg"))
    assert code == EXIT_NO_MATCH and isinstance(other, dict) and other["verified"] is False
    assert main(["verify", str(samples_dir / "obama.jpg"), str(samples_dir / "obama3.jpg")]) == EXIT_OK
    assert "SAME person" in capsys.readouterr().out


def test_no_face_and_bad_input_exit_codes(tmp_path: Path, samples_dir: Path, coffee_bgr: np.ndarray,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), coffee_bgr)
    assert main(["verify", str(coffee), str(samples_dir / "obama.jpg")]) == EXIT_NO_FACE
    assert "no face" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert main(["represent", str(broken)]) == EXIT_BAD_INPUT
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["verify", str(samples_dir / "obama.jpg"), str(samples_dir / "obama.jpg"),
                 "--distance-metric", "cosine", "-m", "NoSuchModel"]) == EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        main(["verify", "only-one-argument"])
    assert exc.value.code == EXIT_USAGE


def test_detect_draws_boxes(tmp_path: Path, samples_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drawn.png"
    code, result = run_json(capsys, "detect", str(samples_dir / "obama.jpg"), "--draw", str(out))
    assert code == EXIT_OK and isinstance(result, dict) and len(result["faces"]) == 1
    face = result["faces"][0]
    assert face["landmarks"]["left_eye"][0] > face["landmarks"]["right_eye"][0]
    drawn = read_bgr(out)
    original = read_bgr(samples_dir / "obama.jpg")
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)


def test_enroll_find_gallery_round_trip(tmp_path: Path, samples_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "g.sqlite3")
    code, enrolled = run_json(capsys, "enroll", "Barack Obama", str(samples_dir / "obama.jpg"),
                              str(samples_dir / "obama3.jpg"), "--gallery", db)
    assert code == EXIT_OK and isinstance(enrolled, dict) and enrolled["stored"] == 2
    assert enrolled["person_id"] == "barack-obama"
    code, found = run_json(capsys, "find", str(samples_dir / "obama2.jpg"), "--gallery", db)
    assert code == EXIT_OK and isinstance(found, list) and found[0]["person_id"] == "barack-obama"
    code, unknown = run_json(capsys, "find", str(samples_dir / "biden.jpg"), "--gallery", db)
    assert code == EXIT_NO_MATCH and isinstance(unknown, list) and unknown[0]["identity"] is None
    code, people = run_json(capsys, "gallery", "--gallery", db, "list")
    assert code == EXIT_OK and [p["person_id"] for p in people] == ["barack-obama"]
    export = tmp_path / "export.json"
    assert main(["gallery", "--gallery", db, "export", str(export)]) == EXIT_OK
    db2 = str(tmp_path / "g2.sqlite3")
    assert main(["gallery", "--gallery", db2, "import", str(export)]) == EXIT_OK
    capsys.readouterr()
    code, found2 = run_json(capsys, "find", str(samples_dir / "obama2.jpg"), "--gallery", db2)
    assert code == EXIT_OK and found2 == found  # identical results from the imported gallery
    assert main(["gallery", "--gallery", db, "rename", "barack-obama", "President Obama"]) == EXIT_OK
    assert main(["gallery", "--gallery", db, "remove", "barack-obama"]) == EXIT_OK
    capsys.readouterr()
    code, people = run_json(capsys, "gallery", "--gallery", db, "list")
    assert people == []


def test_enroll_without_a_face_writes_nothing(tmp_path: Path, coffee_bgr: np.ndarray,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), coffee_bgr)
    db = tmp_path / "g.sqlite3"
    code, result = run_json(capsys, "enroll", "Nobody", str(coffee), "--gallery", str(db))
    assert code == EXIT_NO_FACE and isinstance(result, dict) and result["stored"] == 0
    assert result["photos"][0]["status"] == "no_face"


def test_evaluate_small_pairs_file_with_roc_plot(tmp_path: Path, samples_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        (tmp_path / name).write_bytes((samples_dir / name).read_bytes())
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("img_a,img_b,same,source\nobama.jpg,obama2.jpg,1,t\nobama.jpg,obama3.jpg,1,t\n"
                     "obama.jpg,biden.jpg,0,t\nobama2.jpg,biden.jpg,0,t\n")
    roc = tmp_path / "roc.png"
    code, report = run_json(capsys, "evaluate", str(pairs), "--roc", str(roc))
    assert code == EXIT_OK and isinstance(report, dict)
    row = next(r for r in report["results"] if r["subset"] == "all")
    assert row["pairs"] == 4 and row["accuracy"] == 1.0 and row["auc"] == 1.0
    assert cv2.imread(str(roc)) is not None


def test_models_list_and_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "dlib_resnet_int8" in out and "FAIL" not in out
    assert "variants embedder Dlib" in out and "runtime total" in out and "numpy" in out


def test_demo_command_shows_recognized_and_unknown() -> None:
    proc = subprocess.run([sys.executable, "-m", "facegate", "demo", "--broker", "none"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["type"] for e in events] == ["recognized", "unknown"]
    assert events[0]["name"] == "Barack Obama"


def test_check_config_reports_line_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncameras:\n  - id: hall\n    colour: red\n")
    assert main(["check-config", str(bad)]) == EXIT_USAGE
    assert "bad.yaml:4" in capsys.readouterr().err
    example = Path(__file__).resolve().parent.parent / "config" / "facegate.example.yaml"
    assert main(["check-config", str(example)]) == EXIT_OK
