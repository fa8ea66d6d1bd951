"""Camera source options typed end to end: one options model per source ``type`` (the YAML section extended
with the library's keywords) feeds the registry and is what the factory receives; unknown or mistyped
options are refused naming the source type and the option, through the real config loader, the CLI and the
library's ``build_source``."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from facegate.capture.opencv import OpenCvSource
from facegate.capture.options import SOURCE_OPTIONS, OpenCvOptions, PicameraOptions, ReplayOptions
from facegate.capture.picamera import PicameraSource
from facegate.capture.registry import SOURCES, build_source, create_source, source_options
from facegate.capture.replay import ReplaySource
from facegate.cli import main
from facegate.config import load_config
from facegate.config.models import SOURCE_TYPES, UNION_SECTIONS, CameraConfig
from facegate.errors import ConfigError
from tests.test_detector_options import load_errors


def write_config(tmp_path: Path, source: str) -> Path:
    file = tmp_path / "facegate.yaml"
    file.write_text(f"state_dir: {tmp_path / 'state'}\ncameras:\n  - id: door\n    source: {source}\n")
    return file


def test_one_list_of_source_plugins_feeds_the_registry_and_extends_the_yaml_union() -> None:
    assert list(SOURCE_OPTIONS) == SOURCES.names() == ["replay", "opencv", "picamera2", "synthetic"]
    assert UNION_SECTIONS[(CameraConfig, "source")].members == SOURCE_TYPES
    for key, yaml_model in SOURCE_TYPES.items():
        # the library's options are the YAML section plus keywords: every YAML field, same key and factory
        model = SOURCE_OPTIONS[key]
        assert issubclass(model, yaml_model) and set(yaml_model.model_fields) <= set(model.model_fields)
        assert model.implementation == yaml_model.implementation
    for key, model in SOURCE_OPTIONS.items():
        assert typing.get_args(model.model_fields["type"].annotation) == (key,)
        assert callable(SOURCES.get(key))


def test_the_daemon_builds_each_yaml_source_from_its_validated_section(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    config = load_config(write_config(tmp_path, "{type: replay, path: clip.mp4, fps: 12.5, loop: true}"),
                         overlay=False)
    section = config.cameras[0].source
    options = source_options("door", section)
    assert isinstance(options, ReplayOptions)
    assert (options.path, options.fps, options.loop, options.frames) == (clip, 12.5, True, None)
    source = build_source("door", section)
    assert isinstance(source, ReplaySource) and (source.path, source.loop) == (clip, True)
    # a model of the registry is the factory's input as is
    assert source_options("door", options) is options
    stream = load_config(write_config(tmp_path, "{type: opencv, url: 'rtsp://cam.local/live', width: 640}"),
                         overlay=False).cameras[0].source
    opencv = build_source("gate", stream)
    assert isinstance(opencv, OpenCvSource)
    assert (opencv.device, opencv.backend, opencv.width, opencv.open_timeout) == ("rtsp://cam.local/live", "ffmpeg",
                                                                                  640, 10.0)


def test_config_loader_names_the_source_type_and_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a library-only keyword is not a YAML option
    errors = load_errors(write_config(tmp_path, "{type: opencv, device: 0, open_timeout: 3}"))
    assert errors["cameras[0].source.open_timeout"].endswith(
        "cameras[0].source.open_timeout: unknown key: not an option of source 'opencv'")
    errors = load_errors(write_config(tmp_path, "{type: replay, path: x.mp4, fps: fast}"))
    assert "cameras[0].source.fps: source 'replay': Input should be" in errors["cameras[0].source.fps"]
    errors = load_errors(write_config(tmp_path, "{type: synthetic}"))
    assert "unknown type 'synthetic'; expected one of 'replay', 'opencv', 'picamera2'" in errors[
        "cameras[0].source.type"]
    file = write_config(tmp_path, "{type: picamera2, resolution: [640, 480]}")
    assert main(["check-config", str(file)]) == 2
    assert "cameras[0].source.resolution: unknown key: not an option of source 'picamera2'" in capsys.readouterr().err


def test_library_options_name_the_camera_the_source_type_and_the_option() -> None:
    with pytest.raises(ConfigError) as info:
        build_source("cam", type="replay", path="x.mp4", speed=2)
    assert str(info.value) == (
        "camera 'cam' (replay): invalid options: 'speed' is not an option of 'replay' "
        "(its options: path, fps, loop, frames, pacing, width, height)")
    with pytest.raises(ConfigError, match=r"camera 'cam' \(replay\): invalid options: 'pacing': Input should be"):
        build_source("cam", {"type": "replay", "path": "x.mp4"}, pacing="slow")
    with pytest.raises(ConfigError, match=r"\(replay\): invalid options: 'frames.0': Input should be an instance"):
        build_source("cam", type="replay", frames=[1, 2])
    with pytest.raises(ConfigError, match=r"\(replay\): invalid options: 'options': give exactly one of 'path'"):
        build_source("cam", type="replay")
    with pytest.raises(ConfigError, match=r"camera 'gate' \(opencv\): invalid options: 'open_timeout': Input should"):
        build_source("gate", type="opencv", device=0, open_timeout="soon")
    with pytest.raises(ConfigError, match=r"\(opencv\): invalid options: 'url': url must start"):
        build_source("gate", type="opencv", url="ftp://cam")
    with pytest.raises(ConfigError, match=r"camera 'pi' \(picamera2\): invalid options: 'controls': Input should"):
        build_source("pi", type="picamera2", controls="AeEnable")
    with pytest.raises(ConfigError, match=r"\(synthetic\): invalid options: 'person_frames': Input should be greater"):
        build_source("demo", type="synthetic", person_frames=0)
    with pytest.raises(ConfigError, match="camera 'x': 'type' is required; valid: replay, opencv, picamera2, synth"):
        build_source("x", {"path": "x.mp4"})
    with pytest.raises(ConfigError, match="camera 'x': unknown source type 'webcam'; valid: replay, opencv"):
        build_source("x", type="webcam")


def test_library_only_keywords_reach_the_source() -> None:
    frames = [np.zeros((40, 60, 3), np.uint8)] * 2
    replay = build_source("cam", type="REPLAY", frames=frames, pacing="fast", width=30, height=20)
    assert isinstance(replay, ReplaySource) and replay.pacing == "fast"
    with replay:
        frame = replay.read(1.0)
        assert frame is not None and frame.image.shape == (20, 30, 3)
    # ``backend`` is the library's older name of ``api``
    opencv = create_source("gate", OpenCvOptions.model_validate(
        {"type": "opencv", "path": "/dev/video9", "backend": "v4l2", "fourcc": "MJPG", "buffer_size": None}))
    assert isinstance(opencv, OpenCvSource)
    assert (opencv.device, opencv.backend, opencv.fourcc, opencv.buffer_size) == ("/dev/video9", "v4l2", "MJPG", None)
    pi = build_source("pi", type="picamera2", main_size=None, lores_size=(320, 240), buffer_count=6,
                      controls={"AeEnable": False})
    assert isinstance(pi, PicameraSource)
    assert (pi.main_size, pi.lores_size, pi.buffer_count, pi.controls) == (None, (320, 240), 6, {"AeEnable": False})
    assert PicameraOptions.model_validate({"main_size": None}).main_size is None
