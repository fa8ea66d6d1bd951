"""CLI rough edges, through the real ``facegate`` process or ``main()`` on real files: one error line per
failure naming the file, no traceback, documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facegate.cli import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_USAGE, main


def facegate(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facegate", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def unusable_state_dir_config(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory's parent should be")
    config = tmp_path / "facegate.yaml"
    config.write_text(f"state_dir: {blocker / 'state'}\nmqtt: {{enabled: false}}\n")
    return config


def test_unusable_state_dir_is_a_config_error_in_check_config_and_run(unusable_state_dir_config: Path) -> None:
    checked = facegate("check-config", str(unusable_state_dir_config))
    assert checked.returncode == EXIT_USAGE
    assert "state_dir" in checked.stderr and "not-a-dir is not a directory" in checked.stderr
    ran = facegate("run", "--config", str(unusable_state_dir_config))
    assert ran.returncode == EXIT_USAGE
    line = one_error_line(ran.stderr)
    assert line.startswith("facegate: error: state_dir ") and "not a directory" in line
    # a file meant for another machine is still checkable
    portable = facegate("check-config", "--no-secrets", str(unusable_state_dir_config))
    assert portable.returncode == 0 and "warning: state_dir" in portable.stdout


def test_check_config_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``facegate check-config FILE | head -1``: the reader leaves early; no BrokenPipeError traceback."""
    config = tmp_path / "facegate.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nmqtt: {{enabled: false}}\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "facegate", "check-config", str(config)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert proc.stderr == "", proc.stderr


def test_gallery_import_of_garbage_names_the_file_once(tmp_path: Path) -> None:
    garbage = tmp_path / "backup.json"
    garbage.write_text("this is not JSON")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": 1}))
    for path, problem in ((garbage, "Invalid JSON"), (wrong, "format:")):
        proc = facegate("gallery", "--gallery", str(tmp_path / "g.sqlite3"), "import", str(path))
        assert proc.returncode == EXIT_BAD_INPUT
        line = one_error_line(proc.stderr)
        assert line.startswith(f"facegate: error: {path}: not a valid facegate gallery export")
        assert problem in line
        assert "pydantic" not in line and "validation error" not in line and "input_value" not in line


def test_enroll_from_an_empty_folder_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "alice-photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    proc = facegate("enroll", "Alice", str(empty), "--gallery", str(tmp_path / "g.sqlite3"))
    assert proc.returncode == EXIT_USAGE
    line = one_error_line(proc.stderr)
    assert str(empty) in line and "no image files" in line


def test_repeating_an_enrolment_reports_already_enrolled(
    tmp_path: Path, samples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "g.sqlite3")
    photos = [str(samples_dir / "obama.jpg"), str(samples_dir / "obama2.jpg")]
    assert main(["enroll", "Barack Obama", *photos, "--gallery", db]) == 0
    first = capsys.readouterr().out
    assert "2 of 2 photo(s) stored" in first
    assert main(["enroll", "Barack Obama", *photos, "--gallery", db]) == 0
    again = capsys.readouterr().out
    assert "already enrolled" in again
    assert main(["enroll", "Barack Obama", *photos, "--gallery", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["already_enrolled"] is True and {p["status"] for p in report["photos"]} == {"duplicate"}
