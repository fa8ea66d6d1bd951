"""The 1:N margin has one default, shared by the library, the CLI and the daemon, equal to the manifests'."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

import facegate
from facegate.commands import find as find_command
from facegate.config.models import RecognitionConfig
from facegate.inference.manifest import bundled_models_dir, load_manifest
from facegate.operating_point import OPEN_SET_MARGIN


def test_library_cli_and_daemon_share_the_manifest_margin() -> None:
    parser = argparse.ArgumentParser()
    find_command.register(parser.add_subparsers())
    cli_default = parser.parse_args(["find", "x.jpg"]).margin
    api_default = inspect.signature(facegate.find).parameters["margin"].default
    daemon_default = RecognitionConfig().margin
    assert api_default == cli_default == daemon_default == OPEN_SET_MARGIN > 0.0
    manifests = sorted(bundled_models_dir().glob("dlib_resnet_*.yaml"))
    assert manifests
    for path in manifests:
        assert load_manifest(path).operating_point["open_set_margin"]["euclidean"] == OPEN_SET_MARGIN, path


def test_find_refuses_a_name_two_people_share_unless_margin_zero(tmp_path: Path, samples_dir: Path) -> None:
    # the same man enrolled under two names (a twin, a relative): the best two people are closer than the
    # margin, so the default refuses to pick one, as the daemon does; DeepFace's behaviour names the nearer
    db = tmp_path / "gallery.sqlite3"
    facegate.enroll("obama_a", "Obama A", [samples_dir / "obama.jpg"], gallery=db)
    facegate.enroll("obama_b", "Obama B", [samples_dir / "obama3.jpg"], gallery=db)
    best = facegate.find(samples_dir / "obama2.jpg", gallery=db)[0]
    assert best.candidates[0].distance <= best.candidates[0].threshold
    assert 0.0 < best.margin < OPEN_SET_MARGIN
    assert best.identity is None and len(best.candidates) == 2
    named = facegate.find(samples_dir / "obama2.jpg", gallery=db, margin=0.0)[0]
    assert named.identity == best.candidates[0].identity
    assert named.margin == pytest.approx(best.margin)
