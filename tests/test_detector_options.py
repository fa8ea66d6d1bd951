"""Detector options typed end to end: one options model per detector plugin is the YAML section, the
library's keywords and what the factory receives; unknown or mistyped options are refused naming the
detector and the option, through the real config loader, the runtime overlay, the CLI and the library."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from facegate import api
from facegate.cli import main
from facegate.config import ConfigValidationError, RuntimeConfig, load_config
from facegate.config.models import UNION_SECTIONS, FacegateConfig
from facegate.detectors.blazeface import BlazeFaceDetector
from facegate.detectors.options import (
    DETECTOR_TYPES,
    BlazeFaceFullOptions,
    BlazeFaceOptions,
    DetectorOptions,
    MtcnnOptions,
)
from facegate.detectors.registry import DETECTORS, build_detector, create_detector, detector_options
from facegate.engine import FaceEngine
from facegate.errors import ConfigError
from facegate.types import ImageBGR
from tests.test_blazeface import two_faces


def write_config(tmp_path: Path, detector: str) -> Path:
    file = tmp_path / "facegate.yaml"
    file.write_text(f"state_dir: {tmp_path / 'state'}\ndetector:\n" + textwrap.indent(textwrap.dedent(detector), "  "))
    return file


def load_errors(file: Path) -> dict[str, str]:
    with pytest.raises(ConfigValidationError) as info:
        load_config(file, overlay=False)
    return {e.loc: str(e) for e in info.value.errors}


def test_one_list_of_detector_plugins_feeds_the_registry_and_the_config_union() -> None:
    assert list(DETECTOR_TYPES) == DETECTORS.names()
    assert UNION_SECTIONS[(FacegateConfig, "detector")].members == DETECTOR_TYPES
    for key, model in DETECTOR_TYPES.items():
        assert model.model_validate({}).backend == key  # each model carries its key as its default
        assert ":" in model.implementation


def test_the_yaml_section_is_the_detectors_typed_options(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "backend: MTCNN\npyramid_min_face: 20\nmax_faces: 2\n"), overlay=False)
    assert isinstance(config.detector, MtcnnOptions)
    assert (config.detector.backend, config.detector.pyramid_min_face, config.detector.max_faces) == ("mtcnn", 20, 2)
    default = load_config(write_config(tmp_path, "num_threads: 1\n"), overlay=False).detector
    assert isinstance(default, BlazeFaceOptions) and default.num_threads == 1
    # unset options are the detector's own defaults (the manifest's threshold), not a second default here
    assert default.score_threshold is None and default.min_face_px == 0.0


def test_config_loader_names_the_detector_and_the_option(tmp_path: Path) -> None:
    errors = load_errors(write_config(tmp_path, "backend: mediapipe\npyramid_min_face: 20\n"))
    assert errors["detector.pyramid_min_face"].endswith(
        "facegate.yaml:4:3: detector.pyramid_min_face: unknown key: not an option of detector 'mediapipe'"
    )
    errors = load_errors(write_config(tmp_path, "backend: mtcnn\nscore_threshold: high\n"))
    message = errors["detector.score_threshold"]
    assert ":4:3: detector.score_threshold: detector 'mtcnn':" in message and "valid number" in message
    errors = load_errors(write_config(tmp_path, "backend: opencv\nmin_neighbors: -1\n"))
    assert "detector 'opencv': Input should be greater than or equal to 0" in errors["detector.min_neighbors"]
    errors = load_errors(write_config(tmp_path, "backend: nosuch\n"))
    assert "unknown backend 'nosuch'; expected one of 'mediapipe'" in errors["detector.backend"]


def test_check_config_reports_a_detector_option_of_another_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_config(tmp_path, "backend: dlib\ndetect_eyes: false\n")
    assert main(["check-config", str(file)]) == 2
    assert f"{file}:4:3: detector.detect_eyes: unknown key: not an option of detector 'dlib'" in capsys.readouterr().err


def test_library_names_the_detector_and_the_option() -> None:
    with pytest.raises(ConfigError) as unknown:
        build_detector("mediapipe", pyramid_min_face=20)
    assert "detector 'mediapipe'" in str(unknown.value) and "'pyramid_min_face' is not an option" in str(unknown.value)
    with pytest.raises(ConfigError, match=r"detector 'mtcnn': invalid options: 'score_threshold': Input should be"):
        build_detector("mtcnn", score_threshold="high")
    with pytest.raises(ConfigError, match=r"unknown detector 'nosuch'; valid: mediapipe"):
        api.represent(np_image(), detector_backend="nosuch")
    assert detector_options("MediaPipe_Full", {"max_faces": 1}) == BlazeFaceFullOptions(max_faces=1)


def np_image() -> ImageBGR:
    import numpy as np

    return np.zeros((64, 64, 3), dtype=np.uint8)


def test_validated_options_reach_the_detector(samples_dir: Path, tmp_path: Path) -> None:
    """The daemon hands its validated section to the engine as is: the option is applied by the detector."""
    image = two_faces(samples_dir)
    config = load_config(write_config(tmp_path, "backend: mediapipe_full\nmax_faces: 1\n"), overlay=False)
    engine = FaceEngine(config.detector, num_threads=1)
    assert engine.detector_backend == "mediapipe_full"
    assert len(engine.detector.detect(image)) == 1
    assert len(create_detector(BlazeFaceFullOptions()).detect(image)) == 2


def test_runtime_patch_switching_backend_keeps_common_settings(tmp_path: Path) -> None:
    file = write_config(tmp_path, "backend: mtcnn\npyramid_min_face: 20\nnum_threads: 3\nmax_faces: 4\n")
    runtime = RuntimeConfig.open(file, environ={})
    result = runtime.apply({"detector": {"backend": "mediapipe"}})
    assert result.rebuild == {"detector"}
    detector = runtime.config.detector
    assert isinstance(detector, BlazeFaceOptions) and (detector.num_threads, detector.max_faces) == (3, 4)
    # the overlay replays at the next start to the same section
    assert RuntimeConfig.open(file, environ={}).config.detector == detector
    with pytest.raises(ConfigValidationError) as info:
        runtime.apply({"detector": {"pyramid_min_face": 10}})
    (error,) = info.value.errors
    assert (error.loc, error.msg) == ("detector.pyramid_min_face", "unknown key: not an option of detector 'mediapipe'")
    back = runtime.apply({"detector": {"backend": "mtcnn", "pyramid_min_face": 10}})
    assert back.rebuild == {"detector"}
    assert isinstance(runtime.config.detector, MtcnnOptions) and runtime.config.detector.pyramid_min_face == 10


def test_an_unrelated_patch_does_not_change_the_detector(tmp_path: Path) -> None:
    """The YAML's unset options stay the detector's own defaults when a patch rebuilds it (a dumped and
    re-read section once carried the schema's 0.5 / 32 px into a detector built without them)."""
    runtime = RuntimeConfig.open(write_config(tmp_path, "backend: mediapipe\n"), environ={})
    before = create_detector(runtime.config.detector)
    runtime.apply({"detector": {"num_threads": 1}})
    after = create_detector(runtime.config.detector)
    assert isinstance(before, BlazeFaceDetector) and isinstance(after, BlazeFaceDetector)
    assert before.threshold == after.threshold == before.decoder.min_score
    assert before.options.min_face_px == after.options.min_face_px == 0.0


def test_resetting_the_backend_to_its_default_drops_the_other_backends_options(tmp_path: Path) -> None:
    runtime = RuntimeConfig.open(write_config(tmp_path, "backend: mtcnn\npyramid_min_face: 20\nnum_threads: 3\n"),
                                 environ={})
    runtime.apply({"detector": {"backend": "opencv", "detect_eyes": False}})
    runtime.apply({"detector": {"backend": None}})  # null: the built-in default, mediapipe
    detector = runtime.config.detector
    assert isinstance(detector, BlazeFaceOptions) and detector.num_threads == 3


def test_every_detector_takes_the_common_options_as_they_are() -> None:
    """Switching backend carries the common values over, so no member may narrow their type or bounds."""
    for model in DETECTOR_TYPES.values():
        for name, base in DetectorOptions.model_fields.items():
            if name != "backend":
                field = model.model_fields[name]
                assert (field.annotation, field.default, field.metadata) == (
                    base.annotation, base.default, base.metadata
                ), f"{model.__name__}.{name}"
