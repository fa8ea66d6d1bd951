"""The families an installed facegate lacks until ``facegate models build`` (mtcnn, mediapipe_full,
facemesh): every place that asks for one says which model is missing and the command that builds it, a
configuration naming one is refused before it runs (daemon start, check-config, doctor, remote patch,
SIGHUP), and the benches leave it out.

The installed models directory is simulated from the checkout's: the bundled directory is replaced by
one holding the files the wheel ships (``pyproject.toml``'s exclude list, which tests/test_footprint.py
ties to :data:`~facegate.inference.reference_models.ON_DEMAND_MODELS`); tests/test_footprint.py runs
the same commands against a real installed wheel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facegate.cli import main
from facegate.commands.doctor import variant_rows
from facegate.config.models import FacegateConfig
from facegate.errors import ModelNotInstalledError
from facegate.inference import manifest
from facegate.inference.manifest import ModelZoo
from facegate.inference.reference_models import ON_DEMAND_FAMILIES, ON_DEMAND_MODELS
from facegate.model_check import missing_models
from tests.conftest import REPO_ROOT, SAMPLES_DIR
from tests.fixtures.images import read_bgr

BUILD = {"mtcnn": "facegate models build --only mtcnn", "mediapipe_full": "facegate models build --only blazeface",
         "facemesh": "facegate models build --only facemesh"}


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelZoo]:
    """The default zoo as an installed wheel has it, and an empty user models directory."""
    models = tmp_path / "installed-models"
    models.mkdir()
    left_out = {ref.name for ref in ON_DEMAND_MODELS}
    for path in (REPO_ROOT / "models").iterdir():
        if path.is_file() and path.name.split(".")[0] not in left_out:
            (models / path.name).symlink_to(path)
    monkeypatch.setattr(manifest, "bundled_models_dir", lambda: models)
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(tmp_path / "user-models"))
    manifest.default_zoo.cache_clear()
    yield manifest.default_zoo()
    manifest.default_zoo.cache_clear()  # before monkeypatch restores the checkout's directory


def _config(tmp_path: Path, **sections: Any) -> FacegateConfig:
    return FacegateConfig.model_validate({"state_dir": str(tmp_path), "mqtt": {"enabled": False}, **sections})


def test_the_on_demand_families_are_what_no_default_uses() -> None:
    defaults = FacegateConfig()
    assert defaults.detector.backend == "mediapipe" and defaults.liveness.mode == "off"
    assert {ref.family for ref in ON_DEMAND_FAMILIES if not ref.part_of} == set(BUILD)
    # each is its family's default variant in the checkout: the whole family is missing when installed
    zoo = ModelZoo((REPO_ROOT / "models",))
    for ref in ON_DEMAND_FAMILIES:
        assert zoo.get(ref.name).default and zoo.get(ref.name).family == ref.family


def test_each_missing_family_names_its_models_and_the_build_command(installed: ModelZoo) -> None:
    from facegate.analysis.liveness import LivenessChecker, LivenessSettings
    from facegate.detectors.registry import build_detector
    from facegate.landmarks.registry import build_landmarker

    with pytest.raises(ModelNotInstalledError, match=r"no detector model 'mtcnn' is installed: mtcnn_pnet_fp16, "
                       r"mtcnn_rnet_fp16, mtcnn_onet_fp16 \(1\.01 MB\), for the 'mtcnn' detector, are not default "
                       r"models.*facegate models build --only mtcnn"):
        build_detector("mtcnn")
    with pytest.raises(ModelNotInstalledError, match=r"blazeface_full_fp16 \(1\.08 MB\), for the 'mediapipe_full' "
                       r"detector .*facegate models build --only blazeface"):
        build_detector("mediapipe_full")
    with pytest.raises(ModelNotInstalledError, match=r"int8.*blazeface_full_int8.*--only blazeface"):
        build_detector("mediapipe_full", variant="int8")
    with pytest.raises(ModelNotInstalledError, match=r"facemesh_fp16 \(1\.25 MB\).*--only facemesh"):
        build_landmarker("facemesh")
    with pytest.raises(ModelNotInstalledError, match=r"--only facemesh"):
        LivenessChecker(LivenessSettings(mode="blink"))
    with pytest.raises(ModelNotInstalledError, match=r"no model manifest named 'mtcnn_onet_fp16': .*--only mtcnn"):
        installed.get("mtcnn_onet_fp16")
    # the defaults are all there
    assert len(build_detector().detect(read_bgr(SAMPLES_DIR / "obama.jpg"))) == 1
    assert build_landmarker("auto").name == "shape_predictor"
    assert len(build_detector("dlib").detect(read_bgr(SAMPLES_DIR / "obama.jpg"))) == 1


def test_doctor_lists_the_missing_families_as_buildable(installed: ModelZoo) -> None:
    rows = {row[1]: row for row in variant_rows(installed)}
    for family, command in BUILD.items():
        kind = "landmarks" if family == "facemesh" else "detector"
        status, _, detail = rows[f"variants {kind} {family}"]
        assert status == "OK" and detail.startswith("not installed, buildable: ") and command in detail
    assert not [k for k in rows if "mtcnn_rnet" in k or "mtcnn_onet" in k]  # part of the mtcnn row
    built = {row[1]: row[2] for row in variant_rows(ModelZoo((REPO_ROOT / "models",)))}
    assert built["variants detector mtcnn"] == "installed: fp16 (default), fp32"


def test_a_configuration_naming_a_missing_family_is_refused_with_the_build_command(
    installed: ModelZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, detector={"backend": "mtcnn"}, liveness={"mode": "blink"})
    missing = missing_models(config)
    assert [m.loc for m in missing] == ["detector.backend", "liveness.mode"]
    assert BUILD["mtcnn"] in missing[0].msg and BUILD["facemesh"] in missing[1].msg
    assert missing_models(_config(tmp_path)) == []  # the defaults
    assert missing_models(_config(tmp_path, detector={"backend": "dlib"})) == []
    variant = missing_models(_config(tmp_path, detector={"backend": "mediapipe", "variant": "int8"}))
    assert [m.loc for m in variant] == ["detector.variant"] and "--only blazeface" in variant[0].msg
    assert missing_models(config, ModelZoo((REPO_ROOT / "models",))) == []  # once built, nothing is missing

    file = tmp_path / "facegate.yaml"
    file.write_text(f"state_dir: {tmp_path}\nmqtt: {{enabled: false}}\ndetector: {{backend: mediapipe_full}}\n")
    assert main(["check-config", "--no-overlay", str(file)]) == 2
    err = capsys.readouterr().err
    assert f"{file}: detector.backend: no detector model 'mediapipe_full' is installed" in err
    assert BUILD["mediapipe_full"] in err
    # a file meant for another machine: a warning
    assert main(["check-config", "--no-overlay", "--no-secrets", "--json", str(file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert any("mediapipe_full" in w and w.endswith("(on this machine)") for w in report["warnings"])
    # the daemon refuses it at start, before a camera or the broker is touched
    assert main(["run", "--no-overlay", "-c", str(file)]) == 4
    assert BUILD["mediapipe_full"] in capsys.readouterr().err


def test_a_remote_patch_naming_a_missing_family_is_refused_and_not_stored(installed: ModelZoo, tmp_path: Path) -> None:
    from facegate.config import ConfigValidationError, RuntimeConfig

    file = tmp_path / "facegate.yaml"
    file.write_text(f"state_dir: {tmp_path}\nmqtt: {{enabled: false}}\n")
    runtime = RuntimeConfig.open(file)
    for patch, loc, command in (({"detector": {"backend": "mtcnn"}}, "detector.backend", BUILD["mtcnn"]),
                                ({"liveness": {"mode": "motion"}}, "liveness.mode", BUILD["facemesh"])):
        with pytest.raises(ConfigValidationError) as caught:
            runtime.apply(patch)
        (error,) = caught.value.errors
        assert error.loc == loc and error.type == "model_not_installed" and command in error.msg
    assert runtime.config.detector.backend == "mediapipe" and runtime.config.liveness.mode == "off"
    assert not runtime.overrides
    applied = runtime.apply({"detector": {"backend": "dlib"}})  # an installed one still applies
    assert applied.config.detector.backend == "dlib" and "detector" in applied.rebuild


def test_a_running_daemon_keeps_its_models_when_a_reload_names_a_missing_family(
    installed: ModelZoo, tmp_path: Path
) -> None:
    from facegate.service import Service

    file = tmp_path / "facegate.yaml"
    file.write_text(f"state_dir: {tmp_path}\nmqtt: {{enabled: false}}\n")
    service = Service(_config(tmp_path), config_path=file)
    try:
        detector = service.engine.detector
        with pytest.raises(ModelNotInstalledError, match=r"--only mtcnn"):
            service.apply_config(_config(tmp_path, detector={"backend": "mtcnn"}), frozenset({"detector"}))
        file.write_text(f"state_dir: {tmp_path}\nmqtt: {{enabled: false}}\nliveness: {{mode: blink}}\n")
        service.reload()  # SIGHUP: logged, not raised out of the frame loop
        assert service.config.detector.backend == "mediapipe" and service.config.liveness.mode == "off"
        assert service.engine.detector is detector
    finally:
        service.gallery.close()


def test_the_benches_leave_out_what_is_not_installed(installed: ModelZoo) -> None:
    from facegate.bench.alignment import bench_alignment
    from facegate.bench.analysis import bench_analysis
    from facegate.bench.detectors import bench_detectors

    rows = bench_detectors(("mediapipe", "mtcnn", "mediapipe_full"), threads=(1,), runs=1, warmup=0)
    assert [(r.detector, r.variant) for r in rows] == [("mediapipe", "fp16")]
    landmarks = {r.method for r in bench_alignment(threads=(1,), repeat=1) if r.stage == "landmarks"}
    assert landmarks == {"shape_predictor"}
    items = {r.item for r in bench_analysis(repeat=1)}
    assert "emotion+age+gender" in items and not [i for i in items if "liveness" in i]
