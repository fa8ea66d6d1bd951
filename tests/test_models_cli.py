"""``facegate models verify / list / build`` through the real CLI entry point."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from facegate.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from facegate.inference.manifest import bundled_models_dir

DLIB_MODELS = ("dlib_resnet_fp32", "dlib_resnet_int8")


def _copy(tmp_path: Path, names: tuple[str, ...] = DLIB_MODELS) -> Path:
    target = tmp_path / "models"
    target.mkdir()
    for name in names:
        for suffix in (".yaml", ".tflite"):
            shutil.copy(bundled_models_dir() / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


def test_verify_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "--dir", str(bundled_models_dir())]) == EXIT_OK
    out = capsys.readouterr().out
    for name in DLIB_MODELS:
        assert f"{name}.yaml" in out
    assert "FAILED" not in out


def test_verify_names_a_corrupted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = _copy(tmp_path)
    model = models / "dlib_resnet_int8.tflite"
    data = bytearray(model.read_bytes())
    data[-1000] ^= 0x01
    model.write_bytes(bytes(data))
    assert main(["models", "verify", "--dir", str(models)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "dlib_resnet_int8.tflite" in captured.err
    assert "corrupted" in captured.err
    assert "dlib_resnet_fp32" not in captured.err  # the intact model is not blamed


def test_verify_names_a_truncated_file_in_the_user_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    models = _copy(tmp_path, ("dlib_resnet_fp32",))
    model = models / "dlib_resnet_fp32.tflite"
    model.write_bytes(model.read_bytes()[:4096])
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(models))
    assert main(["models", "verify"]) == EXIT_BAD_INPUT  # bundled and user directories
    captured = capsys.readouterr()
    assert "dlib_resnet_fp32.tflite" in captured.err and "truncated" in captured.err
    assert str(models / "dlib_resnet_fp32.yaml") in captured.err


def test_verify_rejects_a_broken_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = _copy(tmp_path, ("dlib_resnet_int8",))
    manifest = models / "dlib_resnet_int8.yaml"
    manifest.write_text(manifest.read_text().replace("size_bytes:", "size_bites:"))
    assert main(["models", "verify", "--dir", str(models), "--json"]) == EXIT_BAD_INPUT
    report = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in report] == [False]
    assert "dlib_resnet_int8.yaml" in report[0]["detail"]


def test_verify_missing_dir_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["models", "verify", "--dir", str(tmp_path / "nope")]) == EXIT_USAGE


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--dir", str(bundled_models_dir()), "--json"]) == EXIT_OK
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dlib_resnet_int8"]["default"] is True
    assert rows["dlib_resnet_fp32"]["default"] is False
    assert {rows[n]["model_id"] for n in DLIB_MODELS} == {"dlib_resnet_v1"}
    assert rows["dlib_resnet_int8"]["family"] == "Dlib"


def test_models_without_action_prints_help() -> None:
    assert main(["models"]) == EXIT_USAGE


def test_build_rejects_unknown_converter(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("convert extra not installed")
    assert main(["models", "build", "--only", "no_such_converter", "--out", "/nonexistent"]) == EXIT_USAGE
    assert "dlib_resnet" in capsys.readouterr().err


def test_build_without_convert_extra_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert main(["models", "build", "--out", "/nonexistent"]) == EXIT_USAGE
    assert "facegate[convert]" in capsys.readouterr().err
